//! Exam sets and their questions.

use kokushi_shared::Question;
use kokushi_shared::api::ExamSetSummary;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Db, DbError, corrupt, flag, to_u32};
use crate::clock::now_rfc3339;

/// An exam set with its question counts; read by [`summary_from_row`].
const SUMMARY_SELECT: &str = "SELECT e.id, e.name, e.content_hash, e.created_at, \
     (SELECT COUNT(*) FROM questions q WHERE q.exam_set_id = e.id) AS n, \
     (SELECT COUNT(*) FROM questions q WHERE q.exam_set_id = e.id AND q.text_only = 1) AS t, \
     (SELECT COUNT(*) FROM exam_sets v WHERE v.name = e.name AND v.id <= e.id) AS version \
     FROM exam_sets e";

/// SHA-256 of the questions' canonical JSON: identical content has the same hash whatever
/// the file's layout.
pub fn content_hash(questions: &[Question]) -> String {
    let mut hasher = Sha256::new();
    for q in questions {
        hasher.update(serde_json::to_vec(q).unwrap_or_default());
        hasher.update(b"\n");
    }
    hasher
        .finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

impl Db {
    /// Stores an exam set in one transaction; identical content under the same name is
    /// recognised and not stored twice. Returns the set and whether it was created.
    pub async fn insert_exam_set(
        &self,
        name: &str,
        questions: &[Question],
    ) -> Result<(ExamSetSummary, bool), DbError> {
        let hash = content_hash(questions);
        let mut tx = self.begin_write().await?;
        let existing =
            sqlx::query("SELECT id FROM exam_sets WHERE name = $1 AND content_hash = $2")
                .bind(name)
                .bind(&hash)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(row) = existing {
            tx.rollback().await?;
            let id: i64 = row.try_get("id")?;
            let summary = self
                .exam_set(id)
                .await?
                .ok_or_else(|| corrupt("exam_sets", "id", format!("exam set {id} vanished")))?;
            return Ok((summary, false));
        }
        let id: i64 = sqlx::query(
            "INSERT INTO exam_sets (name, content_hash, created_at) VALUES ($1, $2, $3) RETURNING id",
        )
        .bind(name)
        .bind(&hash)
        .bind(now_rfc3339())
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for (position, q) in questions.iter().enumerate() {
            let body = serde_json::to_string(q).map_err(|e| corrupt("questions", "body", e))?;
            sqlx::query(
                "INSERT INTO questions (exam_set_id, position, problem_id, text_only, points, body) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&q.problem_id)
            .bind(flag(q.text_only))
            .bind(i64::from(q.points))
            .bind(body)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        let summary = self
            .exam_set(id)
            .await?
            .ok_or_else(|| corrupt("exam_sets", "id", format!("exam set {id} vanished")))?;
        Ok((summary, true))
    }

    /// Every exam set, newest first.
    pub async fn exam_sets(&self) -> Result<Vec<ExamSetSummary>, DbError> {
        let rows = sqlx::query(&format!("{SUMMARY_SELECT} ORDER BY e.id DESC"))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(summary_from_row).collect()
    }

    pub async fn exam_set(&self, id: i64) -> Result<Option<ExamSetSummary>, DbError> {
        let row = sqlx::query(&format!("{SUMMARY_SELECT} WHERE e.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    /// The newest exam set of this name.
    pub async fn exam_set_by_name(&self, name: &str) -> Result<Option<ExamSetSummary>, DbError> {
        let id: Option<i64> =
            sqlx::query("SELECT id FROM exam_sets WHERE name = $1 ORDER BY id DESC LIMIT 1")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get("id"))
                .transpose()?;
        match id {
            Some(id) => self.exam_set(id).await,
            None => Ok(None),
        }
    }
}

fn summary_from_row(row: &sqlx::any::AnyRow) -> Result<ExamSetSummary, DbError> {
    Ok(ExamSetSummary {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        content_hash: row.try_get("content_hash")?,
        question_count: to_u32(row.try_get("n")?),
        text_only_count: to_u32(row.try_get("t")?),
        version: to_u32(row.try_get("version")?),
        created_at: row.try_get("created_at")?,
    })
}

pub(super) fn question_from_body(body: &str) -> Result<Question, DbError> {
    serde_json::from_str(body).map_err(|e| corrupt("questions", "body", e))
}
