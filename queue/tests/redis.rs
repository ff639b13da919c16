//! The Redis transport against a real Redis server (`KOKUSHI_TEST_REDIS_URL`, which
//! `cargo xtask test` provides; outside CI the test is skipped with a message when unset).

use std::time::Duration;

use kokushi_queue::{JobQueue, RedisQueue};
use kokushi_shared::job::{EvalJob, JobQuestion, WorkerEvent};
use kokushi_shared::prompt::PromptFormat;

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
    let job = EvalJob {
        job_id: 11,
        run_id: 5,
        model: "tiny.gguf".into(),
        prompt_format: PromptFormat::ChatmlJa,
        max_new_tokens: 4,
        questions: vec![JobQuestion {
            problem_id: "116A1".into(),
            text: "正しいのはどれか。".into(),
            choices: vec!["甲".into(), "乙".into()],
        }],
    };

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
            run_id: 5
        }
    );
}
