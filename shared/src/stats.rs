//! Uncertainty for run results: confidence intervals for accuracy and points, and a paired
//! comparison of two runs over the same questions.
//!
//! Everything here is deterministic. The bootstrap draws from [`SplitMix64`] with a caller-given
//! seed and uses only addition, division and sorting, so the same inputs give bit-identical
//! intervals on every platform. [`normal_quantile`] and [`wilson_interval`] use `ln`, `exp` and
//! `sqrt`, whose last bits may differ between platform maths libraries.

// For `clippy::pedantic`: counts become `f64` by design; bootstrap indices are below the slice
// length, so they fit `usize`; exact float comparisons are deliberate (convergence tests,
// determinism checks); "McNemar" is a name, not code.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::float_cmp,
    clippy::doc_markdown
)]

use std::f64::consts::{FRAC_2_SQRT_PI, PI, SQRT_2};

use serde::{Deserialize, Serialize};

/// Wilson score interval for a binomial proportion, without continuity correction, at the
/// two-sided `confidence` level (for example `0.95`).
///
/// With `p̂ = successes / n` and `z` the `(1 + confidence) / 2` standard normal quantile, the
/// bounds are `(p̂ + z²/2n ± z·√(p̂(1 − p̂)/n + z²/4n²)) / (1 + z²/n)`. The lower bound is exactly
/// 0 when `successes == 0` and the upper bound exactly 1 when `successes == n`.
///
/// `None` when `n == 0`, `successes > n`, or `confidence` is not strictly between 0 and 1.
#[must_use]
pub fn wilson_interval(successes: u64, n: u64, confidence: f64) -> Option<(f64, f64)> {
    if n == 0 || successes > n || !valid_confidence(confidence) {
        return None;
    }
    let z = -normal_quantile((1.0 - confidence) / 2.0);
    let nf = n as f64;
    let p = successes as f64 / nf;
    let z2 = z * z;
    let denominator = 1.0 + z2 / nf;
    let centre = (p + z2 / (2.0 * nf)) / denominator;
    let half = z / denominator * (p * (1.0 - p) / nf + z2 / (4.0 * nf * nf)).sqrt();
    let lower = if successes == 0 { 0.0 } else { centre - half };
    let upper = if successes == n { 1.0 } else { centre + half };
    Some((lower.max(0.0), upper.min(1.0)))
}

/// The standard normal quantile (inverse CDF): the `x` with `P[Z ≤ x] = p`.
///
/// Acklam's rational approximation (relative error below 1.15e-9) refined by one Halley step
/// against an erfc accurate to about 1e-16 (W. J. Cody's rational Chebyshev approximations),
/// giving a relative error near 1e-15. For `p > 0.5` the result is `-normal_quantile(1 - p)`,
/// where `1 - p` is exact, so both tails are equally accurate. Subnormal `p` (below about
/// 2.2e-308) skips the refinement and keeps Acklam's error, about 2e-9 there. Returns `-∞` for
/// `p ≤ 0`, `+∞` for `p ≥ 1` and NaN for NaN.
#[must_use]
pub fn normal_quantile(p: f64) -> f64 {
    if p.is_nan() {
        f64::NAN
    } else if p <= 0.0 {
        f64::NEG_INFINITY
    } else if p >= 1.0 {
        f64::INFINITY
    } else if p > 0.5 {
        -lower_normal_quantile(1.0 - p)
    } else {
        lower_normal_quantile(p)
    }
}

// Polynomial coefficients, highest power first (for `horner`). Cody's published tables list
// the leading numerator coefficient last and leave the denominators' leading 1 implicit.
#[rustfmt::skip]
const ACKLAM: [&[f64]; 4] = [
    &[-3.969_683_028_665_376e1, 2.209_460_984_245_205e2, -2.759_285_104_469_687e2,
      1.383_577_518_672_69e2, -3.066_479_806_614_716e1, 2.506_628_277_459_239],
    &[-5.447_609_879_822_406e1, 1.615_858_368_580_409e2, -1.556_989_798_598_866e2,
      6.680_131_188_771_972e1, -1.328_068_155_288_572e1, 1.0],
    &[-7.784_894_002_430_293e-3, -3.223_964_580_411_365e-1, -2.400_758_277_161_838,
      -2.549_732_539_343_734, 4.374_664_141_464_968, 2.938_163_982_698_783],
    &[7.784_695_709_041_462e-3, 3.224_671_290_700_398e-1, 2.445_134_137_142_996,
      3.754_408_661_907_416, 1.0],
];
#[rustfmt::skip]
const CODY: [&[f64]; 6] = [
    &[1.857_777_061_846_031_5e-1, 3.161_123_743_870_565_5, 1.138_641_541_510_501_6e2,
      3.774_852_376_853_02e2, 3.209_377_589_138_469_4e3],
    &[1.0, 2.360_129_095_234_412_2e1, 2.440_246_379_344_441_7e2, 1.282_616_526_077_372_3e3,
      2.844_236_833_439_171e3],
    &[2.153_115_354_744_038_3e-8, 5.641_884_969_886_701e-1, 8.883_149_794_388_377,
      6.611_919_063_714_163e1, 2.986_351_381_974_001e2, 8.819_522_212_417_69e2,
      1.712_047_612_634_070_7e3, 2.051_078_377_826_071_6e3, 1.230_339_354_797_997_2e3],
    &[1.0, 1.574_492_611_070_983_5e1, 1.176_939_508_913_125e2, 5.371_811_018_620_099e2,
      1.621_389_574_566_690_3e3, 3.290_799_235_733_459_7e3, 4.362_619_090_143_247e3,
      3.439_367_674_143_721_6e3, 1.230_339_354_803_749_5e3],
    &[1.631_538_713_730_209_7e-2, 3.053_266_349_612_323_6e-1, 3.603_448_999_498_044_5e-1,
      1.257_817_261_112_292_6e-1, 1.608_378_514_874_227_5e-2, 6.587_491_615_298_378e-4],
    &[1.0, 2.568_520_192_289_822, 1.872_952_849_923_460_4, 5.279_051_029_514_285e-1,
      6.051_834_131_244_132e-2, 2.335_204_976_268_691_8e-3],
];

fn horner(coefficients: &[f64], x: f64) -> f64 {
    coefficients.iter().fold(0.0, |acc, &c| acc * x + c)
}

/// The quantile for `0 < p ≤ 0.5`.
fn lower_normal_quantile(p: f64) -> f64 {
    let x = if p < 0.024_25 {
        let q = (-2.0 * p.ln()).sqrt();
        horner(ACKLAM[2], q) / horner(ACKLAM[3], q)
    } else {
        let q = p - 0.5;
        q * horner(ACKLAM[0], q * q) / horner(ACKLAM[1], q * q)
    };
    // Halley step on Φ(x) − p, skipped where Φ(x) or the density would be subnormal.
    let cdf = 0.5 * erfc(-x / SQRT_2);
    let density = (-0.5 * x * x).exp() / (2.0 * PI).sqrt();
    if cdf < f64::MIN_POSITIVE || density < f64::MIN_POSITIVE {
        return x;
    }
    let u = (cdf - p) / density;
    x - u / (1.0 + 0.5 * x * u)
}

/// Complementary error function: W. J. Cody, "Rational Chebyshev approximations for the error
/// function", Math. Comp. 23 (1969), following his CALERF routine (ACM TOMS 715).
fn erfc(x: f64) -> f64 {
    let y = x.abs();
    if y <= 0.468_75 {
        let ysq = if y > 1.11e-16 { y * y } else { 0.0 };
        return 1.0 - x * horner(CODY[0], ysq) / horner(CODY[1], ysq);
    }
    let tail = if y >= 26.543 {
        0.0
    } else {
        let ratio = if y <= 4.0 {
            horner(CODY[2], y) / horner(CODY[3], y)
        } else {
            let ysq = 1.0 / (y * y);
            (0.5 * FRAC_2_SQRT_PI - ysq * horner(CODY[4], ysq) / horner(CODY[5], ysq)) / y
        };
        // exp(−y²) as exp(−t²)·exp(−(y − t)(y + t)), t = y rounded down to a multiple of 1/16.
        let t = (y * 16.0).trunc() / 16.0;
        (-t * t).exp() * (-(y - t) * (y + t)).exp() * ratio
    };
    if x < 0.0 { 2.0 - tail } else { tail }
}

pub(crate) fn valid_confidence(confidence: f64) -> bool {
    confidence > 0.0 && confidence < 1.0
}

/// The `SplitMix64` generator (Steele, Lea and Flood, 2014): 64 bits of state, fast, and fully
/// determined by its seed, so resampling is reproducible. Not cryptographic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator whose sequence is fully determined by `seed`.
    #[must_use]
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 uniformly distributed bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A uniformly distributed integer in `0..n`, without modulo bias: draws below
    /// `2^64 mod n` are rejected and drawn again.
    ///
    /// # Panics
    ///
    /// Panics if `n == 0`.
    pub fn below(&mut self, n: u64) -> u64 {
        assert!(n > 0, "SplitMix64::below needs a positive bound");
        let threshold = n.wrapping_neg() % n;
        loop {
            let r = self.next_u64();
            if r >= threshold {
                return r % n;
            }
        }
    }
}

/// The statistic a bootstrap resample is summarised by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Statistic {
    /// The arithmetic mean (accuracy, for 0/1 values).
    Mean,
    /// The total (points, for per-question points).
    Sum,
}

/// Percentile bootstrap interval for the mean of `values`; see [`bootstrap_interval`].
#[must_use]
pub fn bootstrap_mean_interval(
    values: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    bootstrap_interval(values, resamples, confidence, seed, Statistic::Mean)
}

/// Percentile bootstrap interval for `statistic` over `values`.
///
/// Each of the `resamples` resamples draws `values.len()` values with replacement (indices from
/// [`SplitMix64`] seeded with `seed`, summed in draw order). The bounds are the `α/2` and
/// `1 − α/2` quantiles of the resampled statistics, `α = 1 − confidence`, using linear
/// interpolation between order statistics (Hyndman and Fan type 7, the default of numpy's
/// `quantile` and R's `quantile`): for `m` sorted values `x₀ ≤ … ≤ xₘ₋₁` and probability `q`,
/// with `h = (m − 1)q`, the quantile is `x⌊h⌋ + (h − ⌊h⌋)(x⌊h⌋+1 − x⌊h⌋)`.
///
/// `None` when `values` is empty or holds a non-finite value, `resamples == 0`, or
/// `confidence` is not strictly between 0 and 1.
#[must_use]
pub fn bootstrap_interval(
    values: &[f64],
    resamples: usize,
    confidence: f64,
    seed: u64,
    statistic: Statistic,
) -> Option<(f64, f64)> {
    let finite = values.iter().all(|v| v.is_finite());
    if values.is_empty() || resamples == 0 || !valid_confidence(confidence) || !finite {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let n = values.len() as u64;
    let divisor = if statistic == Statistic::Mean {
        n as f64
    } else {
        1.0
    };
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| (0..n).fold(0.0, |sum, _| sum + values[rng.below(n) as usize]) / divisor)
        .collect();
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    let quantile = |q| quantile_sorted(&stats, q);
    Some((quantile(alpha / 2.0), quantile(1.0 - alpha / 2.0)))
}

/// Percentile bootstrap interval for a ratio of totals, `scale · Σnumerator / Σdenominator`,
/// resampling the pairs `(numerator[i], denominator[i])` together (same generator, draw order
/// and quantiles as [`bootstrap_interval`]). For an exam score, the numerators are the points
/// earned and the denominators the points at stake per question, and `scale` the exam's
/// total: the interval then speaks of the share of points, in points, and a perfect score has
/// the interval `[scale, scale]`. A resample whose denominators sum to zero counts as 0.
///
/// `None` when the slices are empty or differ in length, a value is not finite,
/// `resamples == 0`, or `confidence` is not strictly between 0 and 1.
#[must_use]
pub fn bootstrap_ratio_interval(
    numerator: &[f64],
    denominator: &[f64],
    scale: f64,
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Option<(f64, f64)> {
    let finite = numerator.iter().chain(denominator).all(|v| v.is_finite()) && scale.is_finite();
    if numerator.is_empty()
        || numerator.len() != denominator.len()
        || resamples == 0
        || !valid_confidence(confidence)
        || !finite
    {
        return None;
    }
    let mut rng = SplitMix64::new(seed);
    let n = numerator.len() as u64;
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            let (mut num, mut den) = (0.0, 0.0);
            for _ in 0..n {
                let i = rng.below(n) as usize;
                num += numerator[i];
                den += denominator[i];
            }
            if den == 0.0 { 0.0 } else { scale * num / den }
        })
        .collect();
    stats.sort_by(f64::total_cmp);
    let alpha = 1.0 - confidence;
    let quantile = |q| quantile_sorted(&stats, q);
    Some((quantile(alpha / 2.0), quantile(1.0 - alpha / 2.0)))
}

/// Type 7 quantile of non-empty, ascending `sorted` at probability `q` in `[0, 1]`.
pub(crate) fn quantile_sorted(sorted: &[f64], q: f64) -> f64 {
    let h = (sorted.len() - 1) as f64 * q.clamp(0.0, 1.0);
    let lo = (h.floor() as usize).min(sorted.len() - 1);
    let hi = (lo + 1).min(sorted.len() - 1);
    sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo])
}

/// Exact two-sided McNemar test p-value.
///
/// `b` counts pairs where only the first run is correct, `c` pairs where only the second is.
/// Under the null hypothesis the `b` discordant pairs out of `n = b + c` follow
/// Binomial(n, ½), and `p = min(1, 2·P[X ≤ min(b, c)])`; `p = 1` when `b + c == 0`.
///
/// The largest tail term is computed with Loader's saddle-point expansion of the binomial
/// probability (as in R's `dbinom`) and the smaller terms from it by exact ratios; against exact
/// rational arithmetic the relative error is below 5e-14 for `n` up to 10,000. P-values below
/// about 1e-308 lose precision to underflow, down to 0.
#[must_use]
pub fn mcnemar_exact(b: u64, c: u64) -> f64 {
    if b == c {
        return 1.0;
    }
    let total = b as f64 + c as f64;
    let k = b.min(c) as f64;
    let mut term = half_binomial_pmf(k, total);
    let mut tail = term;
    let mut i = k;
    while i > 0.0 && term > tail * 1e-18 {
        term *= i / (total - i + 1.0);
        tail += term;
        i -= 1.0;
    }
    (2.0 * tail).min(1.0)
}

/// `P[X = k]` for `X ~ Binomial(n, ½)`, `0 ≤ k < n`, both integers.
fn half_binomial_pmf(k: f64, n: f64) -> f64 {
    if k == 0.0 {
        return (-n).exp2();
    }
    let half = n / 2.0;
    let exponent = stirling_error(n)
        - stirling_error(k)
        - stirling_error(n - k)
        - deviance_term(k, half)
        - deviance_term(n - k, half);
    exponent.exp() * (n / (2.0 * PI * k * (n - k))).sqrt()
}

/// `ln(n!) − ln(√(2πn)·(n/e)ⁿ)` for a positive integer `n`: a table up to 15 (computed with
/// Python's `decimal` at 50 digits), then the Stirling series to the `n⁻⁹` term.
fn stirling_error(n: f64) -> f64 {
    #[rustfmt::skip]
    const TABLE: [f64; 16] = [
        0.0, 8.106_146_679_532_726e-2, 4.134_069_595_540_93e-2, 2.767_792_568_499_834e-2,
        2.079_067_210_376_509_3e-2, 1.664_469_118_982_119_3e-2, 1.387_612_882_307_074_8e-2,
        1.189_670_994_589_177e-2, 1.041_126_526_197_209_6e-2, 9.255_462_182_712_733e-3,
        8.330_563_433_362_87e-3, 7.573_675_487_951_841e-3, 6.942_840_107_209_53e-3,
        6.408_994_188_004_207e-3, 5.951_370_112_758_847_5e-3, 5.554_733_551_962_801e-3,
    ];
    if n <= 15.0 {
        return TABLE[n as usize];
    }
    let nn = n * n;
    (1.0 / 12.0
        - (1.0 / 360.0 - (1.0 / 1260.0 - (1.0 / 1680.0 - 1.0 / (1188.0 * nn)) / nn) / nn) / nn)
        / n
}

/// `x·ln(x/m) + m − x`, computed without cancellation when `x` is close to `m`.
fn deviance_term(x: f64, m: f64) -> f64 {
    if (x - m).abs() < 0.1 * (x + m) {
        let mut v = (x - m) / (x + m);
        let mut sum = (x - m) * v;
        let mut power = 2.0 * x * v;
        v *= v;
        for j in 1..1000 {
            power *= v;
            let next = sum + power / f64::from(2 * j + 1);
            if next == sum {
                break;
            }
            sum = next;
        }
        sum
    } else {
        x * (x / m).ln() + m - x
    }
}

/// Two runs compared question by question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairedComparison {
    /// Questions both runs answered correctly.
    pub both_correct: u64,
    /// Questions only the first run answered correctly.
    pub only_first: u64,
    /// Questions only the second run answered correctly.
    pub only_second: u64,
    /// Questions neither run answered correctly.
    pub neither: u64,
    /// Exact two-sided McNemar p-value for `only_first` against `only_second`.
    pub mcnemar_p: f64,
    /// Points of the first run minus points of the second.
    pub points_difference: f64,
    /// Paired percentile bootstrap interval for `points_difference`.
    pub points_difference_interval: (f64, f64),
    /// Accuracy of the first run minus accuracy of the second, as a fraction of the questions.
    pub accuracy_difference: f64,
}

/// Compares two runs over the same questions. Each slice holds `(correct, points earned)` per
/// question, aligned by index. The points interval is a paired percentile bootstrap: question
/// indices are resampled and the per-question differences summed (see [`bootstrap_interval`]).
///
/// # Errors
///
/// When the slices differ in length or are empty, a points value is not finite,
/// `resamples == 0`, or `confidence` is not strictly between 0 and 1.
pub fn compare_paired(
    first: &[(bool, f64)],
    second: &[(bool, f64)],
    resamples: usize,
    confidence: f64,
    seed: u64,
) -> Result<PairedComparison, String> {
    let (n, m) = (first.len(), second.len());
    if n != m {
        return Err(format!("runs differ in length: {n} and {m} questions"));
    }
    if n == 0 {
        return Err("no questions to compare".to_owned());
    }
    let (mut both_correct, mut only_first, mut only_second, mut neither) = (0, 0, 0, 0);
    for ((a, _), (b, _)) in first.iter().zip(second) {
        match (a, b) {
            (true, true) => both_correct += 1,
            (true, false) => only_first += 1,
            (false, true) => only_second += 1,
            (false, false) => neither += 1,
        }
    }
    let differences: Vec<f64> = first.iter().zip(second).map(|(a, b)| a.1 - b.1).collect();
    let points_difference_interval =
        bootstrap_interval(&differences, resamples, confidence, seed, Statistic::Sum)
            .ok_or("points must be finite, resamples positive and confidence in (0, 1)")?;
    Ok(PairedComparison {
        both_correct,
        only_first,
        only_second,
        neither,
        mcnemar_p: mcnemar_exact(only_first, only_second),
        points_difference: differences.iter().sum(),
        points_difference_interval,
        accuracy_difference: (only_first as f64 - only_second as f64) / n as f64,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_close(actual: f64, expected: f64, relative: f64) {
        let error = (actual - expected).abs();
        let ok = error <= relative * expected.abs() || (expected == 0.0 && error <= relative);
        assert!(ok, "{actual:e} vs {expected:e}");
    }

    #[test]
    fn normal_quantile_matches_python() {
        // python3 -c "from statistics import NormalDist as N
        // for p in [0.975, 0.995, 0.5, 1e-10, 1-1e-10]: print(p, repr(N().inv_cdf(p)))"
        let table = [
            (0.975, 1.959_963_984_540_053_6),
            (0.995, 2.575_829_303_548_9),
            (0.5, 0.0),
            (1e-10, -6.361_340_902_404_056),
            (1.0 - 1e-10, 6.361_340_889_697_421),
        ];
        for (p, expected) in table {
            assert_close(normal_quantile(p), expected, 1e-12);
        }
        assert_eq!(normal_quantile(0.0), f64::NEG_INFINITY);
        assert_eq!(normal_quantile(1.0), f64::INFINITY);
        assert!(normal_quantile(f64::NAN).is_nan());
        assert!(normal_quantile(1e-320).is_finite());
    }

    #[test]
    fn erfc_matches_python() {
        // python3 -c "import math
        // for x in [0.0, 0.3, -1.0, 2.5, 5.0, 10.0, 26.0]: print(x, repr(math.erfc(x)))"
        let table = [
            (0.0, 1.0),
            (0.3, 0.671_373_240_540_872_6),
            (-1.0, 1.842_700_792_949_715),
            (2.5, 4.069_520_174_449_589e-4),
            (5.0, 1.537_459_794_428_035_1e-12),
            (10.0, 2.088_487_583_762_545e-45),
            (26.0, 5.663_192_408_856_143e-296),
        ];
        for (x, expected) in table {
            assert_close(erfc(x), expected, 1e-14);
        }
    }

    #[test]
    fn wilson_matches_python() {
        // python3 -c "from statistics import NormalDist as N; from math import sqrt
        // z = N().inv_cdf(1 - (1 - 0.95) / 2)
        // for k, n in [(0, 10), (10, 10), (7, 20), (1471, 2000)]:
        //     p = k / n; c = (p + z*z/(2*n)) / (1 + z*z/n)
        //     h = z / (1 + z*z/n) * sqrt(p*(1-p)/n + z*z/(4*n*n))
        //     print(k, n, repr(max(0.0, c - h)), repr(min(1.0, c + h)))"
        // Python prints 2.8e-17 for the first lower bound, whose exact value is 0.
        let table = [
            (0, 10, 0.0, 0.277_532_799_862_889_15),
            (10, 10, 0.722_467_200_137_110_9, 1.0),
            (7, 20, 0.181_191_824_101_082_1, 0.567_145_723_314_763_7),
            (1471, 2000, 0.715_731_555_292_035_6, 0.754_365_515_438_494_3),
        ];
        for (k, n, lower, upper) in table {
            let (l, u) = wilson_interval(k, n, 0.95).expect("valid input");
            assert_close(l, lower, 1e-12);
            assert_close(u, upper, 1e-12);
        }
        assert_eq!(wilson_interval(0, 10, 0.95).map(|i| i.0), Some(0.0));
        assert_eq!(wilson_interval(0, 0, 0.95), None);
        assert_eq!(wilson_interval(11, 10, 0.95), None);
        assert_eq!(wilson_interval(5, 10, 1.0), None);
    }

    #[test]
    fn mcnemar_matches_exact_fractions() {
        // python3 -c "from fractions import Fraction as F; from math import comb
        // for b, c in [(0, 0), (0, 5), (3, 10), (50, 80), (1000, 1100), (4900, 5100),
        //              (0, 1000), (100, 900), (10, 9990)]:
        //     n = b + c; t = F(sum(comb(n, i) for i in range(min(b, c) + 1)), 2**n)
        //     print(b, c, repr(float(min(1, 2 * t))))"
        let table = [
            (0, 0, 1.0),
            (0, 5, 0.0625),
            (3, 10, 0.092_285_156_25),
            (50, 80, 0.010_694_055_123_829_413),
            (1000, 1100, 0.030_720_707_864_242_296),
            (4900, 5100, 0.046_585_527_704_947_39),
            (0, 1000, 1.866_527_237_006_437_8e-301),
            (100, 900, 1.340_343_558_001_259_2e-161),
            (10, 9990, 0.0),
        ];
        for (b, c, expected) in table {
            assert_close(mcnemar_exact(b, c), expected, 1e-10);
            assert_close(mcnemar_exact(c, b), expected, 1e-10);
        }
        assert_eq!(mcnemar_exact(7, 7), 1.0);
        assert_eq!(mcnemar_exact(1, 2), 1.0);
    }

    #[test]
    fn splitmix_matches_reference_sequence() {
        // python3: s = (s + 0x9E3779B97F4A7C15) % 2**64; z = (s ^ s >> 30) * 0xBF58476D1CE4E5B9
        // % 2**64; z = (z ^ z >> 27) * 0x94D049BB133111EB % 2**64; output z ^ z >> 31.
        let mut rng = SplitMix64::new(0);
        assert_eq!(rng.next_u64(), 0xe220_a839_7b1d_cdaf);
        assert_eq!(rng.next_u64(), 0x6e78_9e6a_a1b9_65f4);
        assert_eq!(rng.next_u64(), 0x06c4_5d18_8009_454f);
        assert_eq!(SplitMix64::new(42).next_u64(), 13_679_457_532_755_275_413);

        let mut rng = SplitMix64::new(7);
        let mut counts = [0_u32; 3];
        for _ in 0..3000 {
            counts[rng.below(3) as usize] += 1;
        }
        assert!(counts.iter().all(|c| (900..1100).contains(c)), "{counts:?}");
        assert_eq!(SplitMix64::new(1).below(1), 0);
        assert!(SplitMix64::new(1).below(u64::MAX) < u64::MAX);
    }

    #[test]
    fn type_7_quantiles_match_numpy() {
        // numpy.quantile([1, 2, 3, 4], [0, 0.25, 0.5, 0.9, 1]) == [1, 1.75, 2.5, 3.7, 4]
        let sorted = [1.0, 2.0, 3.0, 4.0];
        for (q, expected) in [(0.0, 1.0), (0.25, 1.75), (0.5, 2.5), (0.9, 3.7), (1.0, 4.0)] {
            assert_close(quantile_sorted(&sorted, q), expected, 1e-15);
        }
        assert_eq!(quantile_sorted(&[5.0], 0.3), 5.0);
    }

    /// `n` answers, 70% of them correct.
    fn answers(n: usize) -> Vec<f64> {
        (0..n).map(|i| if i % 10 < 7 { 1.0 } else { 0.0 }).collect()
    }

    #[test]
    fn bootstrap_is_deterministic_and_sensible() {
        let values = answers(100);
        let mean = bootstrap_mean_interval(&values, 2000, 0.95, 11).expect("valid input");
        assert_eq!(bootstrap_mean_interval(&values, 2000, 0.95, 11), Some(mean));
        assert_ne!(bootstrap_mean_interval(&values, 2000, 0.95, 12), Some(mean));
        assert!(mean.0 < 0.7 && 0.7 < mean.1, "{mean:?}");
        // The normal approximation gives a half-width of 1.96·√(0.21/100) ≈ 0.09.
        assert!(
            (0.07..0.11).contains(&((mean.1 - mean.0) / 2.0)),
            "{mean:?}"
        );

        let sum = bootstrap_interval(&values, 2000, 0.95, 11, Statistic::Sum).expect("valid input");
        assert_close(sum.0, mean.0 * 100.0, 1e-12);
        assert_close(sum.1, mean.1 * 100.0, 1e-12);

        let wide = bootstrap_mean_interval(&answers(50), 2000, 0.95, 3).expect("valid");
        let narrow = bootstrap_mean_interval(&answers(2000), 2000, 0.95, 3).expect("valid");
        assert!(
            narrow.1 - narrow.0 < (wide.1 - wide.0) / 3.0,
            "{wide:?} {narrow:?}"
        );

        let flat = bootstrap_mean_interval(&[2.5; 40], 500, 0.95, 1);
        assert_eq!(flat, Some((2.5, 2.5)));
        let flat_sum = bootstrap_interval(&[0.5; 4], 500, 0.9, 1, Statistic::Sum);
        assert_eq!(flat_sum, Some((2.0, 2.0)));
        assert_eq!(bootstrap_mean_interval(&[], 500, 0.95, 1), None);
        assert_eq!(bootstrap_mean_interval(&values, 0, 0.95, 1), None);
        assert_eq!(bootstrap_mean_interval(&[1.0, f64::NAN], 10, 0.95, 1), None);
    }

    #[test]
    fn compare_paired_counts_the_table() {
        // A question is correct exactly when it earned points.
        let run = |points: [f64; 6]| points.map(|p| (p > 0.0, p));
        let first = run([1.0, 3.0, 0.0, 1.0, 0.0, 2.0]);
        let second = run([1.0, 0.0, 1.0, 0.0, 0.0, 2.0]);
        let result = compare_paired(&first, &second, 1000, 0.95, 5).expect("aligned runs");
        let table = [
            result.both_correct,
            result.only_first,
            result.only_second,
            result.neither,
        ];
        assert_eq!(table, [2, 2, 1, 1]);
        assert_eq!(result.points_difference, 3.0);
        assert_close(result.accuracy_difference, 1.0 / 6.0, 1e-15);
        assert_eq!(result.mcnemar_p, 1.0);
        let (low, high) = result.points_difference_interval;
        assert!(
            (-6.0..3.0).contains(&low) && high > 3.0 && high <= 18.0,
            "{low} {high}"
        );
        assert_eq!(compare_paired(&first, &second, 1000, 0.95, 5), Ok(result));

        let error = compare_paired(&first, &second[1..], 1000, 0.95, 5).expect_err("mismatch");
        assert_eq!(error, "runs differ in length: 6 and 5 questions");
        assert!(compare_paired(&[], &[], 1000, 0.95, 5).is_err());
        assert!(compare_paired(&first, &second, 0, 0.95, 5).is_err());
        assert!(compare_paired(&first, &second, 100, 0.0, 5).is_err());
        let infinite = [(true, f64::INFINITY); 6];
        assert!(compare_paired(&first, &infinite, 100, 0.95, 5).is_err());
    }

    #[test]
    fn ratio_bootstrap_of_a_perfect_score_is_the_score_and_stays_inside_the_bounds() {
        let at_stake = [1.0, 3.0, 1.0, 0.0, 3.0, 1.0];
        let perfect = bootstrap_ratio_interval(&at_stake, &at_stake, 9.0, 500, 0.95, 7);
        assert_eq!(perfect, Some((9.0, 9.0)));
        let earned = [1.0, 0.0, 1.0, 0.0, 3.0, 0.0];
        let (lo, hi) = bootstrap_ratio_interval(&earned, &at_stake, 9.0, 2000, 0.95, 7).unwrap();
        assert!(
            (0.0..5.0).contains(&lo) && 5.0 < hi && hi <= 9.0,
            "[{lo}, {hi}]"
        );
        // Reproducible with the seed, and refused on malformed input.
        assert_eq!(
            bootstrap_ratio_interval(&earned, &at_stake, 9.0, 2000, 0.95, 7),
            Some((lo, hi))
        );
        assert_eq!(
            bootstrap_ratio_interval(&earned, &at_stake[..2], 9.0, 10, 0.95, 7),
            None
        );
        assert_eq!(bootstrap_ratio_interval(&[], &[], 9.0, 10, 0.95, 7), None);
        assert_eq!(
            bootstrap_ratio_interval(&earned, &at_stake, 9.0, 10, 1.0, 7),
            None
        );
    }
}
