//! A run's life through the API with a real Redis and a worker in this process: cancel while
//! queued (the worker drops the job) and while running (the worker stops before its next
//! question, the answers so far are kept), retry (it resumes with the unanswered questions),
//! the refusals of both on finished runs, high-priority jobs taken first, and the per-account
//! limit of queued runs.

use std::sync::Arc;
use std::time::{Duration, Instant};

use kokushi_backend::Settings;
use kokushi_queue::RedisQueue;
use kokushi_shared::api::{RunDetail, RunStatus, RunSummary};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fixture_model_store, service};
use kokushi_worker::{Worker, WorkerConfig};
use reqwest::StatusCode;

async fn create(
    app: &TestApp,
    exam_set_id: i64,
    limit: u32,
    tokens: u32,
    priority: &str,
) -> reqwest::Response {
    app.client
        .post(app.url("/api/runs"))
        .json(&serde_json::json!({
            "exam_set_id": exam_set_id,
            "model": FIXTURE_MODEL,
            "prompt_format": "chatml_ja_v1",
            "limit": limit,
            "max_new_tokens": tokens,
            "priority": priority,
        }))
        .send()
        .await
        .expect("request")
}

async fn act(app: &TestApp, run_id: i64, what: &str) -> (StatusCode, String) {
    let res = app
        .client
        .post(app.url(&format!("/api/runs/{run_id}/{what}")))
        .send()
        .await
        .expect("request");
    (res.status(), res.text().await.expect("text"))
}

async fn detail(app: &TestApp, run_id: i64) -> RunDetail {
    app.run_detail(run_id).await.expect("run")
}

kokushi_tests::on_both_databases!(cancel_retry_priority_limit => runs_are_cancelled_retried_prioritised_and_limited_on_sqlite, runs_are_cancelled_retried_prioritised_and_limited_on_postgres);

async fn cancel_retry_priority_limit(db: String) {
    let Some(redis) = service("KOKUSHI_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!(
        "kokushi-lifecycle-{}-{}",
        std::process::id(),
        kokushi_tests::database_kind(&db)
    );
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(db, store.path());
    settings.redis_url = Some(redis.clone());
    settings.queue_prefix = prefix.clone();
    settings.embedded_worker = false;
    settings.max_queued_per_user = 3;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let queue = Arc::new(RedisQueue::connect(&redis, &prefix).await.expect("redis"));
    let mut worker = Worker::new(
        queue,
        WorkerConfig {
            name: "lifecycle".to_owned(),
            model_store: store.path().to_owned(),
            poll: Duration::from_millis(200),
            remote: None,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 3,
            batch: 1,
            device: kokushi_worker::Device::Cpu,
            memory: None,
        },
    );

    // Cancelled while queued: the worker drops the job; nothing is asked.
    let a: RunSummary = create(&app, exam.id, 3, 6, "normal")
        .await
        .json()
        .await
        .expect("run");
    let (status, _) = act(&app, a.id, "cancel").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(worker.try_execute_next().await.expect("step"), Some(a.id));
    let after = detail(&app, a.id).await;
    assert_eq!(after.run.status, RunStatus::Cancelled);
    assert_eq!(after.run.tally.answered, 0);
    let (status, text) = act(&app, a.id, "cancel").await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    assert!(text.contains("cancelled already"), "{text}");

    // Retried: it runs to the end.
    let (status, _) = act(&app, a.id, "retry").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(detail(&app, a.id).await.run.status, RunStatus::Queued);
    worker.try_execute_next().await.expect("step");
    let done = app
        .wait_for_run(a.id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(done.run.status, RunStatus::Succeeded);
    assert_eq!(done.run.tally.answered, 3);
    let (status, text) = act(&app, a.id, "retry").await;
    assert_eq!(status, StatusCode::CONFLICT, "{text}");
    let (status, _) = act(&app, a.id, "cancel").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = act(&app, 9999, "cancel").await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // A high-priority job is taken before an older normal one.
    let b: RunSummary = create(&app, exam.id, 1, 6, "normal")
        .await
        .json()
        .await
        .expect("run");
    let c: RunSummary = create(&app, exam.id, 1, 6, "high")
        .await
        .json()
        .await
        .expect("run");
    let first = worker.try_execute_next().await.expect("step");
    let second = worker.try_execute_next().await.expect("step");
    assert_eq!(
        (first, second),
        (Some(c.id), Some(b.id)),
        "high before normal"
    );
    // Their progress reaches the server through the queue, a moment after the worker returns:
    // wait until both have left the queue before counting what waits in it.
    for id in [b.id, c.id] {
        app.wait_for_run(id, Duration::from_secs(60))
            .await
            .expect("finishes");
    }

    // The per-account limit of queued runs (3 here).
    let mut refused = None;
    let mut made = Vec::new();
    for _ in 0..4 {
        let res = create(&app, exam.id, 1, 6, "normal").await;
        if res.status() == StatusCode::CONFLICT {
            refused = Some(res.text().await.expect("text"));
            break;
        }
        let status = res.status();
        let text = res.text().await.expect("text");
        assert_eq!(status, StatusCode::CREATED, "{text}");
        made.push(serde_json::from_str::<RunSummary>(&text).expect("run").id);
    }
    assert_eq!(made.len(), 3);
    let refused = refused.expect("the fourth queued run is refused");
    assert!(refused.contains("3 jobs waiting"), "{refused}");
    // Tunings count toward the same limit, and a retry is refused too while the queue is full.
    let res = app
        .client
        .post(app.url("/api/tunings"))
        .json(&serde_json::json!({
            "base_model": FIXTURE_MODEL,
            "adapter": "over-the-limit",
            "data_exam_set_id": exam.id,
            "prompt_format": "chatml_ja_v1",
        }))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let text = res.text().await.expect("text");
    assert!(text.contains("3 jobs waiting"), "{text}");
    for id in &made {
        assert_eq!(act(&app, *id, "cancel").await.0, StatusCode::OK);
    }
    // The cancelled jobs are still on the stream: the worker drops each.
    for _ in &made {
        worker.try_execute_next().await.expect("step");
    }
    app.stop().await.expect("clean stop");
}

kokushi_tests::on_both_databases!(cancelled_while_running => a_run_cancelled_while_running_keeps_its_answers_and_a_retry_finishes_it_on_sqlite, a_run_cancelled_while_running_keeps_its_answers_and_a_retry_finishes_it_on_postgres);

async fn cancelled_while_running(db: String) {
    let Some(redis) = service("KOKUSHI_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!(
        "kokushi-lifecycle-run-{}-{}",
        std::process::id(),
        kokushi_tests::database_kind(&db)
    );
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(db, store.path());
    settings.redis_url = Some(redis.clone());
    settings.queue_prefix = prefix.clone();
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    // Forty questions with long answers, so that the run is still going when cancelled.
    let res = app
        .upload("long", "long.jsonl", kokushi_tests::long_exam("904A", 40))
        .await
        .expect("upload");
    let set: kokushi_shared::api::ImportReport = res.json().await.expect("report");
    let queue = Arc::new(RedisQueue::connect(&redis, &prefix).await.expect("redis"));
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name: "cancel-me".to_owned(),
            model_store: store.path().to_owned(),
            poll: Duration::from_millis(200),
            remote: None,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 3,
            batch: 1,
            device: kokushi_worker::Device::Cpu,
            memory: None,
        },
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let running = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));

    let run: RunSummary = create(&app, set.exam_set.id, 40, 512, "normal")
        .await
        .json()
        .await
        .expect("run");
    let deadline = Instant::now() + Duration::from_secs(120);
    while detail(&app, run.id).await.run.tally.answered < 2 {
        assert!(Instant::now() < deadline, "the run never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (status, _) = act(&app, run.id, "cancel").await;
    assert_eq!(status, StatusCode::OK);
    // The worker stops before its next question: the count settles well below 40.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let settled = detail(&app, run.id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let later = detail(&app, run.id).await;
    assert_eq!(later.run.status, RunStatus::Cancelled);
    assert_eq!(
        later.run.tally.answered, settled.run.tally.answered,
        "no more answers"
    );
    assert!(
        later.run.tally.answered < 40,
        "{}",
        later.run.tally.answered
    );
    let kept = later.run.tally.answered;

    let (status, _) = act(&app, run.id, "retry").await;
    assert_eq!(status, StatusCode::OK);
    let done = app
        .wait_for_run(run.id, Duration::from_secs(240))
        .await
        .expect("finishes");
    let _ = stop_tx.send(true);
    let _ = running.await;
    assert_eq!(
        done.run.status,
        RunStatus::Succeeded,
        "{:?}",
        done.run.error
    );
    assert_eq!(done.run.tally.answered, 40, "exactly every question, once");
    assert!(kept >= 2);
    app.stop().await.expect("clean stop");
}
