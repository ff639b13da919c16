//! Bodies of the HTTP API, shared by the server and the browser.

use serde::{Deserialize, Serialize};

use crate::exam::Gold;
use crate::extract::Extracted;

/// Error codes the API returns in every error body; the frontend matches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidExamSet,
    NotFound,
    PayloadTooLarge,
    Unavailable,
    Internal,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ApiErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Every problem found, for validation errors (file, line, field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<crate::igakuqa::FormatError>,
}

/// Run states, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(self, RunStatus::Succeeded | RunStatus::Failed)
    }
}

/// An exam set as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ExamSetSummary {
    pub id: i64,
    pub name: String,
    pub question_count: u32,
    pub text_only_count: u32,
    pub content_hash: String,
}

/// `POST /api/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CreateRun {
    pub exam_set_id: i64,
    /// A model file name in the model store.
    pub model: String,
    /// A prompt format id, e.g. `chatml_ja_v1`.
    pub prompt_format: String,
    /// Ask only the first N text-only questions.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
}

/// One row of the leaderboard: a run and its scores so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSummary {
    pub id: i64,
    pub exam_set: String,
    pub model: String,
    pub prompt_format: String,
    pub status: RunStatus,
    pub total: u32,
    pub tally: crate::metric::Tally,
    pub created_at: String,
    pub error: Option<String>,
}

/// `GET /api/runs/{id}`: the run and every question with the model's answer if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunDetail {
    pub run: RunSummary,
    pub rules_version: Option<String>,
    pub credit: String,
    pub questions: Vec<QuestionResult>,
}

/// A question of a run with the answer it received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuestionResult {
    pub problem_id: String,
    pub text: String,
    pub choices: Vec<String>,
    pub gold: Gold,
    pub points: u32,
    pub answer: Option<ScoredAnswer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoredAnswer {
    pub raw_output: String,
    pub extracted: Extracted,
    pub correct: bool,
    pub latency_ms: u64,
}

/// The reply to an exam-set import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImportReport {
    pub exam_set: ExamSetSummary,
    /// False when identical content was already stored under this name.
    pub created: bool,
}
