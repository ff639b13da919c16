//! LoRA training on a loaded base model: the adapter's pairs are candle variables inside the
//! same transformer inference runs (so a trained adapter means at evaluation exactly what it
//! meant in training), the base stays frozen in whatever form it was loaded (a GGUF quantized
//! matrix is dequantized to `f32` for its products, and the trainer keeps those `f32` copies
//! between steps up to `DENSE_CACHE_BYTES`, 1 GiB), and only the response tokens of each sequence
//! count in the loss.
//!
//! A step: for each sequence of the (accumulated) batch, a training pass (`f32` activations,
//! the differentiable forms of RMS norm, rotary embedding and softmax — on the CPU each layer
//! one autograd node, `transformer::fused` — LoRA dropout) gives the
//! summed negative log-likelihood of the response; its gradients are summed over the batch and
//! divided by the batch's response tokens (the loss is the per-token mean over the whole
//! batch), clipped to a global norm, and applied by AdamW exactly as `torch.optim.AdamW` does
//! (decoupled weight decay, bias-corrected moments). Everything random — the initial `A`
//! matrices and every dropout mask — comes from seeds, so a run that is stopped and resumed
//! from its state ([`LoraTrainer::save_state`]) ends with the very adapter an uninterrupted one
//! ends with.
//!
//! What it writes: a PEFT adapter (`adapter_config.json`, `adapter_model.safetensors` with
//! PEFT's tensor names) that `peft.PeftModel.from_pretrained` loads onto the Hugging Face form of
//! the base, and that [`Model::load_adapter`] loads back. Training runs on the CPU.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use candle_core::{DType, Tensor, Var};

use crate::fixture::SplitMix64;
use crate::transformer::{DenseCache, Lora, PROJECTIONS, Pass, TrainPass};
use crate::{AdapterInfo, EngineError, Model};

/// The adapter to train.
#[derive(Debug, Clone, PartialEq)]
pub struct LoraSpec {
    /// Rank `r` of each pair.
    pub rank: usize,
    /// `lora_alpha`: the pair's output is scaled by `alpha / r`.
    pub alpha: f64,
    /// Dropout on each adapted projection's input (0 for none).
    pub dropout: f64,
    /// Hugging Face module names to adapt, e.g. `["q_proj", "v_proj"]` (see [`PROJECTIONS`]).
    pub targets: Vec<String>,
}

/// AdamW's settings other than the learning rate (which a schedule gives each step).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamWSettings {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// Gradients are scaled down to this global norm when longer (0 for no clipping).
    pub max_grad_norm: f64,
}

impl Default for AdamWSettings {
    /// PyTorch's AdamW defaults with Hugging Face Trainer's clipping at norm 1.
    fn default() -> Self {
        Self {
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            max_grad_norm: 1.0,
        }
    }
}

/// One training sequence: the prompt's tokens followed by the response's; only the response
/// (from `response_start` on) counts in the loss.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sequence {
    pub ids: Vec<u32>,
    pub response_start: usize,
}

impl Sequence {
    /// The tokens the loss counts.
    pub fn response_tokens(&self) -> usize {
        self.ids.len().saturating_sub(self.response_start)
    }
}

/// What one optimizer step did.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepStats {
    /// The mean negative log-likelihood per response token, before the update.
    pub loss: f64,
    /// Response tokens in the batch.
    pub tokens: usize,
    /// All tokens the passes ran (prompts included).
    pub tokens_seen: usize,
    /// The gradients' global norm before clipping.
    pub grad_norm: f64,
}

/// One trained matrix: half of a LoRA pair.
#[derive(Debug)]
struct Param {
    /// PEFT's name for it (`base_model.model.model.layers.3.self_attn.q_proj.lora_A.weight`).
    name: String,
    var: Var,
    /// Whether it is the `B` half of a query or key projection of a model whose rows are
    /// permuted as llama.cpp's converter permutes them (un-permuted when written for PEFT).
    permuted_rows: Option<usize>,
    /// AdamW's first and second moments.
    m: Vec<f32>,
    v: Vec<f32>,
}

/// A LoRA adapter being trained on a [`Model`]; made by [`Model::start_lora`].
#[derive(Debug)]
pub struct LoraTrainer {
    name: String,
    slot: usize,
    spec: LoraSpec,
    adamw: AdamWSettings,
    params: Vec<Param>,
    /// Optimizer steps taken.
    steps: u64,
    /// The architecture's `head_dim / 2`, for un-permuting query and key rows.
    half_head: usize,
    /// The base matrices in `f32`, kept between steps up to a budget.
    dense: Arc<DenseCache>,
}

fn training_error(problem: impl Into<String>) -> EngineError {
    EngineError::Training {
        problem: problem.into(),
    }
}

fn step_error(what: &str) -> impl FnOnce(candle_core::Error) -> EngineError + '_ {
    move |source| EngineError::TrainingStep {
        what: what.to_owned(),
        source: Box::new(source),
    }
}

fn module_group(module: &str) -> &'static str {
    match module {
        "gate_proj" | "up_proj" | "down_proj" => "mlp",
        _ => "self_attn",
    }
}

impl Model {
    /// Adds a fresh LoRA adapter `name` to train: `A` drawn as PEFT draws it (uniform in
    /// `±1/√in`, from `seed`), `B` zero, so it starts as the identity. Passes use it after
    /// [`Model::use_adapter`]; the trainer's steps change it in place.
    pub fn start_lora(
        &mut self,
        name: &str,
        spec: &LoraSpec,
        adamw: AdamWSettings,
        seed: u64,
    ) -> Result<LoraTrainer, EngineError> {
        if self.adapters.loaded.iter().any(|a| a.name == name) {
            return Err(training_error(format!(
                "an adapter named {name:?} is already loaded"
            )));
        }
        if spec.rank == 0 {
            return Err(training_error("the rank r must be at least 1"));
        }
        if !(0.0..1.0).contains(&spec.dropout) {
            return Err(training_error(format!(
                "dropout {} is outside [0, 1)",
                spec.dropout
            )));
        }
        let mut targets: Vec<&'static str> = Vec::new();
        for target in &spec.targets {
            let Some(known) = PROJECTIONS.iter().find(|p| *p == target) else {
                return Err(training_error(format!(
                    "target module {target:?} is not one of {}",
                    PROJECTIONS.join(", ")
                )));
            };
            if !targets.contains(known) {
                targets.push(known);
            }
        }
        if targets.is_empty() {
            return Err(training_error("no target modules"));
        }
        let config = self.weights.model.config.clone();
        if config.dtype != DType::F32 {
            return Err(training_error(
                "training needs a model whose activations are f32",
            ));
        }
        let slot = self.adapters.loaded.len();
        #[allow(clippy::cast_precision_loss)]
        let scale = spec.alpha / spec.rank as f64;
        let device = self.device.clone();
        let model = Arc::make_mut(&mut self.weights.model);
        let mut params = Vec::new();
        for (layer, block) in model.blocks.iter_mut().enumerate() {
            for module in PROJECTIONS {
                if !targets.contains(&module) {
                    continue;
                }
                let Some(linear) = block.projection_mut(module) else {
                    continue;
                };
                let (out, input) = (linear.out_features, linear.in_features);
                let index = PROJECTIONS.iter().position(|p| *p == module).unwrap_or(0);
                let mut rng = SplitMix64(
                    seed ^ ((layer as u64) << 8 | index as u64).wrapping_mul(0xA24B_AED4_963E_E407),
                );
                #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
                let bound = (1.0 / (input as f64).sqrt()) as f32;
                let a = Var::from_vec(
                    rng.matrix(spec.rank, input, bound),
                    (spec.rank, input),
                    &device,
                )
                .map_err(step_error("initialising an adapter"))?;
                let b = Var::from_vec(vec![0f32; out * spec.rank], (out, spec.rank), &device)
                    .map_err(step_error("initialising an adapter"))?;
                linear.loras.push((
                    slot,
                    Lora {
                        a: a.as_tensor().clone(),
                        b: b.as_tensor().clone(),
                        scale,
                    },
                ));
                let base = format!(
                    "base_model.model.model.layers.{layer}.{}.{module}",
                    module_group(module)
                );
                let permuted = config.rope_interleaved && matches!(module, "q_proj" | "k_proj");
                for (half, var, len) in [("A", a, spec.rank * input), ("B", b, out * spec.rank)] {
                    params.push(Param {
                        name: format!("{base}.lora_{half}.weight"),
                        var,
                        permuted_rows: (permuted && half == "B").then_some(out),
                        m: vec![0.0; len],
                        v: vec![0.0; len],
                    });
                }
            }
        }
        let mut target_names: Vec<String> = targets.iter().map(|t| (*t).to_owned()).collect();
        target_names.sort();
        self.adapters.loaded.push(AdapterInfo {
            name: name.to_owned(),
            path: PathBuf::new(),
            rank: spec.rank,
            alpha: spec.alpha,
            targets: target_names,
            pairs: params.len() / 2,
            base_model: self.info.name.clone(),
            merged: false,
        });
        Ok(LoraTrainer {
            name: name.to_owned(),
            slot,
            spec: spec.clone(),
            adamw,
            params,
            steps: 0,
            half_head: config.head_dim / 2,
            dense: Arc::default(),
        })
    }
}

impl Model {
    /// The training sequence of `prompt` and `response`: the prompt encoded as evaluation
    /// encodes it (BOS where the model wants one), the response encoded on its own and
    /// appended — so the tokens the model learns to write are the tokens it would generate
    /// after that prompt.
    pub fn training_sequence(&self, prompt: &str, response: &str) -> Result<Sequence, EngineError> {
        let mut ids = self.encode_prompt(prompt)?;
        let response_start = ids.len();
        let encoding = self
            .tokenizer
            .encode_fast(response, false)
            .map_err(|source| EngineError::Tokenize {
                what: "encoding a response",
                source,
            })?;
        if encoding.get_ids().is_empty() {
            return Err(EngineError::EmptyContinuation {
                text: response.to_owned(),
            });
        }
        ids.extend_from_slice(encoding.get_ids());
        Ok(Sequence {
            ids,
            response_start,
        })
    }
}

impl LoraTrainer {
    /// The adapter's name on the model.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Optimizer steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Trained numbers in all.
    pub fn parameter_count(&self) -> usize {
        self.params.iter().map(|p| p.m.len()).sum()
    }

    /// The summed negative log-likelihood of `sequence`'s response and the autograd graph
    /// behind it.
    fn sequence_nll(
        &self,
        model: &Model,
        sequence: &Sequence,
        train: &TrainPass,
    ) -> Result<Tensor, EngineError> {
        let len = sequence.ids.len();
        if sequence.response_start == 0 || sequence.response_start >= len {
            return Err(training_error(format!(
                "a sequence of {len} tokens with its response from token {}: it needs a \
                 prompt and a response",
                sequence.response_start
            )));
        }
        let context = model.weights.model.config.context_length;
        if len > context {
            return Err(training_error(format!(
                "a sequence of {len} tokens exceeds the context of {context}"
            )));
        }
        let error = step_error("the training pass");
        let input = Tensor::new(&sequence.ids[..len - 1], &model.device)
            .and_then(|t| t.unsqueeze(0))
            .map_err(step_error("the training pass"))?;
        let pass = Pass {
            adapter: Some(self.slot),
            differentiable: true,
            train: Some(train),
        };
        let targets = &sequence.ids[sequence.response_start..];
        model
            .weights
            .model
            .training_nll(&input, pass, sequence.response_start - 1, targets)
            .map_err(error)
    }

    /// The per-sequence dropout settings of micro-batch `index` of a step seeded `seed`.
    fn train_pass(&self, model: &Model, seed: u64, index: usize) -> TrainPass {
        #[allow(clippy::cast_possible_truncation)]
        let dropout = self.spec.dropout as f32;
        TrainPass {
            dropout,
            seed: seed ^ (index as u64 + 1).wrapping_mul(0xD6E8_FEB8_6659_FD93),
            dense: Some(Arc::clone(&self.dense)),
            own_products: !model.weights.model.candle_attention,
        }
    }

    /// The summed response NLL of `batch`, its response tokens, and the gradient of the sum
    /// for every trained matrix (in [`LoraTrainer::values`]' order). `seed` draws the dropout
    /// masks.
    pub fn gradients(
        &self,
        model: &Model,
        batch: &[Sequence],
        seed: u64,
    ) -> Result<(f64, usize, Vec<Vec<f32>>), EngineError> {
        let mut sums: Vec<Vec<f32>> = self.params.iter().map(|p| vec![0.0; p.m.len()]).collect();
        let mut total = 0f64;
        let mut tokens = 0;
        for (index, sequence) in batch.iter().enumerate() {
            let train = self.train_pass(model, seed, index);
            let nll = self.sequence_nll(model, sequence, &train)?;
            total += f64::from(
                nll.to_scalar::<f32>()
                    .map_err(step_error("reading the loss"))?,
            );
            tokens += sequence.response_tokens();
            let grads = nll.backward().map_err(step_error("the backward pass"))?;
            for (param, sum) in self.params.iter().zip(&mut sums) {
                if let Some(grad) = grads.get(param.var.as_tensor()) {
                    let grad = grad
                        .flatten_all()
                        .and_then(|g| g.to_vec1::<f32>())
                        .map_err(step_error("reading a gradient"))?;
                    for (s, g) in sum.iter_mut().zip(grad) {
                        *s += g;
                    }
                }
            }
        }
        Ok((total, tokens, sums))
    }

    /// The mean response NLL per token of `batch` without dropout or any update (validation).
    pub fn loss(&self, model: &Model, batch: &[Sequence]) -> Result<f64, EngineError> {
        let train = TrainPass {
            dropout: 0.0,
            seed: 0,
            dense: Some(Arc::clone(&self.dense)),
            own_products: !model.weights.model.candle_attention,
        };
        let mut total = 0f64;
        let mut tokens = 0;
        for sequence in batch {
            let nll = self.sequence_nll(model, sequence, &train)?;
            total += f64::from(
                nll.to_scalar::<f32>()
                    .map_err(step_error("reading the loss"))?,
            );
            tokens += sequence.response_tokens();
        }
        #[allow(clippy::cast_precision_loss)]
        let mean = if tokens == 0 {
            0.0
        } else {
            total / tokens as f64
        };
        Ok(mean)
    }

    /// One optimizer step over `batch` (gradient accumulation over its sequences) at learning
    /// rate `lr`; `seed` draws the dropout masks.
    pub fn step(
        &mut self,
        model: &Model,
        batch: &[Sequence],
        lr: f64,
        seed: u64,
    ) -> Result<StepStats, EngineError> {
        let (total, tokens, mut grads) = self.gradients(model, batch, seed)?;
        if tokens == 0 {
            return Err(training_error("a step over no response tokens"));
        }
        #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation)]
        let per_token = 1.0 / tokens as f32;
        let mut norm_sq = 0f64;
        for grad in &mut grads {
            for g in grad.iter_mut() {
                *g *= per_token;
                norm_sq += f64::from(*g) * f64::from(*g);
            }
        }
        let grad_norm = norm_sq.sqrt();
        let max = self.adamw.max_grad_norm;
        if max > 0.0 && grad_norm > max {
            // As torch.nn.utils.clip_grad_norm_: scale by max / (norm + 1e-6).
            #[allow(clippy::cast_possible_truncation)]
            let factor = (max / (grad_norm + 1e-6)) as f32;
            for g in grads.iter_mut().flatten() {
                *g *= factor;
            }
        }
        self.steps += 1;
        let AdamWSettings {
            beta1,
            beta2,
            eps,
            weight_decay,
            ..
        } = self.adamw;
        #[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
        let t = self.steps as i32;
        let correction1 = 1.0 - beta1.powi(t);
        let correction2 = 1.0 - beta2.powi(t);
        #[allow(clippy::cast_possible_truncation)]
        let (b1, b2, decay, step_size, root2, eps) = (
            beta1 as f32,
            beta2 as f32,
            (1.0 - lr * weight_decay) as f32,
            (lr / correction1) as f32,
            correction2.sqrt() as f32,
            eps as f32,
        );
        for (param, grad) in self.params.iter_mut().zip(grads) {
            let tensor = param.var.as_tensor();
            let mut w = tensor
                .flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(step_error("reading a parameter"))?;
            for (((w, g), m), v) in w
                .iter_mut()
                .zip(grad)
                .zip(param.m.iter_mut())
                .zip(param.v.iter_mut())
            {
                *w *= decay;
                *m = b1 * *m + (1.0 - b1) * g;
                *v = b2 * *v + (1.0 - b2) * g * g;
                let denom = v.sqrt() / root2 + eps;
                *w -= step_size * *m / denom;
            }
            let updated = Tensor::from_vec(w, tensor.dims(), tensor.device())
                .map_err(step_error("updating a parameter"))?;
            param
                .var
                .set(&updated)
                .map_err(step_error("updating a parameter"))?;
        }
        #[allow(clippy::cast_precision_loss)]
        let loss = total / tokens as f64;
        Ok(StepStats {
            loss,
            tokens,
            tokens_seen: batch.iter().map(|s| s.ids.len() - 1).sum(),
            grad_norm,
        })
    }

    /// Every trained matrix by PEFT name with its values (row-major), in a fixed order.
    pub fn values(&self) -> Result<Vec<(String, Vec<f32>)>, EngineError> {
        self.params
            .iter()
            .map(|p| {
                let values = p
                    .var
                    .as_tensor()
                    .flatten_all()
                    .and_then(|t| t.to_vec1::<f32>())
                    .map_err(step_error("reading a parameter"))?;
                Ok((p.name.clone(), values))
            })
            .collect()
    }

    /// Sets trained matrix `index` (in [`LoraTrainer::values`]' order) to `values`.
    pub fn set_values(&mut self, index: usize, values: Vec<f32>) -> Result<(), EngineError> {
        let param = self
            .params
            .get(index)
            .ok_or_else(|| training_error(format!("no trained matrix {index}")))?;
        let tensor = param.var.as_tensor();
        let updated = Tensor::from_vec(values, tensor.dims(), tensor.device())
            .map_err(step_error("setting a parameter"))?;
        param
            .var
            .set(&updated)
            .map_err(step_error("setting a parameter"))
    }

    /// A matrix as PEFT stores it: `B` of a permuted query or key projection un-permuted.
    fn peft_tensor(&self, param: &Param) -> candle_core::Result<Tensor> {
        let t = param.var.as_tensor().copy()?;
        match param.permuted_rows {
            Some(out) => {
                let rank = self.spec.rank;
                let heads = out / (2 * self.half_head);
                t.reshape((heads, self.half_head, 2, rank))?
                    .transpose(1, 2)?
                    .reshape((out, rank))?
                    .contiguous()
            }
            None => Ok(t),
        }
    }

    /// Writes the adapter as PEFT saves one into `dir` (created if needed):
    /// `adapter_config.json` and `adapter_model.safetensors`, each written whole to a temporary
    /// name first. `base_model` is recorded as `base_model_name_or_path`.
    pub fn save_peft(&self, dir: &Path, base_model: &str) -> Result<(), EngineError> {
        let file_error = |path: &Path, problem: String| EngineError::TrainingFile {
            path: path.to_path_buf(),
            problem,
        };
        std::fs::create_dir_all(dir).map_err(|e| file_error(dir, e.to_string()))?;
        let mut tensors = HashMap::new();
        for param in &self.params {
            let tensor = self
                .peft_tensor(param)
                .map_err(step_error("preparing the adapter"))?;
            tensors.insert(param.name.clone(), tensor);
        }
        let weights = dir.join("adapter_model.safetensors");
        let partial = dir.join("adapter_model.safetensors.tmp");
        candle_core::safetensors::save(&tensors, &partial)
            .map_err(|e| file_error(&partial, e.to_string()))?;
        std::fs::rename(&partial, &weights).map_err(|e| file_error(&weights, e.to_string()))?;
        let mut targets: Vec<&String> = self.spec.targets.iter().collect();
        targets.sort();
        targets.dedup();
        let config = serde_json::json!({
            "peft_type": "LORA",
            "task_type": "CAUSAL_LM",
            "base_model_name_or_path": base_model,
            "r": self.spec.rank,
            "lora_alpha": self.spec.alpha,
            "lora_dropout": self.spec.dropout,
            "target_modules": targets,
            "fan_in_fan_out": false,
            "bias": "none",
            "use_rslora": false,
            "use_dora": false,
            "modules_to_save": null,
            "init_lora_weights": true,
            "inference_mode": true,
        });
        let path = dir.join("adapter_config.json");
        let partial = dir.join("adapter_config.json.tmp");
        let text = serde_json::to_string_pretty(&config).unwrap_or_default();
        std::fs::write(&partial, text).map_err(|e| file_error(&partial, e.to_string()))?;
        std::fs::rename(&partial, &path).map_err(|e| file_error(&path, e.to_string()))
    }

    /// Writes everything a resumed run needs into the file `path` (safetensors): each matrix
    /// as trained, its AdamW moments, and the step count.
    pub fn save_state(&self, path: &Path) -> Result<(), EngineError> {
        let file_error = |problem: String| EngineError::TrainingFile {
            path: path.to_path_buf(),
            problem,
        };
        let mut tensors = HashMap::new();
        let error = step_error("preparing the training state");
        for param in &self.params {
            let dims = param.var.as_tensor().dims().to_vec();
            let value = param
                .var
                .as_tensor()
                .copy()
                .map_err(step_error("copying"))?;
            tensors.insert(param.name.clone(), value);
            for (suffix, moment) in [("exp_avg", &param.m), ("exp_avg_sq", &param.v)] {
                let t = Tensor::from_slice(moment, dims.as_slice(), &candle_core::Device::Cpu)
                    .map_err(step_error("preparing the training state"))?;
                tensors.insert(format!("{}.{suffix}", param.name), t);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        let steps = Tensor::new(&[self.steps as f64], &candle_core::Device::Cpu).map_err(error)?;
        tensors.insert("steps".to_owned(), steps);
        candle_core::safetensors::save(&tensors, path).map_err(|e| file_error(e.to_string()))
    }

    /// Restores what [`LoraTrainer::save_state`] wrote, refusing a state of another shape of
    /// adapter.
    pub fn load_state(&mut self, path: &Path) -> Result<(), EngineError> {
        let file_error = |problem: String| EngineError::TrainingFile {
            path: path.to_path_buf(),
            problem,
        };
        let tensors = candle_core::safetensors::load(path, &candle_core::Device::Cpu)
            .map_err(|e| file_error(e.to_string()))?;
        let read = |name: &str, dims: &[usize]| -> Result<Vec<f32>, EngineError> {
            let t = tensors
                .get(name)
                .ok_or_else(|| file_error(format!("has no tensor {name}")))?;
            if t.dims() != dims {
                return Err(file_error(format!(
                    "{name} has shape {:?}; this adapter's is {dims:?}",
                    t.dims()
                )));
            }
            t.flatten_all()
                .and_then(|t| t.to_vec1::<f32>())
                .map_err(|e| file_error(format!("{name}: {e}")))
        };
        let mut restored = Vec::with_capacity(self.params.len());
        for param in &self.params {
            let dims = param.var.as_tensor().dims().to_vec();
            restored.push((
                read(&param.name, &dims)?,
                read(&format!("{}.exp_avg", param.name), &dims)?,
                read(&format!("{}.exp_avg_sq", param.name), &dims)?,
            ));
        }
        let steps = tensors
            .get("steps")
            .and_then(|t| t.to_vec1::<f64>().ok())
            .and_then(|v| v.first().copied())
            .ok_or_else(|| file_error("has no step count".to_owned()))?;
        for (index, (value, m, v)) in restored.into_iter().enumerate() {
            self.set_values(index, value)?;
            self.params[index].m = m;
            self.params[index].v = v;
        }
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let steps = steps as u64;
        self.steps = steps;
        Ok(())
    }
}

pub(crate) mod nll;
#[cfg(test)]
mod tests;
