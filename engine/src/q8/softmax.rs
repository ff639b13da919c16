//! One row of attention's softmax for training's fused layer (`transformer::fused`):
//! `p = softmax(scale · s + mask)`, with `gate`'s exponential, compiled once for AVX-512, once
//! for AVX2 and once plain; the three give the same bits (`softmax_is_the_same_on_every_path`).
//! Masked slots (`−∞`) get exactly 0.

use super::Isa;

/// `p = softmax(scale · s + mask)` on the kernels' path.
///
/// # Panics
/// If the slices differ in length.
pub(crate) fn softmax_row(s: &[f32], mask: Option<&[f32]>, scale: f32, p: &mut [f32]) {
    softmax_row_on(super::chosen(), s, mask, scale, p);
}

/// [`softmax_row`] on the path `isa`, which this CPU must have.
pub(crate) fn softmax_row_on(isa: Isa, s: &[f32], mask: Option<&[f32]>, scale: f32, p: &mut [f32]) {
    assert!(
        s.len() == p.len() && mask.is_none_or(|m| m.len() == p.len()),
        "scores, mask and probabilities of one length"
    );
    on_path!(
        isa,
        softmax_row_plain(s: &[f32], mask: Option<&[f32]>, scale: f32, p: &mut [f32])
    );
}

#[inline(always)]
fn softmax_row_plain(s: &[f32], mask: Option<&[f32]>, scale: f32, p: &mut [f32]) {
    match mask {
        Some(mask) => {
            for ((p, &s), &m) in p.iter_mut().zip(s).zip(mask) {
                *p = scale * s + m;
            }
        }
        None => {
            for (p, &s) in p.iter_mut().zip(s) {
                *p = scale * s;
            }
        }
    }
    let top = max(p);
    if top == f32::NEG_INFINITY {
        // Nothing visible (the masks never make such a row): no probabilities rather than NaNs.
        p.fill(0.0);
        return;
    }
    for p in p.iter_mut() {
        let e = super::exp(*p - top);
        *p = if *p == f32::NEG_INFINITY { 0.0 } else { e };
    }
    let total = sum(p);
    for p in p.iter_mut() {
        *p /= total;
    }
}

/// `Σ a` in sixteen running sums (a fixed order, which the compiler vectorizes).
#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut lanes = [0f32; 16];
    let body = a.chunks_exact(16);
    let tail: f32 = body.remainder().iter().sum();
    for x in body {
        for l in 0..16 {
            lanes[l] += x[l];
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `max a` in sixteen running maxima (`−∞` for none).
#[inline(always)]
fn max(a: &[f32]) -> f32 {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let body = a.chunks_exact(16);
    let tail = body
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    for x in body {
        for l in 0..16 {
            lanes[l] = lanes[l].max(x[l]);
        }
    }
    lanes.iter().fold(tail, |m, &v| m.max(v))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_the_same_on_every_path() {
        let mut rng = crate::fixture::SplitMix64(11);
        for slots in [1, 7, 16, 33, 256, 300] {
            let s: Vec<f32> = (0..slots).map(|_| rng.uniform(40.0)).collect();
            let mask: Vec<f32> = (0..slots)
                .map(|j| if j % 3 == 1 { f32::NEG_INFINITY } else { 0.0 })
                .collect();
            for mask in [None, Some(&mask[..])] {
                let mut want = vec![0f32; slots];
                softmax_row_plain(&s, mask, 0.7, &mut want);
                let total: f64 = want.iter().map(|&p| f64::from(p)).sum();
                assert!((total - 1.0).abs() < 1e-5, "sums to {total}");
                if let Some(mask) = mask {
                    for (p, m) in want.iter().zip(mask) {
                        assert!(*m == 0.0 || *p == 0.0, "a masked slot got {p}");
                    }
                }
                // Against the textbook softmax in f64 of the same (f32) arguments.
                let z: Vec<f64> = s
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| f64::from(0.7 * v + mask.map_or(0.0, |m| m[j])))
                    .collect();
                let top = z.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                let denominator: f64 = z.iter().map(|v| (v - top).exp()).sum();
                for (p, v) in want.iter().zip(&z) {
                    let exact = (v - top).exp() / denominator;
                    let error = (f64::from(*p) - exact).abs();
                    assert!(error <= 1e-6 * exact.max(1e-3), "{p} against {exact}");
                }
                for isa in Isa::ALL.into_iter().filter(|isa| isa.supported()) {
                    let mut got = vec![0f32; slots];
                    softmax_row_on(isa, &s, mask, 0.7, &mut got);
                    let same = got
                        .iter()
                        .zip(&want)
                        .all(|(a, b)| a.to_bits() == b.to_bits());
                    assert!(
                        same,
                        "{slots} slots on {}: {got:?} against {want:?}",
                        isa.name()
                    );
                }
            }
        }
        // A row with nothing visible is all zeros, not NaN.
        let mut p = [1f32; 3];
        softmax_row(&[1.0, 2.0, 3.0], Some(&[f32::NEG_INFINITY; 3]), 1.0, &mut p);
        assert_eq!(p, [0.0; 3]);
    }
}
