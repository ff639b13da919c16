//! Weight matrices and the products taken through them. A [`Weight`] is kept in the engine's
//! own `Q8_0` or `Q4_0`/`Q4_1` layout on the CPU (`crate::q8`), else as candle's `QMatMul`; it
//! multiplies for inference ([`Weight::forward`]: each input row gets the same bits whatever
//! rows come with it), for training ([`Weight::train_forward`]: in `f32`, differentiable in the
//! input through the [`BaseProduct`] autograd node while the matrix stays frozen, its `f32` form
//! kept between steps by a trainer's [`DenseCache`] up to a budget), and looks rows up as token
//! embeddings.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use candle_core::quantized::{GgmlDType, QMatMul, QTensor};
use candle_core::{DType, Device, Module, Result, Storage, Tensor};

use super::attention::attention_threads;
use crate::q8::{OwnMatrix, Q4Kind, Q4Matrix, Q8Matrix, Rhs};

/// A weight matrix `(out, in)`: the engine's own layouts on the CPU for `Q8_0` and for
/// `Q4_0`/`Q4_1` (`crate::q8`), else candle's (quantized or dense).
#[derive(Debug, Clone)]
pub(crate) enum Weight {
    Q8(Arc<Q8Matrix>),
    Q4(Arc<Q4Matrix>),
    Candle(QMatMul),
}

impl Weight {
    /// The engine's layout where it has a kernel for the tensor's type and device and `own`
    /// allows it, else candle's (the generic path every other device takes).
    pub(crate) fn from_qtensor(q: Arc<QTensor>, own: bool) -> Result<Self> {
        if own && q.device().is_cpu() && q.shape().rank() == 2 {
            let (rows, cols) = q.shape().dims2()?;
            let kind = match q.dtype() {
                GgmlDType::Q4_0 => Some(Q4Kind::Q4_0),
                GgmlDType::Q4_1 => Some(Q4Kind::Q4_1),
                GgmlDType::Q5_0 => Some(Q4Kind::Q5_0),
                GgmlDType::Q5_1 => Some(Q4Kind::Q5_1),
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

    pub(super) fn dims(&self) -> Result<(usize, usize)> {
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
    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
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
            Self::Q8(_) | Self::Q4(_) => match Self::forward_many(&[self], x)? {
                Some(mut products) if products.len() == 1 => Ok(products.remove(0)),
                _ => {
                    let (rows, cols) = self.dims()?;
                    candle_core::bail!(
                        "an input of shape {:?} on {:?} for a {rows} × {cols} matrix held on the CPU",
                        x.dims(),
                        x.device().location()
                    )
                }
            },
        }
    }

    /// `x Wᵢᵀ` for each of `weights` (of one width), as one product when all are in the
    /// engine's own layouts on the CPU (the input quantized once, one hand-off to the worker
    /// threads; the same bits as [`Self::forward`] each); `None` otherwise.
    pub(super) fn forward_many(weights: &[&Self], x: &Tensor) -> Result<Option<Vec<Tensor>>> {
        let mut own = Vec::with_capacity(weights.len());
        for weight in weights {
            own.push(match weight {
                Self::Q8(m) => OwnMatrix::Q8(m),
                Self::Q4(m) => OwnMatrix::Q4(m),
                Self::Candle(_) => return Ok(None),
            });
        }
        let mut dims = x.dims().to_vec();
        let last = dims.len() - 1;
        let width = dims[last];
        if !x.device().is_cpu() || own.iter().any(|w| w.cols() != width) {
            return Ok(None);
        }
        let rows = x.elem_count() / width.max(1);
        let input = x.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
        let mut outs: Vec<Vec<f32>> = own.iter().map(|w| vec![0f32; rows * w.rows()]).collect();
        let mut products: Vec<(OwnMatrix<'_>, &mut [f32])> = own
            .iter()
            .zip(outs.iter_mut())
            .map(|(&w, out)| (w, out.as_mut_slice()))
            .collect();
        crate::q8::matmul_many(&input, rows, &mut products);
        drop(products);
        own.iter()
            .zip(outs)
            .map(|(w, out)| {
                dims[last] = w.rows();
                Tensor::from_vec(out, dims.clone(), x.device())?.to_dtype(x.dtype())
            })
            .collect::<Result<Vec<_>>>()
            .map(Some)
    }

    /// `x Wᵀ` for training: computed in `f32` (activations are not rounded to 8 bits, so the
    /// loss is smooth in the adapters) from the matrix in `f32` — kept by `cache` if it holds
    /// it or has room for it, else dequantized for this product alone — and differentiable in
    /// `x` through [`BaseProduct`], which uses the kept matrix for the backward pass or else
    /// dequantizes it again rather than keeping it. The matrix itself never gets a gradient.
    /// `own` allows the engine's split products on the CPU ([`dense_product`]).
    pub(super) fn train_forward(
        &self,
        x: &Tensor,
        cache: Option<&DenseCache>,
        own: bool,
    ) -> Result<Tensor> {
        let mut kept = None;
        let product = match self.streamed(x, false)? {
            Some(product) => product,
            None => {
                let w = match cache {
                    Some(cache) => {
                        let (w, is_kept) = cache.dense(self)?;
                        if is_kept {
                            kept = Some(w.clone());
                        }
                        w
                    }
                    None => self.dense()?,
                };
                dense_product(&x.detach(), &w.to_dtype(x.dtype())?, Rhs::Transposed, own)?
            }
        };
        x.apply_op2(
            &product,
            BaseProduct {
                weight: self.clone(),
                kept,
                own,
            },
        )
    }

    /// What identifies the matrix while it is alive (the address of its shared storage), for
    /// the ones whose `f32` form takes work to make; `None` for a matrix held in `f32` already.
    fn identity(&self) -> Option<usize> {
        match self {
            Self::Q8(m) => Some(Arc::as_ptr(m) as usize),
            Self::Q4(m) => Some(Arc::as_ptr(m) as usize),
            Self::Candle(QMatMul::QTensor(q)) => Some(Arc::as_ptr(q) as usize),
            Self::Candle(QMatMul::Tensor(_) | QMatMul::TensorF16(_)) => None,
        }
    }

    /// Whether a training product of `x` takes [`Weight::streamed`]'s path.
    pub(super) fn streams(&self, x: &Tensor) -> bool {
        let width = x.dims().last().copied().unwrap_or(1).max(1);
        matches!(self, Self::Q8(_) | Self::Q4(_))
            && x.device().is_cpu()
            && x.elem_count() / width <= STREAMED_ROWS
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
    pub(super) fn dense(&self) -> Result<Tensor> {
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
    /// The matrix in `f32` when a [`DenseCache`] keeps it anyway.
    kept: Option<Tensor>,
    /// Whether the backward product may take the engine's split path ([`dense_product`]).
    own: bool,
}

/// Bytes of base matrices in `f32` a trainer keeps between steps ([`DenseCache`]): the whole of a
/// model up to about 250 million parameters (SmolLM2-135M: 538 MB), the first matrices of a
/// larger one.
pub(crate) const DENSE_CACHE_BYTES: usize = 1 << 30;

/// The frozen base matrices of one trainer in `f32`, kept from their first product on while they
/// fit in [`DENSE_CACHE_BYTES`]: a step then multiplies by them (forward and backward) instead
/// of dequantizing every matrix twice into fresh memory. Each entry holds a clone of its weight,
/// so the address that keys it cannot be reused by another matrix while it is kept.
#[derive(Debug)]
pub(crate) struct DenseCache {
    budget: usize,
    held: Mutex<DenseHeld>,
}

impl Default for DenseCache {
    fn default() -> Self {
        Self::with_budget(DENSE_CACHE_BYTES)
    }
}

#[derive(Debug, Default)]
struct DenseHeld {
    bytes: usize,
    by_matrix: HashMap<usize, (Weight, Tensor)>,
}

impl DenseCache {
    /// A cache keeping at most `budget` bytes.
    pub(crate) fn with_budget(budget: usize) -> Self {
        Self {
            budget,
            held: Mutex::default(),
        }
    }

    /// `weight` in `f32`, and whether the cache keeps it.
    pub(crate) fn dense(&self, weight: &Weight) -> Result<(Tensor, bool)> {
        let Some(key) = weight.identity() else {
            return Ok((weight.dense()?, false));
        };
        if let Some((_, kept)) = self.lock().by_matrix.get(&key) {
            return Ok((kept.clone(), true));
        }
        let dense = weight.dense()?.to_dtype(DType::F32)?;
        let bytes = dense.elem_count() * 4;
        let mut held = self.lock();
        if held.by_matrix.contains_key(&key) || held.bytes + bytes > self.budget {
            return Ok((dense, false));
        }
        held.bytes += bytes;
        held.by_matrix.insert(key, (weight.clone(), dense.clone()));
        Ok((dense, true))
    }

    /// Bytes kept.
    #[cfg(test)]
    pub(crate) fn bytes(&self) -> usize {
        self.lock().bytes
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, DenseHeld> {
        // A panic elsewhere while the lock was held left whole entries or none.
        self.held.lock().unwrap_or_else(PoisonError::into_inner)
    }
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

    #[cfg(feature = "cuda")]
    fn cuda_fwd(
        &self,
        _: &candle_core::CudaStorage,
        _: &candle_core::Layout,
        product: &candle_core::CudaStorage,
        layout: &candle_core::Layout,
    ) -> Result<(candle_core::CudaStorage, candle_core::Shape)> {
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
        let w = match &self.kept {
            Some(w) => w.to_dtype(grad.dtype())?,
            None => self.weight.dense()?.to_dtype(grad.dtype())?,
        };
        let grad_x = dense_product(grad, &w, Rhs::Plain, self.own)?.reshape(x.dims())?;
        Ok((Some(grad_x), None))
    }
}

/// Input rows up to which a training product streams the weight row by row
/// ([`Weight::streamed`]) rather than dequantizing it whole.
pub(super) const STREAMED_ROWS: usize = 16;

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

/// `x Wᵀ` (`rhs` [`Rhs::Transposed`], `w` of shape `(out, in)`) or `x W` ([`Rhs::Plain`], `w`
/// of shape `(in, out)`) for `x` of any rank ending in `in`: when `own` allows it, in `f32` on the
/// CPU through the kernels' worker threads ([`crate::q8::matmul_f32`], which leaves rayon's pool
/// idle); through candle elsewhere.
fn dense_product(x: &Tensor, w: &Tensor, rhs: Rhs, own: bool) -> Result<Tensor> {
    let (out, width) = match rhs {
        Rhs::Transposed => w.dims2()?,
        Rhs::Plain => {
            let (width, out) = w.dims2()?;
            (out, width)
        }
    };
    let mut dims = x.dims().to_vec();
    let last = dims.len().saturating_sub(1);
    if dims.get(last) != Some(&width) {
        candle_core::bail!(
            "an input of shape {:?} for a product with a matrix of shape {:?}",
            x.dims(),
            w.dims()
        );
    }
    dims[last] = out;
    let own = own
        && x.device().is_cpu()
        && w.device().is_cpu()
        && x.dtype() == DType::F32
        && w.dtype() == DType::F32;
    if !own {
        // `x W` is `x (Wᵀ)ᵀ`.
        return match rhs {
            Rhs::Transposed => matmul_t(x, w),
            Rhs::Plain => matmul_t(x, &w.t()?),
        };
    }
    let (x, w) = (x.contiguous()?, w.contiguous()?);
    let m = x.elem_count() / width.max(1);
    let product = {
        let (x_storage, x_layout) = x.storage_and_layout();
        let (w_storage, w_layout) = w.storage_and_layout();
        let (Storage::Cpu(x_cpu), Storage::Cpu(w_cpu)) = (&*x_storage, &*w_storage) else {
            candle_core::bail!("a product's operands are not in the CPU's memory");
        };
        let (Some(xs), Some(ws)) = (
            x_cpu
                .as_slice::<f32>()?
                .get(x_layout.start_offset()..x_layout.start_offset() + m * width),
            w_cpu
                .as_slice::<f32>()?
                .get(w_layout.start_offset()..w_layout.start_offset() + width * out),
        ) else {
            candle_core::bail!("a product's operands are shorter than their shapes");
        };
        crate::q8::matmul_f32(xs, m, width, ws, out, rhs)
    };
    Tensor::from_vec(product, dims, x.device())
}

/// `x Wᵀ` for `x` of any rank and `W` of shape `(out, in)`.
pub(super) fn matmul_t(x: &Tensor, w: &Tensor) -> Result<Tensor> {
    let mut dims = x.dims().to_vec();
    let last = dims.len() - 1;
    let flat = x.contiguous()?.reshape(((), dims[last]))?;
    let y = flat.matmul(&w.t()?)?;
    dims[last] = w.dim(0)?;
    y.reshape(dims)
}
