//! LLM judges' SQL: judge prompts (versioned per project), judge runs (queued as jobs like
//! runs, with the same status moves: `run_states::Owner::Judge`), their grades (append-only:
//! triggers refuse UPDATE and DELETE; one grade per run and item, a repeated event changes
//! nothing), and each project's judging settings.

use std::collections::HashMap;

use kokushi_shared::api::RunStatus;
use kokushi_shared::grading::{Flag, Verdict};
use kokushi_shared::job::{AnswerRecord, EvalSettings, JobQuestion, JudgeJob, Priority};
use kokushi_shared::judge::{JudgePrompt, JudgeRunSummary, JudgingSettings};
use sqlx::Row;

use super::run_states::{Owner, end_attempt, move_job, next_attempt, settle};
use super::{Db, DbError, corrupt, to_u32};
use crate::clock::now_rfc3339;

/// A new judge run: who, on what, with what.
#[derive(Debug, Clone)]
pub struct NewJudgeRun {
    pub project_id: i64,
    pub task_id: i64,
    pub model: String,
    pub adapter: Option<String>,
    pub settings: EvalSettings,
    pub prompt: JudgePrompt,
    pub judge_key: String,
    pub created_by: i64,
    pub priority: Priority,
    /// Each item's question (`problem_id` = item id), in the order the job asks them.
    pub questions: Vec<JobQuestion>,
    /// The audit line's JSON.
    pub audit: String,
}

/// A judge run as stored.
#[derive(Debug, Clone)]
pub struct JudgeRunRow {
    pub summary: JudgeRunSummary,
    pub project_id: i64,
    pub settings: EvalSettings,
    pub template: String,
}

/// One stored judge grade.
#[derive(Debug, Clone)]
pub struct JudgeGradeRow {
    pub item_id: i64,
    pub verdict: Option<Verdict>,
    pub rationale: Option<u8>,
    pub flags: Vec<Flag>,
    pub raw_output: String,
    pub error: Option<String>,
}

/// The most judge runs of one task listed (each is measured against the humans per request).
pub const MAX_LISTED_JUDGE_RUNS: usize = 20;

const RUN_SELECT: &str = "SELECT j.id, j.project_id, j.task_id, j.model, j.adapter, j.settings, \
     j.prompt_name, j.prompt_version, j.prompt_hash, j.template, j.judge_key, j.status, \
     j.worker, j.model_info, j.prompt_id, j.error, j.created_at, j.finished_at, \
     u.username AS created_by_name, \
     (SELECT COUNT(*) FROM grading_items i WHERE i.task_id = j.task_id) AS items, \
     (SELECT COUNT(*) FROM judge_grades g WHERE g.judge_run_id = j.id) AS graded \
     FROM judge_runs j JOIN users u ON u.id = j.created_by";

fn run_from_row(r: &sqlx::any::AnyRow) -> Result<JudgeRunRow, DbError> {
    let settings_text: String = r.try_get("settings")?;
    let settings: EvalSettings =
        serde_json::from_str(&settings_text).map_err(|e| corrupt("judge_runs", "settings", e))?;
    let status_text: String = r.try_get("status")?;
    let status = RunStatus::parse(&status_text)
        .ok_or_else(|| corrupt("judge_runs", "status", &status_text))?;
    let prompt_id: Option<String> = r.try_get("prompt_id")?;
    Ok(JudgeRunRow {
        summary: JudgeRunSummary {
            id: r.try_get("id")?,
            task_id: r.try_get("task_id")?,
            model: r.try_get("model")?,
            adapter: r.try_get("adapter")?,
            prompt: r.try_get("prompt_name")?,
            prompt_version: to_u32(r.try_get("prompt_version")?),
            prompt_hash: r.try_get("prompt_hash")?,
            scoring: settings.scoring.as_str().to_owned(),
            prompt_format: prompt_id.unwrap_or_else(|| settings.prompt_id(None)),
            judge_key: r.try_get("judge_key")?,
            status,
            error: r.try_get("error")?,
            items: to_u32(r.try_get("items")?),
            graded: to_u32(r.try_get("graded")?),
            worker: r.try_get("worker")?,
            model_info: r.try_get("model_info")?,
            created_by: r.try_get("created_by_name")?,
            created_at: r.try_get("created_at")?,
            finished_at: r.try_get("finished_at")?,
            cost: Default::default(),
        },
        project_id: r.try_get("project_id")?,
        settings,
        template: r.try_get("template")?,
    })
}

impl Db {
    /// A project's stored judge prompts, every version, by name then version.
    pub async fn judge_prompts(&self, project: i64) -> Result<Vec<JudgePrompt>, DbError> {
        let rows = sqlx::query(
            "SELECT p.name, p.version, p.hash, p.template, p.created_at, u.username \
             FROM judge_prompts p JOIN users u ON u.id = p.created_by \
             WHERE p.project_id = $1 ORDER BY p.name, p.version",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(JudgePrompt {
                    name: r.try_get("name")?,
                    version: to_u32(r.try_get("version")?),
                    hash: r.try_get("hash")?,
                    template: r.try_get("template")?,
                    builtin: false,
                    created_by: r.try_get("username")?,
                    created_at: r.try_get("created_at")?,
                })
            })
            .collect()
    }

    /// How many judge prompt versions `project` keeps, and how many of them are `name`'s.
    pub async fn judge_prompt_counts(
        &self,
        project: i64,
        name: &str,
    ) -> Result<(u64, u64), DbError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS total, \
             (SELECT COUNT(*) FROM judge_prompts WHERE project_id = $1 AND name = $2) AS named \
             FROM judge_prompts WHERE project_id = $1",
        )
        .bind(project)
        .bind(name)
        .fetch_one(&self.pool)
        .await?;
        let n = |c: &str| -> Result<u64, DbError> {
            Ok(u64::try_from(row.try_get::<i64, _>(c)?).unwrap_or(0))
        };
        Ok((n("total")?, n("named")?))
    }

    /// Stores a new version of a project's judge prompt `name`; its version. The template is
    /// checked by the caller.
    pub async fn add_judge_prompt(
        &self,
        project: i64,
        name: &str,
        template: &str,
        hash: &str,
        user: i64,
    ) -> Result<u32, DbError> {
        let mut tx = self.begin_write().await?;
        let latest: i64 = sqlx::query(
            "SELECT COALESCE(MAX(version), 0) AS v FROM judge_prompts \
             WHERE project_id = $1 AND name = $2",
        )
        .bind(project)
        .bind(name)
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
        let version = latest + 1;
        sqlx::query(
            "INSERT INTO judge_prompts (project_id, name, version, template, hash, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(project)
        .bind(name)
        .bind(version)
        .bind(template)
        .bind(hash)
        .bind(user)
        .bind(now_rfc3339())
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(to_u32(version))
    }

    /// Records a judge run as queued with its job and an audit line on its task, in one
    /// transaction; the job to publish.
    pub async fn create_judge_run(&self, new: &NewJudgeRun) -> Result<JudgeJob, DbError> {
        let now = now_rfc3339();
        let settings = serde_json::to_string(&new.settings)
            .map_err(|e| DbError::Refused(format!("judge settings: {e}")))?;
        let mut tx = self.begin_write().await?;
        let judge_run_id: i64 = sqlx::query(
            "INSERT INTO judge_runs (project_id, task_id, model, adapter, settings, prompt_name, \
             prompt_version, prompt_hash, template, judge_key, status, created_by, created_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, 'queued', $11, $12) RETURNING id",
        )
        .bind(new.project_id)
        .bind(new.task_id)
        .bind(&new.model)
        .bind(new.adapter.as_deref())
        .bind(&settings)
        .bind(&new.prompt.name)
        .bind(i64::from(new.prompt.version))
        .bind(&new.prompt.hash)
        .bind(&new.prompt.template)
        .bind(&new.judge_key)
        .bind(new.created_by)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        let job_id: i64 = sqlx::query(
            "INSERT INTO jobs (judge_run_id, kind, status, created_at, updated_at) \
             VALUES ($1, 'judge', 'queued', $2, $2) RETURNING id",
        )
        .bind(judge_run_id)
        .bind(&now)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor_id, action, task_id, item_id, before_value, after_value) \
             VALUES ($1, $2, 'judge_launched', $3, NULL, NULL, $4)",
        )
        .bind(&now)
        .bind(new.created_by)
        .bind(new.task_id)
        .bind(&new.audit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(JudgeJob {
            job_id,
            judge_run_id,
            attempt: 1,
            model: new.model.clone(),
            adapter: new.adapter.clone(),
            settings: new.settings.clone(),
            questions: new.questions.clone(),
            priority: new.priority,
            needs: Default::default(),
        })
    }

    /// One judge run.
    pub async fn judge_run(&self, id: i64) -> Result<Option<JudgeRunRow>, DbError> {
        let row = sqlx::query(&format!("{RUN_SELECT} WHERE j.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(run_from_row).transpose()
    }

    /// A task's judge runs, newest first: the latest [`MAX_LISTED_JUDGE_RUNS`].
    pub async fn judge_runs_of_task(&self, task: i64) -> Result<Vec<JudgeRunRow>, DbError> {
        let rows = sqlx::query(&format!(
            "{RUN_SELECT} WHERE j.task_id = $1 ORDER BY j.id DESC LIMIT {MAX_LISTED_JUDGE_RUNS}"
        ))
        .bind(task)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(run_from_row).collect()
    }

    /// The latest succeeded run of judge `judge_key` on one of `project`'s calibration tasks of
    /// exam set `exam_set_id`: (judge run, task).
    pub async fn calibration_run(
        &self,
        project: i64,
        judge_key: &str,
        exam_set_id: i64,
    ) -> Result<Option<(i64, i64)>, DbError> {
        let row = sqlx::query(
            "SELECT j.id, j.task_id FROM judge_runs j \
             JOIN judge_calibration_tasks c ON c.task_id = j.task_id \
             JOIN grading_tasks t ON t.id = j.task_id \
             WHERE j.project_id = $1 AND c.project_id = $1 AND j.judge_key = $2 \
               AND t.exam_set_id = $3 AND j.status = 'succeeded' \
             ORDER BY j.id DESC LIMIT 1",
        )
        .bind(project)
        .bind(judge_key)
        .bind(exam_set_id)
        .fetch_optional(&self.pool)
        .await?;
        row.map(|r| Ok::<_, DbError>((r.try_get("id")?, r.try_get("task_id")?)))
            .transpose()
    }

    /// A judge run's grades by item.
    pub async fn judge_grades(&self, run: i64) -> Result<HashMap<i64, JudgeGradeRow>, DbError> {
        let rows = sqlx::query(
            "SELECT item_id, verdict, rationale, flags, raw_output, error FROM judge_grades \
             WHERE judge_run_id = $1",
        )
        .bind(run)
        .fetch_all(&self.pool)
        .await?;
        let mut out = HashMap::with_capacity(rows.len());
        for r in &rows {
            let verdict: Option<String> = r.try_get("verdict")?;
            let verdict = verdict
                .map(|v| Verdict::from_id(&v).ok_or_else(|| corrupt("judge_grades", "verdict", v)))
                .transpose()?;
            let flags: String = r.try_get("flags")?;
            let flags: Vec<Flag> = flags.split(',').filter_map(Flag::from_id).collect();
            let rationale: Option<i64> = r.try_get("rationale")?;
            let row = JudgeGradeRow {
                item_id: r.try_get("item_id")?,
                verdict,
                rationale: rationale.and_then(|n| u8::try_from(n).ok()),
                flags,
                raw_output: r.try_get("raw_output")?,
                error: r.try_get("error")?,
            };
            out.insert(row.item_id, row);
        }
        Ok(out)
    }

    /// Stores the judge's grade of one item from its answer; `false` when the item is not its
    /// task's (ignored). A grade already stored stays as it is (append-only: a repeated event
    /// changes nothing).
    pub async fn record_judge_grade(
        &self,
        judge_run_id: i64,
        record: &AnswerRecord,
    ) -> Result<bool, DbError> {
        let Some(item_id) = crate::auth::parse_key(&record.problem_id) else {
            return Ok(false);
        };
        let verdict = kokushi_shared::judge::verdict_of(&record.extracted);
        let (rationale, flags) = if record.generated || record.choice_logprobs.is_none() {
            (
                kokushi_shared::judge::rationale_of(&record.raw_output),
                kokushi_shared::judge::flags_of(&record.raw_output),
            )
        } else {
            (None, Vec::new())
        };
        let flags = flags.iter().map(|f| f.id()).collect::<Vec<_>>().join(",");
        let written = sqlx::query(
            "INSERT INTO judge_grades (judge_run_id, item_id, verdict, rationale, flags, \
             raw_output, error, prompt_tokens, generated_tokens, latency_ms, created_at) \
             SELECT $1, i.id, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM grading_items i \
             JOIN judge_runs j ON j.task_id = i.task_id \
             WHERE j.id = $1 AND i.id = $2 \
             ON CONFLICT (judge_run_id, item_id) DO NOTHING",
        )
        .bind(judge_run_id)
        .bind(item_id)
        .bind(verdict.map(Verdict::id))
        .bind(rationale.map(i64::from))
        .bind(flags)
        .bind(&record.raw_output)
        .bind(record.error.as_deref())
        .bind(i64::from(record.prompt_tokens))
        .bind(i64::from(record.generated_tokens))
        .bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
        .bind(now_rfc3339())
        .execute(&self.pool)
        .await?
        .rows_affected();
        if written > 0 {
            return Ok(true);
        }
        // Already stored, or not an item of the run's task.
        let exists = sqlx::query(
            "SELECT 1 AS x FROM judge_runs j JOIN grading_items i ON i.task_id = j.task_id \
             WHERE j.id = $1 AND i.id = $2",
        )
        .bind(judge_run_id)
        .bind(item_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(exists.is_some())
    }

    /// A worker took attempt `attempt` of the judge run's job.
    pub async fn mark_judge_running(
        &self,
        judge_run_id: i64,
        attempt: u32,
        worker: &str,
        model_info: &str,
        prompt_id: Option<&str>,
    ) -> Result<(), DbError> {
        self.start_attempt(Owner::Judge(judge_run_id), attempt, worker, model_info)
            .await?;
        if let Some(prompt_id) = prompt_id {
            sqlx::query("UPDATE judge_runs SET prompt_id = $2 WHERE id = $1")
                .bind(judge_run_id)
                .bind(prompt_id)
                .execute(&self.pool)
                .await?;
        }
        Ok(())
    }

    /// Items of the run's task the judge has not graded, in item order.
    pub async fn judge_items_missing(&self, judge_run_id: i64) -> Result<Vec<i64>, DbError> {
        let rows = sqlx::query(
            "SELECT i.id FROM grading_items i JOIN judge_runs j ON j.task_id = i.task_id \
             WHERE j.id = $1 AND NOT EXISTS (SELECT 1 FROM judge_grades g \
               WHERE g.judge_run_id = j.id AND g.item_id = i.id) ORDER BY i.id",
        )
        .bind(judge_run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>("id")?))
            .collect()
    }

    /// Attempt `attempt` of the judge run's job finished (`error` `None`: every item graded,
    /// else `Ok(false)` and nothing changed) or was given up (`error` set), with an audit line
    /// on the task.
    pub async fn finish_judge_run(
        &self,
        judge_run_id: i64,
        attempt: u32,
        error: Option<&str>,
    ) -> Result<bool, DbError> {
        if error.is_none() && !self.judge_items_missing(judge_run_id).await?.is_empty() {
            return Ok(false);
        }
        let status = if error.is_some() {
            RunStatus::Failed
        } else {
            RunStatus::Succeeded
        };
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let done = end_attempt(
            &mut tx,
            Owner::Judge(judge_run_id),
            attempt,
            status.as_str(),
            error,
            &now,
        )
        .await?;
        if done {
            let after = serde_json::json!({ "judge_run": judge_run_id, "status": status.as_str(), "error": error });
            sqlx::query(
                "INSERT INTO audit_log (at, actor_id, action, task_id, item_id, before_value, after_value) \
                 SELECT $1, j.created_by, 'judge_finished', j.task_id, NULL, NULL, $2 \
                 FROM judge_runs j WHERE j.id = $3",
            )
            .bind(&now)
            .bind(after.to_string())
            .bind(judge_run_id)
            .execute(&mut *tx)
            .await?;
        }
        settle(tx, done).await?;
        Ok(true)
    }

    /// Cancels a queued or running judge run (its grades stay); the job and attempt to stop,
    /// `Ok(None)` when it had finished already.
    pub async fn cancel_judge_run(&self, judge_run_id: i64) -> Result<Option<(i64, u32)>, DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE judge_runs SET status = 'cancelled', finished_at = $2 \
             WHERE id = $1 AND status IN ('queued', 'running')",
        )
        .bind(judge_run_id)
        .bind(&now)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed == 0 {
            tx.rollback().await?;
            return Ok(None);
        }
        move_job(&mut tx, Owner::Judge(judge_run_id), None, "cancelled", &now).await?;
        let job = sqlx::query("SELECT id, attempt FROM jobs WHERE judge_run_id = $1")
            .bind(judge_run_id)
            .fetch_one(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(Some((job.try_get("id")?, to_u32(job.try_get("attempt")?))))
    }

    /// Puts a failed or cancelled judge run back in the queue as its job's next attempt;
    /// `false` when it was in no state to.
    pub async fn retry_judge_run(&self, judge_run_id: i64) -> Result<bool, DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let changed = sqlx::query(
            "UPDATE judge_runs SET status = 'queued', error = NULL, finished_at = NULL, \
             worker = NULL WHERE id = $1 AND status IN ('failed', 'cancelled')",
        )
        .bind(judge_run_id)
        .execute(&mut *tx)
        .await?
        .rows_affected();
        if changed > 0 {
            next_attempt(&mut tx, Owner::Judge(judge_run_id), &now).await?;
        }
        settle(tx, changed > 0).await?;
        Ok(changed > 0)
    }

    /// The job of a judge run and its attempt, if it has one.
    pub async fn judge_job_attempt(
        &self,
        judge_run_id: i64,
    ) -> Result<Option<(i64, u32)>, DbError> {
        let row = sqlx::query("SELECT id, attempt FROM jobs WHERE judge_run_id = $1")
            .bind(judge_run_id)
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok::<_, DbError>((r.try_get("id")?, to_u32(r.try_get("attempt")?))))
            .transpose()
    }

    /// Judge runs queued or running: the reconciler publishes their jobs again.
    pub async fn unfinished_judge_runs(&self) -> Result<Vec<i64>, DbError> {
        let rows = sqlx::query(
            "SELECT id FROM judge_runs WHERE status IN ('queued', 'running') ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok(r.try_get::<i64, _>("id")?))
            .collect()
    }

    /// A project's judging settings.
    pub async fn judging_settings(&self, project: i64) -> Result<JudgingSettings, DbError> {
        let threshold: f64 = sqlx::query("SELECT judge_threshold FROM projects WHERE id = $1")
            .bind(project)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| r.try_get("judge_threshold"))
            .transpose()?
            .unwrap_or(kokushi_shared::judge::DEFAULT_THRESHOLD);
        let rows = sqlx::query(
            "SELECT task_id FROM judge_calibration_tasks WHERE project_id = $1 ORDER BY task_id",
        )
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        Ok(JudgingSettings {
            threshold,
            calibration_tasks: rows
                .iter()
                .map(|r| r.try_get::<i64, _>("task_id"))
                .collect::<Result<_, _>>()?,
        })
    }

    /// Sets a project's judging settings (the tasks are checked by the caller to be the
    /// project's own), in one transaction.
    pub async fn set_judging_settings(
        &self,
        project: i64,
        settings: &JudgingSettings,
        user: i64,
    ) -> Result<(), DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE projects SET judge_threshold = $2 WHERE id = $1")
            .bind(project)
            .bind(settings.threshold)
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM judge_calibration_tasks WHERE project_id = $1")
            .bind(project)
            .execute(&mut *tx)
            .await?;
        for task in &settings.calibration_tasks {
            sqlx::query(
                "INSERT INTO judge_calibration_tasks (task_id, project_id, added_by, added_at) \
                 VALUES ($1, $2, $3, $4)",
            )
            .bind(task)
            .bind(project)
            .bind(user)
            .bind(&now)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }
}

impl Db {
    /// Who launched a judge run (`None`: no such run).
    pub async fn judge_run_creator(&self, id: i64) -> Result<Option<i64>, DbError> {
        let row = sqlx::query("SELECT created_by FROM judge_runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        Ok(row.map(|r| r.try_get("created_by")).transpose()?)
    }
}
