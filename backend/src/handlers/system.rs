//! The service itself: whether it is up (`/api/health`), its OpenAPI document, the workers that
//! report to the queue, and the model store's models and adapters as runs may name them.

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/health`: the server is up.
pub async fn health() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({"status": "ok"}))
}

/// `GET /api/openapi.json`: the OpenAPI document of this API (`crate::openapi`).
pub async fn openapi() -> HttpResponse {
    static DOCUMENT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HttpResponse::Ok()
        .content_type(actix_web::http::header::ContentType::json())
        .body(DOCUMENT.get_or_init(crate::openapi::document_json).clone())
}

/// `GET /api/workers` (admin): every worker that reported lately: device, loaded model, current
/// run and job, last report.
pub async fn workers(
    _caller: crate::auth::Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.queue.workers().await?))
}

/// `GET /api/models`: the model store's models and adapters, read from their headers (format,
/// architecture, quantization, size; an adapter's rank and base), each with whether a run can
/// use it or why not.
pub async fn models(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // Adapters other projects' tunings wrote are theirs: not listed here.
    let foreign = state.db.foreign_adapters(&caller.scope()?).await?;
    let store = state.model_store.clone();
    let mut entries = web::block(move || kokushi_worker::list_store(&store))
        .await
        .map_err(|e| ApiError::Internal(format!("listing the model store stopped: {e}")))?
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    entries.retain(|e| !foreign.contains(&e.name));
    Ok(HttpResponse::Ok().json(entries))
}
