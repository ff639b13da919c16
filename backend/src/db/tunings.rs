//! LoRA tunings: their rows, jobs and loss curves. The job a worker gets is rebuilt from the
//! row (the plan) and the data exam set whenever it is published, so the queue never holds
//! anything the database could not make again.

use kokushi_shared::Question;
use kokushi_shared::api::{RunStatus, TuningDetail, TuningSummary};
use kokushi_shared::job::{EvalJob, Priority, TunePoint};
use kokushi_shared::prompt::PromptFormat;
use sqlx::Row;

use super::exam_sets::question_from_body;
use super::run_states::{Owner, move_job, next_attempt, settle};
use super::runs::NewRun;
use super::{Db, DbError, corrupt, flag};
use crate::clock::now_rfc3339;

/// What a new tuning records.
#[derive(Debug, Clone)]
pub struct NewTuning {
    pub adapter: String,
    pub base_model: String,
    pub data_exam_set_id: i64,
    pub prompt_format: String,
    pub preset: String,
    /// The run plan's JSON.
    pub plan: String,
    pub steps: u64,
    pub priority: Priority,
    pub evaluate: Option<kokushi_shared::api::ChainedEvaluation>,
    pub created_by: Option<i64>,
    /// The project it belongs to (and its chained evaluations).
    pub project_id: i64,
}

/// A tuning row as needed to publish its job.
#[derive(Debug, Clone)]
pub struct TuningJobRow {
    pub job_id: i64,
    /// The job's latest attempt (one more at each retry).
    pub attempt: u32,
    pub tuning_id: i64,
    pub adapter: String,
    pub base_model: String,
    pub data_exam_set_id: i64,
    pub plan: String,
    pub priority: Priority,
}

const SUMMARY_SELECT: &str = "SELECT t.id, t.adapter, t.base_model, e.name AS data_exam_set, \
     t.preset, t.prompt_format, t.status, t.steps, t.worker, t.model_info, t.error, \
     t.train_examples, t.validation_examples, t.too_long, t.final_validation_loss, \
     t.created_at, t.finished_at, t.base_run_id, t.tuned_run_id, \
     (SELECT MAX(p.step) FROM tuning_points p WHERE p.tuning_id = t.id AND p.validation = 0) AS steps_done, \
     (SELECT p.loss FROM tuning_points p WHERE p.tuning_id = t.id AND p.validation = 0 \
        ORDER BY p.step DESC LIMIT 1) AS last_loss \
     FROM tunings t JOIN exam_sets e ON e.id = t.data_exam_set_id";

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn summary_from_row(row: &sqlx::any::AnyRow) -> Result<TuningSummary, DbError> {
    let status: String = row.try_get("status")?;
    Ok(TuningSummary {
        id: row.try_get("id")?,
        adapter: row.try_get("adapter")?,
        base_model: row.try_get("base_model")?,
        data_exam_set: row.try_get("data_exam_set")?,
        preset: row.try_get("preset")?,
        prompt_format: row.try_get("prompt_format")?,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("tunings", "status", &status))?,
        steps: to_u64(row.try_get("steps")?),
        steps_done: row
            .try_get::<Option<i64>, _>("steps_done")?
            .map_or(0, to_u64),
        last_loss: row.try_get("last_loss")?,
        final_validation_loss: row.try_get("final_validation_loss")?,
        train_examples: row.try_get::<Option<i64>, _>("train_examples")?.map(to_u64),
        validation_examples: row
            .try_get::<Option<i64>, _>("validation_examples")?
            .map(to_u64),
        too_long: row.try_get::<Option<i64>, _>("too_long")?.map(to_u64),
        worker: row.try_get("worker")?,
        model_info: row.try_get("model_info")?,
        error: row.try_get("error")?,
        created_at: row.try_get("created_at")?,
        finished_at: row.try_get("finished_at")?,
        base_run_id: row.try_get("base_run_id")?,
        tuned_run_id: row.try_get("tuned_run_id")?,
    })
}

fn job_row(row: &sqlx::any::AnyRow) -> Result<TuningJobRow, DbError> {
    let priority: String = row.try_get("priority")?;
    Ok(TuningJobRow {
        job_id: row.try_get("job_id")?,
        attempt: u32::try_from(row.try_get::<i64, _>("attempt")?).unwrap_or(u32::MAX),
        tuning_id: row.try_get("tuning_id")?,
        adapter: row.try_get("adapter")?,
        base_model: row.try_get("base_model")?,
        data_exam_set_id: row.try_get("data_exam_set_id")?,
        plan: row.try_get("plan")?,
        priority: Priority::parse(&priority)
            .ok_or_else(|| corrupt("tunings", "priority", &priority))?,
    })
}

const JOB_SELECT: &str = "SELECT j.id AS job_id, j.attempt, t.id AS tuning_id, t.adapter, t.base_model, \
     t.data_exam_set_id, t.plan, t.priority FROM jobs j JOIN tunings t ON t.id = j.tuning_id";

/// A tuning's status, its job's id and latest attempt, read inside `tx`.
async fn tuning_status(
    tx: &mut sqlx::Transaction<'static, sqlx::Any>,
    tuning_id: i64,
) -> Result<Option<(RunStatus, i64, u32)>, DbError> {
    let Some(row) = sqlx::query(
        "SELECT t.status, j.id AS job_id, j.attempt FROM tunings t JOIN jobs j \
         ON j.tuning_id = t.id WHERE t.id = $1",
    )
    .bind(tuning_id)
    .fetch_optional(&mut **tx)
    .await?
    else {
        return Ok(None);
    };
    let status: String = row.try_get("status")?;
    let status = RunStatus::parse(&status).ok_or_else(|| corrupt("tunings", "status", &status))?;
    let attempt: i64 = row.try_get("attempt")?;
    Ok(Some((
        status,
        row.try_get("job_id")?,
        u32::try_from(attempt).unwrap_or(u32::MAX),
    )))
}

impl Db {
    /// Who created a tuning: `None` when there is no such tuning, `Some(None)` for one made
    /// without an account.
    pub async fn tuning_owner(&self, tuning_id: i64) -> Result<Option<Option<i64>>, DbError> {
        let row = sqlx::query("SELECT created_by FROM tunings WHERE id = $1")
            .bind(tuning_id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("created_by")).transpose()?)
    }

    /// Every question of an exam set, in order.
    pub async fn exam_questions(&self, exam_set_id: i64) -> Result<Vec<Question>, DbError> {
        let rows =
            sqlx::query("SELECT body FROM questions WHERE exam_set_id = $1 ORDER BY position")
                .bind(exam_set_id)
                .fetch_all(&self.pool)
                .await?;
        rows.iter()
            .map(|row| question_from_body(&row.try_get::<String, _>("body")?))
            .collect()
    }

    /// Whether a queued or running tuning, or a succeeded one, already writes `adapter`.
    pub async fn adapter_taken(&self, adapter: &str) -> Result<bool, DbError> {
        Ok(sqlx::query(
            "SELECT id FROM tunings WHERE adapter = $1 \
             AND status IN ('queued', 'running', 'succeeded') LIMIT 1",
        )
        .bind(adapter)
        .fetch_optional(&self.pool)
        .await?
        .is_some())
    }

    /// Records a queued tuning and its job in one transaction.
    pub async fn create_tuning(&self, new: &NewTuning) -> Result<TuningJobRow, DbError> {
        let mut tx = self.begin_write().await?;
        let now = now_rfc3339();
        let (eval_exam, eval_limit, eval_tokens) = match &new.evaluate {
            Some(e) => (
                Some(e.exam_set_id),
                e.limit.map(i64::from),
                e.max_new_tokens.map(i64::from),
            ),
            None => (None, None, None),
        };
        let tuning_id: i64 = sqlx::query(
            "INSERT INTO tunings (adapter, base_model, data_exam_set_id, prompt_format, preset, \
                 plan, steps, status, priority, eval_exam_set_id, eval_limit, \
                 eval_max_new_tokens, created_by, created_at, project_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, 'queued', $8, $9, $10, $11, $12, $13, $14) \
             RETURNING id",
        )
        .bind(&new.adapter)
        .bind(&new.base_model)
        .bind(new.data_exam_set_id)
        .bind(&new.prompt_format)
        .bind(&new.preset)
        .bind(&new.plan)
        .bind(to_i64(new.steps))
        .bind(new.priority.as_str())
        .bind(eval_exam)
        .bind(eval_limit)
        .bind(eval_tokens)
        .bind(new.created_by)
        .bind(&now)
        .bind(new.project_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let job_id: i64 = sqlx::query(
            "INSERT INTO jobs (tuning_id, kind, status, created_at, updated_at) \
             VALUES ($1, 'tune', 'queued', $2, $2) RETURNING id",
        )
        .bind(tuning_id)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        tx.commit().await?;
        Ok(TuningJobRow {
            job_id,
            attempt: 1,
            tuning_id,
            adapter: new.adapter.clone(),
            base_model: new.base_model.clone(),
            data_exam_set_id: new.data_exam_set_id,
            plan: new.plan.clone(),
            priority: new.priority,
        })
    }

    /// The jobs of queued and running tunings (to publish again after a loss).
    pub async fn unfinished_tunings(&self) -> Result<Vec<TuningJobRow>, DbError> {
        let rows = sqlx::query(&format!(
            "{JOB_SELECT} WHERE t.status IN ('queued', 'running') ORDER BY j.id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(job_row).collect()
    }

    /// A worker took attempt `attempt` of the tuning's job: tuning and job turn `running`
    /// together (the tuning's row written first, as everywhere), only while unfinished and the
    /// attempt is the latest.
    pub async fn mark_tuning_running(
        &self,
        tuning_id: i64,
        attempt: u32,
        worker: &str,
        model_info: &str,
    ) -> Result<(), DbError> {
        self.start_attempt(Owner::Tuning(tuning_id), attempt, worker, model_info)
            .await
    }

    /// Stores a point of the loss curve; a repeat (same step and kind) changes nothing.
    ///
    /// Absent values are written as SQL `NULL` literals, never bound: PostgreSQL through the
    /// `Any` driver refuses a prepared statement whose float parameter was first bound as a
    /// null ("incorrect binary data format in bind parameter").
    pub async fn record_tune_point(
        &self,
        tuning_id: i64,
        point: &TunePoint,
    ) -> Result<(), DbError> {
        let stats = match (
            point.learning_rate,
            point.grad_norm,
            point.tokens_per_second,
        ) {
            (Some(lr), Some(norm), Some(speed)) => Some((lr, norm, speed)),
            _ => None,
        };
        let query = match stats {
            Some((lr, norm, speed)) => sqlx::query(
                "INSERT INTO tuning_points (tuning_id, step, validation, loss, learning_rate, \
                     grad_norm, tokens_per_second) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tuning_id)
            .bind(to_i64(point.step))
            .bind(flag(point.validation))
            .bind(point.loss)
            .bind(lr)
            .bind(norm)
            .bind(speed),
            None => sqlx::query(
                "INSERT INTO tuning_points (tuning_id, step, validation, loss, learning_rate, \
                     grad_norm, tokens_per_second) VALUES ($1, $2, $3, $4, NULL, NULL, NULL) \
                 ON CONFLICT DO NOTHING",
            )
            .bind(tuning_id)
            .bind(to_i64(point.step))
            .bind(flag(point.validation))
            .bind(point.loss),
        };
        query.execute(&self.pool).await?;
        Ok(())
    }

    /// Marks a tuning succeeded with its counts and, when it asked for them, creates the
    /// evaluations it chains — the base model, then the base model with the new adapter, on its
    /// exam set in its prompt format — all in one transaction, so a tuning is never seen
    /// succeeded without its chained runs. Returns the jobs to publish: none for a repeated
    /// event, or when no evaluation was asked (or its exam set is gone).
    pub async fn finish_tuning(
        &self,
        tuning_id: i64,
        attempt: u32,
        counts: [u64; 3],
        final_validation_loss: Option<f64>,
    ) -> Result<Vec<EvalJob>, DbError> {
        let mut tx = self.begin_write().await?;
        let now = now_rfc3339();
        let changed = sqlx::query(
            "UPDATE tunings SET status = 'succeeded', train_examples = $2, \
                 validation_examples = $3, too_long = $4, finished_at = $5, error = NULL \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(tuning_id)
        .bind(to_i64(counts[0]))
        .bind(to_i64(counts[1]))
        .bind(to_i64(counts[2]))
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0
            || !move_job(
                &mut tx,
                Owner::Tuning(tuning_id),
                Some(attempt),
                "succeeded",
                &now,
            )
            .await?
        {
            tx.rollback().await?;
            return Ok(Vec::new());
        }
        // Written only when there is one: a float is never bound as a null (see
        // `record_tune_point`).
        if let Some(loss) = final_validation_loss {
            sqlx::query("UPDATE tunings SET final_validation_loss = $2 WHERE id = $1")
                .bind(tuning_id)
                .bind(loss)
                .execute(&mut *tx)
                .await?;
        }
        let row = sqlx::query(
            "SELECT base_model, adapter, prompt_format, eval_exam_set_id, eval_limit, \
                 eval_max_new_tokens, priority, created_by, project_id FROM tunings WHERE id = $1",
        )
        .bind(tuning_id)
        .fetch_one(&mut *tx)
        .await?;
        let mut jobs = Vec::new();
        if let Some(exam_set_id) = row.try_get::<Option<i64>, _>("eval_exam_set_id")? {
            let format: String = row.try_get("prompt_format")?;
            let priority: String = row.try_get("priority")?;
            let to_u32 = |v: Option<i64>| v.map(|v| u32::try_from(v).unwrap_or(u32::MAX));
            let base = NewRun {
                exam_set_id,
                model: row.try_get("base_model")?,
                adapter: None,
                settings: kokushi_shared::job::EvalSettings::new(
                    PromptFormat::from_id(&format)
                        .ok_or_else(|| corrupt("tunings", "prompt_format", &format))?,
                    to_u32(row.try_get("eval_max_new_tokens")?)
                        .unwrap_or(crate::limits::DEFAULT_MAX_NEW_TOKENS),
                ),
                shot_pool_exam_set_id: None,
                limit: to_u32(row.try_get("eval_limit")?),
                priority: Priority::parse(&priority)
                    .ok_or_else(|| corrupt("tunings", "priority", &priority))?,
                created_by: row.try_get("created_by")?,
                project_id: row
                    .try_get::<Option<i64>, _>("project_id")?
                    .ok_or_else(|| corrupt("tunings", "project_id", "no project"))?,
            };
            let tuned = NewRun {
                adapter: Some(row.try_get("adapter")?),
                ..base.clone()
            };
            if let (Some(base), Some(tuned)) = (
                Self::insert_run(&mut tx, &base).await?,
                Self::insert_run(&mut tx, &tuned).await?,
            ) {
                sqlx::query("UPDATE tunings SET base_run_id = $2, tuned_run_id = $3 WHERE id = $1")
                    .bind(tuning_id)
                    .bind(base.run_id)
                    .bind(tuned.run_id)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("UPDATE runs SET tuning_id = $1 WHERE id IN ($2, $3)")
                    .bind(tuning_id)
                    .bind(base.run_id)
                    .bind(tuned.run_id)
                    .execute(&mut *tx)
                    .await?;
                jobs = vec![base, tuned];
            } else {
                tracing::error!(
                    tuning_id,
                    exam_set_id,
                    "the exam set to evaluate on is gone; no evaluations chained"
                );
            }
        }
        tx.commit().await?;
        Ok(jobs)
    }

    /// Attempt `attempt` of a queued or running tuning failed with the worker's reason: tuning
    /// and job end together, in one transaction, unless the attempt is no longer the latest or
    /// the tuning has ended (a cancelled tuning's late failure changes nothing).
    pub async fn fail_tuning(
        &self,
        tuning_id: i64,
        attempt: u32,
        error: &str,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let now = now_rfc3339();
        let changed = sqlx::query(
            "UPDATE tunings SET status = 'failed', error = $2, finished_at = $3 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(tuning_id)
        .bind(error)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        let done = changed > 0
            && move_job(
                &mut tx,
                Owner::Tuning(tuning_id),
                Some(attempt),
                "failed",
                &now,
            )
            .await?;
        settle(tx, done).await
    }

    /// Cancels a queued or running tuning: `Ok(Some((job id, attempt)))`, `Ok(None)` when it
    /// does not exist, `Err(status)` when it has finished already.
    pub async fn cancel_tuning(
        &self,
        tuning_id: i64,
    ) -> Result<Result<Option<(i64, u32)>, RunStatus>, DbError> {
        let mut tx = self.begin_write().await?;
        let Some((status, job_id, attempt)) = tuning_status(&mut tx, tuning_id).await? else {
            return Ok(Ok(None));
        };
        if status.is_finished() {
            return Ok(Err(status));
        }
        let now = now_rfc3339();
        let changed = sqlx::query(
            "UPDATE tunings SET status = 'cancelled', finished_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(tuning_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            // It ended in the meantime.
            tx.rollback().await?;
            let status = self
                .tuning_summary(tuning_id)
                .await?
                .map_or(RunStatus::Failed, |t| t.status);
            return Ok(Err(status));
        }
        move_job(&mut tx, Owner::Tuning(tuning_id), None, "cancelled", &now).await?;
        tx.commit().await?;
        Ok(Ok(Some((job_id, attempt))))
    }

    /// Queues a failed or cancelled tuning again as a new attempt of its job: `Ok(Some(job))`,
    /// `Ok(None)` when it does not exist, `Err(status)` when it is queued, running or
    /// succeeded. The worker resumes from the adapter folder's last checkpoint; the curve points
    /// stored so far are kept.
    pub async fn retry_tuning(
        &self,
        tuning_id: i64,
    ) -> Result<Result<Option<TuningJobRow>, RunStatus>, DbError> {
        let mut tx = self.begin_write().await?;
        let Some((status, _, _)) = tuning_status(&mut tx, tuning_id).await? else {
            return Ok(Ok(None));
        };
        if !matches!(status, RunStatus::Failed | RunStatus::Cancelled) {
            return Ok(Err(status));
        }
        let now = now_rfc3339();
        let changed = sqlx::query(
            "UPDATE tunings SET status = 'queued', error = NULL, finished_at = NULL, \
                 worker = NULL WHERE id = $1 AND status IN ('failed', 'cancelled')",
        )
        .bind(tuning_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            // Another retry got there first.
            tx.rollback().await?;
            return Ok(Err(RunStatus::Queued));
        }
        next_attempt(&mut tx, Owner::Tuning(tuning_id), &now).await?;
        let job = sqlx::query(&format!("{JOB_SELECT} WHERE t.id = $1"))
            .bind(tuning_id)
            .fetch_one(&mut *tx)
            .await?;
        let job = job_row(&job)?;
        tx.commit().await?;
        Ok(Ok(Some(job)))
    }

    /// A project's tunings, newest first, and how many there are.
    pub async fn tunings(
        &self,
        scope: &super::projects::Scope,
        page: crate::page::Page,
    ) -> Result<(Vec<TuningSummary>, u64), DbError> {
        let rows = sqlx::query(&format!(
            "{SUMMARY_SELECT} WHERE t.project_id = $1 ORDER BY t.id DESC {}",
            page.sql()
        ))
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query("SELECT COUNT(*) AS n FROM tunings WHERE project_id = $1")
            .bind(scope.project)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok((
            rows.iter()
                .map(summary_from_row)
                .collect::<Result<_, _>>()?,
            u64::try_from(total).unwrap_or(0),
        ))
    }

    pub async fn tuning_summary(&self, id: i64) -> Result<Option<TuningSummary>, DbError> {
        let row = sqlx::query(&format!("{SUMMARY_SELECT} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    /// A tuning's base model and its run plan's JSON.
    pub async fn tuning_plan(&self, id: i64) -> Result<Option<(String, String)>, DbError> {
        let row = sqlx::query("SELECT base_model, plan FROM tunings WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("base_model")?, r.try_get("plan")?)))
            .transpose()
    }

    /// A tuning with its loss curves in step order.
    pub async fn tuning_detail(&self, id: i64) -> Result<Option<TuningDetail>, DbError> {
        let Some(tuning) = self.tuning_summary(id).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(
            "SELECT step, validation, loss, learning_rate, grad_norm, tokens_per_second \
             FROM tuning_points WHERE tuning_id = $1 ORDER BY step, validation",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        let points = rows
            .iter()
            .map(|row| {
                Ok(TunePoint {
                    step: to_u64(row.try_get("step")?),
                    validation: row.try_get::<i64, _>("validation")? != 0,
                    loss: row.try_get("loss")?,
                    learning_rate: row.try_get("learning_rate")?,
                    grad_norm: row.try_get("grad_norm")?,
                    tokens_per_second: row.try_get("tokens_per_second")?,
                })
            })
            .collect::<Result<_, DbError>>()?;
        Ok(Some(TuningDetail {
            tuning,
            points,
            waiting: None,
        }))
    }
}
