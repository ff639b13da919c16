//! The architectures the engine runs, each through candle's quantized implementation, behind one
//! type: load from GGUF, one forward pass, clear the KV cache, and copy the whole state (weights
//! are shared, so a copy costs only the KV cache's handles).

use std::io::{Read, Seek};

use candle_core::quantized::gguf_file::Content;
use candle_core::{Device, Tensor};
use candle_transformers::models::{quantized_gemma3, quantized_llama, quantized_qwen2};

use crate::hf::HfLlama;

/// Values of `general.architecture` the engine can run.
pub const SUPPORTED_ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

/// The most positions any architecture here precomputes rotary embeddings for is large; this is
/// the cap the engine puts on a model's usable context.
pub const MAX_CONTEXT: usize = quantized_llama::MAX_SEQ_LEN;

pub(crate) enum Weights {
    Llama(quantized_llama::ModelWeights),
    Qwen2(quantized_qwen2::ModelWeights),
    Gemma3(quantized_gemma3::ModelWeights),
    /// From a Hugging Face folder (`crate::hf`).
    HfLlama(Box<crate::hf::HfLlama>),
    HfQwen2(candle_transformers::models::qwen2::ModelForCausalLM),
}

impl Weights {
    /// Loads `architecture` (one of [`SUPPORTED_ARCHITECTURES`]).
    pub(crate) fn from_gguf<R: Read + Seek>(
        architecture: &str,
        content: Content,
        reader: &mut R,
        device: &Device,
    ) -> candle_core::Result<Self> {
        Ok(match architecture {
            "qwen2" => Weights::Qwen2(quantized_qwen2::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            "gemma3" => Weights::Gemma3(quantized_gemma3::ModelWeights::from_gguf(
                content, reader, device,
            )?),
            _ => Weights::Llama(quantized_llama::ModelWeights::from_gguf(
                content, reader, device,
            )?),
        })
    }

    /// One forward pass of `input` (batch 1) from `position`; the last position's logits.
    pub(crate) fn forward(
        &mut self,
        input: &Tensor,
        position: usize,
    ) -> candle_core::Result<Tensor> {
        match self {
            Weights::Llama(w) => w.forward(input, position),
            Weights::Qwen2(w) => w.forward(input, position),
            Weights::Gemma3(w) => w.forward(input, position),
            Weights::HfLlama(w) => {
                let HfLlama { model, cache, .. } = &mut **w;
                model.forward(input, position, cache)
            }
            Weights::HfQwen2(w) => w.forward(input, position),
        }
    }

    /// Forgets every position seen. Gemma 3's implementation replaces its cache whenever a pass
    /// starts at position 0, which every prefill does.
    pub(crate) fn clear_kv_cache(&mut self) {
        match self {
            Weights::Llama(w) => w.clear_kv_cache(),
            Weights::Qwen2(w) => w.clear_kv_cache(),
            Weights::Gemma3(_) => {}
            Weights::HfLlama(w) => w.cache = w.fresh.clone(),
            Weights::HfQwen2(w) => w.clear_kv_cache(),
        }
    }

    /// A copy of the whole state, KV cache included, where the implementation allows it
    /// (candle's Qwen2 does not: `None`).
    pub(crate) fn snapshot(&self) -> Option<Self> {
        match self {
            Weights::Llama(w) => Some(Weights::Llama(w.clone())),
            Weights::Gemma3(w) => Some(Weights::Gemma3(w.clone())),
            Weights::Qwen2(_) => None,
            Weights::HfLlama(w) => Some(Weights::HfLlama(w.clone())),
            Weights::HfQwen2(w) => Some(Weights::HfQwen2(w.clone())),
        }
    }
}
