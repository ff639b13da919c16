//! Loading a GGUF model (Llama family, Qwen2, Gemma 3) into a [`Model`].
//!
//! This module owns the load path: parse the GGUF header, refuse architectures the engine does
//! not run, build the tokenizer from the metadata, and hand the tensors to
//! `transformer::load` (which may requantize 5-bit weights to `Q8_0` for the CPU). It does not generate text (that is
//! `generate`) and it keeps no file handle open once loading is done.

use std::fmt;
use std::path::Path;
use std::time::Instant;

use candle_core::DType;
use candle_core::quantized::GgmlDType;
use candle_core::quantized::gguf_file::Content;
use tokenizers::Tokenizer;

use crate::EngineError;
use crate::device::Device;
use crate::gguf::{self, Metadata};
use crate::tokenizer;

use crate::weights::{SUPPORTED_ARCHITECTURES, Weights};

/// How to load a model.
#[derive(Debug, Clone)]
pub struct LoadOptions {
    /// Convert `Q5_0`/`Q5_1` weight matrices to `Q8_0` at load (the engine's own kernels on
    /// the CPU only). Off by default: the engine's 5-bit kernel runs them as stored, exactly,
    /// and decodes faster than their `Q8_0` form (docs/perf-notes.md, section 17); kept to
    /// reproduce runs made before that kernel. `Q4_0`/`Q4_1` always run as stored.
    pub requantize_q8_0: bool,
    pub device: Device,
    /// Which kernels do the arithmetic on the CPU; other devices always take candle's.
    pub kernels: Kernels,
    /// What the model will be asked to do: when given, a model whose estimate
    /// ([`crate::memory_estimate`]) exceeds the device's free memory is refused before
    /// anything is loaded.
    pub workload: Option<crate::Workload>,
    /// The precision of the KV cache and of attention's products.
    pub precision: Precision,
}

/// The precision the KV cache is kept in and attention multiplies in (scores are
/// soft-maxed in `f32` whatever it is). The weight products take `f32` activations in every case:
/// candle's quantized kernels read `f32` inputs only, on the CPU and on CUDA alike.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Precision {
    /// `f16` on a GPU (as llama.cpp keeps its KV cache: half the memory, the GPU's half-precision
    /// products), `f32` on the CPU; a Hugging Face folder on a GPU keeps its own `f16`/`bf16`.
    #[default]
    Auto,
    F32,
    F16,
    /// Needs a GPU of compute capability 8.0 (Ampere) or newer.
    Bf16,
}

impl Precision {
    /// The dtype for a model whose activations are `activations` on `device`.
    pub(crate) fn dtype(self, device: &candle_core::Device, activations: DType) -> DType {
        match self {
            Self::Auto if device.is_cpu() => activations,
            Self::Auto if activations == DType::F32 => DType::F16,
            Self::Auto => activations,
            Self::F32 => DType::F32,
            Self::F16 => DType::F16,
            Self::Bf16 => DType::BF16,
        }
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "f32" => Ok(Self::F32),
            "f16" => Ok(Self::F16),
            "bf16" => Ok(Self::Bf16),
            other => Err(format!("no precision {other:?}: auto, f32, f16 or bf16")),
        }
    }
}

impl fmt::Display for Precision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Bf16 => "bf16",
        })
    }
}

/// Which kernels a model on the CPU runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Kernels {
    /// The engine's own where it has them (the tiled `Q8_0` and 4-bit products, CPU attention
    /// without a mask), candle's elsewhere: the fast CPU path.
    #[default]
    Own,
    /// candle's device-generic operations only (`QMatMul` over the file's quantized weights,
    /// masked attention from candle ops, no requantization): exactly the code a CUDA device
    /// runs, on the CPU, so that CI checks the GPU path but for candle's CUDA kernels.
    Generic,
}

impl std::str::FromStr for Kernels {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "own" => Ok(Self::Own),
            "generic" => Ok(Self::Generic),
            other => Err(format!("no kernels {other:?}: own or generic")),
        }
    }
}

impl fmt::Display for Kernels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Own => "own",
            Self::Generic => "generic",
        })
    }
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            requantize_q8_0: false,
            device: Device::Cpu,
            kernels: Kernels::Own,
            workload: None,
            precision: Precision::Auto,
        }
    }
}

/// What the portal shows about a loaded model.
#[derive(Debug, Clone)]
pub struct ModelInfo {
    /// `general.architecture`, e.g. `"llama"`.
    pub architecture: String,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// Size of the GGUF file in bytes.
    pub file_size: u64,
    /// The usable context in tokens: the model's trained context (`<arch>.context_length`,
    /// `max_position_embeddings`), capped at 32768.
    pub context_length: usize,
    /// The number of entries in the vocabulary (`tokenizer.ggml.tokens`).
    pub vocab_size: usize,
    /// The file's quantization, e.g. `"Q4_1"` or `"Q4_K_M (requantized to Q8_0)"`.
    pub quantization: String,
    /// The arithmetic the model runs: the quantization and how many matrices go through which
    /// kernel (`"Q4_1; 169 × Q4_1 on the engine's 4-bit kernel (AVX2+FMA), …"`).
    pub arithmetic: String,
}

/// A loaded GGUF model and its tokenizer.
pub struct Model {
    pub(crate) weights: Weights,
    pub(crate) tokenizer: Tokenizer,
    pub(crate) info: ModelInfo,
    /// Ids that end generation (EOS and end-of-turn markers).
    pub(crate) stop_ids: Vec<u32>,
    pub(crate) device: candle_core::Device,
    /// The model's own chat template, when its files carry one.
    pub(crate) chat_template: Option<crate::chat::ChatTemplate>,
    /// LoRA adapters loaded onto the weights.
    pub(crate) adapters: crate::adapter::Adapters,
}

impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("info", &self.info)
            .field("stop_ids", &self.stop_ids)
            .field("device", &self.device)
            .finish_non_exhaustive()
    }
}

impl Model {
    /// Loads the GGUF file at `path`, or the Hugging Face model folder `path` names.
    pub fn load(path: &Path, opts: &LoadOptions) -> Result<Model, EngineError> {
        if let Some(work) = opts.workload {
            check_fits(path, opts.device, work)?;
        }
        if path.is_dir() {
            let started = Instant::now();
            let mut model = crate::hf::load(path, &opts.device.open()?)?;
            let transformer = std::sync::Arc::make_mut(&mut model.weights.model);
            if opts.kernels == Kernels::Generic {
                transformer.candle_attention = true;
            }
            let kv = opts
                .precision
                .dtype(&model.device, transformer.config.dtype);
            transformer.config.kv_dtype = kv;
            model.info.arithmetic = with_precision(&model.info.arithmetic, kv);
            tracing::info!(
                path = %path.display(),
                architecture = %model.info.architecture,
                weights = %model.info.quantization,
                load_ms = started.elapsed().as_millis(),
                "model folder loaded"
            );
            return Ok(model);
        }
        let started = Instant::now();
        let file_size = std::fs::metadata(path)
            .map_err(|source| EngineError::Io {
                path: path.to_path_buf(),
                source,
            })?
            .len();
        let (content, mut reader) = gguf::read_content(path)?;
        let md = Metadata::new(path, &content.metadata);

        let architecture = md.string("general.architecture")?.to_owned();
        if !SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()) {
            return Err(EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: architecture,
                supported: SUPPORTED_ARCHITECTURES.join(", "),
            });
        }
        let name = md.opt_string("general.name")?.map(str::to_owned);
        let file_quantization = quantization_name(md, &content)?;
        let tokenizer_started = Instant::now();
        let vocab = tokenizer::from_metadata(md)?;
        let tokenizer_ms = tokenizer_started.elapsed().as_millis();
        let token_text = |key: &str| -> Result<String, EngineError> {
            Ok(md
                .opt_usize(key)?
                .and_then(|id| u32::try_from(id).ok())
                .and_then(|id| vocab.tokenizer.id_to_token(id))
                .unwrap_or_default())
        };
        let chat_template = match md.opt_string("tokenizer.chat_template")? {
            Some(source) => Some(crate::chat::ChatTemplate {
                source: source.to_owned(),
                bos_token: token_text("tokenizer.ggml.bos_token_id")?,
                eos_token: token_text("tokenizer.ggml.eos_token_id")?,
            }),
            None => None,
        };
        let device = opts.device.open()?;

        // The engine's own kernels only on the CPU, and only when asked: other devices (and
        // `Kernels::Generic`) keep the file's quantization for candle's kernels.
        let own = device.is_cpu() && opts.kernels == Kernels::Own;
        let requantize = opts.requantize_q8_0 && own;
        let (mut transformer, converted) = crate::transformer::load::from_gguf(
            md,
            &content,
            &mut reader,
            &device,
            requantize,
            own,
        )?;
        transformer.candle_attention = !own;
        transformer.config.kv_dtype = opts.precision.dtype(&device, transformer.config.dtype);
        let quantization = if converted > 0 {
            tracing::debug!(converted, "requantized tensors to Q8_0");
            format!("{file_quantization} (requantized to Q8_0)")
        } else {
            file_quantization
        };
        let context_length = transformer.config.context_length;
        let arithmetic = with_precision(
            &crate::arithmetic::describe(&transformer, &quantization),
            transformer.config.kv_dtype,
        );
        let weights = Weights::new(transformer);
        let info = ModelInfo {
            architecture,
            name,
            file_size,
            context_length,
            vocab_size: vocab.vocab_size,
            quantization,
            arithmetic,
        };
        tracing::info!(
            path = %path.display(),
            name = info.name.as_deref().unwrap_or("-"),
            quantization = %info.quantization,
            context_length = info.context_length,
            tokenizer_ms,
            load_ms = started.elapsed().as_millis(),
            "model loaded"
        );
        Ok(Model {
            weights,
            tokenizer: vocab.tokenizer,
            info,
            stop_ids: vocab.stop_ids,
            device,
            chat_template,
            adapters: crate::adapter::Adapters::default(),
        })
    }

    /// Facts about the loaded model.
    pub fn info(&self) -> &ModelInfo {
        &self.info
    }

    /// The tokenizer built from the file's vocabulary; `encode(text, true)` adds BOS when the
    /// file asks for it (`tokenizer.ggml.add_bos_token`).
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }
}

/// `arithmetic` with the attention's precision named when it is not `f32`.
fn with_precision(arithmetic: &str, kv: DType) -> String {
    match kv {
        DType::F32 => arithmetic.to_owned(),
        other => format!("{arithmetic}; KV cache and attention in {}", other.as_str()),
    }
}

/// Refuses `path` on `device` when its estimate for `work` exceeds what the device has free
/// (with a GPU's context and kernels counted).
fn check_fits(path: &Path, device: Device, work: crate::Workload) -> Result<(), EngineError> {
    let estimate = crate::memory_estimate(path, work)?;
    let Some(memory) = device.memory() else {
        return Ok(());
    };
    let overhead = if device.is_cpu() {
        0
    } else {
        crate::CUDA_OVERHEAD
    };
    let needed = estimate.total().saturating_add(overhead);
    if needed > memory.free {
        return Err(EngineError::DoesNotFit {
            path: path.to_path_buf(),
            device: device.to_string(),
            needed,
            free: memory.free,
            total: memory.total,
        });
    }
    Ok(())
}

/// Names the file's quantization: llama.cpp's `general.file_type` when known (it tells Q4_K_M
/// from Q4_K_S), otherwise the storage type holding most weight-matrix elements.
pub(crate) fn quantization_name(
    md: Metadata<'_>,
    content: &Content,
) -> Result<String, EngineError> {
    if let Some(name) = md.opt_usize("general.file_type")?.and_then(file_type_name) {
        return Ok(name.to_owned());
    }
    let mut elements: Vec<(GgmlDType, usize)> = Vec::new();
    for info in content
        .tensor_infos
        .values()
        .filter(|i| i.shape.rank() == 2)
    {
        let count = info.shape.elem_count();
        match elements.iter_mut().find(|(d, _)| *d == info.ggml_dtype) {
            Some((_, total)) => *total += count,
            None => elements.push((info.ggml_dtype, count)),
        }
    }
    Ok(elements
        .into_iter()
        .max_by_key(|(_, count)| *count)
        .map_or("unknown", |(dtype, _)| dtype_name(dtype))
        .to_owned())
}

/// llama.cpp's `llama_ftype` numbers (`general.file_type`) for the common formats.
fn file_type_name(file_type: usize) -> Option<&'static str> {
    Some(match file_type {
        0 => "F32",
        1 => "F16",
        2 => "Q4_0",
        3 => "Q4_1",
        7 => "Q8_0",
        8 => "Q5_0",
        9 => "Q5_1",
        10 => "Q2_K",
        11 => "Q3_K_S",
        12 => "Q3_K_M",
        13 => "Q3_K_L",
        14 => "Q4_K_S",
        15 => "Q4_K_M",
        16 => "Q5_K_S",
        17 => "Q5_K_M",
        18 => "Q6_K",
        32 => "BF16",
        _ => return None,
    })
}

fn dtype_name(dtype: GgmlDType) -> &'static str {
    match dtype {
        GgmlDType::F32 => "F32",
        GgmlDType::F16 => "F16",
        GgmlDType::BF16 => "BF16",
        GgmlDType::Q4_0 => "Q4_0",
        GgmlDType::Q4_1 => "Q4_1",
        GgmlDType::Q5_0 => "Q5_0",
        GgmlDType::Q5_1 => "Q5_1",
        GgmlDType::Q8_0 => "Q8_0",
        GgmlDType::Q8_1 => "Q8_1",
        GgmlDType::Q2K => "Q2_K",
        GgmlDType::Q3K => "Q3_K",
        GgmlDType::Q4K => "Q4_K",
        GgmlDType::Q5K => "Q5_K",
        GgmlDType::Q6K => "Q6_K",
        GgmlDType::Q8K => "Q8_K",
    }
}

#[cfg(test)]
mod generic_tests;
#[cfg(test)]
mod tests;
