//! `kokushi eval` end to end: a real GGUF model (the engine's fixture, and the SmolLM2 demo
//! model when `KOKUSHI_SMOLLM2_GGUF` is set) answers an exam set in both modes, and the
//! predictions file it writes is what `kokushi score` reads.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kokushi_tests::{FIXTURE_MODEL, fixture_model_store, mini_exam_path, service};
use serde_json::Value;

fn kokushi(bin: &Path, args: &[&str]) -> Output {
    Command::new(bin)
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env("CANDLE_NUM_THREADS", "2")
        .output()
        .expect("kokushi runs")
}

fn lines(path: &Path) -> Vec<Value> {
    kokushi_tests::json_lines(path).unwrap()
}

#[test]
fn both_modes_write_predictions_that_kokushi_score_reads() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let exam = mini_exam_path();
    let out_dir = tempfile::tempdir().unwrap();
    for mode in ["generate", "loglik"] {
        let out = out_dir.path().join(format!("{mode}.jsonl"));
        let run = kokushi(
            &bin,
            &[
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--exam-set",
                exam.to_str().unwrap(),
                "--mode",
                mode,
                "--limit",
                "3",
                "--max-new-tokens",
                "8",
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains("questions/min"),
            "progress is shown: {stderr}"
        );
        let predictions = lines(&out);
        let ids: Vec<&str> = predictions
            .iter()
            .map(|p| p["problem_id"].as_str().unwrap())
            .collect();
        assert_eq!(
            ids,
            ["901A1", "901A2", "901B1"],
            "text-only questions, in order"
        );
        for p in &predictions {
            assert_eq!(p["mode"], mode, "{p}");
            assert!(
                p["prediction"].is_string() && p["raw_output"].is_string(),
                "{p}"
            );
            assert!(p["prompt_tokens"].as_u64().unwrap() > 0, "{p}");
            if mode == "loglik" {
                let sums = p["logprob_sum"].as_array().unwrap();
                assert!(!sums.is_empty(), "{p}");
                assert!(sums.iter().all(|s| s.as_f64().unwrap() < 0.0), "{p}");
                // The answer is the most probable choice.
                let best = sums
                    .iter()
                    .enumerate()
                    .max_by(|a, b| a.1.as_f64().unwrap().total_cmp(&b.1.as_f64().unwrap()))
                    .map(|(i, _)| char::from(b'a' + u8::try_from(i).unwrap()))
                    .unwrap();
                assert!(p["prediction"].as_str().unwrap().contains(best), "{p}");
                assert_eq!(p["parse_failed"], false);
            } else {
                assert!(p["generated_tokens"].as_u64().unwrap() >= 1, "{p}");
            }
        }
        assert!(!out_dir.path().join(format!("{mode}.jsonl.part")).exists());

        let score = kokushi(
            &bin,
            &[
                "score",
                "--exam-set",
                exam.to_str().unwrap(),
                "--predictions",
                out.to_str().unwrap(),
                "--format",
                "json",
            ],
        );
        assert!(
            score.status.success(),
            "{}",
            String::from_utf8_lossy(&score.stderr)
        );
        let report: Value = serde_json::from_slice(&score.stdout).unwrap();
        assert_eq!(report["overall"]["questions"], 6);
        assert_eq!(
            report["overall"]["missing"], 3,
            "three questions were not asked"
        );
        assert!(report["unknown_predictions"].as_array().unwrap().is_empty());
    }
}

#[test]
fn bad_requests_are_refused_before_any_work() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let exam = mini_exam_path();
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("p.jsonl");
    let cases: [(&[&str], &str); 4] = [
        (
            &["--model", "x.gguf", "--device", "tpu"],
            "no such device \"tpu\": name one of cpu, cuda, cuda:N",
        ),
        (
            &["--model", "gpt-9"],
            "nor a known model name (smollm2-135m",
        ),
        (
            &["--model", "smollm2-135m", "--model-cache", "/nonexistent"],
            "cargo xtask demo",
        ),
        (
            &["--model", "x.gguf", "--prompt-format", "nope"],
            "unknown prompt format \"nope\"",
        ),
    ];
    for (extra, needle) in cases {
        let mut args = vec!["eval", "--exam-set", exam.to_str().unwrap(), "--out"];
        args.push(out.to_str().unwrap());
        args.extend_from_slice(extra);
        let run = kokushi(&bin, &args);
        assert!(!run.status.success(), "{extra:?} accepted");
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains(needle),
            "{extra:?}: {needle:?} not in {stderr}"
        );
        assert!(!out.exists());
    }
}

/// Both demo models, by name, on two real questions of IgakuQA 2022's required block.
fn demo_model_answers_real_questions(name: &str, gguf_var: &str, mode: &str) {
    let (Some(bin), Some(gguf), Some(data)) = (
        service("KOKUSHI_BIN").map(PathBuf::from),
        service(gguf_var).map(PathBuf::from),
        service("KOKUSHI_DATA").map(PathBuf::from),
    ) else {
        return;
    };
    let cache = gguf.parent().unwrap();
    let out = tempfile::tempdir().unwrap();
    let file = out.path().join("p.jsonl");
    let run = kokushi(
        &bin,
        &[
            "eval",
            "--model",
            name,
            "--model-cache",
            cache.to_str().unwrap(),
            "--exam-set",
            data.join("igakuqa/2022/116-B.jsonl").to_str().unwrap(),
            "--mode",
            mode,
            "--limit",
            "2",
            "--max-new-tokens",
            "12",
            "--out",
            file.to_str().unwrap(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let predictions = lines(&file);
    assert_eq!(predictions.len(), 2);
    for p in &predictions {
        assert_eq!(p["mode"], mode, "{p}");
        if mode == "loglik" {
            assert_eq!(p["logprob_sum"].as_array().unwrap().len(), 5, "{p}");
            assert_eq!(p["prediction"].as_str().unwrap().len(), 1, "{p}");
        } else {
            assert!(p["generated_tokens"].as_u64().unwrap() >= 1, "{p}");
        }
    }
}

#[test]
fn smollm2_answers_real_questions_by_name_in_loglik_mode() {
    demo_model_answers_real_questions("smollm2-135m", "KOKUSHI_SMOLLM2_GGUF", "loglik");
}

#[test]
fn gemma3_answers_real_questions_by_name_in_generate_mode() {
    demo_model_answers_real_questions("gemma3-270m", "KOKUSHI_GEMMA3_GGUF", "generate");
}

#[test]
fn a_question_too_long_for_the_context_is_recorded_and_the_run_goes_on() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let model = dir.path().join("gemma.gguf");
    kokushi_engine::fixture::write_gguf(
        &model,
        &kokushi_engine::fixture::FixtureSpec::tiny("gemma3", 3),
    )
    .unwrap();
    let long_stem = "胸痛を訴える患者の所見。".repeat(40);
    let exam = dir.path().join("exam.jsonl");
    let question = |id: &str, stem: &str| {
        serde_json::json!({"problem_id": id, "problem_text": stem,
            "choices": ["甲", "乙", "丙", "丁", "戊"], "answer": ["a"]})
        .to_string()
    };
    std::fs::write(
        &exam,
        format!(
            "{}\n{}\n",
            question("900A1", &long_stem),
            question("900A2", "どれか。")
        ),
    )
    .unwrap();
    let out = dir.path().join("p.jsonl");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--exam-set",
        exam.to_str().unwrap(),
        "--mode",
        "loglik",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = kokushi(&bin, &args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(
        stderr.contains("1 question(s) could not be asked"),
        "{stderr}"
    );
    let predictions = lines(&out);
    assert_eq!(predictions.len(), 2);
    assert!(
        predictions[0]["error"]
            .as_str()
            .unwrap()
            .contains("context holds only"),
        "{}",
        predictions[0]
    );
    assert_eq!(predictions[0]["prediction"], "");
    assert!(predictions[1].get("error").is_none());
    assert_eq!(predictions[1]["logprob_sum"].as_array().unwrap().len(), 5);

    // When no question at all can be asked, the command fails (and still writes the file).
    std::fs::write(&exam, format!("{}\n", question("900A1", &long_stem))).unwrap();
    let run = kokushi(&bin, &args);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("no question could be asked"));
}

#[test]
fn a_hugging_face_folder_is_a_model_too() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-qwen2");
    kokushi_engine::fixture::write_hf_folder(
        &folder,
        &kokushi_engine::fixture::FixtureSpec::tiny("qwen2", 2),
    )
    .unwrap();
    let out = dir.path().join("p.jsonl");
    let run = kokushi(
        &bin,
        &[
            "eval",
            "--model",
            folder.to_str().unwrap(),
            "--exam-set",
            mini_exam_path().to_str().unwrap(),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(String::from_utf8_lossy(&run.stderr).contains("qwen2"));
    assert_eq!(lines(&out).len(), 2);
}

#[test]
fn the_models_own_chat_template_can_put_the_question() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let out = store.path().join("p.jsonl");
    let run = kokushi(
        &bin,
        &[
            "eval",
            "--model",
            store.path().join(FIXTURE_MODEL).to_str().unwrap(),
            "--exam-set",
            mini_exam_path().to_str().unwrap(),
            "--prompt-format",
            "chat_template",
            "--limit",
            "1",
            "--max-new-tokens",
            "4",
            "--out",
            out.to_str().unwrap(),
        ],
    );
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let line = &lines(&out)[0];
    let format = line["prompt_format"].as_str().unwrap();
    assert!(
        format.starts_with("chat_template:") && format.len() == 14 + 16,
        "{line}"
    );
}

#[test]
fn k_shot_prompts_take_worked_examples_from_another_exam_only() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let out = store.path().join("p.jsonl");
    let exam = mini_exam_path();
    let base = |extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            model.to_str().unwrap(),
            "--exam-set",
            exam.to_str().unwrap(),
            "--limit",
            "2",
            "--max-new-tokens",
            "4",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kokushi(&bin, &args)
    };
    // The fixture exam is one exam (901): it cannot supply its own examples.
    let run = base(&["--shots", "1"]);
    assert!(!run.status.success());
    assert!(
        String::from_utf8_lossy(&run.stderr).contains("--shot-pool"),
        "{run:?}"
    );
    // Another exam's questions can.
    let pool = store.path().join("pool.jsonl");
    std::fs::write(
        &pool,
        r#"{"problem_id": "900A1", "problem_text": "例題。", "choices": ["甲", "乙"], "answer": ["b"]}
{"problem_id": "900A2", "problem_text": "例題二。", "choices": ["甲", "乙"], "answer": ["a"]}
"#,
    )
    .unwrap();
    let run = base(&[
        "--shots",
        "2",
        "--shot-pool",
        pool.to_str().unwrap(),
        "--mode",
        "loglik",
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for line in lines(&out) {
        assert_eq!(line["prompt_format"], "chatml_ja_v1+2shot", "{line}");
        // Two worked examples lengthen the prompt well beyond the zero-shot one.
        assert!(line["prompt_tokens"].as_u64().unwrap() > 100, "{line}");
    }
    // Through the model's own chat template: each example a user turn and an answer turn.
    let zero = base(&["--prompt-format", "chat_template"]);
    assert!(
        zero.status.success(),
        "{}",
        String::from_utf8_lossy(&zero.stderr)
    );
    let zero_tokens: Vec<u64> = lines(&out)
        .iter()
        .map(|l| l["prompt_tokens"].as_u64().unwrap())
        .collect();
    let run = base(&[
        "--prompt-format",
        "chat_template",
        "--shots",
        "2",
        "--shot-pool",
        pool.to_str().unwrap(),
    ]);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    for (line, zero) in lines(&out).iter().zip(zero_tokens) {
        let format = line["prompt_format"].as_str().unwrap();
        assert!(
            format.starts_with("chat_template:") && format.ends_with("+2shot"),
            "{line}"
        );
        assert!(
            line["prompt_tokens"].as_u64().unwrap() > zero + 20,
            "{line}"
        );
    }
}

#[test]
fn an_interrupted_run_resumes_from_its_part_file() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let exam = mini_exam_path();
    let out = store.path().join("p.jsonl");
    let args = [
        "eval",
        "--model",
        model.to_str().unwrap(),
        "--exam-set",
        exam.to_str().unwrap(),
        "--mode",
        "loglik",
        "--limit",
        "3",
        "--out",
        out.to_str().unwrap(),
    ];
    let run = kokushi(&bin, &args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let complete = std::fs::read_to_string(&out).unwrap();
    // As if killed after the first answer, in the middle of writing the second.
    let part = store.path().join("p.jsonl.part");
    let first = complete.lines().next().unwrap();
    std::fs::write(&part, format!("{first}\n{{\"problem_id\": \"901A")).unwrap();
    std::fs::remove_file(&out).unwrap();
    let run = kokushi(&bin, &args);
    assert!(
        run.status.success(),
        "{}",
        String::from_utf8_lossy(&run.stderr)
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains("resuming: 1 of 3"), "{stderr}");
    assert!(stderr.contains("not a complete line"), "{stderr}");
    // Same answers as the uninterrupted run (timings aside), in the exam's order.
    let strip = |text: &str| -> Vec<Value> {
        text.lines()
            .map(|l| {
                let mut v: Value = serde_json::from_str(l).unwrap();
                v["latency_ms"] = Value::Null;
                v
            })
            .collect()
    };
    assert_eq!(
        strip(&std::fs::read_to_string(&out).unwrap()),
        strip(&complete)
    );
    assert!(!part.exists());
    // A part file of another mode is not mixed in.
    std::fs::write(&part, format!("{first}\n")).unwrap();
    let mut generate = args.to_vec();
    generate[6] = "generate";
    let run = kokushi(&bin, &generate);
    assert!(!run.status.success());
    assert!(String::from_utf8_lossy(&run.stderr).contains("choose another --out"));
}

#[test]
fn a_lora_adapter_answers_the_same_merged_or_not_and_is_recorded_in_every_line() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    // A Gemma 3 folder and a PEFT adapter for it.
    let dir = tempfile::tempdir().unwrap();
    let folder = dir.path().join("tiny-gemma3");
    kokushi_engine::fixture::write_hf_folder(
        &folder,
        &kokushi_engine::fixture::FixtureSpec::tiny("gemma3", 3),
    )
    .unwrap();
    let adapter = dir.path().join("my-lora");
    kokushi_engine::fixture::write_peft_adapter(
        &adapter,
        "gemma3",
        &kokushi_engine::fixture::AdapterSpec::all_projections(5),
    )
    .unwrap();
    let exam = mini_exam_path();
    let run = |out: &Path, extra: &[&str]| {
        let mut args = vec![
            "eval",
            "--model",
            folder.to_str().unwrap(),
            "--exam-set",
            exam.to_str().unwrap(),
            "--mode",
            "loglik",
            "--limit",
            "4",
            "--out",
            out.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        kokushi(&bin, &args)
    };
    let with = |name: &str| dir.path().join(name);

    let base = run(&with("base.jsonl"), &[]);
    let unmerged = run(
        &with("unmerged.jsonl"),
        &["--adapter", adapter.to_str().unwrap()],
    );
    let merged = run(
        &with("merged.jsonl"),
        &["--adapter", adapter.to_str().unwrap(), "--merge-adapter"],
    );
    for output in [&base, &unmerged, &merged] {
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    assert!(String::from_utf8_lossy(&unmerged.stderr).contains("LoRA my-lora (r=4"));

    let (base, unmerged, merged) = (
        lines(&with("base.jsonl")),
        lines(&with("unmerged.jsonl")),
        lines(&with("merged.jsonl")),
    );
    assert!(base.iter().all(|l| l.get("adapter").is_none()));
    assert!(unmerged.iter().all(|l| l["adapter"] == "my-lora"));
    let sums = |ls: &[Value]| -> Vec<f64> {
        ls.iter()
            .flat_map(|l| l["logprob_sum"].as_array().unwrap().clone())
            .map(|v| v.as_f64().unwrap())
            .collect()
    };
    let worst = sums(&unmerged)
        .iter()
        .zip(sums(&merged))
        .fold(0f64, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-3, "merged and unmerged differ by {worst}");
    assert_ne!(
        sums(&base),
        sums(&unmerged),
        "the adapter changes the answers"
    );

    // A part file left by a run with the adapter is not resumed without it.
    std::fs::copy(with("unmerged.jsonl"), with("again.jsonl.part")).unwrap();
    let refused = run(&with("again.jsonl"), &[]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(message.contains("adapter my-lora, not (none)"), "{message}");
}

#[test]
fn questions_decoded_in_a_batch_get_the_answers_they_get_one_by_one() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let model = store.path().join(FIXTURE_MODEL);
    let exam = mini_exam_path();
    let run = |batch: &str| {
        let out = store.path().join(format!("batch-{batch}.jsonl"));
        let run = kokushi(
            &bin,
            &[
                "eval",
                "--model",
                model.to_str().unwrap(),
                "--exam-set",
                exam.to_str().unwrap(),
                "--with-images",
                "--max-new-tokens",
                "12",
                "--batch",
                batch,
                "--out",
                out.to_str().unwrap(),
            ],
        );
        assert!(
            run.status.success(),
            "{}",
            String::from_utf8_lossy(&run.stderr)
        );
        lines(&out)
    };
    let (alone, together) = (run("1"), run("4"));
    assert!(alone.len() >= 5, "{alone:?}");
    assert_eq!(alone.len(), together.len());
    for (a, b) in alone.iter().zip(&together) {
        for field in [
            "problem_id",
            "prediction",
            "raw_output",
            "prompt_tokens",
            "generated_tokens",
        ] {
            assert_eq!(a[field], b[field], "{field}: alone {a} batched {b}");
        }
    }
}
