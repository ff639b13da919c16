//! Building a [`Transformer`] from a GGUF file's metadata and tensors, or from a Hugging Face
//! `config.json` and its safetensors.
//!
//! Both paths name tensors the llama.cpp way (`blk.N.attn_q.weight`); [`hf_name`] translates
//! to the Hugging Face names, which differ by family (Llama's `post_attention_layernorm` is the
//! norm before the feed-forward; Gemma's is the norm after attention). What each family needs
//! beyond the Llama block (Qwen2's attention biases, Gemma 3's extra norms, GELU, sliding
//! window, embedding scale) is decided here and recorded in the [`Config`].

use std::collections::HashMap;
use std::io::{Read, Seek};
use std::path::Path;
use std::sync::Arc;

use candle_core::quantized::gguf_file::Content;
use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Tensor};
use serde_json::Value;

use super::{Activation, Block, Config, Family, Linear, Norm, Sliding, Transformer, Weight};
use crate::EngineError;
use crate::gguf::Metadata;

/// The most positions the engine lets a sequence hold, whatever the model was trained for (the
/// rotary tables and attention scores grow with it).
pub(crate) const MAX_CONTEXT: usize = 32_768;

/// Gemma 3's local layers rotate with this base (llama.cpp and transformers agree).
const GEMMA3_LOCAL_ROPE_THETA: f64 = 10_000.0;
/// Every sixth Gemma 3 layer is global.
const GEMMA3_SLIDING_PATTERN: usize = 6;

impl Family {
    pub(crate) fn from_gguf(architecture: &str) -> Option<Self> {
        match architecture {
            "llama" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }

    /// `model_type` values of a Hugging Face `config.json`.
    pub(crate) fn from_model_type(model_type: &str) -> Option<Self> {
        match model_type {
            "llama" | "mistral" => Some(Self::Llama),
            "qwen2" => Some(Self::Qwen2),
            "gemma3_text" | "gemma3" => Some(Self::Gemma3),
            _ => None,
        }
    }
}

/// The Hugging Face name (after the model prefix, e.g. `model.`) of the llama.cpp tensor name
/// `gguf`; `None` for names with no counterpart.
pub(crate) fn hf_name(family: Family, gguf: &str) -> Option<String> {
    match gguf {
        "token_embd.weight" => return Some("embed_tokens.weight".to_owned()),
        "output_norm.weight" => return Some("norm.weight".to_owned()),
        _ => {}
    }
    let rest = gguf.strip_prefix("blk.")?;
    let (layer, part) = rest.split_once('.')?;
    let (module, suffix) = part.split_once('.')?;
    let hf = match (module, family) {
        ("attn_norm", _) => "input_layernorm",
        ("ffn_norm", Family::Gemma3) => "pre_feedforward_layernorm",
        ("ffn_norm", _) => "post_attention_layernorm",
        ("post_attention_norm", Family::Gemma3) => "post_attention_layernorm",
        ("post_ffw_norm", Family::Gemma3) => "post_feedforward_layernorm",
        ("attn_q_norm", Family::Gemma3) => "self_attn.q_norm",
        ("attn_k_norm", Family::Gemma3) => "self_attn.k_norm",
        ("attn_q", _) => "self_attn.q_proj",
        ("attn_k", _) => "self_attn.k_proj",
        ("attn_v", _) => "self_attn.v_proj",
        ("attn_output", _) => "self_attn.o_proj",
        ("ffn_gate", _) => "mlp.gate_proj",
        ("ffn_up", _) => "mlp.up_proj",
        ("ffn_down", _) => "mlp.down_proj",
        _ => return None,
    };
    Some(format!("layers.{layer}.{hf}.{suffix}"))
}

/// Where tensors come from while a model is assembled.
trait TensorSource {
    /// A weight matrix, bias or norm by its llama.cpp name; `Ok(None)` when absent.
    fn matrix(&mut self, name: &str) -> Result<Option<Arc<QTensor>>, EngineError>;
    fn vector(&mut self, name: &str) -> Result<Option<Tensor>, EngineError>;
    /// An error naming the missing tensor `name`.
    fn missing(&self, name: &str) -> EngineError;
    /// Gemma norms stored as `w` to be used as `1 + w` (Hugging Face) rather than folded.
    fn norm_offset(&self) -> f64;
    /// Whether quantized matrices take the engine's own CPU kernels (`Kernels::Own`) where it
    /// has them.
    fn own_kernels(&self) -> bool {
        true
    }
}

struct Gguf<'a, R> {
    path: &'a Path,
    content: &'a Content,
    reader: &'a mut R,
    device: &'a Device,
    requantize: bool,
    own_kernels: bool,
    converted: usize,
}

impl<R: Read + Seek> Gguf<'_, R> {
    fn error(&self, name: &str, source: candle_core::Error) -> EngineError {
        EngineError::Tensor {
            path: self.path.to_path_buf(),
            tensor: name.to_owned(),
            source: Box::new(source),
        }
    }

    fn read(&mut self, name: &str) -> Result<Option<QTensor>, EngineError> {
        if !self.content.tensor_infos.contains_key(name) {
            return Ok(None);
        }
        let tensor = self
            .content
            .tensor(self.reader, name, self.device)
            .map_err(|e| self.error(name, e))?;
        Ok(Some(tensor))
    }
}

impl<R: Read + Seek> TensorSource for Gguf<'_, R> {
    fn matrix(&mut self, name: &str) -> Result<Option<Arc<QTensor>>, EngineError> {
        let Some(tensor) = self.read(name)? else {
            return Ok(None);
        };
        let eligible = self.requantize
            && self
                .content
                .tensor_infos
                .get(name)
                .is_some_and(crate::requantize::is_eligible);
        let tensor = if eligible {
            self.converted += 1;
            tensor
                .dequantize(&Device::Cpu)
                .and_then(|dense| QTensor::quantize(&dense, GgmlDType::Q8_0))
                .map_err(|e| self.error(name, e))?
        } else {
            tensor
        };
        Ok(Some(Arc::new(tensor)))
    }

    fn vector(&mut self, name: &str) -> Result<Option<Tensor>, EngineError> {
        let Some(tensor) = self.read(name)? else {
            return Ok(None);
        };
        let dense = tensor
            .dequantize(self.device)
            .map_err(|e| self.error(name, e))?;
        Ok(Some(dense))
    }

    fn missing(&self, name: &str) -> EngineError {
        EngineError::Tensor {
            path: self.path.to_path_buf(),
            tensor: name.to_owned(),
            source: Box::new(candle_core::Error::Msg(
                "the model needs this tensor and the file does not have it".to_owned(),
            )),
        }
    }

    fn norm_offset(&self) -> f64 {
        0.0
    }

    fn own_kernels(&self) -> bool {
        self.own_kernels
    }
}

struct Folder<'a> {
    path: &'a Path,
    family: Family,
    prefix: String,
    tensors: HashMap<String, Tensor>,
    dtype: DType,
}

impl Folder<'_> {
    fn take(&mut self, gguf: &str) -> Result<Option<Tensor>, EngineError> {
        let name = if gguf == "output.weight" {
            Some("lm_head.weight".to_owned())
        } else {
            hf_name(self.family, gguf).map(|n| format!("{}{n}", self.prefix))
        };
        let Some(name) = name else {
            return Ok(None);
        };
        let tensor = self.tensors.remove(&name).or_else(|| {
            // Multimodal Gemma 3 checkpoints keep the head beside the language model.
            (gguf == "output.weight")
                .then(|| self.tensors.remove(&format!("language_model.{name}")))
                .flatten()
        });
        tensor
            .map(|t| t.to_dtype(self.dtype))
            .transpose()
            .map_err(|source| EngineError::Tensor {
                path: self.path.to_path_buf(),
                tensor: name,
                source: Box::new(source),
            })
    }
}

impl TensorSource for Folder<'_> {
    fn matrix(&mut self, name: &str) -> Result<Option<Arc<QTensor>>, EngineError> {
        // Dense matrices are handed over through `vector`; see `linear`.
        let _ = name;
        Ok(None)
    }

    fn vector(&mut self, name: &str) -> Result<Option<Tensor>, EngineError> {
        self.take(name)
    }

    fn missing(&self, name: &str) -> EngineError {
        let hf = hf_name(self.family, name).map_or_else(
            || "lm_head.weight".to_owned(),
            |n| format!("{}{n}", self.prefix),
        );
        EngineError::Folder {
            path: self.path.to_path_buf(),
            problem: format!("the weights have no tensor {hf} (the model needs it)"),
        }
    }

    fn norm_offset(&self) -> f64 {
        if self.family == Family::Gemma3 {
            1.0
        } else {
            0.0
        }
    }
}

/// A projection, quantized (GGUF) or dense (folder), with its bias when the file has one.
fn linear(source: &mut dyn TensorSource, name: &str) -> Result<Linear, EngineError> {
    let weight = format!("{name}.weight");
    let bias = source.vector(&format!("{name}.bias"))?;
    let tensor_error = |source: candle_core::Error| EngineError::Tensor {
        path: std::path::PathBuf::new(),
        tensor: weight.clone(),
        source: Box::new(source),
    };
    if let Some(q) = source.matrix(&weight)? {
        return Weight::from_qtensor(q, source.own_kernels())
            .and_then(|w| Linear::new(w, bias))
            .map_err(tensor_error);
    }
    match source.vector(&weight)? {
        Some(dense) => Linear::dense(dense, bias).map_err(tensor_error),
        None => Err(source.missing(&weight)),
    }
}

fn norm(
    source: &mut dyn TensorSource,
    name: &str,
    eps: f64,
    required: bool,
) -> Result<Option<Norm>, EngineError> {
    let weight = format!("{name}.weight");
    let Some(w) = source.vector(&weight)? else {
        return if required {
            Err(source.missing(&weight))
        } else {
            Ok(None)
        };
    };
    let offset = source.norm_offset();
    let w = if offset == 0.0 {
        w
    } else {
        // In f32, then back: `1 + w` is not exact in half precision.
        let dtype = w.dtype();
        w.to_dtype(DType::F32)
            .and_then(|w| w + offset)
            .and_then(|w| w.to_dtype(dtype))
            .map_err(|e| EngineError::Tensor {
                path: std::path::PathBuf::new(),
                tensor: weight.clone(),
                source: Box::new(e),
            })?
    };
    #[allow(clippy::cast_possible_truncation)] // epsilons are tiny
    Ok(Some(Norm {
        weight: w,
        eps: eps as f32,
    }))
}

/// Reads every block, the norms and the head, and assembles the model.
fn assemble(
    config: Config,
    source: &mut dyn TensorSource,
    embedding: Weight,
    head: Option<Linear>,
) -> Result<Transformer, EngineError> {
    let eps = config.rms_eps;
    let mut blocks = Vec::with_capacity(config.layers);
    for layer in 0..config.layers {
        let p = |part: &str| format!("blk.{layer}.{part}");
        let required = |source: &mut dyn TensorSource, part: &str| -> Result<Norm, EngineError> {
            let name = p(part);
            norm(source, &name, eps, true)?.ok_or_else(|| source.missing(&name))
        };
        let gemma = config.family == Family::Gemma3;
        let optional = |source: &mut dyn TensorSource, part: &str| {
            if gemma {
                norm(source, &p(part), eps, true)
            } else {
                Ok(None)
            }
        };
        blocks.push(Block {
            attn_norm: required(source, "attn_norm")?,
            q: linear(source, &p("attn_q"))?,
            k: linear(source, &p("attn_k"))?,
            v: linear(source, &p("attn_v"))?,
            o: linear(source, &p("attn_output"))?,
            q_norm: optional(source, "attn_q_norm")?,
            k_norm: optional(source, "attn_k_norm")?,
            post_attn_norm: optional(source, "post_attention_norm")?,
            ffn_norm: required(source, "ffn_norm")?,
            post_ffn_norm: optional(source, "post_ffw_norm")?,
            gate: linear(source, &p("ffn_gate"))?,
            up: linear(source, &p("ffn_up"))?,
            down: linear(source, &p("ffn_down"))?,
        });
    }
    let final_norm = norm(source, "output_norm", eps, true)?
        .ok_or_else(|| source.missing("output_norm.weight"))?;
    let head = match head {
        Some(head) => head,
        // Tied: the embedding table is the head.
        None => Linear::new(embedding.clone(), None).map_err(|e| EngineError::Tensor {
            path: std::path::PathBuf::new(),
            tensor: "token_embd.weight".to_owned(),
            source: Box::new(e),
        })?,
    };
    Transformer::assemble(config, embedding, blocks, final_norm, head).map_err(|e| {
        EngineError::Tensor {
            path: std::path::PathBuf::new(),
            tensor: "(rotary tables)".to_owned(),
            source: Box::new(e),
        }
    })
}

/// The model described by a GGUF file's metadata `md`, reading its tensors from `reader`;
/// `requantize` turns the legacy 4/5-bit matrices into `Q8_0` (see `crate::requantize`).
/// Returns the model and how many tensors were requantized.
pub(crate) fn from_gguf<R: Read + Seek>(
    md: Metadata<'_>,
    content: &Content,
    reader: &mut R,
    device: &Device,
    requantize: bool,
    own_kernels: bool,
) -> Result<(Transformer, usize), EngineError> {
    let path = md.path();
    let architecture = md.string("general.architecture")?;
    let family =
        Family::from_gguf(architecture).ok_or_else(|| EngineError::UnsupportedArchitecture {
            path: path.to_path_buf(),
            found: architecture.to_owned(),
            supported: crate::weights::SUPPORTED_ARCHITECTURES.join(", "),
        })?;
    let key = |k: &str| format!("{architecture}.{k}");
    let hidden = md.usize(&key("embedding_length"))?;
    let heads = md.usize(&key("attention.head_count"))?;
    let kv_heads = md
        .opt_usize(&key("attention.head_count_kv"))?
        .unwrap_or(heads);
    let head_dim = md
        .opt_usize(&key("attention.key_length"))?
        .unwrap_or(hidden / heads.max(1));
    let layers = md.usize(&key("block_count"))?;
    let invalid = |k: &str, expected: &'static str, found: String| EngineError::InvalidMetadata {
        path: path.to_path_buf(),
        key: k.to_owned(),
        expected,
        found,
    };
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(invalid(
            &key("attention.head_count_kv"),
            "a divisor of the head count",
            format!("{kv_heads} (head count {heads})"),
        ));
    }
    if let Some(rotary) = md.opt_usize(&key("rope.dimension_count"))?
        && rotary != head_dim
    {
        return Err(invalid(
            &key("rope.dimension_count"),
            "the head dimension (partial rotary embeddings are not supported)",
            format!("{rotary} (head dimension {head_dim})"),
        ));
    }
    let default_eps = if family == Family::Llama { 1e-5 } else { 1e-6 };
    let rms_eps = md
        .opt_f64(&key("attention.layer_norm_rms_epsilon"))?
        .unwrap_or(default_eps);
    let rope_theta = md.opt_f64(&key("rope.freq_base"))?.unwrap_or(10_000.0);
    let rope_linear_factor = match md.opt_string(&key("rope.scaling.type"))? {
        None | Some("none") => 1.0,
        Some("linear") => md.opt_f64(&key("rope.scaling.factor"))?.unwrap_or(1.0),
        Some(other) => {
            return Err(invalid(
                &key("rope.scaling.type"),
                "none or linear",
                format!("{other:?}"),
            ));
        }
    };
    let context_length = md.usize(&key("context_length"))?.min(MAX_CONTEXT);
    let mut source = Gguf {
        path,
        content,
        reader,
        device,
        requantize,
        own_kernels,
        converted: 0,
    };
    let rope_freq_factors = match source.vector("rope_freqs.weight")? {
        Some(t) => Some(
            t.to_vec1::<f32>()
                .map_err(|e| source.error("rope_freqs.weight", e))?,
        ),
        None => None,
    };
    let (sliding, attention_scale, embedding_scale, activation) = match family {
        Family::Gemma3 => {
            let window = md.usize(&key("attention.sliding_window"))?;
            let pattern = md
                .opt_usize(&key("attention.sliding_window_pattern"))?
                .unwrap_or(GEMMA3_SLIDING_PATTERN);
            // llama.cpp: Gemma 3 27B scales by the hidden size per head, the others by the
            // head dimension (their `query_pre_attn_scalar`).
            #[allow(clippy::cast_precision_loss)]
            let scalar = if layers == 62 {
                (hidden / heads) as f64
            } else {
                head_dim as f64
            };
            #[allow(clippy::cast_precision_loss)]
            let embed = (hidden as f64).sqrt();
            (
                Some(Sliding {
                    window,
                    pattern,
                    rope_theta: GEMMA3_LOCAL_ROPE_THETA,
                }),
                1.0 / scalar.sqrt(),
                Some(embed),
                Activation::GeluTanh,
            )
        }
        #[allow(clippy::cast_precision_loss)]
        _ => (None, 1.0 / (head_dim as f64).sqrt(), None, Activation::Silu),
    };
    let config = Config {
        family,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        rms_eps,
        activation,
        // llama.cpp's converter permutes Llama query/key rows for adjacent-pair rotation.
        rope_interleaved: family == Family::Llama,
        rope_theta,
        rope_freq_factors,
        rope_linear_factor,
        sliding,
        attention_scale,
        embedding_scale,
        context_length,
        dtype: DType::F32,
        kv_dtype: DType::F32,
    };
    let embedding = source
        .matrix("token_embd.weight")?
        .ok_or_else(|| source.missing("token_embd.weight"))?;
    let embedding = Weight::from_qtensor(embedding, own_kernels)
        .map_err(|e| source.error("token_embd.weight", e))?;
    let head = match source.matrix("output.weight")? {
        Some(q) => Some(
            Weight::from_qtensor(q, own_kernels)
                .and_then(|w| Linear::new(w, None))
                .map_err(|e| source.error("output.weight", e))?,
        ),
        None => None,
    };
    let model = assemble(config, &mut source, embedding, head)?;
    Ok((model, source.converted))
}

/// The model a Hugging Face `config.json` (parsed as `config`) describes, from `tensors` (all
/// of the folder's safetensors), computed in `dtype`.
pub(crate) fn from_folder(
    path: &Path,
    config_path: &Path,
    config: &Value,
    tensors: HashMap<String, Tensor>,
    dtype: DType,
) -> Result<Transformer, EngineError> {
    let problem = |problem: String| EngineError::Folder {
        path: config_path.to_path_buf(),
        problem,
    };
    let model_type = config["model_type"].as_str().unwrap_or_default();
    let family = Family::from_model_type(model_type).ok_or_else(|| {
        problem(format!(
            "model_type {model_type:?} is not supported; supported: {}",
            crate::hf::SUPPORTED_MODEL_TYPES.join(", ")
        ))
    })?;
    // Multimodal Gemma 3 keeps the language model's settings in `text_config`.
    let text = if config["text_config"].is_object() {
        &config["text_config"]
    } else {
        config
    };
    let int = |key: &str| -> Result<Option<usize>, EngineError> {
        match &text[key] {
            Value::Null => Ok(None),
            v => v
                .as_u64()
                .and_then(|n| usize::try_from(n).ok())
                .map(Some)
                .ok_or_else(|| problem(format!("{key} is {v}, not a non-negative integer"))),
        }
    };
    let float = |key: &str| -> Result<Option<f64>, EngineError> {
        match &text[key] {
            Value::Null => Ok(None),
            v => v
                .as_f64()
                .map(Some)
                .ok_or_else(|| problem(format!("{key} is {v}, not a number"))),
        }
    };
    let need = |key: &str| -> Result<usize, EngineError> {
        int(key)?.ok_or_else(|| problem(format!("{key} is missing")))
    };
    let hidden = need("hidden_size")?;
    let heads = need("num_attention_heads")?;
    let kv_heads = int("num_key_value_heads")?.unwrap_or(heads);
    let layers = need("num_hidden_layers")?;
    let head_dim = int("head_dim")?.unwrap_or(hidden / heads.max(1));
    if heads == 0 || kv_heads == 0 || heads % kv_heads != 0 {
        return Err(problem(format!(
            "num_key_value_heads {kv_heads} does not divide num_attention_heads {heads}"
        )));
    }
    let gemma = family == Family::Gemma3;
    let rms_eps = float("rms_norm_eps")?.unwrap_or(1e-6);
    let rope_theta = float("rope_theta")?.unwrap_or(if gemma { 1_000_000.0 } else { 10_000.0 });
    let (rope_freq_factors, rope_linear_factor) =
        rope_scaling(&text["rope_scaling"], rope_theta, head_dim).map_err(problem)?;
    let sliding = if gemma {
        let window = need("sliding_window")?;
        // Newer configs list each layer's kind; older ones give the period.
        let pattern = match &text["layer_types"] {
            Value::Array(kinds) => kinds
                .iter()
                .position(|k| k == "full_attention")
                .map_or(0, |i| i + 1),
            _ => int("sliding_window_pattern")?.unwrap_or(GEMMA3_SLIDING_PATTERN),
        };
        Some(Sliding {
            window,
            pattern,
            rope_theta: float("rope_local_base_freq")?.unwrap_or(GEMMA3_LOCAL_ROPE_THETA),
        })
    } else {
        None
    };
    #[allow(clippy::cast_precision_loss)]
    let attention_scale = 1.0
        / float("query_pre_attn_scalar")?
            .unwrap_or(head_dim as f64)
            .sqrt();
    let activation = match text["hidden_activation"]
        .as_str()
        .or_else(|| text["hidden_act"].as_str())
    {
        Some("gelu_pytorch_tanh" | "gelu_tanh" | "gelu") => Activation::GeluTanh,
        Some("silu" | "swish") | None => Activation::Silu,
        Some(other) => return Err(problem(format!("activation {other:?} is not supported"))),
    };
    if text["final_logit_softcapping"].as_f64().is_some()
        || text["attn_logit_softcapping"].as_f64().is_some()
    {
        return Err(problem(
            "logit soft-capping (Gemma 2) is not supported".to_owned(),
        ));
    }
    let context_length = int("max_position_embeddings")?
        .unwrap_or(MAX_CONTEXT)
        .min(MAX_CONTEXT);
    #[allow(clippy::cast_precision_loss)]
    let embedding_scale = gemma.then(|| (hidden as f64).sqrt());
    let tied = text["tie_word_embeddings"]
        .as_bool()
        .or_else(|| config["tie_word_embeddings"].as_bool())
        .unwrap_or(gemma);
    let config = Config {
        family,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        rms_eps,
        activation,
        rope_interleaved: false,
        rope_theta,
        rope_freq_factors,
        rope_linear_factor,
        sliding,
        attention_scale,
        embedding_scale,
        context_length,
        dtype,
        kv_dtype: dtype,
    };
    let prefix = ["model.", "language_model.model.", "model.language_model."]
        .into_iter()
        .find(|p| tensors.contains_key(&format!("{p}embed_tokens.weight")))
        .ok_or_else(|| EngineError::Folder {
            path: path.to_path_buf(),
            problem: "the weights have no model.embed_tokens.weight".to_owned(),
        })?
        .to_owned();
    let mut source = Folder {
        path,
        family,
        prefix,
        tensors,
        dtype,
    };
    let tensor_error = |name: &str, e: candle_core::Error| EngineError::Tensor {
        path: path.to_path_buf(),
        tensor: name.to_owned(),
        source: Box::new(e),
    };
    let embedding = source
        .take("token_embd.weight")?
        .ok_or_else(|| source.missing("token_embd.weight"))?;
    let head = if tied {
        None
    } else {
        let weight = source
            .take("output.weight")?
            .ok_or_else(|| source.missing("output.weight"))?;
        Some(Linear::dense(weight, None).map_err(|e| tensor_error("lm_head.weight", e))?)
    };
    assemble(
        config,
        &mut source,
        Weight::Candle(QMatMul::Tensor(embedding)),
        head,
    )
}

/// Per-frequency divisors and a linear position factor from a `rope_scaling` entry.
fn rope_scaling(
    scaling: &Value,
    theta: f64,
    head_dim: usize,
) -> Result<(Option<Vec<f32>>, f64), String> {
    if scaling.is_null() {
        return Ok((None, 1.0));
    }
    let kind = scaling["rope_type"]
        .as_str()
        .or_else(|| scaling["type"].as_str())
        .unwrap_or("default");
    let number = |key: &str| {
        scaling[key]
            .as_f64()
            .ok_or_else(|| format!("rope_scaling.{key} is missing or not a number"))
    };
    match kind {
        "default" => Ok((None, 1.0)),
        "linear" => Ok((None, number("factor")?)),
        "llama3" => {
            let factor = number("factor")?;
            let low = number("low_freq_factor")?;
            let high = number("high_freq_factor")?;
            let original = number("original_max_position_embeddings")?;
            let (low_wavelen, high_wavelen) = (original / low, original / high);
            #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
            let divisors = (0..head_dim / 2)
                .map(|i| {
                    let inv = 1.0 / theta.powf(2.0 * i as f64 / head_dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / inv;
                    let scaled = if wavelen < high_wavelen {
                        inv
                    } else if wavelen > low_wavelen {
                        inv / factor
                    } else {
                        let smooth = (original / wavelen - low) / (high - low);
                        (1.0 - smooth) * inv / factor + smooth * inv
                    };
                    (inv / scaled) as f32
                })
                .collect();
            Ok((Some(divisors), 1.0))
        }
        other => Err(format!(
            "rope_scaling type {other:?} is not supported (default, linear and llama3 are)"
        )),
    }
}
