//! Greedy text generation with a loaded [`Model`].
//!
//! This module owns the decoding loop: encode the prompt, clear the KV cache, prefill the prompt
//! from position 0, then feed one token at a time and pick the most likely next token (argmax),
//! until an end-of-sequence token, a stop string, `max_new_tokens` or the end of the context.
//! It does no sampling (evaluation wants reproducible answers). [`Model::generate_batch`] runs
//! several prompts at once, left-padded to one length with the padding masked out, and gives
//! each the answer it gets alone.
//!
//! Every prompt starts from an empty KV cache, so one prompt can never see another's state.

use std::time::{Duration, Instant};

use candle_core::{DType, Tensor};

use crate::{EngineError, Model};

/// Prompts are prefilled in chunks of this many tokens, which bounds the attention matrix
/// (heads × chunk × context) for long prompts without changing the result.
pub(crate) const PREFILL_CHUNK: usize = 512;

/// How much to generate and where to stop.
#[derive(Debug, Clone)]
pub struct GenerationParams {
    /// The most tokens to generate, including a final end-of-sequence token.
    pub max_new_tokens: usize,
    /// Strings that end generation as soon as one appears in the generated text; the text is
    /// cut where the earliest one starts. Empty strings are ignored.
    pub stop: Vec<String>,
}

impl Default for GenerationParams {
    fn default() -> Self {
        Self {
            max_new_tokens: 256,
            stop: Vec::new(),
        }
    }
}

/// The result of one [`Model::generate`] call.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// The generated text, without the prompt, the end-of-sequence token or the stop string.
    /// If `max_new_tokens` cut a multi-byte character short, it ends in U+FFFD.
    pub text: String,
    /// Tokens in the encoded prompt (including BOS if the model adds one).
    pub prompt_tokens: usize,
    /// Tokens the model produced, including an end-of-sequence token that ended generation.
    pub generated_tokens: usize,
    pub stop_reason: StopReason,
    /// Wall time of the prompt's forward pass, which also yields the first new token.
    pub prefill: Duration,
    /// Wall time of the one-token forward passes after the prefill.
    pub decode: Duration,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The model produced its end-of-sequence (or end-of-turn) token.
    EndOfSequence,
    /// One of [`GenerationParams::stop`] appeared in the text.
    StopSequence,
    /// [`GenerationParams::max_new_tokens`] tokens were produced.
    MaxNewTokens,
    /// The context window has no room for another token.
    ContextFull,
}

impl Model {
    /// Generates a greedy continuation of `prompt`.
    ///
    /// The prompt is used verbatim (apply any chat template before calling); special tokens
    /// written in it, such as `<|im_start|>`, encode to their single ids.
    pub fn generate(
        &mut self,
        prompt: &str,
        params: &GenerationParams,
    ) -> Result<Generation, EngineError> {
        let prompt_ids = self.encode_prompt(prompt)?;
        self.generate_tokens(&prompt_ids, params)
    }

    /// [`Model::generate`] from a prompt already encoded (as benchmarks do, to feed two engines
    /// exactly the same tokens).
    pub fn generate_tokens(
        &mut self,
        prompt_ids: &[u32],
        params: &GenerationParams,
    ) -> Result<Generation, EngineError> {
        let span = tracing::debug_span!("generate", max_new_tokens = params.max_new_tokens);
        let _entered = span.enter();
        if prompt_ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        let context_length = self.info.context_length;
        if prompt_ids.len() > context_length {
            return Err(EngineError::PromptTooLong {
                prompt_tokens: prompt_ids.len(),
                context_length,
            });
        }
        let mut result = Generation {
            text: String::new(),
            prompt_tokens: prompt_ids.len(),
            generated_tokens: 0,
            stop_reason: StopReason::MaxNewTokens,
            prefill: Duration::ZERO,
            decode: Duration::ZERO,
        };
        if params.max_new_tokens == 0 {
            return Ok(result);
        }

        let prefill_started = Instant::now();
        let mut logits = self.prefill(prompt_ids)?;
        result.prefill = prefill_started.elapsed();

        let decode_started = Instant::now();
        let mut generated: Vec<u32> = Vec::new();
        result.stop_reason = loop {
            let next = argmax(&logits);
            result.generated_tokens += 1;
            if self.stop_ids.contains(&next) {
                break StopReason::EndOfSequence;
            }
            generated.push(next);
            // Decoding the whole list each step keeps multi-byte characters that span tokens
            // intact; an unfinished one shows as U+FFFD until its last byte arrives.
            result.text = self.decode(&generated)?;
            if let Some(cut) = earliest_stop(&result.text, &params.stop) {
                result.text.truncate(cut);
                break StopReason::StopSequence;
            }
            if result.generated_tokens >= params.max_new_tokens {
                break StopReason::MaxNewTokens;
            }
            let position = prompt_ids.len() + generated.len() - 1;
            if position >= context_length {
                break StopReason::ContextFull;
            }
            logits = self.forward(&[next], position)?;
        };
        result.decode = decode_started.elapsed();
        tracing::debug!(
            prompt_tokens = result.prompt_tokens,
            generated_tokens = result.generated_tokens,
            stop_reason = ?result.stop_reason,
            prefill_ms = millis(result.prefill),
            decode_ms = millis(result.decode),
            "generation finished"
        );
        Ok(result)
    }

    /// Generates greedy continuations of several prompts in one batch: each prompt is prefilled
    /// alone, then the rows are decoded together, left-padded to the longest (the padding is
    /// masked out of attention and positions start after it), and each row stops on its own. Each result is what
    /// [`Model::generate`] gives for that prompt alone, up to floating-point rounding (the
    /// tests check the texts are identical); `prefill` and `decode` are the batch's.
    pub fn generate_batch(
        &mut self,
        prompts: &[String],
        params: &GenerationParams,
    ) -> Result<Vec<Generation>, EngineError> {
        let encoded = prompts
            .iter()
            .map(|p| self.encode_prompt(p))
            .collect::<Result<Vec<_>, _>>()?;
        self.generate_batch_tokens(&encoded, params)
    }

    /// [`Model::generate_batch`] from prompts already encoded.
    pub fn generate_batch_tokens(
        &mut self,
        prompts: &[Vec<u32>],
        params: &GenerationParams,
    ) -> Result<Vec<Generation>, EngineError> {
        let context_length = self.info.context_length;
        let width = prompts.iter().map(Vec::len).max().unwrap_or(0);
        for ids in prompts {
            if ids.is_empty() {
                return Err(EngineError::EmptyPrompt);
            }
            if ids.len() > context_length {
                return Err(EngineError::PromptTooLong {
                    prompt_tokens: ids.len(),
                    context_length,
                });
            }
        }
        let mut results: Vec<Generation> = prompts
            .iter()
            .map(|ids| Generation {
                text: String::new(),
                prompt_tokens: ids.len(),
                generated_tokens: 0,
                stop_reason: StopReason::MaxNewTokens,
                prefill: Duration::ZERO,
                decode: Duration::ZERO,
            })
            .collect();
        if prompts.is_empty() || params.max_new_tokens == 0 {
            return Ok(results);
        }
        // Each prompt is prefilled alone — no padding to compute, and exactly the cache the
        // prompt gets by itself — and the caches are stacked, left-padded, for the batch's
        // decode steps.
        let pads: Vec<usize> = prompts.iter().map(|ids| width - ids.len()).collect();
        let prefill_started = Instant::now();
        let mut logits = Vec::with_capacity(prompts.len());
        let mut caches = Vec::with_capacity(prompts.len());
        for ids in prompts {
            let mut cache = crate::transformer::Cache::default();
            let mut last = Vec::new();
            for (index, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
                last = self.batch_forward(&[chunk.to_vec()], &mut cache, index * PREFILL_CHUNK)?;
            }
            logits.extend(last);
            caches.push(cache);
        }
        let mut cache = crate::transformer::Cache::stacked(&caches, pads, context_length).map_err(
            |source| EngineError::Forward {
                position: width,
                source: Box::new(source),
            },
        )?;
        drop(caches);
        let prefill = prefill_started.elapsed();

        let decode_started = Instant::now();
        let mut generated: Vec<Vec<u32>> = vec![Vec::new(); prompts.len()];
        let mut active: Vec<bool> = vec![true; prompts.len()];
        let mut step = 0usize;
        loop {
            let mut next_tokens = Vec::with_capacity(prompts.len());
            for (row, result) in results.iter_mut().enumerate() {
                let next = argmax(&logits[row]);
                next_tokens.push(vec![next]);
                if !active[row] {
                    continue;
                }
                result.generated_tokens += 1;
                if self.stop_ids.contains(&next) {
                    result.stop_reason = StopReason::EndOfSequence;
                    active[row] = false;
                    continue;
                }
                generated[row].push(next);
                result.text = self.decode(&generated[row])?;
                if let Some(cut) = earliest_stop(&result.text, &params.stop) {
                    result.text.truncate(cut);
                    result.stop_reason = StopReason::StopSequence;
                    active[row] = false;
                } else if result.generated_tokens >= params.max_new_tokens {
                    result.stop_reason = StopReason::MaxNewTokens;
                    active[row] = false;
                } else if prompts[row].len() + generated[row].len() > context_length {
                    result.stop_reason = StopReason::ContextFull;
                    active[row] = false;
                }
            }
            if !active.iter().any(|&a| a) {
                break;
            }
            // Every row advances one slot; finished rows run along and are ignored. A row can
            // only be active while its own positions fit, and the widest row is the longest.
            if width + step >= context_length {
                break;
            }
            logits = self.batch_forward(&next_tokens, &mut cache, width + step)?;
            step += 1;
        }
        let decode = decode_started.elapsed();
        for result in &mut results {
            result.prefill = prefill;
            result.decode = decode;
        }
        Ok(results)
    }

    /// One pass of a batch (`rows` of equal length) after `cache`; each row's last logits.
    fn batch_forward(
        &self,
        rows: &[Vec<u32>],
        cache: &mut crate::transformer::Cache,
        position: usize,
    ) -> Result<Vec<Vec<f32>>, EngineError> {
        let forward_error = |source: candle_core::Error| EngineError::Forward {
            position,
            source: Box::new(source),
        };
        let device = self.device.clone();
        let model = &self.weights.model;
        let adapter = self.weights.adapter;
        device
            .with_context(|| -> candle_core::Result<Vec<Vec<f32>>> {
                let width = rows[0].len();
                let flat: Vec<u32> = rows.iter().flatten().copied().collect();
                let input = Tensor::from_vec(flat, (rows.len(), width), &device)?;
                model
                    .forward(&input, cache, adapter, crate::transformer::Logits::Last)?
                    .to_dtype(DType::F32)?
                    .to_vec2::<f32>()
            })
            .map_err(forward_error)
    }

    /// Encodes a prompt with the model's special-token rules (BOS when the file asks for it).
    pub(crate) fn encode_prompt(&self, prompt: &str) -> Result<Vec<u32>, EngineError> {
        let encoding =
            self.tokenizer
                .encode_fast(prompt, true)
                .map_err(|source| EngineError::Tokenize {
                    what: "encoding the prompt",
                    source,
                })?;
        let ids = encoding.get_ids().to_vec();
        if ids.is_empty() {
            return Err(EngineError::EmptyPrompt);
        }
        Ok(ids)
    }

    fn decode(&self, ids: &[u32]) -> Result<String, EngineError> {
        self.tokenizer
            .decode(ids, false)
            .map_err(|source| EngineError::Tokenize {
                what: "decoding generated tokens",
                source,
            })
    }

    /// Clears the KV cache and runs `ids` from position 0; returns the last position's logits.
    pub(crate) fn prefill(&mut self, ids: &[u32]) -> Result<Vec<f32>, EngineError> {
        self.weights.clear_kv_cache();
        let mut logits = Vec::new();
        for (index, chunk) in ids.chunks(PREFILL_CHUNK).enumerate() {
            logits = self.forward(chunk, index * PREFILL_CHUNK)?;
        }
        Ok(logits)
    }

    /// One forward pass of `ids` starting at `position`.
    ///
    /// `with_context` runs it inside candle's private CPU thread pool (sized once per process,
    /// see the crate docs), so the many short parallel sections of a pass reuse warm threads
    /// instead of whatever rayon pool the caller happens to be on.
    pub(crate) fn forward(
        &mut self,
        ids: &[u32],
        position: usize,
    ) -> Result<Vec<f32>, EngineError> {
        let forward_error = |source: candle_core::Error| EngineError::Forward {
            position,
            source: Box::new(source),
        };
        let device = self.device.clone();
        let weights = &mut self.weights;
        device
            .with_context(|| -> candle_core::Result<Vec<f32>> {
                let input = Tensor::new(ids, &device)?.unsqueeze(0)?;
                let logits = weights.forward(&input, position)?;
                // Implementations return (1, vocab) or (1, 1, vocab): the last position either way.
                logits.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()
            })
            .map_err(forward_error)
    }
}

/// The index of the largest logit; the first one on ties, and NaNs never win.
fn argmax(logits: &[f32]) -> u32 {
    let mut best = (0usize, f32::NEG_INFINITY);
    for (index, &value) in logits.iter().enumerate() {
        if value > best.1 {
            best = (index, value);
        }
    }
    u32::try_from(best.0).unwrap_or(u32::MAX)
}

/// The byte offset where the earliest non-empty stop string starts in `text`, if any.
fn earliest_stop(text: &str, stops: &[String]) -> Option<usize> {
    stops
        .iter()
        .filter(|stop| !stop.is_empty())
        .filter_map(|stop| text.find(stop.as_str()))
        .min()
}

/// Whole milliseconds of `duration` (saturating).
pub fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests;
