//! What a model file or folder is, read from its header and config files alone (no weights
//! loaded): the model registry lists a store of them in milliseconds.

use std::path::Path;

use serde_json::Value;

use crate::EngineError;
use crate::gguf::{Metadata, read_content};
use crate::hf::SUPPORTED_MODEL_TYPES;
use crate::weights::SUPPORTED_ARCHITECTURES;

/// The kind of thing at a path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A GGUF file.
    Gguf,
    /// A Hugging Face model folder (`config.json` and safetensors weights).
    HfFolder,
    /// A PEFT LoRA adapter folder (`adapter_config.json`).
    PeftAdapter,
}

impl Format {
    pub fn id(self) -> &'static str {
        match self {
            Format::Gguf => "gguf",
            Format::HfFolder => "safetensors",
            Format::PeftAdapter => "peft-lora",
        }
    }
}

/// What [`inspect`] found.
#[derive(Debug, Clone, PartialEq)]
pub struct Inspection {
    pub format: Format,
    /// `general.architecture` of a GGUF file, `model_type` of a folder; an adapter's base
    /// architecture is not recorded in its files.
    pub architecture: Option<String>,
    /// `general.name`, when the file has one.
    pub name: Option<String>,
    /// The file's quantization (GGUF) or `torch_dtype` (folder).
    pub quantization: Option<String>,
    /// Elements of every weight tensor (GGUF only: counted from the header).
    pub parameters: Option<u64>,
    /// Bytes on disk (a folder: its files, not recursively).
    pub size_bytes: u64,
    /// Whether this engine can run it (its architecture is supported).
    pub runnable: bool,
    /// An adapter's base model, as its `adapter_config.json` (`base_model_name_or_path`) or
    /// its tuning manifest (`tuning.json`, `plan.base_model`) names it.
    pub base_model: Option<String>,
    /// An adapter's LoRA rank and alpha.
    pub rank: Option<u64>,
    pub alpha: Option<f64>,
    /// Whether a tuning run (`tuning.json`) wrote this adapter and finished.
    pub tuning_finished: Option<bool>,
}

fn io(path: &Path, source: std::io::Error) -> EngineError {
    EngineError::Io {
        path: path.to_path_buf(),
        source,
    }
}

fn folder_error(path: &Path, problem: impl Into<String>) -> EngineError {
    EngineError::Folder {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

pub(crate) fn read_json(path: &Path) -> Result<Value, EngineError> {
    let text = std::fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text).map_err(|e| folder_error(path, format!("not JSON: {e}")))
}

/// Bytes of the files directly inside `dir`.
fn folder_size(dir: &Path) -> Result<u64, EngineError> {
    let mut total = 0;
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let meta = entry.metadata().map_err(|e| io(&entry.path(), e))?;
        if meta.is_file() {
            total += meta.len();
        }
    }
    Ok(total)
}

/// Reads what `path` holds: a GGUF file, a Hugging Face model folder or a PEFT adapter
/// folder. An error names the file and what is wrong with it.
pub fn inspect(path: &Path) -> Result<Inspection, EngineError> {
    let meta = std::fs::metadata(path).map_err(|e| io(path, e))?;
    if meta.is_dir() {
        return inspect_folder(path);
    }
    let (content, _) = read_content(path)?;
    let md = Metadata::new(path, &content.metadata);
    let architecture = md.string("general.architecture")?.to_owned();
    let parameters = content
        .tensor_infos
        .values()
        .map(|info| info.shape.elem_count() as u64)
        .sum();
    Ok(Inspection {
        format: Format::Gguf,
        runnable: SUPPORTED_ARCHITECTURES.contains(&architecture.as_str()),
        architecture: Some(architecture),
        name: md.opt_string("general.name")?.map(str::to_owned),
        quantization: Some(crate::model::quantization_name(md, &content)?),
        parameters: Some(parameters),
        size_bytes: meta.len(),
        base_model: None,
        rank: None,
        alpha: None,
        tuning_finished: None,
    })
}

fn inspect_folder(dir: &Path) -> Result<Inspection, EngineError> {
    let adapter_config = dir.join("adapter_config.json");
    if adapter_config.is_file() {
        let config = read_json(&adapter_config)?;
        let manifest = dir.join("tuning.json");
        let manifest = manifest
            .is_file()
            .then(|| read_json(&manifest))
            .transpose()?;
        let base_model = manifest
            .as_ref()
            .and_then(|m| m["plan"]["base_model"].as_str())
            .or_else(|| config["base_model_name_or_path"].as_str())
            .filter(|s| !s.is_empty())
            .map(str::to_owned);
        let weights = dir.join("adapter_model.safetensors");
        return Ok(Inspection {
            format: Format::PeftAdapter,
            architecture: None,
            name: None,
            quantization: None,
            parameters: None,
            size_bytes: folder_size(dir)?,
            runnable: weights.is_file(),
            base_model,
            rank: config["r"].as_u64(),
            alpha: config["lora_alpha"].as_f64(),
            tuning_finished: manifest.as_ref().and_then(|m| m["finished"].as_bool()),
        });
    }
    let config_path = dir.join("config.json");
    if !config_path.is_file() {
        return Err(folder_error(
            dir,
            "neither a model folder (config.json) nor a LoRA adapter (adapter_config.json)",
        ));
    }
    let config = read_json(&config_path)?;
    let model_type = config["model_type"].as_str().map(str::to_owned);
    let has_weights = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(Result::ok)
        .any(|e| e.path().extension().is_some_and(|x| x == "safetensors"));
    Ok(Inspection {
        format: Format::HfFolder,
        runnable: has_weights
            && model_type
                .as_deref()
                .is_some_and(|t| SUPPORTED_MODEL_TYPES.contains(&t)),
        architecture: model_type,
        name: config["_name_or_path"].as_str().map(str::to_owned),
        quantization: config["torch_dtype"].as_str().map(str::to_owned),
        parameters: None,
        size_bytes: folder_size(dir)?,
        base_model: None,
        rank: None,
        alpha: None,
        tuning_finished: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gguf_fixture_is_described_from_its_header() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("tiny.gguf");
        crate::fixture::write_tiny_llama_gguf(&path, 1).expect("fixture");
        let found = inspect(&path).expect("inspect");
        assert_eq!(found.format, Format::Gguf);
        assert_eq!(found.architecture.as_deref(), Some("llama"));
        assert!(found.runnable);
        assert!(found.parameters.is_some_and(|p| p > 0));
        assert_eq!(
            found.size_bytes,
            std::fs::metadata(&path).expect("meta").len()
        );
    }

    #[test]
    fn folders_are_told_apart_and_junk_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let adapter = dir.path().join("lora");
        std::fs::create_dir(&adapter).expect("mkdir");
        std::fs::write(
            adapter.join("adapter_config.json"),
            r#"{"r": 8, "lora_alpha": 16, "base_model_name_or_path": "base.gguf"}"#,
        )
        .expect("write");
        let found = inspect(&adapter).expect("inspect");
        assert_eq!(found.format, Format::PeftAdapter);
        assert_eq!(found.base_model.as_deref(), Some("base.gguf"));
        assert_eq!((found.rank, found.alpha), (Some(8), Some(16.0)));
        assert!(!found.runnable, "no weights yet");

        let junk = dir.path().join("junk");
        std::fs::create_dir(&junk).expect("mkdir");
        let err = inspect(&junk).expect_err("junk").to_string();
        assert!(err.contains("junk") && err.contains("config.json"), "{err}");

        let not_gguf = dir.path().join("notes.gguf");
        std::fs::write(&not_gguf, b"hello").expect("write");
        let err = inspect(&not_gguf).expect_err("not gguf").to_string();
        assert!(err.contains("notes.gguf"), "{err}");
    }
}
