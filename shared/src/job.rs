//! Jobs sent to workers (evaluations and LoRA tunings) and the events workers send back. Both travel as JSON through the
//! queue, so a worker needs only the queue and its model store, never the database.

use serde::{Deserialize, Serialize};

use crate::extract::Extracted;
use crate::prompt::PromptFormat;

/// What travels on the job stream: an evaluation or a tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Eval(EvalJob),
    Tune(TuneJob),
}

impl Job {
    pub fn job_id(&self) -> i64 {
        match self {
            Job::Eval(j) => j.job_id,
            Job::Tune(j) => j.job_id,
        }
    }

    /// Which attempt of its job this is (see [`EvalJob::attempt`]).
    pub fn attempt(&self) -> u32 {
        match self {
            Job::Eval(j) => j.attempt,
            Job::Tune(j) => j.attempt,
        }
    }

    pub fn priority(&self) -> Priority {
        match self {
            Job::Eval(j) => j.priority,
            Job::Tune(j) => j.priority,
        }
    }
}

impl From<EvalJob> for Job {
    fn from(job: EvalJob) -> Self {
        Job::Eval(job)
    }
}

impl From<TuneJob> for Job {
    fn from(job: TuneJob) -> Self {
        Job::Tune(job)
    }
}

/// A tuning job: a LoRA adapter trained on the base model with the examples it carries, and
/// written into the worker's model store under `adapter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneJob {
    pub job_id: i64,
    pub tuning_id: i64,
    /// Which attempt of the job this is (see [`EvalJob::attempt`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The base model: a name inside the worker's model store.
    pub base_model: String,
    /// The new adapter's name inside the model store (a folder the job creates, or resumes
    /// from when a checkpoint of the same plan is there).
    pub adapter: String,
    /// The run plan (`kokushi_worker::tune::RunPlan` as JSON: recipe, seed, steps, data
    /// sources), fixed by the server so that a resumed job trains exactly the same.
    pub plan: serde_json::Value,
    pub train: Vec<crate::tuning::Example>,
    pub validation: Vec<crate::tuning::Example>,
    #[serde(default)]
    pub priority: Priority,
}

/// An evaluation job: everything a worker needs to answer the questions of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalJob {
    pub job_id: i64,
    pub run_id: i64,
    /// Which attempt of the job this is: 1, then one more at each retry. A retried job keeps
    /// its id, so every event carries the attempt it belongs to, and the server ignores the
    /// events of an attempt that is no longer the job's latest (a redelivered `Failed` of the
    /// first attempt must not fail the second). Deliveries of one attempt (a worker taking over
    /// from another) share it.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// A name inside the worker's model store (never a path): a GGUF file or a model folder.
    pub model: String,
    /// A LoRA adapter folder inside the model store, applied to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    pub prompt_format: PromptFormat,
    pub max_new_tokens: u32,
    /// How the answers are chosen (generation unless said otherwise, as older jobs were).
    #[serde(default)]
    pub scoring: Scoring,
    pub questions: Vec<JobQuestion>,
    /// Which lane of the queue the job waits in.
    #[serde(default)]
    pub priority: Priority,
}

/// The attempt of jobs and events written before attempts were counted.
pub fn first_attempt() -> u32 {
    1
}

/// How a run's answers are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// The model writes a reply; the extraction rules read the letters out of it (the seed
    /// studies' method).
    #[default]
    Generation,
    /// No reply: each choice letter's log-probability as the start of the reply is measured,
    /// and the most probable letters (as many as the question asks for) are the answer.
    Loglik,
}

impl Scoring {
    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::Generation => "generation",
            Scoring::Loglik => "loglik",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "generation" => Some(Scoring::Generation),
            "loglik" => Some(Scoring::Loglik),
            _ => None,
        }
    }
}

/// A job's lane: workers take every `high` job before any `normal` one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Priority::High, Priority::Normal]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A question as the worker needs it: no gold answer travels to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobQuestion {
    pub problem_id: String,
    pub text: String,
    pub choices: Vec<String>,
}

/// What a worker reports while it works on a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker took the job and loaded the model.
    Started {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        worker: String,
        model_info: String,
    },
    /// One question answered.
    Answer {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        record: AnswerRecord,
    },
    /// `done` of `total` questions answered.
    Progress {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        done: u32,
        total: u32,
    },
    Finished {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
    },
    Failed {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        error: String,
    },
    /// A tuning job started: the base model is loaded.
    TuneStarted {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        worker: String,
        model_info: String,
    },
    /// A point of the loss curve: a training step, or a validation (`validation: true`).
    TunePoint {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        point: TunePoint,
    },
    TuneFinished {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        train_examples: u64,
        validation_examples: u64,
        too_long: u64,
        final_validation_loss: Option<f64>,
    },
    TuneFailed {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        error: String,
    },
}

/// One point of a tuning run's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunePoint {
    pub step: u64,
    /// A validation loss (`true`) or a training step's loss (`false`).
    pub validation: bool,
    pub loss: f64,
    pub learning_rate: Option<f64>,
    pub grad_norm: Option<f64>,
    pub tokens_per_second: Option<f64>,
}

impl WorkerEvent {
    /// The attempt of its job the event belongs to.
    pub fn attempt(&self) -> u32 {
        match self {
            WorkerEvent::Started { attempt, .. }
            | WorkerEvent::Answer { attempt, .. }
            | WorkerEvent::Progress { attempt, .. }
            | WorkerEvent::Finished { attempt, .. }
            | WorkerEvent::Failed { attempt, .. }
            | WorkerEvent::TuneStarted { attempt, .. }
            | WorkerEvent::TunePoint { attempt, .. }
            | WorkerEvent::TuneFinished { attempt, .. }
            | WorkerEvent::TuneFailed { attempt, .. } => *attempt,
        }
    }

    pub fn job_id(&self) -> i64 {
        match self {
            WorkerEvent::Started { job_id, .. }
            | WorkerEvent::Answer { job_id, .. }
            | WorkerEvent::Progress { job_id, .. }
            | WorkerEvent::Finished { job_id, .. }
            | WorkerEvent::Failed { job_id, .. }
            | WorkerEvent::TuneStarted { job_id, .. }
            | WorkerEvent::TunePoint { job_id, .. }
            | WorkerEvent::TuneFinished { job_id, .. }
            | WorkerEvent::TuneFailed { job_id, .. } => *job_id,
        }
    }
}

/// The model's answer to one question, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub problem_id: String,
    /// The reply exactly as generated.
    pub raw_output: String,
    pub extracted: Extracted,
    /// Which extraction rules produced `extracted`.
    pub rules_version: String,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub latency_ms: u64,
    /// Log-likelihood runs: each choice letter's natural-log probability as the start of the
    /// reply, in choice order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<f64>>,
}
