//! Kokushi's inference engine: load a model (Llama family, Qwen2, Gemma 3; a GGUF file or a
//! Hugging Face folder), generate text greedily, and score continuations by their
//! log-likelihood, optionally through LoRA adapters.
//!
//! The engine runs its own transformer (`transformer`) on candle tensors, with what evaluation
//! needs: a tokenizer built from the GGUF metadata alone, a load path that refuses what it
//! cannot run with a message naming the file and the field, optional `Q4 → Q8_0`
//! requantization for fast CPU kernels, and a deterministic generation loop with stop strings
//! and timings.
//!
//! Architecture invariants: the engine never downloads anything (models arrive as paths, tests
//! use [`fixture`]); it never samples (greedy only, so an evaluation run is reproducible); it
//! holds no global state of its own — one [`Model`] is one independent model.
//!
//! Threading: candle sizes its CPU thread pools once per process, at first use, from
//! `CANDLE_NUM_THREADS` (else `RAYON_NUM_THREADS`, else the number of physical cores), and its
//! quantized kernels spin-wait on their helper threads. Setting environment variables is
//! `unsafe` in Rust 2024, so this library cannot choose for you: set `CANDLE_NUM_THREADS` in the
//! worker's environment. On a quiet 2-core machine 2 threads are fastest; when other processes
//! compete for the cores, 1 thread is slower but much steadier (see the crate's smoke test).

mod adapter;
mod arithmetic;
mod chat;
mod device;
mod error;
mod estimate;
pub mod fixture;
mod generate;
mod gguf;
mod hf;
mod inspect;
mod loglik;
mod model;
mod q8;
mod requantize;
mod tokenizer;
mod train;
mod transformer;
mod weights;

pub use adapter::AdapterInfo;
pub use device::{CUDA_BUILT, DEVICE_FORMS, Device, DeviceChoice, DeviceMemory};
pub use error::{EngineError, gib};
pub use estimate::{CUDA_OVERHEAD, MemoryEstimate, Workload, memory_estimate};
pub use generate::{Generation, GenerationParams, StopReason, millis};
pub use hf::SUPPORTED_MODEL_TYPES;
pub use inspect::{Format, Inspection, inspect};
pub use loglik::{ContinuationScore, Scores};
pub use model::{Kernels, LoadOptions, Model, ModelInfo, Precision};
pub use tokenizer::TokenCounter;
pub use train::{AdamWSettings, LoraSpec, LoraTrainer, Sequence, StepStats};
pub use transformer::PROJECTIONS;
pub use weights::SUPPORTED_ARCHITECTURES;
