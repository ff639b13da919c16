//! The 119th exam (2025) from IgakuQA119's public files (`KOKUSHI_DATA/igakuqa119`), end to
//! end through `kokushi`: the files import natively; the five records they hold that Kokushi
//! refuses are named, two of them repaired and three left out on request; and the set is
//! scored under the built-in rule pack — its required section, its points, its ruling on
//! 119E28 (a or c) and its cut-off (221 of 300).

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kokushi_tests::service;
use serde_json::Value;

fn kokushi(args: &[&str]) -> Option<Output> {
    let bin = PathBuf::from(service("KOKUSHI_BIN")?);
    Some(
        Command::new(bin)
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("kokushi runs"),
    )
}

fn data() -> Option<PathBuf> {
    service("KOKUSHI_DATA").map(|d| PathBuf::from(d).join("igakuqa119"))
}

const REPAIR: &str = "119E45:choices_in_stem,119E48:choices_in_stem";
const EXCLUDE: [&str; 3] = [
    "119C18:the stem was not extracted",
    "119A22:choices c and d run together",
    "119C19:choices b and c run together",
];

/// The repair and exclusion flags.
fn mends() -> Vec<String> {
    let mut flags = vec!["--repair".to_owned(), REPAIR.to_owned()];
    for e in EXCLUDE {
        flags.push("--exclude".to_owned());
        flags.push(e.to_owned());
    }
    flags
}

/// The published answers, `id → answer` (`ac` run together).
fn answers(data: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(data.join("correct_answers.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(id, a)| (id.to_owned(), a.trim().to_owned()))
        .collect()
}

fn score(data: &Path, predictions: &[(String, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.jsonl");
    let body: String = predictions
        .iter()
        .map(|(id, p)| serde_json::json!({"problem_id": id, "prediction": p}).to_string() + "\n")
        .collect();
    std::fs::write(&path, body).unwrap();
    let mut args = vec![
        "score".to_owned(),
        "--exam-set".to_owned(),
        data.display().to_string(),
        "--predictions".to_owned(),
        path.display().to_string(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(mends());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kokushi(&args).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_published_files_are_refused_naming_each_record_and_the_repairs_proposed() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.sqlite").display());
    let path = data.display().to_string();
    let refused = kokushi(&["import", "--database-url", &db, "--name", "119", &path]).unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    for expected in [
        "119C_json.json:206: field `problem_text`",
        "119E_json.json:531: field `answer`",
        "119E_json.json:561: field `answer`",
        "choice 3 of 119A22 should start with its letter \"c. \"",
        "choice 3 of 119C19 should start with its letter \"c. \"",
        "--repair 119E45:choices_in_stem",
        "--repair 119E48:choices_in_stem",
    ] {
        assert!(said.contains(expected), "{expected:?} not in {said}");
    }

    let preview = kokushi(&[
        "import",
        "--database-url",
        &db,
        "--name",
        "119",
        &path,
        "--preview",
    ])
    .unwrap();
    assert!(preview.status.success());
    let shown = String::from_utf8_lossy(&preview.stdout);
    assert!(
        shown.starts_with("395 question(s) would be imported; 7 problem(s); 2 repair(s) proposed"),
        "{shown}"
    );
    // Neither a refused import nor a preview touched the database.
    assert!(!dir.path().join("k.sqlite").exists());

    let mut args = vec!["import", "--database-url", &db, "--name", "119", &path];
    let mends = mends();
    args.extend(mends.iter().map(String::as_str));
    let stored = kokushi(&args).unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let said = String::from_utf8_lossy(&stored.stdout);
    assert!(said.contains("397 questions"), "{said}");
    let log = String::from_utf8_lossy(&stored.stderr);
    assert!(
        log.contains("repaired 119E45") && log.contains("left out 119C18"),
        "{log}"
    );
}

#[test]
fn the_119th_exam_is_scored_under_its_rule_pack() {
    let Some(data) = data() else { return };
    // The published answers, but 119E28 answered "c" alone: right by the ruling (a or c).
    let gold: Vec<(String, String)> = answers(&data)
        .into_iter()
        .map(|(id, a)| {
            let a = if id == "119E28" {
                "c".to_owned()
            } else if a.chars().any(|c| c.is_ascii_digit()) {
                a
            } else {
                a.chars().map(String::from).collect::<Vec<_>>().join(",")
            };
            (id, a)
        })
        .collect();
    let report = score(&data, &gold);
    let year = &report["years"][0];
    assert_eq!(year["exam"], "119");
    assert_eq!(year["year"], 2025);
    // Required: blocks B and E, 1 point for questions 1–25 and 3 for 26–50: 200 points.
    assert_eq!(year["required_max"], 200);
    assert_eq!(year["required_points"], 200);
    // General: 300 points less the three records left out (1 point each).
    assert_eq!(year["general_max"], 297);
    assert_eq!(year["general_points"], 297);
    assert_eq!(year["pass"], true, "{year}");
    assert_eq!(
        year["provisional"], false,
        "no prohibited choices: the limit is not applied"
    );
    assert_eq!(year["criteria"]["general_min"], 221);
    assert_eq!(year["criteria"]["pack_version"], 1);
    let notes = year["notes"].to_string();
    assert!(
        notes.contains("stands whatever the 3 missing points are"),
        "{notes}"
    );
    let ruled = report["rules_applied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["problem_id"] == "119E28")
        .expect("the ruling on 119E28 applied");
    assert_eq!(ruled["provenance"]["kind"], "annotated");

    // Answering "a" everywhere fails, whatever the three missing points would have been.
    let all_a: Vec<(String, String)> = answers(&data)
        .into_iter()
        .map(|(id, _)| (id, "a".to_owned()))
        .collect();
    let report = score(&data, &all_a);
    let year = &report["years"][0];
    assert_eq!(year["pass"], false, "{year}");
    assert_eq!(year["verdict"]["required_pass"], false);
}
