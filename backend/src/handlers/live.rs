//! `GET /api/runs/{id}/events`: a run's progress as server-sent events, for the run page and
//! the queue view. Each event is `event: run` with the run's summary (status, tally) as JSON,
//! sent at once and then whenever it changes (checked every second against the database, so
//! any API node serves any run); the stream ends after the run finishes. A comment line every
//! 5 s keeps proxies from closing a quiet stream.
//!
//! Bounded: one account holds at most a few streams at once (429 beyond; counted in
//! [`crate::state::StreamCounts`]), and a stream ends when the session or token that opened it
//! stops being valid (signed out, expired, revoked, the account disabled), checked every
//! [`CREDENTIAL_CHECK_EVERY`].

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use futures_util::stream;

use crate::auth::Credential;
use crate::error::ApiError;
use crate::state::{AppState, StreamSlot};

const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A comment line this often keeps proxies from closing a quiet stream, and lets the server
/// notice a client that went away (and free its stream's slot).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How often a stream checks that its caller's session or token still holds.
pub const CREDENTIAL_CHECK_EVERY: Duration = Duration::from_secs(5);

struct Follow {
    state: web::Data<AppState>,
    run_id: i64,
    last: Option<String>,
    last_sent: Instant,
    done: bool,
    first: bool,
    credential: Credential,
    checked: Instant,
    _slot: StreamSlot,
}

/// The next chunk of the stream, or `None` to end it.
async fn next_chunk(mut f: Follow) -> Option<(Result<web::Bytes, actix_web::Error>, Follow)> {
    if f.done {
        return None;
    }
    loop {
        if !f.first {
            tokio::time::sleep(CHECK_EVERY).await;
        }
        f.first = false;
        if f.checked.elapsed() >= CREDENTIAL_CHECK_EVERY {
            f.checked = Instant::now();
            // The session ended (or the token was revoked), or the caller no longer acts in
            // the run's project: so does the stream.
            let Ok(Some(principal)) =
                crate::auth::principal_of(&f.state, f.credential.clone(), false).await
            else {
                return None;
            };
            let Ok(scope) = principal.scope() else {
                return None;
            };
            if !matches!(
                f.state
                    .db
                    .visibility(&scope, crate::db::projects::Owned::Run, f.run_id)
                    .await,
                Ok(crate::db::projects::Visibility::Own)
            ) {
                return None;
            }
        }
        let summary = match f.state.db.run_summary(f.run_id).await {
            Ok(Some(summary)) => summary,
            // The run is gone or the database failed: end the stream; the browser reconnects.
            Ok(None) | Err(_) => return None,
        };
        let json = serde_json::to_string(&summary).unwrap_or_default();
        if f.last.as_deref() != Some(json.as_str()) {
            f.done = summary.status.is_finished();
            f.last = Some(json.clone());
            f.last_sent = Instant::now();
            let chunk = format!("event: run\ndata: {json}\n\n");
            return Some((Ok(web::Bytes::from(chunk)), f));
        }
        if f.last_sent.elapsed() >= KEEP_ALIVE {
            f.last_sent = Instant::now();
            return Some((Ok(web::Bytes::from_static(b": keep-alive\n\n")), f));
        }
    }
}

/// `GET /api/runs/{id}/events`: the stream; 404 for a run that does not exist, 429 past the
/// account's streams.
pub async fn run_events(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = super::parse_id("run", &path)?;
    if state.db.run_summary(run_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("run {run_id} does not exist")));
    }
    let slot = state
        .streams
        .take(caller.user.id)
        .ok_or_else(|| ApiError::Busy {
            message: format!(
                "{} has {} live streams open, the most one account may; close a page that \
                 follows a run",
                caller.user.username,
                state.streams.per_user()
            ),
            retry_after_secs: 5,
        })?;
    let follow = Follow {
        credential: caller.0.credential,
        checked: Instant::now(),
        _slot: slot,
        state,
        run_id,
        last: None,
        last_sent: Instant::now(),
        done: false,
        first: true,
    };
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-cache"))
        // Sent as it comes: the compression middleware leaves an encoded response alone.
        .insert_header((actix_web::http::header::CONTENT_ENCODING, "identity"))
        .streaming(stream::unfold(follow, next_chunk)))
}
