//! `f32` vector helpers for code outside the quantized kernels (the CPU attention, training's
//! streamed products): a dot product in eight lanes and `out += p · v`, compiled for AVX2 and
//! FMA where the CPU has them and giving the same result on every CPU. The 4-bit kernel adds up
//! its offset terms with the same eight-lane dot product ([`dot8`]).

/// `a · b` in eight lanes (then the lanes summed in order): the same result on every CPU, in
/// AVX registers where the CPU has them (the lanes are independent, so vector code computes
/// exactly what the scalar loop does).
pub(crate) fn dot_lanes(a: &[f32], b: &[f32]) -> f32 {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked).
        return unsafe { dot8_avx2(a, b) };
    }
    dot8(a, b)
}

/// `out += p · v`, element by element, in AVX registers where the CPU has them (the same
/// result on every CPU).
pub(crate) fn add_scaled(out: &mut [f32], p: f32, v: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if super::has_avx2() {
        // SAFETY: the CPU has AVX2 and FMA (checked).
        unsafe { add_scaled_avx2(out, p, v) };
        return;
    }
    add_scaled_portable(out, p, v);
}

#[inline(always)]
fn add_scaled_portable(out: &mut [f32], p: f32, v: &[f32]) {
    for (o, &x) in out.iter_mut().zip(v) {
        *o += p * x;
    }
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn add_scaled_avx2(out: &mut [f32], p: f32, v: &[f32]) {
    add_scaled_portable(out, p, v);
}

/// # Safety
/// The CPU must have AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn dot8_avx2(a: &[f32], b: &[f32]) -> f32 {
    dot8(a, b)
}

/// `a · b` in eight lanes, which the compiler turns into vector instructions.
#[inline(always)]
pub(super) fn dot8(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0f32; 8];
    let whole = a.len() - a.len() % 8;
    for (x, y) in a[..whole].chunks_exact(8).zip(b[..whole].chunks_exact(8)) {
        for lane in 0..8 {
            lanes[lane] += x[lane] * y[lane];
        }
    }
    let tail: f32 = a[whole..].iter().zip(&b[whole..]).map(|(x, y)| x * y).sum();
    lanes.iter().sum::<f32>() + tail
}
