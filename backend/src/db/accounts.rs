//! Users, their roles, browser sessions and personal API tokens. Secrets arrive here already
//! hashed (see `crate::auth`): nothing in these tables lets anyone sign in by reading them.

use kokushi_shared::api::{ProjectRole, Role, TokenSummary, UserSummary};
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
    /// The project the session acts in, if one was chosen.
    pub project: Option<i64>,
}

/// What a valid API token stands for.
#[derive(Debug, Clone)]
pub struct TokenUser {
    pub user: UserSummary,
    /// The one project the token acts in.
    pub project: Option<i64>,
    pub read_only: bool,
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

/// The columns [`token_from_row`] reads.
const TOKEN_COLUMNS: &str = "id, name, created_at, last_used_at, revoked_at, expires_at, \
     read_only, (SELECT slug FROM projects p WHERE p.id = api_tokens.project_id) AS project";

fn token_from_row(row: &AnyRow) -> Result<TokenSummary, DbError> {
    Ok(TokenSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_at: row.try_get("created_at")?,
        last_used_at: row.try_get("last_used_at")?,
        revoked_at: row.try_get("revoked_at")?,
        expires_at: row.try_get("expires_at")?,
        project: row.try_get("project")?,
        read_only: row.try_get::<i64, _>("read_only")? != 0,
    })
}

/// What ending an account's access took with it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Ended {
    pub sessions: u64,
    pub tokens: u64,
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
        Self::sync_default_membership(&mut tx, id, ProjectRole::of_roles(roles)).await?;
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
    pub async fn users(&self, page: crate::page::Page) -> Result<Vec<UserSummary>, DbError> {
        let rows = sqlx::query(&format!("{USER_SELECT} ORDER BY username {}", page.sql()))
            .fetch_all(&self.pool)
            .await?;
        let mut users = Vec::with_capacity(rows.len());
        for row in &rows {
            let id: i64 = row.try_get("id")?;
            users.push(user_from_row(row, self.roles_of(id).await?)?);
        }
        Ok(users)
    }

    /// Changes what is given, in one transaction. Disabling an account ends its sessions;
    /// changing its password ends its sessions and revokes its API tokens (whoever learnt the
    /// old password may have made some). `None` when there is no such account.
    pub async fn update_user(
        &self,
        id: i64,
        roles: Option<&[Role]>,
        disabled: Option<bool>,
        password_hash: Option<&str>,
    ) -> Result<Option<(UserSummary, Ended)>, DbError> {
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
            Self::sync_default_membership(&mut tx, id, ProjectRole::of_roles(roles)).await?;
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
        let mut ended = Ended::default();
        if disabled == Some(true) || password_hash.is_some() {
            ended.sessions = sqlx::query("DELETE FROM sessions WHERE user_id = $1")
                .bind(id)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        if password_hash.is_some() {
            ended.tokens = sqlx::query(
                "UPDATE api_tokens SET revoked_at = $1 WHERE user_id = $2 AND revoked_at IS NULL",
            )
            .bind(now_rfc3339())
            .bind(id)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(self.user(id).await?.map(|user| (user, ended)))
    }

    pub async fn create_session(
        &self,
        user_id: i64,
        token_hash: &str,
        csrf_token: &str,
        expires_at: &str,
    ) -> Result<(), DbError> {
        sqlx::query(
            "INSERT INTO sessions (token_hash, user_id, csrf_token, created_at, expires_at, \
                                   last_seen_at) \
             VALUES ($1, $2, $3, $4, $5, $4)",
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

    /// The enabled account behind a session that has neither expired nor been idle since
    /// `idle_since`; notes its use when `stale_before` is given and its use was last noted
    /// before it (at most once a minute). Without it, nothing is written.
    pub async fn session_user(
        &self,
        token_hash: &str,
        now: &str,
        idle_since: &str,
        stale_before: Option<&str>,
    ) -> Result<Option<SessionUser>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, s.csrf_token, \
                    s.project_id, COALESCE(s.last_seen_at, s.created_at) AS last_seen \
             FROM sessions s JOIN users u ON u.id = s.user_id \
             WHERE s.token_hash = $1 AND s.expires_at > $2 AND u.disabled = 0 \
               AND COALESCE(s.last_seen_at, s.created_at) > $3",
        )
        .bind(token_hash)
        .bind(now)
        .bind(idle_since)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let last_seen: String = row.try_get("last_seen")?;
        if stale_before.is_some_and(|stale| last_seen.as_str() < stale) {
            sqlx::query("UPDATE sessions SET last_seen_at = $1 WHERE token_hash = $2")
                .bind(now)
                .bind(token_hash)
                .execute(&self.pool)
                .await?;
        }
        let id: i64 = row.try_get("id")?;
        Ok(Some(SessionUser {
            user: user_from_row(&row, self.roles_of(id).await?)?,
            csrf_token: row.try_get("csrf_token")?,
            project: row.try_get("project_id")?,
        }))
    }

    pub async fn delete_session(&self, token_hash: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM sessions WHERE token_hash = $1")
            .bind(token_hash)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Forgets sessions that have expired, or been idle since `idle_since`.
    pub async fn delete_expired_sessions(
        &self,
        now: &str,
        idle_since: &str,
    ) -> Result<u64, DbError> {
        Ok(sqlx::query(
            "DELETE FROM sessions \
             WHERE expires_at <= $1 OR COALESCE(last_seen_at, created_at) <= $2",
        )
        .bind(now)
        .bind(idle_since)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Stores a new token (its hash), valid until `expires_at` if given.
    #[allow(clippy::too_many_arguments)]
    pub async fn create_token(
        &self,
        user_id: i64,
        name: &str,
        token_hash: &str,
        expires_at: Option<&str>,
        project: i64,
        read_only: bool,
    ) -> Result<TokenSummary, DbError> {
        let id: i64 = sqlx::query(
            "INSERT INTO api_tokens (user_id, name, token_hash, created_at, expires_at, \
                                     project_id, read_only) \
             VALUES ($1, $2, $3, $4, $5, $6, $7) RETURNING id",
        )
        .bind(user_id)
        .bind(name)
        .bind(token_hash)
        .bind(now_rfc3339())
        .bind(expires_at)
        .bind(project)
        .bind(flag(read_only))
        .fetch_one(&self.pool)
        .await?
        .try_get("id")?;
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
        ))
        .bind(id)
        .fetch_one(&self.pool)
        .await?;
        token_from_row(&row)
    }

    /// The enabled account behind an unrevoked, unexpired token; notes when it was used (at most once a
    /// minute, so that a busy script does not turn every read into a write).
    pub async fn token_user(
        &self,
        token_hash: &str,
        now: &str,
        stale_before: &str,
    ) -> Result<Option<TokenUser>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT u.id, u.username, u.password_hash, u.disabled, u.created_at, \
                    t.id AS token_id, t.last_used_at, t.project_id, t.read_only \
             FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_hash = $1 AND t.revoked_at IS NULL AND u.disabled = 0 \
               AND (t.expires_at IS NULL OR t.expires_at > $2)",
        )
        .bind(token_hash)
        .bind(now)
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
        Ok(Some(TokenUser {
            user: user_from_row(&row, self.roles_of(id).await?)?,
            project: row.try_get("project_id")?,
            read_only: row.try_get::<i64, _>("read_only")? != 0,
        }))
    }

    /// How many of a user's tokens are neither revoked nor expired.
    pub async fn live_token_count(&self, user_id: i64) -> Result<u64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $2)",
        )
        .bind(user_id)
        .bind(now_rfc3339())
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// A user's tokens, newest first, revoked ones included.
    pub async fn tokens(
        &self,
        user_id: i64,
        page: crate::page::Page,
    ) -> Result<(Vec<TokenSummary>, u64), DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE user_id = $1 ORDER BY id DESC {}",
            page.sql()
        ))
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM api_tokens WHERE user_id = $1")
            .bind(user_id)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((
            rows.iter().map(token_from_row).collect::<Result<_, _>>()?,
            u64::try_from(total).unwrap_or(0),
        ))
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
        let row = sqlx::query(&format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1 AND user_id = $2"
        ))
        .bind(token_id)
        .bind(user_id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_from_row).transpose()
    }
}
