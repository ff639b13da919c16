//! A model behind an OpenAI-compatible server as an [`Answerer`]: a batch's requests go out
//! together (the client's semaphore bounds how many are in flight).

use super::{Answerer, AskError, Prompt, Reply, Scored};
use crate::remote::{RemoteError, RemoteGeneration, RemoteModel};

fn ask_error(e: RemoteError) -> AskError {
    if e.is_fatal() {
        AskError::Fatal(e.to_string())
    } else {
        AskError::Question(e.to_string())
    }
}

fn reply(generation: RemoteGeneration) -> Reply {
    Reply {
        text: generation.text,
        prompt_tokens: generation.prompt_tokens,
        generated_tokens: generation.generated_tokens,
        prefill_ms: 0,
        decode_ms: 0,
    }
}

impl RemoteModel {
    async fn reply(
        &self,
        prompt: Prompt,
        max_new_tokens: usize,
        stop: &[String],
    ) -> Result<Reply, AskError> {
        match prompt {
            Prompt::Raw(text) => self.complete(&text, max_new_tokens, stop).await,
            Prompt::Chat(turns) => {
                let turns: Vec<(&str, &str)> =
                    turns.iter().map(|t| (t.role, t.content.as_str())).collect();
                self.chat(&turns, max_new_tokens).await
            }
        }
        .map(reply)
        .map_err(ask_error)
    }
}

impl Answerer for RemoteModel {
    fn chat_id(&self) -> String {
        "chat_api".to_owned()
    }

    async fn generate(
        &self,
        prompts: Vec<Prompt>,
        max_new_tokens: usize,
        stop: &[String],
    ) -> Vec<Result<Reply, AskError>> {
        let asks = prompts
            .into_iter()
            .map(|prompt| self.reply(prompt, max_new_tokens, stop));
        futures_util::future::join_all(asks).await
    }

    async fn score(&self, prompt: Prompt, continuations: Vec<String>) -> Result<Scored, AskError> {
        let Prompt::Raw(text) = prompt else {
            return Err(AskError::Fatal(format!(
                "{}: loglik scoring reads the log-probabilities of a prompt's continuation, which \
                 a chat API does not return: choose a prompt format (sent to /completions) or \
                 generation",
                self.spec()
            )));
        };
        let scores = self
            .score_continuations(&text, &continuations)
            .await
            .map_err(ask_error)?;
        Ok(Scored {
            sums: scores.iter().map(|s| s.sum).collect(),
            means: scores.iter().map(|s| s.mean).collect(),
            prompt_tokens: scores.first().map_or(0, |s| s.prompt_tokens),
        })
    }
}
