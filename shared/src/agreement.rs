//! Inter-rater agreement for human grading: Cohen's κ for two raters, Fleiss' κ for a fixed
//! number of raters per item, raw agreement, and the seeded assignment of items to annotators.
//!
//! κ measures agreement beyond chance, `κ = (pₒ − pₑ) / (1 − pₑ)`, where `pₒ` is the observed
//! and `pₑ` the chance-expected agreement: 1 is perfect agreement, 0 what chance alone gives,
//! negative values less than chance. κ is undefined when `pₑ = 1` (every rating in one and the
//! same category), and the functions here then return `None` rather than a NaN.
//!
//! - [`cohen_kappa`]: Cohen (1960), with the large-sample standard error of Fleiss, Cohen and
//!   Everitt (1969) and a normal-approximation interval.
//! - [`fleiss_kappa`]: Fleiss (1971), with a percentile bootstrap interval over subjects (the
//!   large-sample variance of Fleiss, Nee and Landis (1979) holds only under κ = 0, so it tests
//!   that hypothesis but cannot give an interval).
//! - [`distribute`] and [`shuffled`]: a balanced, reproducible assignment of items to
//!   annotators and a per-annotator presentation order.
//!
//! Everything here is deterministic: the bootstrap and the shuffles draw from
//! [`SplitMix64`] with a caller-given seed.
//!
//! References:
//! - J. Cohen, "A coefficient of agreement for nominal scales", Educational and Psychological
//!   Measurement 20 (1960), 37–46.
//! - J. L. Fleiss, J. Cohen and B. S. Everitt, "Large sample standard errors of kappa and
//!   weighted kappa", Psychological Bulletin 72 (1969), 323–327.
//! - J. L. Fleiss, "Measuring nominal scale agreement among many raters", Psychological
//!   Bulletin 76 (1971), 378–382.
//! - J. L. Fleiss, J. C. M. Nee and J. R. Landis, "Large sample variance of kappa in the case
//!   of different sets of raters", Psychological Bulletin 86 (1979), 974–977.
//! - B. Efron and R. J. Tibshirani, "An Introduction to the Bootstrap", Chapman & Hall (1993),
//!   chapters 6 and 13 (bootstrap standard error, percentile interval).

// For `clippy::pedantic`: counts become `f64` by design; bootstrap indices are below the slice
// length, so they fit `usize`; exact float comparisons are deliberate (determinism checks);
// "Fleiss", "Cohen" and "Everitt" are names, not code.
#![allow(
    clippy::cast_precision_loss,
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::float_cmp,
    clippy::doc_markdown
)]

use serde::{Deserialize, Serialize};

use crate::stats::{SplitMix64, normal_quantile, quantile_sorted, valid_confidence};

/// Resamples drawn by [`fleiss_kappa`]'s percentile bootstrap.
pub const FLEISS_BOOTSTRAP_RESAMPLES: usize = 2_000;

/// A κ coefficient with its uncertainty.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct KappaEstimate {
    /// The point estimate, at most 1.
    pub kappa: f64,
    /// Its standard error: the large-sample one for Cohen's κ, the bootstrap standard deviation
    /// for Fleiss' κ. `None` when it cannot be estimated.
    pub se: Option<f64>,
    /// The two-sided confidence interval `(lower, upper)`, clamped to `[-1, 1]`. `None` when the
    /// confidence level is not strictly between 0 and 1 or there is no standard error.
    pub interval: Option<(f64, f64)>,
}

/// Cohen's κ (Cohen, 1960) for two raters from a square contingency table: `table[i][j]` counts
/// the subjects rater A put in category `i` and rater B in category `j`.
///
/// With `N` the total, `pᵢⱼ = table[i][j] / N` and the marginals `pᵢ.` (rows) and `p.ⱼ`
/// (columns), `pₒ = Σᵢ pᵢᵢ`, `pₑ = Σᵢ pᵢ.·p.ᵢ` and `κ = (pₒ − pₑ) / (1 − pₑ)`, computed as
/// `(N·Σᵢ nᵢᵢ − Σᵢ nᵢ.·n.ᵢ) / (N² − Σᵢ nᵢ.·n.ᵢ)` in integers with one final division.
///
/// `se` is the large-sample standard error of Fleiss, Cohen and Everitt (1969), the `std_kappa`
/// of statsmodels' `cohens_kappa` and the "ASE" of SAS `PROC FREQ`:
///
/// `Var(κ) = [Σᵢ pᵢᵢ(1 − (pᵢ. + p.ᵢ)(1 − κ))² + (1 − κ)² Σᵢ≠ⱼ pᵢⱼ(p.ᵢ + pⱼ.)²
///            − (κ − pₑ(1 − κ))²] / (N(1 − pₑ)²)`
///
/// (clamped at 0 against rounding), and the interval is `κ ± z·se` with `z` the
/// `(1 + confidence) / 2` standard normal quantile, clamped to `[-1, 1]`.
///
/// `None` when the table is empty or not square, its total is 0 or overflows `u64`, or
/// `pₑ = 1` (both raters used one and the same single category: κ is undefined). The interval
/// is `None` when `confidence` is not strictly between 0 and 1.
#[must_use]
pub fn cohen_kappa(table: &[Vec<u64>], confidence: f64) -> Option<KappaEstimate> {
    let k = table.len();
    if k == 0 || table.iter().any(|row| row.len() != k) {
        return None;
    }
    let total = table
        .iter()
        .flatten()
        .try_fold(0u64, |sum, &count| sum.checked_add(count))?;
    if total == 0 {
        return None;
    }
    // Every row and column total is at most `total`, so these fit `u64` and their products
    // (at most `total²`) fit `u128`.
    let rows: Vec<u64> = table.iter().map(|row| row.iter().sum()).collect();
    let columns: Vec<u64> = (0..k)
        .map(|j| table.iter().map(|row| row[j]).sum())
        .collect();
    let agree: u64 = (0..k).map(|i| table[i][i]).sum();
    let expected: u128 = rows
        .iter()
        .zip(&columns)
        .map(|(&r, &c)| u128::from(r) * u128::from(c))
        .sum();
    let n = u128::from(total);
    if expected == n * n {
        return None;
    }
    let observed = n * u128::from(agree);
    let numerator = if observed >= expected {
        (observed - expected) as f64
    } else {
        -((expected - observed) as f64)
    };
    let kappa = numerator / (n * n - expected) as f64;

    let nf = total as f64;
    let pe = expected as f64 / (nf * nf);
    let row_p: Vec<f64> = rows.iter().map(|&r| r as f64 / nf).collect();
    let col_p: Vec<f64> = columns.iter().map(|&c| c as f64 / nf).collect();
    let mut diagonal = 0.0;
    let mut off_diagonal = 0.0;
    for (i, row) in table.iter().enumerate() {
        for (j, &count) in row.iter().enumerate() {
            let p = count as f64 / nf;
            if i == j {
                diagonal += p * (1.0 - (row_p[i] + col_p[i]) * (1.0 - kappa)).powi(2);
            } else {
                off_diagonal += p * (col_p[i] + row_p[j]).powi(2);
            }
        }
    }
    let correction = (kappa - pe * (1.0 - kappa)).powi(2);
    let variance =
        (diagonal + (1.0 - kappa).powi(2) * off_diagonal - correction) / (nf * (1.0 - pe).powi(2));
    let se = variance.max(0.0).sqrt();
    let interval = valid_confidence(confidence).then(|| {
        let z = normal_quantile(f64::midpoint(1.0, confidence));
        ((kappa - z * se).max(-1.0), (kappa + z * se).min(1.0))
    });
    Some(KappaEstimate {
        kappa,
        se: Some(se),
        interval,
    })
}

/// Cohen's κ from paired ratings: `a[s]` and `b[s]` are the category indices (below
/// `categories`) the two raters gave subject `s`. Builds the contingency table and calls
/// [`cohen_kappa`].
///
/// `None` when the slices are empty or differ in length, an index is not below `categories`,
/// or [`cohen_kappa`] returns `None`.
#[must_use]
pub fn cohen_kappa_pairs(
    a: &[usize],
    b: &[usize],
    categories: usize,
    confidence: f64,
) -> Option<KappaEstimate> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let mut table = vec![vec![0u64; categories]; categories];
    for (&i, &j) in a.iter().zip(b) {
        *table.get_mut(i)?.get_mut(j)? += 1;
    }
    cohen_kappa(&table, confidence)
}

/// Raw agreement of two raters: the fraction (in `[0, 1]`, not a percentage) of subjects with
/// `a[s] == b[s]`, Cohen's `pₒ`.
///
/// `None` when the slices are empty or differ in length.
#[must_use]
pub fn percent_agreement(a: &[usize], b: &[usize]) -> Option<f64> {
    if a.is_empty() || a.len() != b.len() {
        return None;
    }
    let agree = a.iter().zip(b).filter(|(x, y)| x == y).count();
    Some(agree as f64 / a.len() as f64)
}

/// Fleiss' κ (Fleiss, 1971) for `n ≥ 2` ratings per subject: `counts[i][j]` is how many raters
/// put subject `i` in category `j`, and every row sums to the same `n` (the raters may differ
/// from subject to subject).
///
/// With `N` subjects, `pⱼ = Σᵢ nᵢⱼ / (N·n)`, `Pᵢ = (Σⱼ nᵢⱼ² − n) / (n(n − 1))` (the share of
/// agreeing rater pairs on subject `i`), `P̄ = Σᵢ Pᵢ / N` and `P̄ₑ = Σⱼ pⱼ²`,
/// `κ = (P̄ − P̄ₑ) / (1 − P̄ₑ)`.
///
/// The variance of Fleiss, Nee and Landis (1979) is derived under κ = 0 and serves only to test
/// that hypothesis, so the uncertainty is a percentile bootstrap over subjects instead:
/// [`FLEISS_BOOTSTRAP_RESAMPLES`] resamples of `N` subjects drawn with replacement (indices
/// from [`SplitMix64`] seeded with `bootstrap_seed`), resamples where κ is undefined skipped.
/// `se` is the standard deviation of the resampled κ (divisor `B − 1`), and the interval the
/// `α/2` and `1 − α/2` type 7 quantiles of them (as in [`crate::stats::bootstrap_interval`]),
/// `α = 1 − confidence`, clamped to `[-1, 1]`. Both are `None` when fewer than two resamples
/// give a κ; the interval is also `None` when `confidence` is not strictly between 0 and 1.
///
/// `None` when there are no subjects or no categories, the rows differ in length or in their
/// sums, `n < 2`, a count total overflows `u64`, or `P̄ₑ = 1` (every rating in one category).
#[must_use]
pub fn fleiss_kappa(
    counts: &[Vec<u64>],
    confidence: f64,
    bootstrap_seed: u64,
) -> Option<KappaEstimate> {
    let table = FleissTable::new(counts)?;
    let all: Vec<usize> = (0..counts.len()).collect();
    let kappa = table.kappa(&all)?;

    let mut rng = SplitMix64::new(bootstrap_seed);
    let subjects = counts.len() as u64;
    let mut sample = vec![0; counts.len()];
    let mut kappas: Vec<f64> = Vec::with_capacity(FLEISS_BOOTSTRAP_RESAMPLES);
    for _ in 0..FLEISS_BOOTSTRAP_RESAMPLES {
        for slot in &mut sample {
            *slot = rng.below(subjects) as usize;
        }
        if let Some(k) = table.kappa(&sample) {
            kappas.push(k);
        }
    }
    if kappas.len() < 2 {
        return Some(KappaEstimate {
            kappa,
            se: None,
            interval: None,
        });
    }
    let b = kappas.len() as f64;
    let mean = kappas.iter().sum::<f64>() / b;
    let se = (kappas.iter().map(|k| (k - mean).powi(2)).sum::<f64>() / (b - 1.0)).sqrt();
    kappas.sort_by(f64::total_cmp);
    let interval = valid_confidence(confidence).then(|| {
        let alpha = 1.0 - confidence;
        let lower = quantile_sorted(&kappas, alpha / 2.0);
        let upper = quantile_sorted(&kappas, 1.0 - alpha / 2.0);
        (lower.clamp(-1.0, 1.0), upper.clamp(-1.0, 1.0))
    });
    Some(KappaEstimate {
        kappa,
        se: Some(se),
        interval,
    })
}

/// Fleiss' `P̄`: the mean over subjects of the share of agreeing rater pairs,
/// `Pᵢ = (Σⱼ nᵢⱼ² − n) / (n(n − 1))` (see [`fleiss_kappa`]). For two raters it is the raw
/// agreement of [`percent_agreement`]; for more, the natural "percent agreement" to show beside
/// κ. A fraction in `[0, 1]`.
///
/// `None` for the same malformed input as [`fleiss_kappa`] (but a single-category table is
/// fine: `P̄ = 1`).
#[must_use]
pub fn fleiss_observed_agreement(counts: &[Vec<u64>]) -> Option<f64> {
    let table = FleissTable::new(counts)?;
    let pairs: u128 = table.agreeing_pairs.iter().sum();
    Some(pairs as f64 / table.pairs_per_subject as f64 / counts.len() as f64)
}

/// A validated subjects × categories count matrix, with what κ needs per subject.
struct FleissTable<'a> {
    counts: &'a [Vec<u64>],
    /// Raters per subject, `n ≥ 2`.
    raters: u64,
    /// Ordered pairs of raters agreeing on each subject, `Σⱼ nᵢⱼ² − n = Σⱼ nᵢⱼ(nᵢⱼ − 1)`.
    agreeing_pairs: Vec<u128>,
    /// Ordered pairs of raters per subject, `n(n − 1)`.
    pairs_per_subject: u128,
}

impl<'a> FleissTable<'a> {
    fn new(counts: &'a [Vec<u64>]) -> Option<Self> {
        let categories = counts.first()?.len();
        if categories == 0 || counts.iter().any(|row| row.len() != categories) {
            return None;
        }
        let raters = row_total(&counts[0])?;
        if raters < 2 || counts.iter().any(|row| row_total(row) != Some(raters)) {
            return None;
        }
        // The number of ratings must fit `u64`; then so does every count, and the products
        // below fit `u128`.
        u64::try_from(counts.len()).ok()?.checked_mul(raters)?;
        let agreeing_pairs = counts
            .iter()
            .map(|row| {
                row.iter()
                    .map(|&c| u128::from(c) * u128::from(c.saturating_sub(1)))
                    .sum()
            })
            .collect();
        Some(Self {
            counts,
            raters,
            agreeing_pairs,
            pairs_per_subject: u128::from(raters) * u128::from(raters - 1),
        })
    }

    /// κ over the subjects listed in `subjects` (repeats allowed), `None` when `P̄ₑ = 1` or the
    /// number of ratings overflows `u64` (a resample has as many ratings as the full table).
    fn kappa(&self, subjects: &[usize]) -> Option<f64> {
        let categories = self.counts[0].len();
        let mut columns = vec![0u64; categories];
        let mut pairs: u128 = 0;
        for &s in subjects {
            for (column, &c) in columns.iter_mut().zip(&self.counts[s]) {
                *column = column.checked_add(c)?;
            }
            pairs += self.agreeing_pairs[s];
        }
        let ratings = u128::from((subjects.len() as u64).checked_mul(self.raters)?);
        let squares: u128 = columns.iter().map(|&c| u128::from(c) * u128::from(c)).sum();
        if squares == ratings * ratings {
            return None;
        }
        let observed = pairs as f64 / (subjects.len() as u128 * self.pairs_per_subject) as f64;
        let nf = ratings as f64;
        let expected = squares as f64 / (nf * nf);
        Some((observed - expected) / (1.0 - expected))
    }
}

/// The sum of a row, `None` on overflow.
fn row_total(row: &[u64]) -> Option<u64> {
    row.iter().try_fold(0u64, |sum, &c| sum.checked_add(c))
}

/// Assigns each of `items` items to `overlap` distinct annotators out of `annotators`: entry `i`
/// of the result lists the annotator indices (below `annotators`) who rate item `i`.
///
/// Greedy, item by item, annotator by annotator: the next annotator of an item is the one with
/// the fewest items so far; among those, the one who has shared the fewest items with the
/// annotators already chosen for it (so that every pair of annotators comes to share items, and
/// each pair gets a Cohen's κ); remaining ties go by a seeded random draw. Taking the least
/// loaded first keeps every annotator's load at `⌊items·overlap / annotators⌋` or one more
/// (the `overlap` least loaded are always taken, so the spread never exceeds one). The same
/// arguments give the same assignment.
///
/// # Errors
///
/// When `annotators == 0`, `overlap == 0` or `overlap > annotators`.
pub fn distribute(
    items: usize,
    annotators: usize,
    overlap: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, String> {
    if annotators == 0 {
        return Err("there are no annotators to distribute items to".to_owned());
    }
    if overlap == 0 {
        return Err("each item needs at least one annotator (overlap 0)".to_owned());
    }
    if overlap > annotators {
        return Err(format!(
            "overlap {overlap} exceeds the {annotators} annotators: \
             an item cannot have {overlap} distinct annotators"
        ));
    }
    let mut rng = SplitMix64::new(seed);
    let mut load = vec![0usize; annotators];
    let mut shared = vec![vec![0usize; annotators]; annotators];
    let mut out = Vec::with_capacity(items);
    for _ in 0..items {
        let draw: Vec<u64> = (0..annotators).map(|_| rng.next_u64()).collect();
        let mut chosen: Vec<usize> = Vec::with_capacity(overlap);
        for _ in 0..overlap {
            let next = (0..annotators)
                .filter(|a| !chosen.contains(a))
                .min_by_key(|&a| {
                    let together: usize = chosen.iter().map(|&c| shared[a][c]).sum();
                    (load[a], together, draw[a])
                });
            // `overlap ≤ annotators`, so someone is always left.
            let Some(next) = next else { break };
            chosen.push(next);
        }
        for (i, &a) in chosen.iter().enumerate() {
            load[a] += 1;
            for &b in &chosen[i + 1..] {
                shared[a][b] += 1;
                shared[b][a] += 1;
            }
        }
        out.push(chosen);
    }
    Ok(out)
}

/// A random permutation of `0..n` by the Fisher–Yates shuffle (Durstenfeld's in-place form,
/// Knuth's Algorithm P), drawing from [`SplitMix64`] seeded with `seed`: for `i` from `n − 1`
/// down to 1, swap position `i` with a uniform position in `0..=i`. The same arguments give the
/// same permutation.
#[must_use]
pub fn shuffled(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed);
    let mut values: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        values.swap(i, j);
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_near(actual: f64, expected: f64, tolerance: f64) {
        assert!(
            (actual - expected).abs() <= tolerance,
            "{actual} vs {expected} (tolerance {tolerance})"
        );
    }

    fn table(rows: &[&[u64]]) -> Vec<Vec<u64>> {
        rows.iter().map(|row| row.to_vec()).collect()
    }

    /// Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories (also
    /// statsmodels' `test_inter_rater.py`, `table1`).
    fn wikipedia_fleiss() -> Vec<Vec<u64>> {
        table(&[
            &[0, 0, 0, 0, 14],
            &[0, 2, 6, 4, 2],
            &[0, 0, 3, 5, 6],
            &[0, 3, 9, 2, 0],
            &[2, 2, 8, 1, 1],
            &[7, 7, 0, 0, 0],
            &[3, 2, 6, 3, 0],
            &[2, 5, 3, 2, 2],
            &[6, 5, 2, 1, 0],
            &[0, 2, 2, 3, 7],
        ])
    }

    /// Fleiss (1971), Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses (depression,
    /// personality disorder, schizophrenia, neurosis, other). The raw ratings are R `irr`'s
    /// `diagnoses` data set, copied into statsmodels' `test_inter_rater.py` (`diagnoses`), and
    /// these are its counts per patient (statsmodels' `aggregate_raters`). The column totals
    /// 26, 26, 30, 55, 43 match the category proportions Fleiss printed.
    fn fleiss_1971() -> Vec<Vec<u64>> {
        table(&[
            &[0, 0, 0, 6, 0],
            &[0, 3, 0, 0, 3],
            &[0, 1, 4, 0, 1],
            &[0, 0, 0, 0, 6],
            &[0, 3, 0, 3, 0],
            &[2, 0, 4, 0, 0],
            &[0, 0, 4, 0, 2],
            &[2, 0, 3, 1, 0],
            &[2, 0, 0, 4, 0],
            &[0, 0, 0, 0, 6],
            &[1, 0, 0, 5, 0],
            &[1, 1, 0, 4, 0],
            &[0, 3, 3, 0, 0],
            &[1, 0, 0, 5, 0],
            &[0, 2, 0, 3, 1],
            &[0, 0, 5, 0, 1],
            &[3, 0, 0, 1, 2],
            &[5, 1, 0, 0, 0],
            &[0, 2, 0, 4, 0],
            &[1, 0, 2, 0, 3],
            &[0, 0, 0, 0, 6],
            &[0, 1, 0, 5, 0],
            &[0, 2, 0, 1, 3],
            &[2, 0, 0, 4, 0],
            &[1, 0, 0, 4, 1],
            &[0, 5, 0, 1, 0],
            &[4, 0, 0, 0, 2],
            &[0, 2, 0, 4, 0],
            &[1, 0, 5, 0, 0],
            &[0, 0, 0, 0, 6],
        ])
    }

    #[test]
    fn kappa_cohen_matches_wikipedia() {
        // Wikipedia, "Cohen's kappa", worked example: 50 grant proposals, two readers, Yes/No.
        // pₒ = 0.7, pₑ = 0.5, κ = 0.4.
        let estimate = cohen_kappa(&table(&[&[20, 5], &[10, 15]]), 0.95).unwrap();
        assert_near(estimate.kappa, 0.4, 1e-12);
        // The same article's "same percentages but different numbers" examples.
        let k = cohen_kappa(&table(&[&[45, 15], &[25, 15]]), 0.95).unwrap();
        assert_near(k.kappa, 0.1304, 1e-4);
        let k = cohen_kappa(&table(&[&[25, 35], &[5, 35]]), 0.95).unwrap();
        assert_near(k.kappa, 0.2593, 1e-4);
    }

    #[test]
    fn kappa_cohen_se_matches_statsmodels() {
        // statsmodels 0.15.0, `statsmodels.stats.inter_rater.cohens_kappa(t)`: `.kappa`,
        // `.std_kappa` and `(.kappa_low, .kappa_upp)` at 95 %, for the Wikipedia tables and a
        // 4 × 4 table of our own.
        // (table, κ, SE, lower, upper)
        type Case = (&'static [&'static [u64]], f64, f64, f64, f64);
        let cases: [Case; 4] = [
            (
                &[&[20, 5], &[10, 15]],
                0.399_999_999_999_999_9,
                0.126_996_062_931_100_33,
                0.151_092_290_476_661,
                0.648_907_709_523_338_9,
            ),
            (
                &[&[45, 15], &[25, 15]],
                0.130_434_782_608_695_54,
                0.098_661_537_623_439_6,
                -0.062_938_277_792_589_65,
                0.323_807_843_009_980_7,
            ),
            (
                &[&[25, 35], &[5, 35]],
                0.259_259_259_259_259_24,
                0.077_159_731_744_445_72,
                0.108_028_963_983_373_67,
                0.410_489_554_535_144_8,
            ),
            (
                &[
                    &[22, 3, 1, 0],
                    &[4, 18, 2, 1],
                    &[1, 3, 15, 2],
                    &[0, 1, 2, 25],
                ],
                0.732_226_536_350_247_7,
                0.053_302_010_625_762_966,
                0.627_756_515_220_180_9,
                0.836_696_557_480_314_5,
            ),
        ];
        for (rows, kappa, se, lower, upper) in cases {
            let estimate = cohen_kappa(&table(rows), 0.95).unwrap();
            assert_near(estimate.kappa, kappa, 1e-12);
            assert_near(estimate.se.unwrap(), se, 1e-12);
            let (l, u) = estimate.interval.unwrap();
            assert_near(l, lower, 1e-9);
            assert_near(u, upper, 1e-9);
        }
    }

    #[test]
    fn kappa_cohen_matches_sas_example() {
        // SAS `PROC FREQ` printout for the 3 × 3 table below, the reference of statsmodels'
        // `test_inter_rater.py` (`TestUnweightedCohens`, `table10`): Kappa 0.4842, ASE 0.1380,
        // 95% limits 0.2137 and 0.7547.
        let estimate = cohen_kappa(&table(&[&[0, 4, 1], &[0, 8, 0], &[0, 1, 5]]), 0.95).unwrap();
        assert_near(estimate.kappa, 0.4842, 5e-5);
        assert_near(estimate.se.unwrap(), 0.1380, 5e-5);
        let (lower, upper) = estimate.interval.unwrap();
        assert_near(lower, 0.2137, 5e-5);
        assert_near(upper, 0.7547, 5e-5);
    }

    #[test]
    fn kappa_cohen_pairs_matches_r_irr() {
        // R `irr`: `kappa2(anxiety[, 2:3])` gives κ = -0.006289308 (statsmodels'
        // `test_inter_rater.py`, `test_cohens_kappa_irr`, `ck_w1`). Ratings 1..=6, shifted to
        // category indices 0..6.
        let rater2 = [3, 6, 4, 6, 2, 4, 2, 4, 3, 3, 2, 3, 3, 3, 2, 2, 1, 3, 3, 4];
        let rater3 = [2, 1, 4, 4, 3, 2, 1, 6, 1, 1, 1, 2, 3, 3, 1, 1, 3, 3, 2, 2];
        let a: Vec<usize> = rater2.iter().map(|r| r - 1).collect();
        let b: Vec<usize> = rater3.iter().map(|r| r - 1).collect();
        let estimate = cohen_kappa_pairs(&a, &b, 6, 0.95).unwrap();
        assert_near(estimate.kappa, -0.006_289_308, 1e-9);
        // statsmodels 0.15.0 `cohens_kappa(...).std_kappa` for the same table.
        assert_near(estimate.se.unwrap(), 0.101_572_838_285_292_93, 1e-12);
        assert_near(percent_agreement(&a, &b).unwrap(), 4.0 / 20.0, 1e-15);
    }

    #[test]
    fn kappa_cohen_pairs_builds_the_table() {
        // The Wikipedia table [[20, 5], [10, 15]] as 50 pairs (0 = Yes, 1 = No).
        let mut a = Vec::new();
        let mut b = Vec::new();
        for (i, j, count) in [(0, 0, 20), (0, 1, 5), (1, 0, 10), (1, 1, 15)] {
            a.extend(std::iter::repeat_n(i, count));
            b.extend(std::iter::repeat_n(j, count));
        }
        let from_pairs = cohen_kappa_pairs(&a, &b, 2, 0.9).unwrap();
        let from_table = cohen_kappa(&table(&[&[20, 5], &[10, 15]]), 0.9).unwrap();
        assert_eq!(from_pairs, from_table);
        assert_near(percent_agreement(&a, &b).unwrap(), 0.7, 1e-15);
        // Unused categories change nothing.
        let wider = cohen_kappa_pairs(&a, &b, 4, 0.9).unwrap();
        assert_eq!(wider, from_table);
    }

    #[test]
    fn kappa_cohen_edge_cases() {
        assert_eq!(cohen_kappa(&[], 0.95), None);
        assert_eq!(cohen_kappa(&table(&[&[1, 2]]), 0.95), None);
        assert_eq!(cohen_kappa(&table(&[&[1, 2], &[3]]), 0.95), None);
        assert_eq!(cohen_kappa(&table(&[&[0, 0], &[0, 0]]), 0.95), None);
        assert_eq!(cohen_kappa(&table(&[&[u64::MAX, 1], &[0, 0]]), 0.95), None);
        // Both raters used only the first category: pₑ = 1, κ undefined.
        assert_eq!(cohen_kappa(&table(&[&[7, 0], &[0, 0]]), 0.95), None);
        // Perfect agreement over two categories: κ = 1, SE 0.
        let perfect = cohen_kappa(&table(&[&[7, 0], &[0, 3]]), 0.95).unwrap();
        assert_eq!(perfect.kappa, 1.0);
        assert_eq!(perfect.se, Some(0.0));
        assert_eq!(perfect.interval, Some((1.0, 1.0)));
        // Complete disagreement with balanced marginals: κ = -1; the interval stays in [-1, 1].
        let opposite = cohen_kappa(&table(&[&[0, 5], &[5, 0]]), 0.95).unwrap();
        assert_eq!(opposite.kappa, -1.0);
        let (lower, upper) = opposite.interval.unwrap();
        assert!((-1.0..=1.0).contains(&lower) && (-1.0..=1.0).contains(&upper));
        // An invalid confidence level keeps κ and SE but gives no interval.
        let no_interval = cohen_kappa(&table(&[&[20, 5], &[10, 15]]), 1.0).unwrap();
        assert_eq!(no_interval.interval, None);
        assert!(no_interval.se.is_some());
        // Pairs: mismatched lengths, empty input, out-of-range category.
        assert_eq!(cohen_kappa_pairs(&[0, 1], &[0], 2, 0.95), None);
        assert_eq!(cohen_kappa_pairs(&[], &[], 2, 0.95), None);
        assert_eq!(cohen_kappa_pairs(&[0, 2], &[0, 1], 2, 0.95), None);
        assert_eq!(percent_agreement(&[], &[]), None);
        assert_eq!(percent_agreement(&[0], &[0, 1]), None);
    }

    #[test]
    fn kappa_fleiss_matches_wikipedia() {
        // Wikipedia, "Fleiss' kappa", worked example: P̄ = 0.378, P̄ₑ = 0.213, κ = 0.210.
        let counts = wikipedia_fleiss();
        assert_near(fleiss_observed_agreement(&counts).unwrap(), 0.378, 1e-3);
        let estimate = fleiss_kappa(&counts, 0.95, 7).unwrap();
        assert_near(estimate.kappa, 0.210, 1e-3);
        // statsmodels 0.15.0, `fleiss_kappa(table1)`: 0.20993070442195522.
        assert_near(estimate.kappa, 0.209_930_704_421_955_22, 1e-12);
        // P̄ₑ = 0.213, recovered from κ and P̄.
        let p = fleiss_observed_agreement(&counts).unwrap();
        let pe = (p - estimate.kappa) / (1.0 - estimate.kappa);
        assert_near(pe, 0.213, 1e-3);
    }

    #[test]
    fn kappa_fleiss_matches_fleiss_1971() {
        // Fleiss (1971) reports κ = .430 for his Table 1; R `irr`'s `kappam.fleiss(diagnoses)`
        // gives 0.4302445 (statsmodels' `test_fleiss_kappa_irr`).
        let counts = fleiss_1971();
        let estimate = fleiss_kappa(&counts, 0.95, 1).unwrap();
        assert_near(estimate.kappa, 0.430, 5e-4);
        assert_near(estimate.kappa, 0.430_244_5, 1e-7);
        // P̄ = 0.5556 computed from the table (statsmodels 0.15.0 and this code agree).
        assert_near(
            fleiss_observed_agreement(&counts).unwrap(),
            5.0 / 9.0,
            1e-12,
        );
    }

    #[test]
    fn kappa_fleiss_matches_randolph_calculator() {
        // statsmodels' `test_inter_rater.py`, `test_fleis_randolph`, values from J. J.
        // Randolph's online kappa calculator ("fixed marginal kappa"): [[7, 1], [3, 5]]
        // (8 raters) κ = 0.161905, and [[6, 1, 0], [0, 7, 0]] (7 raters) κ = 0.708333.
        let k = fleiss_kappa(&table(&[&[7, 1], &[3, 5]]), 0.95, 0).unwrap();
        assert_near(k.kappa, 0.161_905, 6e-6);
        let k = fleiss_kappa(&table(&[&[6, 1, 0], &[0, 7, 0]]), 0.95, 0).unwrap();
        assert_near(k.kappa, 0.708_333, 6e-6);
        // With two raters P̄ is the raw agreement.
        let pairs = table(&[&[2, 0], &[1, 1], &[0, 2], &[1, 1]]);
        assert_near(fleiss_observed_agreement(&pairs).unwrap(), 0.5, 1e-15);
        assert_eq!(percent_agreement(&[0, 0, 1, 0], &[0, 1, 1, 1]), Some(0.5));
    }

    #[test]
    fn kappa_fleiss_bootstrap_is_deterministic_and_contains_the_estimate() {
        let counts = wikipedia_fleiss();
        let first = fleiss_kappa(&counts, 0.95, 2024).unwrap();
        let again = fleiss_kappa(&counts, 0.95, 2024).unwrap();
        assert_eq!(first, again);
        let (lower, upper) = first.interval.unwrap();
        assert!(lower <= first.kappa && first.kappa <= upper, "{first:?}");
        assert!(lower < upper);
        let se = first.se.unwrap();
        assert!(se > 0.0 && se < 0.5, "{se}");
        // Another seed gives a different but similar interval.
        let other = fleiss_kappa(&counts, 0.95, 2025).unwrap();
        assert_eq!(other.kappa, first.kappa);
        assert_ne!(other.interval, first.interval);
        let (l2, u2) = other.interval.unwrap();
        assert!((l2 - lower).abs() < 0.05 && (u2 - upper).abs() < 0.05);
        // A narrower level gives a narrower interval from the same resamples.
        let (l90, u90) = fleiss_kappa(&counts, 0.90, 2024).unwrap().interval.unwrap();
        assert!(lower <= l90 && u90 <= upper);
        // The 1971 data too.
        let estimate = fleiss_kappa(&fleiss_1971(), 0.95, 3).unwrap();
        let (lower, upper) = estimate.interval.unwrap();
        assert!(
            lower <= estimate.kappa && estimate.kappa <= upper,
            "{estimate:?}"
        );
    }

    #[test]
    fn kappa_fleiss_edge_cases() {
        assert_eq!(fleiss_kappa(&[], 0.95, 0), None);
        assert_eq!(fleiss_observed_agreement(&[]), None);
        // Rows of different lengths or sums, or a single rater.
        assert_eq!(fleiss_kappa(&table(&[&[1, 1], &[2]]), 0.95, 0), None);
        assert_eq!(fleiss_kappa(&table(&[&[1, 1], &[2, 1]]), 0.95, 0), None);
        assert_eq!(fleiss_kappa(&table(&[&[1, 0], &[0, 1]]), 0.95, 0), None);
        assert_eq!(fleiss_kappa(&table(&[&[], &[]]), 0.95, 0), None);
        assert_eq!(fleiss_kappa(&table(&[&[u64::MAX, 1]]), 0.95, 0), None);
        // Every rating in one category: P̄ₑ = 1, κ undefined, yet P̄ = 1.
        let one = table(&[&[3, 0], &[3, 0]]);
        assert_eq!(fleiss_kappa(&one, 0.95, 0), None);
        assert_eq!(fleiss_observed_agreement(&one), Some(1.0));
        // Perfect agreement over two categories: κ = 1; resamples drawing one kind of subject
        // only are skipped.
        let perfect = fleiss_kappa(&table(&[&[3, 0], &[0, 3], &[3, 0]]), 0.95, 0).unwrap();
        assert_eq!(perfect.kappa, 1.0);
        assert_eq!(perfect.interval, Some((1.0, 1.0)));
        assert_eq!(perfect.se, Some(0.0));
        // A single subject: every resample is that subject, κ has no spread.
        let single = fleiss_kappa(&table(&[&[2, 1]]), 0.95, 0).unwrap();
        assert_eq!(single.se, Some(0.0));
        assert_eq!(single.interval, Some((single.kappa, single.kappa)));
        // A single subject whose raters all agree: P̄ₑ = 1.
        assert_eq!(fleiss_kappa(&table(&[&[2, 0]]), 0.95, 0), None);
        // An invalid confidence level keeps κ and SE but gives no interval.
        let no_interval = fleiss_kappa(&wikipedia_fleiss(), 0.0, 0).unwrap();
        assert_eq!(no_interval.interval, None);
        assert!(no_interval.se.is_some());
    }

    #[test]
    fn kappa_estimate_round_trips_through_json() {
        let estimate = cohen_kappa(&table(&[&[20, 5], &[10, 15]]), 0.95).unwrap();
        let json = serde_json::to_string(&estimate).unwrap();
        let back: KappaEstimate = serde_json::from_str(&json).unwrap();
        assert_eq!(back, estimate);
    }

    #[test]
    fn distribute_is_balanced_distinct_and_deterministic() {
        let combos = [
            (0, 3, 2, 1),
            (1, 1, 1, 2),
            (10, 3, 2, 3),
            (10, 4, 2, 4),
            (7, 5, 5, 5),
            (100, 7, 3, 6),
            (101, 6, 4, 7),
            (13, 13, 1, 8),
            (2, 9, 3, 9),
            (500, 11, 2, 10),
        ];
        for (items, annotators, overlap, seed) in combos {
            let plan = distribute(items, annotators, overlap, seed).unwrap();
            assert_eq!(plan.len(), items);
            let mut load = vec![0usize; annotators];
            for assigned in &plan {
                assert_eq!(assigned.len(), overlap);
                let mut sorted = assigned.clone();
                sorted.sort_unstable();
                sorted.dedup();
                assert_eq!(sorted.len(), overlap, "{assigned:?} repeats an annotator");
                for &a in assigned {
                    assert!(a < annotators);
                    load[a] += 1;
                }
            }
            assert_eq!(load.iter().sum::<usize>(), items * overlap);
            let (min, max) = (load.iter().min().unwrap(), load.iter().max().unwrap());
            assert!(
                max - min <= 1,
                "{items} {annotators} {overlap}: loads {load:?}"
            );
            assert_eq!(distribute(items, annotators, overlap, seed).unwrap(), plan);
        }
        // The seed matters.
        assert_ne!(
            distribute(20, 8, 2, 1).unwrap(),
            distribute(20, 8, 2, 2).unwrap()
        );
    }

    #[test]
    fn distribute_lets_every_pair_share_items() {
        // 4 annotators, overlap 2: round-robin would leave two fixed pairs; here all 6 pairs
        // grade items together, so each has a Cohen's κ.
        for seed in 0..20 {
            let plan = distribute(12, 4, 2, seed).unwrap();
            let mut pairs = std::collections::BTreeSet::new();
            for assigned in &plan {
                let (a, b) = (assigned[0].min(assigned[1]), assigned[0].max(assigned[1]));
                pairs.insert((a, b));
            }
            assert_eq!(pairs.len(), 6, "seed {seed}: {plan:?}");
        }
    }

    #[test]
    fn distribute_rejects_impossible_requests() {
        let zero = distribute(10, 3, 0, 0).unwrap_err();
        assert!(zero.contains("overlap 0"), "{zero}");
        let too_many = distribute(10, 3, 4, 0).unwrap_err();
        assert!(
            too_many.contains('4') && too_many.contains('3'),
            "{too_many}"
        );
        assert!(distribute(10, 0, 1, 0).is_err());
        assert!(distribute(10, 0, 0, 0).is_err());
        assert!(distribute(10, 3, 3, 0).is_ok());
    }

    #[test]
    fn shuffled_is_a_deterministic_permutation() {
        for (n, seed) in [(0, 1), (1, 2), (2, 3), (10, 4), (1000, 5)] {
            let permutation = shuffled(n, seed);
            let mut sorted = permutation.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, (0..n).collect::<Vec<_>>());
            assert_eq!(shuffled(n, seed), permutation);
        }
        assert_ne!(shuffled(1000, 5), (0..1000).collect::<Vec<_>>());
        assert_ne!(shuffled(1000, 5), shuffled(1000, 6));
        // Every position of a 3-permutation is reached: all 6 orders occur over 200 seeds.
        let mut seen: Vec<Vec<usize>> = (0..200).map(|seed| shuffled(3, seed)).collect();
        seen.sort();
        seen.dedup();
        assert_eq!(seen.len(), 6);
    }
}
