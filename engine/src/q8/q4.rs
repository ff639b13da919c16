//! The 4-bit weight matrix ([`Q4Matrix`]): GGUF `Q4_0`/`Q4_1` blocks repacked at load but kept
//! 4-bit, multiplied in the parent module's scheme (activations quantized to 8 bits on the fly,
//! register tiles of `RM` tokens × `RN` rows, the same split between threads), by an AVX2 kernel
//! or the portable loop. A block's offset enters through the sum of each activation block, so
//! the inner loop multiplies unsigned nibbles by signed bytes and nothing else.

use super::{Acts, BLOCK, Isa, RM, RN, f16_to_f32, hsum_lanes};

/// A `(rows, cols)` weight matrix of GGUF `Q4_0` or `Q4_1` blocks, kept 4-bit: per block of 32
/// values an `f32` scale `d`, an `f32` offset `m` (`−8d` for `Q4_0`) and 16 bytes of nibbles in
/// GGUF's order (byte `k` holds value `k` in its low half and value `k + 16` in its high half);
/// value = `d · q + m`. Half the bytes of [`super::Q8Matrix`] to stream per token, which is
/// what bounds a decode step.
#[derive(Debug, Clone)]
pub(crate) struct Q4Matrix {
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    offsets: Vec<f32>,
    nibbles: Vec<u8>,
    /// The GGUF type it was read from (`Q4_0`, `Q4_1`, `Q4_K`).
    format: &'static str,
}

/// The two 4-bit GGUF block types [`Q4Matrix`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Q4Kind {
    /// 18 bytes: f16 `d`, 16 bytes of nibbles; value = `d · (q − 8)`.
    Q4_0,
    /// 20 bytes: f16 `d`, f16 `m`, 16 bytes of nibbles; value = `d · q + m`.
    Q4_1,
}

impl Q4Matrix {
    /// Repacks the bytes of a GGUF `Q4_0`/`Q4_1` tensor of shape `(rows, cols)`; `None` if
    /// `bytes` is not that tensor or `cols` is not a multiple of 32.
    pub(crate) fn from_gguf_bytes(
        kind: Q4Kind,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Option<Self> {
        let block_bytes = match kind {
            Q4Kind::Q4_0 => 18,
            Q4Kind::Q4_1 => 20,
        };
        if !cols.is_multiple_of(BLOCK) || bytes.len() != rows * cols / BLOCK * block_bytes {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = Vec::with_capacity(blocks);
        let mut offsets = Vec::with_capacity(blocks);
        let mut nibbles = Vec::with_capacity(rows * cols / 2);
        for block in bytes.chunks_exact(block_bytes) {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let (m, quants) = match kind {
                Q4Kind::Q4_0 => (-8.0 * d, &block[2..]),
                Q4Kind::Q4_1 => (
                    f16_to_f32(u16::from_le_bytes([block[2], block[3]])),
                    &block[4..],
                ),
            };
            scales.push(d);
            offsets.push(m);
            nibbles.extend_from_slice(quants);
        }
        Some(Self {
            rows,
            cols,
            scales,
            offsets,
            nibbles,
            format: match kind {
                Q4Kind::Q4_0 => "Q4_0",
                Q4Kind::Q4_1 => "Q4_1",
            },
        })
    }

    /// Repacks the bytes of a GGUF `Q4_K` tensor of shape `(rows, cols)` exactly: each
    /// 256-value super-block holds eight 32-value sub-blocks with 6-bit scales `sc` and mins
    /// `m` under the f16 factors `d` and `dmin`; a sub-block's value is `d·sc·q − dmin·m`, so its
    /// scale is `d·sc` and its offset `−dmin·m` (both exact in `f32`). `None` if `bytes` is not
    /// that tensor or `cols` is not a multiple of 256.
    ///
    /// Not used for models: candle's own `Q4_K` kernels (repacked 16-row tiles, chosen at run
    /// time for AVX2, AVX-512 VNNI or AMX) are faster than this layout on the engine's kernels,
    /// for prefill and decode alike (docs/perf-notes.md sections 5 and 16); kept with its test
    /// for a kernel that reads the packed layout.
    #[cfg(test)]
    pub(crate) fn from_q4_k_bytes(rows: usize, cols: usize, bytes: &[u8]) -> Option<Self> {
        const SUPER: usize = 256;
        const SUPER_BYTES: usize = 144;
        if !cols.is_multiple_of(SUPER) || bytes.len() != rows * cols / SUPER * SUPER_BYTES {
            return None;
        }
        let blocks = rows * cols / BLOCK;
        let mut scales = Vec::with_capacity(blocks);
        let mut offsets = Vec::with_capacity(blocks);
        let mut nibbles = Vec::with_capacity(rows * cols / 2);
        for block in bytes.chunks_exact(SUPER_BYTES) {
            let d = f16_to_f32(u16::from_le_bytes([block[0], block[1]]));
            let dmin = f16_to_f32(u16::from_le_bytes([block[2], block[3]]));
            let packed = &block[4..16];
            let quants = &block[16..];
            // llama.cpp's get_scale_min_k4: sub-blocks 0–3 keep 6 bits in bytes 0–7, 4–7 are
            // split between bytes 8–11 (low 4 bits) and the top 2 bits of bytes 0–7.
            let scale_min = |j: usize| -> (u8, u8) {
                if j < 4 {
                    (packed[j] & 63, packed[j + 4] & 63)
                } else {
                    (
                        (packed[j + 4] & 0x0f) | ((packed[j - 4] >> 6) << 4),
                        (packed[j + 4] >> 4) | ((packed[j] >> 6) << 4),
                    )
                }
            };
            // Four 64-value chunks of 32 bytes: the low nibbles are sub-block 2c, the high
            // nibbles sub-block 2c + 1.
            for (chunk, bytes) in quants.chunks_exact(32).enumerate() {
                for half in 0..2 {
                    let (sc, m) = scale_min(2 * chunk + half);
                    scales.push(d * f32::from(sc));
                    offsets.push(-(dmin * f32::from(m)));
                    let value = |l: usize| -> u8 {
                        if half == 0 {
                            bytes[l] & 0x0f
                        } else {
                            bytes[l] >> 4
                        }
                    };
                    // Our order: byte k holds value k (low) and value k + 16 (high).
                    for k in 0..BLOCK / 2 {
                        nibbles.push(value(k) | (value(k + BLOCK / 2) << 4));
                    }
                }
            }
        }
        Some(Self {
            rows,
            cols,
            scales,
            offsets,
            nibbles,
            format: "Q4_K",
        })
    }

    /// The GGUF type the matrix was read from.
    pub(crate) fn format(&self) -> &'static str {
        self.format
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
            let index = row * blocks + b;
            let (d, m) = (self.scales[index], self.offsets[index]);
            let bytes = &self.nibbles[index * BLOCK / 2..][..BLOCK / 2];
            let (low, high) = chunk.split_at_mut(BLOCK / 2);
            for ((l, h), &byte) in low.iter_mut().zip(high).zip(bytes) {
                *l = d * f32::from(byte & 0x0f) + m;
                *h = d * f32::from(byte >> 4) + m;
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
    /// model's products go through [`super::matmul_many`]).
    #[cfg(test)]
    pub(crate) fn matmul(&self, x: &[f32], m: usize, out: &mut [f32]) {
        self.matmul_on(super::chosen(), x, m, out);
    }

    /// [`Self::matmul`] on the path `isa`, which this CPU must have.
    #[cfg(test)]
    pub(crate) fn matmul_on(&self, isa: Isa, x: &[f32], m: usize, out: &mut [f32]) {
        super::matmul_many_on(isa, x, m, &mut [(super::OwnMatrix::Q4(self), out)]);
    }
}

/// The `rm × rn` sums of one tile of a [`Q4Matrix`] product, on `isa`.
pub(super) fn tile_on(
    isa: Isa,
    w: &Q4Matrix,
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
        Isa::Avx512 => return unsafe { avx512::q4_dispatch(w, acts, m0, rm, n0, rn) },
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => return unsafe { avx2::q4_dispatch(w, acts, m0, rm, n0, rn) },
        Isa::Portable => {}
    }
    q4_portable_tile(w, acts, m0, rm, n0, rn)
}

/// One tile the portable way, lane for lane what the SIMD paths compute (as the 8-bit
/// matrix's portable tile), plus the offsets' share.
pub(super) fn q4_portable_tile(
    w: &Q4Matrix,
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
                let bytes = &w.nibbles[(r * blocks + b) * BLOCK / 2..][..BLOCK / 2];
                // Value v is the low nibble of byte v below 16, the high one of byte v − 16.
                let value = |v: usize| -> i32 {
                    if v < BLOCK / 2 {
                        i32::from(bytes[v] & 0x0f)
                    } else {
                        i32::from(bytes[v - BLOCK / 2] >> 4)
                    }
                };
                let scale = acts.scales[t * blocks + b] * w.scales[r * blocks + b];
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let dot: i32 = (4 * l..4 * l + 4).map(|k| value(k) * i32::from(x[k])).sum();
                    #[allow(clippy::cast_precision_loss)] // |dot| ≤ 4 · 15 · 128, exact in f32
                    let dot = dot as f32;
                    *lane = dot.mul_add(scale, *lane);
                }
            }
            let offsets = &w.offsets[r * blocks..][..blocks];
            let x_sums = &acts.sums[t * blocks..][..blocks];
            *sum = hsum_lanes(lanes) + super::lanes::dot8(offsets, x_sums);
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m128i, __m256, __m256i, _mm_and_si128, _mm_loadu_si128, _mm_set1_epi8, _mm_srli_epi16,
        _mm256_cvtepi32_ps, _mm256_fmadd_ps, _mm256_loadu_si256, _mm256_madd_epi16,
        _mm256_maddubs_epi16, _mm256_set_m128i, _mm256_set1_epi16, _mm256_set1_ps,
        _mm256_setzero_ps,
    };

    use super::Q4Matrix;
    use crate::q8::avx2::{hsum, prefetch};
    use crate::q8::lanes::dot8;
    use crate::q8::{Acts, BLOCK, PREFETCH_AHEAD, RM, RN};

    /// Picks the tile shape's instance of the 4-bit kernel.
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `m0 + rm` must not pass the activations' rows nor
    /// `n0 + rn` the weight rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4_dispatch(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        rm: usize,
        n0: usize,
        rn: usize,
    ) -> [[f32; RN]; RM] {
        macro_rules! tile {
            ($m:literal, $n:literal) => {
                // SAFETY: forwarded from this function's contract (rm = M, rn = N).
                unsafe { q4_tile::<$m, $n>(w, acts, m0, n0) }
            };
        }
        crate::q8::by_shape!(rm, rn, tile)
    }

    /// # Safety
    /// As [`q4_dispatch`], with `rm = M`, `rn = N`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn q4_tile<const M: usize, const N: usize>(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let blocks = w.cols / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        for b in 0..blocks {
            // SAFETY: forwarded from this function's contract; b is a block of the rows.
            unsafe { q4_block_step::<M, N>(w, acts, m0, n0, b, &mut acc) };
        }
        // The offsets' share, Σ_b m_b · (scale · Σ x)_b, as one dot product per pair.
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            let x_sums = &acts.sums[(m0 + i) * blocks..][..blocks];
            for j in 0..N {
                let offsets = &w.offsets[(n0 + j) * blocks..][..blocks];
                sums[i][j] = hsum(acc[i][j]) + dot8(offsets, x_sums);
            }
        }
        sums
    }

    /// Adds block `b` of tokens `m0..m0 + M` times rows `n0..n0 + N` into `acc` (the offsets
    /// aside): per lane the exact integer sum of four nibble × activation products, converted
    /// and fused with the block's scales.
    ///
    /// # Safety
    /// As [`q4_tile`], and `b` must be a block of the rows (`b < cols / 32`).
    #[inline(always)]
    pub(in crate::q8) unsafe fn q4_block_step<const M: usize, const N: usize>(
        w: &Q4Matrix,
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
            let low_half = _mm_set1_epi8(0x0f);
            let x_base = acts.quants.as_ptr();
            let w_base = w.nibbles.as_ptr();
            let mut wv = [ones; N];
            let mut wd = [0f32; N];
            for j in 0..N {
                let index = (n0 + j) * blocks + b;
                // SAFETY: row n0 + j < rows (contract), so its block b's 16 bytes lie inside
                // `nibbles` (rows × cols / 2 bytes); unaligned loads are allowed.
                let raw = { _mm_loadu_si128(w_base.add(index * BLOCK / 2).cast::<__m128i>()) };
                prefetch(w_base, index * BLOCK / 2 + PREFETCH_AHEAD);
                let low = _mm_and_si128(raw, low_half);
                let high = _mm_and_si128(_mm_srli_epi16::<4>(raw), low_half);
                // Values 0..15 of the block in the low lane, 16..31 in the high one.
                wv[j] = _mm256_set_m128i(high, low);
                wd[j] = w.scales[index];
            }
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract), so its block b lies inside the
                // activations (m × cols values).
                let xv = {
                    _mm256_loadu_si256(x_base.add((m0 + i) * cols + b * BLOCK).cast::<__m256i>())
                };
                let xd = acts.scales[(m0 + i) * blocks + b];
                for j in 0..N {
                    // u8 (0..15) × i8 pairs: at most 2 · 15 · 127, no i16 saturation.
                    let pairs = _mm256_maddubs_epi16(wv[j], xv);
                    let dots = _mm256_cvtepi32_ps(_mm256_madd_epi16(pairs, ones));
                    acc[i][j] = _mm256_fmadd_ps(dots, _mm256_set1_ps(xd * wd[j]), acc[i][j]);
                }
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::{
        __m256i, __m512i, _mm256_and_si256, _mm256_loadu_si256, _mm256_set1_epi8, _mm256_set1_ps,
        _mm256_setzero_ps, _mm256_srli_epi16, _mm512_castsi256_si512, _mm512_dpbusd_epi32,
        _mm512_inserti64x4, _mm512_loadu_si512, _mm512_setzero_si512, _mm512_shuffle_i64x2,
    };

    use super::Q4Matrix;
    use super::avx2::q4_block_step;
    use crate::q8::avx2::{hsum, prefetch};
    use crate::q8::avx512::fuse_two_blocks;
    use crate::q8::lanes::dot8;
    use crate::q8::{Acts, BLOCK, PREFETCH_AHEAD, RM, RN};

    /// Picks the tile shape's instance of the 4-bit kernel.
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI, AVX2 and FMA; `m0 + rm` must not pass the
    /// activations' rows nor `n0 + rn` the weight rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn q4_dispatch(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        rm: usize,
        n0: usize,
        rn: usize,
    ) -> [[f32; RN]; RM] {
        macro_rules! tile {
            ($m:literal, $n:literal) => {
                // SAFETY: forwarded from this function's contract (rm = M, rn = N).
                unsafe { q4_tile::<$m, $n>(w, acts, m0, n0) }
            };
        }
        crate::q8::by_shape!(rm, rn, tile)
    }

    /// The AVX2 tile's lanes, two blocks to a 512-bit `vpdpbusd` (unsigned nibbles times
    /// signed activations, four products a lane, exact); block `b`'s lanes are fused into the
    /// running sums before block `b + 1`'s, as AVX2 does, and an odd last block is AVX2's step.
    ///
    /// # Safety
    /// As [`q4_dispatch`], with `rm = M`, `rn = N`.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn q4_tile<const M: usize, const N: usize>(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let cols = w.cols;
        let blocks = cols / BLOCK;
        let zero = _mm512_setzero_si512();
        let low_half = _mm256_set1_epi8(0x0f);
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        let x_base = acts.quants.as_ptr();
        let w_base = w.nibbles.as_ptr();
        for b in (0..blocks - blocks % 2).step_by(2) {
            let mut wv = [zero; N];
            let mut wd = [[0f32; 2]; N];
            for j in 0..N {
                let index = (n0 + j) * blocks + b;
                // SAFETY: row n0 + j < rows (contract) and b + 1 < blocks, so the 32 bytes of
                // blocks b and b + 1 lie inside `nibbles`; unaligned loads are allowed.
                let raw =
                    unsafe { _mm256_loadu_si256(w_base.add(index * BLOCK / 2).cast::<__m256i>()) };
                prefetch(w_base, index * BLOCK / 2 + PREFETCH_AHEAD);
                let low = _mm256_and_si256(raw, low_half);
                let high = _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low_half);
                // [b low, b+1 low, b high, b+1 high] in 128-bit quarters, reordered to
                // [b low, b high, b+1 low, b+1 high]: values 0..31 of b, then of b + 1.
                let quarters = _mm512_inserti64x4::<1>(_mm512_castsi256_si512(low), high);
                wv[j] = _mm512_shuffle_i64x2::<0b11_01_10_00>(quarters, quarters);
                wd[j] = [w.scales[index], w.scales[index + 1]];
            }
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract) and b + 1 < blocks, so its blocks b and
                // b + 1 lie inside the activations (m × cols values).
                let xv = unsafe {
                    _mm512_loadu_si512(x_base.add((m0 + i) * cols + b * BLOCK).cast::<__m512i>())
                };
                let xd = [
                    acts.scales[(m0 + i) * blocks + b],
                    acts.scales[(m0 + i) * blocks + b + 1],
                ];
                for j in 0..N {
                    let scales = [0, 1].map(|half| _mm256_set1_ps(xd[half] * wd[j][half]));
                    let lanes = _mm512_dpbusd_epi32(zero, wv[j], xv);
                    acc[i][j] = fuse_two_blocks(lanes, scales, acc[i][j]);
                }
            }
        }
        if blocks % 2 == 1 {
            // SAFETY: forwarded from this function's contract; the CPU has AVX2 and FMA.
            unsafe { q4_block_step::<M, N>(w, acts, m0, n0, blocks - 1, &mut acc) };
        }
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            let x_sums = &acts.sums[(m0 + i) * blocks..][..blocks];
            for j in 0..N {
                let offsets = &w.offsets[(n0 + j) * blocks..][..blocks];
                sums[i][j] = hsum(acc[i][j]) + dot8(offsets, x_sums);
            }
        }
        sums
    }
}
