//! Requantizing the 5-bit legacy block formats (`Q5_0`, `Q5_1`) to `Q8_0` at load.
//!
//! candle 0.11 has no SIMD CPU kernel for them (they run `vec_dot_unopt`); Gemma 3 270M (a
//! `Q4_K_M` file whose 640-wide matrices cannot use 256-value K-quant blocks and are stored as
//! `Q5_0`) ran prefill 6× and decode 2× faster requantized (docs/perf-notes.md), and the
//! engine's own `Q8_0` kernel (`crate::q8`) is faster still. `Q8_0` holds every 5-bit value
//! exactly up to its block scale. `Q4_0` and `Q4_1` are not converted: the engine has its own
//! 4-bit kernel for them, which streams half the bytes per token.
//!
//! This module decides which tensors are converted (2-D, rows a multiple of 32 long);
//! `transformer::load` converts each one through `f32` as it reads it, so memory holds one
//! dense matrix at a time. No other tensor is changed and nothing is written to disk. K-quant
//! matrices are left alone: converting Gemma 3's `Q4_K`/`Q6_K` ones neither sped it up nor kept
//! its log-probabilities as close to llama.cpp's (docs/perf-notes.md).

use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::TensorInfo;

/// `Q8_0` packs 32 values per block, so only rows of a multiple of 32 can be converted.
const Q8_0_BLOCK: usize = 32;

/// Whether the tensor described by `info` is one this module converts.
pub(crate) fn is_eligible(info: &TensorInfo) -> bool {
    matches!(info.ggml_dtype, GgmlDType::Q5_0 | GgmlDType::Q5_1)
        && info.shape.rank() == 2
        && info
            .shape
            .dims()
            .last()
            .is_some_and(|row| row % Q8_0_BLOCK == 0)
}
