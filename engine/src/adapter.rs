//! PEFT LoRA adapters: load `adapter_config.json` and `adapter_model.safetensors` onto a loaded
//! base model, apply them unmerged (several over one base, one chosen per pass) or merge them
//! into the weights and take them out again.
//!
//! What is read: `peft_type` (must be `LORA`), `r`, `lora_alpha`, `use_rslora` (scale
//! `alpha/√r` instead of `alpha/r`), `rank_pattern` and `alpha_pattern` (per-module overrides,
//! matched on the module name's end as PEFT does), `target_modules`, `fan_in_fan_out`,
//! `base_model_name_or_path`. The tensors are named as PEFT saves them
//! (`base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`); each pair must fit its
//! projection (`A` is `(r, in)`, `B` is `(out, r)`) or the adapter is refused naming the tensor
//! and both shapes. `fan_in_fan_out` concerns bases stored `(in, out)` (GPT-2's `Conv1D`); none of
//! the supported architectures is, and PEFT itself ignores the flag for such bases, so it is
//! recorded and otherwise ignored. What this module cannot apply is refused, not skipped:
//! DoRA, trained biases, `modules_to_save`, LoRA on embeddings.
//!
//! A GGUF Llama's query and key rows are permuted by llama.cpp's converter; an adapter trained
//! on the Hugging Face model has its `B` rows for those two projections permuted the same way
//! here, so one adapter gives the same answers over either form of the base.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::Tensor;
use candle_core::quantized::QMatMul;
use serde_json::Value;

use crate::transformer::{Linear, Lora, PROJECTIONS, Transformer, Weight};
use crate::{EngineError, Model};

/// A loaded adapter, as the portal shows it.
#[derive(Debug, Clone, PartialEq)]
pub struct AdapterInfo {
    /// The name it was loaded under (chosen by the caller; the folder's name by default).
    pub name: String,
    pub path: PathBuf,
    /// `r` of the config.
    pub rank: usize,
    pub alpha: f64,
    /// Module names adapted, e.g. `["q_proj", "v_proj"]`.
    pub targets: Vec<String>,
    /// Projections carrying a pair (layers × targets).
    pub pairs: usize,
    /// `base_model_name_or_path` of the config.
    pub base_model: Option<String>,
    /// Whether it is merged into the weights (then every pass uses it).
    pub merged: bool,
}

/// The adapters loaded onto one model.
#[derive(Debug, Clone, Default)]
pub(crate) struct Adapters {
    /// Indexed by slot.
    pub(crate) loaded: Vec<AdapterInfo>,
}

fn adapter_error(path: &Path, problem: impl Into<String>) -> EngineError {
    EngineError::Adapter {
        path: path.to_path_buf(),
        problem: problem.into(),
    }
}

/// Where a PEFT tensor goes: a layer's projection or the head.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Site {
    Projection { layer: usize, module: &'static str },
    Head,
}

impl Site {
    fn module(&self) -> &'static str {
        match self {
            Site::Projection { module, .. } => module,
            Site::Head => "lm_head",
        }
    }

    fn linear<'a>(&self, model: &'a Transformer) -> Option<&'a Linear> {
        match self {
            Site::Projection { layer, module } => model.blocks.get(*layer)?.projection(module),
            Site::Head => Some(&model.head),
        }
    }

    fn linear_mut<'a>(&self, model: &'a mut Transformer) -> Option<&'a mut Linear> {
        match self {
            Site::Projection { layer, module } => {
                model.blocks.get_mut(*layer)?.projection_mut(module)
            }
            Site::Head => Some(&mut model.head),
        }
    }
}

/// The `A` and `B` tensors of one site, by name, as they are found.
type Halves = (Option<(String, Tensor)>, Option<(String, Tensor)>);

/// Parses a PEFT tensor name into its site and whether it is `A` (else `B`).
fn parse_name(name: &str) -> Option<(Site, bool)> {
    let (module_path, which) = name
        .strip_suffix(".lora_A.weight")
        .map(|m| (m, true))
        .or_else(|| name.strip_suffix(".lora_B.weight").map(|m| (m, false)))?;
    if module_path.ends_with("lm_head") {
        return Some((Site::Head, which));
    }
    let module = PROJECTIONS
        .into_iter()
        .find(|p| module_path.ends_with(&format!(".{p}")))?;
    let (_, after) = module_path.rsplit_once("layers.")?;
    let layer = after.split('.').next()?.parse().ok()?;
    Some((Site::Projection { layer, module }, which))
}

/// The value of a `rank_pattern`/`alpha_pattern` entry matching `module_path`, if any (PEFT
/// matches a key against the end of the module's full name).
fn pattern_value(pattern: &Value, module_path: &str) -> Option<f64> {
    pattern.as_object()?.iter().find_map(|(key, value)| {
        let matches = module_path == key || module_path.ends_with(&format!(".{key}"));
        matches.then(|| value.as_f64()).flatten()
    })
}

impl Model {
    /// Loads the PEFT LoRA adapter in folder `dir` under `name`, unmerged. Passes use it only
    /// after [`Model::use_adapter`]. Refuses (changing nothing) an adapter whose tensors do not
    /// fit this model, naming the tensor and both shapes.
    pub fn load_adapter(&mut self, dir: &Path, name: &str) -> Result<AdapterInfo, EngineError> {
        if self.adapters.loaded.iter().any(|a| a.name == name) {
            return Err(adapter_error(
                dir,
                format!("an adapter named {name:?} is already loaded"),
            ));
        }
        let config_path = dir.join("adapter_config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| EngineError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: Value = serde_json::from_str(&text)
            .map_err(|e| adapter_error(&config_path, format!("not JSON: {e}")))?;
        let bad = |problem: String| adapter_error(&config_path, problem);
        match config["peft_type"].as_str() {
            Some("LORA") | None => {}
            Some(other) => {
                return Err(bad(format!(
                    "peft_type is {other:?}; only LORA adapters are supported"
                )));
            }
        }
        if config["use_dora"].as_bool() == Some(true) {
            return Err(bad(
                "use_dora is true; DoRA adapters are not supported".to_owned()
            ));
        }
        if let Some(bias) = config["bias"].as_str()
            && bias != "none"
        {
            return Err(bad(format!(
                "bias is {bias:?}; adapters that train biases are not supported"
            )));
        }
        match &config["modules_to_save"] {
            Value::Null => {}
            Value::Array(items) if items.is_empty() => {}
            other => {
                return Err(bad(format!(
                    "modules_to_save is {other}; adapters that replace whole modules are not \
                     supported"
                )));
            }
        }
        let rank = config["r"]
            .as_u64()
            .and_then(|r| usize::try_from(r).ok())
            .filter(|&r| r > 0)
            .ok_or_else(|| bad(format!("r is {}, not a positive integer", config["r"])))?;
        let alpha = config["lora_alpha"].as_f64().ok_or_else(|| {
            bad(format!(
                "lora_alpha is {}, not a number",
                config["lora_alpha"]
            ))
        })?;
        let rslora = config["use_rslora"].as_bool().unwrap_or(false);
        let base_model = config["base_model_name_or_path"]
            .as_str()
            .map(str::to_owned);

        let weights_path = dir.join("adapter_model.safetensors");
        if !weights_path.is_file() {
            return Err(adapter_error(
                dir,
                "has no adapter_model.safetensors (adapter_model.bin, a pickle, is not read)",
            ));
        }
        let tensors =
            candle_core::safetensors::load(&weights_path, &self.device).map_err(|source| {
                EngineError::Weights {
                    path: weights_path.clone(),
                    source: Box::new(source),
                }
            })?;
        let bad_tensor = |problem: String| adapter_error(&weights_path, problem);
        // Pair up A and B per site.
        let mut halves: HashMap<Site, Halves> = HashMap::new();
        for (tensor_name, tensor) in tensors {
            if tensor_name.contains("lora_embedding_") {
                return Err(bad_tensor(format!(
                    "{tensor_name}: LoRA on embeddings is not supported"
                )));
            }
            let Some((site, is_a)) = parse_name(&tensor_name) else {
                return Err(bad_tensor(format!(
                    "{tensor_name} is not a LoRA tensor of a projection this engine runs \
                     ({} or lm_head)",
                    PROJECTIONS.join(", ")
                )));
            };
            let entry = halves.entry(site).or_default();
            let slot = if is_a { &mut entry.0 } else { &mut entry.1 };
            *slot = Some((tensor_name, tensor));
        }
        if halves.is_empty() {
            return Err(bad_tensor("holds no LoRA tensors".to_owned()));
        }

        let slot = self.adapters.loaded.len();
        let model = &self.weights.model;
        let config_model = &model.config;
        let dtype = config_model.dtype;
        let mut pairs: Vec<(Site, Lora)> = Vec::with_capacity(halves.len());
        let mut targets: Vec<String> = Vec::new();
        let mut sites: Vec<_> = halves.into_iter().collect();
        sites.sort_by_key(|(site, _)| format!("{site:?}"));
        for (site, (a, b)) in sites {
            let (Some((a_name, a)), Some((b_name, b))) = (a, b) else {
                return Err(bad_tensor(format!(
                    "the {} pair of {site:?} lacks its A or B half",
                    site.module()
                )));
            };
            let linear = site.linear(model).ok_or_else(|| {
                bad_tensor(format!(
                    "{a_name}: the model has no such layer (it has {})",
                    model.blocks.len()
                ))
            })?;
            let (out_features, in_features) = (linear.out_features, linear.in_features);
            let module_path = a_name.trim_end_matches(".lora_A.weight");
            #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
            let pair_rank =
                pattern_value(&config["rank_pattern"], module_path).map_or(rank, |r| r as usize);
            let pair_alpha = pattern_value(&config["alpha_pattern"], module_path).unwrap_or(alpha);
            let a_dims = a.dims().to_vec();
            let b_dims = b.dims().to_vec();
            if a_dims != [pair_rank, in_features] {
                return Err(bad_tensor(format!(
                    "{a_name} has shape {a_dims:?}; this model needs [{pair_rank}, {in_features}] \
                     (rank, input features of {})",
                    site.module()
                )));
            }
            if b_dims != [out_features, pair_rank] {
                return Err(bad_tensor(format!(
                    "{b_name} has shape {b_dims:?}; this model needs [{out_features}, \
                     {pair_rank}] (output features of {}, rank)",
                    site.module()
                )));
            }
            let convert = |t: Tensor, name: &str| {
                t.to_dtype(dtype).map_err(|source| EngineError::Tensor {
                    path: weights_path.clone(),
                    tensor: name.to_owned(),
                    source: Box::new(source),
                })
            };
            let a = convert(a, &a_name)?;
            let mut b = convert(b, &b_name)?;
            if config_model.rope_interleaved && matches!(site.module(), "q_proj" | "k_proj") {
                let heads = if site.module() == "q_proj" {
                    config_model.heads
                } else {
                    config_model.kv_heads
                };
                let half = config_model.head_dim / 2;
                b = b
                    .reshape((heads, 2, half, pair_rank))
                    .and_then(|t| t.transpose(1, 2))
                    .and_then(|t| t.reshape((out_features, pair_rank)))
                    .and_then(|t| t.contiguous())
                    .map_err(|source| EngineError::Tensor {
                        path: weights_path.clone(),
                        tensor: b_name.clone(),
                        source: Box::new(source),
                    })?;
            }
            #[allow(clippy::cast_precision_loss)]
            let scale = if rslora {
                pair_alpha / (pair_rank as f64).sqrt()
            } else {
                pair_alpha / pair_rank as f64
            };
            if !targets.iter().any(|t| t == site.module()) {
                targets.push(site.module().to_owned());
            }
            pairs.push((site, Lora { a, b, scale }));
        }
        targets.sort();

        if let (Some(base), Some(ours)) = (&base_model, &self.info.name)
            && !names_agree(base, ours)
        {
            tracing::warn!(
                adapter = %dir.display(),
                adapter_base = %base,
                model = %ours,
                "the adapter names another base model; its shapes fit, so it is loaded"
            );
        }
        let model = Arc::make_mut(&mut self.weights.model);
        let count = pairs.len();
        for (site, lora) in pairs {
            if let Some(linear) = site.linear_mut(model) {
                linear.loras.push((slot, lora));
            }
        }
        let info = AdapterInfo {
            name: name.to_owned(),
            path: dir.to_path_buf(),
            rank,
            alpha,
            targets,
            pairs: count,
            base_model,
            merged: false,
        };
        tracing::info!(
            adapter = %name,
            path = %dir.display(),
            rank,
            alpha,
            pairs = count,
            "LoRA adapter loaded"
        );
        self.adapters.loaded.push(info.clone());
        Ok(info)
    }

    /// Makes passes go through adapter `name` (unmerged), or through the base weights alone
    /// (`None`). Merged adapters are in the weights either way.
    pub fn use_adapter(&mut self, name: Option<&str>) -> Result<(), EngineError> {
        self.weights.adapter = match name {
            None => None,
            // A merged adapter is in the weights already: its pairs must not be added again.
            Some(name) => {
                Some(self.adapter_slot(name)?).filter(|&slot| !self.adapters.loaded[slot].merged)
            }
        };
        // A cache filled through another adapter is not this one's.
        self.weights.clear_kv_cache();
        Ok(())
    }

    /// The adapters loaded, in load order.
    pub fn adapters(&self) -> &[AdapterInfo] {
        &self.adapters.loaded
    }

    /// Adds adapter `name`'s changes into the weight matrices (`W += scale · B A`). Quantized
    /// matrices it touches become dense `f32`. Afterwards every pass includes it, selected or not.
    pub fn merge_adapter(&mut self, name: &str) -> Result<(), EngineError> {
        self.apply_merge(name, true)
    }

    /// Takes a merged adapter back out of the weights (`W -= scale · B A`).
    pub fn unmerge_adapter(&mut self, name: &str) -> Result<(), EngineError> {
        self.apply_merge(name, false)
    }

    fn adapter_slot(&self, name: &str) -> Result<usize, EngineError> {
        self.adapters
            .loaded
            .iter()
            .position(|a| a.name == name)
            .ok_or_else(|| EngineError::UnknownAdapter {
                name: name.to_owned(),
                loaded: if self.adapters.loaded.is_empty() {
                    "none".to_owned()
                } else {
                    self.adapters
                        .loaded
                        .iter()
                        .map(|a| a.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                },
            })
    }

    fn apply_merge(&mut self, name: &str, merge: bool) -> Result<(), EngineError> {
        let slot = self.adapter_slot(name)?;
        let path = self.adapters.loaded[slot].path.clone();
        if self.adapters.loaded[slot].merged == merge {
            return Err(adapter_error(
                &path,
                if merge {
                    format!("{name:?} is already merged")
                } else {
                    format!("{name:?} is not merged")
                },
            ));
        }
        let model = Arc::make_mut(&mut self.weights.model);
        let mut linears: Vec<&mut Linear> = Vec::new();
        for block in &mut model.blocks {
            linears.extend(block.projections_mut());
        }
        linears.push(&mut model.head);
        // Compute every new matrix first, so a failure changes nothing.
        let mut updates: Vec<(usize, Tensor)> = Vec::new();
        for (index, linear) in linears.iter().enumerate() {
            let Some((_, lora)) = linear.loras.iter().find(|(s, _)| *s == slot) else {
                continue;
            };
            let updated = linear
                .dense_weight()
                .and_then(|w| {
                    let delta = lora.delta()?.to_dtype(w.dtype())?;
                    if merge { w + delta } else { w - delta }
                })
                .map_err(|e| adapter_error(&path, format!("merging failed: {e}")))?;
            updates.push((index, updated));
        }
        for (index, weight) in updates {
            linears[index].weight = Weight::Candle(QMatMul::Tensor(weight));
        }
        self.adapters.loaded[slot].merged = merge;
        // The merged adapter is in the weights: its pairs must not be applied on top.
        if merge && self.weights.adapter == Some(slot) {
            self.weights.adapter = None;
        }
        self.weights.clear_kv_cache();
        Ok(())
    }
}

/// Whether a PEFT `base_model_name_or_path` and a model's own name plausibly name the same
/// model: equal once case, separators and any `owner/` or path prefix are ignored.
fn names_agree(base: &str, ours: &str) -> bool {
    let norm = |s: &str| {
        s.rsplit('/')
            .next()
            .unwrap_or(s)
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase()
    };
    let (a, b) = (norm(base), norm(ours));
    a.is_empty() || b.is_empty() || a.contains(&b) || b.contains(&a)
}

#[cfg(test)]
mod tests;
