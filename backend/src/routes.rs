//! The JSON API under `/api`. Handlers are thin: validate, call the database or the queue,
//! answer with `shared` types.
//!
//! Every endpoint (the JSON API under `/api`, and `/metrics`) is one line of [`ENDPOINTS`]:
//! method, path, who may call it, handler. The same line registers the route, holds the handler
//! to take its access level's extractor first ([`crate::auth::demand`]), and feeds the access
//! check ([`crate::auth::authorize`]), so an endpoint cannot exist without a stated access, and
//! the role-matrix test walks them all.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use kokushi_queue::JobQueue;
use kokushi_shared::api::CreateRun;
use kokushi_shared::prompt::PromptFormat;
use serde::Deserialize;

use crate::accounts;
use crate::auth::{Access, LoginLimiter, PrincipalCache};
use crate::db::Db;
use crate::db::runs::NewRun;
use crate::error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub limiter: LoginLimiter,
    pub principals: PrincipalCache,
    /// The leaderboard's last JSON body.
    pub leaderboard: Arc<ResponseCache>,
    /// Request counts and durations for `/metrics`.
    pub metrics: crate::metrics::HttpMetrics,
    /// Mark the session cookie `Secure` even when the request did not arrive over TLS (a TLS
    /// proxy that does not say so).
    pub secure_cookies: bool,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Jobs (runs and tunings) one account may have waiting in the queue at once.
    pub max_queued_per_user: i64,
    /// The folder models and adapters are listed from (`GET /api/models`).
    pub model_store: std::path::PathBuf,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: crate::auth::TrustedProxies,
    /// How long a browser session may go unused before it ends.
    pub session_idle: std::time::Duration,
    /// Live-progress streams open, per account.
    pub streams: crate::live::StreamCounts,
    /// Base URLs of the OpenAI-compatible servers runs may name.
    pub remote_model_allow: Vec<String>,
    /// Filtered leaderboards scored at once (each scores a page of runs again).
    pub rescoring: tokio::sync::Semaphore,
}

/// Response bodies kept for a moment, one per leaderboard filter: the leaderboard is read by every open page every few
/// seconds and changes only when an answer arrives. Writes on this node (a new run, ingested
/// events) clear it at once; other API nodes' writes show within [`ResponseCache::TTL`].
#[derive(Debug, Default)]
pub struct ResponseCache {
    /// Body by key (the filter's, `""` for the whole leaderboard) with when it was made.
    bodies: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, web::Bytes)>>,
}

impl ResponseCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    /// Distinct filters kept at once; past it the cache starts afresh.
    const MAX_KEYS: usize = 64;

    pub(crate) fn get(&self, key: &str) -> Option<web::Bytes> {
        let bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        bodies
            .get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, b)| b.clone())
    }

    pub(crate) fn put(&self, key: String, bytes: web::Bytes) {
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if bodies.len() >= Self::MAX_KEYS && !bodies.contains_key(&key) {
            bodies.clear();
        }
        bodies.insert(key, (std::time::Instant::now(), bytes));
    }

    pub fn clear(&self) {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// One endpoint of the API.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    /// Lower case: `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// The full pattern, as actix matches it: `/api/runs/{id}`, `/metrics`.
    pub path: &'static str,
    pub access: Access,
}

/// A handler as the table registers it: above `Public`, held by [`crate::auth::demand`] to
/// take its level's extractor first (or the build fails).
macro_rules! guarded {
    (Public, $handler:path) => {
        $handler
    };
    ($access:ident, $handler:path) => {
        crate::auth::demand::<crate::auth::$access, _, _>($handler)
    };
}

macro_rules! endpoints {
    ($($method:ident $path:literal $access:ident => $handler:path;)*) => {
        /// Every endpoint of the API, with who may call it.
        pub const ENDPOINTS: &[Endpoint] = &[$(Endpoint {
            method: stringify!($method),
            path: $path,
            access: Access::$access,
        },)*];

        fn register(cfg: &mut web::ServiceConfig) {
            $(cfg.route($path, web::$method().to(guarded!($access, $handler)));)*
        }
    };
}

endpoints! {
    get "/api/health" Public => health;
    get "/api/openapi.json" Public => openapi;
    post "/api/auth/login" Public => accounts::login;
    post "/api/auth/logout" Member => accounts::logout;
    get "/api/auth/me" Member => accounts::me;
    post "/api/auth/password" Member => accounts::change_password;
    get "/api/tokens" Member => accounts::tokens;
    post "/api/tokens" Member => accounts::create_token;
    delete "/api/tokens/{id}" Member => accounts::revoke_token;
    get "/api/users" Admin => accounts::users;
    get "/api/workers" Admin => workers;
    get "/metrics" Admin => crate::metrics::metrics;
    post "/api/users" Admin => accounts::add_user;
    patch "/api/users/{id}" Admin => accounts::update_user;
    get "/api/leaderboard" Researcher => crate::leaderboard::leaderboard;
    get "/api/leaderboard/export" Researcher => crate::leaderboard::export;
    get "/api/models" Researcher => models;
    get "/api/exam-sets" Researcher => exam_sets;
    post "/api/exam-sets" Researcher => crate::uploads::upload_exam_set;
    post "/api/runs" Researcher => create_run;
    get "/api/runs/{id}" Researcher => run_detail;
    post "/api/runs/{id}/cancel" Researcher => cancel_run;
    post "/api/runs/{id}/retry" Researcher => retry_run;
    get "/api/runs/{id}/score" Researcher => run_score;
    get "/api/runs/{id}/export" Researcher => run_export;
    get "/api/runs/{id}/events" Researcher => crate::live::run_events;
    get "/api/runs/{id}/questions/{problem_id}" Researcher => crate::compare::question;
    get "/api/compare" Researcher => crate::compare::compare;
    get "/api/runs/{id}/lineage" Researcher => crate::lineage::lineage;
    get "/api/tunings" Researcher => crate::tuning::tunings;
    post "/api/tunings" Researcher => crate::tuning::create_tuning;
    get "/api/tunings/{id}" Researcher => crate::tuning::tuning_detail;
    post "/api/tunings/{id}/cancel" Researcher => crate::tuning::cancel_tuning;
    post "/api/tunings/{id}/retry" Researcher => crate::tuning::retry_tuning;
    get "/api/grading/annotators" Researcher => crate::grading::annotators;
    get "/api/grading/tasks" Researcher => crate::grading::tasks;
    post "/api/grading/tasks" Researcher => crate::grading::create_task;
    get "/api/grading/tasks/{id}" Researcher => crate::grading::task_detail;
    get "/api/grading/tasks/{id}/export" Researcher => crate::grading::export_grades;
    get "/api/grading/items/{id}" Researcher => crate::grading::item_detail;
    post "/api/grading/items/{id}/adjudicate" Researcher => crate::grading::adjudicate;
    get "/api/grading/audit" Researcher => crate::grading::audit;
    get "/api/grading/gold-flags" Researcher => crate::grading::gold_flags;
    get "/api/grading/mine" Member => crate::grading::my_tasks;
    get "/api/grading/mine/{task_id}" Member => crate::grading::my_queue;
    get "/api/grading/assignments/{id}" Member => crate::grading::assignment;
    post "/api/grading/assignments/{id}/grade" Member => crate::grading::grade;
}

/// Default and largest number of new tokens a run may ask for.
pub(crate) const DEFAULT_MAX_NEW_TOKENS: u32 = 32;
/// The most worked examples a run may put before each question.
pub const MAX_SHOTS: u32 = 8;
pub(crate) const MAX_MAX_NEW_TOKENS: u32 = 1024;

/// Registers every endpoint, then a JSON 404 for any other `/api` path. The access check
/// ([`crate::auth::authorize`]) and the request metrics wrap the whole app (`startup`).
pub fn configure(cfg: &mut web::ServiceConfig) {
    register(cfg);
    cfg.service(web::scope("/api").default_service(web::to(|| async {
        Err::<HttpResponse, _>(ApiError::NotFound("no such API endpoint".to_owned()))
    })));
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /api/openapi.json`: the OpenAPI document of this API (`crate::openapi`).
async fn openapi() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(DOCUMENT.get_or_init(crate::openapi::document_json).clone())
}

/// `GET /api/workers` (admin): every worker that reported lately: device, loaded model, current
/// run and job, last report.
async fn workers(
    _caller: crate::auth::Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.queue.workers().await?))
}

/// `GET /api/models`: the model store's models and adapters, read from their headers (format,
/// architecture, quantization, size; an adapter's rank and base), each with whether a run can
/// use it or why not.
async fn models(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let store = state.model_store.clone();
    let entries = web::block(move || kokushi_worker::list_store(&store))
        .await
        .map_err(|e| ApiError::Internal(format!("listing the model store stopped: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(entries))
}

/// `GET /api/exam-sets[?limit=N&offset=M]`: the exam sets, newest first, a page at a time.
async fn exam_sets(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let total = state.db.count(crate::db::Counted::ExamSets).await?;
    Ok(page.respond(&req, &state.db.exam_sets(page).await?, total))
}

/// Refuses (403) a change to a run or tuning by anyone but the account that created it or an
/// admin; 404 when it does not exist. `owner` is what `Db::run_owner`/`tuning_owner` read.
pub(crate) fn ensure_owner(
    caller: &crate::auth::Principal,
    what: &str,
    id: i64,
    owner: Option<Option<i64>>,
    action: &str,
) -> Result<(), ApiError> {
    match owner {
        None => Err(ApiError::NotFound(format!("{what} {id} does not exist"))),
        Some(owner) if caller.is_admin() || owner == Some(caller.user.id) => Ok(()),
        Some(_) => Err(ApiError::Forbidden(format!(
            "only the account that queued {what} {id}, or an admin, may {action} it"
        ))),
    }
}

/// Refuses (409) a new or retried job of an account that already has as many jobs (runs and
/// tunings) waiting in the queue as one account may have.
pub(crate) async fn ensure_queue_room(
    state: &AppState,
    principal: &crate::auth::Principal,
) -> Result<(), ApiError> {
    let queued = state.db.queued_jobs_of(principal.user.id).await?;
    if queued >= state.max_queued_per_user {
        return Err(ApiError::Conflict(format!(
            "{} has {queued} jobs waiting in the queue, the most one account may have; \
             wait for some to start or cancel some",
            principal.user.username
        )));
    }
    Ok(())
}

/// The model a run may name: a plain name in the model store, or `openai:<base-url>#<model>`
/// whose server is on the operator's allow-list (`--remote-model-allow`), in its normal form.
fn run_model(state: &AppState, model: &str) -> Result<String, ApiError> {
    let Some(spec) = kokushi_worker::remote::RemoteSpec::parse(model) else {
        return crate::tuning::plain_name("model", model);
    };
    let spec = spec.map_err(ApiError::BadRequest)?;
    if kokushi_worker::remote::is_allowed(&state.remote_model_allow, &spec.base_url) {
        return Ok(spec.to_string());
    }
    Err(ApiError::BadRequest(
        if state.remote_model_allow.is_empty() {
            "this portal lets runs name no remote model: its operator lists the servers runs may \
         use with --remote-model-allow (docs/remote-models.md)"
                .to_owned()
        } else {
            format!(
                "{} is not among the servers this portal lets runs name: {}",
                spec.base_url,
                state.remote_model_allow.join(", ")
            )
        },
    ))
}

async fn create_run(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
    ensure_queue_room(&state, &principal).await?;
    let chat_template = req.prompt_format == "chat_template";
    let prompt_format = if chat_template {
        PromptFormat::ChatmlJa
    } else {
        PromptFormat::from_id(&req.prompt_format).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown prompt_format {:?}; known: {}, chat_template",
                req.prompt_format,
                PromptFormat::ALL.map(PromptFormat::id).join(", ")
            ))
        })?
    };
    if req.shots > MAX_SHOTS {
        return Err(ApiError::BadRequest(format!(
            "shots {} must be between 0 and {MAX_SHOTS}",
            req.shots
        )));
    }
    let shot_seed = req
        .shot_seed
        .unwrap_or(kokushi_shared::job::DEFAULT_SHOT_SEED);
    if i64::try_from(shot_seed).is_err() {
        return Err(ApiError::BadRequest(format!(
            "shot_seed {shot_seed} must be below 2^63"
        )));
    }
    let model = run_model(&state, req.model.trim())?;
    let adapter = match req.adapter.as_deref().map(str::trim) {
        None | Some("") => None,
        Some(name) => Some(crate::tuning::plain_name("adapter", name)?),
    };
    let max_new_tokens = req.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    if !(1..=MAX_MAX_NEW_TOKENS).contains(&max_new_tokens) {
        return Err(ApiError::BadRequest(format!(
            "max_new_tokens {max_new_tokens} must be between 1 and {MAX_MAX_NEW_TOKENS}"
        )));
    }
    if req.limit == Some(0) {
        return Err(ApiError::BadRequest("limit must be at least 1".to_owned()));
    }
    let new = NewRun {
        exam_set_id: req.exam_set_id,
        model,
        adapter,
        settings: kokushi_shared::job::EvalSettings {
            prompt_format,
            chat_template,
            scoring: req.scoring,
            loglik_target: req.loglik_target,
            max_new_tokens,
            shots: req.shots,
            shot_seed,
            keep_quantization: req.keep_quantization,
        },
        shot_pool_exam_set_id: req.shot_pool_exam_set_id.filter(|_| req.shots > 0),
        limit: req.limit,
        priority: req.priority,
        created_by: Some(principal.user.id),
    };
    let job = state.db.create_run(&new).await?.ok_or_else(|| {
        ApiError::NotFound(format!("exam set {} does not exist", req.exam_set_id))
    })?;
    state.leaderboard.clear();
    // The reply describes the run as created (queued), read before publishing so that a fast
    // worker cannot make it say otherwise.
    let summary = state
        .db
        .run_summary(job.run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} vanished", job.run_id)))?;
    // The run is recorded as queued before it is published: if publishing fails, the
    // reconciler publishes it at the next start.
    let (run_id, job_id) = (job.run_id, job.job_id);
    state.queue.publish_job(&job.into()).await?;
    tracing::info!(run_id, job_id, model = %summary.model, "run queued");
    Ok(HttpResponse::Created().json(summary))
}

async fn run_detail(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    let mut detail = state
        .db
        .run_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    crate::grading::attach_human(&state.db, std::slice::from_mut(&mut detail.run), None).await?;
    Ok(HttpResponse::Ok().json(detail))
}

/// `POST /api/runs/{id}/cancel`: stops a queued or running run; its answers so far are kept.
/// The worker on it stops before its next question. 409 when the run is already finished.
async fn cancel_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    ensure_owner(&caller, "run", id, state.db.run_owner(id).await?, "cancel")?;
    match state.db.cancel_run(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "run {id} is {} already; only a queued or running run can be cancelled",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("run {id} does not exist"))),
        Ok(Some((job_id, attempt))) => state.queue.cancel_job(job_id, attempt).await?,
    }
    state.leaderboard.clear();
    tracing::info!(run_id = id, "run cancelled");
    let summary = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} vanished")))?;
    Ok(HttpResponse::Ok().json(summary))
}

/// `POST /api/runs/{id}/retry`: queues a failed or cancelled run again; it resumes with the
/// questions it has no answer to yet. 409 for a run that is queued, running or succeeded.
async fn retry_run(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    ensure_owner(
        &principal,
        "run",
        id,
        state.db.run_owner(id).await?,
        "retry",
    )?;
    // A remote model must still be allowed: the operator's list may have shrunk since.
    if let Some(run) = state.db.run_lineage_row(id).await? {
        run_model(&state, &run.model)?;
    }
    ensure_queue_room(&state, &principal).await?;
    let job = match state.db.retry_run(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "run {id} is {}; only a failed or cancelled run can be retried",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("run {id} does not exist"))),
        Ok(Some(job)) => job,
    };
    state.leaderboard.clear();
    let summary = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} vanished")))?;
    let (remaining, job_id) = (job.questions.len(), job.job_id);
    state.queue.publish_job(&job.into()).await?;
    tracing::info!(run_id = id, job_id, remaining, "run retried");
    Ok(HttpResponse::Ok().json(summary))
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// A download: the body with its media type and a file name.
pub(crate) fn download(body: String, media: &str, file: &str) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CONTENT_TYPE, media))
        .insert_header((
            actix_web::http::header::CONTENT_DISPOSITION,
            format!("attachment; filename=\"{file}\""),
        ))
        .body(body)
}

/// `GET /api/runs/{id}/export?format=jsonl|csv|predictions`: the run's answers; the JSON lines
/// are a predictions file that `kokushi score` reads, and `predictions` is exactly the file
/// `kokushi eval` writes for the same model and settings.
async fn run_export(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    let detail = state
        .db
        .run_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Ok(download(
            crate::export::answers_jsonl(&detail),
            "application/x-ndjson; charset=utf-8",
            &format!("run-{id}-answers.jsonl"),
        )),
        "csv" => Ok(download(
            crate::export::answers_csv(&detail),
            "text/csv; charset=utf-8",
            &format!("run-{id}-answers.csv"),
        )),
        "predictions" => {
            let lines = state
                .db
                .run_prediction_lines(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
            let mut body = String::new();
            for line in &lines {
                body.push_str(
                    &serde_json::to_string(line).map_err(|e| ApiError::Internal(e.to_string()))?,
                );
                body.push('\n');
            }
            Ok(download(
                body,
                "application/x-ndjson; charset=utf-8",
                &format!("run-{id}-predictions.jsonl"),
            ))
        }
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: jsonl, csv, predictions"
        ))),
    }
}

#[derive(Deserialize)]
struct ScoreQuery {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
    /// `json` (default) or `csv` (one row per exam year, then `all`, as `kokushi score`).
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/runs/{id}/score[?mode=strict|lenient][&confidence=0.95]`: the run's answers
/// scored by `shared::score`, exactly as `kokushi score` scores a run export
/// (docs/scoring.md): per year, overall, and by block, section and specialty.
async fn run_score(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ScoreQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    let mut options = kokushi_shared::score::ScoreOptions::default();
    if let Some(mode) = query.mode.as_deref() {
        options.mode = kokushi_shared::score::LetterMode::from_id(mode).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown mode {mode:?}; known: strict, lenient"))
        })?;
    }
    if let Some(confidence) = query.confidence {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(ApiError::BadRequest(format!(
                "confidence {confidence} must be between 0 and 1"
            )));
        }
        options.confidence = confidence;
    }
    let (questions, predictions) = crate::compare::predictions(&state, id).await?;
    // Bootstrap resampling is CPU work: keep it off the async workers.
    let report =
        web::block(move || kokushi_shared::score::score(&questions, &predictions, &options))
            .await
            .map_err(|e| ApiError::Internal(format!("scoring stopped: {e}")))?;
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(HttpResponse::Ok().json(report)),
        "csv" => Ok(download(
            crate::scoring::render_csv(&crate::scoring::Scoring {
                report,
                comparison: None,
            }),
            "text/csv; charset=utf-8",
            &format!("run-{id}-metrics.csv"),
        )),
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: json, csv"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use actix_web::dev::Service;
    use actix_web::{App, HttpMessage, test};
    use kokushi_shared::api::{Role, UserSummary};

    use super::*;
    use crate::auth::{Credential, Principal};

    fn principal(roles: &[Role]) -> Principal {
        Principal {
            user: UserSummary {
                id: 7,
                username: "someone".to_owned(),
                roles: roles.to_vec(),
                disabled: false,
                created_at: String::new(),
            },
            credential: Credential::Token {
                token_hash: String::new(),
            },
        }
    }

    /// The handlers alone, without the access middleware: each refuses, by its own first
    /// argument, every caller below its table line's level — so the table and the signatures
    /// agree, and a handler stays shut even if the middleware were bypassed.
    #[actix_web::test]
    async fn every_handler_refuses_a_caller_below_its_level() {
        let callers: [(&str, Option<Principal>, Access); 3] = [
            ("anonymous", None, Access::Member),
            (
                "an annotator",
                Some(principal(&[Role::Annotator])),
                Access::Researcher,
            ),
            (
                "a researcher",
                Some(principal(&[Role::Researcher])),
                Access::Admin,
            ),
        ];
        let mut checked = 0;
        for (who, caller, needs_at_least) in callers {
            let app = test::init_service(
                App::new()
                    .wrap_fn(move |req, srv| {
                        if let Some(p) = caller.clone() {
                            req.extensions_mut().insert(p);
                        }
                        srv.call(req)
                    })
                    .configure(configure),
            )
            .await;
            let level = |a: Access| match a {
                Access::Public => 0,
                Access::Member => 1,
                Access::Researcher => 2,
                Access::Admin => 3,
            };
            for e in ENDPOINTS
                .iter()
                .filter(|e| level(e.access) >= level(needs_at_least))
            {
                let path = e
                    .path
                    .split('/')
                    .map(|s| if s.starts_with('{') { "1" } else { s })
                    .collect::<Vec<_>>()
                    .join("/");
                let method =
                    actix_web::http::Method::from_bytes(e.method.to_uppercase().as_bytes())
                        .expect("a method");
                let req = test::TestRequest::default()
                    .method(method)
                    .uri(&path)
                    .insert_header(("Content-Type", "application/json"))
                    .set_payload("{}")
                    .to_request();
                let status = test::call_service(&app, req).await.status().as_u16();
                let want = if who == "anonymous" { 401 } else { 403 };
                assert_eq!(
                    status, want,
                    "{} {} ({:?}) as {who} reached its handler",
                    e.method, e.path, e.access
                );
                checked += 1;
            }
        }
        assert!(checked > ENDPOINTS.len(), "{checked}");
    }
}
