//! Jobs routed to the workers that can hold them, through real Redis: a run whose model needs
//! more memory than the only worker holds stays queued with its reason, and the worker that
//! can hold it runs it when it starts.

use std::sync::Arc;
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_queue::RedisQueue;
use kokushi_shared::api::{RunStatus, WorkerInfo};
use kokushi_tests::{TestApp, fixture_model_store, service};
use kokushi_worker::{Worker, WorkerConfig};

const MIB: u64 = 1 << 20;

async fn start_worker(
    redis: &str,
    prefix: &str,
    store: &std::path::Path,
    name: &str,
    memory: u64,
) -> (
    tokio::sync::oneshot::Sender<()>,
    tokio::task::JoinHandle<()>,
) {
    let queue = Arc::new(RedisQueue::connect(redis, prefix).await.expect("redis"));
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name: name.to_owned(),
            model_store: store.to_owned(),
            poll: Duration::from_millis(200),
            remote: None,
            visibility_timeout: Duration::from_secs(3),
            max_attempts: 3,
            batch: 1,
            device: kokushi_worker::Device::Cpu,
            memory: Some(memory),
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let handle = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stopped.await;
    }));
    (stop, handle)
}

async fn workers(app: &TestApp) -> Vec<WorkerInfo> {
    app.get_json("/api/workers")
        .await
        .expect("GET /api/workers")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jobs_too_big_for_the_one_worker_wait_with_their_reason_and_the_next_runs_them() {
    let Some(redis) = service("KOKUSHI_TEST_REDIS_URL") else {
        return;
    };
    let prefix = format!("kokushi-routing-{}", std::process::id());
    let store = fixture_model_store().expect("fixture model");
    let db = tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::embedded(
        format!("sqlite://{}", db.path().join("r.sqlite").display()),
        store.path(),
    );
    settings.redis_url = Some(redis.clone());
    settings.queue_prefix = prefix.clone();
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");

    // A worker that holds 512 MiB: the fixture's job (a prompt of 4,096 positions) needs
    // about 100 MiB, which waits in the 1 GiB class.
    let (stop_small, small) = start_worker(&redis, &prefix, store.path(), "small", 512 * MIB).await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !workers(&app).await.iter().any(|w| w.name == "small") {
        assert!(
            std::time::Instant::now() < deadline,
            "the small worker never reported"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let run = app.create_run(exam.id, 2).await.expect("create run");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let waiting = app.run_detail(run.id).await.expect("detail");
    assert_eq!(
        waiting.run.status,
        RunStatus::Queued,
        "the small worker took it"
    );
    let why = waiting.waiting.expect("a reason to wait");
    assert_eq!(why.largest_worker, Some(512 * MIB));
    assert_eq!(why.class_bound, Some(1024 * MIB));
    assert!(why.needs > 10 * MIB && why.needs <= 1024 * MIB, "{why:?}");
    assert!(why.reason.contains("512 MiB"), "{}", why.reason);
    // A tuning of the same model waits the same way, and says so.
    let tuning: kokushi_shared::api::TuningSummary = app
        .client
        .post(app.url("/api/tunings"))
        .json(&serde_json::json!({
            "base_model": kokushi_tests::FIXTURE_MODEL,
            "adapter": "routed-lora",
            "data_exam_set_id": exam.id,
            "prompt_format": "chatml_ja_v1",
            "steps": 2,
            "batch": 2,
            "validation_share": 0.25,
            "seed": 7,
        }))
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("tuning queued")
        .json()
        .await
        .expect("json");
    let tuning_detail = |id: i64| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/api/tunings/{id}")))
                .send()
                .await
                .expect("request")
                .json::<kokushi_shared::api::TuningDetail>()
                .await
                .expect("json")
        }
    };
    let why = tuning_detail(tuning.id)
        .await
        .waiting
        .expect("the tuning's reason to wait");
    assert_eq!(why.largest_worker, Some(512 * MIB));

    // A worker that holds 2 GiB arrives and runs it.
    let (stop_large, large) =
        start_worker(&redis, &prefix, store.path(), "large", 2048 * MIB).await;
    let done = app
        .wait_for_run(run.id, Duration::from_secs(60))
        .await
        .expect("finishes");
    assert_eq!(
        done.run.status,
        RunStatus::Succeeded,
        "{:?}",
        done.run.error
    );
    assert!(done.waiting.is_none());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let detail = tuning_detail(tuning.id).await;
        if detail.tuning.status.is_finished() {
            assert_eq!(
                detail.tuning.status,
                RunStatus::Succeeded,
                "{:?}",
                detail.tuning.error
            );
            assert!(detail.waiting.is_none());
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the tuning never finished"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let registry = workers(&app).await;
    let capacity = |name: &str| {
        registry
            .iter()
            .find(|w| w.name == name)
            .and_then(|w| w.capacity)
    };
    assert_eq!(
        (capacity("small"), capacity("large")),
        (Some(512 * MIB), Some(2048 * MIB))
    );
    let _ = stop_small.send(());
    let _ = stop_large.send(());
    small.await.expect("small stops");
    large.await.expect("large stops");
    app.stop().await.expect("clean stop");
}
