//! Requantizing the legacy block formats (`Q4_0`, `Q4_1`, `Q5_0`, `Q5_1`) to `Q8_0` at load.
//!
//! candle 0.11 has no SIMD CPU kernel for them (they run `vec_dot_unopt`), while its `Q8_0`
//! kernel is well optimised; on a 2-core AVX2 machine requantizing made SmolLM2-135M (Q4_1)
//! decode about 3× faster, and Gemma 3 270M (a `Q4_K_M` file whose 640-wide matrices cannot use
//! 256-value K-quant blocks and are stored as `Q5_0`) prefill 6× and decode 2× faster
//! (docs/perf-notes.md). `Q8_0` holds every 4- and 5-bit value exactly up to its block scale. This module owns that conversion: it reads every tensor, turns each
//! eligible matrix (2-D, rows a multiple of 32 long) into `Q8_0` through `f32`, and writes a new
//! GGUF image into memory that `quantized_llama` then loads as if it were the file. Memory use
//! peaks at about three times the `Q8_0` model size while the image is built.
//!
//! It does not change any other tensor and it never writes to disk.

use std::io::{Cursor, Read, Seek};
use std::path::Path;

use candle_core::Device;
use candle_core::quantized::gguf_file::{self, Content, TensorInfo};
use candle_core::quantized::{GgmlDType, QTensor};

use crate::EngineError;

/// `Q8_0` packs 32 values per block, so only rows of a multiple of 32 can be converted.
const Q8_0_BLOCK: usize = 32;

/// Whether the tensor described by `info` is one this module converts.
pub(crate) fn is_eligible(info: &TensorInfo) -> bool {
    matches!(
        info.ggml_dtype,
        GgmlDType::Q4_0 | GgmlDType::Q4_1 | GgmlDType::Q5_0 | GgmlDType::Q5_1
    ) && info.shape.rank() == 2
        && info
            .shape
            .dims()
            .last()
            .is_some_and(|row| row % Q8_0_BLOCK == 0)
}

/// An in-memory GGUF image with the eligible tensors converted to `Q8_0`.
pub(crate) struct Requantized {
    pub(crate) content: Content,
    pub(crate) reader: Cursor<Vec<u8>>,
    /// How many tensors were converted.
    pub(crate) converted: usize,
}

/// Converts the eligible tensors of `content` (read through `reader`) to `Q8_0`.
///
/// Returns `Ok(None)` when no tensor is eligible, so the caller can keep reading the file as is.
/// Metadata the model does not need (the tokenizer vocabulary) is left out of the image, and so
/// is `general.alignment`, because candle's writer always aligns to 32 bytes.
pub(crate) fn to_q8_0<R: Read + Seek>(
    path: &Path,
    content: &Content,
    reader: &mut R,
) -> Result<Option<Requantized>, EngineError> {
    if !content.tensor_infos.values().any(is_eligible) {
        return Ok(None);
    }
    let tensor_error = |name: &str, source: candle_core::Error| EngineError::Tensor {
        path: path.to_path_buf(),
        tensor: name.to_owned(),
        source: Box::new(source),
    };

    // Sorted so the image's layout does not depend on HashMap order.
    let mut names: Vec<&String> = content.tensor_infos.keys().collect();
    names.sort();
    let mut tensors: Vec<(&str, QTensor)> = Vec::with_capacity(names.len());
    let mut converted = 0usize;
    for name in names {
        let info = &content.tensor_infos[name];
        let tensor = content
            .tensor(reader, name, &Device::Cpu)
            .map_err(|e| tensor_error(name, e))?;
        let tensor = if is_eligible(info) {
            converted += 1;
            let dense = tensor
                .dequantize(&Device::Cpu)
                .map_err(|e| tensor_error(name, e))?;
            QTensor::quantize(&dense, GgmlDType::Q8_0).map_err(|e| tensor_error(name, e))?
        } else {
            tensor
        };
        tensors.push((name.as_str(), tensor));
    }

    let metadata: Vec<(&str, &gguf_file::Value)> = content
        .metadata
        .iter()
        .filter(|(key, _)| !key.starts_with("tokenizer.") && key.as_str() != "general.alignment")
        .map(|(key, value)| (key.as_str(), value))
        .collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(n, t)| (*n, t)).collect();
    let image_error = |source: candle_core::Error| EngineError::Tensor {
        path: path.to_path_buf(),
        tensor: "(in-memory Q8_0 image)".to_owned(),
        source: Box::new(source),
    };
    let mut image = Cursor::new(Vec::new());
    gguf_file::write(&mut image, &metadata, &tensor_refs).map_err(image_error)?;
    drop(tensors);

    image.set_position(0);
    let content = Content::read(&mut image).map_err(image_error)?;
    Ok(Some(Requantized {
        content,
        reader: image,
        converted,
    }))
}
