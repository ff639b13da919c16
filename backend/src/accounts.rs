//! Account endpoints: signing in and out, personal API tokens, and (for admins) users and
//! their roles. Also [`create_user`], the one way an account is made (API, `kokushi admin
//! create`, the demo, the tests).

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use kokushi_shared::api::{
    CreateToken, CreateUser, Login, NewToken, Role, UpdateUser, UserSummary,
};

use crate::auth::{
    self, Credential, DUMMY_HASH, Principal, check_password, check_username, digest,
    session_cookie, verify_password,
};
use crate::db::Db;
use crate::error::ApiError;
use crate::routes::AppState;

/// How long a browser session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// Validates, hashes the password (argon2id, off the async workers) and stores a new account.
pub async fn create_user(
    db: &Db,
    username: &str,
    password: &str,
    roles: &[Role],
) -> Result<UserSummary, ApiError> {
    check_username(username)?;
    check_password(password)?;
    let mut roles = roles.to_vec();
    roles.sort();
    roles.dedup();
    let hash = hash_off_thread(password.to_owned()).await?;
    db.create_user(username, &hash, &roles)
        .await?
        .ok_or_else(|| ApiError::Conflict(format!("the user name {username:?} is taken")))
}

/// [`auth::hash_password`] on a blocking thread: argon2id takes tens of milliseconds by design.
async fn hash_off_thread(password: String) -> Result<String, ApiError> {
    web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hashing stopped: {e}")))?
}

/// `POST /api/auth/login {username, password}`: sets the session cookie and answers with
/// [`kokushi_shared::api::Me`], whose `csrf_token` the browser sends back on every
/// state-changing request. Failures are counted per address and account
/// ([`auth::LoginLimiter`]); past the limit the answer is 429 with `Retry-After`.
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let addr = req.peer_addr().map(|a| a.ip());
    state
        .limiter
        .check(addr, &username)
        .map_err(|retry_after_secs| ApiError::TooManyRequests { retry_after_secs })?;
    let stored = state.db.user_by_name(&username).await?;
    let hash = stored
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |s| s.password_hash.clone());
    let matches = web::block(move || verify_password(&hash, &password))
        .await
        .map_err(|e| ApiError::Internal(format!("checking a password stopped: {e}")))?;
    let user = match stored {
        Some(stored) if matches && !stored.user.disabled => stored.user,
        _ => {
            state.limiter.record_failure(addr, &username);
            tracing::info!(username = %username, addr = ?addr, "sign-in refused");
            return Err(ApiError::Unauthorized(
                "wrong user name or password, or the account is disabled".to_owned(),
            ));
        }
    };
    state.limiter.record_success(addr, &username);
    let secret = auth::new_secret();
    let csrf_token = auth::new_secret();
    let expires = crate::clock::format_unix(
        crate::clock::unix_now() + i64::try_from(SESSION_LIFETIME.as_secs()).unwrap_or(0),
    );
    state
        .db
        .create_session(user.id, &digest(&secret), &csrf_token, &expires)
        .await?;
    tracing::info!(user_id = user.id, username = %user.username, "signed in");
    let principal = Principal {
        user,
        credential: Credential::Session {
            token_hash: String::new(),
            csrf_token,
        },
    };
    let secure = state.secure_cookies || auth::is_tls(&req);
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            session_cookie(Some(&secret), SESSION_LIFETIME, secure),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(principal.me()))
}

/// `POST /api/auth/logout`: ends the session (a request with an API token changes nothing).
pub async fn logout(
    state: web::Data<AppState>,
    req: HttpRequest,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    if let Credential::Session { token_hash, .. } = &principal.credential {
        state.db.delete_session(token_hash).await?;
        state.principals.clear();
    }
    let secure = state.secure_cookies || auth::is_tls(&req);
    Ok(HttpResponse::NoContent()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            session_cookie(None, Duration::ZERO, secure),
        ))
        .finish())
}

/// `GET /api/auth/me`: who is signed in, their roles, and the session's CSRF token.
pub async fn me(principal: Principal) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(principal.me())
}

/// `GET /api/tokens`: the caller's own API tokens (never their values).
pub async fn tokens(
    state: web::Data<AppState>,
    principal: Principal,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.tokens(principal.user.id).await?))
}

/// `POST /api/tokens {name}`: a new personal API token, shown once in the reply.
pub async fn create_token(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "a token's name must be 1 to 100 characters".to_owned(),
        ));
    }
    let token = auth::new_api_token();
    let summary = state
        .db
        .create_token(principal.user.id, name, &digest(&token))
        .await?;
    tracing::info!(
        user_id = principal.user.id,
        token_id = summary.id,
        "API token created"
    );
    Ok(HttpResponse::Created()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(NewToken { token, summary }))
}

/// `DELETE /api/tokens/{id}`: revokes one of the caller's own tokens.
pub async fn revoke_token(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("token", &path)?;
    let token = state
        .db
        .revoke_token(principal.user.id, id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("you have no token {id}")))?;
    state.principals.clear();
    Ok(HttpResponse::Ok().json(token))
}

/// `GET /api/users` (admin): every account.
pub async fn users(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.users().await?))
}

/// `POST /api/users {username, password, roles}` (admin).
pub async fn add_user(
    state: web::Data<AppState>,
    principal: Principal,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let user = create_user(&state.db, &body.username, &body.password, &body.roles).await?;
    tracing::info!(by = principal.user.id, user_id = user.id, roles = ?user.roles, "user created");
    Ok(HttpResponse::Created().json(user))
}

/// `PATCH /api/users/{id} {roles?, disabled?, password?}` (admin). An admin cannot take away
/// their own admin role or disable themselves, so that a server is never left without one by
/// accident.
pub async fn update_user(
    state: web::Data<AppState>,
    principal: Principal,
    path: web::Path<String>,
    body: web::Json<UpdateUser>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("user", &path)?;
    let UpdateUser {
        roles,
        disabled,
        password,
    } = body.into_inner();
    if id == principal.user.id
        && (disabled == Some(true) || roles.as_ref().is_some_and(|r| !r.contains(&Role::Admin)))
    {
        return Err(ApiError::BadRequest(
            "you cannot disable yourself or remove your own admin role; ask another admin"
                .to_owned(),
        ));
    }
    let hash = match password {
        Some(password) => {
            check_password(&password)?;
            Some(hash_off_thread(password).await?)
        }
        None => None,
    };
    let roles = roles.map(|mut r| {
        r.sort();
        r.dedup();
        r
    });
    let user = state
        .db
        .update_user(id, roles.as_deref(), disabled, hash.as_deref())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} does not exist")))?;
    state.principals.clear();
    tracing::info!(by = principal.user.id, user_id = id, roles = ?user.roles, disabled = user.disabled, "user updated");
    Ok(HttpResponse::Ok().json(user))
}

pub fn parse_id(what: &str, path: &str) -> Result<i64, ApiError> {
    path.parse()
        .map_err(|_| ApiError::BadRequest(format!("{what} id {path:?} is not a number")))
}
