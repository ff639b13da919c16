//! The Gestalt (Ratcliff/Obershelp) similarity exactly as CPython computes it:
//! `difflib.SequenceMatcher(None, a, b).ratio()`, over Unicode code points, including the
//! `autojunk` heuristic (in a second string of 200 or more characters, a character that occurs
//! more than `len(b) // 100 + 1` times is left out of the match index).
//!
//! The ratio is not symmetric, so [`gestalt_mean`] reports both directions averaged, as the
//! 70B study's harness does.
//!
//! The algorithm is CPython's, step for step (the same index of `b`, the same row-by-row
//! longest-match search with the same tie-breaking, the same extension of a match through
//! popular characters, the same recursion), but its data live in flat arrays reused from call
//! to call ([`Gestalt`]), so a call allocates nothing once the buffers have grown.

use std::cell::RefCell;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// `difflib.SequenceMatcher(None, a, b).ratio()`.
pub fn gestalt_ratio(a: &str, b: &str) -> f64 {
    SCRATCH.with(|s| s.borrow_mut().ratio(a, b))
}

/// The mean of both directions: `(ratio(a, b) + ratio(b, a)) / 2`.
pub fn gestalt_mean(a: &str, b: &str) -> f64 {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        let ab = s.ratio(a, b);
        let ba = s.ratio(b, a);
        (ab + ba) / 2.0
    })
}

thread_local! {
    static SCRATCH: RefCell<Gestalt> = RefCell::new(Gestalt::default());
}

const NONE: u32 = u32::MAX;
/// Up to this many characters, `b` is indexed by scanning instead of hashing.
const SHORT: usize = 24;

/// Reusable working memory for [`Gestalt::ratio`]; one per thread is kept for the free
/// functions.
#[derive(Default)]
pub struct Gestalt {
    a: Vec<char>,
    b: Vec<char>,
    /// For each position of `a`: the first position in `b` of the same character, if that
    /// character is in `b`'s index (not popular), else `NONE`.
    a_first: Vec<u32>,
    /// For each position of `b`: the next position holding the same character, or `NONE`.
    /// Following it from `a_first[i]` walks CPython's `b2j[a[i]]` in ascending order.
    b_next: Vec<u32>,
    /// Character → (first position in `b`, occurrences), built once per call.
    index: HashMap<char, (u32, u32), BuildHasherDefault<CharHasher>>,
    /// CPython's `j2len` and `newj2len` dictionaries as two arrays indexed by `j`, each entry
    /// valid only when its stamp equals the row that wrote it (so nothing is ever cleared).
    prev_len: Vec<u32>,
    prev_row: Vec<u32>,
    cur_len: Vec<u32>,
    cur_row: Vec<u32>,
    row: u32,
    queue: Vec<(usize, usize, usize, usize)>,
}

impl Gestalt {
    /// `difflib.SequenceMatcher(None, a, b).ratio()`.
    pub fn ratio(&mut self, a: &str, b: &str) -> f64 {
        self.a.clear();
        self.a.extend(a.chars());
        self.b.clear();
        self.b.extend(b.chars());
        let total = self.a.len() + self.b.len();
        if total == 0 {
            return 1.0;
        }
        self.build_index();
        let matches = self.matching_characters();
        // Both counts are far below 2^53, so the conversions are exact, as in Python.
        2.0 * matches as f64 / total as f64
    }

    /// CPython's `__chain_b` without junk: every character of `b` indexed by position, then
    /// (for `len(b) >= 200`) the popular ones dropped.
    fn build_index(&mut self) {
        let n = self.b.len();
        self.b_next.clear();
        self.b_next.resize(n, NONE);
        self.a_first.clear();
        if n <= SHORT && self.a.len() * n <= SHORT * SHORT {
            // A short `b` (never subject to autojunk) is cheaper to scan than to hash.
            for j in 0..n {
                let c = self.b[j];
                if let Some(next) = self.b[j + 1..].iter().position(|&d| d == c) {
                    self.b_next[j] = (j + 1 + next) as u32;
                }
            }
            for c in &self.a {
                let first = self
                    .b
                    .iter()
                    .position(|d| d == c)
                    .map_or(NONE, |j| j as u32);
                self.a_first.push(first);
            }
        } else {
            self.index_by_hashing();
        }
        for buffer in [&mut self.prev_len, &mut self.cur_len] {
            if buffer.len() < n {
                buffer.resize(n, 0);
            }
        }
        for buffer in [&mut self.prev_row, &mut self.cur_row] {
            if buffer.len() < n {
                buffer.resize(n, NONE);
            }
        }
    }

    fn index_by_hashing(&mut self) {
        let n = self.b.len();
        self.index.clear();
        for j in (0..n).rev() {
            let entry = self.index.entry(self.b[j]).or_insert((NONE, 0));
            self.b_next[j] = entry.0;
            entry.0 = j as u32;
            entry.1 += 1;
        }
        let popular_above = if n >= 200 { n / 100 + 1 } else { usize::MAX };
        for c in &self.a {
            let first = match self.index.get(c) {
                Some(&(first, count)) if (count as usize) <= popular_above => first,
                _ => NONE,
            };
            self.a_first.push(first);
        }
    }

    /// A fresh row number; when the counter wraps, every stamp is reset so none can match.
    fn next_row(&mut self) -> u32 {
        if self.row >= NONE - 2 {
            self.row = 0;
            self.prev_row.fill(NONE);
            self.cur_row.fill(NONE);
        }
        self.row += 1;
        self.row
    }

    /// `find_longest_match(alo, ahi, blo, bhi)` as (i, j, size). Without an `isjunk` function
    /// no character is junk, so popular characters are still used to extend a match.
    fn longest_match(
        &mut self,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
    ) -> (usize, usize, usize) {
        let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
        // The row before `alo` is empty: a stamp no entry carries.
        let mut prev = self.next_row();
        for i in alo..ahi {
            let cur = self.next_row();
            let mut j = self.a_first[i];
            while j != NONE {
                let ju = j as usize;
                if ju >= bhi {
                    break;
                }
                if ju >= blo {
                    let k = if ju > 0 && self.prev_row[ju - 1] == prev {
                        self.prev_len[ju - 1] + 1
                    } else {
                        1
                    };
                    self.cur_len[ju] = k;
                    self.cur_row[ju] = cur;
                    let k = k as usize;
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = ju + 1 - k;
                        bestsize = k;
                    }
                }
                j = self.b_next[ju];
            }
            std::mem::swap(&mut self.prev_len, &mut self.cur_len);
            std::mem::swap(&mut self.prev_row, &mut self.cur_row);
            prev = cur;
        }
        let (a, b) = (&self.a, &self.b);
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
    fn matching_characters(&mut self) -> usize {
        let mut total = 0;
        self.queue.clear();
        self.queue.push((0, self.a.len(), 0, self.b.len()));
        while let Some((alo, ahi, blo, bhi)) = self.queue.pop() {
            let (i, j, k) = self.longest_match(alo, ahi, blo, bhi);
            if k > 0 {
                total += k;
                if alo < i && blo < j {
                    self.queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    self.queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        total
    }
}

/// A multiplicative hash for `char` keys (std's SipHash guards against hostile keys, which a
/// per-call table of one string's characters does not need).
#[derive(Default)]
struct CharHasher(u64);

impl Hasher for CharHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            self.0 =
                (self.0.rotate_left(5) ^ u64::from(byte)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.0 = (self.0.rotate_left(5) ^ u64::from(n)).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
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
