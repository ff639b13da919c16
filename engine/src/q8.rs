//! The engine's own 8-bit matrix multiply for `Q8_0` weights on the CPU: `y = x Wᵀ` with `W`
//! stored as 8-bit integers and one `f32` scale per 32 values, and `x` quantized the same way
//! on the fly.
//!
//! Why: candle's quantized matmul computes every (token, row) pair with a separate block dot
//! product (`vec_dot_q8_0_q8_0`), converting the f16 scales each time, so a 256-token prefill
//! streams each weight matrix 256 times and does a horizontal sum per block. Here the weights
//! are repacked once at load (scales as `f32`), and a register tile of `RM` tokens × `RN` rows
//! is accumulated across the whole row before one horizontal sum per output — the scheme of
//! llama.cpp's tiled kernels. Work is split over rows between candle's persistent CPU worker
//! threads (`CANDLE_NUM_THREADS`).
//!
//! The inner loop uses AVX2 and FMA when the CPU has them (checked at run time, once); any
//! other CPU runs the portable loop, which gives the same sums. This is the only module of the
//! engine with `unsafe` code: the SIMD loads and the disjoint writes of the worker threads.
//! Each `unsafe` block states why it is sound.

#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Values per block.
pub(crate) const BLOCK: usize = 32;
/// Bytes of one `Q8_0` block in a GGUF file: an f16 scale and 32 `i8`.
const GGUF_BLOCK_BYTES: usize = 34;

/// A `(rows, cols)` weight matrix in blocks of 32 `i8` with an `f32` scale each.
#[derive(Debug, Clone)]
pub(crate) struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// `rows × cols / 32`.
    scales: Vec<f32>,
    /// `rows × cols`.
    quants: Vec<i8>,
}

/// Activations quantized for [`Q8Matrix::matmul`].
struct Acts {
    scales: Vec<f32>,
    quants: Vec<i8>,
}

impl Q8Matrix {
    /// Repacks the bytes of a GGUF `Q8_0` tensor of shape `(rows, cols)`; `None` if `bytes` is
    /// not that tensor or `cols` is not a multiple of 32.
    pub(crate) fn from_q8_0_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) || bytes.len() != rows * cols / BLOCK * GGUF_BLOCK_BYTES {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = Vec::with_capacity(blocks);
        let mut quants = Vec::with_capacity(rows * cols);
        for block in bytes.chunks_exact(GGUF_BLOCK_BYTES) {
            scales.push(f16_to_f32(u16::from_le_bytes([block[0], block[1]])));
            quants.extend(block[2..].iter().map(|&b| i8::from_ne_bytes([b])));
        }
        Some(Self {
            rows,
            cols,
            scales,
            quants,
        })
    }

    /// Quantizes a dense `(rows, cols)` matrix (row-major) the way `Q8_0` does.
    #[cfg(test)]
    pub(crate) fn quantize(rows: usize, cols: usize, values: &[f32]) -> Option<Self> {
        if !cols.is_multiple_of(BLOCK) || values.len() != rows * cols {
            return None;
        }
        let acts = quantize_rows(values, rows, cols);
        Some(Self {
            rows,
            cols,
            scales: acts.scales,
            quants: acts.quants,
        })
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Writes row `row`, dequantized, into `out` (`cols` long).
    pub(crate) fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let blocks = self.cols / BLOCK;
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate().take(blocks) {
            let scale = self.scales[row * blocks + b];
            let start = row * self.cols + b * BLOCK;
            for (o, &q) in chunk.iter_mut().zip(&self.quants[start..start + BLOCK]) {
                *o = f32::from(q) * scale;
            }
        }
    }

    /// The whole matrix, dequantized, row-major.
    pub(crate) fn dequantize(&self) -> Vec<f32> {
        let mut out = vec![0.0; self.rows * self.cols];
        for (row, chunk) in out.chunks_exact_mut(self.cols).enumerate() {
            self.dequantize_row(row, chunk);
        }
        out
    }

    /// `out = x Wᵀ` for `x` of `m` rows of `cols` values; `out` is `m × rows`.
    pub(crate) fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        debug_assert_eq!(x.len(), m * self.cols);
        debug_assert_eq!(out.len(), m * self.rows);
        let acts = quantize_rows(x, m, self.cols);
        // Row tiles are the unit of work; each thread writes only its tiles' columns.
        let row_tiles = self.rows.div_ceil(RN);
        let out_ptr = SharedOut(out.as_mut_ptr());
        let out_len = out.len();
        let run = |tiles: std::ops::Range<usize>| {
            let out_ptr = &out_ptr;
            for tile in tiles {
                let n0 = tile * RN;
                let rn = RN.min(self.rows - n0);
                let mut m0 = 0;
                while m0 < m {
                    let rm = RM.min(m - m0);
                    let sums = dot_tile(self, &acts, m0, rm, n0, rn);
                    #[allow(clippy::needless_range_loop)] // i, j index the output too
                    for i in 0..rm {
                        for j in 0..rn {
                            let index = (m0 + i) * self.rows + n0 + j;
                            debug_assert!(index < out_len);
                            // SAFETY: `index < m * rows = out.len()` (i < rm ≤ m − m0,
                            // j < rn ≤ rows − n0), and column n0 + j belongs to this tile
                            // alone, so no two threads write the same element; `out` outlives
                            // the pool call, which returns only when every thread is done.
                            unsafe { *out_ptr.0.add(index) = sums[i][j] };
                        }
                    }
                    m0 += rm;
                }
            }
        };
        let work = m * self.rows * self.cols;
        if work < PARALLEL_THRESHOLD {
            run(0..row_tiles);
        } else {
            candle_core::utils::barrier_pool().execute_chunked(row_tiles, run);
        }
    }
}

/// Below this many multiply-adds a matmul runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 64 * 1024;
/// Tokens per register tile.
const RM: usize = 4;
/// Weight rows per register tile.
const RN: usize = 3;

/// The output pointer, shared by the worker threads for their disjoint writes.
struct SharedOut(*mut f32);
// SAFETY: the pointer is only written through at indices owned by one thread each (see
// `Q8Matrix::matmul`).
unsafe impl Sync for SharedOut {}

fn quantize_rows(x: &[f32], m: usize, cols: usize) -> Acts {
    let blocks = cols / BLOCK;
    let mut scales = Vec::with_capacity(m * blocks);
    let mut quants = Vec::with_capacity(m * cols);
    for chunk in x.chunks_exact(BLOCK) {
        let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
        let scale = amax / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        scales.push(scale);
        #[allow(clippy::cast_possible_truncation)] // |v · inverse| ≤ 127 by construction
        quants.extend(chunk.iter().map(|v| (v * inverse).round() as i8));
    }
    Acts { scales, quants }
}

/// The `rm × rn` sums of one tile (entries past `rm`/`rn` are unused).
fn dot_tile(
    w: &Q8Matrix,
    acts: &Acts,
    m0: usize,
    rm: usize,
    n0: usize,
    rn: usize,
) -> [[f32; RN]; RM] {
    #[cfg(target_arch = "x86_64")]
    if has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked above); the tile stays inside both
        // matrices (rm ≤ m − m0, rn ≤ rows − n0, checked by the caller).
        return unsafe { avx2::dispatch(w, acts, m0, rm, n0, rn) };
    }
    portable_tile(w, acts, m0, rm, n0, rn)
}

fn portable_tile(
    w: &Q8Matrix,
    acts: &Acts,
    m0: usize,
    rm: usize,
    n0: usize,
    rn: usize,
) -> [[f32; RN]; RM] {
    let cols = w.cols;
    let blocks = cols / BLOCK;
    let mut sums = [[0f32; RN]; RM];
    for (i, row_sums) in sums.iter_mut().enumerate().take(rm) {
        for (j, sum) in row_sums.iter_mut().enumerate().take(rn) {
            let (t, r) = (m0 + i, n0 + j);
            for b in 0..blocks {
                let x = &acts.quants[t * cols + b * BLOCK..][..BLOCK];
                let q = &w.quants[r * cols + b * BLOCK..][..BLOCK];
                let dot: i32 = x
                    .iter()
                    .zip(q)
                    .map(|(&a, &b)| i32::from(a) * i32::from(b))
                    .sum();
                #[allow(clippy::cast_precision_loss)] // |dot| ≤ 32 · 127², exact in f32
                let dot = dot as f32;
                *sum += dot * acts.scales[t * blocks + b] * w.scales[r * blocks + b];
            }
        }
    }
    sums
}

fn has_avx2() -> bool {
    static DETECTED: OnceLock<bool> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            false
        }
    })
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256i, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps, _mm_shuffle_ps,
        _mm256_abs_epi8, _mm256_castps256_ps128, _mm256_cvtepi32_ps, _mm256_extractf128_ps,
        _mm256_fmadd_ps, _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16,
        _mm256_set1_epi16, _mm256_set1_ps, _mm256_setzero_ps, _mm256_sign_epi8,
    };

    use super::{Acts, BLOCK, Q8Matrix, RM, RN};

    /// Picks the tile shape's instance.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `m0 + rm` must not pass the activations' rows nor
    /// `n0 + rn` the weight rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dispatch(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        rm: usize,
        n0: usize,
        rn: usize,
    ) -> [[f32; RN]; RM] {
        // SAFETY: forwarded from this function's contract.
        unsafe {
            match (rm, rn) {
                (4, 3) => tile::<4, 3>(w, acts, m0, n0),
                (4, 2) => tile::<4, 2>(w, acts, m0, n0),
                (4, _) => tile::<4, 1>(w, acts, m0, n0),
                (3, 3) => tile::<3, 3>(w, acts, m0, n0),
                (3, 2) => tile::<3, 2>(w, acts, m0, n0),
                (3, _) => tile::<3, 1>(w, acts, m0, n0),
                (2, 3) => tile::<2, 3>(w, acts, m0, n0),
                (2, 2) => tile::<2, 2>(w, acts, m0, n0),
                (2, _) => tile::<2, 1>(w, acts, m0, n0),
                (_, 3) => tile::<1, 3>(w, acts, m0, n0),
                (_, 2) => tile::<1, 2>(w, acts, m0, n0),
                _ => tile::<1, 1>(w, acts, m0, n0),
            }
        }
    }

    /// # Safety
    /// As [`dispatch`], with `rm = M`, `rn = N`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const M: usize, const N: usize>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let cols = w.cols;
        let blocks = cols / BLOCK;
        let ones = _mm256_set1_epi16(1);
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        let x_base = acts.quants.as_ptr();
        let w_base = w.quants.as_ptr();
        for b in 0..blocks {
            let mut wv = [ones; N];
            let mut wd = [0f32; N];
            for j in 0..N {
                // SAFETY: row n0 + j < rows (contract), so its block b lies inside `quants`
                // (rows × cols values); unaligned loads are allowed.
                wv[j] = unsafe {
                    _mm256_loadu_si256(w_base.add((n0 + j) * cols + b * BLOCK).cast::<__m256i>())
                };
                wd[j] = w.scales[(n0 + j) * blocks + b];
            }
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract), so its block b lies inside the
                // activations (m × cols values).
                let xv = unsafe {
                    _mm256_loadu_si256(x_base.add((m0 + i) * cols + b * BLOCK).cast::<__m256i>())
                };
                let ax = _mm256_abs_epi8(xv);
                let xd = acts.scales[(m0 + i) * blocks + b];
                for j in 0..N {
                    // |x| · (w · sign x) = x · w, in u8 × i8 pairs that cannot saturate i16
                    // (|x|, |w| ≤ 127).
                    let signed = _mm256_sign_epi8(wv[j], xv);
                    let pairs = _mm256_maddubs_epi16(ax, signed);
                    let dots = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    acc[i][j] = _mm256_fmadd_ps(dots, _mm256_set1_ps(xd * wd[j]), acc[i][j]);
                }
            }
        }
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            for j in 0..N {
                sums[i][j] = hsum(acc[i][j]);
            }
        }
        sums
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn hsum(v: __m256) -> f32 {
        let low = _mm256_castps256_ps128(v);
        let high = _mm256_extractf128_ps::<1>(v);
        let quad = _mm_add_ps(low, high);
        let dual = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(dual, _mm_shuffle_ps::<1>(dual, dual));
        _mm_cvtss_f32(single)
    }
}

/// IEEE half to single precision (the scales of GGUF `Q8_0` blocks).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match (exponent, mantissa) {
        (0, 0) => 0,
        (0, _) => {
            // Subnormal: value = mantissa · 2⁻²⁴.
            #[allow(clippy::cast_precision_loss)]
            let value = mantissa as f32 * f32::from_bits(0x3380_0000);
            return if sign == 0 { value } else { -value };
        }
        (0x1f, 0) => 0x7f80_0000,
        (0x1f, _) => 0x7fc0_0000,
        _ => ((exponent + 112) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

#[cfg(test)]
mod tests;
