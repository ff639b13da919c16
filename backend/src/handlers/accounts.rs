//! Account endpoints: signing in and out, the caller's own password and personal API tokens,
//! and (for admins) users and their roles. Accounts are made by [`crate::accounts::create_user`].

use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use kokushi_shared::api::{
    ChangePassword, CreateToken, CreateUser, Login, NewToken, Role, UpdateUser, UserSummary,
    UserUpdated,
};

use super::parse_id;
use crate::accounts::{create_user, hash_off_thread};
use crate::auth::{
    self, Credential, DUMMY_HASH, Principal, check_password, digest, for_log, session_cookie,
    verify_password,
};
use crate::error::ApiError;
use crate::state::AppState;

/// How long a browser session lasts after signing in.
pub const SESSION_LIFETIME: Duration = Duration::from_secs(7 * 24 * 3600);

/// `POST /api/auth/login {username, password}`: sets the session cookie and answers with
/// [`kokushi_shared::api::Me`], whose `csrf_token` the browser sends back on every
/// state-changing request. The password is checked by [`check_credentials`] (bounded,
/// throttled, counted before argon2id runs).
pub async fn login(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<Login>,
) -> Result<HttpResponse, ApiError> {
    let Login { username, password } = body.into_inner();
    let addr = auth::client_addr(&req, &state.trusted_proxies);
    let Some(user) = check_credentials(&state, addr, &username, password).await? else {
        // The attempt stays counted.
        tracing::info!(username = %for_log(&username), addr = ?addr, "sign-in refused");
        return Err(ApiError::Unauthorized(
            "wrong user name or password, or the account is disabled".to_owned(),
        ));
    };
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
    let admin = user.roles.contains(&kokushi_shared::api::Role::Admin);
    let project = state.db.project_access(user.id, admin, None, true).await?;
    let principal = Principal {
        user,
        credential: Credential::Session {
            token_hash: String::new(),
            csrf_token,
        },
        project,
        read_only: false,
    };
    let secure = state.secure_cookies || auth::is_tls(&req, &state.trusted_proxies);
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            session_cookie(Some(&secret), SESSION_LIFETIME, secure),
        ))
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(super::projects::me_of(&state, &principal).await?))
}

/// `POST /api/auth/logout`: ends the session (a request with an API token changes nothing).
pub async fn logout(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    req: HttpRequest,
) -> Result<HttpResponse, ApiError> {
    if let Credential::Session { token_hash, .. } = &principal.credential {
        state.db.delete_session(token_hash).await?;
        state.principals.clear();
    }
    let secure = state.secure_cookies || auth::is_tls(&req, &state.trusted_proxies);
    Ok(HttpResponse::NoContent()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            session_cookie(None, Duration::ZERO, secure),
        ))
        .finish())
}

/// Checks a password for an account as a sign-in does, in this order, so that nothing costly
/// runs for a request that will be refused: the lengths of name and password (400); a slot
/// among the password checks allowed at once (429 with `Retry-After` when none is free); the
/// attempt counted against the address, the (address, account) pair and the account, and
/// refused past a limit (429 with `Retry-After`; [`auth::LoginLimiter`]); only then the account
/// read and argon2id run, off the async workers (against a dummy hash for an unknown account,
/// so that both take as long). The account when the password is its own and it is enabled (the
/// attempt is then forgotten); `None` otherwise (it stays counted).
async fn check_credentials(
    state: &AppState,
    addr: Option<std::net::IpAddr>,
    username: &str,
    password: String,
) -> Result<Option<UserSummary>, ApiError> {
    if username.is_empty() || username.chars().count() > auth::MAX_USERNAME_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a user name has 1 to {} characters",
            auth::MAX_USERNAME_CHARS
        )));
    }
    if password.chars().count() > auth::MAX_PASSWORD_CHARS {
        return Err(ApiError::BadRequest(format!(
            "a password has at most {} characters",
            auth::MAX_PASSWORD_CHARS
        )));
    }
    let Some(_permit) = state.limiter.permit() else {
        return Err(ApiError::Busy {
            message: "too many passwords are being checked at once".to_owned(),
            retry_after_secs: 1,
        });
    };
    let attempt = state
        .limiter
        .begin(addr, username)
        .map_err(|retry_after_secs| {
            tracing::info!(username = %for_log(username), addr = ?addr, "password check throttled");
            ApiError::TooManyRequests { retry_after_secs }
        })?;
    let stored = state.db.user_by_name(username).await?;
    let hash = stored
        .as_ref()
        .map_or_else(|| DUMMY_HASH.clone(), |s| s.password_hash.clone());
    let matches = web::block(move || verify_password(&hash, &password))
        .await
        .map_err(|e| ApiError::Internal(format!("checking a password stopped: {e}")))?;
    match stored {
        Some(stored) if matches && !stored.user.disabled => {
            state.limiter.succeeded(attempt);
            Ok(Some(stored.user))
        }
        _ => Ok(None),
    }
}

/// `POST /api/auth/password {current_password, new_password}`: the caller's own new password.
/// The current one is checked as a sign-in is (bounded, throttled, counted); then every session
/// of the account ends, this one included, and its API tokens are revoked (whoever learnt the
/// old password may have made some). The reply says how many, and deletes the session cookie.
pub async fn change_password(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Json<ChangePassword>,
) -> Result<HttpResponse, ApiError> {
    let ChangePassword {
        current_password,
        new_password,
    } = body.into_inner();
    check_password(&new_password)?;
    let addr = auth::client_addr(&req, &state.trusted_proxies);
    if check_credentials(&state, addr, &principal.user.username, current_password)
        .await?
        .is_none()
    {
        tracing::info!(
            user_id = principal.user.id,
            "password change refused: wrong current password"
        );
        return Err(ApiError::Forbidden(
            "the current password is wrong".to_owned(),
        ));
    }
    let hash = hash_off_thread(new_password).await?;
    let (user, ended) = state
        .db
        .update_user(principal.user.id, None, None, Some(&hash))
        .await?
        .ok_or_else(|| ApiError::Unauthorized("the account is gone".to_owned()))?;
    state.principals.clear();
    tracing::info!(
        user_id = user.id,
        sessions_ended = ended.sessions,
        tokens_revoked = ended.tokens,
        "password changed by its owner"
    );
    let secure = state.secure_cookies || auth::is_tls(&req, &state.trusted_proxies);
    Ok(HttpResponse::Ok()
        .insert_header((
            actix_web::http::header::SET_COOKIE,
            session_cookie(None, Duration::ZERO, secure),
        ))
        .json(UserUpdated {
            user,
            sessions_ended: ended.sessions,
            tokens_revoked: ended.tokens,
        }))
}

/// `GET /api/auth/me`: who is signed in, their roles, and the session's CSRF token.
pub async fn me(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .insert_header((actix_web::http::header::CACHE_CONTROL, "no-store"))
        .json(super::projects::me_of(&state, &principal).await?))
}

/// `GET /api/tokens[?limit=N&offset=M]`: the caller's own API tokens (never their values), newest
/// first.
pub async fn tokens(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    req: HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let (tokens, total) = state.db.tokens(principal.user.id, page).await?;
    Ok(page.respond(&req, &tokens, total))
}

/// API tokens that still work, per account.
pub const MAX_LIVE_TOKENS: u64 = 100;

/// The longest life a token may be given, in days.
pub const MAX_TOKEN_DAYS: u32 = 3650;

/// `POST /api/tokens {name, expires_in_days?}`: a new personal API token, shown once in the
/// reply.
pub async fn create_token(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    body: web::Json<CreateToken>,
) -> Result<HttpResponse, ApiError> {
    let name = body.name.trim();
    if name.is_empty() || name.chars().count() > 100 {
        return Err(ApiError::BadRequest(
            "a token's name must be 1 to 100 characters".to_owned(),
        ));
    }
    let expires_at = match body.expires_in_days {
        None => None,
        Some(days @ 1..=MAX_TOKEN_DAYS) => Some(crate::clock::format_unix(
            crate::clock::unix_now() + i64::from(days) * 86_400,
        )),
        Some(days) => {
            return Err(ApiError::BadRequest(format!(
                "expires_in_days {days} must be between 1 and {MAX_TOKEN_DAYS}"
            )));
        }
    };
    let live = state.db.live_token_count(principal.user.id).await?;
    if live >= MAX_LIVE_TOKENS {
        return Err(ApiError::Conflict(format!(
            "{} has {live} API tokens that still work, the most one account may have; revoke \
             some first",
            principal.user.username
        )));
    }
    // The token acts in the project its maker acts in now, and nowhere else.
    let scope = principal.scope()?;
    let token = auth::new_api_token();
    let summary = state
        .db
        .create_token(
            principal.user.id,
            name,
            &digest(&token),
            expires_at.as_deref(),
            scope.project,
            body.read_only,
        )
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
    principal: crate::auth::Member,
    state: web::Data<AppState>,
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

/// `GET /api/users[?limit=N&offset=M]` (admin): the accounts, a page at a time, by name.
pub async fn users(
    _caller: crate::auth::Admin,
    state: web::Data<AppState>,
    req: HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let total = u64::try_from(state.db.user_count().await?).unwrap_or(0);
    Ok(page.respond(&req, &state.db.users(page).await?, total))
}

/// `POST /api/users {username, password, roles}` (admin).
pub async fn add_user(
    principal: crate::auth::Admin,
    state: web::Data<AppState>,
    body: web::Json<CreateUser>,
) -> Result<HttpResponse, ApiError> {
    let user = create_user(&state.db, &body.username, &body.password, &body.roles).await?;
    tracing::info!(by = principal.user.id, user_id = user.id, roles = ?user.roles, "user created");
    Ok(HttpResponse::Created().json(user))
}

/// `PATCH /api/users/{id} {roles?, disabled?, password?}` (admin). A new password ends the
/// account's sessions and revokes its API tokens; disabling it ends its sessions; the reply says
/// how many of each ([`UserUpdated`]). An admin cannot take away
/// their own admin role or disable themselves, so that a server is never left without one by
/// accident.
pub async fn update_user(
    principal: crate::auth::Admin,
    state: web::Data<AppState>,
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
    let (user, ended) = state
        .db
        .update_user(id, roles.as_deref(), disabled, hash.as_deref())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("user {id} does not exist")))?;
    state.principals.clear();
    tracing::info!(
        by = principal.user.id,
        user_id = id,
        roles = ?user.roles,
        disabled = user.disabled,
        sessions_ended = ended.sessions,
        tokens_revoked = ended.tokens,
        "user updated"
    );
    Ok(HttpResponse::Ok().json(UserUpdated {
        user,
        sessions_ended: ended.sessions,
        tokens_revoked: ended.tokens,
    }))
}
