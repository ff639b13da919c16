//! Accounts outside HTTP: [`create_user`], the one way an account is made (`POST /api/users`,
//! `kokushi admin create`, the demo, the tests), and password hashing off the async workers.
//! The account endpoints are `handlers::accounts`.

use actix_web::web;
use kokushi_shared::api::{Role, UserSummary};

use crate::auth::{self, check_password, check_username};
use crate::db::Db;
use crate::error::ApiError;

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
pub(crate) async fn hash_off_thread(password: String) -> Result<String, ApiError> {
    web::block(move || auth::hash_password(&password))
        .await
        .map_err(|e| ApiError::Internal(format!("hashing stopped: {e}")))?
}
