//! One dedicated thread owns the model; the async side sends it commands with a reply channel.
//! A model stays loaded until a job asks for a different file (or adapter). A tuning job runs
//! here too, on a model of its own: one heavy task at a time.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, mpsc};

use kokushi_engine::{EngineError, Generation, GenerationParams, LoadOptions, Model};
use tokio::sync::oneshot;

enum Command {
    Load {
        request: LoadRequest,
        reply: oneshot::Sender<Result<Loaded, EngineError>>,
    },
    Tune(
        Box<TuneCommand>,
        oneshot::Sender<Result<crate::tune::Manifest, crate::tune::TuneError>>,
    ),
    Generate {
        prompts: Vec<String>,
        params: GenerationParams,
        reply: oneshot::Sender<Result<Vec<Generation>, EngineCallError>>,
    },
    Chat {
        turns: Vec<(String, String)>,
        reply: oneshot::Sender<Result<String, EngineCallError>>,
    },
    Score {
        prompt: String,
        continuations: Vec<String>,
        reply: oneshot::Sender<Result<kokushi_engine::Scores, EngineCallError>>,
    },
}

/// What model to load, and how.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadRequest {
    /// A GGUF file or a Hugging Face model folder.
    pub path: PathBuf,
    /// A PEFT LoRA adapter folder to answer through, and the name it is recorded under.
    pub adapter: Option<(PathBuf, String)>,
    /// Merge the adapter into the weights instead of applying it beside them.
    pub merge_adapter: bool,
    /// Keep the file's own quantization (the default); `false` requantizes its `Q5_0`/`Q5_1`
    /// matrices to `Q8_0` at load.
    pub keep_quantization: bool,
    pub device: kokushi_engine::Device,
    /// Which kernels run on the CPU (`Generic`: the code a GPU runs, to check it on a CPU).
    pub kernels: kokushi_engine::Kernels,
    /// What the model will do: a model estimated not to fit the device's free memory for it is
    /// refused before loading.
    pub workload: Option<kokushi_engine::Workload>,
    /// The precision of the KV cache and attention (`Auto`: `f16` on a GPU, `f32` on the CPU).
    pub precision: kokushi_engine::Precision,
}

impl LoadRequest {
    /// `path` on the CPU with the engine's defaults.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            adapter: None,
            merge_adapter: false,
            keep_quantization: true,
            device: kokushi_engine::Device::Cpu,
            kernels: kokushi_engine::Kernels::Own,
            workload: None,
            precision: kokushi_engine::Precision::Auto,
        }
    }
}

/// A loaded model as the engine thread describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// The model's name, architecture, the arithmetic it runs (quantization as stored or
    /// requantized, and the kernels), context, and adapter.
    pub description: String,
    /// `general.architecture` (`llama`, `qwen2`, `gemma3`).
    pub architecture: String,
    /// The content hash of the model's own chat template, when it has one.
    pub chat_template_hash: Option<String>,
}

/// A tuning run for the engine thread.
pub struct TuneCommand {
    pub base: PathBuf,
    /// Where the base model is loaded and trained.
    pub device: kokushi_engine::Device,
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

    /// Loads the model `request` names unless it is already loaded so; describes it.
    pub async fn load(&self, request: LoadRequest) -> Result<Loaded, EngineCallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Load { request, reply })
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

    /// Generates a reply to each prompt with the loaded model, in one batch.
    pub async fn generate(
        &self,
        prompts: Vec<String>,
        params: GenerationParams,
    ) -> Result<Vec<Generation>, EngineCallError> {
        self.call(|reply| Command::Generate {
            prompts,
            params,
            reply,
        })
        .await
    }

    /// The chat of `(role, content)` turns rendered with the loaded model's own template, the
    /// assistant's turn opened.
    pub async fn chat(&self, turns: Vec<(String, String)>) -> Result<String, EngineCallError> {
        self.call(|reply| Command::Chat { turns, reply }).await
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

/// Loads the model `request` names and describes it.
fn load_model(request: &LoadRequest) -> Result<(Model, Loaded), EngineError> {
    let started = std::time::Instant::now();
    let options = LoadOptions {
        requantize_q8_0: !request.keep_quantization,
        device: request.device,
        kernels: request.kernels,
        workload: request.workload,
        precision: request.precision,
    };
    let mut model = Model::load(&request.path, &options)?;
    let i = model.info();
    let mut description = format!(
        "{} ({}, {}, context {})",
        i.name
            .clone()
            .unwrap_or_else(|| request.path.display().to_string()),
        i.architecture,
        i.arithmetic,
        i.context_length
    );
    if let Some((dir, name)) = &request.adapter {
        let a = model.load_adapter(dir, name)?;
        if request.merge_adapter {
            model.merge_adapter(name)?;
        } else {
            model.use_adapter(Some(name))?;
        }
        description.push_str(&format!(
            " + LoRA {name} (r={}, alpha={}, {})",
            a.rank,
            a.alpha,
            if request.merge_adapter {
                "merged"
            } else {
                "unmerged"
            }
        ));
    }
    tracing::info!(model = %description, seconds = started.elapsed().as_secs_f32(), "model loaded");
    let loaded = Loaded {
        description,
        architecture: model.info().architecture.clone(),
        chat_template_hash: model.chat_template_hash(),
    };
    Ok((model, loaded))
}

type Current = (LoadRequest, Model, Loaded);

fn serve(receiver: &mpsc::Receiver<Command>) {
    let mut loaded: Option<Current> = None;
    while let Ok(command) = receiver.recv() {
        match command {
            Command::Load { request, reply } => {
                if let Some((current, _, info)) = &loaded
                    && *current == request
                {
                    let _ = reply.send(Ok(info.clone()));
                    continue;
                }
                loaded = None;
                let _ = reply.send(match load_model(&request) {
                    Ok((model, info)) => {
                        loaded = Some((request, model, info.clone()));
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
                prompts,
                params,
                reply,
            } => {
                let _ = reply.send(with_loaded(&mut loaded, |model| match prompts.as_slice() {
                    [prompt] => model.generate(prompt, &params).map(|g| vec![g]),
                    _ => model.generate_batch(&prompts, &params),
                }));
            }
            Command::Chat { turns, reply } => {
                let _ = reply.send(with_loaded(&mut loaded, |model| {
                    let turns: Vec<(&str, &str)> = turns
                        .iter()
                        .map(|(role, content)| (role.as_str(), content.as_str()))
                        .collect();
                    model.apply_chat_template_turns(&turns)
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
    loaded: &mut Option<Current>,
    work: impl FnOnce(&mut Model) -> Result<T, EngineError>,
) -> Result<T, EngineCallError> {
    match loaded.as_mut() {
        Some((_, model, _)) => work(model).map_err(Into::into),
        None => Err(EngineCallError::NotLoaded),
    }
}

fn tune(command: TuneCommand) -> Result<crate::tune::Manifest, crate::tune::TuneError> {
    let TuneCommand {
        base,
        device,
        plan,
        train,
        validation,
        out,
        events,
        stop,
    } = command;
    // Sequences are trained one at a time (gradients accumulate over a batch).
    let workload = kokushi_engine::Workload {
        positions: plan.recipe.max_seq_len,
        batch: 1,
        training: true,
    };
    let (mut model, info) = load_model(&LoadRequest {
        device,
        workload: Some(workload),
        ..LoadRequest::new(base)
    })?;
    let _ = events.send(TuneProgress::Loaded(info.description));
    crate::tune::run(&mut model, &plan, &train, &validation, &out, |event| {
        let _ = events.send(TuneProgress::Event(event.clone()));
        if stop.load(Ordering::Relaxed) {
            std::ops::ControlFlow::Break(())
        } else {
            std::ops::ControlFlow::Continue(())
        }
    })
}
