//! What every handler shares: [`AppState`], built once by `startup` and handed to each handler
//! as `web::Data<AppState>`, and the pieces of it that belong to no one handler: the
//! leaderboard's [`ResponseCache`] (cleared by ingestion and by every write that changes a
//! score) and the live streams' [`StreamCounts`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use actix_web::web;
use kokushi_queue::JobQueue;

use crate::auth::{LoginLimiter, PrincipalCache};
use crate::db::Db;

/// What every handler shares.
pub struct AppState {
    pub db: Db,
    pub queue: Arc<dyn JobQueue>,
    pub limiter: LoginLimiter,
    pub principals: PrincipalCache,
    /// The leaderboard's last JSON body.
    pub leaderboard: Arc<ResponseCache>,
    /// Request counts and durations for `/metrics`.
    pub metrics: crate::metrics::HttpMetrics,
    /// Mark the session cookie `Secure` even when the request did not arrive over TLS (a TLS
    /// proxy that does not say so).
    pub secure_cookies: bool,
    /// Largest accepted upload, in bytes.
    pub max_upload_bytes: usize,
    /// Jobs (runs and tunings) one account may have waiting in the queue at once.
    pub max_queued_per_user: i64,
    /// The folder models and adapters are listed from (`GET /api/models`).
    pub model_store: std::path::PathBuf,
    /// Proxies whose forwarding headers are believed.
    pub trusted_proxies: crate::auth::TrustedProxies,
    /// How long a browser session may go unused before it ends.
    pub session_idle: std::time::Duration,
    /// Live-progress streams open, per account.
    pub streams: StreamCounts,
    /// Base URLs of the OpenAI-compatible servers runs may name.
    pub remote_model_allow: Vec<String>,
    /// Filtered leaderboards scored at once (each scores a page of runs again).
    pub rescoring: tokio::sync::Semaphore,
}

/// Response bodies kept for a moment, one per leaderboard filter: the leaderboard is read by every open page every few
/// seconds and changes only when an answer arrives. Writes on this node (a new run, ingested
/// events) clear it at once; other API nodes' writes show within [`ResponseCache::TTL`].
#[derive(Debug, Default)]
pub struct ResponseCache {
    /// Body by key (the filter's, `""` for the whole leaderboard) with when it was made.
    bodies: std::sync::Mutex<std::collections::HashMap<String, (std::time::Instant, web::Bytes)>>,
}

impl ResponseCache {
    pub const TTL: std::time::Duration = std::time::Duration::from_secs(1);
    /// Distinct filters kept at once; past it the cache starts afresh.
    const MAX_KEYS: usize = 64;

    pub(crate) fn get(&self, key: &str) -> Option<web::Bytes> {
        let bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        bodies
            .get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, b)| b.clone())
    }

    pub(crate) fn put(&self, key: String, bytes: web::Bytes) {
        let mut bodies = self.bodies.lock().unwrap_or_else(|e| e.into_inner());
        if bodies.len() >= Self::MAX_KEYS && !bodies.contains_key(&key) {
            bodies.clear();
        }
        bodies.insert(key, (std::time::Instant::now(), bytes));
    }

    pub fn clear(&self) {
        self.bodies
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Streams open per account on this API node, each held by a [`StreamSlot`].
#[derive(Debug)]
pub struct StreamCounts {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    per_user: usize,
}

impl StreamCounts {
    pub fn new(per_user: usize) -> Self {
        Self {
            open: Arc::default(),
            per_user: per_user.max(1),
        }
    }

    /// The most streams one account may hold at once.
    pub fn per_user(&self) -> usize {
        self.per_user
    }

    /// A slot for one more stream of `user`, or `None` when they hold as many as allowed.
    pub(crate) fn take(&self, user: i64) -> Option<StreamSlot> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let n = open.entry(user).or_default();
        if *n >= self.per_user {
            return None;
        }
        *n += 1;
        Some(StreamSlot {
            open: self.open.clone(),
            user,
        })
    }
}

/// One open stream; given back when the stream ends or its client goes away (dropped).
pub(crate) struct StreamSlot {
    open: Arc<Mutex<HashMap<i64, usize>>>,
    user: i64,
}

impl Drop for StreamSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = open.get_mut(&self.user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                open.remove(&self.user);
            }
        }
    }
}
