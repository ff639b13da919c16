//! The worker: takes evaluation jobs from the queue, runs the engine on them, and streams
//! answers and progress back as events.
//!
//! The model lives on one dedicated thread ([`engine_thread`]) fed by commands, so the async
//! side never blocks on a forward pass and a loaded model is reused across jobs.
//!
//! Architecture invariant: no actix, no sqlx. A worker needs only the queue and its model
//! store, never the database.

pub mod answer;
pub mod engine_thread;
pub mod eval;
mod model_store;
pub mod remote;
pub mod tune;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use kokushi_queue::{JobQueue, QueueError};
use kokushi_shared::job::{EvalJob, Job, JudgeJob, TuneJob, TunePoint, WorkerEvent};

pub use engine_thread::EngineThread;
pub use kokushi_engine::{Device, DeviceChoice, TokenCounter};
pub use model_store::{ModelStoreError, adapter_folder, is_plain_name, list_store, resolve_model};

/// Errors that stop the worker loop itself (a failing job is reported as an event instead).
#[derive(Debug, thiserror::Error)]
pub enum WorkerError {
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
    #[error("the engine thread has stopped")]
    EngineGone,
}

/// How a worker is set up.
#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// The consumer name this worker uses on the queue and shows in events.
    pub name: String,
    /// The folder models are loaded from; jobs name files inside it.
    pub model_store: PathBuf,
    /// How long one claim waits for a job before the loop looks around again.
    pub poll: Duration,
    /// How remote models (`openai:<base-url>#<model>`) are called, if this worker calls them at
    /// all: off unless the operator allows it, since a job would otherwise make the worker
    /// send requests (and its API key) to any address a job names.
    pub remote: Option<remote::RemoteOptions>,
    /// How long the queue waits for a heartbeat before handing a claimed job to another
    /// worker; this worker heartbeats three times as often.
    pub visibility_timeout: Duration,
    /// Deliveries of one job after which it is given up (dead letter): a job that stopped
    /// that many workers would likely stop the next one too.
    pub max_attempts: u32,
    /// How many questions are answered together (decoded in one batch by the local engine,
    /// sent at once to a remote server). Changes throughput, never an answer.
    pub batch: usize,
    /// Where models are loaded and jobs run (checked by the caller: `DeviceChoice::resolve`).
    pub device: Device,
    /// The most memory (bytes) a job may need for this worker to take it; `None`: what the
    /// device holds ([`capacity_of`]).
    pub memory: Option<u64>,
}

/// What a worker on `device` can hold when the operator names no limit: a GPU's memory less
/// what its context and kernels take; for the CPU, what the machine has available as the
/// worker starts. `u64::MAX` when the device cannot be asked (every job is offered).
pub fn capacity_of(device: Device) -> u64 {
    capacity_from(device, device.memory())
}

/// [`capacity_of`] from the memory `device` reported.
fn capacity_from(device: Device, memory: Option<kokushi_engine::DeviceMemory>) -> u64 {
    match (device, memory) {
        (Device::Cpu, Some(m)) => m.free,
        (Device::Cuda(_), Some(m)) => m.total.saturating_sub(kokushi_engine::CUDA_OVERHEAD),
        (_, None) => u64::MAX,
    }
}

/// Positions an evaluation prompt is given room for in the memory estimate: IgakuQA's longest
/// questions with eight worked examples stay below it.
pub const PROMPT_POSITIONS: usize = 4096;

/// What an evaluation asks of its model: prompts of up to [`PROMPT_POSITIONS`] and
/// `max_new_tokens` more, `batch` at a time.
pub fn eval_workload(max_new_tokens: u32, batch: usize) -> kokushi_engine::Workload {
    kokushi_engine::Workload {
        positions: PROMPT_POSITIONS + max_new_tokens as usize,
        batch: batch.max(1),
        training: false,
    }
}

/// A worker bound to a queue.
pub struct Worker {
    queue: Arc<dyn JobQueue>,
    config: WorkerConfig,
    engine: EngineThread,
    /// What this worker reports to the registry.
    info: Arc<std::sync::Mutex<kokushi_shared::api::WorkerInfo>>,
    /// The receipt of the job under way, to give back if the worker is stopped.
    current: Option<kokushi_queue::Receipt>,
    /// The most memory a job it takes may need.
    capacity: u64,
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Worker {
    pub fn new(queue: Arc<dyn JobQueue>, config: WorkerConfig) -> Self {
        let threads = std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
            .unwrap_or(1);
        let device = config.device;
        let memory = device.memory();
        let device_name = match device {
            Device::Cpu => Some(match device.model_name() {
                Some(cpu) => format!("{cpu} ({threads} threads)"),
                None => format!("{threads} threads"),
            }),
            Device::Cuda(_) => device.model_name(),
        };
        let capacity = config
            .memory
            .unwrap_or_else(|| capacity_from(device, memory));
        let info = kokushi_shared::api::WorkerInfo {
            name: config.name.clone(),
            capacity: (capacity != u64::MAX).then_some(capacity),
            device: device.to_string(),
            device_name,
            memory_total: memory.map(|m| m.total),
            memory_free: memory.map(|m| m.free),
            model: None,
            run_id: None,
            job_id: None,
            last_seen_unix: unix_now(),
            started_unix: unix_now(),
        };
        Self {
            queue,
            config,
            engine: EngineThread::spawn(),
            info: Arc::new(std::sync::Mutex::new(info)),
            current: None,
            capacity,
        }
    }

    /// Sends this worker's state to the registry now.
    async fn report(&self) {
        let info = {
            let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
            info.last_seen_unix = unix_now();
            if let Some(memory) = self.config.device.memory() {
                info.memory_free = Some(memory.free);
            }
            info.clone()
        };
        if let Err(e) = self
            .queue
            .report_worker(&info, self.config.visibility_timeout * 3)
            .await
        {
            tracing::warn!(error = %e, "reporting to the worker registry failed");
        }
    }

    fn set_job(&self, job: Option<&Job>) {
        let mut info = self.info.lock().unwrap_or_else(|e| e.into_inner());
        info.job_id = job.map(Job::job_id);
        info.run_id = None;
        match job {
            Some(Job::Eval(j)) => {
                info.run_id = Some(j.run_id);
                info.model = Some(match &j.adapter {
                    Some(adapter) => format!("{} + {adapter}", j.model),
                    None => j.model.clone(),
                });
            }
            Some(Job::Tune(j)) => {
                info.model = Some(format!("{} (tuning {})", j.base_model, j.adapter));
            }
            Some(Job::Judge(j)) => {
                info.model = Some(match &j.adapter {
                    Some(adapter) => format!("{} + {adapter} (judge)", j.model),
                    None => format!("{} (judge)", j.model),
                });
            }
            // The model stays loaded between jobs.
            None => {}
        }
    }

    /// The event that tells the server a job failed.
    fn failed(job: &Job, error: String) -> WorkerEvent {
        match job {
            Job::Eval(j) => WorkerEvent::Failed {
                job_id: j.job_id,
                attempt: j.attempt,
                run_id: j.run_id,
                error,
            },
            Job::Tune(j) => WorkerEvent::TuneFailed {
                job_id: j.job_id,
                attempt: j.attempt,
                tuning_id: j.tuning_id,
                error,
            },
            Job::Judge(j) => WorkerEvent::JudgeFailed {
                job_id: j.job_id,
                attempt: j.attempt,
                judge_run_id: j.judge_run_id,
                error,
            },
        }
    }

    /// Claims one job, if one comes within the poll interval, and carries it out to the end.
    /// Returns the job id handled.
    pub async fn try_execute_next(&mut self) -> Result<Option<i64>, WorkerError> {
        let Some(delivery) = self
            .queue
            .claim_job_within(&self.config.name, self.config.poll, self.capacity)
            .await?
        else {
            return Ok(None);
        };
        // Remembered while the job is in hand, so that a stop gives it back. After an error the
        // job may be another worker's by the time this one stops: it is not given back then,
        // and is taken over after the visibility timeout.
        self.current = Some(delivery.receipt.clone());
        let handled = self.carry_out(delivery).await;
        self.current = None;
        handled
    }

    /// Carries a claimed job out to the end (or drops it: dead letter, cancelled).
    async fn carry_out(
        &mut self,
        delivery: kokushi_queue::Delivery<Job>,
    ) -> Result<Option<i64>, WorkerError> {
        let mut job = delivery.item;
        let job_id = job.job_id();
        let span = match &job {
            Job::Eval(j) => tracing::info_span!("job", job_id, run_id = j.run_id),
            Job::Tune(j) => tracing::info_span!("job", job_id, tuning_id = j.tuning_id),
            Job::Judge(j) => tracing::info_span!("job", job_id, judge_run_id = j.judge_run_id),
        };
        let _guard = span.enter();
        match &job {
            Job::Eval(j) => {
                tracing::info!(model = %j.model, adapter = ?j.adapter, questions = j.questions.len(), attempt = delivery.attempt, "evaluation job claimed");
            }
            Job::Tune(j) => {
                tracing::info!(base = %j.base_model, adapter = %j.adapter, examples = j.train.len(), attempt = delivery.attempt, "tuning job claimed");
            }
            Job::Judge(j) => {
                tracing::info!(model = %j.model, adapter = ?j.adapter, items = j.questions.len(), attempt = delivery.attempt, "judge job claimed");
            }
        }
        if delivery.attempt > self.config.max_attempts {
            let error = format!(
                "dead letter: given up after {} deliveries; each worker that took this job \
                 stopped (crashed, was killed or lost its connection) before finishing it",
                delivery.attempt - 1
            );
            tracing::error!(%error, "job dead-lettered");
            self.queue.publish_event(&Self::failed(&job, error)).await?;
            self.queue.ack_job(&delivery.receipt).await?;
            return Ok(Some(job_id));
        }
        if self.queue.is_cancelled(job_id, job.attempt()).await? {
            tracing::info!("job was cancelled before it started; dropped");
            self.queue.ack_job(&delivery.receipt).await?;
            return Ok(Some(job_id));
        }
        let questions = match &mut job {
            Job::Eval(eval) => Some(&mut eval.questions),
            Job::Judge(judge) => Some(&mut judge.questions),
            Job::Tune(_) => None,
        };
        if delivery.attempt > 1
            && let Some(questions) = questions
        {
            // Taken over from a worker that stopped: skip what it already answered.
            let answered = self.queue.answered(job_id).await?;
            questions.retain(|q| !answered.contains(&q.problem_id));
            tracing::info!(
                answered = answered.len(),
                remaining = questions.len(),
                "resuming a job another worker left"
            );
        }
        self.set_job(Some(&job));
        self.report().await;
        // Heartbeats go on beside the engine, however long one answer (or step) takes.
        let heartbeat = {
            let queue = self.queue.clone();
            let consumer = self.config.name.clone();
            let receipt = delivery.receipt.clone();
            let every = (self.config.visibility_timeout / 3).max(Duration::from_millis(100));
            tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = queue.heartbeat_job(&consumer, &receipt).await {
                        tracing::warn!(error = %e, "heartbeat failed");
                    }
                }
            })
        };
        let outcome = match &job {
            Job::Eval(eval) => self
                .execute(eval, Target::Run(eval.run_id))
                .await
                .map(|()| Target::Run(eval.run_id).finished(job_id, eval.attempt)),
            Job::Tune(tune) => self.execute_tune(tune).await,
            Job::Judge(judge) => {
                let target = Target::Judge(judge.judge_run_id);
                self.execute(&as_eval(judge), target)
                    .await
                    .map(|()| target.finished(job_id, judge.attempt))
            }
        };
        heartbeat.abort();
        self.set_job(None);
        self.report().await;
        match outcome {
            Ok(finished) => {
                self.queue.publish_event(&finished).await?;
                tracing::info!("job finished");
            }
            Err(JobFailure::Fatal(e)) => return Err(e),
            // The server already recorded the cancellation; nothing more to say.
            Err(JobFailure::Cancelled) => tracing::info!("job cancelled; stopped"),
            Err(JobFailure::Job(message)) => {
                tracing::warn!(error = ?message, "job failed");
                self.queue
                    .publish_event(&Self::failed(&job, message))
                    .await?;
            }
        }
        self.queue.ack_job(&delivery.receipt).await?;
        Ok(Some(job_id))
    }

    /// Trains the job's adapter into the model store, streaming the loss curve; returns the
    /// event that reports it finished.
    async fn execute_tune(&mut self, job: &TuneJob) -> Result<WorkerEvent, JobFailure> {
        let base = resolve_model(&self.config.model_store, &job.base_model)
            .map_err(|e| JobFailure::Job(e.to_string()))?;
        let out = model_store::adapter_folder(&self.config.model_store, &job.adapter)
            .map_err(|e| JobFailure::Job(e.to_string()))?;
        let plan = (*job.plan).clone();
        let (events, mut heard) = tokio::sync::mpsc::unbounded_channel();
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let command = engine_thread::TuneCommand {
            base,
            device: self.config.device,
            plan,
            train: job.train.clone(),
            validation: job.validation.clone(),
            out,
            events,
            stop: stop.clone(),
        };
        let training = self.engine.tune(command);
        tokio::pin!(training);
        let (job_id, tuning_id) = (job.job_id, job.tuning_id);
        let mut last_cancel_check = Instant::now();
        let mut cancelled = false;
        let result = loop {
            tokio::select! {
                result = &mut training => break result,
                Some(progress) = heard.recv() => {
                    let Some(event) = tune_event(job, &self.config.name, progress) else {
                        continue;
                    };
                    self.queue.publish_event(&event).await?;
                    if last_cancel_check.elapsed() >= Duration::from_secs(1) {
                        last_cancel_check = Instant::now();
                        if self.queue.is_cancelled(job_id, job.attempt).await? {
                            cancelled = true;
                            stop.store(true, std::sync::atomic::Ordering::Relaxed);
                        }
                    }
                }
            }
        };
        // Events sent just before the end are still on the channel.
        while let Ok(progress) = heard.try_recv() {
            if let Some(event) = tune_event(job, &self.config.name, progress) {
                self.queue.publish_event(&event).await?;
            }
        }
        match result {
            Ok(manifest) => Ok(WorkerEvent::TuneFinished {
                job_id,
                attempt: job.attempt,
                tuning_id,
                train_examples: manifest.train_examples as u64,
                validation_examples: manifest.validation_examples as u64,
                too_long: manifest.too_long as u64,
                final_validation_loss: manifest.final_validation_loss,
            }),
            Err(tune::TuneError::Stopped) if cancelled => Err(JobFailure::Cancelled),
            Err(e) => Err(JobFailure::Job(e.to_string())),
        }
    }

    async fn execute(&mut self, job: &EvalJob, target: Target) -> Result<(), JobFailure> {
        let spec = answer::RunSpec {
            settings: job.settings.clone(),
            shot_pool: job.shot_pool.clone(),
            adapter: job.adapter.clone(),
            one_answer: matches!(target, Target::Judge(_)),
        };
        match remote::RemoteSpec::parse(&job.model) {
            Some(spec_of_model) => {
                let model = spec_of_model.map_err(JobFailure::Job)?;
                if job.adapter.is_some() {
                    return Err(JobFailure::Job(
                        "an adapter applies to a model in the store; a remote server loads its own"
                            .to_owned(),
                    ));
                }
                let Some(options) = self.config.remote.clone() else {
                    return Err(JobFailure::Job(format!(
                        "worker {} does not call remote models (start it with \
                         --remote-models to allow {model})",
                        self.config.name
                    )));
                };
                let remote = remote::RemoteModel::connect(model, options)
                    .await
                    .map_err(|e| JobFailure::Job(e.to_string()))?;
                let description = remote.spec().to_string();
                self.answer_all(job, &spec, &remote, description, target)
                    .await
            }
            None => {
                let path = resolve_model(&self.config.model_store, &job.model)
                    .map_err(|e| JobFailure::Job(e.to_string()))?;
                let adapter = job
                    .adapter
                    .as_deref()
                    .map(|name| {
                        resolve_model(&self.config.model_store, name)
                            .map(|dir| (dir, name.to_owned()))
                    })
                    .transpose()
                    .map_err(|e| JobFailure::Job(e.to_string()))?;
                let request = engine_thread::LoadRequest {
                    adapter,
                    keep_quantization: job.settings.keep_quantization,
                    device: self.config.device,
                    workload: Some(eval_workload(
                        job.settings.max_new_tokens,
                        self.config.batch,
                    )),
                    ..engine_thread::LoadRequest::new(path)
                };
                let loaded = self
                    .engine
                    .load(request)
                    .await
                    .map_err(JobFailure::from_engine)?;
                if job.settings.chat_template && loaded.chat_template_hash.is_none() {
                    return Err(JobFailure::Job(format!(
                        "prompt format chat_template: {} has no chat template (pick a prompt \
                         format instead)",
                        job.model
                    )));
                }
                let description = loaded.description.clone();
                let local = answer::local::Local {
                    engine: &self.engine,
                    loaded,
                };
                self.answer_all(job, &spec, &local, description, target)
                    .await
            }
        }
    }

    /// Reports the job started, then answers its questions `batch` at a time through the
    /// evaluation core, streaming each answer and the progress.
    async fn answer_all(
        &self,
        job: &EvalJob,
        spec: &answer::RunSpec,
        answerer: &impl answer::Answerer,
        model_info: String,
        target: Target,
    ) -> Result<(), JobFailure> {
        if let Some(short) = spec.short_of_shots(&job.questions) {
            return Err(JobFailure::Job(format!(
                "{} shot(s) asked, but the job's worked examples give {} fewer than that",
                job.settings.shots, short.problem_id
            )));
        }
        self.queue
            .publish_event(&target.started(
                job,
                self.config.name.clone(),
                model_info,
                spec.prompt_id(answerer),
            ))
            .await?;
        let total = u32::try_from(job.questions.len()).unwrap_or(u32::MAX);
        let mut done = 0u32;
        let mut work = kokushi_shared::job::Work::default();
        for batch in job.questions.chunks(self.config.batch.max(1)) {
            if self.queue.is_cancelled(job.job_id, job.attempt).await? {
                return Err(JobFailure::Cancelled);
            }
            let started = Instant::now();
            let (records, mut measured) = answer::answer_batch_measured(answerer, spec, batch)
                .await
                .map_err(|e| JobFailure::Job(e.to_string()))?;
            measured.busy_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            work.add(&measured);
            for record in records {
                done += 1;
                tracing::info!(
                    problem_id = %record.problem_id,
                    done,
                    total,
                    ms = record.latency_ms,
                    "answered"
                );
                self.queue
                    .publish_event(&target.answer(job, record))
                    .await?;
            }
            if let Target::Run(run_id) = target {
                self.queue
                    .publish_event(&WorkerEvent::Progress {
                        job_id: job.job_id,
                        attempt: job.attempt,
                        run_id,
                        done,
                        total,
                    })
                    .await?;
            }
        }
        self.queue
            .publish_event(&WorkerEvent::Measured {
                job_id: job.job_id,
                attempt: job.attempt,
                work,
            })
            .await?;
        Ok(())
    }

    /// Works until `stop` completes. A job under way when it does is given back to the queue
    /// unfinished ([`JobQueue::release_job`]): the next worker takes it over at once and resumes
    /// it (a worker that dies instead is replaced after the visibility timeout).
    pub async fn run_until_stopped(mut self, stop: impl std::future::Future<Output = ()>) {
        tokio::pin!(stop);
        // The registry hears from this worker every third of its visibility timeout.
        let reporter = {
            let queue = self.queue.clone();
            let info = self.info.clone();
            let every = (self.config.visibility_timeout / 3).max(Duration::from_millis(100));
            let ttl = self.config.visibility_timeout * 3;
            tokio::spawn(async move {
                loop {
                    let snapshot = {
                        let mut info = info.lock().unwrap_or_else(|e| e.into_inner());
                        info.last_seen_unix = unix_now();
                        info.clone()
                    };
                    if let Err(e) = queue.report_worker(&snapshot, ttl).await {
                        tracing::warn!(error = %e, "reporting to the worker registry failed");
                    }
                    tokio::time::sleep(every).await;
                }
            })
        };
        tracing::info!(worker = %self.config.name, queue = %self.queue.describe(), "worker ready");
        loop {
            tokio::select! {
                () = &mut stop => break,
                result = self.try_execute_next() => {
                    if let Err(e) = result {
                        tracing::error!(error = %e, "worker step failed; retrying shortly");
                        if let WorkerError::EngineGone = e {
                            break;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        }
        reporter.abort();
        if let Some(receipt) = self.current.take() {
            match self.queue.release_job(&self.config.name, &receipt).await {
                Ok(()) => {
                    tracing::info!(worker = %self.config.name, "gave the job under way back to the queue")
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not give the job back; it is taken over after the visibility timeout")
                }
            }
        }
        self.set_job(None);
        self.report().await;
        tracing::info!(worker = %self.config.name, "worker stopped");
    }
}

/// Whose answers a job's events report: a run's (an evaluation) or a judge run's.
#[derive(Debug, Clone, Copy)]
enum Target {
    Run(i64),
    Judge(i64),
}

impl Target {
    fn started(
        self,
        job: &EvalJob,
        worker: String,
        model_info: String,
        prompt_id: String,
    ) -> WorkerEvent {
        let (job_id, attempt, prompt_id) = (job.job_id, job.attempt, Some(prompt_id));
        match self {
            Target::Run(run_id) => WorkerEvent::Started {
                job_id,
                attempt,
                run_id,
                worker,
                model_info,
                prompt_id,
            },
            Target::Judge(judge_run_id) => WorkerEvent::JudgeStarted {
                job_id,
                attempt,
                judge_run_id,
                worker,
                model_info,
                prompt_id,
            },
        }
    }

    fn answer(self, job: &EvalJob, record: kokushi_shared::job::AnswerRecord) -> WorkerEvent {
        let (job_id, attempt) = (job.job_id, job.attempt);
        match self {
            Target::Run(run_id) => WorkerEvent::Answer {
                job_id,
                attempt,
                run_id,
                record,
            },
            Target::Judge(judge_run_id) => WorkerEvent::JudgeAnswer {
                job_id,
                attempt,
                judge_run_id,
                record,
            },
        }
    }

    fn finished(self, job_id: i64, attempt: u32) -> WorkerEvent {
        match self {
            Target::Run(run_id) => WorkerEvent::Finished {
                job_id,
                attempt,
                run_id,
            },
            Target::Judge(judge_run_id) => WorkerEvent::JudgeFinished {
                job_id,
                attempt,
                judge_run_id,
            },
        }
    }
}

/// A judge job as the evaluation core answers it: its items are questions (no worked
/// examples).
fn as_eval(job: &JudgeJob) -> EvalJob {
    EvalJob {
        job_id: job.job_id,
        run_id: job.judge_run_id,
        attempt: job.attempt,
        model: job.model.clone(),
        adapter: job.adapter.clone(),
        settings: kokushi_shared::job::EvalSettings {
            shots: 0,
            ..job.settings.clone()
        },
        questions: job.questions.clone(),
        shot_pool: Vec::new(),
        priority: job.priority,
        needs: job.needs,
    }
}

/// The event a tuning run's progress becomes (checkpoints are not reported).
fn tune_event(
    job: &TuneJob,
    worker: &str,
    progress: engine_thread::TuneProgress,
) -> Option<WorkerEvent> {
    let (job_id, tuning_id) = (job.job_id, job.tuning_id);
    let point = match progress {
        engine_thread::TuneProgress::Loaded(model_info) => {
            return Some(WorkerEvent::TuneStarted {
                job_id,
                attempt: job.attempt,
                tuning_id,
                worker: worker.to_owned(),
                model_info,
            });
        }
        engine_thread::TuneProgress::Event(tune::TuneEvent::Step {
            step,
            loss,
            learning_rate,
            grad_norm,
            tokens_per_second,
            ..
        }) => TunePoint {
            step,
            validation: false,
            loss,
            learning_rate: Some(learning_rate),
            grad_norm: Some(grad_norm),
            tokens_per_second: Some(tokens_per_second),
        },
        engine_thread::TuneProgress::Event(tune::TuneEvent::Validation { step, loss }) => {
            TunePoint {
                step,
                validation: true,
                loss,
                learning_rate: None,
                grad_norm: None,
                tokens_per_second: None,
            }
        }
        engine_thread::TuneProgress::Event(tune::TuneEvent::Checkpoint { .. }) => return None,
    };
    Some(WorkerEvent::TunePoint {
        job_id,
        attempt: job.attempt,
        tuning_id,
        point,
    })
}

/// Why a job did not finish: a problem with the job itself (reported, the worker goes on), or
/// with the worker (the loop reports it).
enum JobFailure {
    Job(String),
    /// Cancelled while in progress.
    Cancelled,
    Fatal(WorkerError),
}

impl JobFailure {
    fn from_engine(e: engine_thread::EngineCallError) -> Self {
        match e {
            engine_thread::EngineCallError::Engine(e) => JobFailure::Job(e.to_string()),
            engine_thread::EngineCallError::NotLoaded => {
                JobFailure::Job("no model is loaded".to_owned())
            }
            engine_thread::EngineCallError::Gone => JobFailure::Fatal(WorkerError::EngineGone),
        }
    }
}

impl From<QueueError> for JobFailure {
    fn from(e: QueueError) -> Self {
        JobFailure::Fatal(WorkerError::Queue(e))
    }
}
