//! One dedicated thread owns the model; the async side sends it commands with a reply channel.
//! A model stays loaded until a job asks for a different file.

use std::path::PathBuf;
use std::sync::mpsc;

use kokushi_engine::{EngineError, Generation, GenerationParams, LoadOptions, Model};
use tokio::sync::oneshot;

enum Command {
    Load {
        path: PathBuf,
        reply: oneshot::Sender<Result<String, EngineError>>,
    },
    Generate {
        prompt: String,
        params: GenerationParams,
        reply: oneshot::Sender<Result<Generation, EngineCallError>>,
    },
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
    pub async fn load(&self, path: PathBuf) -> Result<String, EngineCallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Load { path, reply })
            .map_err(|_| EngineCallError::Gone)?;
        Ok(answer.await.map_err(|_| EngineCallError::Gone)??)
    }

    /// Generates a reply with the loaded model.
    pub async fn generate(
        &self,
        prompt: String,
        params: GenerationParams,
    ) -> Result<Generation, EngineCallError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send(Command::Generate {
                prompt,
                params,
                reply,
            })
            .map_err(|_| EngineCallError::Gone)?;
        answer.await.map_err(|_| EngineCallError::Gone)?
    }
}

fn serve(receiver: &mpsc::Receiver<Command>) {
    let mut loaded: Option<(PathBuf, Model, String)> = None;
    while let Ok(command) = receiver.recv() {
        match command {
            Command::Load { path, reply } => {
                if let Some((current, _, info)) = &loaded
                    && *current == path
                {
                    let _ = reply.send(Ok(info.clone()));
                    continue;
                }
                loaded = None;
                let started = std::time::Instant::now();
                let result = Model::load(&path, &LoadOptions::default()).map(|model| {
                    let i = model.info();
                    let info = format!(
                        "{} ({}, {}, context {})",
                        i.name.clone().unwrap_or_else(|| path.display().to_string()),
                        i.architecture,
                        i.quantization,
                        i.context_length
                    );
                    tracing::info!(model = %info, seconds = started.elapsed().as_secs_f32(), "model loaded");
                    (model, info)
                });
                let _ = reply.send(match result {
                    Ok((model, info)) => {
                        loaded = Some((path, model, info.clone()));
                        Ok(info)
                    }
                    Err(e) => Err(e),
                });
            }
            Command::Generate {
                prompt,
                params,
                reply,
            } => {
                let result = match loaded.as_mut() {
                    Some((_, model, _)) => model.generate(&prompt, &params).map_err(Into::into),
                    None => Err(EngineCallError::NotLoaded),
                };
                let _ = reply.send(result);
            }
        }
    }
}
