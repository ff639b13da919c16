//! The HTTP handlers, one module per resource; `routes::ENDPOINTS` names each with its access
//! level. Every handler above `Public` takes that level's extractor (`auth::Member`,
//! `auth::Researcher`, `auth::Admin`) as its first argument. Handlers are thin: they check the
//! request, call the database, the queue or the logic modules (`grading`, `tuning`, `scoring`,
//! `export`), and answer with `shared` types.
//!
//! Here too, the checks and answers several of them share: ids in paths ([`parse_id`]), names
//! in the model store ([`plain_name`]), who may change a run or tuning ([`ensure_owner`]), room
//! in the queue ([`ensure_queue_room`]), and file downloads ([`download`]).

pub mod accounts;
pub mod compare;
pub mod exam_sets;
pub mod grading;
pub mod judges;
pub mod leaderboard;
pub mod lineage;
pub mod live;
pub mod metrics;
pub mod projects;
pub mod rules;
pub mod runs;
pub mod system;
pub mod tunings;

use actix_web::HttpResponse;

use crate::error::ApiError;
use crate::state::AppState;

/// The id in a path (`/api/runs/{id}`), or 400 naming what it should have been.
pub fn parse_id(what: &str, path: &str) -> Result<i64, ApiError> {
    crate::auth::parse_key(path)
        .ok_or_else(|| ApiError::BadRequest(format!("{what} id {path:?} is not a number")))
}

/// A name inside the model store: no path, nothing hidden.
pub(crate) fn plain_name(what: &str, name: &str) -> Result<String, ApiError> {
    let name = name.trim();
    if name.len() > 200 || !kokushi_worker::is_plain_name(name) {
        return Err(ApiError::BadRequest(format!(
            "{what} {name:?} must be a plain name in the model store (no path, not hidden)"
        )));
    }
    Ok(name.to_owned())
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
        Some(owner) if caller.owns_project() || owner == Some(caller.user.id) => Ok(()),
        Some(_) => Err(ApiError::Forbidden(format!(
            "only the account that queued {what} {id}, the project's owner or an admin may \
             {action} it"
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
