//! Dense `f32` products for training, on the kernels' worker threads.
//!
//! candle multiplies through the `gemm` crate on rayon's thread pool, while its element-wise
//! operations (and the engine's kernels) run on its own barrier pool: on a machine with as many
//! cores as threads, after every product rayon's workers spin on the cores the next element-wise
//! operation needs (21% of a LoRA step's samples, docs/perf-notes.md section 15). A training
//! step's large products (a frozen base matrix forward and backward) are taken here instead:
//! the output's columns split between the barrier pool's threads, each running `gemm` on its
//! own part single-threaded, so rayon stays asleep.

use super::SharedOut;

/// How the right-hand matrix `w` is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rhs {
    /// `w` is `(n, k)` row-major and the product is `x wᵀ` (a base matrix forward).
    Transposed,
    /// `w` is `(k, n)` row-major and the product is `x w` (its backward).
    Plain,
}

/// Columns a thread's part is rounded to (the `f32` microkernels' width on AVX-512).
const COLUMN_GRAIN: usize = 16;

/// `x · B` for `x` of `m × k` and `B` of `k × n` given by `w` as `rhs` says: `m × n`,
/// row-major. The output is not zero-filled first (`gemm` writes every element of it).
///
/// # Panics
/// If a slice's length does not match `m`, `k` and `n`.
pub(crate) fn matmul_f32(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, rhs: Rhs) -> Vec<f32> {
    assert_eq!(x.len(), m * k, "a left-hand side of the wrong size");
    assert_eq!(w.len(), k * n, "a right-hand side of the wrong size");
    if m == 0 || n == 0 || k == 0 {
        return vec![0.0; m * n];
    }
    let mut out: Vec<f32> = Vec::with_capacity(m * n);
    let pool = candle_core::utils::barrier_pool();
    let threads = pool.n_workers() + 1;
    let per = n.div_ceil(threads).div_ceil(COLUMN_GRAIN) * COLUMN_GRAIN;
    let parts = n.div_ceil(per);
    let dst = SharedOut(out.as_mut_ptr());
    let run = |range: std::ops::Range<usize>| {
        for part in range {
            let j0 = part * per;
            let cols = per.min(n - j0);
            let (rhs_start, rhs_cs, rhs_rs) = match rhs {
                Rhs::Transposed => (j0 * k, k, 1),
                Rhs::Plain => (j0, 1, n),
            };
            // SAFETY: part `part` writes columns j0..j0 + cols of the output (m × n, row
            // stride n, allocated above) and no other part does; it reads rows 0..m of `x`
            // (m × k) and, of `w`, the elements (l, j0 + c) for l < k, c < cols at
            // rhs_start + l · rhs_rs + c · rhs_cs, all inside `w` (k · n elements, checked
            // above). `gemm` with `read_dst` false only writes the output, and with
            // `Parallelism::None` runs on this thread only; the output outlives the pool call,
            // which returns when every part is done.
            unsafe {
                gemm::gemm(
                    m,
                    cols,
                    k,
                    dst.at(j0),
                    1,
                    signed(n),
                    false,
                    x.as_ptr(),
                    1,
                    signed(k),
                    w.as_ptr().add(rhs_start),
                    signed(rhs_cs),
                    signed(rhs_rs),
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
        }
    };
    if parts == 1 {
        run(0..1);
    } else {
        pool.execute_chunked(parts, run);
    }
    // SAFETY: the parts together wrote every column of every row (their column ranges cover
    // 0..n), so all m × n elements are initialized; the capacity is m × n.
    unsafe { out.set_len(m * n) };
    out
}

/// A matrix inside a slice: element `(i, j)` at `offset + i · row_stride + j · col_stride`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct View<'a> {
    pub(crate) data: &'a [f32],
    pub(crate) offset: usize,
    pub(crate) rows: usize,
    pub(crate) cols: usize,
    pub(crate) row_stride: usize,
    pub(crate) col_stride: usize,
}

impl<'a> View<'a> {
    /// Rows `rows` of `cols` values stored one after another from `offset`.
    pub(crate) fn rows(data: &'a [f32], offset: usize, rows: usize, cols: usize) -> Self {
        Self::block(data, offset, rows, cols, cols)
    }

    /// A block of `rows × cols` from `offset` inside a row-major matrix whose rows are
    /// `row_stride` values apart.
    pub(crate) fn block(
        data: &'a [f32],
        offset: usize,
        rows: usize,
        cols: usize,
        row_stride: usize,
    ) -> Self {
        Self {
            data,
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The transposed matrix (the same elements).
    pub(crate) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn inside(&self) -> bool {
        if self.rows == 0 || self.cols == 0 {
            return self.offset <= self.data.len();
        }
        (self.rows - 1)
            .checked_mul(self.row_stride)
            .zip((self.cols - 1).checked_mul(self.col_stride))
            .and_then(|(a, b)| a.checked_add(b))
            .and_then(|last| last.checked_add(self.offset))
            .is_some_and(|last| last < self.data.len())
    }
}

/// `out ← a · b`, or with `accumulate` `out ← out + a · b`, on this thread: `out` is
/// `a.rows × b.cols`, row-major and contiguous.
///
/// # Panics
/// If the shapes do not match or a view reaches outside its slice.
pub(crate) fn gemm_into(out: &mut [f32], a: View<'_>, b: View<'_>, accumulate: bool) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert_eq!(b.rows, k, "a product of {m} × {k} and {} × {n}", b.rows);
    assert_eq!(out.len(), m * n, "an output of the wrong size");
    assert!(a.inside() && b.inside(), "a matrix view outside its slice");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out.fill(0.0);
        }
        return;
    }
    // SAFETY: the output is m × n contiguous (row stride n, checked above) and borrowed
    // mutably, so no view aliases it; every element `gemm` reads of `a` (i < m, l < k) and of
    // `b` (l < k, j < n) lies inside its slice (`inside`, checked above). With `read_dst`
    // false the output is only written, with true it is read first, and it is initialized
    // either way (a `&mut [f32]`). `Parallelism::None` keeps the work on this thread.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            signed(n),
            accumulate,
            a.data.as_ptr().add(a.offset),
            signed(a.col_stride),
            signed(a.row_stride),
            b.data.as_ptr().add(b.offset),
            signed(b.col_stride),
            signed(b.row_stride),
            if accumulate { 1.0 } else { 0.0 },
            1.0,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

/// A stride as `gemm` takes it (the sizes here come from allocated slices, so they fit).
fn signed(stride: usize) -> isize {
    isize::try_from(stride).unwrap_or(isize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::q8::tests::values;

    fn naive(x: &[f32], m: usize, k: usize, w: &[f32], n: usize, rhs: Rhs) -> Vec<f64> {
        let mut out = vec![0f64; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k)
                    .map(|l| {
                        let b = match rhs {
                            Rhs::Transposed => w[j * k + l],
                            Rhs::Plain => w[l * n + j],
                        };
                        f64::from(x[i * k + l]) * f64::from(b)
                    })
                    .sum();
            }
        }
        out
    }

    /// Both layouts against a plain triple loop in `f64`, at sizes that split unevenly between
    /// threads and leave a narrow last part.
    #[test]
    fn dense_products_match_the_definition() {
        for (m, k, n) in [
            (1, 1, 1),
            (3, 5, 7),
            (17, 33, 65),
            (64, 96, 130),
            (5, 128, 1000),
        ] {
            let x = values(m * k, 1);
            let w = values(k * n, 2);
            for rhs in [Rhs::Transposed, Rhs::Plain] {
                let out = matmul_f32(&x, m, k, &w, n, rhs);
                assert_eq!(out.len(), m * n);
                let want = naive(&x, m, k, &w, n, rhs);
                for (index, (&got, &want)) in out.iter().zip(&want).enumerate() {
                    assert!(
                        (f64::from(got) - want).abs() <= 1e-4 * (k as f64).sqrt(),
                        "({m}, {k}, {n}) {rhs:?} at {index}: {got} against {want}"
                    );
                }
            }
        }
        assert_eq!(matmul_f32(&[], 2, 0, &[], 3, Rhs::Plain), vec![0.0; 6]);
    }

    /// Views with strides (a transposed block inside a larger matrix) against the definition,
    /// writing and accumulating; a view outside its slice is refused.
    #[test]
    fn products_of_views_match_the_definition() {
        let (m, k, n) = (5, 7, 6);
        // `a` is the transpose of a 7 × 5 block at column 2 of a 9 × 11 matrix.
        let big = values(9 * 11, 3);
        let a = View::block(&big, 11 + 2, k, m, 11).t();
        let b_values = values(k * n, 4);
        let b = View::rows(&b_values, 0, k, n);
        let start = values(m * n, 5);
        for accumulate in [false, true] {
            let mut out = start.clone();
            gemm_into(&mut out, a, b, accumulate);
            for i in 0..m {
                for j in 0..n {
                    let dot: f64 = (0..k)
                        .map(|l| {
                            f64::from(big[(1 + l) * 11 + 2 + i]) * f64::from(b_values[l * n + j])
                        })
                        .sum();
                    let want = dot
                        + if accumulate {
                            f64::from(start[i * n + j])
                        } else {
                            0.0
                        };
                    let got = f64::from(out[i * n + j]);
                    assert!(
                        (got - want).abs() < 1e-5,
                        "({i}, {j}): {got} against {want}"
                    );
                }
            }
        }
        let outside = View::rows(&b_values, 1, k, n);
        let refused = std::panic::catch_unwind(|| {
            let mut out = vec![0.0; m * n];
            gemm_into(&mut out, a, outside, false);
        });
        assert!(refused.is_err());
    }

    /// Throughput of a LoRA step's product shapes (SmolLM2-135M, 256 positions), for comparing
    /// with other libraries on the same machine: `cargo test --release -p kokushi-engine --lib
    /// probe_dense -- --ignored --nocapture`.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn probe_dense_products() {
        for (m, k, n) in [
            (256, 576, 576),
            (256, 576, 1536),
            (256, 1536, 576),
            (256, 576, 49152),
            (256, 49152, 576),
            (256, 576, 192),
        ] {
            let x = values(m * k, 1);
            for rhs in [Rhs::Transposed, Rhs::Plain] {
                let w = values(k * n, 2);
                let repeats = if n > 10_000 || k > 10_000 { 3 } else { 20 };
                for _ in 0..2 {
                    std::hint::black_box(matmul_f32(&x, m, k, &w, n, rhs));
                }
                let started = std::time::Instant::now();
                for _ in 0..repeats {
                    std::hint::black_box(matmul_f32(&x, m, k, &w, n, rhs));
                }
                let each = started.elapsed().as_secs_f64() / f64::from(repeats);
                let flops = 2.0 * (m * k * n) as f64;
                println!(
                    "{m}x{k}x{n} {rhs:?}: {:.3} ms {:.1} GFLOP/s",
                    each * 1e3,
                    flops / each / 1e9
                );
            }
        }
    }
}
