//! Request metrics as this API node records them: the middleware ([`record`]) that counts every
//! request by method, route pattern and status, with its duration, and gives it a request id
//! for the log; [`HttpMetrics`], where the counts are kept (in `AppState`), written out in the
//! Prometheus text format; and the `Histogram` the `/metrics` handler
//! (`handlers::metrics`) also uses for run durations.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::Mutex;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use tracing::Instrument;

use crate::state::AppState;

/// Upper bounds of the request-duration buckets, in seconds.
const REQUEST_BUCKETS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0];
/// A Prometheus histogram: cumulative counts under each bound, the count and the sum.
#[derive(Debug, Default, Clone)]
pub(crate) struct Histogram {
    counts: Vec<u64>,
    count: u64,
    sum: f64,
}

impl Histogram {
    pub(crate) fn observe(&mut self, bounds: &[f64], value: f64) {
        if self.counts.len() != bounds.len() {
            self.counts = vec![0; bounds.len()];
        }
        for (count, bound) in self.counts.iter_mut().zip(bounds) {
            if value <= *bound {
                *count += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }

    pub(crate) fn write(&self, out: &mut String, name: &str, labels: &str, bounds: &[f64]) {
        let sep = if labels.is_empty() { "" } else { "," };
        for (i, bound) in bounds.iter().enumerate() {
            let n = self.counts.get(i).copied().unwrap_or(0);
            let _ = writeln!(out, "{name}_bucket{{{labels}{sep}le=\"{bound}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "{name}_bucket{{{labels}{sep}le=\"+Inf\"}} {}",
            self.count
        );
        let braces = if labels.is_empty() {
            String::new()
        } else {
            format!("{{{labels}}}")
        };
        let _ = writeln!(out, "{name}_sum{braces} {}", self.sum);
        let _ = writeln!(out, "{name}_count{braces} {}", self.count);
    }
}

/// Requests by (method, route pattern, status), with durations by (method, route).
#[derive(Debug, Default)]
pub struct HttpMetrics {
    requests: Mutex<BTreeMap<(String, String, u16), u64>>,
    durations: Mutex<BTreeMap<(String, String), Histogram>>,
}

impl HttpMetrics {
    fn record(&self, method: &str, route: &str, status: u16, seconds: f64) {
        *self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method.to_owned(), route.to_owned(), status))
            .or_default() += 1;
        self.durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .entry((method.to_owned(), route.to_owned()))
            .or_default()
            .observe(&REQUEST_BUCKETS, seconds);
    }

    /// The requests and their durations in the Prometheus text format, appended to `out`.
    pub(crate) fn write(&self, out: &mut String) {
        out.push_str(
            "# HELP kokushi_http_requests_total HTTP requests answered by this API node, by method, route and status.\n\
             # TYPE kokushi_http_requests_total counter\n",
        );
        for ((method, route, status), n) in self
            .requests
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            let _ = writeln!(
                out,
                "kokushi_http_requests_total{{method=\"{method}\",route=\"{}\",status=\"{status}\"}} {n}",
                escape(route)
            );
        }
        out.push_str(
            "# HELP kokushi_http_request_duration_seconds Time to answer a request, by method and route.\n\
             # TYPE kokushi_http_request_duration_seconds histogram\n",
        );
        for ((method, route), histogram) in self
            .durations
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
        {
            histogram.write(
                out,
                "kokushi_http_request_duration_seconds",
                &format!("method=\"{method}\",route=\"{}\"", escape(route)),
                &REQUEST_BUCKETS,
            );
        }
    }
}

/// The middleware that counts every request, labelled by its route pattern (never the raw
/// path, so ids do not multiply the series; anything unmatched is `other`).
pub async fn record(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let started = Instant::now();
    // Labels come from a closed set (the table's routes and methods), so that no request can
    // add a series: a made-up method or path counts as `other`.
    let method = match req.method().as_str() {
        m @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS") => m.to_owned(),
        _ => "other".to_owned(),
    };
    let route = match crate::auth::paths::lookup(
        req.method().as_str(),
        req.match_info().as_str(),
        req.path(),
    ) {
        crate::auth::paths::Lookup::Endpoint(e) => e.path.to_owned(),
        crate::auth::paths::Lookup::Outside => "static".to_owned(),
        _ => "other".to_owned(),
    };
    let state = req.app_data::<web::Data<AppState>>().cloned();
    let request_id = request_id(&req);
    // Every log line a handler writes carries the request's id (and the job id where it queues
    // one), so a job can be followed from the request that made it to the worker's `job` span.
    // Reads are the pages polling, thousands a second: they get no span (its cost showed in the
    // leaderboard's p99), only the debug line below.
    let span = if method == "GET" || method == "HEAD" {
        tracing::Span::none()
    } else {
        tracing::info_span!("request", id = %request_id, method = %method, route = %route)
    };
    let mut result = next.call(req).instrument(span.clone()).await;
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    let seconds = started.elapsed().as_secs_f64();
    if let Ok(res) = &mut result
        && let Ok(value) = actix_web::http::header::HeaderValue::from_str(&request_id)
    {
        res.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("x-request-id"),
            value,
        );
    }
    let ms = (seconds * 1000.0 * 10.0).round() / 10.0;
    if span.is_none() {
        // Reads that succeed are kept out of the default log level.
        if status >= 500 {
            tracing::warn!(id = %request_id, method = %method, route = %route, status, ms, "request");
        } else if status >= 400 {
            tracing::info!(id = %request_id, method = %method, route = %route, status, ms, "request");
        } else {
            tracing::debug!(id = %request_id, method = %method, route = %route, status, ms, "request");
        }
    } else {
        span.in_scope(|| {
            if status >= 500 {
                tracing::warn!(status, ms, "request");
            } else {
                tracing::info!(status, ms, "request");
            }
        });
    }
    if let Some(state) = state {
        state.metrics.record(&method, &route, status, seconds);
    }
    result
}

/// The request's `X-Request-Id` when a proxy set a sane one (up to 64 letters, digits, `-`, `_`,
/// `.`), else a new one: this process's id and a counter.
fn request_id(req: &ServiceRequest) -> String {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    req.headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        })
        .map(str::to_owned)
        .unwrap_or_else(|| {
            let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            format!("{:x}-{n}", std::process::id())
        })
}

fn escape(label: &str) -> String {
    label
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_histogram_counts_cumulatively_as_prometheus_reads_it() {
        let mut h = Histogram::default();
        for v in [0.0005, 0.003, 0.003, 2.0] {
            h.observe(&REQUEST_BUCKETS, v);
        }
        let mut out = String::new();
        h.write(&mut out, "x", "route=\"/a\"", &REQUEST_BUCKETS);
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.001\"} 1\n"),
            "{out}"
        );
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"0.005\"} 3\n"),
            "{out}"
        );
        assert!(out.contains("x_bucket{route=\"/a\",le=\"5\"} 4\n"), "{out}");
        assert!(
            out.contains("x_bucket{route=\"/a\",le=\"+Inf\"} 4\n"),
            "{out}"
        );
        assert!(out.contains("x_count{route=\"/a\"} 4\n"), "{out}");
    }
}
