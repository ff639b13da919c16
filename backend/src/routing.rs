//! Jobs routed to the workers that can hold them: as the server publishes a job, it estimates
//! from the model's header in the store what the job needs ([`needs_of`]), and the queue keeps
//! it in the memory class a worker must be able to hold to take it (`kokushi_queue::fits`).
//! A job no live worker can hold stays queued, and [`waiting_reason`] says why.
//!
//! [`RoutedQueue`] wraps the server's queue so that every publication (a new run or tuning, a
//! retry, the reconciler's re-publications) carries its needs.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use kokushi_queue::{Delivery, JobQueue, QueueError, Receipt};
use kokushi_shared::api::{Waiting, WorkerInfo};
use kokushi_shared::job::{Job, Needs, WorkerEvent};

/// What `job` needs of the worker that runs it: the memory its model takes for the work a
/// worker will ask of it (one prompt of [`kokushi_worker::PROMPT_POSITIONS`] and its answer; a
/// tuning's longest sequence). A remote model, or a model the store cannot describe, needs
/// nothing to route on (the worker reports what is wrong with it).
pub fn needs_of(store: &Path, job: &Job) -> Needs {
    let (model, work) = work_of(job);
    model_needs(store, model, work)
}

/// The model a job runs and what it asks of it.
fn work_of(job: &Job) -> (&str, kokushi_worker::eval::Workload) {
    match job {
        Job::Eval(j) => (
            &j.model,
            kokushi_worker::eval_workload(j.settings.max_new_tokens, 1),
        ),
        Job::Judge(j) => (
            &j.model,
            kokushi_worker::eval_workload(j.settings.max_new_tokens, 1),
        ),
        Job::Tune(j) => (
            &j.base_model,
            kokushi_worker::eval::Workload {
                positions: j.plan.recipe.max_seq_len,
                batch: 1,
                training: true,
            },
        ),
    }
}

/// What `model` (a name in `store`) needs for `work`; nothing for a name the store does not
/// hold as a model (a remote model).
pub fn model_needs(store: &Path, model: &str, work: kokushi_worker::eval::Workload) -> Needs {
    let Ok(path) = kokushi_worker::resolve_model(store, model) else {
        return Needs::default();
    };
    // A queued run's page asks again at every refresh: the header is read once per file
    // version (its path, length and modification time) and workload.
    let key = std::fs::metadata(&path)
        .ok()
        .and_then(|m| Some((path.clone(), m.len(), m.modified().ok()?, work)));
    if let Some(key) = &key
        && let Some(&memory) = lock_estimates().get(key)
    {
        return Needs { memory };
    }
    match kokushi_worker::eval::memory_estimate(&path, work) {
        Ok(estimate) => {
            let memory = estimate.total();
            if let Some(key) = key {
                let mut cache = lock_estimates();
                if cache.len() >= ESTIMATES_KEPT {
                    cache.clear();
                }
                cache.insert(key, memory);
            }
            Needs { memory }
        }
        Err(e) => {
            tracing::warn!(model, error = %e, "cannot estimate the model's memory: routed anywhere");
            Needs::default()
        }
    }
}

/// A file version and workload: the key of an estimate kept.
type EstimateKey = (
    PathBuf,
    u64,
    std::time::SystemTime,
    kokushi_worker::eval::Workload,
);

/// Estimates kept at most (the cache starts over when full).
const ESTIMATES_KEPT: usize = 256;

fn lock_estimates() -> std::sync::MutexGuard<'static, std::collections::HashMap<EstimateKey, u64>> {
    static ESTIMATES: std::sync::OnceLock<
        std::sync::Mutex<std::collections::HashMap<EstimateKey, u64>>,
    > = std::sync::OnceLock::new();
    ESTIMATES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Why a job needing `needs` waits, when no worker of `workers` (the registry's live ones) can
/// hold it; `None` when one can (it is waiting its turn).
pub fn waiting_reason(needs: Needs, workers: &[WorkerInfo]) -> Option<Waiting> {
    let can_hold = |w: &WorkerInfo| {
        w.capacity
            .is_none_or(|capacity| kokushi_queue::fits(needs.memory, capacity))
    };
    if workers.iter().any(can_hold) {
        return None;
    }
    let gib = kokushi_worker::eval::gib;
    let class = kokushi_queue::class_bound(kokushi_queue::memory_class(needs.memory));
    let class_bound = (class != u64::MAX).then_some(class);
    let needed = match class_bound {
        None => format!(
            "needs about {}, more than any memory class holds",
            gib(needs.memory)
        ),
        Some(class) => format!(
            "needs about {} (it waits for a worker that holds {})",
            gib(needs.memory),
            gib(class)
        ),
    };
    let largest_worker = workers.iter().filter_map(|w| w.capacity).max();
    let reason = match largest_worker {
        None => format!("{needed}; no worker is running"),
        Some(largest) => format!("{needed}; the largest worker holds {}", gib(largest)),
    };
    Some(Waiting {
        needs: needs.memory,
        class_bound,
        largest_worker,
        reason,
    })
}

/// Why a queued job of `model` (a name in the store) doing `work` waits, when no live worker
/// can hold it: the run and tuning pages' reason. `None` when a worker can, when the model
/// needs nothing to route on, or when the registry cannot be read (no reason rather than no
/// page).
pub async fn waiting(
    state: &crate::state::AppState,
    model: &str,
    work: kokushi_worker::eval::Workload,
) -> Option<Waiting> {
    let store = state.model_store.clone();
    let model = model.to_owned();
    // A header read: off the async threads.
    let needs = tokio::task::spawn_blocking(move || model_needs(&store, &model, work))
        .await
        .ok()?;
    if needs.memory == 0 {
        return None;
    }
    let workers = state.queue.workers().await.ok()?;
    waiting_reason(needs, &workers)
}

/// The server's queue, with every published job's needs filled in from the model store.
pub struct RoutedQueue {
    inner: Arc<dyn JobQueue>,
    store: PathBuf,
}

impl RoutedQueue {
    pub fn new(inner: Arc<dyn JobQueue>, store: PathBuf) -> Self {
        Self { inner, store }
    }
}

#[async_trait]
impl JobQueue for RoutedQueue {
    async fn publish_job(&self, job: &Job) -> Result<(), QueueError> {
        if job.needs() != Needs::default() {
            return self.inner.publish_job(job).await;
        }
        // The model's name and the work, not the job (a tuning's carries all its examples).
        let (model, work) = work_of(job);
        let (store, model) = (self.store.clone(), model.to_owned());
        // A header read: off the async threads.
        let needs = tokio::task::spawn_blocking(move || model_needs(&store, &model, work))
            .await
            .unwrap_or_default();
        let mut job = job.clone();
        job.set_needs(needs);
        self.inner.publish_job(&job).await
    }
    async fn claim_job_within(
        &self,
        consumer: &str,
        wait: Duration,
        capacity: u64,
    ) -> Result<Option<Delivery<Job>>, QueueError> {
        self.inner.claim_job_within(consumer, wait, capacity).await
    }
    async fn ack_job(&self, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.ack_job(receipt).await
    }
    async fn publish_event(&self, event: &WorkerEvent) -> Result<(), QueueError> {
        self.inner.publish_event(event).await
    }
    async fn read_events(
        &self,
        consumer: &str,
        wait: Duration,
        max: usize,
    ) -> Result<Vec<Delivery<WorkerEvent>>, QueueError> {
        self.inner.read_events(consumer, wait, max).await
    }
    async fn ack_events(&self, receipts: &[Receipt]) -> Result<(), QueueError> {
        self.inner.ack_events(receipts).await
    }
    async fn heartbeat_job(&self, consumer: &str, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.heartbeat_job(consumer, receipt).await
    }
    async fn release_job(&self, consumer: &str, receipt: &Receipt) -> Result<(), QueueError> {
        self.inner.release_job(consumer, receipt).await
    }
    async fn answered(&self, job_id: i64) -> Result<std::collections::HashSet<String>, QueueError> {
        self.inner.answered(job_id).await
    }
    async fn cancel_job(&self, job_id: i64, attempt: u32) -> Result<(), QueueError> {
        self.inner.cancel_job(job_id, attempt).await
    }
    async fn is_cancelled(&self, job_id: i64, attempt: u32) -> Result<bool, QueueError> {
        self.inner.is_cancelled(job_id, attempt).await
    }
    async fn report_worker(&self, info: &WorkerInfo, ttl: Duration) -> Result<(), QueueError> {
        self.inner.report_worker(info, ttl).await
    }
    async fn workers(&self) -> Result<Vec<WorkerInfo>, QueueError> {
        self.inner.workers().await
    }
    async fn lost_messages(&self) -> Result<bool, QueueError> {
        self.inner.lost_messages().await
    }
    fn describe(&self) -> String {
        self.inner.describe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    fn worker(capacity: Option<u64>) -> WorkerInfo {
        WorkerInfo {
            name: "w".into(),
            device: "cuda:0".into(),
            device_name: None,
            memory_total: None,
            memory_free: None,
            capacity,
            model: None,
            run_id: None,
            job_id: None,
            last_seen_unix: 0,
            started_unix: 0,
        }
    }

    #[test]
    fn a_job_waits_with_its_reason_only_when_no_worker_can_hold_it() {
        let big = Needs { memory: 42 * GIB };
        let waiting = waiting_reason(big, &[worker(Some(24 * GIB)), worker(Some(8 * GIB))])
            .expect("nobody holds 42 GiB");
        assert_eq!(waiting.class_bound, Some(48 * GIB));
        assert_eq!(waiting.largest_worker, Some(24 * GIB));
        let reason = waiting.reason;
        assert!(
            reason.contains("42.0 GiB")
                && reason.contains("48.0 GiB")
                && reason.contains("24.0 GiB"),
            "{reason}"
        );
        assert!(waiting_reason(big, &[worker(Some(80 * GIB))]).is_none());
        assert!(waiting_reason(big, &[worker(None)]).is_none(), "no limit");
        let alone = waiting_reason(big, &[]).expect("no workers").reason;
        assert!(alone.contains("no worker is running"), "{alone}");
        assert!(waiting_reason(Needs::default(), &[worker(Some(0))]).is_none());
    }
}
