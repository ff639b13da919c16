//! Users, their roles, browser sessions and personal API tokens. Secrets arrive here already
//! hashed (see `crate::auth`): nothing in these tables lets anyone sign in by reading them.

use kokushi_shared::api::{Role, TokenSummary, UserSummary};
use sqlx::Row;
use sqlx::any::AnyRow;

use super::{Db, DbError, corrupt, flag};
use crate::clock::now_rfc3339;

/// A user as the sign-in check needs it: with the password hash.
#[derive(Debug, Clone)]
pub struct StoredUser {
    pub user: UserSummary,
    pub password_hash: String,
}

/// What a valid browser session stands for.
#[derive(Debug, Clone)]
pub struct SessionUser {
    pub user: UserSummary,
    pub csrf_token: String,
}

const USER_SELECT: &str = "SELECT id, username, password_hash, disabled, created_at FROM users";

fn user_from_row(row: &AnyRow, roles: Vec<Role>) -> Result<UserSummary, DbError> {
    Ok(UserSummary {
        id: row.try_get("id")?,
        username: row.try_get("username")?,
        roles,
        disabled: row.try_get::<i64, _>("disabled")? != 0,
        created_at: row.try_get("created_at")?,
    })
}

fn token_from_row(row: &AnyRow) -> Result<TokenSummary, DbError> {
    Ok(TokenSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
    })
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl Db {
    /// How many accounts exist (zero on a fresh installation).
    pub async fn user_count(&self) -> Result<i64, DbError> {
        let row = sqlx::query("SELECT COUNT(*) AS n FROM users")
            .fetch_one(&self.pool)
            .await?;
        Ok(row.try_get("n")?)
    }

    async fn roles_of(&self, user_id: i64) -> Result<Vec<Role>, DbError> {
        let rows = sqlx::query("SELECT role FROM user_roles WHERE user_id = $1 ORDER BY role")
            .bind(user_id)
            .fetch_all(&self.pool)
            .await?;
        let mut roles = rows
            .iter()
            .map(|row| {
                let id: String = row.try_get("role")?;
                Role::from_id(&id)
                    .ok_or_else(|| corrupt("user_roles", "role", format!("unknown role {id:?}")))
            })
            .collect::<Result<Vec<_>, _>>()?;
        roles.sort();
        Ok(roles)
    }

    /// Creates an account in one transaction; `None` when the name is taken.
    pub async fn create_user(
        &self,
        username: &str,
        password_hash: &str,
        roles: &[Role],
    ) -> Result<Option<UserSummary>, DbError> {
        let mut tx = self.begin_write().await?;
        let taken = sqlx::query("SELECT id FROM users WHERE username = $1")
            .bind(username)
            .fetch_optional(&mut *tx)
            .await?;
        if taken.is_some() {
            tx.rollback().await?;
            return Ok(None);
        }
        let inserted = sqlx::query(
            "INSERT INTO users (username, password_hash, disabled, created_at) \
             VALUES ($1, $2, 0, $3) RETURNING id",
        )
        .bind(username)
        .bind(password_hash)
        .bind(now_rfc3339())
        .fetch_one(&mut *tx)
        .await;
        let id: i64 = match inserted {
            Ok(row) => row.try_get("id")?,
            // Another request created the same name in between.
            Err(e) if is_unique_violation(&e) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        for role in roles {
            sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
                .bind(id)
                .bind(role.id())
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.user(id).await
    }

    /// An account with its password hash, for signing in.
    pub async fn user_by_name(&self, username: &str) -> Result<Option<StoredUser>, DbError> {
        let Some(row) = sqlx::query(&format!("{USER_SELECT} WHERE username = $1"))
            .bind(username)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        Ok(Some(StoredUser {
            user: user_from_row(&row, self.roles_of(id).await?)?,
            password_hash: row.try_get("password_hash")?,
        }))
    }

    pub async fn user(&self, id: i64) -> Result<Option<UserSummary>, DbError> {
        let Some(row) = sqlx::query(&format!("{USER_SELECT} WHERE id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(user_from_row(&row, self.roles_of(id).await?)?))
    }

    /// Every account, by name.
    pub async fn users(&self) -> Result<Vec<UserSummary>, DbError> {
        let rows = sqlx::query(&format!("{USER_SELECT} ORDER BY username"))
            .fetch_all(&self.pool)
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            users.push(user_from_row(row, self.roles_of(id).await?)?);
        }
        Ok(users)
    }

    /// Changes what is given, in one transaction. Disabling an account or changing its
    /// password ends its sessions. `None` when there is no such account.
    pub async fn update_user(
        &self,
        id: i64,
        roles: Option<&[Role]>,
        disabled: Option<bool>,
        password_hash: Option<&str>,
    ) -> Result<Option<UserSummary>, DbError> {
        let mut tx = self.begin_write().await?;
        let exists = sqlx::query("SELECT id FROM users WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        if exists.is_none() {
            tx.rollback().await?;
            return Ok(None);
        }
        if let Some(roles) = roles {
            sqlx::query("DELETE FROM user_roles WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
            for role in roles {
                sqlx::query("INSERT INTO user_roles (user_id, role) VALUES ($1, $2)")
                    .bind(id)
                    .bind(role.id())
                    .execute(&mut *tx)
                    .await?;
            }
        }
        if let Some(disabled) = disabled {
            sqlx::query("UPDATE users SET disabled = $1 WHERE id = $2")
                .bind(flag(disabled))
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if let Some(hash) = password_hash {
            sqlx::query("UPDATE users SET password_hash = $1 WHERE id = $2")
                .bind(hash)
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        if disabled == Some(true) || password_hash.is_some() {
            sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        self.user(id).await
    }

    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &str,
        csrf_token: &str,
        expires_at: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at) \
             VALUES ($1, $2, $3, $4, $5)",
        )
        .bind(token_hash)
        .bind(user_id)
        .bind(csrf_token)
        .bind(now_rfc3339())
        .bind(expires_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The enabled account behind an unexpired session.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: &str,
    ) -> Result<Option<SessionUser>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, s.csrf_token \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0",
        )
        .bind(token_hash)
        .bind(now)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let id: i64 = row.try_get("id")?;
        Ok(Some(SessionUser {
            user: user_from_row(&row, self.roles_of(id).await?)?,
            csrf_token: row.try_get("csrf_token")?,
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions that have expired.
    pub async fn delete_expired_sessions(&self, now: &str) -> Result<u64, DbError> {
        Ok(sqlx::query("DELETE FROM sessions WHERE expires_at <= $1")
            .bind(now)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
    ) -> Result<TokenSummary, DbError> {
        let row = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at) \
             VALUES ($1, $2, $3, $4) \
             RETURNING id, name, created_at, last_used_at, revoked_at",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(now_rfc3339())
        .fetch_one(&self.pool)
        .await?;
        token_from_row(&row)
    }

    /// The enabled account behind an unrevoked token; notes when it was used (at most once a
    /// minute, so that a busy script does not turn every read into a write).
    pub async fn token_user(
        &self,
        token_hash: &str,
        now: &str,
        stale_before: &str,
    ) -> Result<Option<UserSummary>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, \
                    t.id AS token_id, t.last_used_at \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled = 0",
        )
        .bind(token_hash)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let last_used: Option<String> = row.try_get("last_used_at")?;
        if last_used.as_deref().is_none_or(|t| t < stale_before) {
            let token_id: i64 = row.try_get("token_id")?;
            sqlx::query("UPDATE api_tokens SET last_used_at = $1 WHERE id = $2")
                .bind(now)
                .bind(token_id)
                .execute(&self.pool)
                .await?;
        }
        let id: i64 = row.try_get("id")?;
        Ok(Some(user_from_row(&row, self.roles_of(id).await?)?))
    }

    /// A user's tokens, newest first, revoked ones included.
    pub async fn tokens(&self, user_id: i64) -> Result<Vec<TokenSummary>, DbError> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens \
             WHERE user_id = $1 ORDER BY id DESC",
        )
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(token_from_row).collect()
    }

    /// Revokes one of `user_id`'s tokens; `None` when that user has no such token.
    pub async fn revoke_token(
        &self,
        user_id: i64,
        token_id: i64,
    ) -> Result<Option<TokenSummary>, DbError> {
        sqlx::query(
            "UPDATE api_tokens SET revoked_at = $1 \
             WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL",
        )
        .bind(now_rfc3339())
        .bind(token_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        let row = sqlx::query(
            "SELECT id, name, created_at, last_used_at, revoked_at FROM api_tokens \
             WHERE id = $1 AND user_id = $2",
        )
        .bind(token_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }
}
