//! The summed negative log-likelihood of target tokens under a matrix of logits, as one autograd
//! node: `Σᵢ (log Σⱼ exp zᵢⱼ − zᵢ,tᵢ)` forward, `g · (softmax(zᵢ) − onehot(tᵢ))` backward.
//!
//! Why one node: composed from candle's operations (log-softmax = max, subtract, exp, sum, log,
//! subtract; then gather, sum), a pass with the loss on every position of a 256-token sequence
//! makes about twenty passes over its 256 × 49,152 logits, each into a fresh 50 MB tensor, and
//! the backward pass as many again. Here the forward pass reads the logits twice (maximum, then
//! the sum of exponentials, per row, kept for the backward pass) and the backward pass reads them
//! once more and writes the gradient, split over rows between the worker threads.
//!
//! With many positions the logits themselves are the largest tensors of a step (256 × 49,152
//! values, 50 MB, for SmolLM2), and as tensors of the graph they are copied and their gradient
//! summed into zero-filled ones several times over. [`head_nll`] takes the output head's product
//! into the same node: `x` in, the loss out, the logits one buffer inside it that the backward
//! pass turns into their gradient in place before multiplying it by the head.
//!
//! On a device other than the CPU, [`response_nll`] takes the composed form (the generic path).

use std::sync::{Mutex, PoisonError};

use candle_core::{CpuStorage, D, DType, Layout, Result, Shape, Storage, Tensor};

use crate::q8::{Rhs, matmul_f32};
use crate::transformer::attention_threads;

/// `Σᵢ −log softmax(logits[i])[targets[i]]` for `logits` of shape `(rows, vocab)`, as a scalar
/// differentiable in `logits`.
pub(crate) fn response_nll(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (rows, vocab) = logits.dims2()?;
    check_targets(rows, vocab, targets)?;
    if !logits.device().is_cpu() {
        return composed_nll(logits, targets);
    }
    logits.contiguous()?.apply_op1(ResponseNll {
        targets: targets.to_vec(),
        stats: Mutex::default(),
    })
}

/// Refuses an empty vocabulary, a count of targets other than the rows, and a target outside
/// the vocabulary.
fn check_targets(rows: usize, vocab: usize, targets: &[u32]) -> Result<()> {
    if vocab == 0 {
        candle_core::bail!("logits over an empty vocabulary");
    }
    if rows != targets.len() {
        candle_core::bail!("{rows} rows of logits for {} targets", targets.len());
    }
    if let Some(&t) = targets.iter().find(|&&t| t as usize >= vocab) {
        candle_core::bail!("target token {t} is outside the vocabulary of {vocab}");
    }
    Ok(())
}

/// [`response_nll`] of the logits `x Wᵀ`, for `x` of `(rows, hidden)` and the output head `w`
/// (`(vocab, hidden)`, `f32`), as one node differentiable in `x` (the head is frozen). On a
/// device other than the CPU, the product and then [`response_nll`].
pub(crate) fn head_nll(x: &Tensor, w: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let (rows, hidden) = x.dims2()?;
    let (vocab, w_hidden) = w.dims2()?;
    if w_hidden != hidden {
        candle_core::bail!(
            "an output head of shape {:?} for inputs of {hidden}",
            w.dims()
        );
    }
    check_targets(rows, vocab, targets)?;
    if !x.device().is_cpu() || x.dtype() != DType::F32 || w.dtype() != DType::F32 {
        return response_nll(&x.matmul(&w.t()?)?, targets);
    }
    x.contiguous()?.apply_op1(HeadNll {
        w: w.contiguous()?,
        targets: targets.to_vec(),
        kept: Mutex::default(),
    })
}

/// The same sum from candle's operations (any device; the reference of the tests).
pub(super) fn composed_nll(logits: &Tensor, targets: &[u32]) -> Result<Tensor> {
    let logp = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let targets = Tensor::new(targets, logits.device())?.unsqueeze(1)?;
    logp.gather(&targets, 1)?.sum_all()?.neg()
}

/// The autograd node (CPU, `f32`).
struct ResponseNll {
    targets: Vec<u32>,
    /// Each row's maximum and sum of exponentials, from the forward pass.
    stats: Mutex<Vec<(f32, f64)>>,
}

/// `max zⱼ` and `Σⱼ exp(zⱼ − max)` of one row (the sum in `f64`).
fn row_stats(row: &[f32]) -> (f32, f64) {
    let max = row.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
    let sum = row.iter().map(|&v| f64::from((v - max).exp())).sum();
    (max, sum)
}

/// Runs `work(first_row, rows_chunk, out_chunk)` over `rows` rows of `width` values split into
/// contiguous ranges between the worker threads; `out` has `per_row` values a row.
fn by_rows<T: Send>(
    logits: &[f32],
    width: usize,
    out: &mut [T],
    per_row: usize,
    work: impl Fn(usize, &[f32], &mut [T]) + Sync,
) {
    let rows = logits.len() / width.max(1);
    let threads = attention_threads().clamp(1, rows.max(1));
    let chunk = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        let work = &work;
        for (index, (input, output)) in logits
            .chunks(chunk * width)
            .zip(out.chunks_mut(chunk * per_row))
            .enumerate()
        {
            scope.spawn(move || work(index * chunk, input, output));
        }
    });
}

impl ResponseNll {
    fn contiguous<'a>(storage: &'a CpuStorage, layout: &Layout) -> Result<&'a [f32]> {
        let CpuStorage::F32(values) = storage else {
            candle_core::bail!("the response loss takes f32 logits");
        };
        match layout.contiguous_offsets() {
            Some((start, end)) => Ok(&values[start..end]),
            None => candle_core::bail!("the response loss takes contiguous logits"),
        }
    }
}

impl candle_core::CustomOp1 for ResponseNll {
    fn name(&self) -> &'static str {
        "response-nll"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, vocab) = layout.shape().dims2()?;
        let logits = Self::contiguous(storage, layout)?;
        let stats = all_row_stats(logits, rows, vocab);
        let total = summed_nll(logits, vocab, &stats, &self.targets);
        // Kept for the backward pass, which reads the same logits.
        *self.stats.lock().unwrap_or_else(PoisonError::into_inner) = stats;
        #[allow(clippy::cast_possible_truncation)] // the loss is an f32 tensor
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, logits: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, vocab) = logits.dims2()?;
        let scale = grad.to_dtype(candle_core::DType::F32)?.to_scalar::<f32>()?;
        let (storage, layout) = logits.storage_and_layout();
        let candle_core::Storage::Cpu(storage) = &*storage else {
            candle_core::bail!("the response loss runs on the CPU");
        };
        let values = Self::contiguous(storage, layout)?;
        let mut stats =
            std::mem::take(&mut *self.stats.lock().unwrap_or_else(PoisonError::into_inner));
        if stats.len() != rows {
            stats = all_row_stats(values, rows, vocab);
        }
        let mut out = values.to_vec();
        gradient_in_place(&mut out, vocab, &stats, &self.targets, scale);
        Ok(Some(Tensor::from_vec(out, (rows, vocab), logits.device())?))
    }
}

/// Turns `logits` (rows of `vocab`) into the loss's gradient with respect to them, scaled by
/// `scale`: `scale · (softmax − onehot(target))` a row, from each row's `(max, Σ exp)`.
fn gradient_in_place(
    logits: &mut [f32],
    vocab: usize,
    stats: &[(f32, f64)],
    targets: &[u32],
    scale: f32,
) {
    let rows = logits.len() / vocab.max(1);
    let threads = attention_threads().clamp(1, rows.max(1));
    let chunk = rows.div_ceil(threads).max(1);
    std::thread::scope(|scope| {
        for (index, part) in logits.chunks_mut(chunk * vocab).enumerate() {
            scope.spawn(move || {
                let first = index * chunk;
                for (i, row) in part.chunks_exact_mut(vocab).enumerate() {
                    let (max, sum) = stats[first + i];
                    #[allow(clippy::cast_possible_truncation)]
                    let factor = (f64::from(scale) / sum) as f32;
                    for g in row.iter_mut() {
                        *g = (*g - max).exp() * factor;
                    }
                    row[targets[first + i] as usize] -= scale;
                }
            });
        }
    });
}

/// Each row's maximum and sum of exponentials.
type RowStats = Vec<(f32, f64)>;

/// The output head and the loss as one autograd node (CPU, `f32`; see [`head_nll`]).
struct HeadNll {
    /// The head, `(vocab, hidden)`.
    w: Tensor,
    targets: Vec<u32>,
    /// The logits and each row's maximum and sum of exponentials, from the forward pass.
    kept: Mutex<Option<(Vec<f32>, RowStats)>>,
}

impl HeadNll {
    /// `f` of the head's values.
    fn with_head<R>(&self, f: impl FnOnce(&[f32]) -> R) -> Result<R> {
        let (storage, layout) = self.w.storage_and_layout();
        let Storage::Cpu(storage) = &*storage else {
            candle_core::bail!("the output head's loss runs on the CPU");
        };
        Ok(f(ResponseNll::contiguous(storage, layout)?))
    }

    /// `x Wᵀ` for `x` of `rows` rows, and the head's vocabulary.
    fn logits(&self, x: &[f32], rows: usize) -> Result<(Vec<f32>, usize)> {
        let (vocab, hidden) = self.w.dims2()?;
        if x.len() != rows * hidden {
            candle_core::bail!("{} inputs for {rows} rows of {hidden}", x.len());
        }
        let logits = self.with_head(|w| matmul_f32(x, rows, hidden, w, vocab, Rhs::Transposed))?;
        Ok((logits, vocab))
    }
}

impl candle_core::CustomOp1 for HeadNll {
    fn name(&self) -> &'static str {
        "head-response-nll"
    }

    fn cpu_fwd(&self, storage: &CpuStorage, layout: &Layout) -> Result<(CpuStorage, Shape)> {
        let (rows, _) = layout.shape().dims2()?;
        let x = ResponseNll::contiguous(storage, layout)?;
        let (logits, vocab) = self.logits(x, rows)?;
        let stats = all_row_stats(&logits, rows, vocab);
        let total = summed_nll(&logits, vocab, &stats, &self.targets);
        *self.kept.lock().unwrap_or_else(PoisonError::into_inner) = Some((logits, stats));
        #[allow(clippy::cast_possible_truncation)] // the loss is an f32 tensor
        Ok((CpuStorage::F32(vec![total as f32]), Shape::from(())))
    }

    fn bwd(&self, x: &Tensor, _: &Tensor, grad: &Tensor) -> Result<Option<Tensor>> {
        let (rows, hidden) = x.dims2()?;
        let scale = grad.to_dtype(DType::F32)?.to_scalar::<f32>()?;
        let kept = self
            .kept
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take();
        let (mut logits, stats) = match kept {
            Some(kept) => kept,
            None => {
                let values = x.contiguous()?.flatten_all()?.to_vec1::<f32>()?;
                let (logits, vocab) = self.logits(&values, rows)?;
                let stats = all_row_stats(&logits, rows, vocab);
                (logits, stats)
            }
        };
        let (vocab, _) = self.w.dims2()?;
        gradient_in_place(&mut logits, vocab, &stats, &self.targets, scale);
        let dx = self.with_head(|w| matmul_f32(&logits, rows, vocab, w, hidden, Rhs::Plain))?;
        Ok(Some(Tensor::from_vec(dx, (rows, hidden), x.device())?))
    }
}

/// `Σᵢ (max_i + log Σ exp − zᵢ,tᵢ)` from each row's `stats`: the summed loss, in `f64`.
fn summed_nll(logits: &[f32], vocab: usize, stats: &[(f32, f64)], targets: &[u32]) -> f64 {
    stats
        .iter()
        .zip(logits.chunks_exact(vocab))
        .zip(targets)
        .map(|((&(max, sum), row), &target)| {
            f64::from(max) + sum.ln() - f64::from(row[target as usize])
        })
        .sum()
}

/// [`row_stats`] of each of the `rows` rows of `logits`, over the threads.
fn all_row_stats(logits: &[f32], rows: usize, vocab: usize) -> Vec<(f32, f64)> {
    let mut stats = vec![(0f32, 0f64); rows];
    by_rows(logits, vocab, &mut stats, 1, |_, input, out| {
        for (row, stat) in input.chunks_exact(vocab).zip(out) {
            *stat = row_stats(row);
        }
    });
    stats
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Tensor, Var};

    use super::{composed_nll, response_nll};

    /// Logits of `rows × vocab` with a wide spread (some rows far from zero, where a softmax
    /// without its maximum subtracted overflows).
    fn logits(rows: usize, vocab: usize) -> Vec<f32> {
        let mut rng = crate::fixture::SplitMix64(7);
        (0..rows * vocab)
            .map(|i| {
                #[allow(clippy::cast_precision_loss)]
                let unit = (rng.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
                let offset = if (i / vocab) % 3 == 1 { 90.0 } else { 0.0 };
                offset + 12.0 * unit - 6.0
            })
            .collect()
    }

    /// The loss times 1.7 and the gradient of that with respect to the logits.
    fn value_and_gradient(
        loss: impl Fn(&Tensor, &[u32]) -> candle_core::Result<Tensor>,
        values: &[f32],
        shape: (usize, usize),
        targets: &[u32],
    ) -> (f32, Vec<f32>) {
        let var =
            Var::from_tensor(&Tensor::from_slice(values, shape, &Device::Cpu).unwrap()).unwrap();
        let total = (loss(var.as_tensor(), targets).unwrap() * 1.7).unwrap();
        let grads = total.backward().unwrap();
        let gradient = grads.get(var.as_tensor()).unwrap();
        (
            total.to_scalar::<f32>().unwrap(),
            gradient.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
        )
    }

    #[test]
    fn the_fused_loss_and_its_gradient_equal_candles_composition() {
        // Arrange: more rows than threads, a vocabulary of a few thousand, targets at both ends.
        let (rows, vocab) = (11, 3001);
        let values = logits(rows, vocab);
        let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 977) % 3001).collect();
        let targets = [&[0, 3000][..], &targets[2..]].concat();

        // Act
        let (fused, fused_grad) =
            value_and_gradient(response_nll, &values, (rows, vocab), &targets);
        let (composed, composed_grad) =
            value_and_gradient(composed_nll, &values, (rows, vocab), &targets);

        // Assert
        assert!(
            (fused - composed).abs() <= 1e-5 * composed.abs(),
            "{fused} vs {composed}"
        );
        assert!(fused > 0.0);
        let worst = fused_grad
            .iter()
            .zip(&composed_grad)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(worst <= 1e-6, "gradients differ by up to {worst}");
        // Each row's gradient sums to zero (softmax minus one-hot), times 1.7.
        for row in fused_grad.chunks_exact(vocab) {
            assert!(row.iter().sum::<f32>().abs() < 1e-4);
        }
    }

    #[test]
    fn the_head_and_loss_node_equals_the_product_then_candles_composition() {
        // Arrange: 20 rows of 24 inputs, a head of 3,001 rows (the logits spread as above).
        let (rows, hidden, vocab) = (20, 24, 3001);
        let x = logits(rows, hidden);
        let w: Vec<f32> = logits(vocab, hidden).iter().map(|v| v * 0.05).collect();
        let w = Tensor::from_vec(w, (vocab, hidden), &Device::Cpu).unwrap();
        let targets: Vec<u32> = (0..rows as u32).map(|i| (i * 1237) % 3001).collect();
        let fused = |x: &Tensor, t: &[u32]| super::head_nll(x, &w, t);
        let composed = |x: &Tensor, t: &[u32]| composed_nll(&x.matmul(&w.t()?)?, t);

        // Act
        let (value, gradient) = value_and_gradient(fused, &x, (rows, hidden), &targets);
        let (want, want_gradient) = value_and_gradient(composed, &x, (rows, hidden), &targets);

        // Assert
        assert!(
            (value - want).abs() <= 1e-5 * want.abs(),
            "{value} vs {want}"
        );
        let scale = want_gradient.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = gradient
            .iter()
            .zip(&want_gradient)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(
            scale > 1e-3 && worst <= 1e-5 * scale,
            "gradients differ by {worst} ({scale})"
        );
        // Its checks are the loss's.
        let x = Tensor::zeros((2, hidden), candle_core::DType::F32, &Device::Cpu).unwrap();
        let error = super::head_nll(&x, &w, &[0, 3001]).unwrap_err().to_string();
        assert!(error.contains("target token 3001"), "{error}");
        let error = super::head_nll(&x.t().unwrap(), &w, &[0; 24])
            .unwrap_err()
            .to_string();
        assert!(error.contains("for inputs of 2"), "{error}");
    }

    #[test]
    fn targets_outside_the_vocabulary_or_of_another_count_are_refused() {
        let x = Tensor::zeros((2, 5), candle_core::DType::F32, &Device::Cpu).unwrap();
        let error = response_nll(&x, &[0, 5]).unwrap_err().to_string();
        assert!(error.contains("target token 5"), "{error}");
        let error = response_nll(&x, &[0]).unwrap_err().to_string();
        assert!(error.contains("2 rows of logits for 1 targets"), "{error}");
    }
}
