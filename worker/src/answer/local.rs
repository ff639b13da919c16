//! The local engine as an [`Answerer`]: the model on the engine thread, one batch of prompts
//! decoded together.

use kokushi_engine::{EngineError, GenerationParams};
use kokushi_shared::prompt::ANSWER_OPENING;

use super::{Answerer, AskError, Prompt, Reply, Scored};
use crate::engine_thread::{EngineCallError, EngineThread, Loaded};

/// The model loaded on `engine`, described by `loaded`.
#[derive(Debug)]
pub struct Local<'a> {
    pub engine: &'a EngineThread,
    pub loaded: Loaded,
}

/// What a failed engine call means for the run: the engine stopping ends it; anything the
/// model says about one prompt (too long, empty, no chat template) is that question's.
fn ask_error(e: EngineCallError) -> AskError {
    match e {
        EngineCallError::Engine(e) => AskError::Question(e.to_string()),
        EngineCallError::Gone | EngineCallError::NotLoaded => AskError::Fatal(e.to_string()),
    }
}

impl Local<'_> {
    /// The prompt as text: a chat rendered with the model's own template, the assistant's turn
    /// opened with 「答え：」.
    async fn text(&self, prompt: Prompt) -> Result<String, AskError> {
        match prompt {
            Prompt::Raw(text) => Ok(text),
            Prompt::Chat(turns) => {
                let turns = turns
                    .into_iter()
                    .map(|t| (t.role.to_owned(), t.content))
                    .collect();
                let rendered = self.engine.chat(turns).await.map_err(ask_error)?;
                Ok(rendered + ANSWER_OPENING)
            }
        }
    }
}

impl Answerer for Local<'_> {
    fn chat_id(&self) -> String {
        format!(
            "chat_template:{}",
            self.loaded
                .chat_template_hash
                .as_deref()
                .unwrap_or_default()
        )
    }

    async fn generate(
        &self,
        prompts: Vec<Prompt>,
        max_new_tokens: usize,
        stop: &[String],
    ) -> Vec<Result<Reply, AskError>> {
        let params = GenerationParams {
            max_new_tokens,
            stop: stop.to_vec(),
        };
        let mut texts = Vec::with_capacity(prompts.len());
        for prompt in prompts {
            texts.push(self.text(prompt).await);
        }
        let ready: Vec<String> = texts
            .iter()
            .filter_map(|t| t.as_ref().ok())
            .cloned()
            .collect();
        // One batch; if the engine refuses it (one prompt too long for the context, say), each
        // prompt is asked alone so that each gets its own reply or reason.
        let batch = if ready.len() > 1 {
            self.engine.generate(ready, params.clone()).await.ok()
        } else {
            None
        };
        // The batch's pass times, carried by its first reply only.
        let mut batch = batch.map(|mut generations| {
            for g in generations.iter_mut().skip(1) {
                g.prefill = std::time::Duration::ZERO;
                g.decode = std::time::Duration::ZERO;
            }
            generations.into_iter()
        });
        let mut replies = Vec::with_capacity(texts.len());
        for text in texts {
            let reply = match text {
                Err(e) => Err(e),
                Ok(text) => {
                    let generation = match batch.as_mut().and_then(Iterator::next) {
                        Some(generation) => Ok(generation),
                        None => self
                            .engine
                            .generate(vec![text], params.clone())
                            .await
                            .and_then(|mut one| {
                                one.pop()
                                    .ok_or(EngineCallError::Engine(EngineError::EmptyPrompt))
                            }),
                    };
                    generation.map_err(ask_error).map(|g| Reply {
                        text: g.text,
                        prompt_tokens: g.prompt_tokens,
                        generated_tokens: g.generated_tokens,
                        prefill_ms: kokushi_engine::millis(g.prefill),
                        decode_ms: kokushi_engine::millis(g.decode),
                    })
                }
            };
            replies.push(reply);
        }
        replies
    }

    async fn score(&self, prompt: Prompt, continuations: Vec<String>) -> Result<Scored, AskError> {
        let text = self.text(prompt).await?;
        let scores = self
            .engine
            .score(text, continuations)
            .await
            .map_err(ask_error)?;
        Ok(Scored {
            sums: scores.continuations.iter().map(|c| c.sum).collect(),
            means: scores.continuations.iter().map(|c| c.mean).collect(),
            prompt_tokens: scores.prompt_tokens,
        })
    }
}
