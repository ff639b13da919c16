//! How a server is set up: from command-line flags, each with a `KOKUSHI_`-prefixed
//! environment variable (see `kokushi serve --help`).

use std::path::PathBuf;

/// How long a browser session may go unused before it ends, unless configured.
pub const DEFAULT_SESSION_IDLE: std::time::Duration = std::time::Duration::from_secs(8 * 3600);
/// Live-progress streams one account may hold open at once, unless configured.
pub const DEFAULT_STREAMS_PER_USER: usize = 8;

/// Everything [`crate::Application::build`] needs.
#[derive(Debug, Clone)]
pub struct Settings {
    /// `sqlite://file.sqlite` or `postgres://user@host/db`.
    pub database_url: String,
    /// A Redis URL for the distributed mode; `None` for the in-process queue.
    pub redis_url: Option<String>,
    /// Namespace for the Redis keys.
    pub queue_prefix: String,
    /// Address to listen on; port 0 picks a free port.
    pub bind: String,
    /// The folder models are loaded from.
    pub model_store: PathBuf,
    /// The built frontend (index.html, wasm, js, css); `None` serves the API only.
    pub static_dir: Option<PathBuf>,
    /// Run a worker inside the server process (the embedded mode).
    pub embedded_worker: bool,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Mark session cookies `Secure` even on plain HTTP (behind a TLS proxy that does not
    /// send `X-Forwarded-Proto`).
    pub secure_cookies: bool,
    /// How long a claimed job may go without a heartbeat (a delivered event without an
    /// acknowledgement) before it is taken over.
    pub visibility_timeout: std::time::Duration,
    /// Deliveries after which the embedded worker gives a job up.
    pub max_attempts: u32,
    /// How many questions the embedded worker answers together (throughput only: a batch
    /// changes no answer).
    pub worker_batch: usize,
    /// Where the embedded worker runs its models (checked before the server starts).
    pub worker_device: kokushi_worker::Device,
    /// The most memory a job may need for the embedded worker to take it (`None`: its
    /// device's).
    pub worker_memory: Option<u64>,
    /// How often the server checks that the queue has not lost unfinished jobs.
    pub reconcile_interval: std::time::Duration,
    /// Runs one account may have waiting in the queue at once.
    pub max_queued_per_user: i64,
    /// Proxies whose forwarding headers (client address, TLS) are believed.
    pub trusted_proxies: crate::auth::TrustedProxies,
    /// How long a browser session may go unused before it ends.
    pub session_idle: std::time::Duration,
    /// How often expired and idle sessions are deleted.
    pub session_purge_interval: std::time::Duration,
    /// Password checks (argon2id) that may run at once; more sign-ins wait (429).
    pub max_concurrent_sign_ins: usize,
    /// Live-progress streams one account may hold open at once.
    pub max_streams_per_user: usize,
    /// Base URLs of OpenAI-compatible servers that runs may name (`openai:<base-url>#<model>`);
    /// empty: runs may name only models of the store.
    pub remote_model_allow: Vec<String>,
}

impl Settings {
    /// Embedded-mode settings for `database_url`, listening on a free loopback port.
    pub fn embedded(database_url: impl Into<String>, model_store: impl Into<PathBuf>) -> Self {
        Self {
            database_url: database_url.into(),
            redis_url: None,
            queue_prefix: "kokushi".to_owned(),
            bind: "127.0.0.1:0".to_owned(),
            model_store: model_store.into(),
            static_dir: None,
            embedded_worker: true,
            max_upload_bytes: 32 * 1024 * 1024,
            secure_cookies: false,
            visibility_timeout: kokushi_queue::DEFAULT_VISIBILITY_TIMEOUT,
            max_attempts: 3,
            worker_batch: 1,
            worker_device: kokushi_worker::Device::Cpu,
            worker_memory: None,
            reconcile_interval: std::time::Duration::from_secs(10),
            max_queued_per_user: 50,
            trusted_proxies: crate::auth::TrustedProxies::default(),
            session_idle: DEFAULT_SESSION_IDLE,
            session_purge_interval: std::time::Duration::from_secs(300),
            max_concurrent_sign_ins: crate::auth::LoginLimiter::DEFAULT_CONCURRENT_CHECKS,
            max_streams_per_user: DEFAULT_STREAMS_PER_USER,
            remote_model_allow: Vec::new(),
        }
    }
}
