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
