//! A run's status over its life, with its job's: taken by a worker, finished or given up,
//! cancelled, retried as a new attempt. Each change moves run and job together in one
//! transaction, guarded by their status and, for a worker's report, by the job's attempt: an
//! event of an attempt a retry replaced, or one arriving after a cancellation, changes nothing.
//!
//! Every transaction here writes the run's row first and its job's second, so that two of them
//! never wait on each other's rows in opposite orders (PostgreSQL would stop one with a
//! deadlock); a step that changes nothing rolls the whole transaction back.

use kokushi_shared::api::RunStatus;
use kokushi_shared::job::EvalJob;
use sqlx::Row;

use super::{Db, DbError, corrupt};
use crate::clock::now_rfc3339;

/// Whose job a status change is for.
#[derive(Debug, Clone, Copy)]
pub(super) enum Owner {
    Run(i64),
    Tuning(i64),
    Judge(i64),
}

impl Owner {
    /// The owner's table, the column of `jobs` that names it, and its id (the names are ours,
    /// written into SQL; the id is bound).
    fn parts(self) -> (&'static str, &'static str, i64) {
        match self {
            Owner::Run(id) => ("runs", "run_id", id),
            Owner::Tuning(id) => ("tunings", "tuning_id", id),
            Owner::Judge(id) => ("judge_runs", "judge_run_id", id),
        }
    }
}

/// Moves the unfinished job of `owner` to `status` inside `tx`, if `attempt` (when given) is
/// its latest; whether it did. Called after the owner's own row is written (the one order of
/// every transaction here).
pub(super) async fn move_job(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: Owner,
    attempt: Option<u32>,
    status: &str,
    now: &str,
) -> Result<bool, DbError> {
    let (_, column, id) = owner.parts();
    let changed = sqlx::query(&format!(
        "UPDATE jobs SET status = $2, updated_at = $3 WHERE {column} = $1 \
         AND status IN ('queued', 'running') AND ($4 < 0 OR attempt = $4)"
    ))
    .bind(id)
    .bind(status)
    .bind(now)
    .bind(attempt.map_or(-1, i64::from))
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed > 0)
}

/// Ends attempt `attempt` of `owner` (a run or judge run) with `status` and `error` inside `tx`:
/// its row, then its job, only while unfinished and the attempt is the job's latest; whether it
/// did (else the caller rolls back).
pub(super) async fn end_attempt(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: Owner,
    attempt: u32,
    status: &str,
    error: Option<&str>,
    now: &str,
) -> Result<bool, DbError> {
    let (table, _, id) = owner.parts();
    let changed = sqlx::query(&format!(
        "UPDATE {table} SET status = $2, error = $3, finished_at = $4 \
         WHERE id = $1 AND status IN ('queued', 'running')"
    ))
    .bind(id)
    .bind(status)
    .bind(error)
    .bind(now)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(changed > 0 && move_job(tx, owner, Some(attempt), status, now).await?)
}

/// Queues the job of `owner` again as its next attempt, inside `tx` (after the owner's row).
pub(super) async fn next_attempt(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    owner: Owner,
    now: &str,
) -> Result<(), DbError> {
    let (_, column, id) = owner.parts();
    sqlx::query(&format!(
        "UPDATE jobs SET status = 'queued', attempt = attempt + 1, updated_at = $2 \
         WHERE {column} = $1"
    ))
    .bind(id)
    .bind(now)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Commits `tx` when the change is whole (`done`), else rolls it back: nothing of half a change
/// stays.
pub(super) async fn settle(
    tx: sqlx::Transaction<'static, sqlx::Any>,
    done: bool,
) -> Result<(), DbError> {
    if done {
        tx.commit().await?;
    } else {
        tx.rollback().await?;
    }
    Ok(())
}

impl Db {
    /// Marks a run succeeded if every question it asks has its answer; `false` (and nothing
    /// changed) while some are missing, e.g. when events were lost with Redis's data. An
    /// `attempt` that is no longer the job's latest changes nothing either.
    pub async fn complete_run(&self, run_id: i64, attempt: u32) -> Result<bool, DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS missing FROM run_questions rq WHERE rq.run_id = $1 AND NOT EXISTS \
               (SELECT 1 FROM answers a WHERE a.run_id = rq.run_id AND a.problem_id = rq.problem_id)",
        )
        .bind(run_id)
        .fetch_one(&self.pool)
        .await?;
        let missing: i64 = row.try_get("missing")?;
        if missing > 0 {
            return Ok(false);
        }
        self.finish_run(run_id, attempt, None).await?;
        Ok(true)
    }

    /// A worker took attempt `attempt` of the run's job: run and job turn `running` together,
    /// in one transaction, only while both are unfinished and the attempt is the job's latest.
    pub async fn mark_running(
        &self,
        run_id: i64,
        attempt: u32,
        worker: &str,
        model_info: &str,
    ) -> Result<(), DbError> {
        self.start_attempt(Owner::Run(run_id), attempt, worker, model_info)
            .await
    }

    /// A worker took attempt `attempt` of the job of a run or tuning: owner and job turn
    /// `running` together (the owner's row first), only while unfinished and the attempt is
    /// the job's latest.
    pub(super) async fn start_attempt(
        &self,
        owner: Owner,
        attempt: u32,
        worker: &str,
        model_info: &str,
    ) -> Result<(), DbError> {
        let (table, _, id) = owner.parts();
        let mut tx = self.begin_write().await?;
        let started = sqlx::query(&format!(
            "UPDATE {table} SET status = 'running', worker = $2, model_info = $3 \
             WHERE id = $1 AND status IN ('queued', 'running')"
        ))
        .bind(id)
        .bind(worker)
        .bind(model_info)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let done = started > 0
            && move_job(&mut tx, owner, Some(attempt), "running", &now_rfc3339()).await?;
        settle(tx, done).await
    }

    /// The latest attempt of a job (of a run or a tuning), if the job exists.
    pub async fn job_attempt(&self, job_id: i64) -> Result<Option<u32>, DbError> {
        let row = sqlx::query("SELECT attempt FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row
            .map(|r| r.try_get::<i64, _>("attempt"))
            .transpose()?
            .map(|a| u32::try_from(a).unwrap_or(u32::MAX)))
    }

    /// Cancels a queued or running run, keeping its answers. `Ok(Some((job id, attempt)))`
    /// when done (the queue is told to stop that attempt); `Ok(None)` when there is no such run;
    /// `Err` with the run's status when it has finished already.
    pub async fn cancel_run(
        &self,
        run_id: i64,
    ) -> Result<Result<Option<(i64, u32)>, RunStatus>, DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE runs SET status = 'cancelled', finished_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(run_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return self.unchanged(tx, run_id).await;
        }
        move_job(&mut tx, Owner::Run(run_id), None, "cancelled", &now).await?;
        let job = sqlx::query("SELECT id, attempt FROM jobs WHERE run_id = $1")
            .bind(run_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        let attempt: i64 = job.try_get("attempt")?;
        Ok(Ok(Some((
            job.try_get("id")?,
            u32::try_from(attempt).unwrap_or(u32::MAX),
        ))))
    }

    /// Puts a failed or cancelled run back in the queue as a new attempt of its job (run and
    /// job in one transaction); returns the job with the questions still unanswered. `Err`
    /// with the status when the run is not failed or cancelled; `Ok(None)` when there is no
    /// such run.
    pub async fn retry_run(
        &self,
        run_id: i64,
    ) -> Result<Result<Option<EvalJob>, RunStatus>, DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE runs SET status = 'queued', error = NULL, finished_at = NULL, worker = NULL \
             WHERE id = $1 AND status IN ('failed', 'cancelled')",
        )
        .bind(run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            return self.unchanged(tx, run_id).await;
        }
        next_attempt(&mut tx, Owner::Run(run_id), &now).await?;
        tx.commit().await?;
        Ok(Ok(self.unfinished_job(run_id).await?))
    }

    /// Who created a run: `None` when there is no such run, `Some(None)` for a run made from
    /// the command line (no account).
    pub async fn run_owner(&self, run_id: i64) -> Result<Option<Option<i64>>, DbError> {
        let row = sqlx::query("SELECT created_by FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("created_by")).transpose()?)
    }

    /// A cancel or retry that found the run in no state to change: nothing is written, and the
    /// answer is the run's status (`Ok(None)` when there is no such run).
    async fn unchanged<T>(
        &self,
        tx: sqlx::Transaction<'static, sqlx::Any>,
        run_id: i64,
    ) -> Result<Result<Option<T>, RunStatus>, DbError> {
        tx.rollback().await?;
        Ok(match self.status_of(run_id).await? {
            None => Ok(None),
            Some(status) => Err(status),
        })
    }

    async fn status_of(&self, run_id: i64) -> Result<Option<RunStatus>, DbError> {
        let Some(row) = sqlx::query("SELECT status FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let status: String = row.try_get("status")?;
        RunStatus::parse(&status)
            .map(Some)
            .ok_or_else(|| corrupt("runs", "status", &status))
    }

    /// Attempt `attempt` of the run's job finished (`error` is `None`) or was given up: run
    /// and job end together, in one transaction, only while both are unfinished and the
    /// attempt is the job's latest (a cancelled run's late `Finished` changes nothing, nor does
    /// a `Failed` of an attempt a retry replaced).
    pub async fn finish_run(
        &self,
        run_id: i64,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<(), DbError> {
        let status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let done = end_attempt(
            &mut tx,
            Owner::Run(run_id),
            attempt,
            status.as_str(),
            error,
            &now,
        )
        .await?;
        settle(tx, done).await
    }
}
