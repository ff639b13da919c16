//! The engine's own decoder-only transformer: one forward pass for every architecture it runs
//! (the Llama family, Qwen2, Gemma 3), from GGUF or Hugging Face weights alike.
//!
//! Why not candle's model implementations: candle 0.11's quantized Gemma 3 uses SiLU where the
//! model uses GELU and applies its sliding window only within one pass; none of them can apply
//! a LoRA adapter without merging it, run a batch of prompts of different lengths, or return the
//! logits of every position (which log-likelihood scoring wants). This module does all of that
//! in one place, so an architecture differs from another only in its [`Config`].
//!
//! Layout conventions: activations are `(batch, positions, channels)`; queries, keys and values
//! are `(batch, heads, positions, head_dim)`; the KV cache ([`Cache`]) lives outside the weights,
//! so one loaded model serves any number of independent sequences and a copy of a cache costs
//! only reference counts. Norm weights are stored as multiplied (`x̂ · w`): Gemma's `1 + w` is
//! folded in at load, as llama.cpp's converter does.
//!
//! It does not tokenize, sample or decide when to stop (`generate`, `loglik`), and it never
//! reads files (`transformer::load`).
//!
//! Its parts: [`Weight`] and the products through it (`weight`), the KV cache and attention
//! (`attention`), rotary position tables (`rope`), and the load path (`load`); this module holds
//! the configuration, the layers and the forward pass that ties them together.

mod attention;
mod fused;
pub(crate) mod load;
mod rope;
mod weight;

use std::sync::Arc;

use candle_core::quantized::QMatMul;
use candle_core::{DType, Device, Result, Tensor};

use attention::{Attention, LayerKv, attend_cpu, mask};
pub(crate) use attention::{Cache, attention_threads};
use rope::Rope;
use weight::matmul_t;
pub(crate) use weight::{DENSE_CACHE_BYTES, DenseCache, Weight};

/// The families this transformer runs; they differ only in the [`Config`] they load with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Family {
    Llama,
    Qwen2,
    Gemma3,
}

/// The feed-forward gate's activation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Activation {
    /// `x · sigmoid(x)` (Llama, Qwen2).
    Silu,
    /// GELU, tanh approximation (Gemma's `gelu_pytorch_tanh`).
    GeluTanh,
}

/// Sliding-window attention (Gemma 3): most layers see only the last `window` positions and
/// rotate with their own base; every `pattern`-th layer is global.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Sliding {
    pub(crate) window: usize,
    pub(crate) pattern: usize,
    pub(crate) rope_theta: f64,
}

/// Everything that distinguishes one architecture's forward pass from another's.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Config {
    pub(crate) family: Family,
    pub(crate) hidden: usize,
    pub(crate) layers: usize,
    pub(crate) heads: usize,
    pub(crate) kv_heads: usize,
    pub(crate) head_dim: usize,
    pub(crate) rms_eps: f64,
    pub(crate) activation: Activation,
    /// Rotate adjacent channel pairs (llama.cpp's Llama GGUFs, whose query and key rows its
    /// converter permutes) rather than the two halves of each head (everything else).
    pub(crate) rope_interleaved: bool,
    pub(crate) rope_theta: f64,
    /// Per-frequency divisors of the rotation rate (Llama 3.x's `rope_freqs`).
    pub(crate) rope_freq_factors: Option<Vec<f32>>,
    /// Positions are divided by this on global layers (linear rope scaling); 1 for none.
    pub(crate) rope_linear_factor: f64,
    pub(crate) sliding: Option<Sliding>,
    /// Multiplies query·key (usually `1/√head_dim`).
    pub(crate) attention_scale: f64,
    /// Multiplies the token embeddings (Gemma: `√hidden`).
    pub(crate) embedding_scale: Option<f64>,
    /// The most positions a sequence may hold.
    pub(crate) context_length: usize,
    /// The dtype activations are computed in: `f32`, except for Hugging Face weights kept in
    /// half precision on a GPU.
    pub(crate) dtype: DType,
    /// The dtype the KV cache is kept in and attention multiplies in (`LoadOptions::precision`);
    /// a training pass attends in `dtype`, its keys and values never cached.
    pub(crate) kv_dtype: DType,
}

impl Config {
    /// Whether `layer` attends through the sliding window.
    pub(crate) fn is_sliding(&self, layer: usize) -> bool {
        self.sliding
            .as_ref()
            .is_some_and(|s| s.pattern == 0 || !(layer + 1).is_multiple_of(s.pattern))
    }
}

/// A LoRA pair on one projection: `y += scale · (x Aᵀ) Bᵀ`.
#[derive(Debug, Clone)]
pub(crate) struct Lora {
    /// `(rank, in)`.
    pub(crate) a: Tensor,
    /// `(out, rank)`.
    pub(crate) b: Tensor,
    pub(crate) scale: f64,
}

impl Lora {
    /// `scale · B A`, the change the pair makes to the weight matrix.
    pub(crate) fn delta(&self) -> Result<Tensor> {
        self.b.matmul(&self.a)? * self.scale
    }
}

/// How one pass runs: the adapter slot it applies, whether it uses the operations autograd can
/// differentiate, and, for a training pass, its dropout.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pass<'a> {
    pub(crate) adapter: Option<usize>,
    pub(crate) differentiable: bool,
    pub(crate) train: Option<&'a TrainPass>,
}

/// What a training pass adds: LoRA dropout on each adapted projection's input, with masks drawn
/// from `seed` and the projection's site, so a pass can be repeated exactly (a resumed run
/// draws the masks an uninterrupted one draws).
#[derive(Debug, Clone)]
pub(crate) struct TrainPass {
    /// The probability of zeroing an input element (0 for none).
    pub(crate) dropout: f32,
    pub(crate) seed: u64,
    /// The trainer's base matrices in `f32`, kept between steps.
    pub(crate) dense: Option<Arc<DenseCache>>,
    /// Whether the base products may take the engine's own CPU path (`q8::dense`); false
    /// under `Kernels::Generic`, which runs the code a GPU runs.
    pub(crate) own_products: bool,
}

impl TrainPass {
    /// `x` with each element zeroed with probability `dropout` and the rest scaled by
    /// `1 / (1 − dropout)`, as `torch.nn.Dropout` does.
    fn dropout(&self, x: &Tensor, site: u64) -> Result<Tensor> {
        let keep = 1.0 - self.dropout;
        let mut rng = crate::fixture::SplitMix64(
            self.seed ^ site.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD80F_0A7E_0000_0001,
        );
        #[allow(clippy::cast_precision_loss)]
        let mask: Vec<f32> = (0..x.elem_count())
            .map(|_| {
                let unit = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                if unit < self.dropout { 0.0 } else { 1.0 / keep }
            })
            .collect();
        let mask = Tensor::from_vec(mask, x.dims(), x.device())?.to_dtype(x.dtype())?;
        x * mask
    }
}

/// The site key of projection `module` (an index into [`PROJECTIONS`]) of `layer`, for dropout.
fn site_key(layer: usize, module: usize) -> u64 {
    (layer as u64) << 8 | module as u64
}

/// The site key of the output head.
const HEAD_SITE: u64 = u64::MAX;

/// A projection `y = x Wᵀ (+ b)`, with the LoRA pairs of any adapters loaded onto it.
#[derive(Debug, Clone)]
pub(crate) struct Linear {
    pub(crate) weight: Weight,
    pub(crate) bias: Option<Tensor>,
    /// `(adapter slot, pair)`; at most one pair per slot.
    pub(crate) loras: Vec<(usize, Lora)>,
    pub(crate) out_features: usize,
    pub(crate) in_features: usize,
}

impl Linear {
    pub(crate) fn new(weight: Weight, bias: Option<Tensor>) -> Result<Self> {
        let (out_features, in_features) = weight.dims()?;
        Ok(Self {
            weight,
            bias,
            loras: Vec::new(),
            out_features,
            in_features,
        })
    }

    pub(crate) fn dense(weight: Tensor, bias: Option<Tensor>) -> Result<Self> {
        Self::new(Weight::Candle(QMatMul::Tensor(weight)), bias)
    }

    /// The weight matrix in `f32` (dequantized if stored quantized).
    pub(crate) fn dense_weight(&self) -> Result<Tensor> {
        self.weight.dense()
    }

    /// Whether the weight is stored quantized.
    #[cfg(test)]
    pub(crate) fn is_quantized(&self) -> bool {
        matches!(
            self.weight,
            Weight::Q8(_) | Weight::Q4(_) | Weight::Candle(QMatMul::QTensor(_))
        )
    }

    /// `x Wᵀ (+ b)`, plus the pass's adapter pair if this projection has one. In a training
    /// pass the base product is taken in `f32` and differentiable in `x` (`Weight::train_forward`)
    /// and the pair's input goes through dropout keyed by `site`.
    fn forward(&self, x: &Tensor, pass: Pass<'_>, site: u64) -> Result<Tensor> {
        let y = match pass.train {
            Some(train) => {
                if let Some(y) = self.fused_train_forward(x, pass, train)? {
                    return Ok(y);
                }
                self.weight
                    .train_forward(x, train.dense.as_deref(), train.own_products)?
            }
            None => self.weight.forward(x)?,
        };
        self.finish(y, x, pass, site)
    }

    /// A training pass's projection as one autograd node (`fused::projection`: base product,
    /// bias and adapter pair) on the engine's CPU path, for inputs of more rows than a product
    /// streams; `None` where it does not apply (another device or dtype, `Kernels::Generic`, a
    /// streamed product, or an adapter pair under dropout).
    fn fused_train_forward(
        &self,
        x: &Tensor,
        pass: Pass<'_>,
        train: &TrainPass,
    ) -> Result<Option<Tensor>> {
        if !train.own_products
            || !x.device().is_cpu()
            || x.dtype() != DType::F32
            || self.weight.streams(x)
        {
            return Ok(None);
        }
        let lora = pass
            .adapter
            .and_then(|slot| self.loras.iter().find(|(s, _)| *s == slot))
            .map(|(_, lora)| lora);
        if lora.is_some() && train.dropout > 0.0 {
            return Ok(None);
        }
        let w = match train.dense.as_deref() {
            Some(cache) => cache.dense(&self.weight)?.0,
            None => self.weight.dense()?,
        };
        let pair = lora.map(|l| (&l.a, &l.b, l.scale));
        fused::projection(x, &w, self.bias.as_ref(), pair).map(Some)
    }

    /// [`Self::forward`] of several projections of the same input (`sites` theirs), their base
    /// products taken as one where inference allows it (`Weight::forward_many`).
    fn forward_many<const N: usize>(
        linears: [&Self; N],
        x: &Tensor,
        pass: Pass<'_>,
        sites: [u64; N],
    ) -> Result<[Tensor; N]> {
        let joint = match pass.train {
            Some(_) => None,
            None => Weight::forward_many(&linears.map(|l| &l.weight), x)?,
        };
        let mut outs = Vec::with_capacity(N);
        match joint {
            Some(products) => {
                for ((linear, y), site) in linears.iter().zip(products).zip(sites) {
                    outs.push(linear.finish(y, x, pass, site)?);
                }
            }
            None => {
                for (linear, site) in linears.iter().zip(sites) {
                    outs.push(linear.forward(x, pass, site)?);
                }
            }
        }
        outs.try_into()
            .map_err(|_| candle_core::Error::Msg("a projection went missing".to_owned()))
    }

    /// The base product `y` of `x` plus the bias and the pass's adapter pair.
    fn finish(&self, y: Tensor, x: &Tensor, pass: Pass<'_>, site: u64) -> Result<Tensor> {
        let y = match &self.bias {
            Some(bias) => y.broadcast_add(bias)?,
            None => y,
        };
        match pass
            .adapter
            .and_then(|slot| self.loras.iter().find(|(s, _)| *s == slot))
        {
            Some((_, lora)) => {
                let input = match pass.train {
                    Some(train) if train.dropout > 0.0 => train.dropout(x, site)?,
                    _ => x.clone(),
                };
                let down = matmul_t(&input, &lora.a)?;
                y + (matmul_t(&down, &lora.b)? * lora.scale)?
            }
            None => Ok(y),
        }
    }
}

/// RMS normalisation over the last dimension, times `weight`.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl Norm {
    fn forward(&self, x: &Tensor, form: Form) -> Result<Tensor> {
        match form {
            Form::Inference => candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps),
            Form::Fused => fused::rms_norm(x, &self.weight, self.eps),
            Form::Composed => candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps),
        }
    }
}

/// The form a pass's element-wise layers (norms, rotary embedding, softmax, gate) take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Form {
    /// Not differentiable: candle's kernels, and the engine's own on the CPU.
    Inference,
    /// Differentiable, on the CPU in `f32`: each layer one autograd node (`fused`).
    Fused,
    /// Differentiable, composed from candle's operations: another device, or
    /// `Kernels::Generic` (the code a GPU runs).
    Composed,
}

/// One decoder layer.
#[derive(Debug, Clone)]
pub(crate) struct Block {
    pub(crate) attn_norm: Norm,
    pub(crate) q: Linear,
    pub(crate) k: Linear,
    pub(crate) v: Linear,
    pub(crate) o: Linear,
    /// Gemma 3's per-head query and key norms.
    pub(crate) q_norm: Option<Norm>,
    pub(crate) k_norm: Option<Norm>,
    /// Gemma's norms on each sub-layer's output.
    pub(crate) post_attn_norm: Option<Norm>,
    pub(crate) ffn_norm: Norm,
    pub(crate) post_ffn_norm: Option<Norm>,
    pub(crate) gate: Linear,
    pub(crate) up: Linear,
    pub(crate) down: Linear,
}

/// The projections of a block by their Hugging Face (PEFT) module names.
pub const PROJECTIONS: [&str; 7] = [
    "q_proj",
    "k_proj",
    "v_proj",
    "o_proj",
    "gate_proj",
    "up_proj",
    "down_proj",
];

impl Block {
    /// Every projection, mutably.
    pub(crate) fn projections_mut(&mut self) -> [&mut Linear; 7] {
        [
            &mut self.q,
            &mut self.k,
            &mut self.v,
            &mut self.o,
            &mut self.gate,
            &mut self.up,
            &mut self.down,
        ]
    }

    /// The projection with Hugging Face module name `name` (one of [`PROJECTIONS`]).
    pub(crate) fn projection(&self, name: &str) -> Option<&Linear> {
        Some(match name {
            "q_proj" => &self.q,
            "k_proj" => &self.k,
            "v_proj" => &self.v,
            "o_proj" => &self.o,
            "gate_proj" => &self.gate,
            "up_proj" => &self.up,
            "down_proj" => &self.down,
            _ => return None,
        })
    }

    /// The projection with Hugging Face module name `name` (one of [`PROJECTIONS`]).
    pub(crate) fn projection_mut(&mut self, name: &str) -> Option<&mut Linear> {
        Some(match name {
            "q_proj" => &mut self.q,
            "k_proj" => &mut self.k,
            "v_proj" => &mut self.v,
            "o_proj" => &mut self.o,
            "gate_proj" => &mut self.gate,
            "up_proj" => &mut self.up,
            "down_proj" => &mut self.down,
            _ => return None,
        })
    }
}

/// A whole model's weights.
#[derive(Debug, Clone)]
pub(crate) struct Transformer {
    pub(crate) config: Config,
    /// `(vocab, hidden)`; rows are dequantized as they are looked up.
    pub(crate) embedding: Weight,
    pub(crate) blocks: Vec<Block>,
    pub(crate) final_norm: Norm,
    pub(crate) head: Linear,
    global_rope: Rope,
    local_rope: Option<Rope>,
    /// Use the slower operations autograd can differentiate (training), not candle's fused ones.
    pub(crate) differentiable: bool,
    /// Attend with candle's operations even where `attend_cpu` could (for comparing the two).
    pub(crate) candle_attention: bool,
}

/// Which positions' logits a pass returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Logits {
    /// `(batch, vocab)` of the last position.
    Last,
    /// `(batch, positions, vocab)`.
    All,
    /// `(batch, positions − n, vocab)`: every position from the `n`-th of the pass on.
    From(usize),
}

impl Transformer {
    pub(crate) fn assemble(
        config: Config,
        embedding: Weight,
        blocks: Vec<Block>,
        final_norm: Norm,
        head: Linear,
    ) -> Result<Self> {
        let device = match &embedding {
            Weight::Q8(_) | Weight::Q4(_) => Device::Cpu,
            Weight::Candle(QMatMul::QTensor(q)) => q.device(),
            Weight::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.device().clone(),
        };
        let global_rope = Rope::new(
            &config,
            config.rope_theta,
            config.rope_linear_factor,
            config.rope_freq_factors.as_deref(),
            &device,
        )?;
        let local_rope = match &config.sliding {
            Some(s) => Some(Rope::new(&config, s.rope_theta, 1.0, None, &device)?),
            None => None,
        };
        Ok(Self {
            config,
            embedding,
            blocks,
            final_norm,
            head,
            global_rope,
            local_rope,
            differentiable: false,
            candle_attention: false,
        })
    }

    /// Runs `ids` (`(batch, positions)`, `u32`) after what `cache` holds, appending to it, and
    /// returns logits (`f32`) as `logits` asks. `adapter` selects a loaded LoRA adapter's slot.
    pub(crate) fn forward(
        &self,
        ids: &Tensor,
        cache: &mut Cache,
        adapter: Option<usize>,
        logits: Logits,
    ) -> Result<Tensor> {
        let pass = Pass {
            adapter,
            differentiable: self.differentiable,
            train: None,
        };
        self.forward_pass(ids, cache, pass, logits)
    }

    /// The form `pass`'s element-wise layers take on `device`.
    fn form(&self, pass: Pass<'_>, device: &candle_core::Device) -> Form {
        if !pass.differentiable {
            Form::Inference
        } else if device.is_cpu() && self.config.dtype == DType::F32 && !self.candle_attention {
            Form::Fused
        } else {
            Form::Composed
        }
    }

    /// [`Transformer::forward`] as `pass` says. A training pass (`pass.train`) must start on an
    /// empty cache and leaves it empty: its keys and values stay in the autograd graph instead.
    pub(crate) fn forward_pass(
        &self,
        ids: &Tensor,
        cache: &mut Cache,
        pass: Pass<'_>,
        logits: Logits,
    ) -> Result<Tensor> {
        let x = self.final_hidden(ids, cache, pass, logits)?;
        let out = self
            .head
            .forward(&x, pass, HEAD_SITE)?
            .to_dtype(DType::F32)?;
        match logits {
            Logits::Last => out.squeeze(1),
            Logits::All | Logits::From(_) => Ok(out),
        }
    }

    /// The summed negative log-likelihood of `targets` under the logits of the positions from
    /// `first` on of a training pass over `ids` (one sequence, `(1, positions)`): what
    /// [`Transformer::forward_pass`] with [`Logits::From`] and the loss of `train::nll` give.
    /// On the CPU in `f32`, for more positions than a product streams, an output head without
    /// a bias or an adapter pair takes the head and the loss as one autograd node
    /// (`train::nll::head_nll`): the logits (`positions × vocab`, 50 MB for 256 positions of
    /// SmolLM2) are one buffer inside it, never a tensor of the graph with its copies and
    /// zero-filled gradient sums.
    pub(crate) fn training_nll(
        &self,
        ids: &Tensor,
        pass: Pass<'_>,
        first: usize,
        targets: &[u32],
    ) -> Result<Tensor> {
        let Some(train) = pass.train else {
            candle_core::bail!("a training loss outside a training pass");
        };
        let x = self.final_hidden(ids, &mut Cache::default(), pass, Logits::From(first))?;
        let (batch, rows, _) = x.dims3()?;
        let head = &self.head;
        let adapted = pass
            .adapter
            .is_some_and(|slot| head.loras.iter().any(|(s, _)| *s == slot));
        if batch == 1
            && rows > weight::STREAMED_ROWS
            && self.form(pass, x.device()) == Form::Fused
            && train.own_products
            && head.bias.is_none()
            && !adapted
        {
            let w = match train.dense.as_deref() {
                Some(cache) => cache.dense(&head.weight)?.0,
                None => head.weight.dense()?,
            };
            return crate::train::nll::head_nll(&x.squeeze(0)?, &w.to_dtype(DType::F32)?, targets);
        }
        let logits = head.forward(&x, pass, HEAD_SITE)?.to_dtype(DType::F32)?;
        crate::train::nll::response_nll(&logits.squeeze(0)?, targets)
    }

    /// The final norm's output (`(batch, positions, hidden)`) at the positions `logits` names,
    /// before the output head.
    fn final_hidden(
        &self,
        ids: &Tensor,
        cache: &mut Cache,
        pass: Pass<'_>,
        logits: Logits,
    ) -> Result<Tensor> {
        let (batch, steps) = ids.dims2()?;
        if pass.train.is_some() && cache.len != 0 {
            candle_core::bail!("a training pass starts on an empty cache");
        }
        let config = &self.config;
        if cache.pad.len() != batch {
            if cache.len == 0 {
                cache.pad = vec![0; batch];
            } else {
                candle_core::bail!(
                    "a cache of {} rows cannot take a batch of {batch}",
                    cache.pad.len()
                );
            }
        }
        let start = cache.len;
        let total = start + steps;
        if total > config.context_length {
            candle_core::bail!(
                "{total} positions exceed the context length of {}",
                config.context_length
            );
        }
        if cache.layers.len() != self.blocks.len() {
            cache.layers = vec![None; self.blocks.len()];
        }
        let positions: Vec<Vec<u32>> = cache
            .pad
            .iter()
            .map(|&pad| {
                (start..total)
                    .map(|slot| u32::try_from(slot.saturating_sub(pad)).unwrap_or(u32::MAX))
                    .collect()
            })
            .collect();
        let global = self.global_rope.tables(&positions)?;
        let local = match &self.local_rope {
            Some(rope) => Some(rope.tables(&positions)?),
            None => None,
        };
        let device = ids.device();
        // On the CPU (outside training) attention runs without candle ops (`attend_cpu`) and
        // needs no mask.
        let own_attention = device.is_cpu()
            && config.dtype == DType::F32
            && config.kv_dtype == DType::F32
            && !pass.differentiable
            && !self.candle_attention;
        let window = config.sliding.as_ref().map(|s| s.window);
        let (global_mask, local_mask) = if own_attention {
            (None, None)
        } else {
            (
                mask(&cache.pad, start, steps, None, device)?,
                match window {
                    Some(w) => mask(&cache.pad, start, steps, Some(w), device)?,
                    None => None,
                },
            )
        };

        let mut x = self.embedding.embedding(ids)?.to_dtype(config.dtype)?;
        if let Some(scale) = config.embedding_scale {
            x = (x * scale)?;
        }
        for (layer, block) in self.blocks.iter().enumerate() {
            let sliding = config.is_sliding(layer);
            let (rope, layer_mask) = if sliding {
                (local.as_ref().unwrap_or(&global), local_mask.as_ref())
            } else {
                (&global, global_mask.as_ref())
            };
            let attention = Attention {
                start,
                pad: &cache.pad,
                window: if sliding { window } else { None },
                own_attention,
            };
            x = self.block(
                block,
                &x,
                &mut cache.layers[layer],
                rope,
                layer_mask,
                &attention,
                pass,
                layer,
            )?;
        }
        if pass.train.is_none() {
            cache.len = total;
        }
        let x = match logits {
            Logits::Last => x.narrow(1, steps - 1, 1)?,
            Logits::All => x,
            Logits::From(first) if first < steps => x.narrow(1, first, steps - first)?,
            Logits::From(first) => {
                candle_core::bail!("logits from position {first} of a pass of {steps}")
            }
        };
        self.final_norm.forward(&x, self.form(pass, device))
    }

    #[allow(clippy::too_many_arguments)]
    fn block(
        &self,
        block: &Block,
        x: &Tensor,
        cache: &mut Option<Arc<LayerKv>>,
        (cos, sin): &(Tensor, Tensor),
        mask: Option<&Tensor>,
        attention: &Attention<'_>,
        pass: Pass<'_>,
        layer: usize,
    ) -> Result<Tensor> {
        let config = &self.config;
        let (batch, steps, _) = x.dims3()?;
        let (heads, kv_heads, head_dim) = (config.heads, config.kv_heads, config.head_dim);
        let form = self.form(pass, x.device());
        let site = |module: usize| site_key(layer, module);

        let h = block.attn_norm.forward(x, form)?;
        let split = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((batch, steps, n, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let [q, k, v] = Linear::forward_many(
            [&block.q, &block.k, &block.v],
            &h,
            pass,
            [site(0), site(1), site(2)],
        )?;
        let mut q = split(q, heads)?;
        let mut k = split(k, kv_heads)?;
        let v = split(v, kv_heads)?;
        if let Some(norm) = &block.q_norm {
            q = norm.forward(&q, form)?;
        }
        if let Some(norm) = &block.k_norm {
            k = norm.forward(&k, form)?;
        }
        let rotate = |t: &Tensor| -> Result<Tensor> {
            match (config.rope_interleaved, form) {
                (interleaved, Form::Fused) => fused::rope(t, cos, sin, interleaved),
                (true, Form::Inference) => candle_nn::rotary_emb::rope_i(t, cos, sin),
                (true, Form::Composed) => candle_nn::rotary_emb::rope_i_slow(t, cos, sin),
                (false, Form::Inference) => candle_nn::rotary_emb::rope(t, cos, sin),
                (false, Form::Composed) => candle_nn::rotary_emb::rope_slow(t, cos, sin),
            }
        };
        let q = rotate(&q)?;
        let k = rotate(&k)?;
        let slots = attention.start + steps;
        let mut attn = if pass.train.is_some() {
            // Writing the cache in place would cut the graph: a training pass attends to its
            // own keys and values.
            self.attend(block, &q, &k, &v, mask, pass, site(3))?
        } else {
            let (k, v) = (k.to_dtype(config.kv_dtype)?, v.to_dtype(config.kv_dtype)?);
            let kv = LayerKv::append(cache, &k, &v, attention.start, config.context_length)?;
            if attention.own_attention {
                let attended = attend_cpu(
                    &q,
                    &kv,
                    attention.start,
                    attention.pad,
                    attention.window,
                    config.attention_scale,
                )?;
                block.o.forward(&attended, pass, site(3))?
            } else {
                let k = kv.k.narrow(2, 0, slots)?.contiguous()?;
                let v = kv.v.narrow(2, 0, slots)?.contiguous()?;
                self.attend(block, &q, &k, &v, mask, pass, site(3))?
            }
        };
        if let Some(norm) = &block.post_attn_norm {
            attn = norm.forward(&attn, form)?;
        }
        let x = (x + attn)?;

        let h = block.ffn_norm.forward(&x, form)?;
        let [gate, up] =
            Linear::forward_many([&block.gate, &block.up], &h, pass, [site(4), site(5)])?;
        let act = match config.activation {
            Activation::Silu => crate::q8::Gate::Silu,
            Activation::GeluTanh => crate::q8::Gate::GeluTanh,
        };
        let gated = if form == Form::Fused {
            fused::gated(act, &gate, &up)?
        } else if attention.own_attention && gate.dtype() == DType::F32 {
            // Inference on the engine's CPU path: activation and product in one pass.
            let mut values = gate.flatten_all()?.to_vec1::<f32>()?;
            let up_values = up.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
            if values.len() != up_values.len() {
                candle_core::bail!(
                    "a gate of shape {:?} beside an up projection of shape {:?}",
                    gate.dims(),
                    up.dims()
                );
            }
            crate::q8::gate_up(act, &mut values, &up_values);
            Tensor::from_vec(values, gate.shape(), gate.device())?
        } else {
            let gate = match config.activation {
                Activation::Silu => candle_nn::ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
            };
            (gate * up)?
        };
        let mut ffn = block.down.forward(&gated, pass, site(6))?;
        if let Some(norm) = &block.post_ffn_norm {
            ffn = norm.forward(&ffn, form)?;
        }
        x + ffn
    }
}

#[cfg(test)]
mod tests;
