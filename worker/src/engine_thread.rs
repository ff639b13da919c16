//! One dedicated thread owns the model; the async side sends it commands with a reply channel.
//! A model stays loaded until a job asks for a different file (or adapter). A tuning job runs
//! here too, on a model of its own: one heavy task at a time.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use kokushi_engine::{EngineError, Generation, GenerationParams, LoadOptions, Model};
use tokio::sync::oneshot;

enum Command {
    Load {
        path: PathBuf,
        adapter: Option<PathBuf>,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Tune(
        Box<TuneCommand>,
        oneshot::Sender<Result<crate::tune::Manifest, crate::tune::TuneError>>,
    ),
    Generate {
        prompt: String,
        params: GenerationParams,
        reply: oneshot::Sender<Result<Generation, EngineCallError>>,
    },
    Score {
        prompt: String,
        continuations: Vec<String>,
        reply: oneshot::Sender<Result<kokushi_engine::Scores, EngineCallError>>,
    },
}

/// A tuning run for the engine thread.
pub struct TuneCommand {
    pub base: PathBuf,
    pub plan: crate::tune::RunPlan,
    pub train: Vec<kokushi_shared::tuning::Example>,
    pub validation: Vec<kokushi_shared::tuning::Example>,
    pub out: PathBuf,
    /// Hears the model's description once loaded, then every step, validation and checkpoint.
    pub events: tokio::sync::mpsc::UnboundedSender<TuneProgress>,
    /// Set to stop the run after its current step.
    pub stop: Arc<AtomicBool>,
}

/// What a tuning run on the engine thread reports.
#[derive(Debug, Clone)]
pub enum TuneProgress {
    Loaded(String),
    Event(crate::tune::TuneEvent),
}

/// Why an engine call returned no result.
#[derive(Debug, thiserror::Error)]
pub enum EngineCallError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("the engine thread has stopped")]
    Gone,
    #[error("no model is loaded")]
    NotLoaded,
}

/// A cheap handle to the engine thread. The thread ends when the handle is dropped.
#[derive(Debug)]
pub struct EngineThread {
    commands: mpsc::Sender<Command>,
}

impl EngineThread {
    pub fn spawn() -> Self {
        let (commands, receiver) = mpsc::channel::<Command>();
        let spawned = std::thread::Builder::new()
            .name("kokushi-engine".to_owned())
            .spawn(move || serve(&receiver));
        if let Err(e) = spawned {
            // Without a thread every call will answer `Gone`, which the worker reports.
            tracing::error!(error = %e, "could not start the engine thread");
        }
        Self { commands }
    }

    /// Loads the model at `path` unless it is already loaded; returns a description of it.
    pub async fn load(
        &self,
        path: PathBuf,
        adapter: Option<PathBuf>,
    ) -> Result<String, EngineCallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Load {
                path,
                adapter,
                reply,
            })
            .map_err(|_| EngineCallError::Gone)?;
        Ok(answer.await.map_err(|_| EngineCallError::Gone)??)
    }

    /// Runs (or resumes) a LoRA tuning run on a model of its own, dropping the loaded one.
    pub async fn tune(
        &self,
        command: TuneCommand,
    ) -> Result<crate::tune::Manifest, crate::tune::TuneError> {
        let (reply, answer) = oneshot::channel();
        let gone = || crate::tune::TuneError::Plan("the engine thread has stopped".to_owned());
        self.commands
            .send(Command::Tune(Box::new(command), reply))
            .map_err(|_| gone())?;
        answer.await.map_err(|_| gone())?
    }

    /// Generates a reply with the loaded model.
    pub async fn generate(
        &self,
        prompt: String,
        params: GenerationParams,
    ) -> Result<Generation, EngineCallError> {
        self.call(|reply| Command::Generate {
            prompt,
            params,
            reply,
        })
        .await
    }

    /// The log-probability of each continuation after `prompt`, with the loaded model.
    pub async fn score(
        &self,
        prompt: String,
        continuations: Vec<String>,
    ) -> Result<kokushi_engine::Scores, EngineCallError> {
        self.call(|reply| Command::Score {
            prompt,
            continuations,
            reply,
        })
        .await
    }

    /// Sends the command `make` builds around a reply channel and waits for the reply.
    async fn call<T>(
        &self,
        make: impl FnOnce(oneshot::Sender<Result<T, EngineCallError>>) -> Command,
    ) -> Result<T, EngineCallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(make(reply))
            .map_err(|_| EngineCallError::Gone)?;
        answer.await.map_err(|_| EngineCallError::Gone)?
    }
}

/// Loads `path` (with the adapter folder `adapter` applied) and describes it.
fn load_model(path: &Path, adapter: Option<&PathBuf>) -> Result<(Model, String), EngineError> {
    let started = std::time::Instant::now();
    let mut model = Model::load(path, &LoadOptions::default())?;
    let i = model.info();
    let mut info = format!(
        "{} ({}, {}, context {})",
        i.name.clone().unwrap_or_else(|| path.display().to_string()),
        i.architecture,
        i.quantization,
        i.context_length
    );
    if let Some(dir) = adapter {
        let a = model.load_adapter(dir, "adapter")?;
        model.use_adapter(Some("adapter"))?;
        let name = dir
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        info.push_str(&format!(" + LoRA {name} (r={}, alpha={})", a.rank, a.alpha));
    }
    tracing::info!(model = %info, seconds = started.elapsed().as_secs_f32(), "model loaded");
    Ok((model, info))
}

type Loaded = (PathBuf, Option<PathBuf>, Model, String);

fn serve(receiver: &mpsc::Receiver<Command>) {
    let mut loaded: Option<Loaded> = None;
    while let Ok(command) = receiver.recv() {
        match command {
            Command::Load {
                path,
                adapter,
                reply,
            } => {
                if let Some((current, current_adapter, _, info)) = &loaded
                    && *current == path
                    && *current_adapter == adapter
                {
                    let _ = reply.send(Ok(info.clone()));
                    continue;
                }
                loaded = None;
                let _ = reply.send(match load_model(&path, adapter.as_ref()) {
                    Ok((model, info)) => {
                        loaded = Some((path, adapter, model, info.clone()));
                        Ok(info)
                    }
                    Err(e) => Err(e),
                });
            }
            Command::Tune(command, reply) => {
                // The evaluation model makes room for the one being tuned.
                loaded = None;
                let _ = reply.send(tune(*command));
            }
            Command::Generate {
                prompt,
                params,
                reply,
            } => {
                let _ = reply.send(with_loaded(&mut loaded, |model| {
                    model.generate(&prompt, &params)
                }));
            }
            Command::Score {
                prompt,
                continuations,
                reply,
            } => {
                let _ = reply.send(with_loaded(&mut loaded, |model| {
                    model.score_continuations(&prompt, &continuations)
                }));
            }
        }
    }
}

/// `work` on the loaded model; `NotLoaded` when there is none.
fn with_loaded<T>(
    loaded: &mut Option<Loaded>,
    work: impl FnOnce(&mut Model) -> Result<T, EngineError>,
) -> Result<T, EngineCallError> {
    match loaded.as_mut() {
        Some((_, _, model, _)) => work(model).map_err(Into::into),
        None => Err(EngineCallError::NotLoaded),
    }
}

fn tune(command: TuneCommand) -> Result<crate::tune::Manifest, crate::tune::TuneError> {
    let TuneCommand {
        base,
        plan,
        train,
        validation,
        out,
        events,
        stop,
    } = command;
    let (mut model, info) = load_model(&base, None)?;
    let _ = events.send(TuneProgress::Loaded(info));
    crate::tune::run(&mut model, &plan, &train, &validation, &out, |event| {
        let _ = events.send(TuneProgress::Event(event.clone()));
        if stop.load(Ordering::Relaxed) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
}
