//! Loading a Hugging Face model folder: `config.json`, `tokenizer.json` (and, if present,
//! `tokenizer_config.json`), and one or many `*.safetensors` files in f32, f16 or bf16.
//!
//! The weights run in f32 on the CPU (in their own dtype on a GPU), through the engine's own
//! transformer (`crate::transformer`). Architectures: `model_type` `llama` and `mistral` (the
//! Llama family), `qwen2`, and `gemma3_text` / `gemma3` (Gemma 3's language model); others are
//! refused with the supported list. The tokenizer is the
//! folder's own; generation stops at the config's `eos_token_id`(s) and the usual end-of-turn
//! markers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Tensor};
use serde::Deserialize;
use tokenizers::Tokenizer;

use crate::weights::Weights;
use crate::{EngineError, Model, ModelInfo};

/// `model_type` values of `config.json` this loader runs.
pub const SUPPORTED_MODEL_TYPES: [&str; 5] = ["llama", "mistral", "qwen2", "gemma3_text", "gemma3"];

#[derive(Deserialize)]
struct Common {
    model_type: Option<String>,
    #[serde(default)]
    eos_token_id: Option<serde_json::Value>,
    torch_dtype: Option<String>,
}

fn folder_error(path: &Path, problem: impl Into<String>) -> EngineError {
    EngineError::Folder {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

pub(crate) fn load(dir: &Path, device: &candle_core::Device) -> Result<Model, EngineError> {
    let config_path = dir.join("config.json");
    let config_text = std::fs::read_to_string(&config_path).map_err(|source| EngineError::Io {
        path: config_path.clone(),
        source,
    })?;
    let common: Common = serde_json::from_str(&config_text)
        .map_err(|e| folder_error(&config_path, format!("not a model config: {e}")))?;
    let model_type = common.model_type.clone().unwrap_or_default();
    if !SUPPORTED_MODEL_TYPES.contains(&model_type.as_str()) {
        return Err(folder_error(
            &config_path,
            format!(
                "model_type {model_type:?} is not supported; supported: {}",
                SUPPORTED_MODEL_TYPES.join(", ")
            ),
        ));
    }
    let tokenizer_path = dir.join("tokenizer.json");
    let tokenizer = Tokenizer::from_file(&tokenizer_path)
        .map_err(|e| folder_error(&tokenizer_path, format!("cannot read the tokenizer: {e}")))?;

    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|source| EngineError::Io {
            path: dir.to_path_buf(),
            source,
        })?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    files.sort();
    // A sharded checkpoint names its shards in an index; anything else beside them (such as
    // Mistral's consolidated.safetensors, the same weights again) is not loaded.
    let index = dir.join("model.safetensors.index.json");
    if let Ok(text) = std::fs::read_to_string(&index) {
        let parsed: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| folder_error(&index, format!("not JSON: {e}")))?;
        let shards: std::collections::BTreeSet<&str> = parsed["weight_map"]
            .as_object()
            .ok_or_else(|| folder_error(&index, "has no weight_map"))?
            .values()
            .filter_map(serde_json::Value::as_str)
            .collect();
        files.retain(|f| {
            f.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| shards.contains(n))
        });
        if files.len() != shards.len() {
            return Err(folder_error(
                &index,
                format!(
                    "names {} shard(s); {} are in the folder",
                    shards.len(),
                    files.len()
                ),
            ));
        }
    }
    if files.is_empty() {
        return Err(folder_error(dir, "holds no *.safetensors weights"));
    }
    let mut tensors: HashMap<String, Tensor> = HashMap::new();
    let mut stored = None;
    for file in &files {
        let loaded = candle_core::safetensors::load(file, device).map_err(|source| {
            EngineError::Weights {
                path: file.clone(),
                source: Box::new(source),
            }
        })?;
        for (name, tensor) in loaded {
            stored.get_or_insert(tensor.dtype());
            tensors.insert(name, tensor);
        }
    }
    let stored = stored.unwrap_or(DType::F32);
    // CPU kernels are fastest and exact in f32; a GPU keeps the stored precision.
    let dtype = if device.is_cpu() { DType::F32 } else { stored };
    let config: serde_json::Value = serde_json::from_str(&config_text)
        .map_err(|e| folder_error(&config_path, format!("not JSON: {e}")))?;
    let transformer =
        crate::transformer::load::from_folder(dir, &config_path, &config, tensors, dtype)?;
    let context_length = transformer.config.context_length;
    let weights = Weights::new(transformer);

    let mut stop_ids: Vec<u32> = match &common.eos_token_id {
        Some(serde_json::Value::Number(n)) => n.as_u64().into_iter().collect(),
        Some(serde_json::Value::Array(items)) => {
            items.iter().filter_map(serde_json::Value::as_u64).collect()
        }
        _ => Vec::new(),
    }
    .into_iter()
    .filter_map(|id| u32::try_from(id).ok())
    .collect();
    for marker in crate::tokenizer::END_OF_TURN_TOKENS {
        if let Some(id) = tokenizer.token_to_id(marker) {
            stop_ids.push(id);
        }
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();

    let file_size = files
        .iter()
        .filter_map(|f| std::fs::metadata(f).ok())
        .map(|m| m.len())
        .sum();
    let stored_name = common
        .torch_dtype
        .clone()
        .unwrap_or_else(|| format!("{stored:?}").to_lowercase());
    let quantization = if dtype == stored {
        stored_name.to_uppercase()
    } else {
        format!("{} (computed in f32)", stored_name.to_uppercase())
    };
    let info = ModelInfo {
        architecture: model_type,
        name: dir.file_name().map(|n| n.to_string_lossy().into_owned()),
        file_size,
        context_length,
        vocab_size: tokenizer.get_vocab_size(true),
        arithmetic: crate::arithmetic::describe(&weights.model, &quantization),
        quantization,
    };
    let chat_template = chat_template(dir)?;
    Ok(Model {
        weights,
        tokenizer,
        info,
        stop_ids,
        device: device.clone(),
        chat_template,
        adapters: crate::adapter::Adapters::default(),
    })
}

/// `chat_template` of `tokenizer_config.json` (a string, or a list of named templates of which
/// `default` is taken), with its `bos_token` and `eos_token` (strings or `{"content": ...}`).
fn chat_template(dir: &Path) -> Result<Option<crate::chat::ChatTemplate>, EngineError> {
    let path = dir.join("tokenizer_config.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        return Ok(None);
    };
    let config: serde_json::Value =
        serde_json::from_str(&text).map_err(|e| folder_error(&path, format!("not JSON: {e}")))?;
    let token = |key: &str| match &config[key] {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(o) => o
            .get("content")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned(),
        _ => String::new(),
    };
    let source = match &config["chat_template"] {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Array(items) => items
            .iter()
            .find(|t| t["name"] == "default")
            .and_then(|t| t["template"].as_str())
            .map(str::to_owned),
        _ => None,
    };
    Ok(source.map(|source| crate::chat::ChatTemplate {
        source,
        bos_token: token("bos_token"),
        eos_token: token("eos_token"),
    }))
}
