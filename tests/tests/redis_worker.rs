//! The distributed mode across processes: the server with real Redis and no worker of its
//! own, and a separate `kokushi worker` process that evaluates the fixture model.

use std::process::{Command, Stdio};
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_shared::api::RunStatus;
use kokushi_tests::{KillOnDrop, TestApp, fixture_model_store, service};

kokushi_tests::on_both_databases!(separate_worker => a_separate_worker_process_answers_a_run_through_redis_on_sqlite, a_separate_worker_process_answers_a_run_through_redis_on_postgres);

async fn separate_worker(db: String) {
    let (Some(redis), Some(bin)) = (service("KOKUSHI_TEST_REDIS_URL"), service("KOKUSHI_BIN"))
    else {
        return;
    };
    // Arrange: a fresh key prefix so runs of other tests on the same Redis never mix in.
    let prefix = format!(
        "kokushi-e2e-{}-{}",
        std::process::id(),
        kokushi_tests::database_kind(&db)
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(db, dir.path());
    settings.redis_url = Some(redis.clone());
    settings.queue_prefix = prefix.clone();
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let worker = Command::new(&bin)
        .args(["worker", "--redis-url", &redis, "--queue-prefix", &prefix])
        .args(["--name", "e2e-worker", "--model-store"])
        .arg(store.path())
        .stdout(Stdio::null())
        .spawn()
        .expect("worker process starts");
    let _reaper = KillOnDrop(worker);

    // Act
    let run = app.create_run(exam.id, 5).await.expect("create run");
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("run finishes");

    // Assert
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    assert_eq!(detail.questions.len(), 5, "every text-only question");
    assert!(detail.questions.iter().all(|q| q.answer.is_some()));
    let numeric = detail
        .questions
        .iter()
        .find(|q| q.problem_id == "901C1")
        .expect("the numeric question is asked");
    assert!(numeric.choices.is_empty());

    // The registry lists the worker process with what it has loaded (admins only).
    let workers: Vec<kokushi_shared::api::WorkerInfo> = app
        .client
        .get(app.url("/api/workers"))
        .send()
        .await
        .expect("request")
        .error_for_status()
        .expect("admin may list workers")
        .json()
        .await
        .expect("json");
    let me = workers
        .iter()
        .find(|w| w.name == "e2e-worker")
        .unwrap_or_else(|| panic!("the worker is registered: {workers:?}"));
    assert_eq!(me.model.as_deref(), Some(kokushi_tests::FIXTURE_MODEL));
    assert_eq!(me.run_id, None, "idle after the run");
    // `--device auto` in a build without CUDA: the CPU, with the machine's memory.
    assert_eq!(me.device, "cpu");
    assert!(
        me.device_name
            .as_deref()
            .is_some_and(|n| n.contains("threads")),
        "{:?}",
        me.device_name
    );
    let (free, total) = (
        me.memory_free.expect("free"),
        me.memory_total.expect("total"),
    );
    assert!(0 < free && free <= total, "{free} of {total}");
    let age = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64
        - me.last_seen_unix;
    assert!((0..60).contains(&age), "reported {age} s ago");
    app.stop().await.expect("clean stop");
}
