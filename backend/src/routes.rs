//! The JSON API under `/api`. Handlers are thin: validate, call the database or the queue,
//! answer with `shared` types.

use std::sync::Arc;

use actix_web::{HttpResponse, web};
use kokushi_queue::JobQueue;
use kokushi_shared::api::{CreateRun, ImportReport};
use kokushi_shared::igakuqa::Importer;
use kokushi_shared::prompt::PromptFormat;
use serde::Deserialize;

use crate::db::Db;
use crate::db::runs::NewRun;
use crate::error::ApiError;

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
}

/// Default and largest number of new tokens a run may ask for.
const DEFAULT_MAX_NEW_TOKENS: u32 = 32;
const MAX_MAX_NEW_TOKENS: u32 = 1024;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/api")
            .route("/health", web::get().to(health))
            .route("/leaderboard", web::get().to(leaderboard))
            .route("/exam-sets", web::get().to(exam_sets))
            .route("/exam-sets", web::post().to(upload_exam_set))
            .route("/runs", web::post().to(create_run))
            .route("/runs/{id}", web::get().to(run_detail))
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
}

/// `POST /api/exam-sets?name=NAME[&file=FILE.jsonl]` with the JSON-lines file as the body.
/// All or nothing: any problem refuses the whole file with every problem listed.
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
    let mut importer = Importer::new();
    importer.add_file(&file, text);
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
