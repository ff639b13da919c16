//! The model against the examinees through `kokushi score`, on a fixture whose questions carry
//! examinee accuracy and choice shares (`tests/fixtures/examinees-905.jsonl`): the questions it
//! got right that most examinees missed and the reverse, its wrong answers against the
//! examinees' common wrong answers, and its percentile, each against a count by hand.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::Command;

use kokushi_tests::service;
use serde_json::Value;

fn fixture() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/examinees-905.jsonl")
}

/// The model's answers: right on A1, A2, A3, A8, A10 and A11; wrong on A4 (b), A5 (e), A6
/// (a) and A7 (c); nothing on A9.
const ANSWERS: [(&str, &str); 11] = [
    ("905A1", "a"),
    ("905A2", "b"),
    ("905A3", "c"),
    ("905A4", "b"),
    ("905A5", "e"),
    ("905A6", "a"),
    ("905A7", "c"),
    ("905A8", "c"),
    ("905A9", ""),
    ("905A10", "b,d"),
    ("905A11", "e"),
];

/// The accuracies of A1–A10 (A11 has none).
const ACCURACY: [f64; 10] = [0.30, 0.45, 0.90, 0.85, 0.95, 0.40, 0.60, 0.20, 0.70, 0.50];

fn score(format: &str, spread: &str) -> Option<String> {
    let bin = PathBuf::from(service("KOKUSHI_BIN")?);
    let dir = tempfile::tempdir().unwrap();
    let predictions = dir.path().join("p.jsonl");
    let lines: String = ANSWERS
        .iter()
        .map(|(id, p)| serde_json::json!({"problem_id": id, "prediction": p}).to_string() + "\n")
        .collect();
    std::fs::write(&predictions, lines).unwrap();
    let out = Command::new(bin)
        .args(["score", "--exam-set"])
        .arg(fixture())
        .arg("--predictions")
        .arg(&predictions)
        .args(["--format", format, "--examinee-spread", spread])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8(out.stdout).unwrap())
}

/// The percentile of `points` among examinees who answer each question right with its
/// accuracy, independently of the others (abilities all alike): the Poisson-binomial count of
/// every way to score, by hand.
fn percentile_by_hand(accuracies: &[f64], points: usize) -> f64 {
    let mut below = 0.0;
    for pattern in 0u32..(1 << accuracies.len()) {
        let mut p = 1.0;
        let mut score = 0;
        for (k, a) in accuracies.iter().enumerate() {
            if pattern & (1 << k) != 0 {
                p *= a;
                score += 1;
            } else {
                p *= 1.0 - a;
            }
        }
        if score < points {
            below += p;
        } else if score == points {
            below += 0.5 * p;
        }
    }
    100.0 * below
}

fn ids(list: &Value) -> Vec<&str> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|q| q["problem_id"].as_str().unwrap())
        .collect()
}

#[test]
fn the_comparison_with_the_examinees_matches_a_count_by_hand() {
    let Some(json) = score("json", "0.01") else {
        return;
    };
    let report: Value = serde_json::from_str(&json).unwrap();
    let e = &report["examinees"];

    // Right where most (over half) missed, hardest first; missed where most were right,
    // easiest first. A10 (exactly half) is on neither list; A11 has no accuracy.
    assert_eq!(ids(&e["right_where_missed"]), ["905A8", "905A1", "905A2"]);
    assert_eq!(
        ids(&e["missed_where_right"]),
        ["905A5", "905A4", "905A9", "905A7"]
    );

    // Wrong answers on the four questions with choice shares: A4 chose b (10%, the most common
    // wrong choice), A5 e (2%, the most common), A6 a (35%, the most common), A7 c (5%; d with
    // 20% is the most common). Three of four; (10 + 2 + 35 + 5) / 4 = 13% chose alike.
    let wrong: Vec<(&str, &str, &str)> = e["wrong_choices"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            (
                w["problem_id"].as_str().unwrap(),
                w["chosen"].as_str().unwrap(),
                w["most_common"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        wrong,
        [
            ("905A4", "b", "b"),
            ("905A5", "e", "e"),
            ("905A6", "a", "a"),
            ("905A7", "c", "d")
        ]
    );
    assert_eq!(e["common_wrong"], 3);
    assert!((e["same_choice_share"].as_f64().unwrap() - 0.13).abs() < 1e-9);

    // The whole year, then each section: points on the questions with accuracy, the
    // examinees' mean points (the sum of accuracies), and the percentile against a count of
    // every way the examinees can score (abilities all but alike at a spread of 0.01).
    let groups = e["groups"].as_array().unwrap();
    let expect = [
        (None, &ACCURACY[..], 5, 1),
        (Some("required"), &ACCURACY[..5], 3, 0),
        (Some("general"), &ACCURACY[5..], 2, 1),
    ];
    assert_eq!(groups.len(), expect.len());
    for (g, (section, accuracies, points, without)) in groups.iter().zip(expect) {
        assert_eq!(g["section"].as_str(), section);
        assert_eq!(g["points"], points);
        assert_eq!(g["points_max"], accuracies.len());
        assert_eq!(g["without_accuracy"], without, "{section:?}");
        let mean: f64 = accuracies.iter().sum();
        assert!((g["examinee_mean"].as_f64().unwrap() - mean).abs() < 1e-9);
        let by_hand = percentile_by_hand(accuracies, points);
        let got = g["percentile"].as_f64().unwrap();
        assert!(
            (got - by_hand).abs() < 0.5,
            "{section:?}: percentile {got}, by hand {by_hand}"
        );
        assert_eq!(g["calibrated"], false);
    }

    // A wider spread of abilities spreads the examinees' scores: the model's 5, below their
    // mean of 5.85, then sits nearer their middle, and its percentile rises.
    let wide: Value = serde_json::from_str(&score("json", "2").unwrap()).unwrap();
    let wide_percentile = wide["examinees"]["groups"][0]["percentile"]
        .as_f64()
        .unwrap();
    let narrow_percentile = groups[0]["percentile"].as_f64().unwrap();
    assert!(
        wide_percentile > narrow_percentile + 1.0,
        "{narrow_percentile} vs {wide_percentile}"
    );

    // The table says the same.
    let table = score("table", "0.01").unwrap();
    assert!(
        table.contains(
            "right where most examinees missed (3): 905A8 (20%), 905A1 (30%), 905A2 (45%)"
        ),
        "{table}"
    );
    assert!(
        table.contains("the examinees' most common wrong choice in 3"),
        "{table}"
    );
}
