//! Bodies of the HTTP API, shared by the server and the browser.

use serde::{Deserialize, Serialize};

use crate::exam::Gold;
use crate::extract::Extracted;

/// Error codes the API returns in every error body; the frontend matches on them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadRequest,
    InvalidExamSet,
    /// Not signed in, or the session or API token is unknown, expired or revoked.
    Unauthorized,
    /// Signed in, but the account's roles do not allow this (or the CSRF token is missing).
    Forbidden,
    NotFound,
    /// The thing already exists (a user name taken).
    Conflict,
    PayloadTooLarge,
    /// Too many failed sign-ins; the message says when to try again.
    TooManyRequests,
    Unavailable,
    Internal,
}

/// The JSON body of every error response.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ApiErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// Every problem found, for validation errors (file, line, field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub details: Vec<crate::igakuqa::FormatError>,
}

/// Run states, in the order a run goes through them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Queued,
    Running,
    Succeeded,
    Failed,
    /// Stopped by a researcher; the answers received so far are kept.
    Cancelled,
}

impl RunStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RunStatus::Queued => "queued",
            RunStatus::Running => "running",
            RunStatus::Succeeded => "succeeded",
            RunStatus::Failed => "failed",
            RunStatus::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ]
        .into_iter()
        .find(|r| r.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            RunStatus::Succeeded | RunStatus::Failed | RunStatus::Cancelled
        )
    }
}

/// An exam set as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExamSetSummary {
    pub id: i64,
    pub name: String,
    pub question_count: u32,
    pub text_only_count: u32,
    pub content_hash: String,
    /// 1 for the first content uploaded under this name, 2 for the next different content, …
    /// (identical content is recognised and keeps its version).
    #[serde(default)]
    pub version: u32,
    #[serde(default)]
    pub created_at: String,
    /// What the import repaired and left out (docs/exam-set-format.md), when anything.
    #[serde(default, skip_serializing_if = "crate::igakuqa::ImportNotes::is_empty")]
    pub import_notes: crate::igakuqa::ImportNotes,
    /// The project that owns the set, when it is shared with the caller's read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_from: Option<String>,
}

/// `POST /api/runs`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateRun {
    pub exam_set_id: i64,
    /// A model file name in the model store.
    pub model: String,
    /// A LoRA adapter folder in the model store, applied to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// A prompt format id, e.g. `chatml_ja_v1`, or `chat_template` for the model's own
    /// template (as `kokushi eval --prompt-format` takes them).
    pub prompt_format: String,
    /// Ask only the first N text-only questions.
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
    /// `generation` (the default: the model writes, the rules read the letters) or `loglik`
    /// (the most probable choice letters; each choice's log-probability is kept).
    #[serde(default)]
    pub scoring: crate::job::Scoring,
    /// In loglik scoring, rank each choice's `letter` (the default) or its `text`.
    #[serde(default)]
    pub loglik_target: crate::job::LoglikTarget,
    /// k-shot: worked examples of other exams before each question (0–8).
    #[serde(default)]
    pub shots: u32,
    /// The exam set worked examples come from (default: the run's own).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shot_pool_exam_set_id: Option<i64>,
    /// The seed of the choice of worked examples (default 20230331).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shot_seed: Option<u64>,
    /// Keep the model file's own quantization (the default); `false` requantizes its
    /// Q5_0/Q5_1 matrices to Q8_0 at load, as runs did before the engine had a 5-bit kernel.
    #[serde(default = "crate::job::keep_quantization_by_default")]
    pub keep_quantization: bool,
    /// `high` jobs are taken before `normal` ones (the default).
    #[serde(default)]
    pub priority: crate::job::Priority,
}

/// One row of the leaderboard: a run and its scores so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunSummary {
    pub id: i64,
    pub exam_set: String,
    pub model: String,
    /// The LoRA adapter applied to `model`, if any.
    #[serde(default)]
    pub adapter: Option<String>,
    pub prompt_format: String,
    /// How the answers are chosen.
    #[serde(default)]
    pub scoring: crate::job::Scoring,
    /// Worked examples before each question (0: zero-shot).
    #[serde(default)]
    pub shots: u32,
    pub status: RunStatus,
    pub total: u32,
    pub tally: crate::metric::Tally,
    /// 95% Wilson interval of the accuracy over the questions answered so far; `None` before
    /// the first answer.
    #[serde(default)]
    pub accuracy_interval: Option<(f64, f64)>,
    /// Once the run has succeeded: its score and pass/fail per exam year, as `kokushi score`
    /// and the run's score page compute them.
    #[serde(default)]
    pub years: Vec<YearVerdict>,
    /// Exact match and the Gestalt method over the answered questions: stored once the run
    /// has succeeded, computed afresh under a leaderboard filter; `None` otherwise.
    #[serde(default)]
    pub metrics: Option<RunMetrics>,
    /// The accuracy once human grades replace the automatic result where annotators agreed
    /// or a reviewer decided; `None` while no answer of the run has been graded.
    #[serde(default)]
    pub human: Option<crate::grading::HumanAdjusted>,
    pub created_at: String,
    pub error: Option<String>,
    /// The project the run belongs to (its name).
    #[serde(default)]
    pub project: String,
    /// On the portal-wide leaderboard (`POST /api/runs/{id}/publish`).
    #[serde(default)]
    pub published: bool,
}

/// The text metrics of the seed papers over a run's answered questions (those with a
/// published answer): how many match the gold letters strictly, match a gold choice's text
/// exactly, and are right by the Gestalt method (the top choices by similarity).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunMetrics {
    /// Answered questions with a published answer: the denominator of the other three.
    pub questions: u32,
    pub correct_strict: u32,
    pub exact_match: u32,
    pub gestalt_correct: u32,
}

/// `GET /api/leaderboard`'s query: which questions every run is scored on. Empty: all, as
/// stored. Lists are comma-separated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaderboardQuery {
    /// Exam years, e.g. `2021,2022`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub years: Option<String>,
    /// Block letters, e.g. `A,D`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub blocks: Option<String>,
    /// `required` (必修問題) or `general`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub section: Option<String>,
    /// A specialty as the exam set names it, e.g. `循環器`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    /// Only questions without an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text_only: Option<bool>,
    /// `project` (default): the caller's project's runs; `portal`: the runs every project has
    /// published.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
}

/// One exam year of a finished run, for the leaderboard.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct YearVerdict {
    /// The exam's number (`116`) and year, when the questions say.
    pub exam: Option<String>,
    pub year: Option<u16>,
    pub questions: u32,
    pub accuracy: f64,
    pub points: u32,
    pub points_max: u32,
    /// Pass or fail against the year's criteria (its rule pack); `None` when none are known or
    /// the run does not hold the whole year.
    pub pass: Option<bool>,
    /// The verdict rests on a provisional figure (a cut-off not yet announced, say).
    #[serde(default)]
    pub provisional: bool,
    /// The version of the year's rule pack the verdict was made under.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rules_version: Option<u32>,
}

/// `GET /api/runs/{id}`: the run and every question with the model's answer if any.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunDetail {
    pub run: RunSummary,
    pub rules_version: Option<String>,
    pub credit: String,
    /// Every question of the run with its answer; empty when asked without them
    /// (`?questions=false`: a page reads them a page at a time from `/api/runs/{id}/questions`).
    pub questions: Vec<QuestionResult>,
    /// The clinical specialties the run's questions name, sorted (empty when none does).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub specialties: Vec<String>,
    /// For a queued run that no live worker can hold: why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// Why a queued job waits: it needs more memory than any live worker holds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Waiting {
    /// Bytes the job is estimated to need (from its model's header).
    pub needs: u64,
    /// Bytes a worker must hold to take it (its memory class); `None` past every class.
    pub class_bound: Option<u64>,
    /// Bytes the largest live worker holds; `None` when no worker is running.
    pub largest_worker: Option<u64>,
    /// The same in a sentence (English).
    pub reason: String,
}

/// `GET /api/runs/{id}`'s query.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunDetailQuery {
    /// `false`: the run without its questions (default `true`: every one).
    #[serde(default)]
    pub questions: Option<bool>,
}

/// Which of a run's questions a page lists.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum QuestionFilter {
    #[default]
    All,
    /// Answered wrongly.
    Wrong,
    /// Answered with nothing the extraction rules could read.
    ParseFailed,
    /// Questions whose gold answer has more than one letter.
    MultiAnswer,
    Unanswered,
}

impl QuestionFilter {
    pub const ALL: [QuestionFilter; 5] = [
        QuestionFilter::All,
        QuestionFilter::Wrong,
        QuestionFilter::ParseFailed,
        QuestionFilter::MultiAnswer,
        QuestionFilter::Unanswered,
    ];

    /// Its name in a query (`?show=wrong`) and in the page's markup.
    pub fn id(self) -> &'static str {
        match self {
            QuestionFilter::All => "all",
            QuestionFilter::Wrong => "wrong",
            QuestionFilter::ParseFailed => "parse-failed",
            QuestionFilter::MultiAnswer => "multi-answer",
            QuestionFilter::Unanswered => "unanswered",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.id() == id)
    }

    /// Whether it keeps a question from what is known of it: whether it was answered, and
    /// then rightly and readably; how many letters its gold answer has.
    pub fn keeps_facts(self, answer: Option<(bool, bool)>, gold_letters: usize) -> bool {
        match self {
            QuestionFilter::All => true,
            QuestionFilter::Wrong => answer.is_some_and(|(correct, _)| !correct),
            QuestionFilter::ParseFailed => answer.is_some_and(|(_, unparsed)| unparsed),
            QuestionFilter::MultiAnswer => gold_letters > 1,
            QuestionFilter::Unanswered => answer.is_none(),
        }
    }

    pub fn keeps(self, q: &QuestionResult) -> bool {
        self.keeps_facts(
            q.answer
                .as_ref()
                .map(|a| (a.correct, a.extracted.is_unparsed())),
            gold_letters(&q.gold),
        )
    }
}

/// How many letters a gold answer is: more than one only for a question asking for several.
pub fn gold_letters(gold: &Gold) -> usize {
    match gold {
        Gold::Letters { letters } => letters.len(),
        _ => 1,
    }
}

/// `GET /api/runs/{id}/questions`' query (with `limit` and `offset`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunQuestionsQuery {
    /// `all` (default), `wrong`, `parse-failed`, `multi-answer` or `unanswered`.
    #[serde(default)]
    pub show: Option<String>,
    /// Only questions of this clinical specialty.
    #[serde(default)]
    pub specialty: Option<String>,
}

/// A question of a run with the answer it received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionResult {
    pub problem_id: String,
    pub text: String,
    pub choices: Vec<String>,
    pub gold: Gold,
    pub points: u32,
    /// The clinical specialty, when the exam set names one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    pub answer: Option<ScoredAnswer>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoredAnswer {
    pub raw_output: String,
    pub extracted: Extracted,
    pub correct: bool,
    pub latency_ms: u64,
    /// Log-likelihood runs: each choice letter's natural-log probability, in choice order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<f64>>,
}

/// The reply to an exam-set import.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ImportReport {
    pub exam_set: ExamSetSummary,
    /// False when identical content was already stored under this name.
    pub created: bool,
}

/// `POST /api/exam-sets?…&preview=true`: what an upload would store, without storing it —
/// every problem, each repair proposed (accept it with `repair=ID:KIND`) or applied, and the
/// records left out.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UploadPreview {
    /// Questions the upload would store as it stands.
    pub questions: u32,
    pub errors: Vec<crate::igakuqa::FormatError>,
    pub proposed: Vec<crate::repair::Repair>,
    pub applied: Vec<crate::repair::Repair>,
    pub excluded: Vec<crate::igakuqa::ExcludedRecord>,
    /// The records refused as they stand (problems at their file and line), to mend or leave
    /// out.
    #[serde(default)]
    pub refused: Vec<crate::igakuqa::RefusedRecord>,
}

/// What an account may do. A user may hold several roles; `admin` may do everything.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Manages users and workers, and may do all a researcher does.
    Admin,
    /// Uploads exam sets, launches runs and tuning jobs, reads every result.
    Researcher,
    /// Grades the items assigned to them, and sees nothing else.
    Annotator,
}

impl Role {
    pub const ALL: [Role; 3] = [Role::Admin, Role::Researcher, Role::Annotator];

    pub fn id(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Researcher => "researcher",
            Role::Annotator => "annotator",
        }
    }

    pub fn from_id(id: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.id() == id)
    }
}

/// `POST /api/auth/login`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Login {
    pub username: String,
    pub password: String,
}

/// `GET /api/auth/me` and the reply to a sign-in: who is signed in, with what roles, and the
/// CSRF token the browser sends back in `X-CSRF-Token` on every state-changing request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Me {
    pub id: i64,
    pub username: String,
    pub roles: Vec<Role>,
    /// Present for a browser session; absent when the request came with an API token.
    #[serde(default)]
    pub csrf_token: Option<String>,
    /// The project the caller acts in (docs/projects.md): a browser session's chosen one (`POST
    /// /api/auth/project`), an API token's own; `None` for an account in no project.
    #[serde(default)]
    pub project: Option<ProjectRef>,
    /// Every project the account may act in (an admin: every project), by name: the header's
    /// switch.
    #[serde(default)]
    pub projects: Vec<ProjectRef>,
    /// The request came with a read-only API token: it may read, never change.
    #[serde(default)]
    pub read_only: bool,
}

/// An account as an admin sees it (`GET /api/users`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserSummary {
    pub id: i64,
    pub username: String,
    pub roles: Vec<Role>,
    pub disabled: bool,
    pub created_at: String,
}

/// `POST /api/users`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateUser {
    pub username: String,
    pub password: String,
    pub roles: Vec<Role>,
}

/// `PATCH /api/users/{id}`: each field present is changed.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UpdateUser {
    #[serde(default)]
    pub roles: Option<Vec<Role>>,
    #[serde(default)]
    pub disabled: Option<bool>,
    #[serde(default)]
    pub password: Option<String>,
}

/// `POST /api/auth/password`: the caller changes their own password.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangePassword {
    pub current_password: String,
    pub new_password: String,
}

/// The reply to `PATCH /api/users/{id}`: the account as changed, and what the change ended. A
/// new password ends every session of the account and revokes its API tokens; disabling it ends
/// its sessions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UserUpdated {
    #[serde(flatten)]
    pub user: UserSummary,
    pub sessions_ended: u64,
    pub tokens_revoked: u64,
}

/// `POST /api/tokens`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateToken {
    pub name: String,
    /// A token that may only read (GET): for dashboards and notebooks.
    #[serde(default)]
    pub read_only: bool,
    /// Days until the token stops working (1 to 3650); none: until revoked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_in_days: Option<u32>,
}

/// A personal API token as listed (`GET /api/tokens`): never its value.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TokenSummary {
    pub id: i64,
    pub name: String,
    pub created_at: String,
    pub last_used_at: Option<String>,
    pub revoked_at: Option<String>,
    /// When the token stops working, if it was made with an expiry.
    #[serde(default)]
    pub expires_at: Option<String>,
    /// The one project the token acts in (its slug): the one its maker was in.
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub read_only: bool,
}

/// The reply to `POST /api/tokens`: the only time the token's value is shown. Send it as
/// `Authorization: Bearer <token>`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct NewToken {
    pub token: String,
    #[serde(flatten)]
    pub summary: TokenSummary,
}

/// A member's role in a project (docs/projects.md). An owner does all a researcher does and
/// manages the project's members; an annotator grades what they are assigned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProjectRole {
    Owner,
    Researcher,
    Annotator,
}

impl ProjectRole {
    pub const ALL: [ProjectRole; 3] = [
        ProjectRole::Owner,
        ProjectRole::Researcher,
        ProjectRole::Annotator,
    ];

    pub fn id(self) -> &'static str {
        match self {
            ProjectRole::Owner => "owner",
            ProjectRole::Researcher => "researcher",
            ProjectRole::Annotator => "annotator",
        }
    }

    pub fn from_id(id: &str) -> Option<ProjectRole> {
        ProjectRole::ALL.into_iter().find(|r| r.id() == id)
    }

    /// The portal role whose endpoints the project role opens, inside its project.
    pub fn grants(self) -> Role {
        match self {
            ProjectRole::Owner | ProjectRole::Researcher => Role::Researcher,
            ProjectRole::Annotator => Role::Annotator,
        }
    }

    /// The project role an account's portal roles give it in the default project.
    pub fn of_roles(roles: &[Role]) -> Option<ProjectRole> {
        if roles.contains(&Role::Admin) {
            Some(ProjectRole::Owner)
        } else if roles.contains(&Role::Researcher) {
            Some(ProjectRole::Researcher)
        } else if roles.contains(&Role::Annotator) {
            Some(ProjectRole::Annotator)
        } else {
            None
        }
    }
}

/// The project a request acts in, and the caller's role there.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectRef {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub role: ProjectRole,
}

/// A project as listed (`GET /api/projects`): the caller's projects (an admin's: all).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectSummary {
    pub id: i64,
    pub slug: String,
    pub name: String,
    pub created_at: String,
    /// The caller's role (`None`: an admin who is not a member).
    pub role: Option<ProjectRole>,
    /// How many members it has.
    pub member_count: u32,
}

/// A member of a project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectMember {
    pub user_id: i64,
    pub username: String,
    pub role: ProjectRole,
    pub added_at: String,
}

/// `GET /api/projects/{id}`: the project with its members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectDetail {
    #[serde(flatten)]
    pub project: ProjectSummary,
    pub members: Vec<ProjectMember>,
}

/// `POST /api/projects` (admins): a new project and its first owners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateProject {
    /// Lower-case letters, digits and `-`, 2 to 40 characters: `cardiology-2026`.
    pub slug: String,
    pub name: String,
    /// User names of its owners (an admin may add owners later too).
    #[serde(default)]
    pub owners: Vec<String>,
}

/// `POST /api/projects/{id}/members`: adds an account to the project, or changes its role.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SetMember {
    pub username: String,
    pub role: ProjectRole,
}

/// `POST /api/auth/project`: the project a browser session acts in from now on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SwitchProject {
    pub project_id: i64,
}

/// `POST /api/exam-sets/{id}/shares`: shares the set read-only with another project.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ShareExamSet {
    /// The other project's slug.
    pub project: String,
}

/// A worker as the registry knows it (`GET /api/workers`): each worker reports itself every
/// few seconds and at every job's start and end; one that stops reporting drops out of the
/// list after three of its visibility timeouts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WorkerInfo {
    pub name: String,
    /// `cpu` or `cuda:N`: where its models run.
    pub device: String,
    /// What the device is (`NVIDIA A100-SXM4-40GB`; the CPU's model and the threads used), when
    /// known.
    #[serde(default)]
    pub device_name: Option<String>,
    /// Bytes the device holds, when known (the GPU's memory; the machine's for the CPU).
    #[serde(default)]
    pub memory_total: Option<u64>,
    /// Bytes free on the device at its last report (for the CPU: available memory).
    #[serde(default)]
    pub memory_free: Option<u64>,
    /// The most memory a job may need for this worker to take it (jobs wait in memory classes:
    /// it takes those whose class bound is at most this); `None`: any job.
    #[serde(default)]
    pub capacity: Option<u64>,
    /// The model it has loaded, if any.
    pub model: Option<String>,
    /// The run it is working on, if any.
    pub run_id: Option<i64>,
    pub job_id: Option<i64>,
    /// Seconds since the Unix epoch of its last report.
    pub last_seen_unix: i64,
    /// Seconds since the Unix epoch when it started.
    pub started_unix: i64,
}

/// One entry of the model store (`GET /api/models`): a model file or folder, or a LoRA
/// adapter, described from its headers without loading it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoreEntry {
    /// The entry's name inside the store: what a run's `model` (or `adapter`) names.
    pub name: String,
    /// `gguf`, `safetensors` (a Hugging Face model folder), `peft-lora` (an adapter), or
    /// `unknown` when it could not be read (see `problem`).
    pub format: String,
    pub architecture: Option<String>,
    pub quantization: Option<String>,
    pub parameters: Option<u64>,
    pub size_bytes: u64,
    /// Whether a run can use it now.
    pub runnable: bool,
    /// An adapter's base model as its files name it.
    pub base_model: Option<String>,
    /// The store entry that base model is, when it is in the store.
    pub base_entry: Option<String>,
    pub rank: Option<u64>,
    pub alpha: Option<f64>,
    /// Why the entry cannot be used: unreadable, not a model, or a link out of the store.
    pub problem: Option<String>,
}

/// `POST /api/tunings`: train a LoRA adapter on an uploaded exam set's questions and answers,
/// then (with `evaluate`) evaluate the base model and the tuned one on another exam set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateTuning {
    /// The base model: a name in the model store.
    pub base_model: String,
    /// The adapter's name: a new folder in the model store.
    pub adapter: String,
    /// The exam set whose text-only questions with published answers are the examples.
    pub data_exam_set_id: i64,
    /// The prompt format the examples are written in (the one the evaluations then use).
    pub prompt_format: String,
    /// `small` (default), `jmedlora-7b` or `jmedlora-70b`.
    #[serde(default)]
    pub preset: Option<String>,
    /// Optimizer steps; default one epoch of the training examples.
    #[serde(default)]
    pub steps: Option<u64>,
    /// Examples a step (the preset's otherwise).
    #[serde(default)]
    pub batch: Option<usize>,
    /// Peak learning rate (the preset's otherwise).
    #[serde(default)]
    pub learning_rate: Option<f64>,
    #[serde(default)]
    pub seed: Option<u64>,
    /// Share of the examples held out for validation (default 0.1).
    #[serde(default)]
    pub validation_share: Option<f64>,
    /// Evaluate base and tuned model once the adapter is trained.
    #[serde(default)]
    pub evaluate: Option<ChainedEvaluation>,
    #[serde(default)]
    pub priority: crate::job::Priority,
}

/// The evaluations a tuning chains: the base model and the tuned one on one exam set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainedEvaluation {
    pub exam_set_id: i64,
    #[serde(default)]
    pub limit: Option<u32>,
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
}

/// A tuning as listed by the API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TuningSummary {
    pub id: i64,
    pub adapter: String,
    pub base_model: String,
    pub data_exam_set: String,
    pub preset: String,
    pub prompt_format: String,
    pub status: RunStatus,
    pub steps: u64,
    /// The last training step reported.
    pub steps_done: u64,
    pub last_loss: Option<f64>,
    pub final_validation_loss: Option<f64>,
    pub train_examples: Option<u64>,
    pub validation_examples: Option<u64>,
    pub too_long: Option<u64>,
    pub worker: Option<String>,
    pub model_info: Option<String>,
    pub error: Option<String>,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The chained evaluation of the base model, once created.
    pub base_run_id: Option<i64>,
    /// The chained evaluation of the tuned model, once created.
    pub tuned_run_id: Option<i64>,
}

/// `GET /api/tunings/{id}`: the tuning and its loss curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TuningDetail {
    pub tuning: TuningSummary,
    pub points: Vec<crate::job::TunePoint>,
    /// For a queued tuning that no live worker can hold: why it waits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub waiting: Option<Waiting>,
}

/// `GET /api/compare?first=A&second=B`: two runs of the same exam set, question by question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunComparison {
    pub first: RunSummary,
    pub second: RunSummary,
    /// Counts of (first, second) correct/wrong pairs, the exact McNemar p-value, and the paired
    /// bootstrap interval of the points difference (first minus second).
    pub comparison: crate::stats::PairedComparison,
    /// Confidence level of the interval.
    pub confidence: f64,
    /// Each run's accuracy over the compared questions (those with a published answer).
    pub first_accuracy: f64,
    pub second_accuracy: f64,
    /// The questions where the two runs' answers or verdicts differ, in exam order.
    pub differing: Vec<DifferingQuestion>,
}

/// One question two runs answered differently.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DifferingQuestion {
    pub problem_id: String,
    pub text: String,
    /// The gold answer as shown (`b,d`, `26`).
    pub gold: String,
    /// The first run's parsed answer (`None`: no answer; empty: the parse failed).
    pub first: Option<String>,
    pub first_correct: bool,
    pub second: Option<String>,
    pub second_correct: bool,
}

/// `GET /api/runs/{id}/questions/{problem_id}`: one question of a run, with every metric of
/// its answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionView {
    pub run: RunSummary,
    pub question: crate::exam::Question,
    /// `None` until the run has answered it.
    pub answer: Option<ScoredAnswer>,
    /// Lenient and strict verdicts, exact match and the Gestalt similarity of the reply to each
    /// choice; `None` until answered.
    pub score: Option<crate::score::QuestionScore>,
    /// The extraction rules that parsed the answer.
    pub rules_version: Option<String>,
    /// 1-based position among the run's questions, and their number.
    pub position: u32,
    pub total: u32,
    pub previous: Option<String>,
    pub next: Option<String>,
    /// The exam data's credit, shown wherever its questions are.
    pub credit: String,
}

/// `GET /api/runs/{id}/lineage`: everything a score depends on, to cite it or redo it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RunLineage {
    pub run_id: i64,
    /// The exam set version asked, with the SHA-256 of its content.
    pub exam_set: ExamSetSummary,
    pub prompt_format: String,
    /// SHA-256 of the prompt format applied to a fixed probe question: it changes exactly when
    /// the words or markup around a question change.
    pub prompt_template_sha256: String,
    pub model: String,
    /// SHA-256 of the model file (of every file, in name order, for a folder); `None` when it
    /// is no longer in the model store.
    pub model_sha256: Option<String>,
    /// What the worker loaded, as it reported it (architecture, quantization, parameters).
    pub model_info: Option<String>,
    pub adapter: Option<String>,
    pub adapter_sha256: Option<String>,
    /// The tuning that wrote the adapter, with its recipe.
    pub tuning: Option<TuningSummary>,
    /// Every setting the answers depend on, as `kokushi eval` takes them.
    pub settings: crate::job::EvalSettings,
    /// The prompt id the answers record: the format's id, `chat_template:<hash>` for the
    /// model's own template, `+Kshot` with worked examples.
    pub prompt_id: String,
    /// The exam set the worked examples came from, when it is not the run's own.
    #[serde(default)]
    pub shot_pool: Option<ExamSetSummary>,
    /// How answers were decoded.
    pub decoding: String,
    pub max_new_tokens: u32,
    /// Greedy decoding draws nothing at random: `None`.
    pub seed: Option<u64>,
    /// The extraction rules that parsed the answers.
    pub rules_version: Option<String>,
    /// The Kokushi version serving this (the engine is built with it).
    pub kokushi_version: String,
    pub worker: Option<String>,
    /// The leakage gate between the adapter's tuning data and this exam set.
    pub leakage: String,
}

/// One stored version of an exam set's rule pack (docs/rule-packs.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StoredRulePack {
    pub exam: String,
    pub version: u32,
    /// Who uploaded it.
    pub created_by: String,
    pub created_at: String,
    pub pack: crate::rules::RulePack,
}

/// The rule pack an exam set is scored under for one exam.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PackInEffect {
    pub exam: String,
    pub version: u32,
    pub title: String,
    /// The built-in pack (no version uploaded for the set).
    pub built_in: bool,
}

/// An exam set's rule packs: the one in effect for each exam it holds, and every version
/// uploaded for it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExamSetRules {
    pub in_effect: Vec<PackInEffect>,
    pub versions: Vec<StoredRulePack>,
}

/// A year's outcome under one set of rule packs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct YearOutcome {
    pub points: u32,
    pub points_max: u32,
    pub pass: Option<bool>,
    pub provisional: bool,
}

/// One exam year before and after a rescoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct YearChange {
    pub exam: Option<String>,
    pub year: Option<u16>,
    pub before: YearOutcome,
    pub after: YearOutcome,
}

/// A question whose points at stake or earned a rescoring changes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionChange {
    pub problem_id: String,
    pub points_before: u32,
    pub earned_before: u32,
    pub points_after: u32,
    pub earned_after: u32,
}

/// What scoring a run under its exam set's current rule packs changes against the versions it
/// was scored under: every year's outcome before and after, and each question that moves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RescoreDiff {
    pub run_id: i64,
    /// Exam → pack version, as scored so far and as it would be (or now is).
    pub from: std::collections::BTreeMap<String, u32>,
    pub to: std::collections::BTreeMap<String, u32>,
    /// Whether the run is now scored under `to` (`POST`), or this is what it would change
    /// (`GET`).
    pub applied: bool,
    pub years: Vec<YearChange>,
    pub questions: Vec<QuestionChange>,
}
