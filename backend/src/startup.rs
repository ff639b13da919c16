//! One start-up path for the binary and the tests: [`Application::build`] connects the
//! database and the queue, re-publishes unfinished jobs, starts ingestion (and, in the
//! embedded mode, a worker), and binds the HTTP server; [`Application::run_until_stopped`]
//! serves until the server is told to stop (Ctrl-C, SIGTERM, or a [`StopHandle`]).

use std::net::TcpListener;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use actix_files::{Files, NamedFile};
use actix_web::dev::{Server, ServerHandle, ServiceRequest, ServiceResponse, fn_service};
use actix_web::{App, HttpServer, web};
use kokushi_queue::{JobQueue, MemoryQueue, RedisQueue};
use kokushi_shared::bundle::Bundle;
use kokushi_worker::{Worker, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::ApiError;
use crate::routes;
use crate::settings::Settings;
use crate::state::{AppState, ResponseCache, StreamCounts};

/// A built, bound, not yet running server.
pub struct Application {
    port: u16,
    server: Server,
    db: Db,
    stop_tx: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

/// Stops a running [`Application`] from elsewhere (tests, signal handlers).
#[derive(Clone)]
pub struct StopHandle(ServerHandle);

impl StopHandle {
    pub async fn stop(&self) {
        self.0.stop(true).await;
    }
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = Db::connect(&settings.database_url).await?;
        let queue: Arc<dyn JobQueue> = match &settings.redis_url {
            Some(url) => Arc::new(
                RedisQueue::connect(url, &settings.queue_prefix)
                    .await?
                    .with_visibility_timeout(settings.visibility_timeout),
            ),
            None => Arc::new(MemoryQueue::new()),
        };
        // Every job published carries what it needs of a worker (`routing`).
        let queue: Arc<dyn JobQueue> = Arc::new(crate::routing::RoutedQueue::new(
            queue,
            settings.model_store.clone(),
        ));
        tracing::info!(database = ?db.backend(), queue = %queue.describe(), "connected");

        // The database is the record: if the queue holds nothing of it (a new in-process queue,
        // a Redis that is new or lost its data), every unfinished job goes out again. A Redis
        // that kept its streams still holds them, pending with their workers or waiting.
        let republished = crate::ingest::reconcile(&db, queue.as_ref()).await?;
        if republished > 0 {
            tracing::info!(
                jobs = republished,
                "the queue held none of the unfinished jobs (new, or emptied while the server was \
                 down); published them"
            );
        }

        // Runs that succeeded before per-year verdicts were kept get them now, in the
        // background (each is one scoring of its answers); so do the leaderboard cells.
        tokio::spawn({
            let db = db.clone();
            async move {
                match crate::ingest::backfill_final_scores(&db).await {
                    Ok(0) => {}
                    Ok(runs) => tracing::info!(runs, "stored the per-year verdicts of older runs"),
                    Err(e) => {
                        tracing::warn!(error = %e, "storing per-year verdicts of older runs failed")
                    }
                }
                // Then the facet cells filtered leaderboards add up, for runs that finished
                // before they were kept or whose rule packs changed while the server was down.
                match crate::ingest::refresh_stale_cells(&db).await {
                    Ok(0) => {}
                    Ok(runs) => tracing::info!(runs, "stored the leaderboard cells of runs"),
                    Err(e) => tracing::warn!(error = %e, "storing leaderboard cells failed"),
                }
                // And the human decisions of runs graded before they were kept.
                match crate::grading::refresh_all_human(&db).await {
                    Ok(0) => {}
                    Ok(runs) => tracing::info!(runs, "stored the human decisions of graded runs"),
                    Err(e) => tracing::warn!(error = %e, "storing human decisions failed"),
                }
            }
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let leaderboard = Arc::new(ResponseCache::default());
        let mut tasks = Vec::new();
        let instance = format!("{}-{}", hostname(), std::process::id());
        tasks.push(tokio::spawn(crate::ingest::run(
            db.clone(),
            queue.clone(),
            format!("server-{instance}"),
            stop_rx.clone(),
            settings.reconcile_interval,
            leaderboard.clone(),
        )));
        if settings.embedded_worker {
            let worker = Worker::new(
                queue.clone(),
                WorkerConfig {
                    name: format!("embedded-{instance}"),
                    model_store: settings.model_store.clone(),
                    poll: Duration::from_secs(1),
                    remote: None,
                    visibility_timeout: settings.visibility_timeout,
                    max_attempts: settings.max_attempts,
                    batch: settings.worker_batch,
                    device: settings.worker_device,
                    memory: settings.worker_memory,
                },
            );
            let mut stop = stop_rx.clone();
            tasks.push(tokio::spawn(worker.run_until_stopped(async move {
                let _ = stop.wait_for(|s| *s).await;
            })));
        }

        let listener = TcpListener::bind(&settings.bind)
            .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", settings.bind))?;
        let port = listener.local_addr()?.port();
        let state = web::Data::new(AppState {
            db: db.clone(),
            queue,
            limiter: crate::auth::LoginLimiter::new(settings.max_concurrent_sign_ins),
            principals: crate::auth::PrincipalCache::default(),
            metrics: crate::metrics::HttpMetrics::default(),
            leaderboard,
            secure_cookies: settings.secure_cookies,
            max_upload_bytes: settings.max_upload_bytes,
            max_queued_per_user: settings.max_queued_per_user,
            model_store: settings.model_store.clone(),
            trusted_proxies: settings.trusted_proxies.clone(),
            session_idle: settings.session_idle,
            streams: StreamCounts::new(settings.max_streams_per_user),
            remote_model_allow: settings.remote_model_allow.clone(),
            rescoring: tokio::sync::Semaphore::new(2),
            question_facts: Default::default(),
            run_outcomes: Default::default(),
        });
        if db.user_count().await? == 0 {
            tracing::warn!(
                "no accounts yet: create the first admin with `kokushi admin create --username NAME`"
            );
        }
        purge_sessions(&db, settings.session_idle).await?;
        // Expired and idle sessions are forgotten every few minutes, not only at start (a
        // server may run for months), so the table holds only sessions that still work.
        tasks.push(tokio::spawn({
            let db = db.clone();
            let idle = settings.session_idle;
            let every = settings.session_purge_interval;
            let mut stop = stop_rx.clone();
            async move {
                loop {
                    tokio::select! {
                        _ = stop.wait_for(|s| *s) => break,
                        () = tokio::time::sleep(every) => {}
                    }
                    if let Err(e) = purge_sessions(&db, idle).await {
                        tracing::warn!(error = %e, "forgetting expired sessions failed");
                    }
                }
            }
        }));
        let static_dir = settings.static_dir.clone();
        if let Some(dir) = &static_dir
            && let Some(page) = Bundle::ALL
                .map(Bundle::page)
                .into_iter()
                .find(|page| !dir.join(page).is_file())
        {
            anyhow::bail!(
                "{} has no {page}: build the frontend first (cargo xtask frontend)",
                dir.display()
            );
        }
        let max_upload = settings.max_upload_bytes;
        let server = HttpServer::new(move || {
            let app = App::new()
                .app_data(state.clone())
                .app_data(web::PayloadConfig::new(max_upload))
                // JSON bodies are small (an upload streams its own, bounded body);
                // a larger one is refused before it is read.
                .app_data(
                    web::JsonConfig::default()
                        .limit(MAX_JSON_BODY)
                        .error_handler(|e, _| json_error(e).into()),
                )
                .app_data(web::QueryConfig::default().error_handler(|e, _| {
                    ApiError::BadRequest(format!("invalid query: {e}")).into()
                }))
                // Outermost last: compression, the security headers (on refusals
                // too), metrics (timing everything, refusals included), then the
                // access check in front of every endpoint and file.
                .wrap(actix_web::middleware::from_fn(crate::auth::authorize))
                .wrap(actix_web::middleware::from_fn(crate::metrics::record))
                .wrap(actix_web::middleware::from_fn(
                    crate::headers::security_headers,
                ))
                .wrap(actix_web::middleware::Compress::default())
                .configure(routes::configure);
            match &static_dir {
                Some(dir) => app.service(precompressed(dir)).service(spa_files(dir)),
                None => app,
            }
        })
        .workers(2)
        .disable_signals()
        .listen(listener)?
        .run();
        Ok(Self {
            port,
            server,
            db,
            stop_tx,
            tasks,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// The database the server uses (tests and `kokushi demo` make accounts through it).
    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn stop_handle(&self) -> StopHandle {
        StopHandle(self.server.handle())
    }

    /// Serves until stopped, then stops ingestion and the embedded worker and closes the
    /// database.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let served = self.server.await;
        let _ = self.stop_tx.send(true);
        for task in self.tasks {
            // A worker in the middle of a generation finishes that step first; do not hang on it.
            let _ = tokio::time::timeout(Duration::from_secs(10), task).await;
        }
        self.db.close().await;
        served?;
        Ok(())
    }
}

/// The largest JSON request body, in bytes (uploads are not JSON: they keep their own limit).
pub const MAX_JSON_BODY: usize = 64 * 1024;

/// A JSON body the extractor refused: too large (413), or not what the endpoint takes (400).
fn json_error(e: actix_web::error::JsonPayloadError) -> ApiError {
    use actix_web::error::JsonPayloadError;
    match e {
        JsonPayloadError::Overflow { .. } | JsonPayloadError::OverflowKnownLength { .. } => {
            ApiError::PayloadTooLarge(format!(
                "a JSON body may be at most {MAX_JSON_BODY} bytes (uploads of exam sets are \
                 not JSON and have their own limit)"
            ))
        }
        other => ApiError::BadRequest(format!("invalid JSON body: {other}")),
    }
}

/// Deletes the sessions that have expired or gone unused for `idle`.
async fn purge_sessions(db: &Db, idle: Duration) -> Result<u64, crate::db::DbError> {
    let now = crate::clock::unix_now();
    let idle_since =
        crate::clock::format_unix(now - i64::try_from(idle.as_secs()).unwrap_or(i64::MAX / 4));
    let purged = db
        .delete_expired_sessions(&crate::clock::format_unix(now), &idle_since)
        .await?;
    if purged > 0 {
        tracing::info!(purged, "forgot expired and idle sessions");
    }
    Ok(purged)
}

/// A built file (a bundle's WebAssembly, script or style) that `cargo xtask frontend` also wrote
/// compressed beside it (`kokushi_runs_bg.wasm.gz`), to a browser that accepts gzip: that file,
/// compressed once at the best level, instead of the quick compression the `Compress`
/// middleware applies to every answer (a third larger on the WebAssembly). Anything else
/// (another client, a file with no `.gz`) goes on to [`spa_files`].
fn precompressed(dir: &Path) -> actix_web::Resource {
    let dir = dir.to_owned();
    let guard_dir = dir.clone();
    web::resource(r"/{file:[A-Za-z0-9_][A-Za-z0-9_.-]*\.(?:wasm|js|css)}")
        .guard(actix_web::guard::Get())
        .guard(actix_web::guard::fn_guard(move |ctx| {
            accepts_gzip(
                ctx.head()
                    .headers()
                    .get(actix_web::http::header::ACCEPT_ENCODING),
            ) && ctx
                .head()
                .uri
                .path()
                .strip_prefix('/')
                .filter(|file| plain_file_name(file))
                .is_some_and(|file| guard_dir.join(format!("{file}.gz")).is_file())
        }))
        .to(
            move |req: actix_web::HttpRequest, file: web::Path<String>| {
                let file = file.into_inner();
                let path = dir.join(format!("{file}.gz"));
                async move {
                    let extension = file.rsplit('.').next().unwrap_or_default();
                    match NamedFile::open(&path) {
                        Ok(gz) => {
                            let mut res = gz
                                .set_content_type(actix_files::file_extension_to_mime(extension))
                                .set_content_encoding(
                                    actix_web::http::header::ContentEncoding::Gzip,
                                )
                                .disable_content_disposition()
                                .into_response(&req);
                            res.headers_mut().insert(
                                actix_web::http::header::VARY,
                                actix_web::http::header::HeaderValue::from_static(
                                    "accept-encoding",
                                ),
                            );
                            res
                        }
                        Err(e) => actix_web::ResponseError::error_response(&ApiError::Internal(
                            format!("cannot open {}: {e}", path.display()),
                        )),
                    }
                }
            },
        )
}

/// A file name of the built frontend: letters, digits, `_`, `.`, `-`, not starting with a dot
/// (no separator, no `..` walk, no hidden file).
fn plain_file_name(name: &str) -> bool {
    !name.starts_with('.')
        && !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// Whether an `Accept-Encoding` header takes gzip: named with a weight above zero, or else
/// covered by `*` with one.
fn accepts_gzip(header: Option<&actix_web::http::header::HeaderValue>) -> bool {
    let Some(value) = header.and_then(|h| h.to_str().ok()) else {
        return false;
    };
    let mut any = false;
    for coding in value.split(',') {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or_default().trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                .is_some_and(|q| q <= 0.0)
        });
        if name.eq_ignore_ascii_case("gzip") || name.eq_ignore_ascii_case("x-gzip") {
            return !refused;
        }
        if name == "*" {
            any = !refused;
        }
    }
    any
}

/// The built frontend: a file when the path names one, else the page of the bundle whose
/// client-side routes include the path (`Bundle::of`: `runs.html` for `/runs/3`, `jobs.html`
/// for `/jobs`, `grading.html` for `/grading`, `index.html` for `/` and unknown paths), so that
/// a browser loads only that bundle.
fn spa_files(dir: &Path) -> Files {
    let dir_of_pages = dir.to_owned();
    Files::new("/", dir)
        .index_file(Bundle::Portal.page())
        .default_handler(fn_service(move |req: ServiceRequest| {
            let page = dir_of_pages.join(Bundle::of(req.path()).page());
            async move {
                let (req, _) = req.into_parts();
                // A failure is answered here, not returned as an error, so that it too carries
                // the security headers (`headers`).
                let res = match NamedFile::open(&page) {
                    Ok(file) => file.into_response(&req),
                    Err(e) => actix_web::ResponseError::error_response(&ApiError::Internal(
                        format!("cannot open {}: {e}", page.display()),
                    )),
                };
                Ok(ServiceResponse::new(req, res))
            }
        }))
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kokushi".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    #[test]
    fn gzip_is_sent_only_to_who_takes_it() {
        let takes = |v: &str| accepts_gzip(Some(&HeaderValue::from_str(v).expect("header")));
        for yes in [
            "gzip",
            "gzip, deflate, br, zstd",
            "br;q=1.0, GZIP;q=0.5",
            "*",
            "br, *;q=0.1",
        ] {
            assert!(takes(yes), "{yes}");
        }
        for no in [
            "",
            "br",
            "identity",
            "gzip;q=0",
            "gzip; q=0.0, br",
            "*;q=0",
            "gzip;q=0, *",
            "gzipx",
        ] {
            assert!(!takes(no), "{no}");
        }
        assert!(!accepts_gzip(None));
    }

    #[test]
    fn only_plain_file_names_are_looked_up() {
        for ok in ["kokushi_runs_bg.wasm", "start-kokushi_runs.js", "style.css"] {
            assert!(plain_file_name(ok), "{ok}");
        }
        for bad in [
            "", ".env.js", "../x.js", "a/b.js", "a%2Fb.js", "a\\b.js", "..", "a b.js",
        ] {
            assert!(!plain_file_name(bad), "{bad}");
        }
    }
}
