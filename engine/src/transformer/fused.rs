//! A training pass's layers as single autograd nodes on the CPU: a projection (frozen base
//! product, bias, adapter pair), RMS norm, rotary embedding, attention (its two products, scale,
//! mask and softmax), and the feed-forward gate `act(g) · u`, each one pass over plain buffers
//! forward and one backward.
//!
//! Why: composed from candle's operations, RMS norm is seven nodes (square, sum, divide, add,
//! square root, divide, multiply), the softmax five after the scaling and the mask, the rotary
//! embedding eight, SiLU's gradient five more; each writes a fresh tensor, and in the backward
//! pass each gradient is summed into a zero-filled one (`GradStore`). In a LoRA step on a
//! 135M-parameter model these maps took about a fifth of the samples, and attention's products,
//! on candle's `matmul` (rayon's pool beside the barrier pool), ran at a fifth of the other
//! products' speed (docs/perf-notes.md sections 17 and 18). Here each layer keeps what its
//! backward pass needs (the norm's per-row scale, the softmax's probabilities, the pair's
//! `x Aᵀ`) and computes its gradients directly, its products on the barrier pool's threads.
//!
//! The forward values are the ones inference computes: the norm as candle's `rms_norm` kernel
//! (the same operations in the same order), the gate through `q8::gate`'s exponential. The
//! softmax's exponential is `q8::gate`'s too (within 2 ulp of the library's; masked slots are
//! exactly zero).
//!
//! On another device, in another dtype, or under `Kernels::Generic`, the transformer takes the
//! composed forms (the code a GPU runs, and the reference of the tests).

use std::ops::Range;
use std::sync::{Mutex, PoisonError};

use candle_core::{CpuStorage, DType, Layout, Result, Shape, Storage, Tensor};

use crate::q8::{Gate, Rhs, View, gemm_into};

/// Calls `work` on each item, the items split between the barrier pool's threads (the ones the
/// products use).
fn par_items<T: Send>(items: Vec<T>, work: impl Fn(T) + Sync) {
    let items: Vec<Mutex<Option<T>>> = items.into_iter().map(|t| Mutex::new(Some(t))).collect();
    let run = |range: Range<usize>| {
        for slot in &items[range] {
            let item = slot.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(item) = item {
                work(item);
            }
        }
    };
    if items.len() < 2 {
        run(0..items.len());
    } else {
        candle_core::utils::barrier_pool().execute_chunked(items.len(), run);
    }
}

/// Calls `work(i, part)` for each part `i` of `out` cut into `chunk` values (the last part may
/// be shorter), split between the threads when there are enough parts to share.
fn par_chunks(out: &mut [f32], chunk: usize, work: impl Fn(usize, &mut [f32]) + Sync) {
    let chunk = chunk.max(1);
    if out.len() < 16 * chunk {
        for (i, part) in out.chunks_mut(chunk).enumerate() {
            work(i, part);
        }
    } else {
        par_items(out.chunks_mut(chunk).enumerate().collect(), |(i, part)| {
            work(i, part);
        });
    }
}

/// [`par_chunks`] over two outputs cut alike.
fn par_chunks2(
    a: &mut [f32],
    b: &mut [f32],
    chunk: usize,
    work: impl Fn(usize, &mut [f32], &mut [f32]) + Sync,
) {
    let chunk = chunk.max(1);
    let parts = a.chunks_mut(chunk).zip(b.chunks_mut(chunk)).enumerate();
    par_items(parts.collect(), |(i, (a, b))| work(i, a, b));
}

/// The `f32` values of a contiguous CPU storage.
fn values<'a>(storage: &'a CpuStorage, layout: &Layout, what: &str) -> Result<&'a [f32]> {
    let CpuStorage::F32(values) = storage else {
        candle_core::bail!("{what} takes f32 values");
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&values[start..end]),
        None => candle_core::bail!("{what} takes contiguous values"),
    }
}

/// Runs `f` on the `f32` values of `t` (a CPU tensor), made contiguous first if it is not.
fn with_values<R>(t: &Tensor, what: &str, f: impl FnOnce(&[f32]) -> Result<R>) -> Result<R> {
    let t = t.to_dtype(DType::F32)?.contiguous()?;
    let (storage, layout) = t.storage_and_layout();
    let Storage::Cpu(storage) = &*storage else {
        candle_core::bail!("{what} runs on the CPU");
    };
    f(values(storage, layout, what)?)
}

/// `Σ a·b` in sixteen running sums (a fixed order, which the compiler vectorizes).
#[inline(always)]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let (a_body, b_body) = (a.chunks_exact(16), b.chunks_exact(16));
    let (a_tail, b_tail) = (a_body.remainder(), b_body.remainder());
    for (x, y) in a_body.zip(b_body) {
        for l in 0..16 {
            lanes[l] += x[l] * y[l];
        }
    }
    let tail: f32 = a_tail.iter().zip(b_tail).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}

// ---------------------------------------------------------------------------------------------
// RMS norm

/// `x / √(mean(x²) + eps) · weight` over the last dimension, differentiable in `x` (and in
/// `weight`, should it be trained).
pub(super) fn rms_norm(x: &Tensor, weight: &Tensor, eps: f32) -> Result<Tensor> {
    let width = weight.dims1()?;
    if x.dim(candle_core::D::Minus1)? != width {
        candle_core::bail!(
            "an RMS norm of {width} values over a tensor of shape {:?}",
            x.dims()
        );
    }
    x.contiguous()?.apply_op2(
        &weight.contiguous()?,
        RmsNorm {
            eps,
            scales: Mutex::default(),
        },
    )
}

struct RmsNorm {
    eps: f32,
    /// Each row's `√(mean(x²) + eps)`, from the forward pass.
    scales: Mutex<Vec<f32>>,
}

impl RmsNorm {
    /// `√(mean(x²) + eps)` of a row: the sum of squares in order, in `f32`, as candle's kernel.
    fn scale(&self, row: &[f32]) -> f32 {
        let squares: f32 = row.iter().map(|v| v * v).sum();
        #[allow(clippy::cast_precision_loss)] // a row's width is small
        let mean = squares / row.len() as f32;
        (mean + self.eps).sqrt()
    }
}

impl candle_core::CustomOp2 for RmsNorm {
    fn name(&self) -> &'static str {
        "fused-rms-norm"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = values(s1, l1, "the RMS norm")?;
        let weight = values(s2, l2, "the RMS norm")?;
        let width = weight.len();
        let scales: Vec<f32> = x.chunks_exact(width).map(|row| self.scale(row)).collect();
        let mut out = vec![0f32; x.len()];
        par_chunks(&mut out, width, |r, y| {
            let m = scales[r];
            for ((y, &v), &w) in y.iter_mut().zip(&x[r * width..]).zip(weight) {
                *y = v / m * w;
            }
        });
        *self.scales.lock().unwrap_or_else(PoisonError::into_inner) = scales;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With `m` a row's scale and `gw = g ⊙ w`: `∂x = gw / m − x · Σ(gw ⊙ x) / (n m³)`;
    /// `∂w = Σ_rows g ⊙ x / m`.
    fn bwd(
        &self,
        x: &Tensor,
        weight: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let width = weight.dims1()?;
        let mut scales =
            std::mem::take(&mut *self.scales.lock().unwrap_or_else(PoisonError::into_inner));
        let weight_values = weight.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let trained = weight.track_op();
        let (dx, dw) = with_values(x, "the RMS norm", |x| {
            with_values(grad, "the RMS norm", |g| {
                let rows = x.len() / width;
                if scales.len() != rows {
                    scales = x.chunks_exact(width).map(|row| self.scale(row)).collect();
                }
                let mut dx = vec![0f32; x.len()];
                #[allow(clippy::cast_precision_loss)]
                let n = width as f32;
                par_chunks(&mut dx, width, |r, d| {
                    let (xr, gr) = (&x[r * width..(r + 1) * width], &g[r * width..][..width]);
                    let m = scales[r];
                    // `g ⊙ w` first, in `d`, then the row's correction.
                    for ((t, &g), &w) in d.iter_mut().zip(gr).zip(&weight_values) {
                        *t = g * w;
                    }
                    let k = dot(d, xr) / (n * m * m * m);
                    for (t, &v) in d.iter_mut().zip(xr) {
                        *t = *t / m - v * k;
                    }
                });
                let dw = trained.then(|| {
                    let mut dw = vec![0f32; width];
                    for (r, (xr, gr)) in
                        x.chunks_exact(width).zip(g.chunks_exact(width)).enumerate()
                    {
                        let m = scales[r];
                        for ((d, &v), &g) in dw.iter_mut().zip(xr).zip(gr) {
                            *d += g * v / m;
                        }
                    }
                    dw
                });
                Ok((dx, dw))
            })
        })?;
        let dx = Tensor::from_vec(dx, x.shape(), x.device())?;
        let dw = match dw {
            Some(dw) => Some(Tensor::from_vec(dw, width, x.device())?.to_dtype(weight.dtype())?),
            None => None,
        };
        Ok((Some(dx), dw))
    }
}

// ---------------------------------------------------------------------------------------------
// Rotary embedding

/// `x` (`(batch, heads, positions, head_dim)`) rotated by the angles whose `cos` and `sin` are
/// given for each position (`(positions, head_dim / 2)`, or `(batch, positions, head_dim / 2)`
/// when rows differ): channel pairs `(2i, 2i + 1)` when `interleaved`, else `(i, i + head_dim/2)`.
/// Its gradient is the rotation back.
pub(super) fn rope(x: &Tensor, cos: &Tensor, sin: &Tensor, interleaved: bool) -> Result<Tensor> {
    let (batch, _, steps, head_dim) = x.dims4()?;
    let half = head_dim / 2;
    let shape_ok = |t: &Tensor| {
        let dims = t.dims();
        dims == [steps, half] || dims == [batch, steps, half]
    };
    if head_dim % 2 != 0 || !shape_ok(cos) || !shape_ok(sin) || cos.dims() != sin.dims() {
        candle_core::bail!(
            "rotary tables of shapes {:?} and {:?} for a tensor of shape {:?}",
            cos.dims(),
            sin.dims(),
            x.dims()
        );
    }
    let table = |t: &Tensor| t.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>();
    x.contiguous()?.apply_op1(Rope {
        cos: table(cos)?,
        sin: table(sin)?,
        per_row: cos.rank() == 3,
        interleaved,
    })
}

struct Rope {
    cos: Vec<f32>,
    sin: Vec<f32>,
    /// Whether the tables have a batch dimension.
    per_row: bool,
    interleaved: bool,
}

impl Rope {
    /// `x` of `dims` (`(batch, heads, positions, head_dim)`) rotated by `sign · angle`.
    fn rotate(&self, x: &[f32], dims: &[usize], sign: f32) -> Vec<f32> {
        let (heads, steps, head_dim) = (dims[1], dims[2], dims[3]);
        let half = head_dim / 2;
        let mut out = vec![0f32; x.len()];
        par_chunks(&mut out, head_dim, |r, y| {
            let t = r % steps;
            let b = r / (heads * steps);
            let at = if self.per_row {
                (b * steps + t) * half
            } else {
                t * half
            };
            let (cos, sin) = (&self.cos[at..at + half], &self.sin[at..at + half]);
            let xr = &x[r * head_dim..(r + 1) * head_dim];
            for i in 0..half {
                let (c, s) = (cos[i], sign * sin[i]);
                let (a, b) = if self.interleaved {
                    (2 * i, 2 * i + 1)
                } else {
                    (i, i + half)
                };
                let (xa, xb) = (xr[a], xr[b]);
                y[a] = xa * c - xb * s;
                y[b] = xb * c + xa * s;
            }
        });
        out
    }
}

impl candle_core::CustomOp1 for Rope {
    fn name(&self) -> &'static str {
        "fused-rope"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(storage, layout, "the rotary embedding")?;
        let out = self.rotate(x, layout.shape().dims(), 1.0);
        Ok((CpuStorage::F32(out), layout.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let back = with_values(grad, "the rotary embedding", |g| {
            Ok(self.rotate(g, x.dims(), -1.0))
        })?;
        Ok(Some(Tensor::from_vec(back, x.shape(), x.device())?))
    }
}

// ---------------------------------------------------------------------------------------------
// Attention

/// Query rows a thread takes of one head at a time, and key slots in the backward pass.
const ATTENTION_BLOCK: usize = 64;

/// `softmax(scale · q kᵀ + mask) v` for each query head, differentiable in `q`, `k` and `v`:
/// `q` of `(batch, heads, steps, head_dim)`, `k` and `v` of `(batch, kv_heads, slots,
/// head_dim)` (query head `h` reads key head `h / (heads / kv_heads)`), `mask` of
/// `(batch, 1, 1, steps, slots)` (0 where visible, −∞ where not) or none. Returns
/// `(batch, heads, steps, head_dim)`; masked slots get a probability of exactly 0.
///
/// The products run on this thread's `gemm` for blocks of query rows (backward: of key slots)
/// of one head, the blocks split between the barrier pool's threads — not on candle's
/// `matmul`, which runs `gemm` on rayon's pool beside it (measured at a fifth of the products'
/// speed in a LoRA step). The probabilities are kept for the backward pass.
pub(super) fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (batch, heads, steps, head_dim) = q.dims4()?;
    let (k_batch, kv_heads, slots, k_dim) = k.dims4()?;
    if k_batch != batch
        || k_dim != head_dim
        || v.dims() != k.dims()
        || kv_heads == 0
        || heads % kv_heads != 0
    {
        candle_core::bail!(
            "attention over queries {:?}, keys {:?} and values {:?}",
            q.dims(),
            k.dims(),
            v.dims()
        );
    }
    let mask = match mask {
        Some(mask) => {
            if mask.elem_count() != batch * steps * slots {
                candle_core::bail!(
                    "a mask of shape {:?} for {batch} × {steps} queries over {slots} slots",
                    mask.dims()
                );
            }
            Some(mask.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }
        None => None,
    };
    let spans = match &mask {
        Some(mask) => mask
            .chunks_exact(slots)
            .map(|row| {
                let visible = |m: &&f32| **m != f32::NEG_INFINITY;
                match row.iter().position(|m| visible(&m)) {
                    Some(first) => {
                        let last = row.iter().rposition(|m| visible(&m)).unwrap_or(first);
                        (first, last + 1)
                    }
                    None => (0, 0),
                }
            })
            .collect(),
        None => vec![(0, slots); batch * steps],
    };
    q.contiguous()?.apply_op3(
        &k.contiguous()?,
        &v.contiguous()?,
        Attention {
            scale,
            mask,
            spans,
            probs: Mutex::default(),
        },
    )
}

struct Attention {
    scale: f32,
    /// `(batch, steps, slots)`.
    mask: Option<Vec<f32>>,
    /// For each `(batch, step)`, the slots from its first visible one to its last (`start..end`;
    /// an interval under every mask the transformer makes: causal, padded, windowed). Work
    /// outside it is skipped — the probabilities there are 0 — which halves a causal pass's.
    spans: Vec<(usize, usize)>,
    /// `(batch, heads, steps, slots)`, from the forward pass.
    probs: Mutex<Vec<f32>>,
}

/// A unit of the attention node's work: `(head, first row, block of one output, block of the
/// other)`.
type Block<'a> = (usize, usize, &'a mut [f32], &'a mut [f32]);

/// Two outputs laid out by head (`rows` rows a head, `widths` values a row in each) cut alike
/// into blocks of [`ATTENTION_BLOCK`] rows of one head.
fn blocks<'a>(
    first: &'a mut [f32],
    second: &'a mut [f32],
    rows: usize,
    (first_width, second_width): (usize, usize),
) -> Vec<Block<'a>> {
    first
        .chunks_mut(rows * first_width)
        .zip(second.chunks_mut(rows * second_width))
        .enumerate()
        .flat_map(|(head, (a, b))| {
            a.chunks_mut(ATTENTION_BLOCK * first_width)
                .zip(b.chunks_mut(ATTENTION_BLOCK * second_width))
                .enumerate()
                .map(move |(block, (a, b))| (head, block * ATTENTION_BLOCK, a, b))
        })
        .collect()
}

/// The sizes of one attention call.
#[derive(Debug, Clone, Copy)]
struct Sizes {
    heads: usize,
    kv_heads: usize,
    steps: usize,
    slots: usize,
    head_dim: usize,
}

impl Sizes {
    fn of(q: &[usize], k: &[usize]) -> Self {
        Self {
            heads: q[1],
            kv_heads: k[1],
            steps: q[2],
            slots: k[2],
            head_dim: q[3],
        }
    }

    /// The key head that query head `bh` (batch × heads + head) reads, as batch × kv_heads +
    /// kv head.
    fn kv_of(&self, bh: usize) -> usize {
        let (b, h) = (bh / self.heads, bh % self.heads);
        b * self.kv_heads + h / (self.heads / self.kv_heads)
    }
}

impl Attention {
    /// The spans of rows `r0..r0 + rows` of batch entry `b`, and the slots they cover together
    /// (an empty range when none sees anything).
    fn spans(
        &self,
        b: usize,
        r0: usize,
        rows: usize,
        steps: usize,
    ) -> (&[(usize, usize)], Range<usize>) {
        let spans = &self.spans[b * steps + r0..][..rows];
        let start = spans.iter().map(|s| s.0).min().unwrap_or(0);
        let end = spans.iter().map(|s| s.1).max().unwrap_or(0);
        (spans, start..end.max(start))
    }

    /// The output and the probabilities of `q`, `k`, `v` (values as [`attention`] takes them).
    fn forward(&self, q: &[f32], k: &[f32], v: &[f32], n: Sizes) -> (Vec<f32>, Vec<f32>) {
        let Sizes {
            steps,
            slots,
            head_dim: d,
            ..
        } = n;
        let mut out = vec![0f32; q.len()];
        let mut probs = vec![0f32; q.len() / d * slots];
        par_items(
            blocks(&mut out, &mut probs, steps, (d, slots)),
            |(bh, r0, o, p)| {
                let rows = o.len() / d;
                let (kv, b) = (n.kv_of(bh), bh / n.heads);
                let (spans, cover) = self.spans(b, r0, rows, steps);
                let width = cover.len();
                if width == 0 {
                    return; // nothing visible: zero probabilities and output
                }
                let mut scores = vec![0f32; rows * width];
                gemm_into(
                    &mut scores,
                    View::rows(q, (bh * steps + r0) * d, rows, d),
                    View::rows(k, (kv * slots + cover.start) * d, width, d).t(),
                    false,
                );
                for (i, ((s, p), &(first, end))) in scores
                    .chunks_exact(width)
                    .zip(p.chunks_exact_mut(slots))
                    .zip(spans)
                    .enumerate()
                {
                    if first >= end {
                        continue;
                    }
                    let mask = self.mask.as_deref().map(|mask| {
                        let at = (b * steps + r0 + i) * slots;
                        &mask[at + first..at + end]
                    });
                    let s = &s[first - cover.start..end - cover.start];
                    crate::q8::softmax_row(s, mask, self.scale, &mut p[first..end]);
                }
                gemm_into(
                    o,
                    View::block(p, cover.start, rows, width, slots),
                    View::rows(v, (kv * slots + cover.start) * d, width, d),
                    false,
                );
            },
        );
        (out, probs)
    }
}

impl candle_core::CustomOp3 for Attention {
    fn name(&self) -> &'static str {
        "fused-attention"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let (q, k, v) = (
            values(s1, l1, "attention")?,
            values(s2, l2, "attention")?,
            values(s3, l3, "attention")?,
        );
        let n = Sizes::of(l1.shape().dims(), l2.shape().dims());
        let (out, probs) = self.forward(q, k, v, n);
        *self.probs.lock().unwrap_or_else(PoisonError::into_inner) = probs;
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    /// With `P` the probabilities and `∂O` the output's gradient, for each query head:
    /// `∂S = scale · P ⊙ (∂O Vᵀ − rowsum(∂O Vᵀ ⊙ P))`, `∂Q = ∂S K`; for each key head, summed
    /// over the query heads that read it: `∂K = ∂Sᵀ Q`, `∂V = Pᵀ ∂O`.
    fn bwd(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let n = Sizes::of(q.dims(), k.dims());
        let Sizes {
            heads,
            kv_heads,
            steps,
            slots,
            head_dim: d,
        } = n;
        let groups = heads / kv_heads;
        let (dq, dk, dv) = with_values(q, "attention", |qs| {
            with_values(k, "attention", |ks| {
                with_values(v, "attention", |vs| {
                    with_values(grad, "attention", |go| {
                        let mut probs = std::mem::take(
                            &mut *self.probs.lock().unwrap_or_else(PoisonError::into_inner),
                        );
                        if probs.len() != qs.len() / d * slots {
                            probs = self.forward(qs, ks, vs, n).1;
                        }
                        // Per block of query rows: ∂S (kept for the keys' pass) and ∂Q.
                        let mut dq = vec![0f32; qs.len()];
                        let mut ds = vec![0f32; probs.len()];
                        let items = blocks(&mut dq, &mut ds, steps, (d, slots));
                        par_items(items, |(bh, r0, dq, ds)| {
                            let rows = dq.len() / d;
                            let (kv, b) = (n.kv_of(bh), bh / heads);
                            let (spans, cover) = self.spans(b, r0, rows, steps);
                            let width = cover.len();
                            if width == 0 {
                                return;
                            }
                            let mut dp = vec![0f32; rows * width];
                            gemm_into(
                                &mut dp,
                                View::rows(go, (bh * steps + r0) * d, rows, d),
                                View::rows(vs, (kv * slots + cover.start) * d, width, d).t(),
                                false,
                            );
                            let p = &probs[(bh * steps + r0) * slots..][..rows * slots];
                            for (((ds, p), dp), &(first, end)) in ds
                                .chunks_exact_mut(slots)
                                .zip(p.chunks_exact(slots))
                                .zip(dp.chunks_exact(width))
                                .zip(spans)
                            {
                                if first >= end {
                                    continue;
                                }
                                let dp = &dp[first - cover.start..end - cover.start];
                                let p = &p[first..end];
                                let k = dot(dp, p);
                                for ((s, &p), &g) in ds[first..end].iter_mut().zip(p).zip(dp) {
                                    *s = self.scale * (p * (g - k));
                                }
                            }
                            gemm_into(
                                dq,
                                View::block(ds, cover.start, rows, width, slots),
                                View::rows(ks, (kv * slots + cover.start) * d, width, d),
                                false,
                            );
                        });
                        // Per block of key slots: ∂K and ∂V over the query heads reading them.
                        let mut dk = vec![0f32; ks.len()];
                        let mut dv = vec![0f32; vs.len()];
                        let items = blocks(&mut dk, &mut dv, slots, (d, d));
                        par_items(items, |(bkv, c0, dk, dv)| {
                            let cols = dk.len() / d;
                            let (b, kv) = (bkv / kv_heads, bkv % kv_heads);
                            // The query rows that see any of these slots (the others' ∂S and P
                            // are 0 there).
                            let (spans, _) = self.spans(b, 0, steps, steps);
                            let sees =
                                |&(first, end): &(usize, usize)| first < c0 + cols && end > c0;
                            let Some(t0) = spans.iter().position(sees) else {
                                return; // ∂K and ∂V stay 0
                            };
                            let t1 = spans.iter().rposition(sees).map_or(t0, |t| t) + 1;
                            for g in 0..groups {
                                let bh = b * heads + kv * groups + g;
                                let block = |data| {
                                    let at = (bh * steps + t0) * slots + c0;
                                    View::block(data, at, t1 - t0, cols, slots)
                                };
                                let rows =
                                    |data| View::rows(data, (bh * steps + t0) * d, t1 - t0, d);
                                gemm_into(dk, block(&ds).t(), rows(qs), g > 0);
                                gemm_into(dv, block(&probs).t(), rows(go), g > 0);
                            }
                        });
                        Ok((dq, dk, dv))
                    })
                })
            })
        })?;
        let device = q.device();
        Ok((
            Some(Tensor::from_vec(dq, q.shape(), device)?),
            Some(Tensor::from_vec(dk, k.shape(), device)?),
            Some(Tensor::from_vec(dv, v.shape(), device)?),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// Projections

/// `x Wᵀ (+ bias) (+ scale · (x Aᵀ) Bᵀ)` for a training pass: the frozen base matrix `w`
/// (`(out, in)`, `f32`), its bias, and the adapter pair `(a, b, scale)` (`a` of `(rank, in)`,
/// `b` of `(out, rank)`) if the projection has one, as one autograd node differentiable in `x`
/// and the pair. The base product runs on the barrier pool's threads (`q8::matmul_f32`), the
/// pair's thin products on this one; its output is the product's own buffer.
///
/// Composed, the same is a base-product node (its product computed outside the graph, then
/// copied in), the pair's two `matmul`s on rayon's pool, a scaling and a sum, each with its
/// zero-filled gradient sum in the backward pass.
pub(super) fn projection(
    x: &Tensor,
    w: &Tensor,
    bias: Option<&Tensor>,
    lora: Option<(&Tensor, &Tensor, f64)>,
) -> Result<Tensor> {
    let (out, width) = w.dims2()?;
    if x.dim(candle_core::D::Minus1)? != width {
        candle_core::bail!(
            "an input of shape {:?} for a matrix of shape {:?}",
            x.dims(),
            w.dims()
        );
    }
    let bias = match bias {
        Some(bias) if bias.elem_count() == out => {
            Some(bias.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?)
        }
        Some(bias) => candle_core::bail!("a bias of shape {:?} for {out} outputs", bias.dims()),
        None => None,
    };
    #[allow(clippy::cast_possible_truncation)] // alpha / r
    let op = Projection {
        w: w.to_dtype(DType::F32)?.contiguous()?,
        bias,
        scale: lora.map_or(0.0, |(_, _, s)| s as f32),
        down: Mutex::default(),
    };
    let x = x.contiguous()?;
    match lora {
        None => x.apply_op1(op),
        Some((a, b, _)) => {
            let (rank, a_width) = a.dims2()?;
            if a_width != width || b.dims2()? != (out, rank) {
                candle_core::bail!(
                    "an adapter pair of shapes {:?} and {:?} on a matrix of shape {:?}",
                    a.dims(),
                    b.dims(),
                    w.dims()
                );
            }
            x.apply_op3(&a.contiguous()?, &b.contiguous()?, op)
        }
    }
}

struct Projection {
    /// `(out, in)`.
    w: Tensor,
    bias: Option<Vec<f32>>,
    /// The pair's `alpha / r`.
    scale: f32,
    /// `x Aᵀ` from the forward pass.
    down: Mutex<Vec<f32>>,
}

impl Projection {
    /// `x Wᵀ + bias` for `rows` rows of `x` (`y`, `rows × out`), plus, given the pair, its
    /// share; returns `y` and `x Aᵀ`.
    fn forward(
        &self,
        x: &[f32],
        rows: usize,
        pair: Option<(&[f32], &[f32])>,
    ) -> Result<(Vec<f32>, Vec<f32>)> {
        let (out, width) = self.w.dims2()?;
        let mut y = with_values(&self.w, "a projection", |w| {
            Ok(crate::q8::matmul_f32(
                x,
                rows,
                width,
                w,
                out,
                Rhs::Transposed,
            ))
        })?;
        if let Some(bias) = &self.bias {
            for row in y.chunks_exact_mut(out) {
                for (y, b) in row.iter_mut().zip(bias) {
                    *y += b;
                }
            }
        }
        let mut down = Vec::new();
        if let Some((a, b)) = pair {
            let rank = a.len() / width;
            down = vec![0f32; rows * rank];
            gemm_into(
                &mut down,
                View::rows(x, 0, rows, width),
                View::rows(a, 0, rank, width).t(),
                false,
            );
            let scaled: Vec<f32> = down.iter().map(|v| v * self.scale).collect();
            gemm_into(
                &mut y,
                View::rows(&scaled, 0, rows, rank),
                View::rows(b, 0, out, rank).t(),
                true,
            );
        }
        Ok((y, down))
    }

    /// The output's shape: `x`'s with the last dimension the matrix's outputs.
    fn shape(&self, x: &Layout) -> Result<Shape> {
        let mut dims = x.shape().dims().to_vec();
        if let Some(last) = dims.last_mut() {
            *last = self.w.dim(0)?;
        }
        Ok(Shape::from(dims))
    }

    /// The gradients of `x`'s (when `x_wanted`), `A`'s and `B`'s from the output's `g`.
    #[allow(clippy::type_complexity)]
    fn backward(
        &self,
        x: &Tensor,
        pair: Option<(&Tensor, &Tensor)>,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<(Tensor, Tensor)>)> {
        let (out, width) = self.w.dims2()?;
        let rows = x.elem_count() / width.max(1);
        let x_wanted = x.track_op();
        with_values(grad, "a projection", |g| {
            let mut dx = if x_wanted {
                Some(with_values(&self.w, "a projection", |w| {
                    Ok(crate::q8::matmul_f32(g, rows, out, w, width, Rhs::Plain))
                })?)
            } else {
                None
            };
            let Some((a, b)) = pair else {
                return Ok((dx, None));
            };
            let rank = a.dim(0)?;
            let mut down =
                std::mem::take(&mut *self.down.lock().unwrap_or_else(PoisonError::into_inner));
            let grads = with_values(x, "a projection", |xs| {
                with_values(a, "a projection", |av| {
                    with_values(b, "a projection", |bv| {
                        if down.len() != rows * rank {
                            down = vec![0f32; rows * rank];
                            gemm_into(
                                &mut down,
                                View::rows(xs, 0, rows, width),
                                View::rows(av, 0, rank, width).t(),
                                false,
                            );
                        }
                        // t = g B, then ∂B = s gᵀ (x Aᵀ), ∂A = s tᵀ x, ∂x += s t A.
                        let mut t = vec![0f32; rows * rank];
                        gemm_into(
                            &mut t,
                            View::rows(g, 0, rows, out),
                            View::rows(bv, 0, out, rank),
                            false,
                        );
                        let mut db = vec![0f32; out * rank];
                        gemm_into(
                            &mut db,
                            View::rows(g, 0, rows, out).t(),
                            View::rows(&down, 0, rows, rank),
                            false,
                        );
                        t.iter_mut().for_each(|v| *v *= self.scale);
                        db.iter_mut().for_each(|v| *v *= self.scale);
                        let mut da = vec![0f32; rank * width];
                        gemm_into(
                            &mut da,
                            View::rows(&t, 0, rows, rank).t(),
                            View::rows(xs, 0, rows, width),
                            false,
                        );
                        if let Some(dx) = &mut dx {
                            gemm_into(
                                dx,
                                View::rows(&t, 0, rows, rank),
                                View::rows(av, 0, rank, width),
                                true,
                            );
                        }
                        Ok((da, db))
                    })
                })
            })?;
            let device = x.device();
            Ok((
                dx,
                Some((
                    Tensor::from_vec(grads.0, a.shape(), device)?,
                    Tensor::from_vec(grads.1, b.shape(), device)?,
                )),
            ))
        })
        .and_then(|(dx, pair)| {
            let dx = match dx {
                Some(dx) => Some(Tensor::from_vec(dx, x.shape(), x.device())?),
                None => None,
            };
            Ok((dx, pair))
        })
    }
}

impl candle_core::CustomOp1 for Projection {
    fn name(&self) -> &'static str {
        "fused-projection"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = values(storage, layout, "a projection")?;
        let rows = x.len() / self.w.dim(1)?.max(1);
        let (y, _) = self.forward(x, rows, None)?;
        Ok((CpuStorage::F32(y), self.shape(layout)?))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        Ok(self.backward(x, None, grad)?.0)
    }
}

impl candle_core::CustomOp3 for Projection {
    fn name(&self) -> &'static str {
        "fused-adapted-projection"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let x = values(s1, l1, "a projection")?;
        let pair = (
            values(s2, l2, "a projection")?,
            values(s3, l3, "a projection")?,
        );
        let rows = x.len() / self.w.dim(1)?.max(1);
        let (y, down) = self.forward(x, rows, Some(pair))?;
        *self.down.lock().unwrap_or_else(PoisonError::into_inner) = down;
        Ok((CpuStorage::F32(y), self.shape(l1)?))
    }

    fn bwd(
        &self,
        x: &Tensor,
        a: &Tensor,
        b: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (dx, pair) = self.backward(x, Some((a, b)), grad)?;
        let (da, db) = pair.map_or((None, None), |(a, b)| (Some(a), Some(b)));
        Ok((dx, da, db))
    }
}

// ---------------------------------------------------------------------------------------------
// The feed-forward gate

/// `act(gate) · up`, element by element, differentiable in both.
pub(super) fn gated(act: Gate, gate: &Tensor, up: &Tensor) -> Result<Tensor> {
    if gate.dims() != up.dims() {
        candle_core::bail!(
            "a gate of shape {:?} beside an up projection of shape {:?}",
            gate.dims(),
            up.dims()
        );
    }
    gate.contiguous()?
        .apply_op2(&up.contiguous()?, GateUp { act })
}

struct GateUp {
    act: Gate,
}

/// Values a thread takes of the gate at a time.
const GATE_GRAIN: usize = 4096;

impl candle_core::CustomOp2 for GateUp {
    fn name(&self) -> &'static str {
        "fused-gate"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
    ) -> Result<(CpuStorage, Shape)> {
        let gate = values(s1, l1, "the gate")?;
        let up = values(s2, l2, "the gate")?;
        let mut out = gate.to_vec();
        par_chunks(&mut out, GATE_GRAIN, |i, part| {
            let start = i * GATE_GRAIN;
            crate::q8::gate_up(self.act, part, &up[start..start + part.len()]);
        });
        Ok((CpuStorage::F32(out), l1.shape().clone()))
    }

    fn bwd(
        &self,
        gate: &Tensor,
        up: &Tensor,
        _: &Tensor,
        grad: &Tensor,
    ) -> Result<(Option<Tensor>, Option<Tensor>)> {
        let (d_gate, d_up) = with_values(gate, "the gate", |gate| {
            with_values(up, "the gate", |up| {
                with_values(grad, "the gate", |grad| {
                    let n = gate.len();
                    let (mut d_gate, mut d_up) = (vec![0f32; n], vec![0f32; n]);
                    par_chunks2(&mut d_gate, &mut d_up, GATE_GRAIN, |i, dg, du| {
                        let span = i * GATE_GRAIN..i * GATE_GRAIN + dg.len();
                        crate::q8::gate_up_grad(
                            self.act,
                            (&gate[span.clone()], &up[span.clone()], &grad[span]),
                            (dg, du),
                        );
                    });
                    Ok((d_gate, d_up))
                })
            })
        })?;
        Ok((
            Some(Tensor::from_vec(d_gate, gate.shape(), gate.device())?),
            Some(Tensor::from_vec(d_up, up.shape(), up.device())?),
        ))
    }
}

#[cfg(test)]
mod tests;
