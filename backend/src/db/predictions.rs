//! A run's answers as the predictions file `kokushi eval` writes for the same model and
//! settings: the same [`PredictionLine`]s, built from the same [`AnswerRecord`]s the worker
//! sent, in the run's order.

use kokushi_shared::extract::Extracted;
use kokushi_shared::job::{AnswerRecord, PredictionLine};
use sqlx::Row;

use super::runs::{settings_of, stored_numbers};
use super::{Db, DbError, corrupt, to_u32};

impl Db {
    /// The run's predictions lines, or `None` when there is no such run.
    pub async fn run_prediction_lines(
        &self,
        run_id: i64,
    ) -> Result<Option<Vec<PredictionLine>>, DbError> {
        let Some(run) = sqlx::query(
            "SELECT prompt_format, max_new_tokens, scoring, eval_settings, prompt_id, adapter \
             FROM runs WHERE id = $1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let settings = settings_of(&run)?;
        let prompt_id = match run.try_get::<Option<String>, _>("prompt_id")? {
            Some(id) => id,
            None => settings.prompt_id(None),
        };
        let adapter: Option<String> = run.try_get("adapter")?;
        let rows = sqlx::query(
            "SELECT a.problem_id, a.raw_output, a.extracted, a.rules_version, a.prompt_tokens, \
                    a.generated_tokens, a.latency_ms, a.choice_logprobs, a.choice_logprob_means, \
                    a.generated, a.error \
             FROM run_questions rq JOIN answers a \
               ON a.run_id = rq.run_id AND a.problem_id = rq.problem_id \
             WHERE rq.run_id = $1 ORDER BY rq.position",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        let mut lines = Vec::with_capacity(rows.len());
        for row in rows {
            let extracted: String = row.try_get("extracted")?;
            let record = AnswerRecord {
                problem_id: row.try_get("problem_id")?,
                raw_output: row.try_get("raw_output")?,
                extracted: serde_json::from_str::<Extracted>(&extracted)
                    .map_err(|e| corrupt("answers", "extracted", e))?,
                rules_version: row.try_get("rules_version")?,
                prompt_tokens: to_u32(row.try_get("prompt_tokens")?),
                generated_tokens: to_u32(row.try_get("generated_tokens")?),
                latency_ms: u64::try_from(row.try_get::<i64, _>("latency_ms")?).unwrap_or(0),
                choice_logprobs: stored_numbers(&row, "choice_logprobs")?,
                choice_logprob_means: stored_numbers(&row, "choice_logprob_means")?,
                generated: row.try_get::<i64, _>("generated")? != 0,
                error: row.try_get("error")?,
            };
            lines.push(PredictionLine::new(
                &record,
                settings.scoring,
                &prompt_id,
                adapter.as_deref(),
            ));
        }
        Ok(Some(lines))
    }

    /// The prompt id a run's worker recorded (with a chat template, which one).
    pub async fn set_prompt_id(&self, run_id: i64, prompt_id: &str) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE runs SET prompt_id = $2 WHERE id = $1")
            .bind(run_id)
            .bind(prompt_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }
}
