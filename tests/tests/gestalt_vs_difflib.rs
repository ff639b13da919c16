//! `shared::gestalt` against the reference it must equal: CPython's
//! `difflib.SequenceMatcher(None, a, b).ratio()`, run in the same test on thousands of pairs
//! drawn from the real IgakuQA questions (choice vs choice, stem vs choice, both directions).

use std::io::Write;
use std::process::{Command, Stdio};

use kokushi_shared::gestalt::gestalt_ratio;
use kokushi_shared::igakuqa::Importer;
use kokushi_tests::service;

const DIFFLIB: &str = r#"
import json, sys
from difflib import SequenceMatcher
pairs = json.load(sys.stdin)
print(json.dumps([SequenceMatcher(None, a, b).ratio().hex() for a, b in pairs]))
"#;

/// Parses Python's `float.hex()` output (`0x1.8000000000000p-1`, `0x0.0p+0`).
fn from_python_hex(s: &str) -> f64 {
    let body = s.strip_prefix("0x").expect("hex float");
    let (mantissa, exponent) = body.split_once('p').expect("exponent");
    let (int, frac) = mantissa.split_once('.').unwrap_or((mantissa, ""));
    let mut value = u64::from_str_radix(int, 16).expect("int part") as f64;
    let mut scale = 1.0 / 16.0;
    for digit in frac.chars() {
        value += f64::from(digit.to_digit(16).expect("hex digit")) * scale;
        scale /= 16.0;
    }
    value * 2f64.powi(exponent.parse::<i32>().expect("exponent"))
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

    // Act
    let mut python = Command::new("python3")
        .args(["-c", DIFFLIB])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("python3 runs");
    python
        .stdin
        .take()
        .expect("stdin")
        .write_all(serde_json::to_string(&pairs).expect("json").as_bytes())
        .expect("write pairs");
    let output = python.wait_with_output().expect("python3 finishes");
    let expected: Vec<String> = serde_json::from_slice(&output.stdout).expect("python's answer");

    // Assert
    assert!(pairs.len() > 5_000, "{} pairs", pairs.len());
    assert_eq!(expected.len(), pairs.len());
    let long = pairs
        .iter()
        .filter(|(_, b)| b.chars().count() >= 200)
        .count();
    assert!(long > 0, "some second strings reach the autojunk length");
    for ((a, b), hex) in pairs.iter().zip(&expected) {
        let want = from_python_hex(hex);
        let got = gestalt_ratio(a, b);
        assert_eq!(
            got.to_bits(),
            want.to_bits(),
            "ratio({a:?}, {b:?}) = {got}, difflib {want}"
        );
    }
}
