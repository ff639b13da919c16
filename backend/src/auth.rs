//! Who is calling, and whether they may: the one middleware that enforces
//! [`crate::routes::ENDPOINTS`]' access column on every request before any handler or body
//! extractor runs, the extractors that carry each access level into a handler's signature, and
//! the credentials a request may carry.
//!
//! Two locks on every door, each enough on its own:
//! - [`authorize`] finds the endpoint on the path exactly as the router will match it
//!   ([`paths`]), establishes the caller, checks CSRF and roles; a request in the API's space
//!   that names no endpoint is refused there (fail closed).
//! - Every handler above [`Access::Public`] takes its level's extractor ([`Member`],
//!   [`Researcher`], [`Admin`]) as its **first** argument, which refuses to produce itself for a
//!   caller below the level. The `endpoints!` table in `routes` passes each handler (all of
//!   them in `handlers`) through [`demand`], so a handler whose first argument is not its table
//!   line's extractor does not compile.
//!
//! Credentials a request may carry:
//! - `Authorization: Bearer <token>`: a personal API token (scripts, CI). No CSRF check: a
//!   browser never adds this header by itself.
//! - the `kokushi_session` cookie (HttpOnly, SameSite=Strict, Secure behind TLS) set by
//!   `POST /api/auth/login`. Every state-changing request made with it must also carry the
//!   session's CSRF token in `X-CSRF-Token`.

mod client;
mod limiter;
pub mod paths;
mod secrets;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{Payload, ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{FromRequest, HttpMessage, HttpRequest, web};
use kokushi_shared::api::{Me, ProjectRef, Role, UserSummary};

pub use client::{TrustedProxies, client_addr, is_tls};
pub use limiter::{Attempt, LoginLimiter};
pub use secrets::{
    DUMMY_HASH, MAX_PASSWORD_CHARS, MAX_USERNAME_CHARS, TOKEN_PREFIX, check_password,
    check_username, digest, for_log, hash_password, new_api_token, new_secret, random_handle,
    random_hex, verify_password,
};

use crate::error::ApiError;
use crate::state::AppState;

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "kokushi_session";
/// The header that carries a session's CSRF token.
pub const CSRF_HEADER: &str = "X-CSRF-Token";

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
    /// A personal API token: the SHA-256 of its value.
    Token { token_hash: String },
}

/// The signed-in account of a request, put there by [`authorize`]; handlers receive it inside
/// their level's extractor.
#[derive(Debug, Clone)]
pub struct Principal {
    /// The account, with its portal roles as stored.
    pub user: UserSummary,
    pub credential: Credential,
    /// The project the request acts in (docs/projects.md), with the account's role there.
    pub project: Option<ProjectRef>,
    /// A read-only API token: only safe methods pass.
    pub read_only: bool,
}

impl Principal {
    pub fn me(&self) -> Me {
        Me {
            id: self.user.id,
            username: self.user.username.clone(),
            roles: self.roles(),
            csrf_token: match &self.credential {
                Credential::Session { csrf_token, .. } => Some(csrf_token.clone()),
                Credential::Token { .. } => None,
            },
            project: self.project.clone(),
            projects: Vec::new(),
            read_only: self.read_only,
        }
    }

    pub fn is_admin(&self) -> bool {
        self.user.roles.contains(&Role::Admin)
    }

    /// The roles the request acts with: `admin` if the account is an admin, and what its role
    /// in the request's project grants (an owner or researcher: `researcher`; an annotator:
    /// `annotator`). Outside a project, an account other than an admin has none.
    pub fn roles(&self) -> Vec<Role> {
        let mut roles = Vec::new();
        if self.is_admin() {
            roles.push(Role::Admin);
        }
        if let Some(p) = &self.project {
            roles.push(p.role.grants());
        }
        roles.sort();
        roles.dedup();
        roles
    }

    /// Whether the account owns the request's project (an admin owns every project).
    pub fn owns_project(&self) -> bool {
        self.is_admin()
            || self
                .project
                .as_ref()
                .is_some_and(|p| p.role == kokushi_shared::api::ProjectRole::Owner)
    }

    /// The project the request acts in, for the database's filters: refused (403) for an
    /// account in no project.
    pub fn scope(&self) -> Result<crate::db::projects::Scope, ApiError> {
        self.project
            .as_ref()
            .map(|p| crate::db::projects::Scope {
                project: p.id,
                user: self.user.id,
            })
            .ok_or_else(|| {
                ApiError::Forbidden(format!(
                    "{} is in no project: a project's owner or an admin adds accounts to \
                     projects (docs/projects.md)",
                    self.user.username
                ))
            })
    }
}

/// The request's caller if their roles reach `access`: 401 without one, 403 below it.
fn principal_at(req: &HttpRequest, access: Access) -> Result<Principal, ApiError> {
    let principal = req
        .extensions()
        .get::<Principal>()
        .cloned()
        .ok_or_else(|| ApiError::Unauthorized("sign in first (POST /api/auth/login)".to_owned()))?;
    if access.allows(&principal.roles()) {
        Ok(principal)
    } else {
        Err(ApiError::Forbidden(format!(
            "this endpoint needs {}",
            access.describe()
        )))
    }
}

macro_rules! level_extractors {
    ($($(#[$doc:meta])* $name:ident => $access:ident;)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone)]
        pub struct $name(pub Principal);

        impl std::ops::Deref for $name {
            type Target = Principal;
            fn deref(&self) -> &Principal {
                &self.0
            }
        }

        impl FromRequest for $name {
            type Error = ApiError;
            type Future = std::future::Ready<Result<Self, ApiError>>;

            fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
                std::future::ready(principal_at(req, Access::$access).map($name))
            }
        }
    )*};
}

level_extractors! {
    /// Any signed-in account: the first argument of every [`Access::Member`] handler.
    Member => Member;
    /// A researcher or admin: the first argument of every [`Access::Researcher`] handler.
    Researcher => Researcher;
    /// An admin: the first argument of every [`Access::Admin`] handler.
    Admin => Admin;
}

/// The type of a handler's first argument (`()` for a handler that takes none).
pub trait FirstArgument {
    type First;
}

impl FirstArgument for () {
    type First = ();
}

macro_rules! first_argument {
    ($($first:ident $($rest:ident)*;)*) => {$(
        impl<$first $(, $rest)*> FirstArgument for ($first, $($rest,)*) {
            type First = $first;
        }
    )*};
}

first_argument! {
    A;
    A B;
    A B C;
    A B C D;
    A B C D E;
    A B C D E F;
    A B C D E F G;
    A B C D E F G H;
}

/// Hands `handler` back unchanged, if its first argument is the extractor `L`: the
/// `endpoints!` table wraps every handler above `Public` in this, so that a handler cannot be
/// registered without the identity its access level demands.
pub fn demand<L, F, Args>(handler: F) -> F
where
    F: actix_web::Handler<Args>,
    Args: FirstArgument<First = L>,
{
    handler
}

fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The middleware in front of every request: finds the endpoint in [`ENDPOINTS`] on the path
/// the router will match, refuses a request in the API's space that names none (404, or 405
/// with the methods the path takes), establishes the caller, checks CSRF and roles, and only
/// then lets the request through. Requests outside the API (the web UI's files) pass. A refusal
/// is answered here, as a response (never an error), so that the outer middlewares see it and
/// add their headers.
///
/// [`ENDPOINTS`]: crate::routes::ENDPOINTS
pub async fn authorize(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody + 'static>>, actix_web::Error> {
    match admit(&req).await {
        Ok(principal) => {
            if let Some(principal) = principal {
                req.extensions_mut().insert(principal);
            }
            next.call(req)
                .await
                .map(ServiceResponse::map_into_left_body)
        }
        Err(refusal) => {
            let response = actix_web::ResponseError::error_response(&refusal);
            Ok(req.into_response(response).map_into_right_body())
        }
    }
}

/// Whether a request may go on, and as whom (`None`: a public endpoint or a file).
async fn admit(req: &ServiceRequest) -> Result<Option<Principal>, ApiError> {
    let endpoint = match paths::lookup(req.method().as_str(), req.match_info().as_str(), req.path())
    {
        paths::Lookup::Outside => return Ok(None),
        paths::Lookup::NoEndpoint => {
            return Err(ApiError::NotFound(
                "no such API endpoint (paths are spelled as docs/openapi.json writes them)"
                    .to_owned(),
            ));
        }
        paths::Lookup::WrongMethod(allowed) => {
            return Err(ApiError::MethodNotAllowed { allowed });
        }
        paths::Lookup::Endpoint(endpoint) => endpoint,
    };
    if endpoint.access == Access::Public {
        return Ok(None);
    }
    let state = req
        .app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::Internal("the application state is missing".to_owned()))?;
    let principal = identify(req, &state).await?;
    if let Credential::Session { csrf_token, .. } = &principal.credential
        && !is_safe(req.method())
    {
        let sent = req
            .headers()
            .get(CSRF_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        if !secrets::same_secret(sent, csrf_token) {
            return Err(ApiError::Forbidden(format!(
                "a signed-in browser must send the session's CSRF token in the {CSRF_HEADER} \
                 header (from GET /api/auth/me)"
            )));
        }
    }
    if principal.read_only && !is_safe(req.method()) {
        return Err(ApiError::Forbidden(format!(
            "{} {} changes something; this API token is read-only",
            endpoint.method.to_uppercase(),
            endpoint.path
        )));
    }
    let roles = principal.roles();
    if !endpoint.access.allows(&roles) {
        let in_project = principal
            .project
            .as_ref()
            .map(|p| format!(" in project {}", p.slug))
            .unwrap_or_default();
        let roles = roles.iter().map(|r| r.id()).collect::<Vec<_>>();
        return Err(ApiError::Forbidden(format!(
            "{} {} needs {}; {} has {}{in_project}",
            endpoint.method.to_uppercase(),
            endpoint.path,
            endpoint.access.describe(),
            principal.user.username,
            if roles.is_empty() {
                "no role".to_owned()
            } else {
                roles.join(", ")
            }
        )));
    }
    if let Some(kind) = endpoint.object {
        gate(req, &state, &principal, endpoint, kind).await?;
    }
    Ok(Some(principal))
}

/// Project isolation for the object a path names (docs/projects.md): another project's
/// object answers 404 with the very words a missing id gets, before any handler runs; an exam
/// set shared with the caller's project may be read but not changed (403). A path segment that
/// is not a number is left to the handler, which refuses it (400).
async fn gate(
    req: &ServiceRequest,
    state: &AppState,
    principal: &Principal,
    endpoint: &crate::routes::Endpoint,
    kind: crate::db::projects::Owned,
) -> Result<(), ApiError> {
    use crate::db::projects::{Owned, Visibility};
    // Fails closed: the id is plain ASCII digits or nothing reaches the handler. (The router's
    // path keeps `%2B` encoded while a handler's path extractor decodes it, and `+5` parses as
    // 5: a check that let a non-number through would let `%2B5` past it.)
    let segment = paths::object_segment(endpoint.path, req.match_info().as_str())
        .ok_or_else(|| ApiError::NotFound(format!("no such {}", kind.noun())))?;
    let key = parse_key(segment).ok_or_else(|| {
        ApiError::BadRequest(format!("{} id {segment:?} is not a number", kind.noun()))
    })?;
    let missing = || ApiError::NotFound(format!("{} {key} does not exist", kind.noun()));
    let visibility = if kind == Owned::Project {
        // A token reaches only the project it acts in; a session, the projects its account is
        // a member of (an admin's: every one).
        let reachable = match &principal.credential {
            Credential::Token { .. } => principal.project.as_ref().is_some_and(|p| p.id == key),
            Credential::Session { .. } if principal.is_admin() => {
                state.db.project(key, principal.user.id).await?.is_some()
            }
            Credential::Session { .. } => {
                let scope = crate::db::projects::Scope {
                    project: -1,
                    user: principal.user.id,
                };
                state.db.visibility(&scope, kind, key).await? == Visibility::Own
            }
        };
        if reachable {
            Visibility::Own
        } else {
            Visibility::Hidden
        }
    } else {
        let Ok(scope) = principal.scope() else {
            return Err(missing());
        };
        state.db.visibility(&scope, kind, key).await?
    };
    match visibility {
        Visibility::Own => Ok(()),
        Visibility::Shared if is_safe(req.method()) => Ok(()),
        Visibility::Shared => Err(ApiError::Forbidden(format!(
            "{} {key} is shared with this project read-only: its own project changes it",
            kind.noun()
        ))),
        Visibility::Hidden => Err(missing()),
    }
}

/// An object's id as a path writes it: ASCII digits only (no sign, no space), within `i64`.
pub fn parse_key(segment: &str) -> Option<i64> {
    if segment.is_empty() || !segment.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    segment.parse().ok()
}

/// The account behind a request's API token or session cookie.
async fn identify(req: &ServiceRequest, state: &AppState) -> Result<Principal, ApiError> {
    if let Some(value) = req.headers().get(actix_web::http::header::AUTHORIZATION) {
        let token = value
            .to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|t| t.len() <= 256)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "the Authorization header must be `Bearer <API token>`".to_owned(),
                )
            })?;
        return principal_of(
            state,
            Credential::Token {
                token_hash: digest(token),
            },
            true,
        )
        .await?
        .ok_or_else(|| {
            ApiError::Unauthorized(
                "the API token is unknown, expired or revoked, or its account is disabled"
                    .to_owned(),
            )
        });
    }
    let Some(secret) = cookie(req, SESSION_COOKIE).filter(|s| !s.is_empty() && s.len() <= 256)
    else {
        return Err(ApiError::Unauthorized(
            "sign in first (POST /api/auth/login), or send an API token as \
             `Authorization: Bearer <token>`"
                .to_owned(),
        ));
    };
    principal_of(
        state,
        Credential::Session {
            token_hash: digest(&secret),
            csrf_token: String::new(),
        },
        true,
    )
    .await?
    .ok_or_else(|| {
        ApiError::Unauthorized(
            "the session has expired, was idle too long, or ended: sign in again".to_owned(),
        )
    })
}

/// The account a credential stands for now, if it is still valid (through the short-lived
/// [`PrincipalCache`]). A session's CSRF token is read from the database; the one passed in is
/// ignored. `touch`: the request is the caller's own, and counts as use of the session (a long
/// stream asking again whether its session still holds passes `false`, so that an open stream
/// does not keep an idle session alive).
pub async fn principal_of(
    state: &AppState,
    credential: Credential,
    touch: bool,
) -> Result<Option<Principal>, ApiError> {
    let now = crate::clock::unix_now();
    let at = crate::clock::format_unix(now);
    // Last use is noted at most once a minute, so a busy caller does not turn reads into writes.
    let stale = crate::clock::format_unix(now - 60);
    match credential {
        Credential::Token { token_hash } => {
            let key = format!("t:{token_hash}");
            if let Some(principal) = state.principals.get(&key) {
                return Ok(Some(principal));
            }
            let Some(found) = state.db.token_user(&token_hash, &at, &stale).await? else {
                return Ok(None);
            };
            // A token acts in its own project only: once its account has left the project,
            // it opens nothing there (and nothing elsewhere).
            let project = match found.project {
                Some(p) => {
                    state
                        .db
                        .project_access(found.user.id, is_admin(&found.user), Some(p), false)
                        .await?
                }
                None => None,
            };
            let principal = Principal {
                user: found.user,
                credential: Credential::Token { token_hash },
                project,
                read_only: found.read_only,
            };
            state.principals.put(key, principal.clone());
            Ok(Some(principal))
        }
        Credential::Session { token_hash, .. } => {
            let key = format!("s:{token_hash}");
            if let Some(principal) = state.principals.get(&key) {
                return Ok(Some(principal));
            }
            let idle = i64::try_from(state.session_idle.as_secs()).unwrap_or(i64::MAX / 4);
            let idle_since = crate::clock::format_unix(now.saturating_sub(idle));
            let Some(session) = state
                .db
                .session_user(
                    &token_hash,
                    &at,
                    &idle_since,
                    touch.then_some(stale.as_str()),
                )
                .await?
            else {
                return Ok(None);
            };
            let project = state
                .db
                .project_access(
                    session.user.id,
                    is_admin(&session.user),
                    session.project,
                    true,
                )
                .await?;
            let principal = Principal {
                user: session.user,
                credential: Credential::Session {
                    token_hash,
                    csrf_token: session.csrf_token,
                },
                project,
                read_only: false,
            };
            state.principals.put(key, principal.clone());
            Ok(Some(principal))
        }
    }
}

fn is_admin(user: &UserSummary) -> bool {
    user.roles.contains(&Role::Admin)
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_ids_are_plain_digits() {
        assert_eq!(parse_key("17"), Some(17));
        assert_eq!(parse_key("007"), Some(7));
        for bad in [
            "+5",
            "-1",
            " 5",
            "5 ",
            "",
            "%2B5",
            "1e3",
            "99999999999999999999",
        ] {
            assert_eq!(parse_key(bad), None, "{bad:?}");
        }
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
}
