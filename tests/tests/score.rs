//! `kokushi score` end to end, on the real IgakuQA exams (`KOKUSHI_DATA`): the gold answers
//! score 100% and pass every year; answering "a" everywhere scores what a count by hand over
//! the data files gives, under IgakuQA's own rules; the per-question file and the CSV carry
//! their documented fields; broken predictions are refused with the file and line at fault.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kokushi_tests::service;
use serde_json::Value;

fn data_dir() -> Option<PathBuf> {
    service("KOKUSHI_DATA").map(PathBuf::from)
}

fn kokushi() -> Option<PathBuf> {
    service("KOKUSHI_BIN").map(PathBuf::from)
}

/// Every question of the five exams, as the data files write them (no Kokushi parsing).
fn raw_questions(data: &Path) -> Vec<Value> {
    let mut files: Vec<PathBuf> = (2018..=2022)
        .flat_map(|year| {
            std::fs::read_dir(data.join(format!("igakuqa/{year}")))
                .expect("exam year folder")
                .map(|e| e.expect("entry").path())
        })
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("read exam file")
                .lines()
                .map(|l| serde_json::from_str::<Value>(l).expect("json line"))
                .collect::<Vec<_>>()
        })
        .collect()
}

fn answer_list(q: &Value) -> Vec<String> {
    q["answer"]
        .as_array()
        .expect("answer list")
        .iter()
        .map(|a| a.as_str().expect("answer string").to_owned())
        .collect()
}

fn write_predictions(dir: &Path, name: &str, rows: &[(String, String)]) -> PathBuf {
    let path = dir.join(name);
    let body: String = rows
        .iter()
        .map(|(id, prediction)| {
            serde_json::json!({"problem_id": id, "prediction": prediction}).to_string() + "\n"
        })
        .collect();
    std::fs::write(&path, body).expect("write predictions");
    path
}

fn run(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .arg("score")
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("kokushi runs")
}

fn score_json(bin: &Path, exam: &Path, predictions: &Path, mode: &str) -> Value {
    let out = run(
        bin,
        &[
            "--exam-set",
            exam.to_str().expect("utf-8 path"),
            "--predictions",
            predictions.to_str().expect("utf-8 path"),
            "--mode",
            mode,
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "kokushi score failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("one JSON document")
}

fn years(report: &Value) -> BTreeMap<u64, Value> {
    report["years"]
        .as_array()
        .expect("years array")
        .iter()
        .map(|y| (y["year"].as_u64().expect("year"), y.clone()))
        .collect()
}

#[test]
fn gold_answers_score_everything_and_pass_every_year_in_both_modes() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    // The gold answer as the data writes it, "," between letters (112B30: "a or d").
    let rows: Vec<(String, String)> = raw_questions(&data)
        .iter()
        .map(|q| {
            (
                q["problem_id"].as_str().expect("id").to_owned(),
                answer_list(q).join(","),
            )
        })
        .collect();
    let predictions = write_predictions(dir.path(), "gold.jsonl", &rows);
    for mode in ["strict", "lenient"] {
        let report = score_json(&bin, &data.join("igakuqa"), &predictions, mode);
        let years = years(&report);
        assert_eq!(
            years.keys().copied().collect::<Vec<_>>(),
            [2018, 2019, 2020, 2021, 2022]
        );
        for (year, y) in &years {
            let at = format!("{mode} {year}");
            assert_eq!(y["questions"], 400, "{at}");
            assert_eq!(y["correct"], 400, "{at}");
            assert_eq!(y["exact_match"], 400, "{at}");
            assert_eq!(y["exam"], (year - 1906).to_string(), "{at}");
            assert_eq!(y["required_points"], y["required_max"], "{at}");
            assert_eq!(y["general_points"], y["general_max"], "{at}");
            let points =
                y["required_points"].as_u64().unwrap() + y["general_points"].as_u64().unwrap();
            assert_eq!(y["points"], points, "{at}");
            assert_eq!(
                y["prohibited_chosen"],
                Value::Null,
                "{at}: the data lists no 禁忌肢"
            );
            assert_eq!(y["pass"], true, "{at}");
            // A perfect score's bootstrap interval is the score itself.
            assert_eq!(
                y["points_interval"][0].as_f64(),
                Some(points as f64),
                "{at}"
            );
        }
        assert!(report["unknown_predictions"].as_array().unwrap().is_empty());
    }
}

/// What IgakuQA's `scripts/evaluate_main.py` counts, per exam: the reply split on ",", sorted,
/// equal to the sorted gold list; 112B30 accepts "a" or "d"; 116A71 is correct for everyone.
/// Points: blocks B and E are the required section.
#[derive(Debug, Default, PartialEq)]
struct HandCount {
    correct: u64,
    required_points: u64,
    general_points: u64,
}

fn hand_count(questions: &[Value], reply: &str) -> BTreeMap<String, HandCount> {
    let mut counts: BTreeMap<String, HandCount> = BTreeMap::new();
    for q in questions {
        let id = q["problem_id"].as_str().unwrap();
        let mut given: Vec<&str> = reply.split(',').collect();
        given.sort_unstable();
        let mut gold = answer_list(q);
        gold.sort_unstable();
        let right = id == "116A71"
            || (id == "112B30" && (given == ["a"] || given == ["d"]))
            || given == gold;
        let count = counts.entry(id[..3].to_owned()).or_default();
        if right {
            let points: u64 = q["points"].as_str().unwrap().parse().unwrap();
            count.correct += 1;
            if matches!(&id[3..4], "B" | "E") {
                count.required_points += points;
            } else {
                count.general_points += points;
            }
        }
    }
    counts
}

#[test]
fn answering_a_everywhere_scores_what_a_hand_count_gives() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let questions = raw_questions(&data);
    let rows: Vec<(String, String)> = questions
        .iter()
        .map(|q| (q["problem_id"].as_str().unwrap().to_owned(), "a".to_owned()))
        .collect();
    let predictions = write_predictions(dir.path(), "all-a.jsonl", &rows);
    let expected = hand_count(&questions, "a");
    // The same figures, counted once more by hand with Python over the data files, so that a
    // mistake shared by the counter above and the scorer cannot hide:
    // exam: (correct, required points, general points).
    let by_python = [
        ("112", (63, 36, 47)),
        ("113", (60, 35, 41)),
        ("114", (71, 45, 50)),
        ("115", (65, 27, 48)),
        ("116", (62, 29, 48)),
    ];
    for (exam, (correct, required_points, general_points)) in by_python {
        assert_eq!(
            expected[exam],
            HandCount {
                correct,
                required_points,
                general_points
            },
            "hand count of exam {exam}"
        );
    }
    for mode in ["strict", "lenient"] {
        let report = score_json(&bin, &data.join("igakuqa"), &predictions, mode);
        for y in years(&report).values() {
            let exam = y["exam"].as_str().unwrap();
            let want = &expected[exam];
            let at = format!("{mode} exam {exam}");
            assert_eq!(y["questions"], 400, "{at}");
            assert_eq!(y["correct"], want.correct, "{at}");
            assert_eq!(y["required_points"], want.required_points, "{at}");
            assert_eq!(y["general_points"], want.general_points, "{at}");
            assert_eq!(
                y["points"],
                want.required_points + want.general_points,
                "{at}"
            );
            assert_eq!(y["pass"], false, "{at}");
        }
        let overall = &report["overall"];
        assert_eq!(overall["correct"], 321);
        assert_eq!(overall["questions"], 2000);
    }
}

#[test]
fn per_question_lines_carry_every_metric() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let exam = data.join("igakuqa/2018/112-B.jsonl");
    // Free text, a ruling, and a question left without a prediction (112B2).
    let rows = vec![
        ("112B1".to_owned(), "答え：ｂ".to_owned()),
        ("112B30".to_owned(), "a or d".to_owned()),
        ("112B3".to_owned(), "わかりません".to_owned()),
    ];
    let predictions = write_predictions(dir.path(), "p.jsonl", &rows);
    let per_question = dir.path().join("out/per-question.jsonl");
    std::fs::create_dir_all(per_question.parent().unwrap()).unwrap();
    let out = run(
        &bin,
        &[
            "--exam-set",
            exam.to_str().unwrap(),
            "--predictions",
            predictions.to_str().unwrap(),
            "--mode",
            "strict",
            "--per-question",
            per_question.to_str().unwrap(),
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let table = String::from_utf8(out.stdout).unwrap();
    assert!(table.contains("letter match: strict"), "{table}");
    assert!(
        table.contains("Ministry of Health, Labour and Welfare"),
        "credit: {table}"
    );
    let lines: BTreeMap<String, Value> = std::fs::read_to_string(&per_question)
        .unwrap()
        .lines()
        .map(|l| {
            let v: Value = serde_json::from_str(l).unwrap();
            (v["problem_id"].as_str().unwrap().to_owned(), v)
        })
        .collect();
    assert_eq!(lines.len(), 49, "one line per question of block 112B");
    for v in lines.values() {
        for field in [
            "problem_id",
            "prediction",
            "letters",
            "parse_failed",
            "letter_correct",
            "exact_match",
            "gestalt",
            "gestalt_letters",
            "gestalt_correct",
        ] {
            assert!(v.get(field).is_some(), "{field} missing in {v}");
        }
        let gestalt = v["gestalt"].as_array().unwrap();
        assert_eq!(gestalt.len(), 5, "one triple per choice: {v}");
        for triple in gestalt {
            let [ab, ba, mean] = [0, 1, 2].map(|i| triple[i].as_f64().unwrap());
            assert!((0.0..=1.0).contains(&ab) && (0.0..=1.0).contains(&ba));
            assert!((mean - (ab + ba) / 2.0).abs() < 1e-15);
        }
    }
    let b1 = &lines["112B1"];
    assert_eq!(b1["letters"], serde_json::json!(["b"]));
    // Strict mode reads IgakuQA's way: "答え：ｂ" is not the letter "b".
    assert_eq!(b1["letter_correct_strict"], false);
    assert_eq!(b1["letter_correct"], false);
    let b30 = &lines["112B30"];
    assert_eq!(
        b30["letter_correct_strict"], true,
        "the ruling's own text is accepted"
    );
    assert_eq!(b30["letter_correct_lenient"], true);
    assert_eq!(b30["exact_match"], true);
    assert_eq!(lines["112B3"]["parse_failed"], true);
    assert_eq!(lines["112B2"]["prediction"], Value::Null);
    assert_eq!(lines["112B2"]["letter_correct"], false);
}

#[test]
fn csv_output_keeps_the_stable_column_names() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let predictions = write_predictions(dir.path(), "p.jsonl", &[("112A1".into(), "e".into())]);
    let exam = data.join("igakuqa/2018");
    let out = run(
        &bin,
        &[
            "--exam-set",
            exam.to_str().unwrap(),
            "--predictions",
            predictions.to_str().unwrap(),
            "--format",
            "csv",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let csv = String::from_utf8(out.stdout).unwrap();
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    for column in [
        "year",
        "exam",
        "questions",
        "correct",
        "points",
        "required_points",
        "required_max",
        "general_points",
        "general_max",
        "prohibited_chosen",
        "pass",
    ] {
        assert!(header.contains(&column), "{column} missing from {header:?}");
    }
    let row: Vec<&str> = lines.next().unwrap().split(',').collect();
    let cell = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
    assert_eq!(cell("year"), "2018");
    assert_eq!(cell("questions"), "400");
    assert_eq!(cell("correct"), "1");
    assert_eq!(cell("pass"), "false");
}

#[test]
fn broken_predictions_are_refused_naming_file_and_line() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let exam = data.join("igakuqa/2018/112-A.jsonl");
    let cases = [
        (
            "not-json.jsonl",
            "{\"problem_id\": \"112A1\", \"prediction\": \"a\"}\n{oops\n",
            vec!["not-json.jsonl:2:", "not a JSON object"],
        ),
        (
            "no-id.jsonl",
            "{\"prediction\": \"a\"}\n",
            vec!["no-id.jsonl:1:", "`problem_id`"],
        ),
        (
            "duplicate.jsonl",
            "{\"problem_id\": \"112A1\", \"prediction\": \"a\"}\n{\"problem_id\": \"112A1\", \"prediction\": \"b\"}\n",
            vec![
                "duplicate.jsonl:2:",
                "\"112A1\" appears twice",
                "first on line 1",
            ],
        ),
    ];
    for (name, body, needles) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, body).unwrap();
        let per_question = dir.path().join(format!("{name}.out"));
        let out = run(
            &bin,
            &[
                "--exam-set",
                exam.to_str().unwrap(),
                "--predictions",
                path.to_str().unwrap(),
                "--per-question",
                per_question.to_str().unwrap(),
            ],
        );
        assert!(!out.status.success(), "{name} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        for needle in needles {
            assert!(
                stderr.contains(needle),
                "{name}: {needle:?} not in {stderr}"
            );
        }
        assert!(!stderr.contains("panicked"), "{stderr}");
        assert!(
            !per_question.exists(),
            "{name}: nothing may be written on error"
        );
    }
    // The same question in two files: which one counts would be a guess.
    let first = write_predictions(dir.path(), "one.jsonl", &[("112A1".into(), "a".into())]);
    let second = write_predictions(dir.path(), "two.jsonl", &[("112A1".into(), "b".into())]);
    let out = run(
        &bin,
        &[
            "--exam-set",
            exam.to_str().unwrap(),
            "--predictions",
            first.to_str().unwrap(),
            second.to_str().unwrap(),
        ],
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("one.jsonl") && stderr.contains("two.jsonl") && stderr.contains("112A1"),
        "{stderr}"
    );
}

#[test]
fn comparing_two_prediction_sets_pairs_them_question_by_question() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let questions = raw_questions(&data);
    let ids: Vec<String> = questions
        .iter()
        .map(|q| q["problem_id"].as_str().unwrap().to_owned())
        .collect();
    let gold: Vec<(String, String)> = questions
        .iter()
        .zip(&ids)
        .map(|(q, id)| (id.clone(), answer_list(q).join(",")))
        .collect();
    let all_a: Vec<(String, String)> = ids.iter().map(|id| (id.clone(), "a".into())).collect();
    let gold = write_predictions(dir.path(), "gold.jsonl", &gold);
    let all_a = write_predictions(dir.path(), "all-a.jsonl", &all_a);
    let out = run(
        &bin,
        &[
            "--exam-set",
            data.join("igakuqa").to_str().unwrap(),
            "--predictions",
            gold.to_str().unwrap(),
            "--compare",
            all_a.to_str().unwrap(),
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let c = &report["comparison"];
    // Every question "a" gets right, the gold answers get right too (321 by the hand count).
    assert_eq!(c["both_correct"], 321, "{c}");
    assert_eq!(c["only_first"], 2000 - 321, "{c}");
    assert_eq!(c["only_second"], 0, "{c}");
    assert_eq!(c["neither"], 0, "{c}");
    assert!(c["mcnemar_p"].as_f64().unwrap() < 1e-100, "{c}");
    let total = report["overall"]["points_max"].as_f64().unwrap();
    let a_points = f64::from(83 + 76 + 95 + 75 + 77);
    assert_eq!(
        c["points_difference"].as_f64(),
        Some(total - a_points),
        "{c}"
    );
    let (lo, hi) = (
        c["points_difference_interval"][0].as_f64().unwrap(),
        c["points_difference_interval"][1].as_f64().unwrap(),
    );
    assert!(lo < total - a_points && total - a_points < hi, "{c}");
}

#[test]
fn a_selection_of_the_exam_is_scored_on_its_own() {
    let (Some(data), Some(bin)) = (data_dir(), kokushi()) else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let rows: Vec<(String, String)> = raw_questions(&data)
        .iter()
        .map(|q| {
            (
                q["problem_id"].as_str().unwrap().to_owned(),
                answer_list(q).join(","),
            )
        })
        .collect();
    let predictions = write_predictions(dir.path(), "gold.jsonl", &rows);
    let out = run(
        &bin,
        &[
            "--exam-set",
            data.join("igakuqa").to_str().unwrap(),
            "--predictions",
            predictions.to_str().unwrap(),
            "--text-only",
            "--choices",
            "5",
            "--format",
            "json",
        ],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    // The 70B study's set: text-only, five choices.
    assert_eq!(report["overall"]["questions"], 1455);
    assert_eq!(report["overall"]["correct"], 1455);
    assert!(report["unknown_predictions"].as_array().unwrap().is_empty());
    // A part of the exam gets a verdict only where the questions it lacks cannot change it
    // (counted wrong for a pass): all correct, a year either passes so or gets none.
    let mut verdicts = 0;
    for y in report["years"].as_array().unwrap() {
        let notes = y["notes"].to_string();
        match &y["pass"] {
            Value::Null => assert!(notes.contains("turns on the points it lacks"), "{y}"),
            Value::Bool(true) => {
                verdicts += 1;
                assert!(notes.contains("stands whatever the"), "{y}");
                let held = y["required_max"].as_u64().unwrap() + y["general_max"].as_u64().unwrap();
                let exam = y["criteria"]["required_max"].as_u64().unwrap()
                    + y["criteria"]["general_max"].as_u64().unwrap();
                assert!(held < exam, "{y}");
            }
            other => panic!("gold answers cannot fail: {other} in {y}"),
        }
    }
    assert!(
        verdicts > 0,
        "some year passes even with its image questions counted wrong"
    );
}
