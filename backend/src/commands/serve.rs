//! `kokushi serve`: the API and the web UI (`kokushi_backend::Application`), with a worker in
//! the same process unless jobs go through Redis. Its flags, each with a `KOKUSHI_*` variable,
//! become the server's [`Settings`]. Also [`shutdown_signal`], the Ctrl-C or SIGTERM that
//! `serve` and `worker` stop on.

use std::path::PathBuf;
use std::time::Duration;

use clap::Args;
use kokushi_backend::{Application, Settings};

use super::flags::{CapacityArgs, DbArgs, DeviceArgs, ReliabilityArgs, WorkerBatchArgs, base_urls};

#[derive(Args, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Redis for the distributed mode; without it jobs go through an in-process queue.
    #[arg(long, env = "KOKUSHI_REDIS_URL")]
    pub redis_url: Option<String>,
    /// Key prefix on Redis, to share one Redis between installations.
    #[arg(long, env = "KOKUSHI_QUEUE_PREFIX", default_value = "kokushi")]
    pub queue_prefix: String,
    /// Address to listen on.
    #[arg(long, env = "KOKUSHI_BIND", default_value = "127.0.0.1:8080")]
    pub bind: String,
    /// The folder models are loaded from; runs name files inside it.
    #[arg(long, env = "KOKUSHI_MODEL_STORE", default_value = "models")]
    pub model_store: PathBuf,
    /// The built frontend to serve (`cargo xtask frontend` builds it).
    #[arg(long, env = "KOKUSHI_STATIC_DIR")]
    pub static_dir: Option<PathBuf>,
    /// Also run a worker inside this process (the default without --redis-url).
    #[arg(long, env = "KOKUSHI_EMBEDDED_WORKER")]
    pub embedded_worker: Option<bool>,
    /// Mark session cookies Secure even on plain HTTP: for a TLS proxy in front that does not
    /// send X-Forwarded-Proto (with it, cookies are marked Secure anyway).
    #[arg(long, env = "KOKUSHI_SECURE_COOKIES")]
    pub secure_cookies: bool,
    #[command(flatten)]
    pub reliability: ReliabilityArgs,
    /// Seconds between the server's checks that the queue still holds every unfinished job
    /// (Redis may lose its data: FLUSHALL, a restart without persistence).
    #[arg(
        long,
        env = "KOKUSHI_RECONCILE_INTERVAL",
        default_value_t = 10,
        value_name = "SECS"
    )]
    pub reconcile_interval: u64,
    /// Jobs (runs and tunings) one account may have waiting in the queue at once; more are
    /// refused (409).
    #[arg(long, env = "KOKUSHI_MAX_QUEUED_PER_USER", default_value_t = 50)]
    pub max_queued_per_user: i64,
    /// A reverse proxy (an address, or a network as ADDR/BITS) whose X-Forwarded-For and
    /// X-Forwarded-Proto headers are believed: sign-in limits then count the client's address,
    /// and cookies are Secure when the client came over TLS. Repeat, or separate with commas.
    /// Without it the peer's address is the client's and forwarding headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "KOKUSHI_TRUSTED_PROXY",
        value_delimiter = ',',
        value_name = "ADDR[/BITS]"
    )]
    pub trusted_proxies: Vec<String>,
    /// Minutes a browser session may go unused before it ends (it ends 7 days after sign-in
    /// in any case).
    #[arg(
        long,
        env = "KOKUSHI_SESSION_IDLE_MINUTES",
        default_value_t = 480,
        value_name = "MINUTES",
        value_parser = clap::value_parser!(u64).range(1..=10_080)
    )]
    pub session_idle_minutes: u64,
    /// Base URL of an OpenAI-compatible server that runs may name as
    /// openai:<base-url>#<model> (repeat, or separate with commas). Without any, runs may
    /// name only models of the store; the workers keep their own allow-list
    /// (docs/remote-models.md).
    #[arg(
        long = "remote-model-allow",
        env = "KOKUSHI_REMOTE_MODEL_ALLOW",
        value_delimiter = ',',
        value_name = "BASE_URL"
    )]
    pub remote_model_allow: Vec<String>,
    #[command(flatten)]
    pub batch: WorkerBatchArgs,
    /// Where the embedded worker runs its models.
    #[command(flatten)]
    pub device: DeviceArgs,
    #[command(flatten)]
    pub capacity: CapacityArgs,
}

/// The server's settings from the flags (and the limits no flag sets).
fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let trusted_proxies = kokushi_backend::auth::TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))?;
    let remote_model_allow = base_urls("--remote-model-allow", &args.remote_model_allow)?;
    let embedded = args.embedded_worker.unwrap_or(args.redis_url.is_none());
    Ok(Settings {
        database_url: args.db.database_url.clone(),
        redis_url: args.redis_url.clone(),
        queue_prefix: args.queue_prefix.clone(),
        bind: args.bind.clone(),
        model_store: args.model_store.clone(),
        static_dir: args.static_dir.clone(),
        embedded_worker: embedded,
        max_upload_bytes: 32 * 1024 * 1024,
        secure_cookies: args.secure_cookies,
        visibility_timeout: Duration::from_secs(args.reliability.visibility_timeout),
        max_attempts: 3,
        worker_batch: usize::from(args.batch.worker_batch),
        worker_memory: args.capacity.bytes()?,
        worker_device: if embedded {
            args.device.resolve()?
        } else {
            kokushi_worker::Device::Cpu
        },
        reconcile_interval: Duration::from_secs(args.reconcile_interval),
        max_queued_per_user: args.max_queued_per_user,
        trusted_proxies,
        session_idle: Duration::from_secs(args.session_idle_minutes * 60),
        session_purge_interval: Duration::from_secs(300),
        max_concurrent_sign_ins: kokushi_backend::auth::LoginLimiter::DEFAULT_CONCURRENT_CHECKS,
        max_streams_per_user: kokushi_backend::settings::DEFAULT_STREAMS_PER_USER,
        remote_model_allow,
    })
}

/// Serves until [`shutdown_signal`]. `banner` is the demo's: printed under the address, after
/// the demo's warning when the address is one other machines can reach.
pub async fn serve(args: ServeArgs, banner: Option<String>) -> anyhow::Result<()> {
    let app = Application::build(settings(&args)?).await?;
    let stop = app.stop_handle();
    let host = args.bind.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    if banner.is_some()
        && let Some(warning) = super::demo::bind_warning(host)
    {
        eprintln!("{warning}");
    }
    println!("Kokushi is serving at http://{host}:{}/", app.port());
    if let Some(banner) = banner {
        println!("{banner}");
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down…");
        stop.stop().await;
    });
    app.run_until_stopped().await?;
    eprintln!("stopped cleanly");
    Ok(())
}

/// Ctrl-C or SIGTERM.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
