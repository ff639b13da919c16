//! Jobs sent to workers and the events workers send back. Both travel as JSON through the
//! queue, so a worker needs only the queue and its model store, never the database.

use serde::{Deserialize, Serialize};

use crate::extract::Extracted;
use crate::prompt::PromptFormat;

/// An evaluation job: everything a worker needs to answer the questions of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalJob {
    pub job_id: i64,
    pub run_id: i64,
    /// A file name inside the worker's model store (never a path).
    pub model: String,
    pub prompt_format: PromptFormat,
    pub max_new_tokens: u32,
    pub questions: Vec<JobQuestion>,
    /// Which lane of the queue the job waits in.
    #[serde(default)]
    pub priority: Priority,
}

/// A job's lane: workers take every `high` job before any `normal` one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
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
        run_id: i64,
        worker: String,
        model_info: String,
    },
    /// One question answered.
    Answer {
        job_id: i64,
        run_id: i64,
        record: AnswerRecord,
    },
    /// `done` of `total` questions answered.
    Progress {
        job_id: i64,
        run_id: i64,
        done: u32,
        total: u32,
    },
    Finished {
        job_id: i64,
        run_id: i64,
    },
    Failed {
        job_id: i64,
        run_id: i64,
        error: String,
    },
}

impl WorkerEvent {
    pub fn run_id(&self) -> i64 {
        match self {
            WorkerEvent::Started { run_id, .. }
            | WorkerEvent::Answer { run_id, .. }
            | WorkerEvent::Progress { run_id, .. }
            | WorkerEvent::Finished { run_id, .. }
            | WorkerEvent::Failed { run_id, .. } => *run_id,
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
}
