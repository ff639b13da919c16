//! The JSON API under `/api`. Handlers are thin: validate, call the database or the queue,
//! answer with `shared` types.
//!
//! Every endpoint is one line of [`ENDPOINTS`]: method, path, who may call it, handler. The same
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
use crate::auth::{Access, LoginLimiter};
use crate::db::Db;
use crate::db::runs::NewRun;
use crate::error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub limiter: LoginLimiter,
    /// Mark the session cookie `Secure` even when the request did not arrive over TLS (a TLS
    /// proxy that does not say so).
    pub secure_cookies: bool,
}

/// One endpoint of the API.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    /// Lower case: `get`, `post`, `patch`, `delete`.
    pub method: &'static str,
    /// The full pattern, as actix matches it: `/api/runs/{id}`.
    pub path: &'static str,
    pub access: Access,
}

macro_rules! endpoints {
    ($($method:ident $path:literal $access:ident => $handler:path;)*) => {
        /// Every endpoint of the API, with who may call it.
        pub const ENDPOINTS: &[Endpoint] = &[$(Endpoint {
            method: stringify!($method),
            path: concat!("/api", $path),
            access: Access::$access,
        },)*];

        fn register(scope: actix_web::Scope) -> actix_web::Scope {
            scope $(.route($path, web::$method().to($handler)))*
        }
    };
}

endpoints! {
    get "/health" Public => health;
    post "/auth/login" Public => accounts::login;
    post "/auth/logout" Member => accounts::logout;
    get "/auth/me" Member => accounts::me;
    get "/tokens" Member => accounts::tokens;
    post "/tokens" Member => accounts::create_token;
    delete "/tokens/{id}" Member => accounts::revoke_token;
    get "/users" Admin => accounts::users;
    post "/users" Admin => accounts::add_user;
    patch "/users/{id}" Admin => accounts::update_user;
    get "/leaderboard" Researcher => leaderboard;
    get "/exam-sets" Researcher => exam_sets;
    post "/exam-sets" Researcher => upload_exam_set;
    post "/runs" Researcher => create_run;
    get "/runs/{id}" Researcher => run_detail;
    get "/runs/{id}/score" Researcher => run_score;
}

/// Default and largest number of new tokens a run may ask for.
const DEFAULT_MAX_NEW_TOKENS: u32 = 32;
const MAX_MAX_NEW_TOKENS: u32 = 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        register(web::scope("/api"))
            .wrap(actix_web::middleware::from_fn(crate::auth::authorize))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::NotFound("no such API endpoint".to_owned()))
            })),
    );
}

async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

async fn leaderboard(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.leaderboard().await?))
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
/// with the file as the body (docs/exam-set-format.md): JSON lines, or CSV when the file name
/// ends in `.csv`, or a JMMLU subject file with `format=jmmlu`. All or nothing: any problem
/// refuses the whole file with every problem listed.
async fn upload_exam_set(
    state: web::Data<AppState>,
    query: web::Query<UploadQuery>,
    body: web::Bytes,
) -> Result<HttpResponse, ApiError> {
    let name = query.name.trim();
    if name.is_empty() || name.len() > 200 {
        return Err(ApiError::BadRequest(
            "query parameter `name` must be 1 to 200 characters".to_owned(),
        ));
    }
    let file = query
        .file
        .clone()
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
    let report = ImportReport { exam_set, created };
    Ok(if created {
        HttpResponse::Created().json(report)
    } else {
        HttpResponse::Ok().json(report)
    })
}

async fn create_run(
    state: web::Data<AppState>,
    body: web::Json<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
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
        prompt_format,
        limit: req.limit,
        max_new_tokens,
    };
    let job = state.db.create_run(&new).await?.ok_or_else(|| {
        ApiError::NotFound(format!("exam set {} does not exist", req.exam_set_id))
    })?;
    // The reply describes the run as created (queued), read before publishing so that a fast
    // worker cannot make it say otherwise.
    let summary = state
        .db
        .run_summary(job.run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} vanished", job.run_id)))?;
    // The run is recorded as queued before it is published: if publishing fails, the
    // reconciler publishes it at the next start.
    state.queue.publish_job(&job).await?;
    Ok(HttpResponse::Created().json(summary))
}

async fn run_detail(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = path
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("run id {:?} is not a number", path.as_str())))?;
    let detail = state
        .db
        .run_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    Ok(HttpResponse::Ok().json(detail))
}

#[derive(Deserialize)]
struct ScoreQuery {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
}

/// `GET /api/runs/{id}/score[?mode=strict|lenient][&confidence=0.95]`: the run's answers
/// scored by `shared::score`, exactly as `kokushi score` scores a run export
/// (docs/scoring.md): per year, overall, and by block, section and specialty.
async fn run_score(
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ScoreQuery>,
) -> Result<HttpResponse, ApiError> {
    let id: i64 = path
        .parse()
        .map_err(|_| ApiError::BadRequest(format!("run id {:?} is not a number", path.as_str())))?;
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
    let (questions, predictions) = state
        .db
        .run_predictions(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let predictions: std::collections::BTreeMap<String, kokushi_shared::score::Reply> = predictions
        .into_iter()
        .map(|(id, raw)| (id, raw.into()))
        .collect();
    // Bootstrap resampling is CPU work: keep it off the async workers.
    let report =
        web::block(move || kokushi_shared::score::score(&questions, &predictions, &options))
            .await
            .map_err(|e| ApiError::Internal(format!("scoring stopped: {e}")))?;
    Ok(HttpResponse::Ok().json(report))
}
