//! `GET /metrics` (admin; Prometheus scrapes it with an API token as its bearer credential): the
//! Prometheus text format of HTTP requests by route and status with their durations, as this API
//! node recorded them since it started (`crate::metrics`), and, from the database and the queue
//! at scrape time, runs by status (`queued` is the queue depth), the durations of the last 1,000
//! finished runs, and the workers reporting to the registry.

use std::fmt::Write;

use actix_web::{HttpResponse, web};

use crate::error::ApiError;
use crate::metrics::Histogram;
use crate::state::AppState;

/// Upper bounds of the run-duration buckets, in seconds.
const RUN_BUCKETS: [f64; 8] = [
    10.0, 60.0, 300.0, 900.0, 3600.0, 14_400.0, 43_200.0, 86_400.0,
];

/// `GET /metrics`.
pub async fn metrics(
    _caller: crate::auth::Admin,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut out = String::new();
    state.metrics.write(&mut out);
    let counts = state.db.run_counts().await?;
    out.push_str(
        "# HELP kokushi_runs Runs by status (all API nodes: from the database).\n\
         # TYPE kokushi_runs gauge\n",
    );
    for status in ["queued", "running", "succeeded", "failed", "cancelled"] {
        let n = counts.get(status).copied().unwrap_or(0);
        let _ = writeln!(out, "kokushi_runs{{status=\"{status}\"}} {n}");
    }
    let _ = writeln!(
        out,
        "# HELP kokushi_queue_depth Runs waiting for a worker.\n\
         # TYPE kokushi_queue_depth gauge\nkokushi_queue_depth {}",
        counts.get("queued").copied().unwrap_or(0)
    );
    let mut runs = Histogram::default();
    for seconds in state.db.recent_run_durations(1_000).await? {
        runs.observe(&RUN_BUCKETS, seconds);
    }
    out.push_str(
        "# HELP kokushi_run_duration_seconds From creation to the end, of the last 1000 finished runs.\n\
         # TYPE kokushi_run_duration_seconds histogram\n",
    );
    runs.write(&mut out, "kokushi_run_duration_seconds", "", &RUN_BUCKETS);
    let workers = state.queue.workers().await?;
    let _ = writeln!(
        out,
        "# HELP kokushi_workers Workers that reported to the registry lately.\n\
         # TYPE kokushi_workers gauge\nkokushi_workers {}",
        workers.len()
    );
    let busy = workers.iter().filter(|w| w.run_id.is_some()).count();
    let _ = writeln!(
        out,
        "# HELP kokushi_workers_busy Workers with a job.\n\
         # TYPE kokushi_workers_busy gauge\nkokushi_workers_busy {busy}"
    );
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(out))
}
