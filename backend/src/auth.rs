//! Who is calling, and whether they may: password hashing (argon2id), session and API-token
//! secrets (stored only as their SHA-256), the CSRF check, sign-in rate limiting, and the one
//! middleware that enforces [`crate::routes::ENDPOINTS`]' access column on every `/api` request
//! before any handler or body extractor runs.
//!
//! Credentials a request may carry:
//! - `Authorization: Bearer <token>`: a personal API token (scripts, CI). No CSRF check: a
//!   browser never adds this header by itself.
//! - the `kokushi_session` cookie (HttpOnly, SameSite=Strict, Secure behind TLS) set by
//!   `POST /api/auth/login`. Every state-changing request made with it must also carry the
//!   session's CSRF token in `X-CSRF-Token`.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use kokushi_shared::api::{Me, Role, UserSummary};
use sha2::{Digest, Sha256};

use crate::error::ApiError;
use crate::routes::{AppState, ENDPOINTS};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kokushi_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "X-CSRF-Token";
/// API tokens start with this, so that a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "kokushi_";

/// Who may call an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Anyone, signed in or not.
    Public,
    /// Any signed-in account, whatever its roles.
    Member,
    /// A researcher or an admin.
    Researcher,
    /// An admin.
    Admin,
}

impl Access {
    /// Whether an account with `roles` may call an endpoint of this access.
    pub fn allows(self, roles: &[Role]) -> bool {
        match self {
            Access::Public | Access::Member => true,
            Access::Researcher => roles
                .iter()
                .any(|r| matches!(r, Role::Researcher | Role::Admin)),
            Access::Admin => roles.contains(&Role::Admin),
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Access::Public | Access::Member => "any account",
            Access::Researcher => "the researcher or admin role",
            Access::Admin => "the admin role",
        }
    }
}

/// How a request proved who it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Credential {
    /// A browser session: the SHA-256 of its cookie, and its CSRF token.
    Session {
        token_hash: String,
        csrf_token: String,
    },
    /// A personal API token.
    Token,
}

/// The signed-in account of a request, put there by [`authorize`]; handlers take it as an
/// extractor.
#[derive(Debug, Clone)]
pub struct Principal {
    pub user: UserSummary,
    pub credential: Credential,
}

impl Principal {
    pub fn me(&self) -> Me {
        Me {
            id: self.user.id,
            username: self.user.username.clone(),
            roles: self.user.roles.clone(),
            csrf_token: match &self.credential {
                Credential::Session { csrf_token, .. } => Some(csrf_token.clone()),
                Credential::Token => None,
            },
        }
    }
}

impl FromRequest for Principal {
    type Error = ApiError;
    type Future = std::future::Ready<Result<Self, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        std::future::ready(
            req.extensions()
                .get::<Principal>()
                .cloned()
                .ok_or_else(|| ApiError::Unauthorized("sign in first".to_owned())),
        )
    }
}

/// Hashes a password with argon2id (the crate's defaults: 19 MiB, 2 passes, 1 lane) and a
/// random salt, as a PHC string. Takes tens of milliseconds by design: call it off the async
/// workers (`web::block`).
pub fn hash_password(password: &str) -> Result<String, ApiError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| ApiError::Internal(format!("hashing a password failed: {e}")))
}

/// Whether `password` matches a stored PHC hash. An unreadable hash matches nothing.
pub fn verify_password(stored: &str, password: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(password.as_bytes(), &hash)
            .is_ok()
    })
}

/// A hash that no password matches in practice, checked when a sign-in names an unknown
/// account so that its answer takes as long as for a known one.
pub static DUMMY_HASH: LazyLock<String> =
    LazyLock::new(|| hash_password("not a password of anyone's").unwrap_or_default());

/// 32 random bytes from the operating system, as 64 hex digits.
pub fn new_secret() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    hex(&bytes)
}

/// A new personal API token: [`TOKEN_PREFIX`] and a secret.
pub fn new_api_token() -> String {
    format!("{TOKEN_PREFIX}{}", new_secret())
}

/// What is stored of a session cookie or API token: its SHA-256, in hex. The secrets carry
/// 256 bits of randomness, so a fast hash is enough (no dictionary to try).
pub fn digest(secret: &str) -> String {
    hex(&Sha256::digest(secret.as_bytes()))
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes.iter().fold(String::new(), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// Compares two secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// Rules for account names and passwords, checked wherever one is set.
pub fn check_username(username: &str) -> Result<(), ApiError> {
    let ok = (1..=64).contains(&username.len())
        && username
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '@'));
    if ok {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "user name {username:?} must be 1 to 64 characters of letters, digits and . _ - @"
        )))
    }
}

pub fn check_password(password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if (10..=1024).contains(&n) {
        Ok(())
    } else {
        Err(ApiError::BadRequest(format!(
            "a password must be 10 to 1024 characters long (this one has {n})"
        )))
    }
}

/// The value of one cookie in a request's `Cookie` headers.
fn cookie(req: &ServiceRequest, name: &str) -> Option<String> {
    req.headers()
        .get_all(actix_web::http::header::COOKIE)
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.trim_matches('"').to_owned())
}

/// A `Set-Cookie` value for the session (or, with `None`, one that deletes it).
pub fn session_cookie(secret: Option<&str>, max_age: Duration, secure: bool) -> String {
    let (value, age) = match secret {
        Some(s) => (s, max_age.as_secs()),
        None => ("", 0),
    };
    let secure = if secure { "; Secure" } else { "" };
    format!("{SESSION_COOKIE}={value}; Path=/; Max-Age={age}; HttpOnly; SameSite=Strict{secure}")
}

/// Whether a request reached us over TLS (directly or, as a proxy says, before the proxy).
pub fn is_tls(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware on `/api`: finds the endpoint's access in [`ENDPOINTS`], establishes the
/// caller, checks CSRF and roles, and only then lets the request through. A request to a path
/// or method with no endpoint passes on to the 404/405 answer.
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody + 'static>, actix_web::Error> {
    let pattern = req.match_pattern();
    let endpoint = pattern.as_deref().and_then(|p| {
        ENDPOINTS
            .iter()
            .find(|e| e.path == p && req.method().as_str().eq_ignore_ascii_case(e.method))
    });
    let Some(endpoint) = endpoint else {
        return next.call(req).await;
    };
    if endpoint.access == Access::Public {
        return next.call(req).await;
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the application state is missing".to_owned()))?;
    let principal = identify(&req, &state).await?;
    if let Credential::Session { csrf_token, .. } = &principal.credential
        && !is_safe(req.method())
    {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !same_secret(sent, csrf_token) {
            return Err(ApiError::Forbidden(format!(
                "a signed-in browser must send the session's CSRF token in the {CSRF_HEADER} \
                 header (from GET /api/auth/me)"
            ))
            .into());
        }
    }
    if !endpoint.access.allows(&principal.user.roles) {
        let roles = principal
            .user
            .roles
            .iter()
            .map(|r| r.id())
            .collect::<Vec<_>>();
        return Err(ApiError::Forbidden(format!(
            "{} {} needs {}; {} has {}",
            endpoint.method.to_uppercase(),
            endpoint.path,
            endpoint.access.describe(),
            principal.user.username,
            if roles.is_empty() {
                "no role".to_owned()
            } else {
                roles.join(", ")
            }
        ))
        .into());
    }
    req.extensions_mut().insert(principal);
    next.call(req).await
}

/// The account behind a request's API token or session cookie.
async fn identify(req: &ServiceRequest, state: &AppState) -> Result<Principal, ApiError> {
    let now = crate::clock::now_rfc3339();
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <API token>`".to_owned(),
                )
            })?;
        let key = format!("t:{}", digest(token));
        if let Some(principal) = state.principals.get(&key) {
            return Ok(principal);
        }
        let stale = crate::clock::format_unix(crate::clock::unix_now() - 60);
        let user = state
            .db
            .token_user(&digest(token), &now, &stale)
            .await?
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the API token is unknown or revoked, or its account is disabled".to_owned(),
                )
            })?;
        let principal = Principal {
            user,
            credential: Credential::Token,
        };
        state.principals.put(key, principal.clone());
        return Ok(principal);
    }
    let Some(secret) = cookie(req, SESSION_COOKIE).filter(|s| !s.is_empty()) else {
        return Err(ApiError::Unauthorized(
            "sign in first (POST /api/auth/login), or send an API token as \
             `Authorization: Bearer <token>`"
                .to_owned(),
        ));
    };
    let token_hash = digest(&secret);
    let key = format!("s:{token_hash}");
    if let Some(principal) = state.principals.get(&key) {
        return Ok(principal);
    }
    let session = state
        .db
        .session_user(&token_hash, &now)
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized("the session has expired or ended: sign in again".to_owned())
        })?;
    let principal = Principal {
        user: session.user,
        credential: Credential::Session {
            token_hash,
            csrf_token: session.csrf_token,
        },
    };
    state.principals.put(key, principal.clone());
    Ok(principal)
}

/// Recently established callers, so that a busy script or page does not cost a database round
/// trip per request. An entry lives [`PrincipalCache::TTL`]; signing out, revoking a token and
/// changing an account clear the cache of the node that did it (other API nodes follow within
/// the TTL).
#[derive(Debug, Default)]
pub struct PrincipalCache {
    entries: Mutex<HashMap<String, (Instant, Principal)>>,
}

impl PrincipalCache {
    pub const TTL: Duration = Duration::from_secs(10);
    const MAX_ENTRIES: usize = 10_000;

    fn get(&self, key: &str) -> Option<Principal> {
        let map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        map.get(key)
            .filter(|(at, _)| at.elapsed() < Self::TTL)
            .map(|(_, p)| p.clone())
    }

    fn put(&self, key: String, principal: Principal) {
        let mut map = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_ENTRIES {
            map.retain(|_, (at, _)| at.elapsed() < Self::TTL);
            if map.len() >= Self::MAX_ENTRIES {
                map.clear();
            }
        }
        map.insert(key, (Instant::now(), principal));
    }

    /// Forgets every entry: after a sign-out, a revocation or an account change.
    pub fn clear(&self) {
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clear();
    }
}

/// Failed sign-ins remembered per address and per (address, account) over a sliding window.
/// Kept in memory: each API node limits on its own, and a restart forgets (documented in
/// docs/accounts.md).
#[derive(Debug, Default)]
pub struct LoginLimiter {
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

impl LoginLimiter {
    pub const WINDOW: Duration = Duration::from_secs(15 * 60);
    /// Failures allowed for one account from one address within the window.
    pub const PER_ACCOUNT: usize = 5;
    /// Failures allowed from one address within the window, whatever the account.
    pub const PER_ADDRESS: usize = 30;
    /// Keys kept at most; beyond, the oldest windows are dropped first.
    const MAX_KEYS: usize = 100_000;

    fn keys(addr: Option<IpAddr>, username: &str) -> [(String, usize); 2] {
        let addr = addr.map_or_else(|| "?".to_owned(), |a| a.to_string());
        [
            (format!("{addr} {username}"), Self::PER_ACCOUNT),
            (addr, Self::PER_ADDRESS),
        ]
    }

    /// `Err(seconds)` while either limit is reached.
    pub fn check(&self, addr: Option<IpAddr>, username: &str) -> Result<(), u64> {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        for (key, limit) in Self::keys(addr, username) {
            if let Some(times) = map.get_mut(&key) {
                while times
                    .front()
                    .is_some_and(|t| now.duration_since(*t) >= Self::WINDOW)
                {
                    times.pop_front();
                }
                if times.len() >= limit
                    && let Some(oldest) = times.front()
                {
                    let wait = Self::WINDOW.saturating_sub(now.duration_since(*oldest));
                    return Err(wait.as_secs().max(1));
                }
            }
        }
        Ok(())
    }

    pub fn record_failure(&self, addr: Option<IpAddr>, username: &str) {
        let now = Instant::now();
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() >= Self::MAX_KEYS {
            map.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < Self::WINDOW)
            });
        }
        for (key, _) in Self::keys(addr, username) {
            map.entry(key).or_default().push_back(now);
        }
    }

    /// A successful sign-in clears that account's count from that address.
    pub fn record_success(&self, addr: Option<IpAddr>, username: &str) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let [(key, _), _] = Self::keys(addr, username);
        map.remove(&key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_password_verifies_against_its_hash_and_nothing_else() {
        let hash = hash_password("correct horse battery").expect("hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse battery"));
        assert!(!verify_password(&hash, "correct horse batterz"));
        assert!(!verify_password("not a hash", "correct horse battery"));
        let again = hash_password("correct horse battery").expect("hash");
        assert_ne!(hash, again, "a fresh salt each time");
    }

    #[test]
    fn secrets_are_random_and_stored_only_as_digests() {
        let (a, b) = (new_secret(), new_secret());
        assert_eq!(a.len(), 64);
        assert_ne!(a, b);
        assert_eq!(digest(&a), digest(&a));
        assert_ne!(digest(&a), a);
        assert!(new_api_token().starts_with(TOKEN_PREFIX));
        // echo -n abc | sha256sum
        assert_eq!(
            digest("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn roles_grant_what_the_access_levels_say() {
        use Role::*;
        assert!(Access::Researcher.allows(&[Admin]));
        assert!(Access::Researcher.allows(&[Annotator, Researcher]));
        assert!(!Access::Researcher.allows(&[Annotator]));
        assert!(!Access::Admin.allows(&[Researcher]));
        assert!(Access::Member.allows(&[]));
    }

    #[test]
    fn the_limiter_refuses_after_too_many_failures_and_forgets_on_success() {
        let limiter = LoginLimiter::default();
        let addr: Option<IpAddr> = "127.0.0.1".parse().ok();
        for _ in 0..LoginLimiter::PER_ACCOUNT {
            assert!(limiter.check(addr, "alice").is_ok());
            limiter.record_failure(addr, "alice");
        }
        let wait = limiter.check(addr, "alice").expect_err("limited");
        assert!((1..=900).contains(&wait), "{wait}");
        assert!(
            limiter.check(addr, "bob").is_ok(),
            "other accounts still may"
        );
        limiter.record_success(addr, "alice");
        assert!(limiter.check(addr, "alice").is_ok());
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }
}
