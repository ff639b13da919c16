//! A job's cost as stored on its row of `jobs`: the estimate made as it was queued, and the
//! work its worker measured (summed over the attempts that reported one, each counted once),
//! and the latest measured jobs of a model, which the next estimate's speed is read from.

use kokushi_shared::cost::{Cost, Estimate};
use kokushi_shared::job::Work;
use sqlx::Row;

use super::{Db, DbError, corrupt};

/// Whose job a cost is asked of.
#[derive(Debug, Clone, Copy)]
pub enum CostOf {
    Run(i64),
    Judge(i64),
}

impl Db {
    /// Keeps the estimate made as job `job_id` was queued.
    pub async fn set_job_estimate(&self, job_id: i64, estimate: &Estimate) -> Result<(), DbError> {
        let text = serde_json::to_string(estimate).map_err(|e| corrupt("jobs", "estimate", e))?;
        sqlx::query("UPDATE jobs SET estimate = $2 WHERE id = $1")
            .bind(job_id)
            .bind(text)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Adds what attempt `attempt` of job `job_id` took to what earlier attempts did; an
    /// attempt already counted (a repeated event) changes nothing.
    pub async fn record_work(&self, job_id: i64, attempt: u32, work: &Work) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        let Some(row) = sqlx::query("SELECT work, work_attempt FROM jobs WHERE id = $1")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?
        else {
            tx.rollback().await?;
            return Ok(());
        };
        let counted: Option<i64> = row.try_get("work_attempt")?;
        if counted.is_some_and(|a| a >= i64::from(attempt)) {
            tx.rollback().await?;
            return Ok(());
        }
        let mut total = match row.try_get::<Option<String>, _>("work")? {
            Some(text) => {
                serde_json::from_str::<Work>(&text).map_err(|e| corrupt("jobs", "work", e))?
            }
            None => Work::default(),
        };
        total.add(work);
        let text = serde_json::to_string(&total).map_err(|e| corrupt("jobs", "work", e))?;
        sqlx::query("UPDATE jobs SET work = $2, work_attempt = $3 WHERE id = $1")
            .bind(job_id)
            .bind(text)
            .bind(i64::from(attempt))
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The work of the latest `limit` succeeded jobs (runs and judge runs) of `project` with
    /// `model` and `adapter`, newest first.
    pub async fn measured_works(
        &self,
        project: i64,
        model: &str,
        adapter: Option<&str>,
        limit: usize,
    ) -> Result<Vec<Work>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT j.work FROM jobs j \
             LEFT JOIN runs r ON r.id = j.run_id \
             LEFT JOIN judge_runs jr ON jr.id = j.judge_run_id \
             WHERE j.work IS NOT NULL AND j.status = 'succeeded' \
               AND COALESCE(r.model, jr.model) = $1 \
               AND COALESCE(r.adapter, jr.adapter, '') = $2 \
               AND COALESCE(r.project_id, jr.project_id) = $3 \
             ORDER BY j.id DESC LIMIT {limit}"
        ))
        .bind(model)
        .bind(adapter.unwrap_or(""))
        .bind(project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let text: String = r.try_get("work")?;
                serde_json::from_str(&text).map_err(|e| corrupt("jobs", "work", e))
            })
            .collect()
    }

    /// The cost of a run's or judge run's job: its estimate and its measured work.
    pub async fn job_cost(&self, of: CostOf) -> Result<Cost, DbError> {
        let (column, id) = match of {
            CostOf::Run(id) => ("run_id", id),
            CostOf::Judge(id) => ("judge_run_id", id),
        };
        let Some(row) = sqlx::query(&format!(
            "SELECT estimate, work FROM jobs WHERE {column} = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(Cost::default());
        };
        let estimate = row
            .try_get::<Option<String>, _>("estimate")?
            .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("jobs", "estimate", e)))
            .transpose()?;
        let work = row
            .try_get::<Option<String>, _>("work")?
            .map(|t| serde_json::from_str(&t).map_err(|e| corrupt("jobs", "work", e)))
            .transpose()?;
        Ok(Cost { estimate, work })
    }
}
