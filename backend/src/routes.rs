//! The JSON API under `/api`. Handlers are thin: validate, call the database or the queue,
//! answer with `shared` types.
//!
//! Every endpoint (the JSON API under `/api`, and `/metrics`) is one line of [`ENDPOINTS`]: method, path, who may call it, handler. The same
//! line registers the route and feeds the access check ([`crate::auth::authorize`]), so an
//! endpoint cannot exist without a stated access, and the role-matrix test walks them all.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use kokushi_queue::JobQueue;
use kokushi_shared::api::{CreateRun, ImportReport};
use kokushi_shared::igakuqa::Importer;
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
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Lower case: `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// The full pattern, as actix matches it: `/api/runs/{id}`, `/metrics`.
    pub path: &'static str,
    pub access: Access,
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
            $(cfg.route($path, web::$method().to($handler));)*
        }
    };
}

endpoints! {
    get "/api/health" Public => health;
    get "/api/openapi.json" Public => openapi;
    post "/api/auth/login" Public => accounts::login;
    post "/api/auth/logout" Member => accounts::logout;
    get "/api/auth/me" Member => accounts::me;
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
    post "/api/exam-sets" Researcher => upload_exam_set;
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
async fn workers(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.queue.workers().await?))
}

/// `GET /api/models`: the model store's models and adapters, read from their headers (format,
/// architecture, quantization, size; an adapter's rank and base), each with whether a run can
/// use it or why not.
async fn models(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let store = state.model_store.clone();
    let entries = web::block(move || kokushi_worker::list_store(&store))
        .await
        .map_err(|e| ApiError::Internal(format!("listing the model store stopped: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(HttpResponse::Ok().json(entries))
}

async fn exam_sets(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.exam_sets().await?))
}

#[derive(Deserialize)]
struct UploadQuery {
    name: String,
    #[serde(default)]
    file: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

/// `POST /api/exam-sets?name=NAME[&file=FILE.jsonl|FILE.csv][&namespace=NS][&format=jmmlu]`
/// with the file as the body, or as the field `file` of a `multipart/form-data` body (its file
/// name then names the file) — docs/exam-set-format.md: JSON lines, or CSV when the file name
/// ends in `.csv`, or a JMMLU subject file with `format=jmmlu`. Read as a stream and refused
/// (413) as soon as it passes the upload limit. All or nothing: any problem refuses the whole
/// file with every problem listed, and nothing is stored.
async fn upload_exam_set(
    state: web::Data<AppState>,
    principal: crate::auth::Principal,
    req: actix_web::HttpRequest,
    query: web::Query<UploadQuery>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let name = query.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "query parameter `name` must be 1 to 200 characters".to_owned(),
        ));
    }
    let limit = state.max_upload_bytes;
    if let Some(length) = req
        .headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        && length > limit.saturating_add(64 * 1024)
    {
        return Err(too_large(length, limit));
    }
    let multipart = req
        .headers()
        .get(actix_web::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("multipart/form-data"));
    let (sent_name, body) = if multipart {
        read_multipart_file(&req, payload, limit).await?
    } else {
        (None, read_limited(payload, limit).await?)
    };
    let file = query
        .file
        .clone()
        .or(sent_name)
        .unwrap_or_else(|| "upload.jsonl".to_owned());
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("{file} is not UTF-8 text: {e}")))?;
    let mut importer = match query.namespace.as_deref().filter(|ns| !ns.is_empty()) {
        Some(ns) => Importer::with_namespace(ns).map_err(ApiError::BadRequest)?,
        None => Importer::new(),
    };
    match query.format.as_deref().unwrap_or("auto") {
        "auto" => importer.add_file(&file, text),
        "jmmlu" => {
            let subject = std::path::Path::new(&file)
                .file_stem()
                .map_or_else(|| "jmmlu".to_owned(), |s| s.to_string_lossy().into_owned());
            importer.add_jmmlu(&file, &subject, text);
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {other:?}; known: auto, jmmlu"
            )));
        }
    }
    let questions = importer.finish().map_err(ApiError::InvalidExamSet)?;
    let (exam_set, created) = state.db.insert_exam_set(name, &questions).await?;
    if created {
        // Its owner is told of answers graders flag as wrong (`GET /api/grading/gold-flags`).
        state
            .db
            .set_exam_set_owner(exam_set.id, principal.user.id)
            .await?;
    }
    let report = ImportReport { exam_set, created };
    Ok(if created {
        HttpResponse::Created().json(report)
    } else {
        HttpResponse::Ok().json(report)
    })
}

fn too_large(size: usize, limit: usize) -> ApiError {
    ApiError::PayloadTooLarge(format!(
        "the upload ({size} bytes or more) is larger than the limit of {limit} bytes"
    ))
}

/// Reads a body stream into memory, refusing it once it passes `limit` bytes.
async fn read_limited<S, E>(mut stream: S, limit: usize) -> Result<Vec<u8>, ApiError>
where
    S: futures_util::Stream<Item = Result<web::Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    use futures_util::StreamExt;
    let mut body = Vec::new();
    while let Some(chunk) = stream.next().await {
        let chunk =
            chunk.map_err(|e| ApiError::BadRequest(format!("reading the upload failed: {e}")))?;
        if body.len() + chunk.len() > limit {
            return Err(too_large(body.len() + chunk.len(), limit));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

/// The `file` field of a multipart form: its file name (if sent) and content.
async fn read_multipart_file(
    req: &actix_web::HttpRequest,
    payload: web::Payload,
    limit: usize,
) -> Result<(Option<String>, Vec<u8>), ApiError> {
    use futures_util::StreamExt;
    let malformed = |e: actix_multipart::MultipartError| {
        ApiError::BadRequest(format!("the multipart/form-data body is malformed: {e}"))
    };
    let mut form = actix_multipart::Multipart::new(req.headers(), payload);
    let mut found = None;
    while let Some(field) = form.next().await {
        let field = field.map_err(malformed)?;
        let is_file = field.name() == Some("file");
        let sent_name = field
            .content_disposition()
            .and_then(|cd| cd.get_filename())
            .map(str::to_owned);
        // Other fields are read and dropped, within the same limit.
        let content = read_limited(field, limit).await?;
        if is_file && found.is_none() {
            found = Some((sent_name, content));
        }
    }
    found.ok_or_else(|| {
        ApiError::BadRequest("the multipart/form-data body has no field named `file`".to_owned())
    })
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

async fn create_run(
    state: web::Data<AppState>,
    principal: crate::auth::Principal,
    body: web::Json<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
    ensure_queue_room(&state, &principal).await?;
    let prompt_format = PromptFormat::from_id(&req.prompt_format).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown prompt_format {:?}; known: {}",
            req.prompt_format,
            PromptFormat::ALL.map(PromptFormat::id).join(", ")
        ))
    })?;
    let model = req.model.trim().to_owned();
    if model.is_empty() || model.contains(['/', '\\']) || model.starts_with('.') {
        return Err(ApiError::BadRequest(format!(
            "model {:?} must be a file name in the model store",
            req.model
        )));
    }
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
        prompt_format,
        limit: req.limit,
        max_new_tokens,
        scoring: req.scoring,
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
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
    match state.db.cancel_run(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "run {id} is {} already; only a queued or running run can be cancelled",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("run {id} does not exist"))),
        Ok(Some(job_id)) => state.queue.cancel_job(job_id).await?,
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
    state: web::Data<AppState>,
    principal: crate::auth::Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = crate::accounts::parse_id("run", &path)?;
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

/// `GET /api/runs/{id}/export?format=jsonl|csv`: the run's answers; the JSON lines are a
/// predictions file that `kokushi score` reads.
async fn run_export(
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
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: jsonl, csv"
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
