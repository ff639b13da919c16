//! Log-likelihood scoring: how probable the model finds each of several continuations of one
//! prompt.
//!
//! The prompt is run once; its KV cache is then copied for each continuation (candle's tensors
//! are shared, not duplicated, until a new position is appended), and each continuation runs in
//! one pass that returns the logits of every position, giving the log-probability of each of its
//! tokens. The model's own cache is left as the prompt made it. Tokenisation: the continuation is encoded on its
//! own, without special tokens, and appended to the prompt's ids (as evaluation harnesses do),
//! so the log-probabilities are of exactly the tokens reported.

use std::time::Instant;

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
        // The state after the prompt: each continuation runs from a copy of it (the weights are
        // shared; only the cache's handles are copied).
        let after_prompt = self.weights.clone();
        let started = Instant::now();
        let mut scores = Vec::with_capacity(encoded.len());
        for ids in &encoded {
            let mut sum = log_softmax_at(&first_logits, ids[0]);
            if ids.len() > 1 {
                // One pass over all but the last token gives the distribution of every next one.
                let rows = self.forward_all(&ids[..ids.len() - 1], prompt_ids.len())?;
                for (row, &next) in rows.iter().zip(&ids[1..]) {
                    sum += log_softmax_at(row, next);
                }
                self.weights = after_prompt.clone();
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
    /// One pass of `ids` from `position` (where the cache ends); the logits of every position.
    pub(crate) fn forward_all(
        &mut self,
        ids: &[u32],
        position: usize,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let forward_error = |source: candle_core::Error| EngineError::Forward {
            position,
            source: Box::new(source),
        };
        let device = self.device.clone();
        let weights = &mut self.weights;
        device
            .with_context(|| -> candle_core::Result<Vec<Vec<f32>>> {
                if position != weights.cache.len() {
                    candle_core::bail!(
                        "a pass from position {position} on a cache holding {}",
                        weights.cache.len()
                    );
                }
                let input = candle_core::Tensor::new(ids, &device)?.unsqueeze(0)?;
                weights.forward_all(&input)?.squeeze(0)?.to_vec2::<f32>()
            })
            .map_err(forward_error)
    }

    /// The log-probability of each of `ids` given the ones before it (natural log), from one
    /// pass over them all; the first token, which has nothing before it, has none. This is what
    /// an OpenAI-compatible server returns for a prompt with `echo` and `logprobs`. Holds the
    /// logits of every position at once (positions × vocabulary f32).
    pub fn token_logprobs(&mut self, ids: &[u32]) -> Result<Vec<Option<f64>>, EngineError> {
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        if ids.len() > self.info.context_length {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: ids.len(),
                context_length: self.info.context_length,
            });
        }
        self.weights.clear_kv_cache();
        let mut values = Vec::with_capacity(ids.len());
        values.push(None);
        for (index, chunk) in ids.chunks(crate::generate::PREFILL_CHUNK).enumerate() {
            let start = index * crate::generate::PREFILL_CHUNK;
            let rows = self.forward_all(chunk, start)?;
            for (offset, row) in rows.iter().enumerate() {
                if let Some(&next) = ids.get(start + offset + 1) {
                    values.push(Some(log_softmax_at(row, next)));
                }
            }
        }
        Ok(values)
    }

    /// The log-probabilities of every vocabulary entry after `prompt_ids` (natural log), for
    /// comparing this engine with a reference implementation on the same tokens.
    pub fn next_token_logprobs(&mut self, prompt_ids: &[u32]) -> Result<Vec<f64>, EngineError> {
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let logits = self.prefill(prompt_ids)?;
        let norm = log_normalizer(&logits);
        Ok(logits.iter().map(|&v| f64::from(v) - norm).collect())
    }
}

/// `log softmax(logits)[index]`, computed stably in f64.
pub(crate) fn log_softmax_at(logits: &[f32], index: u32) -> f64 {
    let value = logits
        .get(index as usize)
        .map_or(f64::NEG_INFINITY, |&v| f64::from(v));
    value - log_normalizer(logits)
}

/// `log Σ exp(logits)`, computed stably in f64.
fn log_normalizer(logits: &[f32]) -> f64 {
    let max = logits
        .iter()
        .copied()
        .filter(|v| v.is_finite())
        .fold(f32::NEG_INFINITY, f32::max);
    let max = f64::from(max);
    let sum: f64 = logits.iter().map(|&v| (f64::from(v) - max).exp()).sum();
    max + sum.ln()
}

#[cfg(test)]
mod tests;
