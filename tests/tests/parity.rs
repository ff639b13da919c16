//! One way to answer a question: a portal run (`POST /api/runs`, a worker, the run's
//! `export?format=predictions`) and `kokushi eval` with the same model and settings write the
//! same predictions file, apart from `latency_ms`. Both modes, on 20 real IgakuQA 2022
//! questions (two of them 「2つ選べ」, where a log-likelihood answer must have two letters
//! because the question says so, never because the answer key does), with the demo model
//! Gemma 3 270M run locally and the fixture model behind an OpenAI-compatible server; and a
//! 2-shot run with worked examples from another year, refused when none can come from another
//! exam.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_queue::RedisQueue;
use kokushi_shared::api::{RunStatus, RunSummary};
use kokushi_tests::{TestApp, fixture_model_store, openai, service};
use kokushi_worker::{Worker, WorkerConfig};
use serde_json::{Value, json};

/// The first 18 single-answer and the first 2 「2つ選べ」 text-only questions of 116A, as one
/// exam file (in their exam order).
fn twenty_questions(data: &Path) -> String {
    let text = std::fs::read_to_string(data.join("igakuqa/2022/116-A.jsonl")).unwrap();
    let (mut single, mut double) = (0, 0);
    let mut kept = String::new();
    for line in text.lines() {
        let q: Value = serde_json::from_str(line).unwrap();
        if q["text_only"] != true {
            continue;
        }
        let asks_two = q["problem_text"].as_str().unwrap().contains("2つ選べ");
        let take = if asks_two {
            double < 2 && {
                double += 1;
                true
            }
        } else {
            single < 18 && {
                single += 1;
                true
            }
        };
        if take {
            kept.push_str(line);
            kept.push('\n');
        }
    }
    assert_eq!(
        (single, double),
        (18, 2),
        "116A has the questions this test needs"
    );
    kept
}

/// The lines of a predictions file without their timings.
fn without_timings(text: &str) -> Vec<Value> {
    text.lines()
        .map(|line| {
            let mut v: Value = serde_json::from_str(line).unwrap();
            v.as_object_mut().unwrap().remove("latency_ms");
            v
        })
        .collect()
}

struct Case {
    /// `--model` of `kokushi eval`, and the run's `model`.
    cli_model: String,
    run_model: String,
    /// `generation` or `loglik`.
    scoring: &'static str,
    prompt_format: &'static str,
}

fn eval_file(bin: &str, exam: &Path, out: &Path, case: &Case, extra: &[&str]) -> String {
    let mode = if case.scoring == "loglik" {
        "loglik"
    } else {
        "generate"
    };
    let run = Command::new(bin)
        .args([
            "eval",
            "--model",
            &case.cli_model,
            "--exam-set",
            exam.to_str().unwrap(),
            "--prompt-format",
            case.prompt_format,
            "--mode",
            mode,
            "--max-new-tokens",
            "12",
            "--out",
            out.to_str().unwrap(),
        ])
        .args(extra)
        .env("CANDLE_NUM_THREADS", "2")
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(run.status.success(), "{stderr}");
    std::fs::read_to_string(out).unwrap()
}

/// The run request of `case`, with the fields of `more` added.
fn run_request(exam_set_id: i64, case: &Case, more: &Value) -> Value {
    let mut body = json!({
        "exam_set_id": exam_set_id,
        "model": case.run_model,
        "prompt_format": case.prompt_format,
        "scoring": case.scoring,
        "max_new_tokens": 12,
    });
    for (key, value) in more.as_object().unwrap() {
        body[key] = value.clone();
    }
    body
}

async fn portal_file(app: &TestApp, exam_set_id: i64, case: &Case, more: &Value) -> String {
    let res = app
        .client
        .post(app.url("/api/runs"))
        .json(&run_request(exam_set_id, case, more))
        .send()
        .await
        .unwrap();
    let status = res.status();
    let text = res.text().await.unwrap();
    assert_eq!(status, reqwest::StatusCode::CREATED, "{text}");
    let run: RunSummary = serde_json::from_str(&text).unwrap();
    let done = app
        .wait_for_run(run.id, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(
        done.run.status,
        RunStatus::Succeeded,
        "{:?}",
        done.run.error
    );
    let res = app
        .client
        .get(app.url(&format!("/api/runs/{}/export", run.id)))
        .query(&[("format", "predictions")])
        .send()
        .await
        .unwrap();
    assert!(res.status().is_success());
    res.text().await.unwrap()
}

fn compare(portal: &str, cli: &str, case: &Case) {
    let (portal, cli) = (without_timings(portal), without_timings(cli));
    assert_eq!(portal.len(), 20, "{}: {portal:#?}", case.scoring);
    for (p, c) in portal.iter().zip(&cli) {
        assert_eq!(
            p, c,
            "{} {}: the portal's line, then kokushi eval's",
            case.run_model, case.scoring
        );
    }
    assert_eq!(portal, cli);
}

#[test]
fn a_portal_run_and_kokushi_eval_write_the_same_predictions() {
    let (Some(bin), Some(gemma), Some(data), Some(redis)) = (
        service("KOKUSHI_BIN"),
        service("KOKUSHI_GEMMA3_GGUF"),
        service("KOKUSHI_DATA"),
        service("KOKUSHI_TEST_REDIS_URL"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let exam = work.path().join("116A-twenty.jsonl");
    let questions = twenty_questions(Path::new(&data));
    std::fs::write(&exam, &questions).unwrap();
    let asks_two: Vec<String> = questions
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|q| q["problem_text"].as_str().unwrap().contains("2つ選べ"))
        .map(|q| q["problem_id"].as_str().unwrap().to_owned())
        .collect();

    // The store holds the fixture model and the demo model (a link inside the store would be
    // refused, so a hard link or a copy).
    let store = fixture_model_store().unwrap();
    let demo = "gemma-3-270m-q4_k_m.gguf";
    if std::fs::hard_link(&gemma, store.path().join(demo)).is_err() {
        std::fs::copy(&gemma, store.path().join(demo)).unwrap();
    }
    let mut served = openai::served(store.path(), false);
    Arc::get_mut(&mut served).unwrap().key = None;
    let base = openai::start(served);
    let remote = format!("openai:{base}#{}", openai::SERVED_NAME);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let prefix = format!("kokushi-parity-{}", std::process::id());
        let mut settings = Settings::embedded(kokushi_tests::sqlite_url(work.path()), store.path());
        settings.redis_url = Some(redis.clone());
        settings.queue_prefix = prefix.clone();
        settings.embedded_worker = false;
        settings.remote_model_allow = vec![base.clone()];
        let app = TestApp::spawn(settings).await.unwrap();
        let set = app
            .upload_exam("116A twenty", "116A-twenty.jsonl", questions.into_bytes())
            .await
            .unwrap();
        // A worker that may call the server on loopback (without a key), answering 4 at once.
        let queue = Arc::new(RedisQueue::connect(&redis, &prefix).await.unwrap());
        let worker = Worker::new(
            queue,
            WorkerConfig {
                name: "parity".to_owned(),
                model_store: store.path().to_owned(),
                poll: Duration::from_millis(200),
                remote: Some(kokushi_worker::remote::RemoteOptions {
                    policy: kokushi_worker::remote::RemotePolicy {
                        allow: Vec::new(),
                        allow_private: true,
                    },
                    ..kokushi_worker::remote::RemoteOptions::default()
                }),
                visibility_timeout: Duration::from_secs(60),
                max_attempts: 3,
                batch: 4,
                device: kokushi_worker::Device::Cpu,
                memory: None,
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = tokio::spawn(worker.run_until_stopped(async {
            let _ = stopped.await;
        }));

        let cases = [
            Case {
                cli_model: gemma.clone(),
                run_model: demo.to_owned(),
                scoring: "generation",
                prompt_format: "gemma_ja_v1",
            },
            Case {
                cli_model: gemma.clone(),
                run_model: demo.to_owned(),
                scoring: "loglik",
                prompt_format: "gemma_ja_v1",
            },
            Case {
                cli_model: remote.clone(),
                run_model: remote.clone(),
                scoring: "generation",
                prompt_format: "chatml_ja_v1",
            },
            Case {
                cli_model: remote.clone(),
                run_model: remote.clone(),
                scoring: "loglik",
                prompt_format: "chatml_ja_v1",
            },
        ];
        for (n, case) in cases.iter().enumerate() {
            let started = std::time::Instant::now();
            let portal = portal_file(&app, set.id, case, &json!({})).await;
            eprintln!(
                "{} {}: portal run in {:?}",
                case.run_model,
                case.scoring,
                started.elapsed()
            );
            let out = work.path().join(format!("cli-{n}.jsonl"));
            let is_remote = case.cli_model.starts_with("openai:");
            let extra: &[&str] = if is_remote {
                &["--concurrency", "4"]
            } else {
                &["--batch", "4"]
            };
            let cli = tokio::task::block_in_place(|| eval_file(&bin, &exam, &out, case, extra));
            eprintln!(
                "{} {}: both in {:?}",
                case.run_model,
                case.scoring,
                started.elapsed()
            );
            compare(&portal, &cli, case);
            if case.scoring == "loglik" {
                // As many letters as the question asks for, whatever the answer key says.
                for line in without_timings(&cli) {
                    let id = line["problem_id"].as_str().unwrap();
                    let letters = line["prediction"].as_str().unwrap().split(',').count();
                    let asked = if asks_two.iter().any(|a| a == id) {
                        2
                    } else {
                        1
                    };
                    assert_eq!(letters, asked, "{line}");
                }
            }
        }
        // k-shot: worked examples only from other exams. The twenty questions are all of the
        // 116th exam, so from their own set there are none: refused, naming the question.
        let remote_case = &cases[2];
        let res = app
            .client
            .post(app.url("/api/runs"))
            .json(&run_request(set.id, remote_case, &json!({"shots": 2})))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        let refusal = res.text().await.unwrap();
        assert!(
            refusal.contains("too few worked examples for 116A"),
            "{refusal}"
        );
        // From the 115th exam's block A they come, the same on both paths.
        let pool_file = Path::new(&data).join("igakuqa/2021/115-A.jsonl");
        let pool = app
            .upload_exam("115A", "115-A.jsonl", std::fs::read(&pool_file).unwrap())
            .await
            .unwrap();
        let more = json!({"shots": 2, "shot_pool_exam_set_id": pool.id});
        let portal = portal_file(&app, set.id, remote_case, &more).await;
        let out = work.path().join("cli-shots.jsonl");
        let extra = ["--shots", "2", "--shot-pool", pool_file.to_str().unwrap()];
        let cli = tokio::task::block_in_place(|| eval_file(&bin, &exam, &out, remote_case, &extra));
        compare(&portal, &cli, remote_case);
        for line in without_timings(&portal) {
            assert_eq!(line["prompt_format"], "chatml_ja_v1+2shot", "{line}");
        }
        // The model's own chat template, asked of a model without one: the run fails at the
        // start, saying so, rather than recording an error for each question.
        let res = app
            .client
            .post(app.url("/api/runs"))
            .json(&run_request(
                set.id,
                &cases[0],
                &json!({"prompt_format": "chat_template"}),
            ))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::CREATED);
        let run: RunSummary = res.json().await.unwrap();
        let done = app
            .wait_for_run(run.id, Duration::from_secs(120))
            .await
            .unwrap();
        assert_eq!(done.run.status, RunStatus::Failed);
        let error = done.run.error.clone().unwrap_or_default();
        assert!(error.contains("has no chat template"), "{error}");
        assert_eq!(done.run.tally.answered, 0, "{:?}", done.run);
        let _ = stop.send(());
        worker.await.unwrap();
        app.stop().await.unwrap();
    });
}

/// A prediction must not depend on how many questions were answered together: the twenty
/// questions one at a time and four at a time give the same lines, for both demo models.
/// (Gemma 3 once answered 15 of 40 questions differently in a batch: candle's one-row `Q6_K`
/// product rounds differently from a many-row one; `engine::transformer::Weight::forward`.)
#[test]
fn batch_size_changes_no_prediction_for_either_demo_model() {
    let (Some(bin), Some(smollm2), Some(gemma), Some(data)) = (
        service("KOKUSHI_BIN"),
        service("KOKUSHI_SMOLLM2_GGUF"),
        service("KOKUSHI_GEMMA3_GGUF"),
        service("KOKUSHI_DATA"),
    ) else {
        return;
    };
    let work = tempfile::tempdir().unwrap();
    let exam = work.path().join("116A-twenty.jsonl");
    std::fs::write(&exam, twenty_questions(Path::new(&data))).unwrap();
    for (model, format) in [(smollm2, "chatml_ja_v1"), (gemma, "gemma_ja_v1")] {
        let case = Case {
            cli_model: model.clone(),
            run_model: model.clone(),
            scoring: "generation",
            prompt_format: format,
        };
        let file = |batch: &str| {
            let out = work.path().join(format!("{format}-batch-{batch}.jsonl"));
            let started = std::time::Instant::now();
            let text = eval_file(&bin, &exam, &out, &case, &["--batch", batch]);
            eprintln!("{format} batch {batch}: {:?}", started.elapsed());
            text
        };
        let (alone, together) = (without_timings(&file("1")), without_timings(&file("4")));
        assert_eq!(alone.len(), 20);
        for (a, b) in alone.iter().zip(&together) {
            assert_eq!(a, b, "{format}: one at a time, then four at a time");
        }
    }
}
