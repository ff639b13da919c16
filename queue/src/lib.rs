//! The job protocol between the server and workers: jobs go out on one stream, events come back
//! on another. Two implementations of one trait: Redis Streams with consumer groups for a
//! cluster ([`RedisQueue`]), and an in-process queue for the embedded mode ([`MemoryQueue`]).
//!
//! The database is the record of truth; a queue is only the transport. Losing a message is
//! survivable (the server re-publishes queued jobs), so neither implementation persists
//! anything on its own account.
//!
//! Reliability on Redis (docs/queue.md): a worker heartbeats the job it holds; a job whose
//! worker stopped heartbeating for the visibility timeout is taken over by the next worker that
//! asks ([`JobQueue::claim_job`], XAUTOCLAIM), which skips the questions already answered
//! ([`JobQueue::answered`]); [`Delivery::attempt`] counts deliveries so that a job that keeps
//! killing its workers can be given up (dead letter). [`JobQueue::lost_messages`] tells the
//! server when Redis lost everything (FLUSHALL, a restart without persistence), so that it
//! re-publishes what the database holds as unfinished.
//!
//! Architecture invariant: no actix, no sqlx, no candle.

mod memory;
mod redis_streams;

use std::collections::HashSet;
use std::time::Duration;

use async_trait::async_trait;
use kokushi_shared::job::{Job, WorkerEvent};

pub use memory::MemoryQueue;
pub use redis_streams::RedisQueue;

/// Errors of the transport.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("redis at {url}: {source}")]
    Redis {
        url: String,
        #[source]
        source: redis::RedisError,
    },
    #[error("message {id} on stream {stream} is not a valid {kind}: {source}")]
    Malformed {
        stream: String,
        id: String,
        kind: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the in-process queue was closed")]
    Closed,
}

/// Identifies a delivered message so that it can be acknowledged.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt(pub String);

/// A message taken from a queue, to be acknowledged once handled.
#[derive(Debug, Clone)]
pub struct Delivery<T> {
    pub item: T,
    pub receipt: Receipt,
    /// How many times the message has been delivered: 1 the first time, more when it was
    /// taken over from consumers that stopped without acknowledging it.
    pub attempt: u32,
}

/// The memory classes jobs wait in, by the most GiB a job of the class needs: a job waits in
/// the first class that holds its estimate (`Job::needs`), and a worker that can hold `C` bytes
/// reads every class whose bound is at most `C`. Class 0 holds jobs that need nothing worth
/// routing on (remote models, jobs published before jobs carried their needs); jobs past the
/// last bound wait in one more class, read only by a worker that claims without a limit.
pub const MEMORY_CLASSES_GIB: [u64; 17] = [
    0, 1, 2, 3, 4, 6, 8, 12, 16, 24, 32, 48, 64, 80, 128, 192, 256,
];

const GIB: u64 = 1 << 30;

/// The class a job needing `memory` bytes waits in (`MEMORY_CLASSES_GIB.len()` past the last).
pub fn memory_class(memory: u64) -> usize {
    MEMORY_CLASSES_GIB
        .iter()
        .position(|&bound| memory <= bound.saturating_mul(GIB))
        .unwrap_or(MEMORY_CLASSES_GIB.len())
}

/// The most bytes a job of class `class` needs (`u64::MAX` past the last bound).
pub fn class_bound(class: usize) -> u64 {
    MEMORY_CLASSES_GIB
        .get(class)
        .map_or(u64::MAX, |gib| gib.saturating_mul(GIB))
}

/// The classes a worker that can hold `capacity` bytes reads, the largest first (so that big
/// workers take the jobs only they can hold before the small ones any worker could take).
pub fn classes_within(capacity: u64) -> Vec<usize> {
    (0..=MEMORY_CLASSES_GIB.len())
        .rev()
        .filter(|&class| class_bound(class) <= capacity)
        .collect()
}

/// Whether a worker that can hold `capacity` bytes may take a job needing `memory`.
pub fn fits(memory: u64, capacity: u64) -> bool {
    class_bound(memory_class(memory)) <= capacity
}

/// How long a claimed job may go without a heartbeat before another worker takes it over.
pub const DEFAULT_VISIBILITY_TIMEOUT: Duration = Duration::from_secs(60);

/// The transport between the server and its workers.
///
/// A job taken with [`JobQueue::claim_job`] stays pending until acknowledged; events likewise.
#[async_trait]
pub trait JobQueue: Send + Sync + 'static {
    /// Puts a job on the job stream.
    async fn publish_job(&self, job: &Job) -> Result<(), QueueError>;
    /// Takes the next job for `consumer` that a worker holding `capacity` bytes can run (see
    /// [`fits`]), waiting up to `wait`; jobs it cannot hold stay queued for other workers.
    async fn claim_job_within(
        &self,
        consumer: &str,
        wait: Duration,
        capacity: u64,
    ) -> Result<Option<Delivery<Job>>, QueueError>;
    /// Takes the next job of any size for `consumer`, waiting up to `wait`.
    async fn claim_job(
        &self,
        consumer: &str,
        wait: Duration,
    ) -> Result<Option<Delivery<Job>>, QueueError> {
        self.claim_job_within(consumer, wait, u64::MAX).await
    }
    /// Marks a job as handled.
    async fn ack_job(&self, receipt: &Receipt) -> Result<(), QueueError>;
    /// Puts a worker event on the event stream.
    async fn publish_event(&self, event: &WorkerEvent) -> Result<(), QueueError>;
    /// Takes up to `max` events for `consumer`, waiting up to `wait` for the first.
    async fn read_events(
        &self,
        consumer: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery<WorkerEvent>>, QueueError>;
    /// Marks events as ingested.
    async fn ack_events(&self, receipts: &[Receipt]) -> Result<(), QueueError>;
    /// Tells the queue that `consumer` is still working on the job of `receipt`, so that it is
    /// not handed to another worker. Call it well within the visibility timeout.
    async fn heartbeat_job(&self, _consumer: &str, _receipt: &Receipt) -> Result<(), QueueError> {
        Ok(())
    }
    /// Gives a claimed job back without finishing it (a worker shutting down): the next
    /// worker that asks takes it over at once, as if the visibility timeout had passed, and
    /// resumes it.
    async fn release_job(&self, _consumer: &str, _receipt: &Receipt) -> Result<(), QueueError> {
        Ok(())
    }
    /// The problem ids whose answers to job `job_id` have been published since the job was
    /// last published: a worker that takes a job over skips them.
    async fn answered(&self, _job_id: i64) -> Result<HashSet<String>, QueueError> {
        Ok(HashSet::new())
    }
    /// Asks the workers to stop attempt `attempt` of job `job_id`, and every earlier one: the
    /// worker on it stops before its next question (or step); one that claims it later drops
    /// it. A later attempt (a retry publishes one) is not affected, so a retry never revives
    /// the attempt it replaced, whose worker may still be at work.
    async fn cancel_job(&self, job_id: i64, attempt: u32) -> Result<(), QueueError>;
    /// Whether attempt `attempt` of job `job_id` was cancelled (it, or a later attempt).
    async fn is_cancelled(&self, job_id: i64, attempt: u32) -> Result<bool, QueueError>;
    /// Records a worker's state in the registry (kept for `ttl`, renewed by the next report).
    async fn report_worker(
        &self,
        info: &kokushi_shared::api::WorkerInfo,
        ttl: Duration,
    ) -> Result<(), QueueError>;
    /// Every worker that reported within its time to live, by name.
    async fn workers(&self) -> Result<Vec<kokushi_shared::api::WorkerInfo>, QueueError>;
    /// Whether the transport lost its messages since the last call (Redis flushed, or
    /// restarted without persistence). Exactly one caller among several servers sees `true`
    /// for one loss; it re-publishes every unfinished job from the database.
    async fn lost_messages(&self) -> Result<bool, QueueError> {
        Ok(false)
    }
    /// A short description for logs, without credentials.
    fn describe(&self) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_wait_in_the_smallest_class_that_holds_them() {
        assert_eq!(memory_class(0), 0);
        assert_eq!(memory_class(1), 1);
        assert_eq!(memory_class(GIB), 1);
        assert_eq!(memory_class(GIB + 1), 2);
        assert_eq!(memory_class(23 * GIB), 9); // the 24 GiB class
        assert_eq!(memory_class(300 * GIB), MEMORY_CLASSES_GIB.len());
        assert!(fits(23 * GIB, 24 * GIB) && !fits(23 * GIB, 20 * GIB));
        assert!(fits(0, 0) && !fits(1, 0));
        assert!(fits(u64::MAX, u64::MAX));
        // A 24 GiB worker reads the 24 GiB class down to class 0, largest first.
        let read = classes_within(24 * GIB);
        assert_eq!(read.first(), Some(&9));
        assert_eq!(read.last(), Some(&0));
        assert_eq!(read.len(), 10);
        assert_eq!(classes_within(u64::MAX).len(), MEMORY_CLASSES_GIB.len() + 1);
    }
}
