//! `shared::gestalt` against the reference it must equal: CPython's
//! `difflib.SequenceMatcher(None, a, b).ratio()`, run in the same test on thousands of pairs
//! drawn from the real IgakuQA questions (choice vs choice, stem vs choice, both directions).

use std::io::Write;
use std::process::{Command, Stdio};

use kokushi_shared::gestalt::gestalt_ratio;
use kokushi_shared::igakuqa::Importer;
use kokushi_tests::service;

/// Prints, for each pair, the IEEE-754 bits of `SequenceMatcher(None, a, b).ratio()`.
const DIFFLIB: &str = r#"
import json, struct, sys
from difflib import SequenceMatcher
pairs = json.load(sys.stdin)
out = sys.stdout
for a, b in pairs:
    out.write(str(struct.unpack('<Q', struct.pack('<d', SequenceMatcher(None, a, b).ratio()))[0]))
    out.write('\n')
"#;

/// CPython's ratio for every pair, as `f64` bits, computed in one `python3` process.
fn difflib_bits(pairs: &[(String, String)]) -> Vec<u64> {
    let mut python = Command::new("python3")
        .args(["-c", DIFFLIB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    let json = serde_json::to_string(pairs).expect("json");
    let mut stdin = python.stdin.take().expect("stdin");
    // Write from another thread: python answers while it reads, and both pipes are bounded.
    let writer = std::thread::spawn(move || stdin.write_all(json.as_bytes()));
    let output = python.wait_with_output().expect("python3 finishes");
    writer.join().expect("writer").expect("write pairs");
    assert!(output.status.success(), "python3 failed");
    String::from_utf8(output.stdout)
        .expect("utf-8")
        .lines()
        .map(|line| line.parse().expect("bits"))
        .collect()
}

fn assert_all_equal(pairs: &[(String, String)]) {
    let expected = difflib_bits(pairs);
    assert_eq!(expected.len(), pairs.len());
    let mut differ = Vec::new();
    for ((a, b), &want) in pairs.iter().zip(&expected) {
        let got = gestalt_ratio(a, b);
        if got.to_bits() != want {
            differ.push(format!(
                "ratio({a:?}, {b:?}) = {got}, difflib {}",
                f64::from_bits(want)
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} pairs differ from difflib; first: {}",
        differ.len(),
        pairs.len(),
        differ[..differ.len().min(3)].join("\n")
    );
}

/// A small deterministic generator (xorshift64*), so a failure can be reproduced from its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Alphabets: few letters make long matches and ties likely; kana and kanji are exam text;
/// the mixed one has the full-width forms models write.
const ALPHABETS: [&str; 4] = [
    "abcde",
    "abcdefghijklmnopqrstuvwxyz ,.",
    "あいうえおかきくけこ心電図血圧上昇低下を認める。",
    "ａｂｃａｂｃ答え：、,（）()bdace 0123456789μgmL/日患者疾患薬",
];

fn random_string(rng: &mut Rng, alphabet: &[char], len: usize) -> String {
    (0..len)
        .map(|_| alphabet[rng.below(alphabet.len())])
        .collect()
}

/// `s` with a few characters replaced, inserted or deleted: a near-duplicate.
fn mutate(rng: &mut Rng, alphabet: &[char], s: &str) -> String {
    let mut chars: Vec<char> = s.chars().collect();
    for _ in 0..=rng.below(4) {
        let at = rng.below(chars.len() + 1);
        match rng.below(3) {
            0 if at < chars.len() => chars[at] = alphabet[rng.below(alphabet.len())],
            1 if at < chars.len() => {
                chars.remove(at);
            }
            _ => chars.insert(at, alphabet[rng.below(alphabet.len())]),
        }
    }
    chars.into_iter().collect()
}

/// The property: on 100,000 generated pairs (ASCII and Japanese, short and at least 200
/// characters long, unrelated and near-duplicate), the ratio equals difflib's bit for bit.
#[test]
fn gestalt_equals_cpython_difflib_on_100k_generated_pairs() {
    let mut rng = Rng(0x0005_eed0_f6e5_7a17);
    let alphabets: Vec<Vec<char>> = ALPHABETS.iter().map(|a| a.chars().collect()).collect();
    let mut pairs = Vec::with_capacity(100_000);
    while pairs.len() < 100_000 {
        let alphabet = &alphabets[rng.below(alphabets.len())];
        // One pair in six has a second string long enough for autojunk.
        let long = rng.below(6) == 0;
        let len_a = if long && rng.below(2) == 0 {
            200 + rng.below(150)
        } else {
            rng.below(40)
        };
        let len_b = if long {
            200 + rng.below(150)
        } else {
            rng.below(40)
        };
        let a = random_string(&mut rng, alphabet, len_a);
        let b = if rng.below(3) == 0 && len_a > 0 {
            mutate(&mut rng, alphabet, &a)
        } else {
            random_string(&mut rng, alphabet, len_b)
        };
        pairs.push((a, b));
    }
    let long = pairs
        .iter()
        .filter(|(_, b)| b.chars().count() >= 200)
        .count();
    let japanese = pairs.iter().filter(|(a, _)| !a.is_ascii()).count();
    assert!(
        long > 10_000 && japanese > 30_000,
        "{long} long, {japanese} Japanese"
    );
    assert_all_equal(&pairs);
}

#[test]
fn gestalt_equals_cpython_difflib_on_real_exam_text() {
    let Some(data) = service("KOKUSHI_DATA") else {
        return;
    };
    // Arrange: pairs from the 116th exam.
    let dir = std::path::Path::new(&data).join("igakuqa/2022");
    let mut importer = Importer::new();
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .expect("IgakuQA 2022 folder")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    for file in files {
        let text = std::fs::read_to_string(&file).expect("read");
        importer.add_file(&file.display().to_string(), &text);
    }
    let questions = importer.finish().expect("valid exam");
    let mut pairs: Vec<(String, String)> = Vec::new();
    for q in &questions {
        for (i, a) in q.choices.iter().enumerate() {
            for b in &q.choices[i + 1..] {
                pairs.push((a.clone(), b.clone()));
                pairs.push((b.clone(), a.clone()));
            }
            pairs.push((q.text.clone(), a.clone()));
            pairs.push((a.clone(), q.text.clone()));
        }
    }

    // Assert
    assert!(pairs.len() > 5_000, "{} pairs", pairs.len());
    let long = pairs
        .iter()
        .filter(|(_, b)| b.chars().count() >= 200)
        .count();
    assert!(long > 0, "some second strings reach the autojunk length");
    assert_all_equal(&pairs);
}
