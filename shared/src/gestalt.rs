//! The Gestalt (Ratcliff/Obershelp) similarity exactly as CPython computes it:
//! `difflib.SequenceMatcher(None, a, b).ratio()`, over Unicode code points, including the
//! `autojunk` heuristic (in a second string of 200 or more characters, a character that occurs
//! more than `len(b) // 100 + 1` times is left out of the match index).
//!
//! The ratio is not symmetric, so [`gestalt_mean`] reports both directions averaged, as the
//! 70B study's harness does.

use std::collections::HashMap;

/// `difflib.SequenceMatcher(None, a, b).ratio()`.
pub fn gestalt_ratio(a: &str, b: &str) -> f64 {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let total = a.len() + b.len();
    if total == 0 {
        return 1.0;
    }
    let matches = Matcher::new(&a, &b).matching_characters();
    // Both counts are far below 2^53, so the conversions are exact, as in Python.
    2.0 * matches as f64 / total as f64
}

/// The mean of both directions: `(ratio(a, b) + ratio(b, a)) / 2`.
pub fn gestalt_mean(a: &str, b: &str) -> f64 {
    (gestalt_ratio(a, b) + gestalt_ratio(b, a)) / 2.0
}

struct Matcher<'s> {
    a: &'s [char],
    b: &'s [char],
    /// For each character of `b` that is not popular, the positions where it occurs, ascending.
    b2j: HashMap<char, Vec<usize>>,
}

impl<'s> Matcher<'s> {
    fn new(a: &'s [char], b: &'s [char]) -> Self {
        let mut b2j: HashMap<char, Vec<usize>> = HashMap::new();
        for (j, &c) in b.iter().enumerate() {
            b2j.entry(c).or_default().push(j);
        }
        let n = b.len();
        if n >= 200 {
            let ntest = n / 100 + 1;
            b2j.retain(|_, positions| positions.len() <= ntest);
        }
        Self { a, b, b2j }
    }

    /// `find_longest_match(alo, ahi, blo, bhi)` as (i, j, size). Without an `isjunk` function
    /// no character is junk, so popular characters are still used to extend a match.
    fn longest_match(
        &self,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let (a, b) = (self.a, self.b);
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        // j2len[j] = length of the match ending at a[i-1], b[j]; kept as a map like CPython's
        // so that ties resolve identically.
        let mut j2len: HashMap<usize, usize> = HashMap::new();
        for (i, c) in a.iter().enumerate().take(ahi).skip(alo) {
            let mut next: HashMap<usize, usize> = HashMap::new();
            if let Some(positions) = self.b2j.get(c) {
                for &j in positions {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = j
                        .checked_sub(1)
                        .and_then(|p| j2len.get(&p))
                        .copied()
                        .unwrap_or(0)
                        + 1;
                    next.insert(j, k);
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = j + 1 - k;
                        bestsize = k;
                    }
                }
            }
            j2len = next;
        }
        while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
            besti -= 1;
            bestj -= 1;
            bestsize += 1;
        }
        while besti + bestsize < ahi
            && bestj + bestsize < bhi
            && a[besti + bestsize] == b[bestj + bestsize]
        {
            bestsize += 1;
        }
        (besti, bestj, bestsize)
    }

    /// The total size of `get_matching_blocks()`.
    fn matching_characters(&self) -> usize {
        let mut total = 0;
        let mut queue = vec![(0, self.a.len(), 0, self.b.len())];
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                total += k;
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        total
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Expected values from CPython 3.11, e.g.
    /// `python3 -c "from difflib import SequenceMatcher as S; print(repr(S(None, 'tide', 'diet').ratio()))"`.
    #[test]
    fn ratios_equal_cpython_difflib_bit_for_bit() {
        let long_b = format!("{}心電図でST上昇を認める。", "あいうえお".repeat(50));
        let popular = format!("c{}", "ab".repeat(150));
        let cases: Vec<(String, String, f64)> = vec![
            ("".into(), "".into(), 1.0),
            ("".into(), "abc".into(), 0.0),
            ("abc".into(), "".into(), 0.0),
            ("abcd".into(), "bcde".into(), 0.75),
            ("tide".into(), "diet".into(), 0.25),
            ("diet".into(), "tide".into(), 0.5),
            (
                "夜間高血圧となることが多い。".into(),
                "夜間高血圧".into(),
                0.5263157894736842,
            ),
            (
                "α遮断薬が第一選択薬である。".into(),
                "答え：c α遮断薬".into(),
                0.34782608695652173,
            ),
            (
                "private Thread currentThread;".into(),
                "private volatile Thread currentThread;".into(),
                0.8656716417910447,
            ),
            (
                "心電図でST上昇を認める。あいうえお".into(),
                long_b.clone(),
                0.09252669039145907,
            ),
            (
                long_b,
                "心電図でST上昇を認める。あいうえお".into(),
                0.09252669039145907,
            ),
            (
                format!("{}b", "a".repeat(199)),
                format!("{}b", "a".repeat(200)),
                0.9975062344139651,
            ),
            (
                format!("b{}", "a".repeat(250)),
                format!("{}b", "a".repeat(250)),
                0.00398406374501992,
            ),
            // autojunk: every 'a' and 'b' of the long second string is popular.
            ("abab".into(), popular.clone(), 0.0),
            (popular, "abab".into(), 0.02622950819672131),
        ];
        for (a, b, expected) in &cases {
            let got = gestalt_ratio(a, b);
            assert_eq!(
                got.to_bits(),
                expected.to_bits(),
                "ratio({a:?}, {b:?}) = {got}, want {expected}"
            );
        }
    }

    #[test]
    fn the_mean_averages_both_directions() {
        assert_eq!(gestalt_mean("tide", "diet"), 0.375);
        assert_eq!(gestalt_mean("同じ", "同じ"), 1.0);
    }
}
