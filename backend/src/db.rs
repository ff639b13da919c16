//! All SQL of Kokushi, portable across SQLite and PostgreSQL through sqlx's `Any` driver.
//!
//! Portability rules kept here: `$N` placeholders (both databases accept them), BIGINT
//! integers and 0/1 flags, RFC 3339 text timestamps, JSON text for nested values, and no
//! aggregate whose type differs between the two (metrics are computed in Rust with the
//! `shared` crate).

pub mod accounts;
pub mod cells;
pub mod costs;
mod exam_sets;
pub mod grading;
pub mod human;
pub mod judges;
mod predictions;
pub mod projects;
pub mod rule_packs;
pub mod run_states;
pub mod runs;
pub mod tunings;

use sqlx::any::{AnyPoolOptions, install_default_drivers};
use sqlx::{AnyPool, Row};

pub use exam_sets::{Facets, PreparedSet, content_hash};

/// Database errors, by what the caller can do about them.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    #[error("the database is unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database query failed: {0}")]
    Query(#[from] sqlx::Error),
    #[error("migrating the database failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// The request cannot be carried out as asked (the message says why, for the caller).
    #[error("{0}")]
    Refused(String),
    #[error("stored value in {table}.{column} is invalid: {message}")]
    Corrupt {
        table: &'static str,
        column: &'static str,
        message: String,
    },
}

/// Which database a URL names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    pub fn of(url: &str) -> Self {
        if url.starts_with("postgres:") || url.starts_with("postgresql:") {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }
}

/// A pool of connections to the record of truth.
#[derive(Debug, Clone)]
pub struct Db {
    pool: AnyPool,
    backend: Backend,
    /// Held while a run's human decisions are computed again, so that the requests that find
    /// them stale at once wait for one computation instead of each doing it.
    human_refresh: std::sync::Arc<tokio::sync::Mutex<()>>,
}

impl Db {
    /// How many lines of the audit log a filter of [`Db::audit_log`] selects.
    pub async fn audit_count(
        &self,
        project: Option<i64>,
        task: Option<i64>,
    ) -> Result<u64, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM audit_log l WHERE (l.task_id = $1 OR $1 = -1) \
             AND ($2 = -1 OR l.task_id IN (SELECT t.id FROM grading_tasks t \
                                          WHERE t.project_id = $2))",
        )
        .bind(task.unwrap_or(-1))
        .bind(project.unwrap_or(-1))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// Connects (creating a SQLite file if needed) and applies pending migrations.
    pub async fn connect(url: &str) -> Result<Self, DbError> {
        install_default_drivers();
        let backend = Backend::of(url);
        let url = match backend {
            Backend::Sqlite if !url.contains("mode=") => {
                let sep = if url.contains('?') { '&' } else { '?' };
                format!("{url}{sep}mode=rwc")
            }
            _ => url.to_owned(),
        };
        if backend == Backend::Sqlite
            && let Some(path) = url
                .strip_prefix("sqlite://")
                .and_then(|rest| rest.split('?').next())
            && let Some(parent) = std::path::Path::new(path).parent()
            && !parent.as_os_str().is_empty()
        {
            // A missing folder would otherwise surface as an opaque "unable to open" error.
            let _ = std::fs::create_dir_all(parent);
        }
        let sqlite = backend == Backend::Sqlite;
        let pool = AnyPoolOptions::new()
            .max_connections(if sqlite { 4 } else { 10 })
            .acquire_timeout(std::time::Duration::from_secs(10))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if sqlite {
                        // Pages read through a memory map instead of one read call each, and a
                        // larger cache per connection: a run's page reads a few thousand rows.
                        sqlx::query("PRAGMA mmap_size = 1073741824")
                            .execute(&mut *conn)
                            .await?;
                        sqlx::query("PRAGMA cache_size = -16384")
                            .execute(&mut *conn)
                            .await?;
                    }
                    Ok(())
                })
            })
            .connect(&url)
            .await
            .map_err(DbError::Unavailable)?;
        let db = Self {
            pool,
            backend,
            human_refresh: std::sync::Arc::default(),
        };
        db.migrate().await?;
        Ok(db)
    }

    async fn migrate(&self) -> Result<(), DbError> {
        match self.backend {
            Backend::Sqlite => {
                // Foreign keys off on the migrating connection: a migration that rebuilds a
                // table others refer to (SQLite's only way to change a constraint) drops it
                // first, and the pragma cannot be switched inside the migration's transaction.
                // What the migrations leave is checked once they are done.
                let mut conn = self.pool.acquire().await?;
                sqlx::query("PRAGMA foreign_keys = OFF")
                    .execute(&mut *conn)
                    .await?;
                let migrated = sqlx::migrate!("../migrations/sqlite").run(&mut *conn).await;
                sqlx::query("PRAGMA foreign_keys = ON")
                    .execute(&mut *conn)
                    .await?;
                migrated?;
                let broken = sqlx::query("PRAGMA foreign_key_check")
                    .fetch_all(&mut *conn)
                    .await?;
                if !broken.is_empty() {
                    return Err(DbError::Corrupt {
                        table: "(migrations)",
                        column: "(foreign keys)",
                        message: format!(
                            "{} rows refer to rows that do not exist after migrating",
                            broken.len()
                        ),
                    });
                }
            }
            Backend::Postgres => {
                sqlx::migrate!("../migrations/postgres")
                    .run(&self.pool)
                    .await?
            }
        }
        Ok(())
    }

    /// A transaction that will write. On SQLite it takes the write lock at once (`BEGIN
    /// IMMEDIATE`): a deferred one that read first and writes later fails with SQLITE_BUSY,
    /// without waiting, whenever another connection wrote in between.
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, DbError> {
        Ok(match self.backend {
            Backend::Sqlite => self.pool.begin_with("BEGIN IMMEDIATE").await?,
            Backend::Postgres => self.pool.begin().await?,
        })
    }

    /// Taken while stale human decisions are computed again (see [`human`]).
    pub async fn human_refresh_lock(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.human_refresh.lock().await
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// The connection pool, for tests that read a table directly (the application goes
    /// through the methods of this module).
    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// Values bound in one `IN (…)` list at most (far below SQLite's and PostgreSQL's limits).
pub(crate) const IN_CHUNK: usize = 500;

impl Db {
    /// The rows of `sql(None)`, or with `ids`, of `sql(Some(list))` once per chunk of at most
    /// [`IN_CHUNK`] ids, `list` being the chunk's placeholders from `$1` (bound to its ids in
    /// order), the chunks' rows one after the other.
    pub(crate) async fn rows_for_ids(
        &self,
        ids: Option<&[i64]>,
        sql: impl Fn(Option<&str>) -> String,
    ) -> Result<Vec<sqlx::any::AnyRow>, DbError> {
        let Some(ids) = ids else {
            return Ok(sqlx::query(&sql(None)).fetch_all(&self.pool).await?);
        };
        let mut rows = Vec::new();
        for chunk in ids.chunks(IN_CHUNK) {
            let sql = sql(Some(&placeholders_from(1, chunk.len())));
            let query = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            rows.extend(query.fetch_all(&self.pool).await?);
        }
        Ok(rows)
    }
}

/// `$first, $first+1, …` (`count` placeholders).
pub(crate) fn placeholders_from(first: usize, count: usize) -> String {
    (first..first + count)
        .map(|n| format!("${n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

pub(crate) fn corrupt(
    table: &'static str,
    column: &'static str,
    e: impl std::fmt::Display,
) -> DbError {
    DbError::Corrupt {
        table,
        column,
        message: e.to_string(),
    }
}

fn flag(b: bool) -> i64 {
    i64::from(b)
}

fn to_u32(v: i64) -> u32 {
    u32::try_from(v.max(0)).unwrap_or(u32::MAX)
}
