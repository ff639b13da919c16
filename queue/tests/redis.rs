//! The Redis transport against a real Redis server (`KOKUSHI_TEST_REDIS_URL`, which
//! `cargo xtask test` provides; outside CI the test is skipped with a message when unset).

use std::time::Duration;

use kokushi_queue::{JobQueue, RedisQueue};
use kokushi_shared::job::{EvalJob, Job, JobQuestion, WorkerEvent};

fn redis_url() -> Option<String> {
    match std::env::var("KOKUSHI_TEST_REDIS_URL") {
        Ok(url) => Some(url),
        Err(_) if std::env::var_os("CI").is_some() => {
            panic!("KOKUSHI_TEST_REDIS_URL must be set in CI (cargo xtask test sets it)")
        }
        Err(_) => {
            eprintln!("skipped: KOKUSHI_TEST_REDIS_URL is not set");
            None
        }
    }
}

fn fresh_prefix() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("kokushi-test-{}-{nanos}", std::process::id())
}

#[tokio::test]
async fn a_job_and_its_events_travel_through_redis_streams_exactly_once() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    let server = RedisQueue::connect(&url, &prefix).await.expect("connect");
    let worker = RedisQueue::connect(&url, &prefix).await.expect("connect");
    let job = Job::Eval(EvalJob {
        job_id: 11,
        attempt: 1,
        run_id: 5,
        model: "tiny.gguf".into(),
        adapter: None,
        settings: kokushi_shared::job::EvalSettings::new(
            kokushi_shared::prompt::PromptFormat::ChatmlJa,
            4,
        ),
        shot_pool: Vec::new(),
        questions: vec![JobQuestion {
            problem_id: "116A1".into(),
            text: "正しいのはどれか。".into(),
            choices: vec!["甲".into(), "乙".into()],
            exam: None,
        }],
        priority: Default::default(),
        needs: Default::default(),
    });

    server.publish_job(&job).await.expect("publish");
    let claimed = worker
        .claim_job("w1", Duration::from_secs(2))
        .await
        .expect("claim")
        .expect("a job");
    let second = worker
        .claim_job("w2", Duration::from_millis(100))
        .await
        .expect("claim");
    worker.ack_job(&claimed.receipt).await.expect("ack");
    worker
        .publish_event(&WorkerEvent::Finished {
            job_id: 11,
            attempt: 1,
            run_id: 5,
        })
        .await
        .expect("event");
    let events = server
        .read_events("s1", Duration::from_secs(2), 10)
        .await
        .expect("read");
    server
        .ack_events(&events.iter().map(|e| e.receipt.clone()).collect::<Vec<_>>())
        .await
        .expect("ack");

    assert_eq!(claimed.item, job);
    assert!(
        second.is_none(),
        "a claimed job must not be delivered twice"
    );
    assert_eq!(events.len(), 1);
    assert_eq!(
        events[0].item,
        WorkerEvent::Finished {
            job_id: 11,
            attempt: 1,
            run_id: 5
        }
    );
}

fn job(job_id: i64, ids: &[&str]) -> Job {
    Job::Eval(EvalJob {
        job_id,
        attempt: 1,
        run_id: job_id,
        model: "tiny.gguf".into(),
        adapter: None,
        settings: kokushi_shared::job::EvalSettings::new(
            kokushi_shared::prompt::PromptFormat::ChatmlJa,
            4,
        ),
        shot_pool: Vec::new(),
        questions: ids
            .iter()
            .map(|id| JobQuestion {
                problem_id: (*id).into(),
                text: "正しいのはどれか。".into(),
                choices: vec!["甲".into(), "乙".into()],
                exam: None,
            })
            .collect(),
        priority: Default::default(),
        needs: Default::default(),
    })
}

fn answer(job_id: i64, problem_id: &str) -> WorkerEvent {
    WorkerEvent::Answer {
        job_id,
        attempt: 1,
        run_id: job_id,
        record: kokushi_shared::job::AnswerRecord {
            problem_id: problem_id.into(),
            raw_output: "a".into(),
            extracted: kokushi_shared::extract::extract("a", &["甲".into(), "乙".into()]),
            rules_version: "letters-v1".into(),
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

#[tokio::test]
async fn a_heartbeating_worker_keeps_its_job_and_a_silent_one_loses_it_with_its_answers_noted() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    let visibility = Duration::from_millis(600);
    let queue = RedisQueue::connect(&url, &prefix)
        .await
        .expect("connect")
        .with_visibility_timeout(visibility);
    queue
        .publish_job(&job(21, &["116A1", "116A2", "116A3"]))
        .await
        .expect("publish");
    let first = queue
        .claim_job("w1", Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("a job");
    queue
        .publish_event(&answer(21, "116A1"))
        .await
        .expect("answer");

    // While w1 heartbeats, nobody else gets the job, however long it takes.
    for _ in 0..4 {
        tokio::time::sleep(visibility / 3).await;
        queue
            .heartbeat_job("w1", &first.receipt)
            .await
            .expect("heartbeat");
        let other = queue
            .claim_job("w2", Duration::from_millis(10))
            .await
            .expect("claim");
        assert!(other.is_none(), "a heartbeating worker keeps its job");
    }
    // w1 falls silent: after the visibility timeout w2 takes it over, as a second delivery,
    // and learns what w1 answered.
    tokio::time::sleep(visibility + Duration::from_millis(200)).await;
    let second = queue
        .claim_job("w2", Duration::from_millis(10))
        .await
        .expect("claim")
        .expect("the silent worker's job");
    let answered = queue.answered(21).await.expect("answered");

    assert_eq!((first.attempt, second.attempt), (1, 2));
    assert_eq!(second.item.job_id(), 21);
    assert_eq!(
        answered.into_iter().collect::<Vec<_>>(),
        ["116A1".to_owned()]
    );
    // Publishing the job again starts its answered set afresh (the database decides what is
    // left).
    queue
        .publish_job(&job(21, &["116A2", "116A3"]))
        .await
        .expect("publish");
    assert!(queue.answered(21).await.expect("answered").is_empty());
}

#[tokio::test]
async fn a_job_given_back_by_a_stopping_worker_is_taken_over_at_once() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    // A long visibility timeout: only the release can make the job claimable this soon.
    let queue = RedisQueue::connect(&url, &prefix)
        .await
        .expect("connect")
        .with_visibility_timeout(Duration::from_secs(3600));
    queue
        .publish_job(&job(41, &["116A1", "116A2"]))
        .await
        .expect("publish");
    let first = queue
        .claim_job("w1", Duration::from_secs(1))
        .await
        .expect("claim")
        .expect("a job");
    queue
        .publish_event(&answer(41, "116A1"))
        .await
        .expect("answer");
    let before = queue
        .claim_job("w2", Duration::from_millis(10))
        .await
        .expect("claim");
    assert!(before.is_none(), "w1 holds the job until it gives it back");

    queue
        .release_job("w1", &first.receipt)
        .await
        .expect("release");
    let second = queue
        .claim_job("w2", Duration::from_millis(10))
        .await
        .expect("claim")
        .expect("the released job, at once");

    assert_eq!(second.item.job_id(), 41);
    assert_eq!(second.attempt, 2);
    assert_eq!(
        queue
            .answered(41)
            .await
            .expect("answered")
            .into_iter()
            .collect::<Vec<_>>(),
        ["116A1".to_owned()]
    );
}

#[tokio::test]
async fn a_loss_of_the_streams_is_reported_once_and_the_groups_come_back() {
    let Some(url) = redis_url() else { return };
    let prefix = fresh_prefix();
    let server_a = RedisQueue::connect(&url, &prefix).await.expect("connect");
    let server_b = RedisQueue::connect(&url, &prefix).await.expect("connect");
    // A new Redis: one server is told to publish what is unfinished.
    let first = [
        server_a.lost_messages().await.expect("a"),
        server_b.lost_messages().await.expect("b"),
    ];
    assert_eq!(first, [true, false]);
    assert!(!server_a.lost_messages().await.expect("again"));

    // Everything of this prefix disappears (as with FLUSHALL, limited to this test's keys).
    let client = redis::Client::open(url.as_str()).expect("url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    let () = redis::cmd("DEL")
        .arg(format!("{prefix}:jobs"))
        .arg(format!("{prefix}:events"))
        .arg(format!("{prefix}:epoch"))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let after = [
        server_b.lost_messages().await.expect("b"),
        server_a.lost_messages().await.expect("a"),
    ];
    assert_eq!(after, [true, false], "exactly one server re-publishes");
    // The groups are back: a job published now is claimed.
    server_b
        .publish_job(&job(31, &["116A1"]))
        .await
        .expect("publish");
    let claimed = server_a
        .claim_job("w", Duration::from_secs(1))
        .await
        .expect("claim");
    assert_eq!(claimed.map(|d| d.item.job_id()), Some(31));
}

#[tokio::test]
async fn a_cancellation_stops_its_attempt_and_earlier_ones_but_not_a_retry() {
    let Some(url) = redis_url() else { return };
    let q = RedisQueue::connect(&url, &fresh_prefix())
        .await
        .expect("connect");
    q.cancel_job(21, 1).await.expect("cancel");
    assert!(q.is_cancelled(21, 1).await.expect("read"));
    assert!(
        !q.is_cancelled(21, 2).await.expect("read"),
        "the retry runs"
    );
    q.publish_job(&job(21, &["116A1"])).await.expect("publish");
    assert!(
        q.is_cancelled(21, 1).await.expect("read"),
        "publishing the retry does not revive the first attempt"
    );
    assert!(!q.is_cancelled(22, 1).await.expect("read"));
}
