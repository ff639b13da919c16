//! The in-process queue of the embedded mode: lanes of jobs and events behind the [`JobQueue`]
//! trait. Like Redis, it delivers an event again until it is acknowledged.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use kokushi_shared::job::{Job, Priority, WorkerEvent};
use tokio::sync::{Mutex, Notify};

use crate::{Delivery, JobQueue, QueueError, Receipt};

/// An in-process queue. Messages live only as long as the process; the server re-publishes
/// unfinished jobs from the database at start.
#[derive(Debug, Default)]
pub struct MemoryQueue {
    /// `high` jobs, taken before any in `jobs`.
    urgent: Lane<Job>,
    jobs: Lane<Job>,
    /// Per job, the latest attempt cancelled.
    cancelled: std::sync::Mutex<std::collections::HashMap<i64, u32>>,
    workers: std::sync::Mutex<
        std::collections::BTreeMap<String, (tokio::time::Instant, kokushi_shared::api::WorkerInfo)>,
    >,
    events: Lane<WorkerEvent>,
    /// Events read but not yet acknowledged, with when they were last delivered: delivered
    /// again after [`REDELIVER_AFTER`], as Redis keeps them pending, so an event whose storing
    /// failed (a database hiccup) is not lost.
    unacked: std::sync::Mutex<Vec<(Delivery<WorkerEvent>, tokio::time::Instant)>>,
    next_id: AtomicU64,
    /// Whether [`JobQueue::lost_messages`] has been asked: a new in-process queue holds
    /// nothing, so the first answer is "lost".
    asked: AtomicBool,
}

/// How long a read but unacknowledged event waits before it is delivered again.
const REDELIVER_AFTER: Duration = Duration::from_secs(1);

#[derive(Debug)]
struct Lane<T> {
    items: Mutex<VecDeque<(Receipt, T)>>,
    ready: Notify,
}

impl<T> Default for Lane<T> {
    fn default() -> Self {
        Self {
            items: Mutex::new(VecDeque::new()),
            ready: Notify::new(),
        }
    }
}

impl<T: Clone> Lane<T> {
    async fn push(&self, receipt: Receipt, item: T) {
        self.items.lock().await.push_back((receipt, item));
        // Every waiter looks: the one woken alone might not be able to take the item (a job
        // too large for its worker) while another could.
        self.ready.notify_waiters();
    }

    /// The first item `take` accepts, without waiting.
    async fn take_first(&self, take: impl Fn(&T) -> bool) -> Option<Delivery<T>> {
        let mut items = self.items.lock().await;
        let index = items.iter().position(|(_, item)| take(item))?;
        let (receipt, item) = items.remove(index)?;
        Some(Delivery {
            item,
            receipt,
            attempt: 1,
        })
    }

    async fn take(&self, wait: Duration, max: usize) -> Vec<Delivery<T>> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait is
            // not missed.
            let notified = self.ready.notified();
            {
                let mut items = self.items.lock().await;
                if !items.is_empty() {
                    let n = max.min(items.len());
                    return items
                        .drain(..n)
                        .map(|(receipt, item)| Delivery {
                            item,
                            receipt,
                            attempt: 1,
                        })
                        .collect();
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return Vec::new();
            }
        }
    }
}

impl MemoryQueue {
    pub fn new() -> Self {
        Self::default()
    }

    fn receipt(&self) -> Receipt {
        Receipt(self.next_id.fetch_add(1, Ordering::Relaxed).to_string())
    }
}

#[async_trait]
impl JobQueue for MemoryQueue {
    async fn publish_job(&self, job: &Job) -> Result<(), QueueError> {
        let lane = match job.priority() {
            Priority::High => &self.urgent,
            Priority::Normal => &self.jobs,
        };
        // A claim already waiting on the normal lane sees a high job when its wait ends.
        lane.push(self.receipt(), job.clone()).await;
        Ok(())
    }

    async fn claim_job_within(
        &self,
        _consumer: &str,
        wait: Duration,
        capacity: u64,
    ) -> Result<Option<Delivery<Job>>, QueueError> {
        let fits = |job: &Job| crate::fits(job.needs().memory, capacity);
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            // Register interest before looking, so a push between the look and the wait is
            // not missed.
            let urgent = self.urgent.ready.notified();
            let normal = self.jobs.ready.notified();
            if let Some(job) = self.urgent.take_first(fits).await {
                return Ok(Some(job));
            }
            if let Some(job) = self.jobs.take_first(fits).await {
                return Ok(Some(job));
            }
            tokio::select! {
                () = urgent => {}
                () = normal => {}
                () = tokio::time::sleep_until(deadline) => return Ok(None),
            }
        }
    }

    async fn cancel_job(&self, job_id: i64, attempt: u32) -> Result<(), QueueError> {
        let mut cancelled = self.cancelled.lock().unwrap_or_else(|e| e.into_inner());
        let latest = cancelled.entry(job_id).or_default();
        *latest = (*latest).max(attempt);
        Ok(())
    }

    async fn is_cancelled(&self, job_id: i64, attempt: u32) -> Result<bool, QueueError> {
        Ok(self
            .cancelled
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&job_id)
            .is_some_and(|latest| *latest >= attempt))
    }

    async fn ack_job(&self, _receipt: &Receipt) -> Result<(), QueueError> {
        Ok(())
    }

    async fn publish_event(&self, event: &WorkerEvent) -> Result<(), QueueError> {
        self.events.push(self.receipt(), event.clone()).await;
        Ok(())
    }

    async fn read_events(
        &self,
        _consumer: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery<WorkerEvent>>, QueueError> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let now = tokio::time::Instant::now();
            let (again, next_due) = {
                let mut unacked = self.unacked.lock().unwrap_or_else(|e| e.into_inner());
                let mut again = Vec::new();
                for (delivery, at) in unacked.iter_mut() {
                    if again.len() < max && *at + REDELIVER_AFTER <= now {
                        *at = now;
                        delivery.attempt += 1;
                        again.push(delivery.clone());
                    }
                }
                let next_due = unacked.iter().map(|(_, at)| *at + REDELIVER_AFTER).min();
                (again, next_due)
            };
            if !again.is_empty() {
                return Ok(again);
            }
            // New events, waiting no longer than the next redelivery.
            let until = next_due.map_or(deadline, |due| deadline.min(due));
            let fresh = self
                .events
                .take(until.saturating_duration_since(now), max)
                .await;
            if !fresh.is_empty() {
                let delivered = tokio::time::Instant::now();
                self.unacked
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(fresh.iter().map(|d| (d.clone(), delivered)));
                return Ok(fresh);
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(Vec::new());
            }
        }
    }

    async fn ack_events(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        self.unacked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|(d, _)| !receipts.contains(&d.receipt));
        Ok(())
    }

    async fn report_worker(
        &self,
        info: &kokushi_shared::api::WorkerInfo,
        ttl: Duration,
    ) -> Result<(), QueueError> {
        self.workers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                info.name.clone(),
                (tokio::time::Instant::now() + ttl, info.clone()),
            );
        Ok(())
    }

    async fn workers(&self) -> Result<Vec<kokushi_shared::api::WorkerInfo>, QueueError> {
        let now = tokio::time::Instant::now();
        let mut map = self.workers.lock().unwrap_or_else(|e| e.into_inner());
        map.retain(|_, (until, _)| *until > now);
        Ok(map.values().map(|(_, info)| info.clone()).collect())
    }

    async fn lost_messages(&self) -> Result<bool, QueueError> {
        Ok(!self.asked.swap(true, Ordering::Relaxed))
    }

    fn describe(&self) -> String {
        "in-process queue".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(id: i64) -> Job {
        Job::Eval(kokushi_shared::job::EvalJob {
            job_id: id,
            attempt: 1,
            run_id: id,
            model: "m.gguf".into(),
            adapter: None,
            settings: kokushi_shared::job::EvalSettings::new(
                kokushi_shared::prompt::PromptFormat::ChatmlJa,
                8,
            ),
            shot_pool: Vec::new(),
            questions: vec![],
            priority: Default::default(),
            needs: Default::default(),
        })
    }

    #[tokio::test]
    async fn a_cancellation_stops_its_attempt_and_earlier_ones_but_not_a_retry() {
        let q = MemoryQueue::new();
        q.cancel_job(7, 1).await.expect("cancel");
        assert!(q.is_cancelled(7, 1).await.expect("read"));
        assert!(!q.is_cancelled(7, 2).await.expect("read"), "the retry runs");
        // Publishing the retry does not revive the first attempt.
        q.publish_job(&job(7)).await.expect("publish");
        assert!(q.is_cancelled(7, 1).await.expect("read"));
        q.cancel_job(7, 2).await.expect("cancel");
        assert!(q.is_cancelled(7, 1).await.expect("read"));
        assert!(q.is_cancelled(7, 2).await.expect("read"));
        assert!(!q.is_cancelled(8, 1).await.expect("read"));
    }

    #[tokio::test]
    async fn jobs_come_out_in_the_order_they_went_in() {
        let q = MemoryQueue::new();
        q.publish_job(&job(1)).await.expect("publish");
        q.publish_job(&job(2)).await.expect("publish");
        let a = q.claim_job("w", Duration::ZERO).await.expect("claim");
        let b = q.claim_job("w", Duration::ZERO).await.expect("claim");
        assert_eq!(a.map(|d| d.item.job_id()), Some(1));
        assert_eq!(b.map(|d| d.item.job_id()), Some(2));
    }

    #[tokio::test]
    async fn a_job_waits_for_a_worker_that_can_hold_it() {
        const GIB: u64 = 1 << 30;
        let q = std::sync::Arc::new(MemoryQueue::new());
        let mut big = job(1);
        big.set_needs(kokushi_shared::job::Needs { memory: 20 * GIB });
        q.publish_job(&big).await.expect("publish");
        q.publish_job(&job(2)).await.expect("publish");
        // An 8 GiB worker passes over the big job and takes the small one behind it.
        let small = q
            .claim_job_within("small", Duration::ZERO, 8 * GIB)
            .await
            .expect("claim");
        assert_eq!(small.map(|d| d.item.job_id()), Some(2));
        let nothing = q
            .claim_job_within("small", Duration::from_millis(50), 8 * GIB)
            .await
            .expect("claim");
        assert!(nothing.is_none(), "the big job is not the small worker's");
        // A 24 GiB worker waiting for work wakes for a job it can hold.
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move {
                q.claim_job_within("waiting", Duration::from_secs(5), 24 * GIB)
                    .await
            })
        };
        let got = q
            .claim_job_within("large", Duration::ZERO, 24 * GIB)
            .await
            .expect("claim");
        assert_eq!(got.map(|d| d.item.job_id()), Some(1));
        tokio::time::sleep(Duration::from_millis(20)).await;
        let mut huge = job(3);
        huge.set_needs(kokushi_shared::job::Needs { memory: 10 * GIB });
        q.publish_job(&huge).await.expect("publish");
        let woke = waiter.await.expect("join").expect("claim");
        assert_eq!(woke.map(|d| d.item.job_id()), Some(3));
    }

    #[tokio::test]
    async fn a_waiting_claim_wakes_when_a_job_arrives() {
        let q = std::sync::Arc::new(MemoryQueue::new());
        let waiter = {
            let q = q.clone();
            tokio::spawn(async move { q.claim_job("w", Duration::from_secs(5)).await })
        };
        tokio::time::sleep(Duration::from_millis(50)).await;
        q.publish_job(&job(7)).await.expect("publish");
        let got = waiter.await.expect("join").expect("claim");
        assert_eq!(got.map(|d| d.item.job_id()), Some(7));
    }

    fn progress(done: u32) -> WorkerEvent {
        WorkerEvent::Progress {
            job_id: 1,
            attempt: 1,
            run_id: 1,
            done,
            total: 2,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn an_event_read_but_not_acknowledged_is_delivered_again() {
        let q = MemoryQueue::new();
        q.publish_event(&progress(1)).await.expect("publish");
        q.publish_event(&progress(2)).await.expect("publish");
        let first = q.read_events("b", Duration::ZERO, 10).await.expect("read");
        assert_eq!(first.len(), 2);
        // Only the second is stored and acknowledged.
        q.ack_events(&[first[1].receipt.clone()])
            .await
            .expect("ack");
        let soon = q.read_events("b", Duration::ZERO, 10).await.expect("read");
        assert!(soon.is_empty(), "not before the redelivery delay");
        let later = q
            .read_events("b", Duration::from_secs(5), 10)
            .await
            .expect("read");
        assert_eq!(later.len(), 1);
        assert_eq!(later[0].item, progress(1));
        assert_eq!(later[0].attempt, 2);
        q.ack_events(&[later[0].receipt.clone()])
            .await
            .expect("ack");
        let none = q
            .read_events("b", Duration::from_secs(5), 10)
            .await
            .expect("read");
        assert!(none.is_empty(), "acknowledged events stay gone");
    }

    #[tokio::test]
    async fn an_empty_queue_returns_nothing_after_the_wait() {
        let q = MemoryQueue::new();
        let got = q
            .read_events("b", Duration::from_millis(20), 10)
            .await
            .expect("read");
        assert!(got.is_empty());
    }
}
