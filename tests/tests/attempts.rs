//! Events of an earlier attempt, on SQLite and on PostgreSQL. A retried run (or tuning) keeps
//! its job id, and a queue delivers events at least once, late ones included: each race below
//! once left a run or its job in a state it should not have. Workers' events are applied here
//! exactly as ingestion applies them (`kokushi_backend::ingest::apply`), in the order a slow or
//! redelivered stream would bring them; after every step the run's status and its job's agree.

use kokushi_backend::Settings;
use kokushi_backend::db::Db;
use kokushi_backend::ingest::apply;
use kokushi_queue::MemoryQueue;
use kokushi_shared::extract::extract;
use kokushi_shared::job::{AnswerRecord, TunePoint, WorkerEvent};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fixture_model_store, on_both_databases};
use sqlx::Row;

struct World {
    app: TestApp,
    db: Db,
    queue: MemoryQueue,
    exam_set: i64,
    _store: kokushi_tests::tempfile::TempDir,
}

async fn world(database_url: &str) -> World {
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url.to_owned(), store.path());
    // No worker: the test plays the worker's part.
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let db = Db::connect(database_url).await.expect("database");
    World {
        app,
        db,
        queue: MemoryQueue::new(),
        exam_set: exam.id,
        _store: store,
    }
}

impl World {
    /// A new queued run of two questions: (run id, job id).
    async fn run(&self) -> (i64, i64) {
        let run = self.app.create_run(self.exam_set, 2).await.expect("run");
        let job = sqlx::query("SELECT id FROM jobs WHERE run_id = $1")
            .bind(run.id)
            .fetch_one(self.db.pool())
            .await
            .expect("its job")
            .try_get("id")
            .expect("id");
        (run.id, job)
    }

    async fn apply(&self, event: WorkerEvent) {
        apply(&self.db, &self.queue, &event)
            .await
            .expect("an event is applied or ignored, never an error");
    }

    /// The run's status, its job's status and attempt; asserts the two statuses agree.
    async fn state(&self, run: i64) -> (String, u32) {
        let row = sqlx::query(
            "SELECT r.status AS run, j.status AS job, j.attempt FROM runs r \
             JOIN jobs j ON j.run_id = r.id WHERE r.id = $1",
        )
        .bind(run)
        .fetch_one(self.db.pool())
        .await
        .expect("run and job");
        let (run_status, job_status): (String, String) = (
            row.try_get("run").expect("run"),
            row.try_get("job").expect("job"),
        );
        assert_eq!(run_status, job_status, "run {run} and its job disagree");
        let attempt: i64 = row.try_get("attempt").expect("attempt");
        (run_status, u32::try_from(attempt).expect("attempt"))
    }

    async fn answers(&self, run: i64) -> i64 {
        sqlx::query("SELECT COUNT(*) AS n FROM answers WHERE run_id = $1")
            .bind(run)
            .fetch_one(self.db.pool())
            .await
            .expect("count")
            .try_get("n")
            .expect("n")
    }

    async fn post(&self, path: &str) -> reqwest::StatusCode {
        self.app
            .client
            .post(self.app.url(path))
            .send()
            .await
            .expect("request")
            .status()
    }
}

fn started(job: i64, run: i64, attempt: u32) -> WorkerEvent {
    WorkerEvent::Started {
        job_id: job,
        attempt,
        run_id: run,
        worker: format!("worker-of-attempt-{attempt}"),
        model_info: FIXTURE_MODEL.to_owned(),
        prompt_id: None,
    }
}

fn answer(job: i64, run: i64, attempt: u32, problem_id: &str) -> WorkerEvent {
    let choices = ["4", "8", "16", "32", "48"].map(str::to_owned);
    WorkerEvent::Answer {
        job_id: job,
        attempt,
        run_id: run,
        record: AnswerRecord {
            problem_id: problem_id.to_owned(),
            raw_output: "c".to_owned(),
            extracted: extract("c", &choices),
            rules_version: "test".to_owned(),
            prompt_tokens: 1,
            generated_tokens: 1,
            latency_ms: 1,
            choice_logprobs: None,
            choice_logprob_means: None,
            generated: false,
            error: None,
        },
    }
}

fn finished(job: i64, run: i64, attempt: u32) -> WorkerEvent {
    WorkerEvent::Finished {
        job_id: job,
        attempt,
        run_id: run,
    }
}

fn failed(job: i64, run: i64, attempt: u32) -> WorkerEvent {
    WorkerEvent::Failed {
        job_id: job,
        attempt,
        run_id: run,
        error: format!("attempt {attempt} gave up"),
    }
}

async fn attempts_on(database_url: String) {
    let w = world(&database_url).await;

    // A redelivered `Failed` of the first attempt must not fail the retry.
    let (run, job) = w.run().await;
    w.apply(started(job, run, 1)).await;
    assert_eq!(w.state(run).await, ("running".to_owned(), 1));
    w.apply(failed(job, run, 1)).await;
    assert_eq!(w.state(run).await, ("failed".to_owned(), 1));
    assert_eq!(w.post(&format!("/api/runs/{run}/retry")).await, 200);
    assert_eq!(w.state(run).await, ("queued".to_owned(), 2));
    w.apply(failed(job, run, 1)).await;
    assert_eq!(
        w.state(run).await,
        ("queued".to_owned(), 2),
        "a stale Failed changes nothing"
    );
    w.apply(started(job, run, 1)).await;
    assert_eq!(
        w.state(run).await,
        ("queued".to_owned(), 2),
        "nor a stale Started"
    );
    w.apply(answer(job, run, 1, "901A1")).await;
    assert_eq!(w.answers(run).await, 0, "nor a stale answer");
    w.apply(started(job, run, 2)).await;
    assert_eq!(w.state(run).await, ("running".to_owned(), 2));
    w.apply(answer(job, run, 2, "901A1")).await;
    w.apply(answer(job, run, 2, "901A2")).await;
    w.apply(finished(job, run, 1)).await;
    assert_eq!(
        w.state(run).await,
        ("running".to_owned(), 2),
        "nor a stale Finished"
    );
    w.apply(finished(job, run, 2)).await;
    assert_eq!(w.state(run).await, ("succeeded".to_owned(), 2));
    assert_eq!(w.answers(run).await, 2);

    // A cancelled run's job must not end `succeeded` (or `failed`) when the worker's last
    // events arrive after the cancellation.
    let (run, job) = w.run().await;
    w.apply(started(job, run, 1)).await;
    w.apply(answer(job, run, 1, "901A1")).await;
    w.apply(answer(job, run, 1, "901A2")).await;
    assert_eq!(w.post(&format!("/api/runs/{run}/cancel")).await, 200);
    assert_eq!(w.state(run).await, ("cancelled".to_owned(), 1));
    w.apply(finished(job, run, 1)).await;
    assert_eq!(w.state(run).await, ("cancelled".to_owned(), 1));
    w.apply(failed(job, run, 1)).await;
    assert_eq!(w.state(run).await, ("cancelled".to_owned(), 1));

    // Retries racing each other and stale events: exactly one retry wins (the others are
    // refused, 409), the attempt goes up by one, and run and job still agree.
    let (run, job) = w.run().await;
    w.apply(failed(job, run, 1)).await;
    let mut racers = Vec::new();
    for i in 0..8 {
        let client = w.app.client.clone();
        let url = w.app.url(&format!("/api/runs/{run}/retry"));
        racers.push(tokio::spawn(async move {
            if i % 2 == 0 {
                client.post(url).send().await.map(|r| r.status().as_u16())
            } else {
                Ok(0)
            }
        }));
    }
    for _ in 0..4 {
        w.apply(failed(job, run, 1)).await;
        w.apply(started(job, run, 1)).await;
    }
    let mut statuses = Vec::new();
    for racer in racers {
        statuses.push(racer.await.expect("join").expect("request"));
    }
    statuses.retain(|s| *s != 0);
    statuses.sort_unstable();
    assert_eq!(statuses, [200, 409, 409, 409], "one retry wins");
    assert_eq!(w.state(run).await, ("queued".to_owned(), 2));

    w.app.stop().await.expect("clean stop");
}

on_both_databases!(attempts_on => events_of_an_earlier_attempt_are_ignored_sqlite, events_of_an_earlier_attempt_are_ignored_postgres);

async fn tuning_attempts_on(database_url: String) {
    let w = world(&database_url).await;
    let created: serde_json::Value = w
        .app
        .client
        .post(w.app.url("/api/tunings"))
        .json(&serde_json::json!({
            "base_model": FIXTURE_MODEL,
            "adapter": "race-adapter",
            "data_exam_set_id": w.exam_set,
            "prompt_format": "chatml_ja_v1",
            "steps": 1,
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let tuning = created["id"].as_i64().expect("a tuning id");
    let job: i64 = sqlx::query("SELECT id FROM jobs WHERE tuning_id = $1")
        .bind(tuning)
        .fetch_one(w.db.pool())
        .await
        .expect("its job")
        .try_get("id")
        .expect("id");
    let state = || async {
        let row = sqlx::query(
            "SELECT t.status AS tuning, j.status AS job, j.attempt FROM tunings t \
             JOIN jobs j ON j.tuning_id = t.id WHERE t.id = $1",
        )
        .bind(tuning)
        .fetch_one(w.db.pool())
        .await
        .expect("tuning and job");
        let (a, b): (String, String) = (
            row.try_get("tuning").expect("tuning"),
            row.try_get("job").expect("job"),
        );
        assert_eq!(a, b, "tuning and its job disagree");
        (a, row.try_get::<i64, _>("attempt").expect("attempt"))
    };
    let tune_failed = |attempt| WorkerEvent::TuneFailed {
        job_id: job,
        attempt,
        tuning_id: tuning,
        error: "out of memory".to_owned(),
    };
    let tune_started = |attempt| WorkerEvent::TuneStarted {
        job_id: job,
        attempt,
        tuning_id: tuning,
        worker: "w".to_owned(),
        model_info: FIXTURE_MODEL.to_owned(),
    };

    // Cancelled, then a late failure of the same attempt: the job stays cancelled.
    w.apply(tune_started(1)).await;
    assert_eq!(state().await, ("running".to_owned(), 1));
    assert_eq!(w.post(&format!("/api/tunings/{tuning}/cancel")).await, 200);
    w.apply(tune_failed(1)).await;
    assert_eq!(state().await, ("cancelled".to_owned(), 1));

    // Retried: the first attempt's events change nothing, the second's do.
    assert_eq!(w.post(&format!("/api/tunings/{tuning}/retry")).await, 200);
    assert_eq!(state().await, ("queued".to_owned(), 2));
    w.apply(tune_failed(1)).await;
    w.apply(tune_started(1)).await;
    w.apply(WorkerEvent::TunePoint {
        job_id: job,
        attempt: 1,
        tuning_id: tuning,
        point: TunePoint {
            step: 1,
            validation: false,
            loss: 9.0,
            learning_rate: None,
            grad_norm: None,
            tokens_per_second: None,
        },
    })
    .await;
    assert_eq!(state().await, ("queued".to_owned(), 2));
    let points: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tuning_points WHERE tuning_id = $1")
        .bind(tuning)
        .fetch_one(w.db.pool())
        .await
        .expect("count")
        .try_get("n")
        .expect("n");
    assert_eq!(points, 0, "a stale point is not drawn");
    w.apply(tune_started(2)).await;
    w.apply(tune_failed(2)).await;
    assert_eq!(state().await, ("failed".to_owned(), 2));
    w.app.stop().await.expect("clean stop");
}

on_both_databases!(tuning_attempts_on => tuning_events_of_an_earlier_attempt_are_ignored_sqlite, tuning_events_of_an_earlier_attempt_are_ignored_postgres);

/// A run's page and its pages of questions are read from its outcomes as the server keeps them
/// (`state::OutcomeCache`, current while the run's count of answers is): every answer that
/// arrives shows on the next read of each, the summary's rules version included.
async fn pages_follow_answers_on(database_url: String) {
    let w = world(&database_url).await;
    let (run, job) = w.run().await;
    // (answered by the summary, its rules version, answered on the page of questions, how many
    // the `unanswered` filter keeps).
    let read = || async {
        let summary: kokushi_shared::api::RunDetail = w
            .app
            .get_json(&format!("/api/runs/{run}?questions=false"))
            .await
            .expect("summary");
        let rows: Vec<kokushi_shared::api::QuestionResult> = w
            .app
            .get_json(&format!("/api/runs/{run}/questions"))
            .await
            .expect("questions");
        let unanswered = w
            .app
            .client
            .get(
                w.app
                    .url(&format!("/api/runs/{run}/questions?show=unanswered")),
            )
            .send()
            .await
            .expect("request");
        let kept = unanswered
            .headers()
            .get("x-total-count")
            .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
        (
            summary.run.tally.answered,
            summary.rules_version,
            rows.iter().filter(|q| q.answer.is_some()).count(),
            kept,
        )
    };
    assert_eq!(read().await, (0, None, 0, Some(2)));
    // Read twice: the second comes from what the server kept.
    assert_eq!(read().await, (0, None, 0, Some(2)));
    w.apply(started(job, run, 1)).await;
    w.apply(answer(job, run, 1, "901A1")).await;
    assert_eq!(read().await, (1, Some("test".to_owned()), 1, Some(1)));
    w.apply(answer(job, run, 1, "901A2")).await;
    w.apply(finished(job, run, 1)).await;
    assert_eq!(read().await, (2, Some("test".to_owned()), 2, Some(0)));
    assert_eq!(read().await, (2, Some("test".to_owned()), 2, Some(0)));
    w.app.stop().await.expect("clean stop");
}

on_both_databases!(pages_follow_answers_on => run_pages_follow_answers_sqlite, run_pages_follow_answers_postgres);
