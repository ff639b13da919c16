//! Log-likelihood scoring: how probable the model finds each of several continuations of one
//! prompt.
//!
//! The prompt is run once; its KV cache is then copied for each continuation (candle's tensors
//! are shared, not duplicated, until a new position is appended), and the continuation's tokens
//! are fed one at a time, each step giving the log-probability of the next token. The model's
//! own cache is left as the prompt made it. Tokenisation: the continuation is encoded on its
//! own, without special tokens, and appended to the prompt's ids (as evaluation harnesses do),
//! so the log-probabilities are of exactly the tokens reported.

use std::time::Instant;

use crate::weights::Weights;
use crate::{EngineError, Model};

/// The log-probability of one continuation.
#[derive(Debug, Clone, PartialEq)]
pub struct ContinuationScore {
    /// Σ log p(token | prompt, earlier tokens), natural log.
    pub sum: f64,
    /// `sum` divided by the number of tokens.
    pub mean: f64,
    /// Tokens in the continuation.
    pub tokens: usize,
}

/// The result of one [`Model::score_continuations`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct Scores {
    /// One score per continuation, in the order given.
    pub continuations: Vec<ContinuationScore>,
    /// Tokens in the encoded prompt.
    pub prompt_tokens: usize,
    /// Wall time of the prompt's forward pass.
    pub prefill_ms: u64,
    /// Wall time of all continuation passes.
    pub score_ms: u64,
}

impl Model {
    /// Scores each of `continuations` as a continuation of `prompt` (used verbatim, as in
    /// [`Model::generate`]). An empty continuation, or one that would not fit in the context,
    /// is an error naming it.
    pub fn score_continuations(
        &mut self,
        prompt: &str,
        continuations: &[String],
    ) -> Result<Scores, EngineError> {
        let prompt_ids = self.encode_prompt(prompt)?;
        let mut encoded = Vec::with_capacity(continuations.len());
        for text in continuations {
            let ids = self
                .tokenizer
                .encode_fast(text.as_str(), false)
                .map_err(|source| EngineError::Tokenize {
                    what: "encoding a continuation",
                    source,
                })?
                .get_ids()
                .to_vec();
            if ids.is_empty() {
                return Err(EngineError::EmptyContinuation { text: text.clone() });
            }
            if prompt_ids.len() + ids.len() > self.info.context_length {
                return Err(EngineError::PromptTooLong {
                    prompt_tokens: prompt_ids.len() + ids.len(),
                    context_length: self.info.context_length,
                });
            }
            encoded.push(ids);
        }
        let started = Instant::now();
        let first_logits = self.prefill(&prompt_ids)?;
        let prefill_ms = crate::generate::millis(started.elapsed());
        // A copy of the state after the prompt, or (for an implementation that cannot be
        // copied) nothing: the prompt is then run again before each continuation.
        let after_prompt = self.weights.snapshot();
        let started = Instant::now();
        let mut scores = Vec::with_capacity(encoded.len());
        for (n, ids) in encoded.iter().enumerate() {
            if after_prompt.is_none() && n > 0 {
                self.prefill(&prompt_ids)?;
            }
            let mut sum = 0.0;
            let mut logits = first_logits.clone();
            for (i, &id) in ids.iter().enumerate() {
                sum += log_softmax_at(&logits, id);
                if i + 1 < ids.len() {
                    logits = self.forward(&[id], prompt_ids.len() + i)?;
                }
            }
            // Back to the state the prompt left, for the next continuation.
            if let Some(state) = after_prompt.as_ref().and_then(Weights::snapshot) {
                self.weights = state;
            }
            #[allow(clippy::cast_precision_loss)] // token counts are small
            let mean = sum / ids.len() as f64;
            scores.push(ContinuationScore {
                sum,
                mean,
                tokens: ids.len(),
            });
        }
        Ok(Scores {
            continuations: scores,
            prompt_tokens: prompt_ids.len(),
            prefill_ms,
            score_ms: crate::generate::millis(started.elapsed()),
        })
    }
}

impl Model {
    /// The log-probabilities of every vocabulary entry after `prompt_ids` (natural log), for
    /// comparing this engine with a reference implementation on the same tokens.
    pub fn next_token_logprobs(&mut self, prompt_ids: &[u32]) -> Result<Vec<f64>, EngineError> {
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let logits = self.prefill(prompt_ids)?;
        Ok((0..logits.len())
            .map(|i| log_softmax_at(&logits, u32::try_from(i).unwrap_or(u32::MAX)))
            .collect())
    }
}

/// `log softmax(logits)[index]`, computed stably in f64.
pub(crate) fn log_softmax_at(logits: &[f32], index: u32) -> f64 {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let max = f64::from(max);
    let sum: f64 = logits.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    let value = logits
        .get(index as usize)
        .map_or(f64::NEG_INFINITY, |&v| f64::from(v));
    value - max - sum.ln()
}

#[cfg(test)]
mod tests;
