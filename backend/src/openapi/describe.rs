//! Each endpoint described for the OpenAPI document ([`describe`]): its summary, a longer
//! description where one helps, its query parameters, what its request carries and what it
//! answers, with the schemas of the `shared` types involved (derived by `utoipa`). The paths,
//! methods and access levels are not written here: they come from `routes::ENDPOINTS`.

use kokushi_shared::{api, cost, grading, judge};
use utoipa::ToSchema;
use utoipa::openapi::schema::{ArrayBuilder, ObjectBuilder, Schema, Type};
use utoipa::openapi::{Ref, RefOr};

pub(super) type Schemas = Vec<(String, RefOr<Schema>)>;

/// A JSON body's schema, and how to gather the named schemas it refers to.
#[derive(Clone, Copy)]
pub(super) struct Json {
    pub(super) schema: fn() -> RefOr<Schema>,
    pub(super) collect: fn(&mut Schemas),
}

pub(super) fn collect<T: ToSchema>(into: &mut Schemas) {
    into.push((T::name().into_owned(), T::schema()));
    T::schemas(into);
}

/// One `T`, by reference to its named schema.
fn one<T: ToSchema>() -> Json {
    fn reference<T: ToSchema>() -> RefOr<Schema> {
        Ref::from_schema_name(T::name()).into()
    }
    Json {
        schema: reference::<T>,
        collect: collect::<T>,
    }
}

/// A list of `T`.
fn list<T: ToSchema>() -> Json {
    fn array<T: ToSchema>() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(Ref::from_schema_name(T::name()))
            .build()
            .into()
    }
    Json {
        schema: array::<T>,
        collect: collect::<T>,
    }
}

/// What a successful call answers.
#[derive(Clone)]
pub(super) enum Answer {
    Json(Json),
    /// Any other media type: (media type, what the body is).
    Other(&'static str, &'static str),
    Empty,
}

/// What a request carries.
#[derive(Clone)]
pub(super) enum Body {
    None,
    Json(Json),
    /// An uploaded file: raw, or as the field `file` of `multipart/form-data`.
    File,
}

/// One endpoint's description.
pub(super) struct Doc {
    pub(super) summary: &'static str,
    pub(super) description: &'static str,
    pub(super) query: &'static [(&'static str, &'static str)],
    pub(super) body: Body,
    pub(super) status: u16,
    pub(super) answer: Answer,
    /// Another JSON body the call may answer with the same status (a preview, say).
    pub(super) or: Option<Json>,
}

impl Doc {
    fn new(summary: &'static str, answer: Answer) -> Self {
        Self {
            summary,
            description: "",
            query: &[],
            body: Body::None,
            status: 200,
            answer,
            or: None,
        }
    }
    fn or(mut self, json: Json) -> Self {
        self.or = Some(json);
        self
    }
    fn about(mut self, description: &'static str) -> Self {
        self.description = description;
        self
    }
    fn query(mut self, query: &'static [(&'static str, &'static str)]) -> Self {
        self.query = query;
        self
    }
    fn body(mut self, body: Body) -> Self {
        self.body = body;
        self
    }
    fn created(mut self) -> Self {
        self.status = 201;
        self
    }
}

fn health() -> Json {
    fn none(_: &mut Schemas) {}
    fn status() -> RefOr<Schema> {
        ObjectBuilder::new()
            .property(
                "status",
                ObjectBuilder::new()
                    .schema_type(Type::String)
                    .enum_values(Some(["ok"])),
            )
            .required("status")
            .build()
            .into()
    }
    Json {
        schema: status,
        collect: none,
    }
}

/// A list of project slugs.
fn slugs() -> Json {
    fn none(_: &mut Schemas) {}
    fn array() -> RefOr<Schema> {
        ArrayBuilder::new()
            .items(ObjectBuilder::new().schema_type(Type::String))
            .build()
            .into()
    }
    Json {
        schema: array,
        collect: none,
    }
}

/// Every endpoint's description; `None` for an endpoint this table does not know (a test
/// fails then).
pub(super) fn describe(method: &str, path: &str) -> Option<Doc> {
    use Answer::{Empty, Other};
    const GRADING_FORMAT: &[(&str, &str)] = &[("format", "`csv` (default) or `jsonl`")];
    const FORMAT: &[(&str, &str)] = &[("format", "`jsonl` (default) or `csv`")];
    const PAGE: &[(&str, &str)] = &[
        (
            "limit",
            "Rows in the page (default and cap in the description)",
        ),
        ("offset", "Rows skipped before the page (default 0)"),
    ];
    const PAGED: &str = "Default 500 rows a page, at most 1,000; `X-Total-Count` gives the total \
         and, while more follow, a `Link` header the next page (`rel=\"next\"`).";
    let doc = match (method, path) {
        ("get", "/api/health") => Doc::new("Whether the server is up", Answer::Json(health())),
        ("get", "/api/openapi.json") => Doc::new(
            "This document",
            Other("application/json", "The OpenAPI document of the API"),
        ),
        ("post", "/api/auth/login") => {
            Doc::new("Sign in", Answer::Json(one::<api::Me>()))
                .about(
                    "Sets the session cookie (HttpOnly, SameSite=Strict) and answers the account with \
                     its CSRF token, which every later state-changing request of the session sends \
                     in `X-CSRF-Token`. A user name over 64 or a password over 1,024 characters is 400. \
                     Attempts are counted when they start, per address, address and account, and \
                     account (429 with `Retry-After`; docs/accounts.md).",
                )
                .body(Body::Json(one::<api::Login>()))
        }
        ("post", "/api/auth/logout") => {
            Doc::new("End the session", Empty).about("An API token's request changes nothing.")
        }
        ("post", "/api/auth/password") => Doc::new(
            "Change one's own password: every session ends and every API token is revoked",
            Answer::Json(one::<api::UserUpdated>()),
        )
        .about(
            "The current password is checked as a sign-in is (403 when wrong; throttled, 429). \
             The new one must be 10 to 1,024 characters. The session that asked ends too (its \
             cookie is deleted): sign in again with the new password.",
        )
        .body(Body::Json(one::<api::ChangePassword>())),
        ("get", "/api/auth/me") => Doc::new(
            "The signed-in account, its roles and CSRF token",
            Answer::Json(one::<api::Me>()),
        ),
        ("get", "/api/tokens") => Doc::new(
            "The caller's API tokens (never their secrets), newest first, a page at a time",
            Answer::Json(list::<api::TokenSummary>()),
        )
        .about(PAGED)
        .query(PAGE),
        ("post", "/api/tokens") => Doc::new(
            "Issue an API token; its secret is in this answer only",
            Answer::Json(one::<api::NewToken>()),
        )
        .body(Body::Json(one::<api::CreateToken>()))
        .created(),
        ("delete", "/api/tokens/{id}") => Doc::new(
            "Revoke one of the caller's API tokens",
            Answer::Json(one::<api::TokenSummary>()),
        ),
        ("get", "/api/users") => Doc::new(
            "The accounts, by name, a page at a time",
            Answer::Json(list::<api::UserSummary>()),
        )
        .about(PAGED)
        .query(PAGE),
        ("post", "/api/users") => Doc::new(
            "Create an account (password hashed with argon2id)",
            Answer::Json(one::<api::UserSummary>()),
        )
        .body(Body::Json(one::<api::CreateUser>()))
        .created(),
        ("patch", "/api/users/{id}") => Doc::new(
            "Change an account's roles, password or whether it is disabled",
            Answer::Json(one::<api::UserUpdated>()),
        )
        .about(
            "A new password ends the account's sessions and revokes its API tokens; disabling it \
             ends its sessions and stops its tokens while disabled. The answer says how many \
             sessions and tokens the change ended.",
        )
        .body(Body::Json(one::<api::UpdateUser>())),
        ("get", "/api/workers") => Doc::new(
            "The workers that reported lately: device, loaded model, current job, last heartbeat",
            Answer::Json(list::<api::WorkerInfo>()),
        ),
        ("get", "/metrics") => Doc::new(
            "Prometheus metrics: requests, job durations, queue depth, workers",
            Other(
                "text/plain; version=0.0.4",
                "The Prometheus text exposition format",
            ),
        ),
        ("get", "/api/leaderboard") => Doc::new(
            "One row per run, newest first, with its tally; with a filter, every run scored \
             again on the questions it keeps (pass/fail only for a filter on years alone)",
            Answer::Json(list::<api::RunSummary>()),
        )
        .about(
            "A page at a time (default 500 rows, at most 1,000; `X-Total-Count`, and a `Link` to \
             the next page). A filter may name only years, blocks and specialties the exam sets \
             hold: anything else is 400, listing what they hold.",
        )
        .query(&[
            (
                "scope",
                "`project` (default): the caller's project's runs; `portal`: every project's \
                 published runs",
            ),
            ("years", "Exam years, comma-separated, e.g. `2021,2022`"),
            ("blocks", "Block letters, comma-separated, e.g. `A,D`"),
            ("section", "`required` (必修問題) or `general`"),
            ("specialty", "A specialty as the exam set names it"),
            ("text_only", "`true`: only questions without an image"),
            ("limit", "Rows in the page (default 500, at most 1,000)"),
            ("offset", "Rows skipped before the page (default 0)"),
        ]),
        ("get", "/api/leaderboard/export") => Doc::new(
            "The leaderboard as CSV",
            Other("text/csv; charset=utf-8", "One row per run"),
        )
        .query(&[
            ("format", "`csv` (the default and only one)"),
            ("scope", "As for `/api/leaderboard`"),
            ("years", "As for `/api/leaderboard`: the same filter, the same rows"),
            ("blocks", "As for `/api/leaderboard`"),
            ("section", "As for `/api/leaderboard`"),
            ("specialty", "As for `/api/leaderboard`"),
            ("text_only", "As for `/api/leaderboard`"),
            ("limit", "As for `/api/leaderboard`"),
            ("offset", "As for `/api/leaderboard`"),
        ]),
        ("get", "/api/models") => Doc::new(
            "The model store's models and adapters, read from their headers",
            Answer::Json(list::<api::StoreEntry>()),
        )
        .about(
            "Format, architecture, quantization, parameters and size; an adapter's rank, alpha \
             and base; whether a run can use the entry, or why not.",
        ),
        ("get", "/api/exam-sets") => Doc::new(
            "The exam set versions, newest first, a page at a time",
            Answer::Json(list::<api::ExamSetSummary>()),
        )
        .about(PAGED)
        .query(PAGE),
        ("post", "/api/exam-sets") => Doc::new(
            "Upload an exam set",
            Answer::Json(one::<api::ImportReport>()),
        )
        .about(
            "IgakuQA JSON lines, the CSV upload format (a file name ending in `.csv`), a JMMLU \
             subject file (`format=jmmlu`), or IgakuQA119's question files with its answers file \
             (several `file` fields of one multipart form, at most 64); see \
             docs/exam-set-format.md. Validated whole: a refusal (400) lists every problem with \
             its file, line and field in `details`, and stores nothing. `preview=true` answers \
             200 with an `UploadPreview` (the problems, the repairs proposed and applied, the \
             records left out) and stores nothing. 413 past the upload limit. Content already \
             stored under the name answers 200 with `created: false`; new content answers 201 (a \
             new version when the name exists), with its repairs and exclusions kept beside it.",
        )
        .query(&[
            ("name", "The exam set's name (required)"),
            ("file", "The file's name, shown in errors; `.csv` selects the CSV format"),
            ("namespace", "Prefix for problem ids of a CSV or JMMLU file"),
            ("format", "`jmmlu` for a JMMLU subject file"),
            ("preview", "`true`: answer what would be stored, store nothing"),
            (
                "repair",
                "Repairs to apply: `all`, or `ID:KIND,…` (choices_in_stem, letter_form, numbering)",
            ),
            (
                "exclude",
                "`ID:REASON`, repeatable (at most 1000): leave the record out, saying why",
            ),
        ])
        .body(Body::File)
        .or(one::<api::UploadPreview>())
        .created(),
        ("get", "/api/exam-sets/{id}/rules") => Doc::new(
            "The rule pack in effect for each exam the set holds, and every version uploaded",
            Answer::Json(one::<api::ExamSetRules>()),
        )
        .about("docs/rule-packs.md. A pack uploaded for the set overrides the built-in one."),
        ("post", "/api/exam-sets/{id}/rules") => Doc::new(
            "Upload a new version of one exam's rule pack for the set",
            Answer::Json(one::<api::StoredRulePack>()),
        )
        .about(
            "The body is a rule pack (docs/rule-packs.md, at most 1 MiB), checked whole: 400 \
             names each field at fault. Its exam must be one the set holds; it becomes the next \
             version (past the built-in pack's and every stored one), whatever `version` it \
             says. Only the set's owner or an admin (403). Runs keep the versions they were \
             scored under until rescored (`/api/runs/{id}/rescore`).",
        )
        .body(Body::Json(one::<kokushi_shared::rules::RulePack>()))
        .created(),
        ("get", "/api/runs/{id}/rescore") => Doc::new(
            "What scoring the run under its exam set's current rule packs would change",
            Answer::Json(one::<api::RescoreDiff>()),
        )
        .about(
            "Each exam year's points and verdict before and after, and each question whose \
             points at stake or earned move. Nothing is stored.",
        ),
        ("post", "/api/runs/{id}/rescore") => Doc::new(
            "Score the run under its exam set's current rule packs from now on",
            Answer::Json(one::<api::RescoreDiff>()),
        )
        .about("Answers what changed; the leaderboard's verdicts follow."),
        ("post", "/api/runs") => Doc::new(
            "Queue an evaluation of a model (and adapter) on an exam set",
            Answer::Json(one::<api::RunSummary>()),
        )
        .about(
            "409 when the caller already has as many jobs (runs and tunings) waiting in the queue \
             as one account may have (`--max-queued-per-user`).",
        )
        .body(Body::Json(one::<api::CreateRun>()))
        .created(),
        ("get", "/api/runs/{id}") => Doc::new(
            "A run with every question and its answer",
            Answer::Json(one::<api::RunDetail>()),
        )
        .query(&[(
            "questions",
            "`false`: the run without its questions (read them a page at a time from \
             `/api/runs/{id}/questions`)",
        )]),
        ("get", "/api/runs/{id}/questions") => Doc::new(
            "One page of the run's questions in order, each with its answer so far",
            Answer::Json(list::<api::QuestionResult>()),
        )
        .about(
            "Default 100 questions a page, at most 1,000; `X-Total-Count` gives how many the \
             filter keeps and, while more follow, a `Link` header the next page.",
        )
        .query(&[
            (
                "show",
                "`all` (default), `wrong`, `parse-failed`, `multi-answer` or `unanswered`",
            ),
            ("specialty", "Only questions of this clinical specialty"),
            ("limit", "Questions in the page (default 100, at most 1,000)"),
            ("offset", "Questions skipped before the page (default 0)"),
        ]),
        ("post", "/api/runs/{id}/cancel") => Doc::new(
            "Cancel a queued or running run; its answers so far are kept",
            Answer::Json(one::<api::RunSummary>()),
        )
        .about("409 when the run has finished."),
        ("post", "/api/runs/{id}/retry") => Doc::new(
            "Queue a failed or cancelled run again; it resumes with the questions left",
            Answer::Json(one::<api::RunSummary>()),
        )
        .about("409 for a queued, running or succeeded run, or when the caller's queue is full."),
        ("get", "/api/runs/{id}/score") => Doc::new(
            "The run scored as `kokushi score` scores it",
            Answer::Json(one::<kokushi_shared::score::ScoreReport>()),
        )
        .about(
            "Accuracy, points and pass/fail per exam year and overall, by block, section and \
             specialty, with confidence intervals (docs/scoring.md). `format=csv` answers \
             `text/csv` instead: one row per year, then `all`.",
        )
        .query(&[
            ("mode", "`strict` (default) or `lenient` letter matching"),
            ("confidence", "Confidence level of the intervals, between 0 and 1 (default 0.95)"),
            ("format", "`json` (default) or `csv`"),
        ]),
        ("get", "/api/runs/{id}/export") => Doc::new(
            "The run's answers as a download",
            Other(
                "application/x-ndjson; charset=utf-8",
                "JSON lines that `kokushi score` reads (`format=csv` answers text/csv)",
            ),
        )
        .query(FORMAT),
        ("get", "/api/runs/{id}/events") => Doc::new(
            "The run's progress as server-sent events",
            Other(
                "text/event-stream",
                "`event: run` with the run's summary (RunSummary) as JSON at once and at each \
                 change; the stream ends when the run finishes",
            ),
        ),
        ("get", "/api/runs/{id}/questions/{problem_id}") => Doc::new(
            "One question of a run, with every metric of its answer",
            Answer::Json(one::<api::QuestionView>()),
        )
        .about(
            "Stem, choices, gold answer and where the question sits in its exam; the raw reply, \
             the parsed answer and the rules version; strict and lenient verdicts, exact match and \
             the Gestalt similarity of the reply to each choice; the previous and next question.",
        ),
        ("get", "/api/runs/{id}/lineage") => Doc::new(
            "Everything the run's score depends on",
            Answer::Json(one::<api::RunLineage>()),
        )
        .about(
            "The exam set version and its content hash, the prompt template's hash, the SHA-256 of \
             the model and adapter files, the tuning recipe, decoding settings, extraction rules \
             and software version, and the leakage gate's state.",
        ),
        ("get", "/api/compare") => Doc::new(
            "Two runs of the same questions compared",
            Answer::Json(one::<api::RunComparison>()),
        )
        .about(
            "Counts of questions right in both, one or neither, the exact McNemar p-value, the \
             paired bootstrap interval of the points difference, and every question where the \
             answers or verdicts differ. 400 when the runs do not ask the same questions.",
        )
        .query(&[
            ("first", "A run id (required)"),
            ("second", "Another run id (required)"),
            ("confidence", "Confidence level of the interval (default 0.95)"),
        ]),
        ("get", "/api/tunings") => Doc::new(
            "The LoRA tunings, newest first, a page at a time",
            Answer::Json(list::<api::TuningSummary>()),
        )
        .about(PAGED)
        .query(PAGE),
        ("post", "/api/tunings") => Doc::new(
            "Queue a LoRA tuning of a base model, optionally followed by evaluations",
            Answer::Json(one::<api::TuningSummary>()),
        )
        .about(
            "The adapter is written to the model store under the given name; 409 when a tuning or \
             a store entry already has it. With `evaluate`, the base model and the base model + \
             adapter are evaluated when the tuning succeeds (docs/tuning.md). 409 also when the caller's \
             queue is full.",
        )
        .body(Body::Json(one::<api::CreateTuning>()))
        .created(),
        ("get", "/api/tunings/{id}") => Doc::new(
            "A tuning and its loss curves (training and validation)",
            Answer::Json(one::<api::TuningDetail>()),
        ),
        ("post", "/api/tunings/{id}/cancel") => Doc::new(
            "Stop a queued or running tuning after its current step",
            Answer::Json(one::<api::TuningSummary>()),
        )
        .about("409 when the tuning has finished."),
        ("post", "/api/tunings/{id}/retry") => Doc::new(
            "Queue a failed or cancelled tuning again; it resumes from its last checkpoint",
            Answer::Json(one::<api::TuningSummary>()),
        )
        .about(
            "The loss curve so far is kept. 409 for a queued, running or succeeded tuning, or when \
             the caller's queue is full.",
        ),
        ("get", "/api/grading/annotators") => Doc::new(
            "Accounts that may be asked to grade (active, with the annotator role)",
            Answer::Json(list::<grading::Grader>()),
        ),
        ("get", "/api/grading/tasks") => Doc::new(
            "The grading tasks with each annotator's progress, newest first, a page at a time",
            Answer::Json(list::<grading::GradingTaskSummary>()),
        )
        .about(
            "Default 100 tasks a page, at most 500; `X-Total-Count`, and a `Link` to the next \
             page.",
        )
        .query(PAGE),
        ("post", "/api/grading/tasks") => Doc::new(
            "Make a grading task from one run or several runs of the same exam set",
            Answer::Json(one::<grading::GradingTaskSummary>()),
        )
        .about(
            "The selection picks the answers (all, parse failures, wrong ones, a seeded random \
             sample, or the questions two runs answered differently); each becomes an item graded \
             by `overlap` distinct annotators, the load spread evenly, each annotator's order \
             shuffled with the task's seed. 400 names the field at fault.",
        )
        .body(Body::Json(one::<grading::CreateGradingTask>()))
        .created(),
        ("get", "/api/grading/tasks/{id}") => Doc::new(
            "A task's progress, agreement (Fleiss' and pairwise Cohen's kappa with 95% intervals) \
             and items, disputed first",
            Answer::Json(one::<grading::GradingTaskDetail>()),
        ),
        ("get", "/api/grading/tasks/{id}/export") => Doc::new(
            "Every version of every grade and adjudication of a task, as a download",
            Other(
                "text/csv; charset=utf-8",
                "One row per saved version (`format=jsonl` answers JSON lines)",
            ),
        )
        .query(GRADING_FORMAT),
        ("get", "/api/grading/items/{id}") => Doc::new(
            "One item for its reviewer: the model, the output, every grade and its history",
            Answer::Json(one::<grading::GradingItemDetail>()),
        ),
        ("post", "/api/grading/items/{id}/adjudicate") => Doc::new(
            "Decide an item: the reviewer's verdict becomes its human grade",
            Answer::Json(one::<grading::Grade>()),
        )
        .about(
            "`expected_version` is the adjudication version the reviewer saw (0 for none); 409 \
             when someone adjudicated since. Flags and rationale are ignored.",
        )
        .body(Body::Json(one::<grading::GradeInput>()))
        .created(),
        ("get", "/api/grading/audit") => Doc::new(
            "The append-only audit log of task creation, grades, edits and adjudications",
            Other(
                "text/csv; charset=utf-8",
                "One row per event with who, when, and the grade before and after as JSON \
                 (`format=jsonl` answers JSON lines)",
            ),
        )
        .about(
            "A page at a time: 10,000 events unless `limit` says otherwise (at most 100,000); \
             `X-Total-Count`, and a `Link` to the next page.",
        )
        .query(&[
            ("task", "Only this grading task's events"),
            ("format", "`csv` (default) or `jsonl`"),
            ("limit", "Events in the page (default 10,000, at most 100,000)"),
            ("offset", "Events skipped before the page (default 0)"),
        ]),
        ("get", "/api/grading/gold-flags") => Doc::new(
            "Questions graders flagged \"gold answer looks wrong\", for the exam sets the caller \
             uploaded (an admin: all)",
            Answer::Json(list::<grading::GoldFlag>()),
        ),
        ("get", "/api/projects") => Doc::new(
            "The caller's projects with their role in each (an admin: every project), by name",
            Answer::Json(list::<api::ProjectSummary>()),
        )
        .about("docs/projects.md."),
        ("post", "/api/projects") => Doc::new(
            "Create a project and name its first owners (admins)",
            Answer::Json(one::<api::ProjectDetail>()),
        )
        .about(
            "The slug is 2 to 40 lower-case letters, digits and `-`, starting with a letter; \
             409 when taken. Owners are named by user name (404 for an unknown or disabled \
             account).",
        )
        .body(Body::Json(one::<api::CreateProject>()))
        .created(),
        ("get", "/api/projects/{id}") => Doc::new(
            "A project with its members (its members and admins)",
            Answer::Json(one::<api::ProjectDetail>()),
        ),
        ("post", "/api/projects/{id}/members") => Doc::new(
            "Add an account to the project, or change its role (the project's owners and admins)",
            Answer::Json(one::<api::ProjectDetail>()),
        )
        .about(
            "Roles: `owner` (all a researcher does, and the members), `researcher`, `annotator`. \
             A change that would leave the project without an owner is 400.",
        )
        .body(Body::Json(one::<api::SetMember>())),
        ("delete", "/api/projects/{id}/members/{user_id}") => Doc::new(
            "Take an account out of the project (the project's owners and admins)",
            Empty,
        )
        .about("Never its last owner (400). The account's sessions leave the project at once."),
        ("post", "/api/auth/project") => Doc::new(
            "Act in another project from now on (a browser session)",
            Answer::Json(one::<api::Me>()),
        )
        .about(
            "One the account is a member of (an admin: any); 404 otherwise. An API token acts in \
             the project it was made in (400 here).",
        )
        .body(Body::Json(one::<api::SwitchProject>())),
        ("post", "/api/runs/{id}/publish") => Doc::new(
            "Put the run on the portal-wide leaderboard (`/api/leaderboard?scope=portal`)",
            Answer::Json(one::<api::RunSummary>()),
        )
        .about(
            "By the account that queued it, the project's owner or an admin. Every project then \
             sees the run's row (model, adapter, settings, scores, its project's name); its \
             answers and page stay the project's.",
        ),
        ("post", "/api/runs/{id}/unpublish") => Doc::new(
            "Take the run off the portal-wide leaderboard",
            Answer::Json(one::<api::RunSummary>()),
        ),
        ("post", "/api/exam-sets/{id}/shares") => Doc::new(
            "Share the exam set read-only with another project (by slug)",
            Answer::Json(slugs()),
        )
        .about(
            "By the project's owners or an admin. The other \
             project lists the set, reads it and runs on it; changing it stays with its own \
             project (403). Answers the slugs it is shared with.",
        )
        .body(Body::Json(one::<api::ShareExamSet>())),
        ("delete", "/api/exam-sets/{id}/shares/{project}") => Doc::new(
            "Stop sharing the exam set with a project (by slug)",
            Answer::Json(slugs()),
        ),
        ("get", "/api/grading/mine") => Doc::new(
            "The caller's grading tasks: progress and where to resume",
            Answer::Json(list::<grading::MyTask>()),
        ),
        ("get", "/api/grading/mine/{task_id}") => Doc::new(
            "The caller's items of one task, in the caller's own order",
            Answer::Json(one::<grading::MyQueue>()),
        )
        .about("404 when the caller has no items in the task."),
        ("get", "/api/grading/assignments/{id}") => Doc::new(
            "One of the caller's items, blind: question, choices, gold answer, the model's output",
            Answer::Json(one::<grading::BlindItem>()),
        )
        .about(
            "Never names the model, adapter or run. 404 for an assignment that is not the \
             caller's, as for one that does not exist.",
        ),
        ("post", "/api/grading/assignments/{id}/grade") => Doc::new(
            "Save the caller's grade of one item (a new version; nothing is overwritten)",
            Answer::Json(one::<grading::Grade>()),
        )
        .about(
            "`expected_version` is the version the form was filled from (0 for a first grade); \
             409 when a newer version was saved since. 400 names the field at fault.",
        )
        .body(Body::Json(one::<grading::GradeInput>()))
        .created(),
        ("get", "/api/judge-prompts") => Doc::new(
            "Judge prompts: the built-in one, then every version of the project's",
            Answer::Json(list::<judge::JudgePrompt>()),
        )
        .about("docs/judges.md. Each carries the SHA-256 of its template, which judge runs record."),
        ("post", "/api/judge-prompts") => Doc::new(
            "Store a new version of one of the project's judge prompts",
            Answer::Json(one::<judge::JudgePrompt>()),
        )
        .about(
            "Placeholders: `{question}`, `{choices}`, `{gold}`, `{output}` (required), \
             `{parsed}`; any other `{…}` is 400. At most 8,000 characters.",
        )
        .body(Body::Json(one::<judge::CreateJudgePrompt>()))
        .created(),
        ("get", "/api/grading/tasks/{id}/judges") => Doc::new(
            "The task's judge runs, newest first, each with its agreement with the humans \
             (Cohen's kappa with its 95% interval, the confusion matrix, each annotator), its \
             calibration gate and its grades, disagreements first",
            Answer::Json(list::<judge::JudgeRunDetail>()),
        ),
        ("post", "/api/grading/tasks/{id}/judges") => Doc::new(
            "Queue a judge: a model grades the task's items blind with a judge prompt",
            Answer::Json(one::<judge::JudgeRunDetail>()),
        )
        .about(
            "The judge sees what an annotator sees (question, choices, published answer, output, \
             what the parser read), never the model or run. Its grades are kept apart from the \
             humans' and never change the human-adjusted accuracy; an uncalibrated judge's are \
             labelled so everywhere. 409 when the caller's queue is full.",
        )
        .body(Body::Json(one::<judge::CreateJudgeRun>()))
        .created(),
        ("post", "/api/grading/tasks/{id}/judges/{judge_id}/cancel") => Doc::new(
            "Stop a queued or running judge run (its grades so far stay)",
            Answer::Json(one::<judge::JudgeRunSummary>()),
        ),
        ("post", "/api/grading/tasks/{id}/judges/{judge_id}/retry") => Doc::new(
            "Queue a failed or cancelled judge run again; it grades only what it has not",
            Answer::Json(one::<judge::JudgeRunSummary>()),
        ),
        ("get", "/api/judging") => Doc::new(
            "The project's judging settings: threshold and calibration tasks",
            Answer::Json(one::<judge::JudgingSettings>()),
        ),
        ("post", "/api/judging") => Doc::new(
            "Set the project's judging threshold and calibration tasks (the project's owners)",
            Answer::Json(one::<judge::JudgingSettings>()),
        )
        .about(
            "A judge is calibrated for the tasks of an exam set when, on a calibration task of \
             that set, the lower end of its kappa's 95% interval against the human verdicts \
             reaches `threshold` (0 to 1) over at least 20 items.",
        )
        .body(Body::Json(one::<judge::JudgingSettings>())),
        ("post", "/api/runs/estimate") => Doc::new(
            "What the run the body describes would cost, before it is queued (a dry run)",
            Answer::Json(one::<cost::Estimate>()),
        )
        .about(
            "docs/cost.md. Every prompt is built as the worker will build it and counted with \
             the model's own tokenizer; the time comes from the model's speed measured in its \
             latest finished jobs on this portal (none yet: tokens only). Nothing is queued or \
             written. The body and its refusals are those of `POST /api/runs`.",
        )
        .body(Body::Json(one::<api::CreateRun>())),
        ("get", "/api/runs/{id}/cost") => Doc::new(
            "The run's cost: the estimate made as it was queued, and what its worker measured",
            Answer::Json(one::<cost::Cost>()),
        ),
        ("post", "/api/grading/tasks/{id}/judges/estimate") => Doc::new(
            "What the judge run the body describes would cost, before it is queued (a dry run)",
            Answer::Json(one::<cost::Estimate>()),
        )
        .body(Body::Json(one::<judge::CreateJudgeRun>())),
        _ => return None,
    };
    Some(doc)
}
