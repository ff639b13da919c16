//! `kokushi tune` end to end on the engine's fixture model: a run killed with SIGKILL resumes
//! from its checkpoint to the adapter an unbroken run writes; bad data is refused before
//! anything is written; and the leakage gate refuses to evaluate an adapter tuned on the exam
//! it is asked, unless overridden with a recorded reason.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use kokushi_tests::{FIXTURE_MODEL, fixture_model_store, mini_exam_path, service};
use serde_json::Value;

fn kokushi(bin: &Path) -> Command {
    let mut command = Command::new(bin);
    command
        .env_remove("RUST_BACKTRACE")
        .env("CANDLE_NUM_THREADS", "1");
    command
}

fn run(bin: &Path, args: &[&str]) -> Output {
    kokushi(bin).args(args).output().expect("kokushi runs")
}

/// Alpaca-style instructions in a file of their own.
fn instructions(dir: &Path) -> PathBuf {
    let path = dir.join("instructions.jsonl");
    let lines: Vec<String> = (0..12)
        .map(|i| {
            serde_json::json!({
                "instruction": format!("次の数に{i}を足しなさい。"),
                "input": format!("{}", i * 3),
                "output": format!("{}", i * 4),
            })
            .to_string()
        })
        .collect();
    std::fs::write(&path, lines.join("\n")).unwrap();
    path
}

fn tune_args<'a>(model: &'a str, data: &'a str, out: &'a str, steps: &'a str) -> Vec<&'a str> {
    vec![
        "tune",
        "--base",
        model,
        "--data",
        data,
        "--data",
        "exam:FIXTURE",
        "--preset",
        "small",
        "--rank",
        "4",
        "--batch",
        "2",
        "--steps",
        steps,
        "--checkpoint-every",
        "3",
        "--eval-every",
        "10",
        "--validation-share",
        "0.2",
        "--out",
        out,
    ]
}

/// Waits for a checkpoint at step 6 or later, then kills `child` (SIGKILL); returns the step
/// and whether the child was still running.
fn kill_at_checkpoint(child: &mut std::process::Child, progress: &Path) -> (u64, bool) {
    let started = Instant::now();
    loop {
        let step = std::fs::read_to_string(progress)
            .ok()
            .and_then(|t| serde_json::from_str::<Value>(&t).ok())
            .and_then(|v| v["step"].as_u64());
        if let Some(step) = step.filter(|&s| s >= 6) {
            let running = child.try_wait().unwrap().is_none();
            let _ = child.kill();
            return (step, running);
        }
        if started.elapsed() > Duration::from_secs(300) {
            let _ = child.kill();
            panic!("no checkpoint within 300 s");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

fn step_losses(out: &Path) -> Vec<(u64, f64)> {
    kokushi_tests::json_lines(&out.join("events.jsonl"))
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "step")
        .map(|e| (e["step"].as_u64().unwrap(), e["loss"].as_f64().unwrap()))
        .collect()
}

#[test]
fn a_killed_tuning_run_resumes_to_the_adapter_an_unbroken_run_writes() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let data = format!("instructions:{}", instructions(dir.path()).display());
    let exam = mini_exam_path();
    let exam_data = format!("exam:{}", exam.display());
    let with_exam = |args: Vec<&str>| -> Vec<String> {
        args.into_iter()
            .map(|a| {
                if a == "exam:FIXTURE" {
                    exam_data.clone()
                } else {
                    a.to_owned()
                }
            })
            .collect()
    };
    let steps = "120";
    let model = model.to_str().unwrap();

    let unbroken = dir.path().join("unbroken");
    let args = with_exam(tune_args(model, &data, unbroken.to_str().unwrap(), steps));
    let out = kokushi(&bin).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(stderr.contains("validation loss"), "{stderr}");
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(unbroken.join("tuning.json")).unwrap())
            .unwrap();
    assert_eq!(manifest["finished"], true);
    assert_eq!(manifest["steps_done"], 120);
    assert_eq!(manifest["plan"]["sources"].as_array().unwrap().len(), 2);

    // The same run, killed (SIGKILL) once a checkpoint past step 3 exists, then started again.
    let broken = dir.path().join("broken");
    let args = with_exam(tune_args(model, &data, broken.to_str().unwrap(), steps));
    let mut child = kokushi(&bin)
        .args(&args)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let (killed_at, was_running) =
        kill_at_checkpoint(&mut child, &broken.join("checkpoint/progress.json"));
    child.wait().unwrap();
    assert!(was_running, "the run ended before it could be killed");
    assert!(killed_at < 120);
    assert!(!broken.join("adapter_model.safetensors").exists());
    let resumed = kokushi(&bin).args(&args).output().unwrap();
    let stderr = String::from_utf8_lossy(&resumed.stderr);
    assert!(resumed.status.success(), "{stderr}");
    assert!(stderr.contains("resuming from the checkpoint"), "{stderr}");

    assert_eq!(
        std::fs::read(unbroken.join("adapter_model.safetensors")).unwrap(),
        std::fs::read(broken.join("adapter_model.safetensors")).unwrap(),
        "the resumed run ends with the unbroken run's adapter"
    );
    // The same loss curve, each step once.
    let (a, b) = (step_losses(&unbroken), step_losses(&broken));
    assert_eq!(a.len(), 120);
    assert_eq!(a, b);
    let first: f64 = a[..20].iter().map(|(_, l)| l).sum::<f64>() / 20.0;
    let last: f64 = a[100..].iter().map(|(_, l)| l).sum::<f64>() / 20.0;
    assert!(last < first, "the loss falls: {first} → {last}");

    // Another recipe on the same folder is refused, not mixed in.
    let mut other = with_exam(tune_args(model, &data, broken.to_str().unwrap(), "10"));
    other.push("--lr".into());
    other.push("0.5".into());
    let refused = kokushi(&bin).args(&other).output().unwrap();
    assert!(!refused.status.success());
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("checkpoint of another run"),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );

    // The adapter loads for evaluation, past a gate that finds the instructions unrelated to
    // the exam... but the exam itself was tuned on: the gate refuses.
    let predictions = dir.path().join("p.jsonl");
    let eval = [
        "eval",
        "--model",
        model,
        "--adapter",
        unbroken.to_str().unwrap(),
        "--exam-set",
        exam.to_str().unwrap(),
        "--prompt-format",
        "alpaca_ja_v1",
        "--max-new-tokens",
        "4",
        "--out",
        predictions.to_str().unwrap(),
    ];
    let gated = run(&bin, &eval);
    let stderr = String::from_utf8_lossy(&gated.stderr);
    assert!(!gated.status.success(), "{stderr}");
    assert!(stderr.contains("leakage gate:"), "{stderr}");
    assert!(stderr.contains("--allow-leakage"), "{stderr}");
    assert!(!predictions.exists());
    let mut allowed = eval.to_vec();
    allowed.extend(["--allow-leakage", "checking the gate"]);
    let passed = run(&bin, &allowed);
    assert!(
        passed.status.success(),
        "{}",
        String::from_utf8_lossy(&passed.stderr)
    );
    assert!(predictions.exists());
    let record: Value = serde_json::from_str(
        &std::fs::read_to_string(dir.path().join("p.jsonl.leakage.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(record["override"], "checking the gate");
    assert_eq!(record["report"]["leaked"], record["report"]["questions"]);

    let report = run(
        &bin,
        &[
            "leakage",
            "--adapter",
            unbroken.to_str().unwrap(),
            "--exam-set",
            exam.to_str().unwrap(),
        ],
    );
    assert!(report.status.success());
    assert!(
        String::from_utf8_lossy(&report.stdout).starts_with("5 of 6 exam questions (83.3 %)"),
        "{}",
        String::from_utf8_lossy(&report.stdout)
    );
}

#[test]
fn bad_tuning_data_is_refused_naming_the_line_and_field_before_anything_is_written() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"instruction\": \"a\", \"output\": \"b\"}\n{\"instruction\": \"a\", \"outptu\": \"b\"}\n",
    )
    .unwrap();
    let out = dir.path().join("run");
    let refused = run(
        &bin,
        &[
            "tune",
            "--base",
            model.to_str().unwrap(),
            "--data",
            &format!("instructions:{}", bad.display()),
            "--steps",
            "2",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(!refused.status.success());
    assert!(stderr.contains("bad.jsonl:2: field `outptu`"), "{stderr}");
    assert!(
        stderr.contains("bad.jsonl:2: field `output`: missing"),
        "{stderr}"
    );
    assert!(!out.exists(), "nothing is written");

    let unknown = run(
        &bin,
        &[
            "tune",
            "--base",
            model.to_str().unwrap(),
            "--data",
            &format!("exam:{}", mini_exam_path().display()),
            "--preset",
            "huge",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        String::from_utf8_lossy(&unknown.stderr).contains("unknown preset \"huge\""),
        "{}",
        String::from_utf8_lossy(&unknown.stderr)
    );

    // Two formats: every example in each, a question's renderings on one side of the split.
    let exam = format!("exam:{}", mini_exam_path().display());
    let both = dir.path().join("both");
    let mut args = vec![
        "tune",
        "--base",
        model.to_str().unwrap(),
        "--data",
        &exam,
        "--steps",
        "1",
        "--validation-share",
        "0.2",
        "--out",
        both.to_str().unwrap(),
        "--prompt-format",
    ];
    let two = run(
        &bin,
        &[args.as_slice(), &["alpaca_ja_v1,medpalm_ja_v1"]].concat(),
    );
    assert!(
        two.status.success(),
        "{}",
        String::from_utf8_lossy(&two.stderr)
    );
    let manifest: Value =
        serde_json::from_str(&std::fs::read_to_string(both.join("tuning.json")).unwrap()).unwrap();
    assert_eq!(
        manifest["plan"]["prompt_format"],
        "alpaca_ja_v1,medpalm_ja_v1"
    );
    // The fixture exam's five usable questions: four train and one validation, twice.
    assert_eq!(manifest["train_examples"], 8);
    assert_eq!(manifest["validation_examples"], 2);
    args.push("alpaca_ja_v1,nope");
    let refused = run(&bin, &args);
    assert!(
        String::from_utf8_lossy(&refused.stderr).contains("unknown prompt format \"nope\""),
        "{}",
        String::from_utf8_lossy(&refused.stderr)
    );
}
