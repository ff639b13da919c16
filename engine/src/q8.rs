//! The engine's own matrix multiply for `Q8_0` weights on the CPU (and, in the same scheme, for
//! `Q4_0`/`Q4_1` weights kept 4-bit: [`Q4Matrix`], in `q4`): `y = x Wᵀ` with `W` stored as 8-bit
//! integers and one `f32` scale per 32 values, and `x` quantized the same way on the fly.
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
//! other CPU runs the portable loop, which gives the same sums. This module holds the 8-bit
//! matrix and what both kernels share: the activations' quantization, the driver that splits
//! tiles between threads, and the CPU check.
//!
//! This module and its submodules (`q4`: the 4-bit matrix; `lanes`: the `f32` dot products of
//! the CPU attention and of training's streamed products; `gate`: a feed-forward layer's
//! activation times its up projection, and its gradients; `softmax`: a row of training's
//! attention softmax; `dense`: training's `f32` products on the same threads)
//! are the only code of the engine with
//! `unsafe`: the SIMD loads and the disjoint writes of the worker threads. Each `unsafe` block
//! states why it is sound.

#![allow(unsafe_code)]

use std::sync::OnceLock;

/// Calls `$tile!(M, N)` for the const tile shape matching `(rm, rn)` (`rm ≤ RM`, `rn ≤ RN`):
/// the one table every SIMD kernel's dispatch uses.
macro_rules! by_shape {
    ($rm:expr, $rn:expr, $tile:ident) => {
        match ($rm, $rn) {
            (4, 3) => $tile!(4, 3),
            (4, 2) => $tile!(4, 2),
            (4, _) => $tile!(4, 1),
            (3, 3) => $tile!(3, 3),
            (3, 2) => $tile!(3, 2),
            (3, _) => $tile!(3, 1),
            (2, 3) => $tile!(2, 3),
            (2, 2) => $tile!(2, 2),
            (2, _) => $tile!(2, 1),
            (_, 3) => $tile!(1, 3),
            (_, 2) => $tile!(1, 2),
            _ => $tile!(1, 1),
        }
    };
}
pub(crate) use by_shape;

/// `$plain($arg, …)` on the path `$isa`, which must be one this CPU has (checked, else a
/// panic): the same plain-code function (`#[inline(always)]`) compiled once with AVX-512 F,
/// AVX2 and FMA enabled, once with AVX2 and FMA, and once for the baseline, so the compiler
/// vectorizes it for each. The source is one, so every path computes the same IEEE operations
/// lane by lane and gives the same bits (each user has a test that checks it). The element-wise
/// kernels (`gate`, `softmax`) dispatch through it.
macro_rules! on_path {
    ($isa:expr, $plain:ident($($arg:ident: $ty:ty),* $(,)?)) => {{
        let isa: $crate::q8::Isa = $isa;
        assert!(
            isa.supported(),
            "{} is not available on this CPU",
            isa.name()
        );
        #[cfg(target_arch = "x86_64")]
        {
            /// # Safety
            /// The CPU must have AVX-512 F, AVX2 and FMA.
            #[target_feature(enable = "avx512f,avx2,fma")]
            unsafe fn avx512($($arg: $ty),*) {
                $plain($($arg),*)
            }
            /// # Safety
            /// The CPU must have AVX2 and FMA.
            #[target_feature(enable = "avx2,fma")]
            unsafe fn avx2($($arg: $ty),*) {
                $plain($($arg),*)
            }
            match isa {
                // SAFETY: the CPU has AVX-512 F, AVX2 and FMA (`isa` is supported, checked
                // above).
                $crate::q8::Isa::Avx512 => unsafe { avx512($($arg),*) },
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                $crate::q8::Isa::Avx2 => unsafe { avx2($($arg),*) },
                $crate::q8::Isa::Portable => $plain($($arg),*),
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        $plain($($arg),*)
    }};
}

mod dense;
mod gate;
mod lanes;
mod q4;
mod softmax;

pub(crate) use dense::{Rhs, View, gemm_into, matmul_f32};
pub(crate) use gate::{Gate, exp, gate_up, gate_up_grad};
pub(crate) use lanes::{add_scaled, dot_lanes};
pub(crate) use q4::{Q4Kind, Q4Matrix};
pub(crate) use softmax::softmax_row;

/// Bytes ahead of the block a kernel is reading in a weight row that it asks the CPU to fetch
/// ([`avx2::prefetch`]). A one-token product streams each weight once and spends its time waiting
/// for it: the hardware prefetcher does not cross 4 KiB pages, so without this every page
/// starts with a miss (Gemma 3's 262,144 × 640 head, one token: 14.4–15.3 ms without, 8.6–9.0
/// with, in alternating runs; 512 bytes ahead 10 ms, 2,048 and 4,096 as 1,024).
const PREFETCH_AHEAD: usize = 1024;

/// Values per block.
pub(crate) const BLOCK: usize = 32;
/// Bytes of one `Q8_0` block in a GGUF file: an f16 scale and 32 `i8`.
const GGUF_BLOCK_BYTES: usize = 34;

/// A `(rows, cols)` weight matrix in blocks of 32 `i8` with an `f32` scale each.
#[derive(Debug, Clone)]
pub(crate) struct Q8Matrix {
    rows: usize,
    cols: usize,
    /// `rows × cols / 32`, or with `halves` `rows × cols / 16`.
    scales: Vec<f32>,
    /// `rows × cols`.
    quants: Vec<i8>,
    /// One scale per 16 values instead of 32 (`Q6_K`'s sub-blocks).
    halves: bool,
}

/// Activations quantized for [`Q8Matrix::matmul`] and [`Q4Matrix::matmul`].
struct Acts {
    scales: Vec<f32>,
    quants: Vec<i8>,
    /// Per block, `scale · Σ quants`: what a 4-bit block's offset multiplies.
    sums: Vec<f32>,
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
            halves: false,
        })
    }

    /// Repacks the bytes of a GGUF `Q6_K` tensor of shape `(rows, cols)` exactly: each
    /// 256-value super-block holds 6-bit values `q` (low 4 bits in `ql`, high 2 in `qh`), 16
    /// signed 8-bit scales `sc` and an f16 factor `d`; value `v` of the block is
    /// `d · sc[v / 16] · (q − 32)`, so it is kept as the 8-bit `q − 32` under the scale
    /// `d · sc` of its 16 values. `None` if `bytes` is not that tensor or `cols` is not a
    /// multiple of 256.
    ///
    /// Not used for models: as 8-bit values a `Q6_K` matrix takes 1.25 bytes a value instead of
    /// 0.82, and candle's own `Q6_K` kernels are faster (docs/perf-notes.md sections 5 and 16);
    /// kept with its test for a kernel that reads the packed layout.
    #[cfg(test)]
    pub(crate) fn from_q6_k_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        const SUPER: usize = 256;
        const SUPER_BYTES: usize = 210;
        if !cols.is_multiple_of(SUPER) || bytes.len() != rows * cols / SUPER * SUPER_BYTES {
            return None;
        }
        let mut scales = Vec::with_capacity(rows * cols / 16);
        let mut quants = Vec::with_capacity(rows * cols);
        for block in bytes.chunks_exact(SUPER_BYTES) {
            let (ql, rest) = block.split_at(128);
            let (qh, rest) = rest.split_at(64);
            let (sc, d) = rest.split_at(16);
            let d = f16_to_f32(u16::from_le_bytes([d[0], d[1]]));
            scales.extend(sc.iter().map(|&b| d * f32::from(i8::from_ne_bytes([b]))));
            let mut values = [0i8; SUPER];
            // llama.cpp's dequantize_row_q6_K: two halves of 128 values, each of four groups of
            // 32 sharing the bytes of `ql` and `qh` at the same offsets.
            for half in 0..2 {
                let (ql, qh) = (&ql[64 * half..], &qh[32 * half..]);
                for l in 0..32 {
                    let six = |low: u8, shift: u32| -> i8 {
                        let q = low | (((qh[l] >> shift) & 3) << 4);
                        #[allow(clippy::cast_possible_wrap)] // q < 64
                        let q = q as i8;
                        q - 32
                    };
                    let base = 128 * half + l;
                    values[base] = six(ql[l] & 0x0f, 0);
                    values[base + 32] = six(ql[l + 32] & 0x0f, 2);
                    values[base + 64] = six(ql[l] >> 4, 4);
                    values[base + 96] = six(ql[l + 32] >> 4, 6);
                }
            }
            quants.extend_from_slice(&values);
        }
        Some(Self {
            rows,
            cols,
            scales,
            quants,
            halves: true,
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
            halves: false,
        })
    }

    /// The GGUF type the matrix was read from (`Q8_0`; in tests also `Q6_K`, with its 16-value
    /// scales).
    pub(crate) fn format(&self) -> &'static str {
        if self.halves { "Q6_K" } else { "Q8_0" }
    }

    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    pub(crate) fn cols(&self) -> usize {
        self.cols
    }

    /// Writes row `row`, dequantized, into `out` (`cols` long).
    pub(crate) fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let group = if self.halves { BLOCK / 2 } else { BLOCK };
        let groups = self.cols / group;
        for (g, chunk) in out.chunks_exact_mut(group).enumerate().take(groups) {
            let scale = self.scales[row * groups + g];
            let start = row * self.cols + g * group;
            for (o, &q) in chunk.iter_mut().zip(&self.quants[start..start + group]) {
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

    /// `out = x Wᵀ` for `x` of `m` rows of `cols` values; `out` is `m × rows` (for tests: the
    /// model's products go through [`matmul_many`]).
    #[cfg(test)]
    pub(crate) fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_on(chosen(), x, m, out);
    }

    /// [`Self::matmul`] on the path `isa`, which this CPU must have.
    #[cfg(test)]
    pub(crate) fn matmul_on(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        matmul_many_on(isa, x, m, &mut [(OwnMatrix::Q8(self), out)]);
    }
}

/// A matrix in one of the engine's own layouts, for [`matmul_many`].
#[derive(Debug, Clone, Copy)]
pub(crate) enum OwnMatrix<'a> {
    Q8(&'a Q8Matrix),
    Q4(&'a Q4Matrix),
}

impl OwnMatrix<'_> {
    pub(crate) fn rows(self) -> usize {
        match self {
            Self::Q8(w) => w.rows(),
            Self::Q4(w) => w.rows(),
        }
    }

    pub(crate) fn cols(self) -> usize {
        match self {
            Self::Q8(w) => w.cols(),
            Self::Q4(w) => w.cols(),
        }
    }

    /// The `rm × rn` sums of one tile (entries past `rm`/`rn` are unused), on `isa`.
    fn tile(self, isa: Isa, acts: &Acts, m0: usize, rm: usize, n0: usize, rn: usize) -> Tile {
        match self {
            Self::Q8(w) => dot_tile(isa, w, acts, m0, rm, n0, rn),
            Self::Q4(w) => match (w.five(), w.centred()) {
                (true, true) => q4::tile_on::<true, true>(isa, w, acts, m0, rm, n0, rn),
                (true, false) => q4::tile_on::<true, false>(isa, w, acts, m0, rm, n0, rn),
                (false, true) => q4::tile_on::<false, true>(isa, w, acts, m0, rm, n0, rn),
                (false, false) => q4::tile_on::<false, false>(isa, w, acts, m0, rm, n0, rn),
            },
        }
    }
}

/// The sums of one `RM × RN` register tile.
type Tile = [[f32; RN]; RM];

/// `outs[i] = x Wᵢᵀ` for matrices of one width and `x` of `m` rows: `x` quantized once, then
/// every `RM × RN` tile of every output, split over rows between the worker threads in one
/// hand-off when the products are large enough. Several products of the same input (a layer's
/// query, key and value projections, or its gate and up projections) are taken as one this way;
/// each output gets the bits it gets alone.
pub(crate) fn matmul_many(x: &[f32], m: usize, products: &mut [(OwnMatrix<'_>, &mut [f32])]) {
    matmul_many_on(chosen(), x, m, products);
}

/// [`matmul_many`] on the path `isa`, which this CPU must have.
pub(crate) fn matmul_many_on(
    isa: Isa,
    x: &[f32],
    m: usize,
    products: &mut [(OwnMatrix<'_>, &mut [f32])],
) {
    assert!(
        isa.supported(),
        "{} is not available on this CPU",
        isa.name()
    );
    let Some(cols) = products.first().map(|(w, _)| w.cols()) else {
        return;
    };
    assert!(
        products.iter().all(|(w, _)| w.cols() == cols),
        "products of one input need matrices of one width"
    );
    debug_assert_eq!(x.len(), m * cols);
    let acts = quantize_rows_on(isa, x, m, cols);
    // Row tiles are the unit of work, numbered across the products; each thread writes only its
    // tiles' columns.
    let mut first_tile = Vec::with_capacity(products.len() + 1);
    let mut macs = 0;
    first_tile.push(0);
    for (w, out) in products.iter() {
        assert_eq!(out.len(), m * w.rows(), "an output of the wrong size");
        first_tile.push(first_tile[first_tile.len() - 1] + w.rows().div_ceil(RN));
        macs += m * w.rows() * cols;
    }
    let total_tiles = first_tile[products.len()];
    let outs: Vec<(OwnMatrix<'_>, SharedOut, usize)> = products
        .iter_mut()
        .map(|(w, out)| (*w, SharedOut(out.as_mut_ptr()), out.len()))
        .collect();
    let run = |tiles: std::ops::Range<usize>| {
        let mut index = 0;
        for t in tiles {
            while t >= first_tile[index + 1] {
                index += 1;
            }
            let (w, out_ptr, out_len) = &outs[index];
            let rows = w.rows();
            let n0 = (t - first_tile[index]) * RN;
            let rn = RN.min(rows - n0);
            let mut m0 = 0;
            while m0 < m {
                let rm = RM.min(m - m0);
                let sums = w.tile(isa, &acts, m0, rm, n0, rn);
                #[allow(clippy::needless_range_loop)] // i, j index the output too
                for i in 0..rm {
                    for j in 0..rn {
                        let index = (m0 + i) * rows + n0 + j;
                        assert!(index < *out_len);
                        // SAFETY: `index` is inside this product's output (checked), and column
                        // n0 + j of it belongs to this tile alone, so no two threads write the
                        // same element; the outputs outlive the pool call, which returns only
                        // when every thread is done.
                        unsafe { *out_ptr.0.add(index) = sums[i][j] };
                    }
                }
                m0 += rm;
            }
        }
    };
    if macs < PARALLEL_THRESHOLD {
        run(0..total_tiles);
    } else {
        candle_core::utils::barrier_pool().execute_chunked(total_tiles, run);
    }
}

/// Below this many multiply-adds a matmul runs on the calling thread.
const PARALLEL_THRESHOLD: usize = 64 * 1024;
/// Tokens per register tile.
const RM: usize = 4;
/// Weight rows per register tile.
const RN: usize = 3;

/// An output pointer, shared by the worker threads for their disjoint writes.
struct SharedOut(*mut f32);

impl SharedOut {
    /// The pointer `offset` elements in (formed with `wrapping_add`; the writer keeps it inside
    /// the output). A method, so that a closure using it captures the whole `Sync` wrapper.
    fn at(&self, offset: usize) -> *mut f32 {
        self.0.wrapping_add(offset)
    }
}

// SAFETY: the pointer is only written through at indices owned by one thread each (see
// `matmul_many_on` and `dense::matmul_f32`).
unsafe impl Sync for SharedOut {}

/// `t` rounded to the nearest integer, halves away from zero (as `f32::round`), for `|t| ≤ 300`:
/// `t + HALF·sign t` truncated toward zero, with `HALF` the largest `f32` below one half (checked
/// against `t.round()` over every such `f32`). No library call (which `round` is on baseline
/// x86-64), and in a form the compiler vectorizes.
#[inline(always)]
fn round_small(t: f32) -> i32 {
    const HALF: f32 = 0.499_999_97;
    #[allow(clippy::cast_possible_truncation)] // |t| ≤ 300 by the callers' contracts
    let n = (t + HALF.copysign(t)) as i32;
    n
}

/// The activations' 8-bit blocks for a product on `isa`: the same values on every path (the
/// same IEEE operations, in the same order where order matters), compiled for AVX2 where the
/// CPU has it so that the loops run eight lanes wide.
fn quantize_rows_on(isa: Isa, x: &[f32], m: usize, cols: usize) -> Acts {
    #[cfg(target_arch = "x86_64")]
    if isa != Isa::Portable {
        // SAFETY: every path but the portable one requires AVX2 and FMA, and `isa` is one this
        // CPU has (checked by the caller, `matmul_many_on`).
        return unsafe { quantize_rows_avx2(x, m, cols) };
    }
    let _ = isa;
    quantize_rows(x, m, cols)
}

/// [`quantize_rows`] compiled with AVX2.
///
/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn quantize_rows_avx2(x: &[f32], m: usize, cols: usize) -> Acts {
    quantize_rows(x, m, cols)
}

/// `x` (`m` rows of `cols` values) in blocks of 32: per block the scale `max |v| / 127`, each
/// value divided by it and rounded to the nearest integer (halves away from zero, as
/// `f32::round`), and the scale times the sum of the block's integers.
#[inline(always)]
fn quantize_rows(x: &[f32], m: usize, cols: usize) -> Acts {
    let blocks = cols / BLOCK;
    let mut scales = vec![0f32; m * blocks];
    let mut quants = vec![0i8; m * cols];
    let mut sums = vec![0f32; m * blocks];
    for (((chunk, q), scale_out), sum_out) in x
        .chunks_exact(BLOCK)
        .zip(quants.chunks_exact_mut(BLOCK))
        .zip(&mut scales)
        .zip(&mut sums)
    {
        // The largest magnitude, in eight lanes (a maximum does not depend on order).
        let mut lanes = [0f32; 8];
        for eight in chunk.chunks_exact(8) {
            for (lane, v) in lanes.iter_mut().zip(eight) {
                *lane = lane.max(v.abs());
            }
        }
        let amax = lanes.iter().fold(0f32, |a, &v| a.max(v));
        let scale = amax / 127.0;
        let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
        let mut total = 0i32;
        for (out, v) in q.iter_mut().zip(chunk) {
            let t = v * inverse;
            let n = round_small(t); // |t| ≤ 127 by construction
            total += n;
            #[allow(clippy::cast_possible_truncation)] // |n| ≤ 127
            {
                *out = n as i8;
            }
        }
        *scale_out = scale;
        #[allow(clippy::cast_precision_loss)] // |total| ≤ 32 · 127, exact in f32
        {
            *sum_out = scale * total as f32;
        }
    }
    Acts {
        scales,
        quants,
        sums,
    }
}

/// The `rm × rn` sums of one tile (entries past `rm`/`rn` are unused), on `isa`.
fn dot_tile(
    isa: Isa,
    w: &Q8Matrix,
    acts: &Acts,
    m0: usize,
    rm: usize,
    n0: usize,
    rn: usize,
) -> [[f32; RN]; RM] {
    debug_assert!(isa.supported());
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has AVX-512 F/BW/VNNI, AVX2 and FMA (callers pass a supported
        // path); the tile stays inside both matrices (rm ≤ m − m0, rn ≤ rows − n0, checked
        // by the caller).
        Isa::Avx512 => {
            return unsafe {
                if w.halves {
                    avx512::dispatch::<true>(w, acts, m0, rm, n0, rn)
                } else {
                    avx512::dispatch::<false>(w, acts, m0, rm, n0, rn)
                }
            };
        }
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => {
            return unsafe {
                if w.halves {
                    avx2::dispatch::<true>(w, acts, m0, rm, n0, rn)
                } else {
                    avx2::dispatch::<false>(w, acts, m0, rm, n0, rn)
                }
            };
        }
        Isa::Portable => {}
    }
    portable_tile(w, acts, m0, rm, n0, rn)
}

/// One tile the portable way, lane for lane what the SIMD paths compute: lane `l` of a block
/// is the exact integer sum of its values `4l..4l+3`, converted and fused into the lane's
/// running sum with the block's scale; the eight lanes are summed at the end.
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
            let mut lanes = [0f32; 8];
            for b in 0..blocks {
                let x = &acts.quants[t * cols + b * BLOCK..][..BLOCK];
                let q = &w.quants[r * cols + b * BLOCK..][..BLOCK];
                let xd = acts.scales[t * blocks + b];
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let dot: i32 = (4 * l..4 * l + 4)
                        .map(|k| i32::from(x[k]) * i32::from(q[k]))
                        .sum();
                    let scale = if w.halves {
                        w.scales[(r * blocks + b) * 2 + l / 4] * xd
                    } else {
                        xd * w.scales[r * blocks + b]
                    };
                    #[allow(clippy::cast_precision_loss)] // |dot| ≤ 4 · 128², exact in f32
                    let dot = dot as f32;
                    *lane = dot.mul_add(scale, *lane);
                }
            }
            *sum = hsum_lanes(lanes);
        }
    }
    sums
}

/// An instruction set the engine's kernels can run on. Every path computes the same lanes in
/// the same order, so all of them give the same bits (`every_kernel_path_gives_the_same_bits`
/// forces each one this CPU has and compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Isa {
    /// Plain Rust: eight `f32` lanes emulated, `mul_add` for the fused steps.
    Portable,
    /// AVX2 and FMA: `maddubs`/`madd` for the 8-bit products.
    Avx2,
    /// AVX-512 (F, BW) with VNNI: `vpdpbusd` on two blocks at once, the `f32` steps as AVX2's.
    Avx512,
}

impl Isa {
    /// Every path, slowest first.
    pub(crate) const ALL: [Self; 3] = [Self::Portable, Self::Avx2, Self::Avx512];

    /// How a run's arithmetic names it.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "AVX2+FMA",
            Self::Avx512 => "AVX-512 VNNI",
        }
    }

    /// The value of `KOKUSHI_KERNEL` that asks for it.
    fn key(self) -> &'static str {
        match self {
            Self::Portable => "portable",
            Self::Avx2 => "avx2",
            Self::Avx512 => "avx512",
        }
    }

    /// Whether this CPU can run it.
    pub(crate) fn supported(self) -> bool {
        self <= detected()
    }
}

/// The best path this CPU has, checked once.
fn detected() -> Isa {
    static DETECTED: OnceLock<Isa> = OnceLock::new();
    *DETECTED.get_or_init(|| {
        #[cfg(target_arch = "x86_64")]
        {
            use std::arch::is_x86_feature_detected as has;
            if !(has!("avx2") && has!("fma")) {
                Isa::Portable
            } else if has!("avx512f") && has!("avx512bw") && has!("avx512vnni") {
                Isa::Avx512
            } else {
                Isa::Avx2
            }
        }
        #[cfg(not(target_arch = "x86_64"))]
        {
            Isa::Portable
        }
    })
}

/// The path the kernels take: the best this CPU has, or a slower one named by
/// `KOKUSHI_KERNEL` (`portable`, `avx2`, `avx512`; one the CPU lacks, or an unknown name, gives
/// the best it has), read once.
pub(crate) fn chosen() -> Isa {
    static CHOSEN: OnceLock<Isa> = OnceLock::new();
    *CHOSEN.get_or_init(|| pick(std::env::var("KOKUSHI_KERNEL").ok().as_deref(), detected()))
}

/// The path for `KOKUSHI_KERNEL` = `asked` on a CPU whose best is `best`.
fn pick(asked: Option<&str>, best: Isa) -> Isa {
    asked
        .and_then(|asked| {
            Isa::ALL
                .into_iter()
                .find(|isa| isa.key().eq_ignore_ascii_case(asked.trim()))
        })
        .map_or(best, |asked| asked.min(best))
}

/// The instruction set the engine's kernels run on this CPU.
pub(crate) fn isa() -> &'static str {
    chosen().name()
}

fn has_avx2() -> bool {
    chosen() >= Isa::Avx2
}

/// The sum of eight lanes in the order of AVX2's horizontal sum: `(s0+s4) + (s2+s6)` and
/// `(s1+s5) + (s3+s7)`, then the two.
fn hsum_lanes(s: [f32; 8]) -> f32 {
    let q = [s[0] + s[4], s[1] + s[5], s[2] + s[6], s[3] + s[7]];
    (q[0] + q[2]) + (q[1] + q[3])
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256i, _MM_HINT_T0, _mm_add_ps, _mm_add_ss, _mm_cvtss_f32, _mm_movehl_ps,
        _mm_prefetch, _mm_shuffle_ps, _mm256_abs_epi8, _mm256_castps256_ps128, _mm256_cvtepi32_ps,
        _mm256_extractf128_ps, _mm256_fmadd_ps, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_maddubs_epi16, _mm256_mul_ps, _mm256_set1_epi16, _mm256_set1_ps, _mm256_setr_ps,
        _mm256_setzero_ps, _mm256_sign_epi8,
    };

    use super::{Acts, BLOCK, Q8Matrix, RM, RN};

    use super::PREFETCH_AHEAD;

    /// Asks the CPU to bring the cache line at `base + offset` into its caches. A hint only: it
    /// reads nothing architecturally and cannot fault, so an address past the end of the
    /// weights is harmless (and is formed with `wrapping_add`, which has no in-bounds rule).
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(in crate::q8) fn prefetch<T>(base: *const T, offset: usize) {
        _mm_prefetch::<_MM_HINT_T0>(base.cast::<i8>().wrapping_add(offset));
    }

    /// Picks the tile shape's instance.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `m0 + rm` must not pass the activations' rows nor
    /// `n0 + rn` the weight rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn dispatch<const H: bool>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        rm: usize,
        n0: usize,
        rn: usize,
    ) -> [[f32; RN]; RM] {
        macro_rules! tile {
            ($m:literal, $n:literal) => {
                // SAFETY: forwarded from this function's contract (rm = M, rn = N).
                unsafe { tile::<$m, $n, H>(w, acts, m0, n0) }
            };
        }
        super::by_shape!(rm, rn, tile)
    }

    /// # Safety
    /// As [`dispatch`], with `rm = M`, `rn = N`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn tile<const M: usize, const N: usize, const H: bool>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        for b in 0..w.cols / BLOCK {
            // SAFETY: forwarded from this function's contract; b is a block of the rows.
            unsafe { block_step::<M, N, H>(w, acts, m0, n0, b, &mut acc) };
        }
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            for j in 0..N {
                sums[i][j] = hsum(acc[i][j]);
            }
        }
        sums
    }

    /// Adds block `b` of tokens `m0..m0 + M` times rows `n0..n0 + N` into `acc`: per lane the
    /// exact integer sum of four products, converted and fused with the block's scale.
    ///
    /// # Safety
    /// As [`tile`], and `b` must be a block of the rows (`b < cols / 32`).
    #[inline(always)]
    pub(super) unsafe fn block_step<const M: usize, const N: usize, const H: bool>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
        b: usize,
        acc: &mut [[__m256; N]; M],
    ) {
        // SAFETY: the caller guarantees AVX2 and FMA (this function's contract), which the
        // intrinsics below need; the pointer arithmetic is justified where it happens.
        unsafe {
            let cols = w.cols;
            let blocks = cols / BLOCK;
            let ones = _mm256_set1_epi16(1);
            let x_base = acts.quants.as_ptr();
            let w_base = w.quants.as_ptr();
            let mut wv = [ones; N];
            let mut wd = [0f32; N];
            let mut wh = [_mm256_setzero_ps(); N];
            for j in 0..N {
                // SAFETY: row n0 + j < rows (contract), so its block b lies inside `quants`
                // (rows × cols values); unaligned loads are allowed.
                wv[j] = {
                    _mm256_loadu_si256(w_base.add((n0 + j) * cols + b * BLOCK).cast::<__m256i>())
                };
                prefetch(w_base, (n0 + j) * cols + b * BLOCK + PREFETCH_AHEAD);
                if H {
                    // The i32 lanes 0–3 hold values 0–15, lanes 4–7 values 16–31.
                    let index = ((n0 + j) * blocks + b) * 2;
                    let (low, high) = (w.scales[index], w.scales[index + 1]);
                    wh[j] = _mm256_setr_ps(low, low, low, low, high, high, high, high);
                } else {
                    wd[j] = w.scales[(n0 + j) * blocks + b];
                }
            }
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract), so its block b lies inside the
                // activations (m × cols values).
                let xv = {
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
                    let scale = if H {
                        _mm256_mul_ps(wh[j], _mm256_set1_ps(xd))
                    } else {
                        _mm256_set1_ps(xd * wd[j])
                    };
                    acc[i][j] = _mm256_fmadd_ps(dots, scale, acc[i][j]);
                }
            }
        }
    }

    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) fn hsum(v: __m256) -> f32 {
        let low = _mm256_castps256_ps128(v);
        let high = _mm256_extractf128_ps::<1>(v);
        let quad = _mm_add_ps(low, high);
        let dual = _mm_add_ps(quad, _mm_movehl_ps(quad, quad));
        let single = _mm_add_ss(dual, _mm_shuffle_ps::<1>(dual, dual));
        _mm_cvtss_f32(single)
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m256, __m512i, _mm256_castpd_ps, _mm256_fmadd_ps, _mm256_mul_ps, _mm256_set1_ps,
        _mm256_setr_ps, _mm256_setzero_ps, _mm512_castps_pd, _mm512_castps512_ps256,
        _mm512_cvtepi32_ps, _mm512_dpbusd_epi32, _mm512_extractf64x4_pd, _mm512_loadu_si512,
        _mm512_set1_epi8, _mm512_setzero_si512, _mm512_sub_epi32, _mm512_xor_si512,
    };

    use super::avx2::{block_step, hsum, prefetch};
    use super::{Acts, BLOCK, PREFETCH_AHEAD, Q8Matrix, RM, RN};

    /// Fuses the integer lanes of two blocks (`lanes`: block `b` in the low 256 bits, `b + 1`
    /// in the high) into the eight running sums `acc`, block `b` first, each lane converted
    /// and multiplied by its block's `scales` in one rounding — exactly the AVX2 kernel's two
    /// steps.
    #[target_feature(enable = "avx512f,avx2,fma")]
    #[inline]
    pub(in crate::q8) fn fuse_two_blocks(
        lanes: __m512i,
        scales: [__m256; 2],
        acc: __m256,
    ) -> __m256 {
        let dots = _mm512_cvtepi32_ps(lanes);
        let low = _mm512_castps512_ps256(dots);
        let high = _mm256_castpd_ps(_mm512_extractf64x4_pd::<1>(_mm512_castps_pd(dots)));
        _mm256_fmadd_ps(high, scales[1], _mm256_fmadd_ps(low, scales[0], acc))
    }

    /// Picks the tile shape's instance.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI, AVX2 and FMA; `m0 + rm` must not pass the
    /// activations' rows nor `n0 + rn` the weight rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn dispatch<const H: bool>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        rm: usize,
        n0: usize,
        rn: usize,
    ) -> [[f32; RN]; RM] {
        macro_rules! tile {
            ($m:literal, $n:literal) => {
                // SAFETY: forwarded from this function's contract (rm = M, rn = N).
                unsafe { tile::<$m, $n, H>(w, acts, m0, n0) }
            };
        }
        super::by_shape!(rm, rn, tile)
    }

    /// The AVX2 tile's lanes, two blocks to a 512-bit product: `vpdpbusd` needs unsigned
    /// bytes on one side, so the activations go in shifted by 128 and each lane starts at
    /// `−128 · Σ` of its four weights, which leaves the exact integer sum of the four
    /// products. The lanes of block `b` are then fused into the running sums before those of
    /// block `b + 1`, as AVX2 does; an odd last block takes the AVX2 step itself.
    ///
    /// # Safety
    /// As [`dispatch`], with `rm = M`, `rn = N`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn tile<const M: usize, const N: usize, const H: bool>(
        w: &Q8Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let cols = w.cols;
        let blocks = cols / BLOCK;
        let zero = _mm512_setzero_si512();
        let flip = _mm512_set1_epi8(i8::MIN);
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        let x_base = acts.quants.as_ptr();
        let w_base = w.quants.as_ptr();
        for b in (0..blocks - blocks % 2).step_by(2) {
            let mut wv = [zero; N];
            let mut start = [zero; N];
            let mut wd = [[0f32; 2]; N];
            let mut wh = [[_mm256_setzero_ps(); 2]; N];
            for j in 0..N {
                // SAFETY: row n0 + j < rows (contract) and b + 1 < blocks, so blocks b and
                // b + 1 (64 bytes) lie inside `quants`; unaligned loads are allowed.
                wv[j] = unsafe {
                    _mm512_loadu_si512(w_base.add((n0 + j) * cols + b * BLOCK).cast::<__m512i>())
                };
                prefetch(w_base, (n0 + j) * cols + b * BLOCK + PREFETCH_AHEAD);
                start[j] = _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, flip, wv[j]));
                for (half, block) in [b, b + 1].into_iter().enumerate() {
                    if H {
                        let index = ((n0 + j) * blocks + block) * 2;
                        let (low, high) = (w.scales[index], w.scales[index + 1]);
                        wh[j][half] = _mm256_setr_ps(low, low, low, low, high, high, high, high);
                    } else {
                        wd[j][half] = w.scales[(n0 + j) * blocks + block];
                    }
                }
            }
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract) and b + 1 < blocks, so its blocks b and
                // b + 1 lie inside the activations (m × cols values).
                let xv = _mm512_xor_si512(
                    unsafe {
                        _mm512_loadu_si512(
                            x_base.add((m0 + i) * cols + b * BLOCK).cast::<__m512i>(),
                        )
                    },
                    flip,
                );
                let xd = [
                    acts.scales[(m0 + i) * blocks + b],
                    acts.scales[(m0 + i) * blocks + b + 1],
                ];
                for j in 0..N {
                    let scales = [0, 1].map(|half| {
                        if H {
                            _mm256_mul_ps(wh[j][half], _mm256_set1_ps(xd[half]))
                        } else {
                            _mm256_set1_ps(xd[half] * wd[j][half])
                        }
                    });
                    let lanes = _mm512_dpbusd_epi32(start[j], xv, wv[j]);
                    acc[i][j] = fuse_two_blocks(lanes, scales, acc[i][j]);
                }
            }
        }
        if blocks % 2 == 1 {
            // SAFETY: forwarded from this function's contract; the CPU has AVX2 and FMA.
            unsafe { block_step::<M, N, H>(w, acts, m0, n0, blocks - 1, &mut acc) };
        }
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            for j in 0..N {
                sums[i][j] = hsum(acc[i][j]);
            }
        }
        sums
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
pub(crate) mod tests;
