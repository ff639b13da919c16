//! `kokushi eval --model openai:<base-url>#<model>` end to end, against an OpenAI-compatible
//! server in this process that serves the engine's fixture model over HTTP as vLLM does
//! (`/v1/completions` with `echo` and `logprobs`, `/v1/chat/completions`, bearer keys, OpenAI's
//! error bodies). The server misbehaves on purpose (429 with Retry-After, 503, replies slower
//! than the client's timeout) on the first attempt at every distinct request, so every
//! question goes through a retry; the answers must still be exactly those of the same model
//! run locally.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use kokushi_tests::openai::{KEY, KEY_VAR, SERVED_NAME, served, start};
use kokushi_tests::{FIXTURE_MODEL, fixture_model_store, mini_exam_path, service};
use serde_json::Value;

fn kokushi(bin: &Path, args: &[&str], key: Option<&str>) -> Output {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env_remove("RUST_BACKTRACE")
        .env("CANDLE_NUM_THREADS", "2");
    match key {
        Some(key) => command.env(KEY_VAR, key),
        None => command.env_remove(KEY_VAR),
    };
    command.output().expect("kokushi runs")
}

fn lines(path: &Path) -> Vec<Value> {
    kokushi_tests::json_lines(path).unwrap()
}

fn eval_args<'a>(
    model: &'a str,
    out: &'a str,
    retries: &'a str,
    extra: &[&'a str],
) -> Vec<&'a str> {
    let exam = Box::leak(mini_exam_path().into_os_string().into_boxed_os_str());
    let mut args = vec![
        "eval",
        "--model",
        model,
        "--exam-set",
        exam.to_str().unwrap(),
        "--limit",
        "3",
        "--max-new-tokens",
        "8",
        "--out",
        out,
        "--api-key-env",
        KEY_VAR,
        "--timeout",
        "1",
        "--retries",
        retries,
        "--concurrency",
        "2",
    ];
    args.extend_from_slice(extra);
    args
}

fn succeeded(run: &Output) -> String {
    let stderr = String::from_utf8_lossy(&run.stderr).into_owned();
    assert!(run.status.success(), "{stderr}");
    stderr
}

#[test]
fn a_remote_model_answers_as_the_same_model_does_locally_despite_429_503_and_timeouts() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let server = served(store.path(), true);
    let remote = format!("openai:{}#{SERVED_NAME}", start(server.clone()));
    let local = store.path().join(FIXTURE_MODEL);
    let local = local.to_str().unwrap();
    for mode in ["generate", "loglik"] {
        let extra = ["--mode", mode, "--prompt-format", "chatml_ja_v1"];
        let here = store.path().join(format!("{mode}-local.jsonl"));
        let there = store.path().join(format!("{mode}-remote.jsonl"));
        succeeded(&kokushi(
            &bin,
            &eval_args(local, here.to_str().unwrap(), "4", &extra),
            None,
        ));
        let stderr = succeeded(&kokushi(
            &bin,
            &eval_args(&remote, there.to_str().unwrap(), "4", &extra),
            Some(KEY),
        ));
        assert!(!stderr.contains(KEY), "the key is never printed: {stderr}");
        assert!(
            stderr.contains(&format!("API key from ${KEY_VAR}")),
            "{stderr}"
        );
        let (here, there) = (lines(&here), lines(&there));
        assert_eq!(here.len(), 3);
        assert_eq!(there.len(), 3);
        for (a, b) in here.iter().zip(&there) {
            for field in [
                "problem_id",
                "prediction",
                "prompt_format",
                "mode",
                "parse_failed",
            ] {
                assert_eq!(a[field], b[field], "{field}: local {a} remote {b}");
            }
            if mode == "generate" {
                assert_eq!(a["raw_output"], b["raw_output"], "local {a} remote {b}");
                assert_eq!(a["prompt_tokens"], b["prompt_tokens"], "{a} {b}");
            } else {
                let sums = |line: &Value| -> Vec<f64> {
                    line["logprob_sum"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|v| v.as_f64().unwrap())
                        .collect()
                };
                for (x, y) in sums(a).iter().zip(sums(b)) {
                    assert!((x - y).abs() < 1e-3, "local {a} remote {b}");
                }
                assert_eq!(sums(b).len(), 5, "{b}");
            }
        }
    }
    // Every request failed once and was retried; never more than --concurrency at once, and
    // more than one at once (the concurrency is real).
    assert!(server.faults_served.load(Ordering::SeqCst) >= 3 * (1 + 5));
    let most = server.most_in_flight.load(Ordering::SeqCst);
    assert!(
        (2..=2).contains(&most),
        "at most 2 requests at once, saw {most}"
    );

    // Without a prompt format, a remote model is asked through its own chat template.
    let out = store.path().join("chat.jsonl");
    succeeded(&kokushi(
        &bin,
        &eval_args(&remote, out.to_str().unwrap(), "4", &[]),
        Some(KEY),
    ));
    let chat = lines(&out);
    assert_eq!(chat.len(), 3);
    assert!(
        chat.iter().all(|l| l["prompt_format"] == "chat_api"),
        "{chat:?}"
    );
    assert!(
        server
            .paths
            .lock()
            .unwrap()
            .iter()
            .any(|p| p == "/v1/chat/completions")
    );
}

#[test]
fn a_refused_key_an_unknown_model_and_a_dead_server_stop_the_run_with_their_reason() {
    let Some(bin) = service("KOKUSHI_BIN").map(PathBuf::from) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let base = start(served(store.path(), false));
    let out = store.path().join("p.jsonl");
    let out_text = out.to_str().unwrap();

    let wrong_key = "sk-wrong-2b8d";
    let run = kokushi(
        &bin,
        &eval_args(&format!("openai:{base}#{SERVED_NAME}"), out_text, "4", &[]),
        Some(wrong_key),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("401") && stderr.contains(&format!("${KEY_VAR}")),
        "{stderr}"
    );
    assert!(
        !stderr.contains(wrong_key),
        "the key is never printed: {stderr}"
    );
    assert!(!out.exists(), "no predictions file from a failed run");

    let run = kokushi(
        &bin,
        &eval_args(&format!("openai:{base}#{SERVED_NAME}"), out_text, "4", &[]),
        None,
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains(&format!("${KEY_VAR} is not set")),
        "{stderr}"
    );

    let run = kokushi(
        &bin,
        &eval_args(&format!("openai:{base}#no-such-model"), out_text, "4", &[]),
        Some(KEY),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("404") && stderr.contains("no-such-model"),
        "{stderr}"
    );

    // A port nothing listens on: retried, then given up with the reason.
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = dead.local_addr().unwrap().port();
    drop(dead);
    let model = format!("openai:http://127.0.0.1:{port}/v1#{SERVED_NAME}");
    let run = kokushi(&bin, &eval_args(&model, out_text, "1", &[]), Some(KEY));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(
        stderr.contains("cannot connect") && stderr.contains("gave up after 2 attempts"),
        "{stderr}"
    );

    let run = kokushi(
        &bin,
        &eval_args("openai:http://127.0.0.1:1/v1", out_text, "4", &[]),
        Some(KEY),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(!run.status.success());
    assert!(stderr.contains("openai:<base-url>#<model>"), "{stderr}");
}

#[test]
fn a_worker_calls_a_remote_model_only_when_its_operator_allows_it() {
    use kokushi_queue::{JobQueue, MemoryQueue};
    use kokushi_shared::job::{EvalJob, JobQuestion, WorkerEvent};
    use kokushi_shared::prompt::PromptFormat;
    use kokushi_worker::{
        Worker, WorkerConfig,
        remote::{RemoteOptions, RemotePolicy},
    };

    let store = fixture_model_store().unwrap();
    let mut server = served(store.path(), false);
    Arc::get_mut(&mut server).unwrap().key = None;
    let base = start(server);
    let question = JobQuestion {
        problem_id: "901A2".to_owned(),
        text: "インスリンを分泌する細胞はどれか。".to_owned(),
        choices: ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"]
            .map(str::to_owned)
            .to_vec(),
        exam: None,
    };
    let job = |job_id, model: String| {
        kokushi_shared::job::Job::Eval(EvalJob {
            job_id,
            attempt: 1,
            run_id: job_id,
            model,
            adapter: None,
            settings: kokushi_shared::job::EvalSettings::new(PromptFormat::ChatmlJa, 8),
            shot_pool: Vec::new(),
            questions: vec![question.clone()],
            priority: Default::default(),
            needs: Default::default(),
        })
    };
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let events = |queue: Arc<MemoryQueue>| async move {
            queue
                .read_events("test", Duration::from_millis(10), 100)
                .await
                .unwrap()
                .into_iter()
                .map(|d| d.item)
                .collect::<Vec<_>>()
        };
        let remote = format!("openai:{base}#{SERVED_NAME}");
        // Remote models off; on, but the server (on the loopback) not on the allow-list; on and
        // allowed.
        for (mode, queue_job) in [("off", 1), ("private", 2), ("allowed", 3)] {
            let allowed = mode == "allowed";
            let queue = Arc::new(MemoryQueue::new());
            queue
                .publish_job(&job(queue_job, remote.clone()))
                .await
                .unwrap();
            queue
                .publish_job(&job(queue_job + 10, FIXTURE_MODEL.to_owned()))
                .await
                .unwrap();
            let mut worker = Worker::new(
                queue.clone(),
                WorkerConfig {
                    name: "w".to_owned(),
                    model_store: store.path().to_owned(),
                    poll: Duration::from_millis(50),
                    remote: (mode != "off").then(|| RemoteOptions {
                        api_key_env: None,
                        policy: RemotePolicy {
                            allow: if allowed {
                                vec![base.clone()]
                            } else {
                                Vec::new()
                            },
                            allow_private: false,
                        },
                        ..RemoteOptions::default()
                    }),
                    visibility_timeout: kokushi_queue::DEFAULT_VISIBILITY_TIMEOUT,
                    max_attempts: 3,
                    batch: 1,
                    device: kokushi_worker::Device::Cpu,
                    memory: None,
                },
            );
            worker.try_execute_next().await.unwrap();
            worker.try_execute_next().await.unwrap();
            let events = events(queue).await;
            let answers: Vec<(i64, &str)> = events
                .iter()
                .filter_map(|e| match e {
                    WorkerEvent::Answer { job_id, record, .. } => {
                        Some((*job_id, record.raw_output.as_str()))
                    }
                    _ => None,
                })
                .collect();
            let failure = events.iter().find_map(|e| match e {
                WorkerEvent::Failed { error, .. } => Some(error.as_str()),
                _ => None,
            });
            if allowed {
                assert_eq!(failure, None, "{events:?}");
                assert_eq!(answers.len(), 2, "{events:?}");
                assert_eq!(
                    answers[0].1, answers[1].1,
                    "the remote model answers as the same model in the store"
                );
            } else {
                let failure = failure.expect("the remote job fails");
                let says = if mode == "off" {
                    "--remote-models"
                } else {
                    "--remote-allow"
                };
                assert!(failure.contains(says), "{mode}: {failure}");
                assert_eq!(
                    answers.len(),
                    1,
                    "the store's model still answers: {events:?}"
                );
            }
        }
    });
}
