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

/// One entry of the character index.
#[derive(Clone, Copy, Default)]
struct IndexEntry {
    /// The call that wrote it (0: none).
    stamp: u32,
    ch: u32,
    first: u32,
    count: u32,
}

/// 2³² divided by the golden ratio: the multiplier of Fibonacci hashing.
const FIBONACCI: u32 = 0x9E37_79B9;

/// The slot where `c`'s entry goes when free in an index of `2^bits` entries (Fibonacci
/// hashing: the product's top bits).
fn home_slot(c: u32, bits: u32) -> usize {
    (c.wrapping_mul(FIBONACCI) >> (32 - bits)) as usize
}

/// Entries of the smallest character index (16 bytes each: 16 KiB, so that the few characters
/// of a short string rarely share a slot).
const MIN_INDEX: usize = 1024;

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
    /// Character → (first position in `b`, occurrences), built once per call: an open-addressing
    /// table at most a quarter full, its entries valid only when stamped with the call's
    /// `stamp` (so it is never cleared between calls).
    index: Vec<IndexEntry>,
    stamp: u32,
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
        decode(a, &mut self.a);
        decode(b, &mut self.b);
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
        self.index_b();
        for buffer in [&mut self.prev, &mut self.cur] {
            if buffer.len() < n {
                buffer.resize(n, UNSET);
            }
        }
    }

    /// Indexes `b` (`b_next`, and the table of first positions and counts), looks up each
    /// character of `a` in it (`a_first`), leaving out popular characters, and lists the rows
    /// that can hold a match (`hits`).
    fn index_b(&mut self) {
        let n = self.b.len();
        let size = (4 * n).next_power_of_two().max(MIN_INDEX);
        if self.index.len() < size || self.stamp == u32::MAX {
            let size = size.max(self.index.len());
            self.index.clear();
            self.index.resize(size, IndexEntry::default());
            self.stamp = 0;
        }
        self.stamp += 1;
        let stamp = self.stamp;
        let bits = self.index.len().trailing_zeros();
        // Whether every character sits in its home slot (no probing needed to find it).
        let mut at_home = true;
        for j in (0..n).rev() {
            let c = u32::from(self.b[j]);
            let home = home_slot(c, bits);
            let at = if self.index[home].stamp != stamp || self.index[home].ch == c {
                home
            } else {
                at_home = false;
                self.probe(c, home)
            };
            let entry = &mut self.index[at];
            if entry.stamp != stamp {
                *entry = IndexEntry {
                    stamp,
                    ch: c,
                    first: NONE,
                    count: 0,
                };
            }
            self.b_next[j] = entry.first;
            entry.first = j as u32;
            entry.count += 1;
        }
        let popular_above = if n >= 200 { n / 100 + 1 } else { usize::MAX };
        let rows = self.a.len();
        self.a_first.clear();
        self.a_first.resize(rows, NONE);
        self.hits.clear();
        self.hits.resize(rows, 0);
        let mut kept = 0;
        // One pass over `a`, without a branch per character where every entry sits in its home
        // slot (whether a character of a stem occurs in a choice is a coin toss to the branch
        // predictor): one load, a select, and the row written to `hits` whether it is kept.
        for i in 0..rows {
            let c = u32::from(self.a[i]);
            let home = home_slot(c, bits);
            let at = if at_home { home } else { self.probe(c, home) };
            let entry = &self.index[at];
            let first =
                if entry.stamp == stamp && entry.ch == c && (entry.count as usize) <= popular_above
                {
                    entry.first
                } else {
                    NONE
                };
            self.a_first[i] = first;
            self.hits[kept] = i as u32;
            kept += usize::from(first != NONE);
        }
        self.hits.truncate(kept);
    }

    /// The slot of `c`'s entry in this call, or the free one where it would go, from `home`.
    fn probe(&self, c: u32, home: usize) -> usize {
        let mask = self.index.len() - 1;
        let mut at = home;
        loop {
            let entry = &self.index[at];
            if entry.stamp != self.stamp || entry.ch == c {
                return at;
            }
            at = (at + 1) & mask;
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

/// `text`'s code points into `out` (cleared first), with room reserved for the most there can be
/// (one a byte), so that no push reallocates.
fn decode(text: &str, out: &mut Vec<char>) {
    out.clear();
    out.reserve(text.len());
    for c in text.chars() {
        out.push(c);
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

    /// CPython's `SequenceMatcher(None, a, b).ratio()` ported line by line with dictionaries,
    /// as the reference of the differential test below.
    fn reference_ratio(a: &str, b: &str) -> f64 {
        use std::collections::HashMap;
        let (a, b): (Vec<char>, Vec<char>) = (a.chars().collect(), b.chars().collect());
        if a.len() + b.len() == 0 {
            return 1.0;
        }
        let mut b2j: HashMap<char, Vec<usize>> = HashMap::new();
        for (j, &c) in b.iter().enumerate() {
            b2j.entry(c).or_default().push(j);
        }
        if b.len() >= 200 {
            let popular = b.len() / 100 + 1;
            b2j.retain(|_, positions| positions.len() <= popular);
        }
        let longest = |alo: usize, ahi: usize, blo: usize, bhi: usize| {
            let (mut besti, mut bestj, mut bestsize) = (alo, blo, 0);
            let mut j2len: HashMap<usize, usize> = HashMap::new();
            for (i, c) in a.iter().enumerate().take(ahi).skip(alo) {
                let mut newj2len = HashMap::new();
                for &j in b2j.get(c).map_or(&[][..], Vec::as_slice) {
                    if j < blo {
                        continue;
                    }
                    if j >= bhi {
                        break;
                    }
                    let k = j
                        .checked_sub(1)
                        .and_then(|p| j2len.get(&p))
                        .map_or(0, |k| *k)
                        + 1;
                    newj2len.insert(j, k);
                    if k > bestsize {
                        (besti, bestj, bestsize) = (i + 1 - k, j + 1 - k, k);
                    }
                }
                j2len = newj2len;
            }
            while besti > alo && bestj > blo && a[besti - 1] == b[bestj - 1] {
                (besti, bestj, bestsize) = (besti - 1, bestj - 1, bestsize + 1);
            }
            while besti + bestsize < ahi
                && bestj + bestsize < bhi
                && a[besti + bestsize] == b[bestj + bestsize]
            {
                bestsize += 1;
            }
            (besti, bestj, bestsize)
        };
        let mut matched = 0;
        let mut queue = vec![(0, a.len(), 0, b.len())];
        while let Some((alo, ahi, blo, bhi)) = queue.pop() {
            let (i, j, k) = longest(alo, ahi, blo, bhi);
            if k > 0 {
                matched += k;
                if alo < i && blo < j {
                    queue.push((alo, i, blo, j));
                }
                if i + k < ahi && j + k < bhi {
                    queue.push((i + k, ahi, j + k, bhi));
                }
            }
        }
        2.0 * matched as f64 / (a.len() + b.len()) as f64
    }

    /// Random strings against the reference: small alphabets (many repeats), hundreds of
    /// distinct characters (which make the index probe), and lengths past 200 (autojunk); the
    /// index's call stamp started just before it wraps.
    #[test]
    fn random_strings_give_the_references_ratios() {
        let mut state = 0x2545_F491_4F6C_DD1Du64;
        let mut next = move |below: u64| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state % below
        };
        let mut scratch = Gestalt::default();
        scratch.ratio("warm", "up");
        scratch.stamp = u32::MAX - 50;
        for case in 0..600 {
            // Each case's alphabet: a few kana (many repeats), a, b and c, or hundreds of kanji
            // drawn from across the block (scattered code points share index slots by chance;
            // consecutive ones, which Fibonacci hashing spreads evenly, would not).
            let alphabet: Vec<char> = match case % 3 {
                0 => (0x3042..0x3048).filter_map(char::from_u32).collect(),
                1 => (0..300)
                    .filter_map(|_| char::from_u32(0x4E00 + next(20_000) as u32))
                    .collect(),
                _ => vec!['a', 'b', 'c'],
            };
            let long = if case % 5 == 0 { 450 } else { 40 };
            let (len_a, len_b) = (next(long), next(long));
            let mut text = |len: u64| -> String {
                (0..len)
                    .map(|_| alphabet[next(alphabet.len() as u64) as usize])
                    .collect()
            };
            let (a, b) = (text(len_a), text(len_b));
            let want = reference_ratio(&a, &b);
            assert_eq!(
                scratch.ratio(&a, &b).to_bits(),
                want.to_bits(),
                "case {case}: {a:?} against {b:?}"
            );
        }
        assert!(scratch.stamp < 1000, "the stamp wrapped and started again");
    }

    #[test]
    fn decoding_gives_the_code_points_of_chars() {
        let texts = [
            "",
            "abc",
            "é ß ñ",
            "心電図でST上昇を認める。",
            "𝔸𝕓 😀 mixed ascii é 日本 𠮷",
            "\u{7f}\u{80}\u{7ff}\u{800}\u{ffff}\u{10000}\u{10ffff}",
        ];
        let mut out = Vec::new();
        for text in texts {
            decode(text, &mut out);
            assert_eq!(out, text.chars().collect::<Vec<_>>(), "{text:?}");
        }
    }

    #[test]
    fn the_mean_averages_both_directions() {
        assert_eq!(gestalt_mean("tide", "diet"), 0.375);
        assert_eq!(gestalt_mean("同じ", "同じ"), 1.0);
    }
}

#[cfg(test)]
mod probe {
    use super::*;

    /// Where a call's time goes on the bench's pairs (choice against choice both ways, stem
    /// against choice): decoding, then decoding and indexing, then the whole ratio —
    /// `KOKUSHI_DATA=../shared/data cargo test --release -p kokushi-shared --lib probe_gestalt
    /// -- --ignored --nocapture` (from the project root).
    #[test]
    #[ignore = "a measurement, not a test"]
    fn probe_gestalt_phases() {
        let data = std::path::PathBuf::from(
            std::env::var_os("KOKUSHI_DATA").expect("KOKUSHI_DATA names the data folder"),
        );
        let mut importer = crate::igakuqa::Importer::new();
        for year in ["2018", "2019", "2020", "2021", "2022"] {
            let dir = data.join("igakuqa").join(year);
            let mut files: Vec<_> = std::fs::read_dir(&dir)
                .expect("the IgakuQA folder")
                .map(|e| e.expect("a directory entry").path())
                .collect();
            files.sort();
            for f in files {
                let text = std::fs::read_to_string(&f).expect("a readable file");
                importer.add_file(&f.display().to_string(), &text);
            }
        }
        let questions = importer.finish().expect("the IgakuQA files parse");
        let (mut choices, mut stems) = (Vec::new(), Vec::new());
        for q in &questions {
            for (i, a) in q.choices.iter().enumerate() {
                for b in &q.choices[i + 1..] {
                    choices.push((a.clone(), b.clone()));
                    choices.push((b.clone(), a.clone()));
                }
                stems.push((q.text.clone(), a.clone()));
            }
        }
        let mut g = Gestalt::default();
        for (name, pairs) in [
            ("choice against choice", &choices),
            ("stem against choice", &stems),
        ] {
            for phase in ["decode", "decode + index", "ratio"] {
                let mut best = f64::INFINITY;
                let mut sink = 0usize;
                for _ in 0..7 {
                    let started = std::time::Instant::now();
                    for (a, b) in pairs.iter() {
                        if phase == "ratio" {
                            sink += usize::from(g.ratio(a, b) > 0.5);
                            continue;
                        }
                        decode(a, &mut g.a);
                        decode(b, &mut g.b);
                        if phase == "decode + index" {
                            g.build_index();
                        }
                        sink += g.a.len() + g.hits.len();
                    }
                    best = best.min(started.elapsed().as_secs_f64());
                }
                println!(
                    "{name} ({} calls), {phase}: {:.2} ms ({sink})",
                    pairs.len(),
                    best * 1e3
                );
            }
        }
    }
}
