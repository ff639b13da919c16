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
use kokushi_worker::{Worker, WorkerConfig};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::db::Db;
use crate::error::ApiError;
use crate::routes::{self, AppState};
use crate::settings::Settings;

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
        tracing::info!(database = ?db.backend(), queue = %queue.describe(), "connected");

        // The database is the record: if the queue holds nothing of it (a new in-process queue,
        // a Redis that is new or lost its data), every unfinished job goes out again. A Redis
        // that kept its streams still holds them, pending with their workers or waiting.
        let republished = crate::ingest::reconcile(&db, queue.as_ref()).await?;
        if republished > 0 {
            tracing::info!(jobs = republished, "re-published unfinished jobs");
        }

        // Runs that succeeded before per-year verdicts were kept get them now, in the
        // background (each is one scoring of its answers).
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
            }
        });

        let (stop_tx, stop_rx) = watch::channel(false);
        let leaderboard = Arc::new(crate::routes::ResponseCache::default());
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
            limiter: crate::auth::LoginLimiter::default(),
            principals: crate::auth::PrincipalCache::default(),
            metrics: crate::metrics::HttpMetrics::default(),
            leaderboard,
            secure_cookies: settings.secure_cookies,
            max_upload_bytes: settings.max_upload_bytes,
            max_queued_per_user: settings.max_queued_per_user,
            model_store: settings.model_store.clone(),
        });
        if db.user_count().await? == 0 {
            tracing::warn!(
                "no accounts yet: create the first admin with `kokushi admin create --username NAME`"
            );
        }
        let expired = db
            .delete_expired_sessions(&crate::clock::now_rfc3339())
            .await?;
        if expired > 0 {
            tracing::info!(expired, "forgot expired sessions");
        }
        let static_dir = settings.static_dir.clone();
        if let Some(dir) = &static_dir
            && let Some(page) = ["index.html", "grading.html"]
                .into_iter()
                .find(|page| !dir.join(page).is_file())
        {
            anyhow::bail!(
                "{} has no {page}: build the frontend first (cargo xtask frontend)",
                dir.display()
            );
        }
        let max_upload = settings.max_upload_bytes;
        let server =
            HttpServer::new(move || {
                let app =
                    App::new()
                        .app_data(state.clone())
                        .app_data(web::PayloadConfig::new(max_upload))
                        .app_data(web::JsonConfig::default().limit(max_upload).error_handler(
                            |e, _| ApiError::BadRequest(format!("invalid JSON body: {e}")).into(),
                        ))
                        .app_data(web::QueryConfig::default().error_handler(|e, _| {
                            ApiError::BadRequest(format!("invalid query: {e}")).into()
                        }))
                        // Outermost last: compression, then metrics (timing everything, refusals
                        // included), then the access check in front of every endpoint.
                        .wrap(actix_web::middleware::from_fn(crate::auth::authorize))
                        .wrap(actix_web::middleware::from_fn(crate::metrics::record))
                        .wrap(actix_web::middleware::Compress::default())
                        .configure(routes::configure);
                match &static_dir {
                    Some(dir) => app.service(spa_files(dir)),
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

/// The built frontend, with `index.html` for any path that is not a file (client-side routes
/// such as `/runs/3`), except `/grading` and the paths under it: those are the grading app's,
/// a bundle of its own (`grading.html`), so that an annotator's browser loads only that.
fn spa_files(dir: &Path) -> Files {
    let index = dir.join("index.html");
    let grading = dir.join("grading.html");
    Files::new("/", dir)
        .index_file("index.html")
        .default_handler(fn_service(move |req: ServiceRequest| {
            let page = if is_grading_path(req.path()) {
                grading.clone()
            } else {
                index.clone()
            };
            async move {
                let (req, _) = req.into_parts();
                let file = NamedFile::open(&page)?;
                let res = file.into_response(&req);
                Ok(ServiceResponse::new(req, res))
            }
        }))
}

/// `/grading` and every path under it.
fn is_grading_path(path: &str) -> bool {
    path == "/grading" || path.starts_with("/grading/")
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "kokushi".to_owned())
}
