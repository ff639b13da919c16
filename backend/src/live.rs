//! `GET /api/runs/{id}/events`: a run's progress as server-sent events, for the run page and
//! the queue view. Each event is `event: run` with the run's summary (status, tally) as JSON,
//! sent at once and then whenever it changes (checked every second against the database, so
//! any API node serves any run); the stream ends after the run finishes. A comment line every
//! 15 s keeps proxies from closing a quiet stream.

use std::time::{Duration, Instant};

use actix_web::{HttpResponse, web};
use futures_util::stream;

use crate::error::ApiError;
use crate::routes::AppState;

const CHECK_EVERY: Duration = Duration::from_secs(1);
const KEEP_ALIVE: Duration = Duration::from_secs(15);

struct Follow {
    state: web::Data<AppState>,
    run_id: i64,
    last: Option<String>,
    last_sent: Instant,
    done: bool,
    first: bool,
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

pub async fn run_events(
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let run_id = crate::accounts::parse_id("run", &path)?;
    if state.db.run_summary(run_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("run {run_id} does not exist")));
    }
    let follow = Follow {
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
