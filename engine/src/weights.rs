//! A loaded [`Transformer`] with the state of one sequence: its KV cache and the adapter its
//! passes use. Weights are shared (`Arc`), so a copy of the state costs only the cache's handles.

use std::sync::Arc;

use candle_core::Tensor;

use crate::transformer::{Cache, Logits, Transformer};

/// Values of `general.architecture` the engine can run.
pub const SUPPORTED_ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

#[derive(Clone)]
pub(crate) struct Weights {
    pub(crate) model: Arc<Transformer>,
    pub(crate) cache: Cache,
    /// The slot of the LoRA adapter passes apply, if any.
    pub(crate) adapter: Option<usize>,
}

impl Weights {
    pub(crate) fn new(model: Transformer) -> Self {
        Self {
            model: Arc::new(model),
            cache: Cache::default(),
            adapter: None,
        }
    }

    /// One forward pass of `input` (`(1, positions)`) from `position`, which must be where the
    /// cache ends; the last position's logits.
    pub(crate) fn forward(
        &mut self,
        input: &Tensor,
        position: usize,
    ) -> candle_core::Result<Tensor> {
        if position != self.cache.len() {
            candle_core::bail!(
                "a pass from position {position} on a cache holding {}",
                self.cache.len()
            );
        }
        self.model
            .forward(input, &mut self.cache, self.adapter, Logits::Last)
    }

    /// Like [`Weights::forward`], with the logits of every position: `(1, positions, vocab)`.
    pub(crate) fn forward_all(&mut self, input: &Tensor) -> candle_core::Result<Tensor> {
        self.model
            .forward(input, &mut self.cache, self.adapter, Logits::All)
    }

    /// Forgets every position seen.
    pub(crate) fn clear_kv_cache(&mut self) {
        self.cache = Cache::default();
    }
}
