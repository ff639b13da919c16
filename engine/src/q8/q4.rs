//! The 4- and 5-bit weight matrix ([`Q4Matrix`]): GGUF `Q4_0`/`Q4_1`/`Q5_0`/`Q5_1` blocks
//! repacked at load but kept at their width, multiplied in the parent module's scheme
//! (activations quantized to 8 bits on the fly, register tiles of `RM` tokens × `RN` rows, the
//! same split between threads), by an AVX-512 or AVX2 kernel or the portable loop. The inner
//! loop multiplies unsigned 4- or 5-bit values by signed bytes; `Q4_0`/`Q5_0`'s centre (8, 16)
//! is taken off in the integer sums, exactly, and `Q4_1`/`Q5_1`'s stored offset enters through
//! the sum of each activation block. A 5-bit matrix is a 4-bit one plus a plane of fifth bits
//! (GGUF's `qh`, one `u32` a block), which each path adds into the unpacked nibbles as `16`.

use super::{Acts, BLOCK, Isa, RM, RN, f16_to_f32, hsum_lanes};

/// A `(rows, cols)` weight matrix of GGUF `Q4_0`, `Q4_1`, `Q5_0` or `Q5_1` blocks, kept at
/// their width: per block of 32 values an `f32` scale `d`, an offset `m` (`−8d` for `Q4_0`,
/// `−16d` for `Q5_0`, not stored; an `f32` for the others), its 32 nibbles and, for the 5-bit types, a `u32` whose bit `v` is
/// value `v`'s fifth bit; value = `d · q + m`, exactly as GGUF defines it. The nibbles of a row
/// are kept in pairs of blocks ([`PAIR_BYTES`]). 20 (`Q4_0`), 24 (`Q4_1`, `Q5_0`) or 28
/// (`Q5_1`) bytes per 32 values against [`super::Q8Matrix`]'s 36 to stream per token, which is
/// what bounds a decode step.
#[derive(Debug, Clone)]
pub(crate) struct Q4Matrix {
    rows: usize,
    cols: usize,
    scales: Vec<f32>,
    /// Per block the offset `m`; empty for `Q4_0` and `Q5_0`, whose values are `d · (q − c)`
    /// with `c` = `centre`.
    offsets: Vec<f32>,
    /// `8` (`Q4_0`) or `16` (`Q5_0`); 0 for the types with stored offsets. The kernels take
    /// `q − c` in their integer sums, exactly, as llama.cpp does: no offsets to stream or add.
    centre: u8,
    /// Per row, [`PAIR_BYTES`] for each pair of blocks (`b`, `b + 1`, `b` even): byte `v` holds
    /// value `v` of block `b` in its low half and value `v` of block `b + 1` in its high half
    /// (a row of an odd number of blocks ends with a pair whose high halves are 0). So one
    /// 32-byte load and a mask give block `b` in value order, a shift more block `b + 1`, and a
    /// 512-bit register both (GGUF's order, values `k` and `k + 16` in one byte, took two more
    /// instructions a block).
    nibbles: Vec<u8>,
    /// Per block, the fifth bits of its 32 values (bit `v` → value `v`); empty for the 4-bit
    /// types.
    fifth: Vec<u32>,
    /// The GGUF type it was read from (`Q4_0`, `Q4_1`, `Q4_K`).
    format: &'static str,
}

/// The GGUF block types [`Q4Matrix`] reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Q4Kind {
    /// 18 bytes: f16 `d`, 16 bytes of nibbles; value = `d · (q − 8)`.
    Q4_0,
    /// 20 bytes: f16 `d`, f16 `m`, 16 bytes of nibbles; value = `d · q + m`.
    Q4_1,
    /// 22 bytes: f16 `d`, 4 bytes of fifth bits, 16 bytes of nibbles; value = `d · (q − 16)`.
    Q5_0,
    /// 24 bytes: f16 `d`, f16 `m`, 4 bytes of fifth bits, 16 bytes of nibbles;
    /// value = `d · q + m`.
    Q5_1,
}

impl Q4Kind {
    /// The GGUF type's name.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Q4_0 => "Q4_0",
            Self::Q4_1 => "Q4_1",
            Self::Q5_0 => "Q5_0",
            Self::Q5_1 => "Q5_1",
        }
    }
}

impl Q4Matrix {
    /// Repacks the bytes of a GGUF `Q4_0`/`Q4_1`/`Q5_0`/`Q5_1` tensor of shape `(rows, cols)`;
    /// `None` if `bytes` is not that tensor or `cols` is not a multiple of 32.
    pub(crate) fn from_gguf_bytes(
        kind: Q4Kind,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Option<Self> {
        // Bytes of a block, whether it stores its offset, whether it has fifth bits.
        let (block_bytes, with_min, five) = match kind {
            Q4Kind::Q4_0 => (18, false, false),
            Q4Kind::Q4_1 => (20, true, false),
            Q4Kind::Q5_0 => (22, false, true),
            Q4Kind::Q5_1 => (24, true, true),
        };
        let blocks = rows.checked_mul(cols)? / BLOCK;
        if !cols.is_multiple_of(BLOCK) || bytes.len() != blocks.checked_mul(block_bytes)? {
            return None;
        }
        let mut scales = Vec::with_capacity(blocks);
        let mut offsets = Vec::with_capacity(if with_min { blocks } else { 0 });
        let mut nibbles = Paired::new(rows, cols);
        let mut fifth = Vec::with_capacity(if five { blocks } else { 0 });
        for (index, block) in bytes.chunks_exact(block_bytes).enumerate() {
            let half = |at: usize| f16_to_f32(u16::from_le_bytes([block[at], block[at + 1]]));
            scales.push(half(0));
            let mut at = 2;
            if with_min {
                offsets.push(half(2));
                at = 4;
            }
            if five {
                fifth.push(u32::from_le_bytes([
                    block[at],
                    block[at + 1],
                    block[at + 2],
                    block[at + 3],
                ]));
                at += 4;
            }
            // GGUF's order: byte k holds value k (low half) and value k + 16 (high half).
            let quants = &block[at..];
            nibbles.put(index, |v| {
                if v < BLOCK / 2 {
                    quants[v] & 0x0f
                } else {
                    quants[v - BLOCK / 2] >> 4
                }
            });
        }
        Some(Self {
            rows,
            cols,
            scales,
            offsets,
            centre: match (with_min, five) {
                (true, _) => 0,
                (false, false) => 8,
                (false, true) => 16,
            },
            nibbles: nibbles.bytes,
            fifth,
            format: kind.name(),
        })
    }

    /// Block `index`'s offset `m`.
    fn offset(&self, index: usize) -> f32 {
        self.offsets
            .get(index)
            .copied()
            .unwrap_or(-f32::from(self.centre) * self.scales[index])
    }

    /// Whether the values are `d · (q − centre)` (`Q4_0`, `Q5_0`).
    pub(super) fn centred(&self) -> bool {
        self.centre != 0
    }

    /// Row `row`'s sum with a token from the sum of its lanes `lanes`: for the types with
    /// stored offsets plus their share, `Σ_b m_b · x_sums[b]` (`x_sums`: per block the token's
    /// scale times the sum of its 8-bit values); the centred types have theirs in the lanes.
    #[inline(always)]
    fn with_offsets(&self, lanes: f32, row: usize, x_sums: &[f32]) -> f32 {
        if self.centred() {
            return lanes;
        }
        let blocks = self.cols / BLOCK;
        lanes + super::lanes::dot8(&self.offsets[row * blocks..][..blocks], x_sums)
    }

    /// Whether the values have a fifth bit (`Q5_0`, `Q5_1`).
    pub(crate) fn five(&self) -> bool {
        !self.fifth.is_empty()
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
        let mut nibbles = Paired::new(rows, cols);
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
                    nibbles.put(scales.len() - 1, |l| {
                        if half == 0 {
                            bytes[l] & 0x0f
                        } else {
                            bytes[l] >> 4
                        }
                    });
                }
            }
        }
        Some(Self {
            rows,
            cols,
            scales,
            offsets,
            centre: 0,
            nibbles: nibbles.bytes,
            fifth: Vec::new(),
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

    /// Pairs of blocks in a row.
    fn pairs(&self) -> usize {
        (self.cols / BLOCK).div_ceil(2)
    }

    /// The start in `nibbles` of the pair that holds block `b` of row `row`.
    #[inline(always)]
    fn pair_start(&self, row: usize, b: usize) -> usize {
        (row * self.pairs() + b / 2) * PAIR_BYTES
    }

    /// The 32 values of block `b` of row `row` (0..15, or 0..31 with the fifth bit).
    fn values(&self, row: usize, b: usize) -> [u8; BLOCK] {
        let bytes = &self.nibbles[self.pair_start(row, b)..][..PAIR_BYTES];
        let shift = 4 * (b % 2);
        let fifth = self
            .fifth
            .get(row * (self.cols / BLOCK) + b)
            .copied()
            .unwrap_or(0);
        std::array::from_fn(|v| {
            // The shifted bit is 0 or 1, so the cast keeps it.
            #[allow(clippy::cast_possible_truncation)]
            let high = ((fifth >> v) & 1) as u8;
            ((bytes[v] >> shift) & 0x0f) | (high << 4)
        })
    }

    /// Writes row `row`, dequantized, into `out` (`cols` long).
    pub(crate) fn dequantize_row(&self, row: usize, out: &mut [f32]) {
        let blocks = self.cols / BLOCK;
        for (b, chunk) in out.chunks_exact_mut(BLOCK).enumerate().take(blocks) {
            let index = row * blocks + b;
            let (d, m) = (self.scales[index], self.offset(index));
            for (value, q) in chunk.iter_mut().zip(self.values(row, b)) {
                *value = d * f32::from(q) + m;
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

/// Bytes of a pair of blocks' nibbles.
const PAIR_BYTES: usize = 32;

/// [`Q4Matrix::nibbles`] being filled block by block.
struct Paired {
    bytes: Vec<u8>,
    blocks: usize,
    pairs: usize,
}

impl Paired {
    fn new(rows: usize, cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let pairs = blocks.div_ceil(2);
        Self {
            bytes: vec![0; rows * pairs * PAIR_BYTES],
            blocks,
            pairs,
        }
    }

    /// Puts block `index` (row-major over the matrix's blocks), whose value `v` (0..15) is
    /// `value(v)`.
    fn put(&mut self, index: usize, value: impl Fn(usize) -> u8) {
        let (row, b) = (index / self.blocks, index % self.blocks);
        let start = (row * self.pairs + b / 2) * PAIR_BYTES;
        let shift = 4 * (b % 2);
        for (v, byte) in self.bytes[start..][..PAIR_BYTES].iter_mut().enumerate() {
            *byte |= (value(v) & 0x0f) << shift;
        }
    }
}

/// The `rm × rn` sums of one tile of a [`Q4Matrix`] product, on `isa`, for a matrix of the
/// form `FIVE` (fifth bits) and `CENTRED` (`Q4_0`/`Q5_0`), which the caller picks once for
/// every path.
pub(super) fn tile_on<const FIVE: bool, const CENTRED: bool>(
    isa: Isa,
    w: &Q4Matrix,
    acts: &Acts,
    m0: usize,
    rm: usize,
    n0: usize,
    rn: usize,
) -> [[f32; RN]; RM] {
    debug_assert!(isa.supported());
    debug_assert_eq!((FIVE, CENTRED), (w.five(), w.centred()));
    #[cfg(target_arch = "x86_64")]
    match isa {
        // SAFETY: the CPU has AVX-512 F/BW/VNNI, AVX2 and FMA (callers pass a supported
        // path); the tile stays inside both matrices (rm ≤ m − m0, rn ≤ rows − n0, checked
        // by the caller). (A form not the matrix's would give wrong sums, never a read out of
        // bounds: `fifth` is indexed with bounds checks.)
        Isa::Avx512 => {
            return unsafe { avx512::q4_dispatch::<FIVE, CENTRED>(w, acts, m0, rm, n0, rn) };
        }
        // SAFETY: as above, for AVX2 and FMA.
        Isa::Avx2 => return unsafe { avx2::q4_dispatch::<FIVE, CENTRED>(w, acts, m0, rm, n0, rn) },
        Isa::Portable => {}
    }
    q4_portable_tile(w, acts, m0, rm, n0, rn)
}

/// One tile the portable way, lane for lane what the SIMD paths compute (as the 8-bit
/// matrix's portable tile), plus the offsets' share (for a centred type the lanes sum
/// `q − centre`, which the SIMD paths compute as `q·x − centre·x`: the same integers).
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
                let values = w.values(r, b);
                let value = |v: usize| i32::from(values[v]) - i32::from(w.centre);
                let scale = acts.scales[t * blocks + b] * w.scales[r * blocks + b];
                for (l, lane) in lanes.iter_mut().enumerate() {
                    let dot: i32 = (4 * l..4 * l + 4).map(|k| value(k) * i32::from(x[k])).sum();
                    #[allow(clippy::cast_precision_loss)] // |dot| ≤ 4 · 31 · 128, exact in f32
                    let dot = dot as f32;
                    *lane = dot.mul_add(scale, *lane);
                }
            }
            let x_sums = &acts.sums[t * blocks..][..blocks];
            *sum = w.with_offsets(hsum_lanes(lanes), r, x_sums);
        }
    }
    sums
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::{
        __m256, __m256i, _mm256_and_si256, _mm256_cmpeq_epi8, _mm256_cvtepi32_ps, _mm256_fmadd_ps,
        _mm256_loadu_si256, _mm256_madd_epi16, _mm256_maddubs_epi16, _mm256_or_si256,
        _mm256_set1_epi8, _mm256_set1_epi16, _mm256_set1_epi32, _mm256_set1_epi64x, _mm256_set1_ps,
        _mm256_setr_epi64x, _mm256_setzero_ps, _mm256_setzero_si256, _mm256_shuffle_epi8,
        _mm256_srli_epi16, _mm256_sub_epi16,
    };

    use super::Q4Matrix;
    use crate::q8::avx2::{hsum, prefetch};
    use crate::q8::{Acts, BLOCK, PREFETCH_AHEAD, RM, RN};

    /// Picks the tile shape's instance of the 4-bit kernel in the matrix's form (`FIVE`,
    /// `CENTRED`).
    ///
    /// # Safety
    /// The CPU must have AVX2 and FMA; `m0 + rm` must not pass the activations' rows nor
    /// `n0 + rn` the weight rows.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn q4_dispatch<const FIVE: bool, const CENTRED: bool>(
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
                unsafe { q4_tile::<$m, $n, FIVE, CENTRED>(w, acts, m0, n0) }
            };
        }
        crate::q8::by_shape!(rm, rn, tile)
    }

    /// # Safety
    /// As [`q4_dispatch`], with `rm = M`, `rn = N`, `FIVE` only if `w` has fifth bits and
    /// `CENTRED` only if it is centred.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn q4_tile<const M: usize, const N: usize, const FIVE: bool, const CENTRED: bool>(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let blocks = w.cols / BLOCK;
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        for b in (0..blocks).step_by(2) {
            // SAFETY: forwarded from this function's contract; b (even) and b + 1 (odd, when
            // there) are blocks of the rows.
            unsafe {
                q4_block_step::<M, N, FIVE, CENTRED, false>(w, acts, m0, n0, b, &mut acc);
                if b + 1 < blocks {
                    q4_block_step::<M, N, FIVE, CENTRED, true>(w, acts, m0, n0, b + 1, &mut acc);
                }
            }
        }
        // The offsets' share, Σ_b m_b · (scale · Σ x)_b, as one dot product per pair (none for
        // a centred type).
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            let x_sums = &acts.sums[(m0 + i) * blocks..][..blocks];
            for j in 0..N {
                sums[i][j] = w.with_offsets(hsum(acc[i][j]), n0 + j, x_sums);
            }
        }
        sums
    }

    /// The 32 bytes `16 · bit v of fifth` (v = 0..31): a block's fifth bits where its unpacked
    /// nibbles sit.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    fn fifth_bits(fifth: u32) -> __m256i {
        // Byte v takes byte v / 8 of `fifth` (the shuffle stays in each 128-bit half, and every
        // half holds all four bytes), then keeps bit v % 8 of it.
        let spread = _mm256_shuffle_epi8(
            _mm256_set1_epi32(i32::from_ne_bytes(fifth.to_ne_bytes())),
            _mm256_setr_epi64x(
                0,
                0x0101_0101_0101_0101,
                0x0202_0202_0202_0202,
                0x0303_0303_0303_0303,
            ),
        );
        let select = _mm256_set1_epi64x(i64::from_ne_bytes(0x8040_2010_0804_0201u64.to_ne_bytes()));
        let set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, select), select);
        _mm256_and_si256(set, _mm256_set1_epi8(16))
    }

    /// Adds block `b` of tokens `m0..m0 + M` times rows `n0..n0 + N` into `acc` (the offsets
    /// aside): per lane the exact integer sum of four 4- or 5-bit × activation products,
    /// converted and fused with the block's scales.
    ///
    /// # Safety
    /// As [`q4_tile`], and `b` must be a block of the rows (`b < cols / 32`), odd if and only if
    /// `ODD`.
    #[inline(always)]
    pub(in crate::q8) unsafe fn q4_block_step<
        const M: usize,
        const N: usize,
        const FIVE: bool,
        const CENTRED: bool,
        const ODD: bool,
    >(
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
            let low_half = _mm256_set1_epi8(0x0f);
            let x_base = acts.quants.as_ptr();
            let w_base = w.nibbles.as_ptr();
            let mut wv = [ones; N];
            let mut wd = [0f32; N];
            for j in 0..N {
                let index = (n0 + j) * blocks + b;
                let start = w.pair_start(n0 + j, b);
                // SAFETY: row n0 + j < rows (contract), so the 32 bytes of the pair holding its
                // block b lie inside `nibbles` (rows × pairs × 32 bytes); unaligned loads are
                // allowed.
                let raw = { _mm256_loadu_si256(w_base.add(start).cast::<__m256i>()) };
                prefetch(w_base, start + PREFETCH_AHEAD);
                // Block b's values in order: the low halves of an even block, the high of an
                // odd one.
                wv[j] = if ODD {
                    _mm256_and_si256(_mm256_srli_epi16::<4>(raw), low_half)
                } else {
                    _mm256_and_si256(raw, low_half)
                };
                if FIVE {
                    wv[j] = _mm256_or_si256(wv[j], fifth_bits(w.fifth[index]));
                }
                wd[j] = w.scales[index];
            }
            let centre = _mm256_set1_epi8(i8::from_ne_bytes([w.centre]));
            #[allow(clippy::needless_range_loop)] // i indexes the activations too
            for i in 0..M {
                // SAFETY: token m0 + i < m (contract), so its block b lies inside the
                // activations (m × cols values).
                let xv = {
                    _mm256_loadu_si256(x_base.add((m0 + i) * cols + b * BLOCK).cast::<__m256i>())
                };
                let xd = acts.scales[(m0 + i) * blocks + b];
                // centre · (x₂ₖ + x₂ₖ₊₁), at most 2 · 16 · 128 in size.
                let shift = if CENTRED {
                    _mm256_maddubs_epi16(centre, xv)
                } else {
                    _mm256_setzero_si256()
                };
                for j in 0..N {
                    // u8 (0..31) × i8 pairs: at most 2 · 31 · 128, no i16 saturation; less the
                    // centre's pairs, at most 12,032 in size.
                    let mut pairs = _mm256_maddubs_epi16(wv[j], xv);
                    if CENTRED {
                        pairs = _mm256_sub_epi16(pairs, shift);
                    }
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
        __m256i, __m512i, _mm256_loadu_si256, _mm256_set1_epi16, _mm256_set1_ps, _mm256_setzero_ps,
        _mm512_and_si512, _mm512_broadcast_i64x4, _mm512_dpbusd_epi32, _mm512_inserti64x4,
        _mm512_loadu_si512, _mm512_mask_add_epi8, _mm512_set1_epi8, _mm512_setzero_si512,
        _mm512_srlv_epi16, _mm512_sub_epi32,
    };

    use super::Q4Matrix;
    use super::avx2::q4_block_step;
    use crate::q8::avx2::{hsum, prefetch};
    use crate::q8::avx512::fuse_two_blocks;
    use crate::q8::{Acts, BLOCK, PREFETCH_AHEAD, RM, RN};

    /// Picks the tile shape's instance of the 4-bit kernel in the matrix's form (`FIVE`,
    /// `CENTRED`).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F, BW and VNNI, AVX2 and FMA; `m0 + rm` must not pass the
    /// activations' rows nor `n0 + rn` the weight rows.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    pub(super) unsafe fn q4_dispatch<const FIVE: bool, const CENTRED: bool>(
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
                unsafe { q4_tile::<$m, $n, FIVE, CENTRED>(w, acts, m0, n0) }
            };
        }
        crate::q8::by_shape!(rm, rn, tile)
    }

    /// The AVX2 tile's lanes, two blocks to a 512-bit `vpdpbusd` (unsigned 4- or 5-bit values
    /// times signed activations, four products a lane, exact); block `b`'s lanes are fused into
    /// the running sums before block `b + 1`'s, as AVX2 does, and an odd last block is AVX2's
    /// step. The fifth bits of two blocks are one 64-bit mask, one bit per byte of the
    /// unpacked values, added as `16` under that mask.
    ///
    /// # Safety
    /// As [`q4_dispatch`], with `rm = M`, `rn = N`, `FIVE` only if `w` has fifth bits and
    /// `CENTRED` only if it is centred.
    #[target_feature(enable = "avx512f,avx512bw,avx512vnni,avx2,fma")]
    #[inline]
    unsafe fn q4_tile<const M: usize, const N: usize, const FIVE: bool, const CENTRED: bool>(
        w: &Q4Matrix,
        acts: &Acts,
        m0: usize,
        n0: usize,
    ) -> [[f32; RN]; RM] {
        let cols = w.cols;
        let blocks = cols / BLOCK;
        let zero = _mm512_setzero_si512();
        let low_half = _mm512_set1_epi8(0x0f);
        // Shift the low 256 bits by 0 (block b), the high ones by 4 (block b + 1).
        let shifts = _mm512_inserti64x4::<1>(_mm512_setzero_si512(), _mm256_set1_epi16(4));
        let sixteen = _mm512_set1_epi8(16);
        let centre = _mm512_set1_epi8(i8::from_ne_bytes([w.centre]));
        let mut acc = [[_mm256_setzero_ps(); N]; M];
        let x_base = acts.quants.as_ptr();
        let w_base = w.nibbles.as_ptr();
        for b in (0..blocks - blocks % 2).step_by(2) {
            let mut wv = [zero; N];
            let mut wd = [[0f32; 2]; N];
            for j in 0..N {
                let index = (n0 + j) * blocks + b;
                let start = w.pair_start(n0 + j, b);
                // SAFETY: row n0 + j < rows (contract) and b is even, so the 32 bytes of the
                // pair (b, b + 1) lie inside `nibbles`; unaligned loads are allowed.
                let raw = unsafe { _mm256_loadu_si256(w_base.add(start).cast::<__m256i>()) };
                prefetch(w_base, start + PREFETCH_AHEAD);
                // The pair twice, the copy in the high half shifted down a nibble: values
                // 0..31 of b, then of b + 1.
                let both = _mm512_broadcast_i64x4(raw);
                wv[j] = _mm512_and_si512(_mm512_srlv_epi16(both, shifts), low_half);
                if FIVE {
                    // Byte v of block b, then byte v of block b + 1: bit v, then bit 32 + v.
                    let mask = u64::from(w.fifth[index]) | (u64::from(w.fifth[index + 1]) << 32);
                    wv[j] = _mm512_mask_add_epi8(wv[j], mask, wv[j], sixteen);
                }
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
                // Each lane starts at −centre · Σ of its four activations.
                let start = if CENTRED {
                    _mm512_sub_epi32(zero, _mm512_dpbusd_epi32(zero, centre, xv))
                } else {
                    zero
                };
                for j in 0..N {
                    let scales = [0, 1].map(|half| _mm256_set1_ps(xd[half] * wd[j][half]));
                    let lanes = _mm512_dpbusd_epi32(start, wv[j], xv);
                    acc[i][j] = fuse_two_blocks(lanes, scales, acc[i][j]);
                }
            }
        }
        if blocks % 2 == 1 {
            // SAFETY: forwarded from this function's contract; the CPU has AVX2 and FMA.
            unsafe {
                q4_block_step::<M, N, FIVE, CENTRED, false>(w, acts, m0, n0, blocks - 1, &mut acc);
            };
        }
        let mut sums = [[0f32; RN]; RM];
        for i in 0..M {
            let x_sums = &acts.sums[(m0 + i) * blocks..][..blocks];
            for j in 0..N {
                sums[i][j] = w.with_offsets(hsum(acc[i][j]), n0 + j, x_sums);
            }
        }
        sums
    }
}
