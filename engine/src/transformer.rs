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

pub(crate) mod load;

use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};

use crate::q8::{Q4Kind, Q4Matrix, Q8Matrix};
use candle_core::{D, DType, Device, Module, Result, Tensor};

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

/// A weight matrix `(out, in)`: the engine's own layouts on the CPU for `Q8_0` and for
/// `Q4_0`/`Q4_1` (`crate::q8`), else candle's (quantized or dense).
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    Q8(Arc<Q8Matrix>),
    Q4(Arc<Q4Matrix>),
    Candle(QMatMul),
}

impl Weight {
    /// The engine's layout where it has a kernel for the tensor's type and device, else
    /// candle's.
    pub(crate) fn from_qtensor(q: Arc<QTensor>) -> Result<Self> {
        if q.device().is_cpu() && q.shape().rank() == 2 {
            let (rows, cols) = q.shape().dims2()?;
            let kind = match q.dtype() {
                GgmlDType::Q4_0 => Some(Q4Kind::Q4_0),
                GgmlDType::Q4_1 => Some(Q4Kind::Q4_1),
                _ => None,
            };
            if q.dtype() == GgmlDType::Q8_0
                && let Some(m) = Q8Matrix::from_q8_0_bytes(rows, cols, &q.data()?)
            {
                return Ok(Self::Q8(Arc::new(m)));
            }
            if let Some(kind) = kind
                && let Some(m) = Q4Matrix::from_gguf_bytes(kind, rows, cols, &q.data()?)
            {
                return Ok(Self::Q4(Arc::new(m)));
            }
        }
        Ok(Self::Candle(QMatMul::from_arc(q)?))
    }

    fn dims(&self) -> Result<(usize, usize)> {
        match self {
            Self::Q8(m) => Ok((m.rows(), m.cols())),
            Self::Q4(m) => Ok((m.rows(), m.cols())),
            Self::Candle(QMatMul::QTensor(q)) => q.shape().dims2(),
            Self::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.dims2(),
        }
    }

    /// `x Wᵀ` for `x` of any rank.
    ///
    /// Every row gets the same bits whatever rows come with it, so a batch of prompts is
    /// answered exactly as each prompt alone. Candle's CPU kernel for `Q6_K` takes a vector dot
    /// product for a single row and repacked tiles for more, which round differently: a single
    /// row goes through the tiles too, paired with a copy of itself.
    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(q @ QMatMul::QTensor(t))
                if t.dtype() == GgmlDType::Q6K
                    && x.device().is_cpu()
                    && x.elem_count() == *x.dims().last().unwrap_or(&0) =>
            {
                let mut dims = x.dims().to_vec();
                let width = dims.pop().unwrap_or(0);
                let row = x.reshape((1, width))?;
                let pair = Tensor::cat(&[&row, &row], 0)?;
                let product = q.forward(&pair)?.narrow(0, 0, 1)?;
                dims.push(product.dim(1)?);
                product.reshape(dims)
            }
            Self::Candle(q) => q.forward(x),
            Self::Q8(m) => own_matmul(x, m.rows(), |input, n, out| m.matmul(input, n, out)),
            Self::Q4(m) => own_matmul(x, m.rows(), |input, n, out| m.matmul(input, n, out)),
        }
    }

    /// `x Wᵀ` for training: computed in `f32` from the matrix dequantized for this product alone
    /// (activations are not rounded to 8 bits, so the loss is smooth in the adapters), and
    /// differentiable in `x` through [`BaseProduct`], which dequantizes the matrix again for the
    /// backward pass rather than keeping it. The matrix itself never gets a gradient.
    fn train_forward(&self, x: &Tensor) -> Result<Tensor> {
        let product = match self.streamed(x, false)? {
            Some(product) => product,
            None => {
                let w = self.dense()?.to_dtype(x.dtype())?;
                matmul_t(&x.detach(), &w)?
            }
        };
        x.apply_op2(
            &product,
            BaseProduct {
                weight: self.clone(),
            },
        )
    }

    /// For a few input rows and a weight in the engine's own layouts: `x Wᵀ` (or, `transposed`,
    /// `x W`) in `f32`, dequantizing one weight row at a time instead of the whole matrix (the
    /// output head of a 262k vocabulary is 670 MB in `f32`; a training pass needs its product
    /// for the few answer positions only). `None` when the dense path is the better one.
    fn streamed(&self, x: &Tensor, transposed: bool) -> Result<Option<Tensor>> {
        let (rows, cols) = self.dims()?;
        let row_of: &(dyn Fn(usize, &mut [f32]) + Sync) = match self {
            Self::Q8(m) => &|r, out| m.dequantize_row(r, out),
            Self::Q4(m) => &|r, out| m.dequantize_row(r, out),
            Self::Candle(_) => return Ok(None),
        };
        let mut dims = x.dims().to_vec();
        let last = dims.len() - 1;
        let width = dims[last];
        let m = x.elem_count() / width.max(1);
        if m > STREAMED_ROWS || !x.device().is_cpu() {
            return Ok(None);
        }
        let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let threads = attention_threads().clamp(1, 8);
        let per = rows.div_ceil(threads);
        // Each thread takes a range of weight rows: forward, it writes those output columns;
        // transposed, it sums its rows' contributions, added up afterwards in thread order.
        let parts: Vec<Vec<f32>> = std::thread::scope(|scope| {
            let input = &input;
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    scope.spawn(move || {
                        let range = (t * per)..((t + 1) * per).min(rows);
                        let mut row = vec![0f32; cols];
                        if transposed {
                            let mut sums = vec![0f32; m * cols];
                            for r in range {
                                row_of(r, &mut row);
                                for i in 0..m {
                                    let g = input[i * rows + r];
                                    if g != 0.0 {
                                        crate::q8::add_scaled(
                                            &mut sums[i * cols..][..cols],
                                            g,
                                            &row,
                                        );
                                    }
                                }
                            }
                            sums
                        } else {
                            let mut out = vec![0f32; m * range.len()];
                            let n = range.len();
                            for (j, r) in range.enumerate() {
                                row_of(r, &mut row);
                                for i in 0..m {
                                    out[i * n + j] =
                                        crate::q8::dot_lanes(&input[i * cols..][..cols], &row);
                                }
                            }
                            out
                        }
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().unwrap_or_default())
                .collect()
        });
        let out_width = if transposed { cols } else { rows };
        let mut out = vec![0f32; m * out_width];
        for (t, part) in parts.iter().enumerate() {
            if transposed {
                if part.len() != out.len() {
                    candle_core::bail!("a product thread failed");
                }
                for (o, p) in out.iter_mut().zip(part) {
                    *o += p;
                }
            } else {
                let start = (t * per).min(rows);
                let n = ((t + 1) * per).min(rows) - start;
                if part.len() != m * n {
                    candle_core::bail!("a product thread failed");
                }
                for i in 0..m {
                    out[i * rows + start..][..n].copy_from_slice(&part[i * n..][..n]);
                }
            }
        }
        dims[last] = out_width;
        Tensor::from_vec(out, dims, x.device())?
            .to_dtype(x.dtype())
            .map(Some)
    }

    /// Rows `ids` (any shape) as `(ids…, cols)` vectors.
    pub(crate) fn embedding(&self, ids: &Tensor) -> Result<Tensor> {
        match self {
            Self::Candle(q) => q.embedding(ids),
            Self::Q8(m) => own_rows(ids, m.rows(), m.cols(), |row, out| {
                m.dequantize_row(row, out);
            }),
            Self::Q4(m) => own_rows(ids, m.rows(), m.cols(), |row, out| {
                m.dequantize_row(row, out);
            }),
        }
    }

    /// The matrix in `f32` (dequantized if stored quantized).
    fn dense(&self) -> Result<Tensor> {
        match self {
            Self::Q8(m) => Tensor::from_vec(m.dequantize(), (m.rows(), m.cols()), &Device::Cpu),
            Self::Q4(m) => Tensor::from_vec(m.dequantize(), (m.rows(), m.cols()), &Device::Cpu),
            Self::Candle(QMatMul::QTensor(q)) => q.dequantize(&q.device()),
            Self::Candle(QMatMul::Tensor(t) | QMatMul::TensorF16(t)) => t.to_dtype(DType::F32),
        }
    }
}

/// The autograd node of a frozen base product `y = x Wᵀ` in training: its forward hands on the
/// product computed outside the graph (its second argument), its backward gives `x` the gradient
/// `∂y · W` (dequantizing `W` on the fly) and the product none.
struct BaseProduct {
    weight: Weight,
}

impl candle_core::CustomOp2 for BaseProduct {
    fn name(&self) -> &'static str {
        "frozen-base-product"
    }

    fn cpu_fwd(
        &self,
        _: &candle_core::CpuStorage,
        _: &candle_core::Layout,
        product: &candle_core::CpuStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::backend::BackendStorage;
        if !layout.is_contiguous() || layout.start_offset() != 0 {
            candle_core::bail!("the base product must be a fresh contiguous tensor");
        }
        Ok((product.try_clone(layout)?, layout.shape().clone()))
    }

    fn bwd(
        &self,
        x: &Tensor,
        _: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        if let Some(grad_x) = self.weight.streamed(grad, true)? {
            return Ok((Some(grad_x.reshape(x.dims())?), None));
        }
        let w = self.weight.dense()?.to_dtype(grad.dtype())?;
        let out = w.dim(0)?;
        let grad_x = grad
            .contiguous()?
            .reshape(((), out))?
            .matmul(&w)?
            .reshape(x.dims())?;
        Ok((Some(grad_x), None))
    }
}

/// Input rows up to which a training product streams the weight row by row
/// ([`Weight::streamed`]) rather than dequantizing it whole.
const STREAMED_ROWS: usize = 16;

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

/// `x Wᵀ` through one of the engine's own kernels: `matmul(input, rows of x, out)` for a
/// weight of `out_rows` rows.
fn own_matmul(
    x: &Tensor,
    out_rows: usize,
    matmul: impl FnOnce(&[f32], usize, &mut [f32]),
) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let last = dims.len() - 1;
    let rows = x.elem_count() / dims[last];
    let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut out = vec![0f32; rows * out_rows];
    matmul(&input, rows, &mut out);
    dims[last] = out_rows;
    Tensor::from_vec(out, dims, x.device())?.to_dtype(x.dtype())
}

/// Rows `ids` of a `(rows, cols)` matrix of the engine's own layouts, dequantized by `row`.
fn own_rows(
    ids: &Tensor,
    rows: usize,
    cols: usize,
    row: impl Fn(usize, &mut [f32]),
) -> Result<Tensor> {
    let list = ids.flatten_all()?.to_vec1::<u32>()?;
    let mut out = vec![0f32; list.len() * cols];
    for (chunk, &id) in out.chunks_exact_mut(cols).zip(&list) {
        let index = id as usize;
        if index >= rows {
            candle_core::bail!("token id {id} is outside the vocabulary of {rows}");
        }
        row(index, chunk);
    }
    let mut dims = ids.dims().to_vec();
    dims.push(cols);
    Tensor::from_vec(out, dims, ids.device())
}

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
            Some(_) => self.weight.train_forward(x)?,
            None => self.weight.forward(x)?,
        };
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

/// `x Wᵀ` for `x` of any rank and `W` of shape `(out, in)`.
fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let last = dims.len() - 1;
    let flat = x.contiguous()?.reshape(((), dims[last]))?;
    let y = flat.matmul(&w.t()?)?;
    dims[last] = w.dim(0)?;
    y.reshape(dims)
}

/// RMS normalisation over the last dimension, times `weight`.
#[derive(Debug, Clone)]
pub(crate) struct Norm {
    pub(crate) weight: Tensor,
    pub(crate) eps: f32,
}

impl Norm {
    fn forward(&self, x: &Tensor, differentiable: bool) -> Result<Tensor> {
        if differentiable {
            candle_nn::ops::rms_norm_slow(x, &self.weight, self.eps)
        } else {
            candle_nn::ops::rms_norm(&x.contiguous()?, &self.weight, self.eps)
        }
    }
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

/// Rotary-embedding tables: `cos` and `sin` of `(positions, head_dim / 2)`.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    fn new(
        config: &Config,
        theta: f64,
        linear_factor: f64,
        factors: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        let half = config.head_dim / 2;
        #[allow(clippy::cast_precision_loss)] // dimensions and positions are small
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let base = 1.0 / theta.powf(2.0 * i as f64 / config.head_dim as f64);
                let factor = factors
                    .and_then(|f| f.get(i))
                    .map_or(1.0, |&f| f64::from(f));
                (base / factor / linear_factor) as f32
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let positions: Vec<f32> = (0..config.context_length).map(|p| p as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::from_vec(positions, (config.context_length, 1), device)?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(config.dtype)?,
            sin: angles.sin()?.to_dtype(config.dtype)?,
        })
    }

    /// The tables for `positions` (one row per batch entry): `(t, half)` when every row uses
    /// the same positions, else `(b, t, half)`.
    fn tables(&self, positions: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let first = &positions[0];
        let contiguous = first.windows(2).all(|w| w[1] == w[0] + 1);
        if positions.iter().all(|p| p == first) && contiguous {
            let start = first[0] as usize;
            return Ok((
                self.cos.narrow(0, start, first.len())?,
                self.sin.narrow(0, start, first.len())?,
            ));
        }
        let flat: Vec<u32> = positions.iter().flatten().copied().collect();
        let index = Tensor::from_vec(flat, positions.len() * first.len(), self.cos.device())?;
        let shape = (positions.len(), first.len(), ());
        Ok((
            self.cos.index_select(&index, 0)?.reshape(shape)?,
            self.sin.index_select(&index, 0)?.reshape(shape)?,
        ))
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

/// The keys and values every layer has seen for a batch of sequences.
///
/// Each layer's are kept in tensors with room to spare (`(batch, kv_heads, capacity,
/// head_dim)`), written in place as positions come, so a decode step copies nothing but its own
/// key and value. A clone shares them until either writes: the writer then takes a copy of its
/// own first (scoring continuations from one prompt's cache relies on this).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    layers: Vec<Option<Arc<LayerKv>>>,
    /// Cache slots filled so far (padding included).
    len: usize,
    /// Left padding of each batch row: slots before it are never attended to.
    pad: Vec<usize>,
}

impl Cache {
    /// An empty cache for a batch whose rows carry `pad` slots of left padding each.
    pub(crate) fn with_padding(pad: Vec<usize>) -> Self {
        Self {
            layers: Vec::new(),
            len: 0,
            pad,
        }
    }

    /// Slots filled so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

/// One layer's keys and values, `(batch, kv_heads, capacity, head_dim)`; the cache's `len`
/// first slots are filled.
#[derive(Debug)]
struct LayerKv {
    k: Tensor,
    v: Tensor,
}

/// Slots are reserved in steps of this many (and the reservation doubles when it runs out).
const CACHE_STEP: usize = 256;

impl LayerKv {
    /// Writes `k` and `v` (`(batch, kv_heads, steps, head_dim)`) at slot `start` of `slot`,
    /// making room or taking a private copy first as needed.
    fn append(
        slot: &mut Option<Arc<LayerKv>>,
        k: &Tensor,
        v: &Tensor,
        start: usize,
        limit: usize,
    ) -> Result<Arc<LayerKv>> {
        let (batch, kv_heads, steps, head_dim) = k.dims4()?;
        let need = start + steps;
        let reserve = |capacity: usize| -> Result<LayerKv> {
            let shape = (batch, kv_heads, capacity, head_dim);
            Ok(LayerKv {
                k: Tensor::zeros(shape, k.dtype(), k.device())?,
                v: Tensor::zeros(shape, v.dtype(), v.device())?,
            })
        };
        let mut layer = match slot.take() {
            None => reserve(need.next_multiple_of(CACHE_STEP).min(limit.max(need)))?,
            Some(shared) => match Arc::try_unwrap(shared) {
                Ok(own) => own,
                Err(shared) => LayerKv {
                    k: shared.k.copy()?,
                    v: shared.v.copy()?,
                },
            },
        };
        let capacity = layer.k.dim(2)?;
        if need > capacity {
            let grown = reserve(
                (capacity * 2)
                    .max(need.next_multiple_of(CACHE_STEP))
                    .min(limit.max(need)),
            )?;
            if start > 0 {
                grown
                    .k
                    .slice_set(&layer.k.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
                grown
                    .v
                    .slice_set(&layer.v.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
            }
            layer = grown;
        }
        layer.k.slice_set(&k.contiguous()?, 2, start)?;
        layer.v.slice_set(&v.contiguous()?, 2, start)?;
        let layer = Arc::new(layer);
        *slot = Some(Arc::clone(&layer));
        Ok(layer)
    }
}

/// Attention on the CPU in `f32`, read straight from the cache's storage: no mask tensor, no
/// copies of keys or values, none of candle's per-call overhead, and sums that do not depend on
/// a row's left padding or on how a prompt was split into passes — each query loops over
/// exactly its own visible slots in order, so a row in a padded batch gets bit for bit what it
/// gets alone. `q` is `(batch, heads, steps, head_dim)` for the slots `start..start + steps`;
/// query slot `s` of row `r` sees the slots from `pad[r]` (and, with `window`, from
/// `s + 1 − window`) to `s`; a query inside the padding sees only itself. Returns
/// `(batch, steps, heads * head_dim)`. (Row, head) pairs are split between threads when the
/// work is large enough to pay for them.
fn attend_cpu(
    q: &Tensor,
    layer: &LayerKv,
    start: usize,
    pad: &[usize],
    window: Option<usize>,
    scale: f64,
) -> Result<Tensor> {
    let (batch, heads, steps, head_dim) = q.dims4()?;
    let (_, kv_heads, capacity, _) = layer.k.dims4()?;
    let groups = heads / kv_heads;
    let queries = q.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = layer.k.storage_and_layout();
    let (v_storage, v_layout) = layer.v.storage_and_layout();
    let (candle_core::Storage::Cpu(k_cpu), candle_core::Storage::Cpu(v_cpu)) =
        (&*k_storage, &*v_storage)
    else {
        candle_core::bail!("this attention runs on the CPU");
    };
    let keys = &k_cpu.as_slice::<f32>()?[k_layout.start_offset()..];
    let values = &v_cpu.as_slice::<f32>()?[v_layout.start_offset()..];
    #[allow(clippy::cast_possible_truncation)] // a scale near 1/8
    let scale = scale as f32;
    // One (row, head) pair: its `steps × head_dim` outputs, in query order.
    let pair = |index: usize| -> Vec<f32> {
        let (row, head) = (index / heads, index % heads);
        let base = (row * kv_heads + head / groups) * capacity * head_dim;
        let row_pad = pad.get(row).copied().unwrap_or(0);
        let mut out = vec![0f32; steps * head_dim];
        let mut scores = Vec::with_capacity(start + steps);
        for t in 0..steps {
            let slot = start + t;
            let mut first = row_pad.min(slot);
            if let Some(w) = window {
                first = first.max((slot + 1).saturating_sub(w));
            }
            let query = &queries[((row * heads + head) * steps + t) * head_dim..][..head_dim];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for key_slot in first..=slot {
                let key = &keys[base + key_slot * head_dim..][..head_dim];
                let score = crate::q8::dot_lanes(query, key) * scale;
                max = max.max(score);
                scores.push(score);
            }
            let mut total = 0f32;
            for score in &mut scores {
                *score = (*score - max).exp();
                total += *score;
            }
            let output = &mut out[t * head_dim..][..head_dim];
            for (j, &p) in scores.iter().enumerate() {
                let value = &values[base + (first + j) * head_dim..][..head_dim];
                let p = p / total;
                crate::q8::add_scaled(output, p, value);
            }
        }
        out
    };
    let pairs = batch * heads;
    let work = pairs * steps * (start + steps) * head_dim;
    let threads = attention_threads().min(pairs);
    let outputs: Vec<Vec<f32>> = if threads > 1 && work >= ATTENTION_PARALLEL_WORK {
        let per_thread = pairs.div_ceil(threads);
        std::thread::scope(|scope| {
            let pair = &pair;
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(pairs);
                    scope.spawn(move || range.map(pair).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        (0..pairs).map(pair).collect()
    };
    drop((k_storage, v_storage));
    if outputs.len() != pairs {
        candle_core::bail!("an attention thread failed");
    }
    // (row, head) → (row, step, head) order.
    let mut out = vec![0f32; batch * steps * heads * head_dim];
    for (index, values) in outputs.iter().enumerate() {
        let (row, head) = (index / heads, index % heads);
        for t in 0..steps {
            let target = ((row * steps + t) * heads + head) * head_dim;
            out[target..target + head_dim].copy_from_slice(&values[t * head_dim..][..head_dim]);
        }
    }
    Tensor::from_vec(out, (batch, steps, heads * head_dim), q.device())
}

/// Below this many multiply-adds (per side of the attention) one thread does the work.
const ATTENTION_PARALLEL_WORK: usize = 1 << 20;

/// Threads for the attention of a pass: `CANDLE_NUM_THREADS` or candle's own count, read once.
fn attention_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(candle_core::utils::get_num_threads)
    })
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

    /// [`Transformer::forward`] as `pass` says. A training pass (`pass.train`) must start on an
    /// empty cache and leaves it empty: its keys and values stay in the autograd graph instead.
    pub(crate) fn forward_pass(
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
            && !pass.differentiable
            && !self.candle_attention;
        let window = config.sliding.as_ref().map(|s| s.window);
        let (global_mask, local_mask) = if own_attention {
            (None, None)
        } else {
            (
                mask(&cache.pad, start, steps, None, device, config.dtype)?,
                match window {
                    Some(w) => mask(&cache.pad, start, steps, Some(w), device, config.dtype)?,
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
        let x = self.final_norm.forward(&x, pass.differentiable)?;
        let out = self
            .head
            .forward(&x, pass, HEAD_SITE)?
            .to_dtype(DType::F32)?;
        match logits {
            Logits::Last => out.squeeze(1),
            Logits::All | Logits::From(_) => Ok(out),
        }
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
        let differentiable = pass.differentiable;
        let site = |module: usize| site_key(layer, module);

        let h = block.attn_norm.forward(x, differentiable)?;
        let split = |t: Tensor, n: usize| -> Result<Tensor> {
            t.reshape((batch, steps, n, head_dim))?
                .transpose(1, 2)?
                .contiguous()
        };
        let mut q = split(block.q.forward(&h, pass, site(0))?, heads)?;
        let mut k = split(block.k.forward(&h, pass, site(1))?, kv_heads)?;
        let v = split(block.v.forward(&h, pass, site(2))?, kv_heads)?;
        if let Some(norm) = &block.q_norm {
            q = norm.forward(&q, differentiable)?;
        }
        if let Some(norm) = &block.k_norm {
            k = norm.forward(&k, differentiable)?;
        }
        let rotate = |t: &Tensor| -> Result<Tensor> {
            match (config.rope_interleaved, differentiable) {
                (true, false) => candle_nn::rotary_emb::rope_i(t, cos, sin),
                (true, true) => candle_nn::rotary_emb::rope_i_slow(t, cos, sin),
                (false, false) => candle_nn::rotary_emb::rope(t, cos, sin),
                (false, true) => candle_nn::rotary_emb::rope_slow(t, cos, sin),
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
            attn = norm.forward(&attn, differentiable)?;
        }
        let x = (x + attn)?;

        let h = block.ffn_norm.forward(&x, differentiable)?;
        let gate = block.gate.forward(&h, pass, site(4))?;
        let gate = match config.activation {
            Activation::Silu => candle_nn::ops::silu(&gate)?,
            Activation::GeluTanh => gate.gelu()?,
        };
        let mut ffn = block.down.forward(
            &(gate * block.up.forward(&h, pass, site(5))?)?,
            pass,
            site(6),
        )?;
        if let Some(norm) = &block.post_ffn_norm {
            ffn = norm.forward(&ffn, differentiable)?;
        }
        x + ffn
    }

    /// Attention with candle's operations (every pass but a CPU decode step), through the
    /// output projection: `q` is `(batch, heads, steps, head_dim)`, `k` and `v`
    /// `(batch, kv_heads, slots, head_dim)`.
    #[allow(clippy::too_many_arguments)]
    fn attend(
        &self,
        block: &Block,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        pass: Pass<'_>,
        o_site: u64,
    ) -> Result<Tensor> {
        let config = &self.config;
        let (batch, heads, steps, head_dim) = q.dims4()?;
        let kv_heads = config.kv_heads;
        let slots = k.dim(2)?;
        let differentiable = pass.differentiable;
        // Grouped-query attention without copying keys and values: the query heads that share
        // one key/value head are stacked along the position axis.
        let groups = heads / kv_heads;
        let q = q.reshape((batch, kv_heads, groups * steps, head_dim))?;
        let scores = (q.matmul(&k.t()?)? * config.attention_scale)?;
        let scores = match mask {
            Some(mask) => scores
                .reshape((batch, kv_heads, groups, steps, slots))?
                .broadcast_add(mask)?
                .reshape((batch, kv_heads, groups * steps, slots))?,
            None => scores,
        };
        let probs = if differentiable {
            candle_nn::ops::softmax(&scores, D::Minus1)?
        } else {
            candle_nn::ops::softmax_last_dim(&scores)?
        };
        let attended = probs
            .matmul(v)?
            .reshape((batch, heads, steps, head_dim))?
            .transpose(1, 2)?
            .reshape((batch, steps, heads * head_dim))?;
        block.o.forward(&attended, pass, o_site)
    }
}

/// Where one pass's attention looks: the slot its first position takes, each row's left
/// padding, the window of a sliding layer, and whether it runs on [`attend_cpu`].
struct Attention<'a> {
    start: usize,
    pad: &'a [usize],
    window: Option<usize>,
    own_attention: bool,
}

/// The additive attention mask `(batch, 1, 1, steps, slots)` for queries at slots
/// `start..start + steps`: `0` where a key is visible, `-inf` where it is in the future, in a
/// row's left padding, or (with `window`) `window` or more positions back. `None` when every key
/// is visible.
fn mask(
    pad: &[usize],
    start: usize,
    steps: usize,
    window: Option<usize>,
    device: &Device,
    dtype: DType,
) -> Result<Option<Tensor>> {
    let slots = start + steps;
    let visible = |row: usize, query: usize, key: usize| {
        // A query inside the padding sees only itself (its output is never used, but a row of
        // nothing but -inf would make NaNs).
        (key <= query && key >= pad[row] && window.is_none_or(|w| query - key < w))
            || (query < pad[row] && key == query)
    };
    let needed = (0..pad.len())
        .any(|row| (start..slots).any(|query| (0..slots).any(|key| !visible(row, query, key))));
    if !needed {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(pad.len() * steps * slots);
    for row in 0..pad.len() {
        for query in start..slots {
            for key in 0..slots {
                values.push(if visible(row, query, key) {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
    }
    Tensor::from_vec(values, (pad.len(), 1, 1, steps, slots), device)?
        .to_dtype(dtype)
        .map(Some)
}

#[cfg(test)]
mod tests;
