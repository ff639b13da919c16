//! Requantizing the 5-bit legacy block formats (`Q5_0`, `Q5_1`) to `Q8_0` at load, when a
//! load asks for it (`LoadOptions::requantize_q8_0`).
//!
//! candle 0.11 has no SIMD CPU kernel for them (they run `vec_dot_unopt`), so the engine used
//! to requantize them for its own `Q8_0` kernel (Gemma 3 270M, a `Q4_K_M` file whose 640-wide
//! matrices cannot use 256-value K-quant blocks and are stored as `Q5_0`, ran prefill 6× and
//! decode 2× faster than on candle's). The engine now runs them as stored on its own 5-bit
//! kernel (`crate::q8::Q4Matrix`: the file's values exactly, 0.75 bytes a value to stream
//! instead of 1.125; docs/perf-notes.md section 17), so this stays only to reproduce runs made
//! before it.
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
