//! Faults, with real Redis, real worker processes and a real server process: a worker killed
//! with SIGKILL halfway through a run is replaced and the run ends with each answer once; jobs
//! queued when Redis is flushed (FLUSHALL) still run; a server killed with SIGKILL while a
//! worker streams events is restarted and loses none of them.
//!
//! Each runs on SQLite and on PostgreSQL (`_on_sqlite`, `_on_postgres`). The tests share one
//! Redis and one of them flushes it, so they take turns (a lock).

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kokushi_backend::Settings;
use kokushi_shared::api::{ExamSetSummary, ImportReport, RunDetail, RunStatus, RunSummary};
use kokushi_tests::{
    FIXTURE_MODEL, KillOnDrop, TestApp, fixture_model_store, long_exam, mini_exam_path, service,
};

/// A queue prefix of the test's own: the two databases' runs have the same ids.
fn queue_prefix(test: &str, db: &str) -> String {
    let kind = kokushi_tests::database_kind(db);
    format!("kokushi-fault-{test}-{kind}-{}", std::process::id())
}

/// One fault test at a time: the FLUSHALL would pull the floor from under the others.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Seconds a job may go without a heartbeat before another worker takes it over (short, so the
/// tests do not wait a minute).
const VISIBILITY_SECS: &str = "2";

/// A client of a server at `base` acting with an API token.
struct Api {
    base: String,
    client: reqwest::Client,
}

impl Api {
    fn new(base: String, token: &str) -> Self {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            reqwest::header::HeaderValue::from_str(&format!("Bearer {token}")).expect("header"),
        );
        let client = reqwest::Client::builder()
            .default_headers(headers)
            .build()
            .expect("client");
        Self { base, client }
    }

    fn of(app: &TestApp) -> Self {
        Self::new(app.base.clone(), &app.token)
    }

    async fn upload(&self, name: &str, body: Vec<u8>) -> ExamSetSummary {
        let res = self
            .client
            .post(format!("{}/api/exam-sets", self.base))
            .query(&[("name", name), ("file", "exam.jsonl")])
            .body(body)
            .send()
            .await
            .expect("upload");
        assert!(res.status().is_success(), "upload: {}", res.status());
        res.json::<ImportReport>().await.expect("report").exam_set
    }

    async fn create_run(&self, exam_set_id: i64, limit: u32, max_new_tokens: u32) -> RunSummary {
        let res = self
            .client
            .post(format!("{}/api/runs", self.base))
            .json(&serde_json::json!({
                "exam_set_id": exam_set_id,
                "model": FIXTURE_MODEL,
                "prompt_format": "chatml_ja_v1",
                "limit": limit,
                "max_new_tokens": max_new_tokens,
            }))
            .send()
            .await
            .expect("create run");
        assert!(res.status().is_success(), "create run: {}", res.status());
        res.json().await.expect("run")
    }

    async fn run(&self, id: i64) -> Option<RunDetail> {
        let res = self
            .client
            .get(format!("{}/api/runs/{id}", self.base))
            .send()
            .await
            .ok()?;
        res.json().await.ok()
    }

    /// Polls until `done` holds for the run (or panics after `timeout`).
    async fn wait_until(
        &self,
        id: i64,
        timeout: Duration,
        done: impl Fn(&RunDetail) -> bool,
    ) -> RunDetail {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(detail) = self.run(id).await
                && done(&detail)
            {
                return detail;
            }
            assert!(
                Instant::now() < deadline,
                "run {id} did not get there within {timeout:?}: {:?}",
                self.run(id).await.map(|d| d.run)
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

fn spawn_worker(bin: &Path, redis: &str, prefix: &str, name: &str, store: &Path) -> KillOnDrop {
    spawn_worker_with(bin, redis, prefix, name, store, VISIBILITY_SECS)
}

fn spawn_worker_with(
    bin: &Path,
    redis: &str,
    prefix: &str,
    name: &str,
    store: &Path,
    visibility_secs: &str,
) -> KillOnDrop {
    let child = Command::new(bin)
        .args(["worker", "--redis-url", redis, "--queue-prefix", prefix])
        .args(["--name", name, "--visibility-timeout", visibility_secs])
        .arg("--model-store")
        .arg(store)
        .env("CANDLE_NUM_THREADS", "1")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("worker process starts");
    KillOnDrop(child)
}

/// SIGKILL: no clean-up, no last message.
fn kill_9(process: &mut KillOnDrop) {
    process.0.kill().expect("SIGKILL");
    let _ = process.0.wait();
}

/// Answer events on the stream per problem id, for one run.
async fn answers_on_stream(redis: &str, prefix: &str, run_id: i64) -> BTreeMap<String, usize> {
    let client = redis::Client::open(redis).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let reply: redis::streams::StreamRangeReply = redis::cmd("XRANGE")
        .arg(format!("{prefix}:events"))
        .arg("-")
        .arg("+")
        .query_async(&mut conn)
        .await
        .expect("XRANGE");
    let mut counts = BTreeMap::new();
    for entry in reply.ids {
        let data: String = entry.get("data").unwrap_or_default();
        let event: serde_json::Value = serde_json::from_str(&data).expect("event JSON");
        if event["type"] == "answer" && event["run_id"] == run_id {
            let id = event["record"]["problem_id"].as_str().unwrap_or_default();
            *counts.entry(id.to_owned()).or_insert(0) += 1;
        }
    }
    counts
}

fn settings(db: &str, store: &Path, redis: &str, prefix: &str) -> Settings {
    let mut settings = Settings::embedded(db.to_owned(), store);
    settings.redis_url = Some(redis.to_owned());
    settings.queue_prefix = prefix.to_owned();
    settings.embedded_worker = false;
    settings.visibility_timeout = Duration::from_secs(2);
    settings.reconcile_interval = Duration::from_secs(1);
    settings
}

fn assert_each_answered_once(detail: &RunDetail, n: usize) {
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    assert_eq!(detail.questions.len(), n);
    assert_eq!(detail.run.tally.answered as usize, n, "exactly N answers");
    assert!(detail.questions.iter().all(|q| q.answer.is_some()));
}

const N: usize = 40;
/// Long enough answers that a run of N takes seconds, so a kill lands halfway.
const MAX_NEW_TOKENS: u32 = 512;

kokushi_tests::on_both_databases!(worker_killed_halfway => fault_a_worker_killed_halfway_is_replaced_and_each_question_is_answered_once_on_sqlite, fault_a_worker_killed_halfway_is_replaced_and_each_question_is_answered_once_on_postgres);

async fn worker_killed_halfway(db: String) {
    let (Some(redis), Some(bin)) = (service("KOKUSHI_TEST_REDIS_URL"), service("KOKUSHI_BIN"))
    else {
        return;
    };
    let _turn = SERIAL.lock().await;
    let prefix = queue_prefix("kill", &db);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(settings(&db, dir.path(), &redis, &prefix))
        .await
        .expect("server starts");
    let api = Api::of(&app);
    let exam = api.upload("long", long_exam("902A", N)).await;
    let mut first = spawn_worker(Path::new(&bin), &redis, &prefix, "worker-a", store.path());

    // Act: kill the first worker a few answers in, then start another.
    let run = api
        .create_run(exam.id, u32::try_from(N).expect("n"), MAX_NEW_TOKENS)
        .await;
    let at_kill = api
        .wait_until(run.id, Duration::from_secs(120), |d| {
            d.run.tally.answered >= 3
        })
        .await;
    kill_9(&mut first);
    let answered_by_first = api.run(run.id).await.expect("run").run.tally.answered;
    let _second = spawn_worker(Path::new(&bin), &redis, &prefix, "worker-b", store.path());
    let done = api
        .wait_until(run.id, Duration::from_secs(240), |d| {
            d.run.status.is_finished()
        })
        .await;
    let stream = answers_on_stream(&redis, &prefix, run.id).await;

    // Assert
    assert!(
        (answered_by_first as usize) < N,
        "the kill landed halfway ({answered_by_first} of {N} answered); make the run longer"
    );
    assert_eq!(at_kill.run.status, RunStatus::Running);
    assert_each_answered_once(&done, N);
    assert_eq!(stream.len(), N, "every question answered on the stream");
    let repeated: Vec<_> = stream.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        repeated.is_empty(),
        "the second worker resumed instead of starting over: {repeated:?}"
    );
    app.stop().await.expect("clean stop");
}

// A graceful stop (SIGTERM) gives the job back: another worker takes it over at once — not
// after the visibility timeout, which is an hour here — and resumes it.
kokushi_tests::on_both_databases!(worker_stopped_with_sigterm => fault_a_worker_stopped_with_sigterm_gives_its_job_back_at_once_on_sqlite, fault_a_worker_stopped_with_sigterm_gives_its_job_back_at_once_on_postgres);

async fn worker_stopped_with_sigterm(db: String) {
    let (Some(redis), Some(bin)) = (service("KOKUSHI_TEST_REDIS_URL"), service("KOKUSHI_BIN"))
    else {
        return;
    };
    let _turn = SERIAL.lock().await;
    let prefix = queue_prefix("term", &db);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(settings(&db, dir.path(), &redis, &prefix))
        .await
        .expect("server starts");
    let api = Api::of(&app);
    let exam = api.upload("long", long_exam("903A", N)).await;
    let bin = Path::new(&bin);
    let mut first = spawn_worker_with(bin, &redis, &prefix, "worker-a", store.path(), "3600");

    let run = api
        .create_run(exam.id, u32::try_from(N).expect("n"), MAX_NEW_TOKENS)
        .await;
    api.wait_until(run.id, Duration::from_secs(120), |d| {
        d.run.tally.answered >= 3
    })
    .await;
    let status = Command::new("kill")
        .args(["-TERM", &first.0.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = first.0.wait().expect("the worker exits");
    assert!(exit.success(), "a graceful stop exits 0: {exit:?}");
    let _second = spawn_worker_with(bin, &redis, &prefix, "worker-b", store.path(), "3600");
    let done = api
        .wait_until(run.id, Duration::from_secs(240), |d| {
            d.run.status.is_finished()
        })
        .await;
    let stream = answers_on_stream(&redis, &prefix, run.id).await;

    assert_each_answered_once(&done, N);
    let repeated: Vec<_> = stream.iter().filter(|(_, n)| **n > 1).collect();
    assert!(repeated.is_empty(), "asked twice: {repeated:?}");
    app.stop().await.expect("clean stop");
}

kokushi_tests::on_both_databases!(flushall_with_jobs_queued => fault_flushall_with_jobs_queued_still_runs_them_all_on_sqlite, fault_flushall_with_jobs_queued_still_runs_them_all_on_postgres);

async fn flushall_with_jobs_queued(db: String) {
    let (Some(redis), Some(bin)) = (service("KOKUSHI_TEST_REDIS_URL"), service("KOKUSHI_BIN"))
    else {
        return;
    };
    let _turn = SERIAL.lock().await;
    let prefix = queue_prefix("flush", &db);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(settings(&db, dir.path(), &redis, &prefix))
        .await
        .expect("server starts");
    let api = Api::of(&app);
    let exam = api
        .upload("mini", std::fs::read(mini_exam_path()).expect("fixture"))
        .await;
    let mut runs = Vec::new();
    for limit in [2, 3, 4] {
        runs.push((api.create_run(exam.id, limit, 6).await, limit as usize));
    }

    // Act: Redis loses everything while the jobs wait; then a worker comes.
    let client = redis::Client::open(redis.as_str()).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let queued: usize = redis::cmd("XLEN")
        .arg(format!("{prefix}:jobs"))
        .query_async(&mut conn)
        .await
        .expect("XLEN");
    let () = redis::cmd("FLUSHALL")
        .query_async(&mut conn)
        .await
        .expect("FLUSHALL");
    let _worker = spawn_worker(Path::new(&bin), &redis, &prefix, "worker-c", store.path());
    let mut done = Vec::new();
    for (run, limit) in &runs {
        let detail = api
            .wait_until(run.id, Duration::from_secs(120), |d| {
                d.run.status.is_finished()
            })
            .await;
        done.push((detail, *limit));
    }

    // Assert
    assert_eq!(queued, 3, "the jobs were on the stream before the flush");
    for (detail, limit) in &done {
        assert_each_answered_once(detail, *limit);
    }
    app.stop().await.expect("clean stop");
}

/// `kokushi serve` as a process of its own, so that it can be killed.
fn spawn_server(bin: &Path, db: &str, redis: &str, prefix: &str, port: u16) -> KillOnDrop {
    let child = Command::new(bin)
        .args(["serve", "--database-url", db, "--redis-url", redis])
        .args(["--queue-prefix", prefix, "--embedded-worker", "false"])
        .args([
            "--visibility-timeout",
            VISIBILITY_SECS,
            "--reconcile-interval",
            "1",
        ])
        .args(["--bind", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("server process starts");
    KillOnDrop(child)
}

async fn wait_healthy(base: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while reqwest::get(format!("{base}/api/health")).await.is_err() {
        assert!(Instant::now() < deadline, "{base} did not come up");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

fn kokushi(bin: &Path, args: &[&str], stdin: &str) -> String {
    let mut child: Child = Command::new(bin)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kokushi runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("kokushi ends");
    assert!(
        out.status.success(),
        "kokushi {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

kokushi_tests::on_both_databases!(server_killed_while_a_worker_streams => fault_a_server_killed_while_a_worker_streams_loses_no_event_on_sqlite, fault_a_server_killed_while_a_worker_streams_loses_no_event_on_postgres);

async fn server_killed_while_a_worker_streams(db: String) {
    let (Some(redis), Some(bin)) = (service("KOKUSHI_TEST_REDIS_URL"), service("KOKUSHI_BIN"))
    else {
        return;
    };
    let bin = PathBuf::from(bin);
    let _turn = SERIAL.lock().await;
    let prefix = queue_prefix("restart", &db);
    let store = fixture_model_store().expect("fixture model");
    let db = db.as_str();
    kokushi(
        &bin,
        &[
            "admin",
            "create",
            "--database-url",
            db,
            "--username",
            "ops",
            "--password-stdin",
        ],
        "a password for the fault test\n",
    );
    let token = kokushi(
        &bin,
        &["admin", "token", "--database-url", db, "--username", "ops"],
        "",
    )
    .trim()
    .to_owned();
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let mut server = spawn_server(&bin, db, &redis, &prefix, port);
    wait_healthy(&base).await;
    let api = Api::new(base.clone(), &token);
    let exam = api.upload("long", long_exam("902A", N)).await;
    let _worker = spawn_worker(&bin, &redis, &prefix, "worker-d", store.path());

    // Act: kill the server while answers stream in; the worker goes on; a new server starts.
    let run = api
        .create_run(exam.id, u32::try_from(N).expect("n"), MAX_NEW_TOKENS)
        .await;
    let at_kill = api
        .wait_until(run.id, Duration::from_secs(120), |d| {
            d.run.tally.answered >= 3
        })
        .await;
    kill_9(&mut server);
    tokio::time::sleep(Duration::from_secs(2)).await;
    let port = free_port();
    let base = format!("http://127.0.0.1:{port}");
    let _restarted = spawn_server(&bin, db, &redis, &prefix, port);
    wait_healthy(&base).await;
    let api = Api::new(base, &token);
    let done = api
        .wait_until(run.id, Duration::from_secs(240), |d| {
            d.run.status.is_finished()
        })
        .await;
    let stream = answers_on_stream(&redis, &prefix, run.id).await;

    // Assert: every answer the worker sent is in the database, and none had to be asked again.
    assert!(
        (at_kill.run.tally.answered as usize) < N,
        "the kill landed while answers streamed"
    );
    assert_each_answered_once(&done, N);
    assert_eq!(stream.len(), N);
    assert!(
        stream.values().all(|n| *n == 1),
        "no question was answered twice: {stream:?}"
    );
}

kokushi_tests::on_both_databases!(job_that_keeps_stopping_its_workers => fault_a_job_that_keeps_stopping_its_workers_is_dead_lettered_with_the_reason_on_sqlite, fault_a_job_that_keeps_stopping_its_workers_is_dead_lettered_with_the_reason_on_postgres);

async fn job_that_keeps_stopping_its_workers(db: String) {
    let Some(redis) = service("KOKUSHI_TEST_REDIS_URL") else {
        return;
    };
    let _turn = SERIAL.lock().await;
    let prefix = queue_prefix("dead", &db);
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(settings(&db, dir.path(), &redis, &prefix))
        .await
        .expect("server starts");
    let api = Api::of(&app);
    let exam = api
        .upload("mini", std::fs::read(mini_exam_path()).expect("fixture"))
        .await;
    let run = api.create_run(exam.id, 2, 6).await;
    let visibility = Duration::from_millis(500);
    let queue = std::sync::Arc::new(
        kokushi_queue::RedisQueue::connect(&redis, &prefix)
            .await
            .expect("connect")
            .with_visibility_timeout(visibility),
    );

    // Act: a worker takes the job and dies without a word; the next one, allowed one
    // delivery, gives it up.
    use kokushi_queue::JobQueue;
    let ghost = queue
        .claim_job("ghost", Duration::from_secs(2))
        .await
        .expect("claim")
        .expect("the job");
    tokio::time::sleep(visibility + Duration::from_millis(300)).await;
    let mut worker = kokushi_worker::Worker::new(
        queue.clone(),
        kokushi_worker::WorkerConfig {
            name: "careful".to_owned(),
            model_store: store.path().to_owned(),
            poll: Duration::from_millis(100),
            remote: None,
            visibility_timeout: visibility,
            max_attempts: 1,
            batch: 1,
            device: kokushi_worker::Device::Cpu,
            memory: None,
        },
    );
    let handled = worker.try_execute_next().await.expect("a step");
    let done = api
        .wait_until(run.id, Duration::from_secs(60), |d| {
            d.run.status.is_finished()
        })
        .await;

    // Assert
    assert_eq!(ghost.attempt, 1);
    assert_eq!(handled, Some(ghost.item.job_id()));
    assert_eq!(done.run.status, RunStatus::Failed);
    let error = done.run.error.unwrap_or_default();
    assert!(error.starts_with("dead letter"), "{error}");
    assert_eq!(done.run.tally.answered, 0, "nothing was asked");
    app.stop().await.expect("clean stop");
}
