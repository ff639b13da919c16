//! Cost before and after, on the demo models: a run's estimate (a dry run of its prompts with
//! the model's tokenizer, timed with the model's measured speed) against what its worker then
//! measured — prompt tokens exactly, answering time within the stated factor — for SmolLM2
//! generating and Gemma 3 scoring by log-likelihood; a model never run has tokens and no time;
//! and the Jobs form shows the estimate in the browser before anything is queued.

use std::path::{Path, PathBuf};
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_shared::api::ExamSetSummary;
use kokushi_shared::cost::{Cost, ESTIMATE_FACTOR, Estimate};
use kokushi_tests::{TestApp, service};
use serde_json::{Value, json};

const SMOL: &str = "smollm2.gguf";

/// The tests here one at a time: a speed is measured with the machine to itself.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
const GEMMA: &str = "gemma3.gguf";

/// A model store beside the models' cache holding both demo models (hard links, or copies).
fn demo_store(smollm2: &Path, gemma: &Path) -> kokushi_tests::tempfile::TempDir {
    let store = kokushi_tests::tempfile::tempdir_in(smollm2.parent().expect("cache folder"))
        .expect("store");
    for (from, name) in [(smollm2, SMOL), (gemma, GEMMA)] {
        let to = store.path().join(name);
        if std::fs::hard_link(from, &to).is_err() {
            std::fs::copy(from, &to).expect("copying a demo model");
        }
    }
    store
}

async fn post_json<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str, body: &Value) -> T {
    let res = app
        .client
        .post(app.url(path))
        .json(body)
        .send()
        .await
        .expect("request");
    let status = res.status();
    let text = res.text().await.expect("body");
    assert!(status.is_success(), "{path}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

async fn upload_year(app: &TestApp, data: &Path) -> ExamSetSummary {
    let body = std::fs::read(data.join("igakuqa/2022/116-B.jsonl")).expect("IgakuQA 116-B");
    app.upload_exam("IgakuQA 116-B", "116-B.jsonl", body)
        .await
        .expect("upload")
}

fn run_body(exam: i64, model: &str, scoring: &str, limit: u32) -> Value {
    json!({"exam_set_id": exam, "model": model, "prompt_format": "chatml_ja_v1",
           "scoring": scoring, "limit": limit, "max_new_tokens": 12})
}

/// Queues a run, waits for it, and answers its cost.
async fn run_and_cost(app: &TestApp, body: &Value) -> Cost {
    let run: Value = post_json(app, "/api/runs", body).await;
    let id = run["id"].as_i64().expect("run id");
    let detail = app
        .wait_for_run(id, Duration::from_secs(300))
        .await
        .expect("the run finishes");
    assert_eq!(
        detail.run.status,
        kokushi_shared::api::RunStatus::Succeeded,
        "{:?}",
        detail.run
    );
    // The worker's measurement arrives just before the run finishes.
    app.get_json(&format!("/api/runs/{id}/cost"))
        .await
        .expect("cost")
}

/// One demo model: never run (tokens, no time), then run once (its speed measured), then a
/// second run estimated and measured.
async fn estimate_then_measure(app: &TestApp, exam: i64, model: &str, scoring: &str) {
    let first = run_body(exam, model, scoring, 4);
    let before: Estimate = post_json(app, "/api/runs/estimate", &first).await;
    assert_eq!(before.questions, 4);
    assert!(before.prompt_tokens > 0);
    assert_eq!(before.seconds, None, "{before:?}");
    assert!(before.note.contains("no time"), "{}", before.note);

    let measured = run_and_cost(app, &first).await;
    let kept = measured.estimate.expect("the estimate kept with the job");
    let work = measured.work.expect("the worker's measurement");
    assert_eq!(work.answers, 4);
    // The dry run counted exactly the tokens the model was given.
    assert_eq!(kept.prompt_tokens, work.prompt_tokens, "{kept:?} {work:?}");

    let second = run_body(exam, model, scoring, 10);
    let estimate: Estimate = post_json(app, "/api/runs/estimate", &second).await;
    let seconds = estimate
        .seconds
        .expect("a time, now the model was measured");
    let cost = run_and_cost(app, &second).await;
    let work = cost.work.expect("measured");
    let kept = cost.estimate.expect("kept");
    assert_eq!(kept.prompt_tokens, work.prompt_tokens);
    assert_eq!(estimate.prompt_tokens, work.prompt_tokens);
    let took = work.busy_ms as f64 / 1000.0;
    let ratio = seconds / took;
    eprintln!(
        "{model} {scoring}: estimated {seconds:.2} s, took {took:.2} s (×{ratio:.2}); \
         generated {} estimated, {} generated",
        estimate.generated_tokens, work.generated_tokens
    );
    assert!(
        (1.0 / ESTIMATE_FACTOR..=ESTIMATE_FACTOR).contains(&ratio),
        "{model} {scoring}: estimated {seconds:.2} s, took {took:.2} s"
    );
    if scoring == "generation" {
        let generated = work.generated_tokens as f64;
        let expected = estimate.generated_tokens as f64;
        assert!(
            expected <= 12.0 * 10.0
                && (expected / generated.max(1.0)) <= ESTIMATE_FACTOR
                && (generated / expected.max(1.0)) <= ESTIMATE_FACTOR,
            "generated {generated}, estimated {expected}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn estimates_hold_within_their_factor_on_the_demo_models() {
    let (Some(smollm2), Some(gemma), Some(data)) = (
        service("KOKUSHI_SMOLLM2_GGUF").map(PathBuf::from),
        service("KOKUSHI_GEMMA3_GGUF").map(PathBuf::from),
        service("KOKUSHI_DATA").map(PathBuf::from),
    ) else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let store = demo_store(&smollm2, &gemma);
    let dir = kokushi_tests::tempfile::tempdir().expect("dir");
    let app = TestApp::spawn(Settings::embedded(
        kokushi_tests::sqlite_url(dir.path()),
        store.path(),
    ))
    .await
    .expect("server starts");
    let exam = upload_year(&app, &data).await;
    // Models one after the other: the speed is measured with the machine to itself.
    estimate_then_measure(&app, exam.id, SMOL, "generation").await;
    estimate_then_measure(&app, exam.id, GEMMA, "loglik").await;

    // Refusals name what is wrong, and nothing is queued by an estimate.
    let res = app
        .client
        .post(app.url("/api/runs/estimate"))
        .json(&json!({"exam_set_id": exam.id, "model": "../x", "prompt_format": "chatml_ja_v1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
    let runs = app.leaderboard().await.expect("board");
    assert_eq!(runs.len(), 4, "estimates queue nothing");
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_jobs_form_shows_the_estimate_before_anything_is_queued() {
    use kokushi_tests::ui::{click, sign_in, text_of, type_into, wait_text};
    let (Some(static_dir), Some(chromedriver), Some(smollm2), Some(gemma), Some(data)) = (
        service("KOKUSHI_STATIC_DIR"),
        service("CHROMEDRIVER"),
        service("KOKUSHI_SMOLLM2_GGUF").map(PathBuf::from),
        service("KOKUSHI_GEMMA3_GGUF").map(PathBuf::from),
        service("KOKUSHI_DATA").map(PathBuf::from),
    ) else {
        return;
    };
    let _alone = ONE_AT_A_TIME.lock().await;
    let store = demo_store(&smollm2, &gemma);
    let dir = kokushi_tests::tempfile::tempdir().expect("dir");
    let mut settings = Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = upload_year(&app, &data).await;
    // SmolLM2 measured once, through the API.
    run_and_cost(&app, &run_body(exam.id, SMOL, "generation", 3)).await;

    let session = kokushi_tests::Browser::start(&chromedriver)
        .await
        .expect("browser");
    let browser = session.client.clone();
    sign_in(
        &browser,
        &app.base,
        kokushi_tests::ADMIN_USER,
        kokushi_tests::ADMIN_PASSWORD,
    )
    .await;
    browser.goto(&app.url("/jobs")).await.expect("jobs");
    text_of(&browser, "#eval-model option").await;
    text_of(&browser, "#eval-exam-set option").await;
    click(&browser, &format!("#eval-model option[value='{SMOL}']")).await;
    type_into(&browser, "#eval-limit", "5").await;
    type_into(&browser, "#eval-tokens", "12").await;
    click(&browser, "#eval-estimate").await;
    let shown = wait_text(&browser, "#run-estimate", |t| t.contains("prompt tokens")).await;
    assert!(shown.contains("5 questions"), "{shown}");
    assert!(shown.contains("of answering"), "{shown}");
    assert!(shown.contains(&format!("×{ESTIMATE_FACTOR}")), "{shown}");
    // Nothing queued: still the one run.
    let runs = app.leaderboard().await.expect("board");
    assert_eq!(runs.len(), 1);
    // A change to the form takes the stale estimate away.
    type_into(&browser, "#eval-limit", "6").await;
    let started = std::time::Instant::now();
    while browser
        .find(fantoccini::Locator::Css("#run-estimate"))
        .await
        .is_ok()
    {
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the stale estimate stays"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // A model never run here: tokens, and no time.
    click(&browser, &format!("#eval-model option[value='{GEMMA}']")).await;
    click(&browser, "#eval-estimate").await;
    let shown = wait_text(&browser, "#run-estimate", |t| t.contains("prompt tokens")).await;
    assert!(shown.contains("no time yet"), "{shown}");
    app.stop().await.expect("stop");
}
