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
/// A row stamp no row carries (rows are numbered from 1): the row before a range, and any
/// row without a match.
const EMPTY_ROW: u32 = 0;

/// One entry of a `j2len` row: the length of the match ending at `j`, valid in row `row`.
#[derive(Clone, Copy)]
struct Slot {
    row: u32,
    len: u32,
}

const UNSET: Slot = Slot { row: NONE, len: 0 };

/// Reusable working memory for [`Gestalt::ratio`]; one per thread is kept for the free
/// functions.
#[derive(Default)]
pub struct Gestalt {
    a: Vec<char>,
    b: Vec<char>,
    /// For each position of `a`: the first position in `b` of the same character, if that
    /// character is in `b`'s index (not popular), else `NONE`.
    a_first: Vec<u32>,
    /// The positions `i` of `a` whose `a_first[i]` is not `NONE`, ascending: the only rows of
    /// a search that can hold a match.
    hits: Vec<u32>,
    /// For each position of `b`: the next position holding the same character, or `NONE`.
    /// Following it from `a_first[i]` walks CPython's `b2j[a[i]]` in ascending order.
    b_next: Vec<u32>,
    /// Character → (first position in `b`, occurrences), built once per call.
    index: HashMap<char, (u32, u32), BuildHasherDefault<CharHasher>>,
    /// CPython's `j2len` and `newj2len` dictionaries as two arrays indexed by `j`, each entry
    /// valid only when its stamp (`Slot::row`) equals the row that wrote it (so nothing is ever
    /// cleared).
    prev: Vec<Slot>,
    cur: Vec<Slot>,
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
        self.hits.clear();
        self.hits.extend(
            (0u32..)
                .zip(&self.a_first)
                .filter(|&(_, &first)| first != NONE)
                .map(|(i, _)| i),
        );
        for buffer in [&mut self.prev, &mut self.cur] {
            if buffer.len() < n {
                buffer.resize(n, UNSET);
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

    /// A fresh row number after `prev`. Before the counter wraps, every stamp is renumbered:
    /// the entries of row `prev` become row 1's (so the row being searched still sees them),
    /// all others unset; `prev` is updated to match.
    fn next_row(&mut self, prev: &mut u32, rows: [&mut [Slot]; 2]) -> u32 {
        if self.row >= NONE - 2 {
            for slot in rows.into_iter().flatten() {
                *slot = if *prev != EMPTY_ROW && slot.row == *prev {
                    Slot {
                        row: 1,
                        len: slot.len,
                    }
                } else {
                    UNSET
                };
            }
            if *prev != EMPTY_ROW {
                *prev = 1;
            }
            self.row = 1;
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
        // The two rows are moved out for the search so that swapping them swaps two slices
        // held in registers.
        let (mut prev_buf, mut cur_buf) = (
            std::mem::take(&mut self.prev),
            std::mem::take(&mut self.cur),
        );
        let (mut prev_slots, mut cur_slots) = (&mut prev_buf[..], &mut cur_buf[..]);
        // The row before `alo` is empty, and so is every row not in `hits`.
        let mut prev = EMPTY_ROW;
        let mut last = None;
        let mut h = self.hits.partition_point(|&i| (i as usize) < alo);
        while let Some(&i) = self.hits.get(h) {
            let i = i as usize;
            if i >= ahi {
                break;
            }
            h += 1;
            if last.is_none_or(|last| last + 1 != i) {
                prev = EMPTY_ROW;
            }
            last = Some(i);
            let mut j = self.a_first[i];
            let cur = self.next_row(&mut prev, [&mut *prev_slots, &mut *cur_slots]);
            while j != NONE {
                let ju = j as usize;
                if ju >= bhi {
                    break;
                }
                if ju >= blo {
                    let k = match ju.checked_sub(1).map(|before| prev_slots[before]) {
                        Some(slot) if slot.row == prev => slot.len + 1,
                        _ => 1,
                    };
                    cur_slots[ju] = Slot { row: cur, len: k };
                    let k = k as usize;
                    if k > bestsize {
                        besti = i + 1 - k;
                        bestj = ju + 1 - k;
                        bestsize = k;
                    }
                }
                j = self.b_next[ju];
            }
            std::mem::swap(&mut prev_slots, &mut cur_slots);
            prev = cur;
        }
        self.prev = prev_buf;
        self.cur = cur_buf;
        self.extend(alo, ahi, blo, bhi, (besti, bestj, bestsize))
    }

    /// CPython's extension of the best match through characters left out of the index (none
    /// are junk without `isjunk`, so popular ones extend it).
    fn extend(
        &self,
        alo: usize,
        ahi: usize,
        blo: usize,
        bhi: usize,
        (mut besti, mut bestj, mut bestsize): (usize, usize, usize),
    ) -> (usize, usize, usize) {
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
    fn a_wrapping_row_counter_changes_no_ratio() {
        let pairs = [
            ("夜間高血圧となることが多い。", "夜間高血圧"),
            ("abcabcabcabd", "xabcabdabcab"),
            (
                "private Thread currentThread;",
                "private volatile Thread currentThread;",
            ),
        ];
        for (a, b) in pairs {
            let expected = Gestalt::default().ratio(a, b);
            for start in NONE - 40..NONE - 2 {
                let mut scratch = Gestalt::default();
                // Grown buffers holding stale stamps, as after earlier calls.
                scratch.ratio(b, a);
                scratch.row = start;
                assert_eq!(
                    scratch.ratio(a, b).to_bits(),
                    expected.to_bits(),
                    "{a:?} {b:?} {start}"
                );
            }
        }
    }

    #[test]
    fn the_mean_averages_both_directions() {
        assert_eq!(gestalt_mean("tide", "diet"), 0.375);
        assert_eq!(gestalt_mean("同じ", "同じ"), 1.0);
    }
}
