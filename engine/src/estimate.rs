//! How much memory a model takes to run, estimated from its header alone: the weights as they
//! will be held, the KV cache for the positions and rows a job asks, the logits, the largest
//! intermediate activations, and for training the `f32` copies of the matrices a trainer keeps
//! (up to its budget) and of one more, and the activations kept for the backward pass. What a scheduler needs to send a job only to a node
//! that can hold it, and what a load checks before it starts filling a device.
//!
//! The estimate errs high: a job refused for want of memory is queued for a larger node, while
//! a job sent to a node it does not fit stops that node.

use std::path::Path;

use candle_core::quantized::GgmlDType;

use crate::EngineError;
use crate::gguf::{Metadata, read_content};
use crate::transformer::DENSE_CACHE_BYTES;

/// What a job will do with the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Workload {
    /// Positions one row holds at most (prompt and generated tokens, capped at the model's
    /// context).
    pub positions: usize,
    /// Rows run together (a batch of prompts, or of training sequences).
    pub batch: usize,
    /// A LoRA tuning rather than inference.
    pub training: bool,
}

/// The parts of an estimate, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryEstimate {
    pub weights: u64,
    pub kv_cache: u64,
    /// Activations, logits and (training) what the backward pass keeps.
    pub working: u64,
}

impl MemoryEstimate {
    pub fn total(&self) -> u64 {
        self.weights
            .saturating_add(self.kv_cache)
            .saturating_add(self.working)
    }
}

/// Bytes a CUDA context and candle's kernels take on a GPU before any tensor.
pub const CUDA_OVERHEAD: u64 = 600 << 20;

/// The memory `path` (a GGUF file or a Hugging Face model folder) takes to run `work`.
pub fn memory_estimate(path: &Path, work: Workload) -> Result<MemoryEstimate, EngineError> {
    let shape = if path.is_dir() {
        Shape::of_folder(path)?
    } else {
        Shape::of_gguf(path)?
    };
    Ok(shape.estimate(work))
}

/// What an estimate needs to know of a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Shape {
    /// Bytes of the weights as held (in the CPU engine's layouts; a folder in `f32`).
    weights: u64,
    /// Elements of the largest weight matrix.
    largest_matrix: u64,
    /// Elements of all weight matrices.
    matrix_elements: u64,
    layers: u64,
    hidden: u64,
    feed_forward: u64,
    kv_width: u64,
    vocab: u64,
    context: u64,
}

impl Shape {
    fn of_gguf(path: &Path) -> Result<Self, EngineError> {
        let (content, _) = read_content(path)?;
        let md = Metadata::new(path, &content.metadata);
        let arch = md.string("general.architecture")?;
        let key = |k: &str| format!("{arch}.{k}");
        let hidden = md.usize(&key("embedding_length"))? as u64;
        let heads = md.usize(&key("attention.head_count"))?.max(1) as u64;
        let kv_heads = md
            .opt_usize(&key("attention.head_count_kv"))?
            .map_or(heads, |n| n as u64);
        let head_dim = md
            .opt_usize(&key("attention.key_length"))?
            .map_or(hidden / heads, |n| n as u64);
        let mut weights = 0u64;
        let mut largest = 0u64;
        let mut matrix_elements = 0u64;
        for info in content.tensor_infos.values() {
            let elements = info.shape.elem_count() as u64;
            // 1-D tensors are held in `f32`, matrices as the CPU engine holds them.
            // (Saturating: a hostile header must not wrap around to a small number.)
            let bytes = if info.shape.rank() < 2 {
                elements.saturating_mul(4)
            } else {
                held_bytes(info.ggml_dtype, elements)
            };
            weights = weights.saturating_add(bytes);
            if info.shape.rank() == 2 {
                largest = largest.max(elements);
                matrix_elements = matrix_elements.saturating_add(elements);
            }
        }
        let vocab = md
            .string_array("tokenizer.ggml.tokens")
            .map_or(0, |t| t.len() as u64);
        Ok(Self {
            weights,
            largest_matrix: largest,
            matrix_elements,
            layers: md.usize(&key("block_count"))? as u64,
            hidden,
            feed_forward: md.opt_usize(&key("feed_forward_length"))?.unwrap_or(0) as u64,
            kv_width: kv_heads.saturating_mul(head_dim),
            vocab,
            context: md.usize(&key("context_length"))? as u64,
        })
    }

    fn of_folder(dir: &Path) -> Result<Self, EngineError> {
        let inspected = crate::inspect(dir)?;
        let config = crate::inspect::read_json(&dir.join("config.json"))?;
        let get = |k: &str| config[k].as_u64();
        let hidden = get("hidden_size").unwrap_or(0);
        let heads = get("num_attention_heads").unwrap_or(1).max(1);
        let kv_heads = get("num_key_value_heads").unwrap_or(heads);
        let head_dim = get("head_dim").unwrap_or(hidden / heads);
        // Stored in 16 bits, run in `f32`: twice the files.
        let stored = config["torch_dtype"].as_str().unwrap_or("float32");
        let factor = if stored == "float32" { 1 } else { 2 };
        let vocab = get("vocab_size").unwrap_or(0);
        Ok(Self {
            weights: inspected.size_bytes.saturating_mul(factor),
            largest_matrix: vocab.saturating_mul(hidden),
            // Held in `f32` already: a trainer keeps no second copy.
            matrix_elements: 0,
            layers: get("num_hidden_layers").unwrap_or(0),
            hidden,
            feed_forward: get("intermediate_size").unwrap_or(0),
            kv_width: kv_heads.saturating_mul(head_dim),
            vocab,
            context: get("max_position_embeddings").unwrap_or(4096),
        })
    }

    fn estimate(&self, work: Workload) -> MemoryEstimate {
        // Saturating, in 128 bits: a hostile header, batch or context must not wrap around to
        // a small number.
        let mul = |factors: &[u64]| -> u128 {
            factors
                .iter()
                .fold(1u128, |p, &f| p.saturating_mul(u128::from(f)))
        };
        let positions = (work.positions as u64).clamp(1, self.context.max(1));
        let rows = work.batch.max(1) as u64;
        // Keys and values of every layer, `f32`.
        let kv_cache = mul(&[2, self.layers, self.kv_width, positions, rows, 4]);
        // A pass's widest tensors: the feed-forward's three, attention scores over the
        // positions, the residual stream; all `f32`, for every row.
        let per_position = self
            .hidden
            .saturating_mul(4)
            .saturating_add(self.feed_forward.saturating_mul(3))
            .saturating_add(positions);
        let mut working = mul(&[per_position, positions, rows, 4]);
        // Logits: the last position when generating; every position of a continuation when
        // scoring or training (counted in full).
        let logit_positions = if work.training { positions } else { 1 };
        working = working.saturating_add(mul(&[self.vocab, rows, 4, logit_positions]));
        if work.training {
            // The frozen base product dequantizes one matrix to `f32` at a time (twice: forward
            // and backward) beyond those the trainer keeps in `f32` (up to its budget), the
            // backward pass keeps each layer's activations, and the loss's gradient sits beside
            // the logits.
            let kept = mul(&[self.matrix_elements, 4]).min(DENSE_CACHE_BYTES as u128);
            working = working
                .saturating_add(kept)
                .saturating_add(mul(&[self.largest_matrix, 4, 2]))
                .saturating_add(mul(&[self.layers, per_position, positions, rows, 4]))
                .saturating_add(mul(&[self.vocab, positions, rows, 4, 2]));
        }
        // A tenth more for what is not counted (allocator slack, small tensors).
        let all = u128::from(self.weights)
            .saturating_add(kv_cache)
            .saturating_add(working);
        working = working.saturating_add(all / 10);
        let clamp = |v: u128| u64::try_from(v).unwrap_or(u64::MAX / 4);
        MemoryEstimate {
            weights: self.weights,
            kv_cache: clamp(kv_cache),
            working: clamp(working),
        }
    }
}

/// Bytes a matrix of `elements` values stored as `dtype` takes in the CPU engine's memory:
/// `Q4_0`/`Q4_1`/`Q5_0`/`Q5_1` in the engine's 4- and 5-bit layout (per 32 values 16 bytes of
/// nibbles, an `f32` scale, an `f32` offset for `Q4_1`/`Q5_1`, 4 bytes of fifth bits for the
/// 5-bit ones); `Q4_K` and `Q6_K` as stored plus the 16-row tiles candle repacks them into at
/// their first product (0.75 and 1.25 bytes a value), which it keeps beside them; everything
/// else at least the 8-bit layout (a byte a value and an `f32` scale per 32), which `Q8_0` is
/// held in (and the 5-bit formats are requantized to when a load asks for it).
fn held_bytes(dtype: GgmlDType, elements: u64) -> u64 {
    let stored = stored_bytes(dtype, elements);
    let per_32 = |bytes: u64| elements.saturating_mul(bytes) / 32;
    match dtype {
        GgmlDType::Q4_0 => per_32(20),
        GgmlDType::Q4_1 | GgmlDType::Q5_0 => per_32(24),
        GgmlDType::Q5_1 => per_32(28),
        GgmlDType::Q4K => stored.saturating_add(per_32(24)),
        GgmlDType::Q6K => stored.saturating_add(per_32(40)),
        _ => stored.max(per_32(36)),
    }
}

/// Bytes `elements` values take stored as `dtype`.
fn stored_bytes(dtype: GgmlDType, elements: u64) -> u64 {
    let block = dtype.block_size().max(1) as u64;
    elements
        .div_ceil(block)
        .saturating_mul(dtype.type_size() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture::{self, FixtureSpec, FixtureWeights};

    #[test]
    fn the_estimate_grows_with_the_work_and_counts_every_weight() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        let mut spec = FixtureSpec::tiny("llama", 1);
        spec.weights = FixtureWeights::Q8_0;
        fixture::write_gguf(&path, &spec).expect("fixture");
        let small = Workload {
            positions: 64,
            batch: 1,
            training: false,
        };
        let one = memory_estimate(&path, small).expect("estimate");
        // Q8_0 weights: at least the file's tensor bytes (34 bytes per 32 values).
        let file = std::fs::metadata(&path).expect("meta").len();
        assert!(
            one.weights * 11 / 10 >= file / 2,
            "{one:?} for a {file}-byte file"
        );
        let four = memory_estimate(&path, Workload { batch: 4, ..small }).expect("estimate");
        assert_eq!(four.kv_cache, one.kv_cache * 4);
        let long = memory_estimate(
            &path,
            Workload {
                positions: 512,
                ..small
            },
        )
        .expect("estimate");
        assert_eq!(long.kv_cache, one.kv_cache * 8);
        // Positions past the context are not counted.
        let past = memory_estimate(
            &path,
            Workload {
                positions: 1 << 30,
                ..small
            },
        )
        .expect("estimate");
        assert_eq!(
            past.kv_cache,
            one.kv_cache * (fixture::CONTEXT_LENGTH as u64 / 64)
        );
        let training = memory_estimate(
            &path,
            Workload {
                training: true,
                ..small
            },
        )
        .expect("estimate");
        assert!(training.total() > one.total());
        // KV cache of 2 layers × 2 heads × 16 dims × 64 positions × (K, V) × 4 bytes.
        let kv_width =
            (fixture::HEAD_COUNT_KV * fixture::EMBEDDING_LENGTH / fixture::HEAD_COUNT) as u64;
        assert_eq!(
            one.kv_cache,
            2 * fixture::BLOCK_COUNT as u64 * kv_width * 64 * 4
        );
    }

    #[test]
    fn a_folder_is_estimated_from_its_config() {
        let dir = tempfile::tempdir().expect("tempdir");
        let folder = dir.path().join("hf");
        fixture::write_hf_folder(&folder, &FixtureSpec::tiny("qwen2", 2)).expect("folder");
        let e = memory_estimate(
            &folder,
            Workload {
                positions: 100,
                batch: 2,
                training: false,
            },
        )
        .expect("estimate");
        assert!(e.weights > 0 && e.kv_cache > 0 && e.working > 0, "{e:?}");
        let nothing = Workload {
            positions: 1,
            batch: 1,
            training: false,
        };
        let err = memory_estimate(&dir.path().join("none.gguf"), nothing)
            .expect_err("no file")
            .to_string();
        assert!(err.contains("none.gguf"), "{err}");
    }

    #[test]
    fn a_model_that_cannot_fit_is_refused_before_loading() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        fixture::write_gguf(&path, &FixtureSpec::tiny("llama", 1)).expect("fixture");
        let fits = crate::LoadOptions {
            workload: Some(Workload {
                positions: 256,
                batch: 4,
                training: false,
            }),
            ..crate::LoadOptions::default()
        };
        crate::Model::load(&path, &fits).expect("a tiny model fits");
        // Ten billion rows of KV cache fit no machine.
        let huge = crate::LoadOptions {
            workload: Some(Workload {
                positions: 1024,
                batch: 10_000_000_000,
                training: false,
            }),
            ..crate::LoadOptions::default()
        };
        let err = crate::Model::load(&path, &huge)
            .expect_err("refused")
            .to_string();
        assert!(
            err.contains("tiny.gguf") && err.contains("needs about") && err.contains("free of"),
            "{err}"
        );
    }

    #[test]
    fn hostile_sizes_saturate_instead_of_wrapping() {
        let shape = Shape {
            weights: u64::MAX,
            largest_matrix: u64::MAX,
            matrix_elements: u64::MAX,
            layers: u64::MAX,
            hidden: u64::MAX,
            feed_forward: u64::MAX,
            kv_width: u64::MAX,
            vocab: u64::MAX,
            context: u64::MAX,
        };
        let e = shape.estimate(Workload {
            positions: usize::MAX,
            batch: usize::MAX,
            training: true,
        });
        assert!(e.total() >= u64::MAX / 4, "{e:?}");
    }
}
