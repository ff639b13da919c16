//! Grades and adjudications, versioned: every save appends the next version with its audit
//! line in one transaction, and only if the form was filled from the current version
//! (otherwise [`Stale`]); nothing updates or deletes one. Also the reads of what was saved:
//! an assignment's current grade, the audit log, a task's grade history, and the answers
//! graders flagged as having a wrong gold answer.

use kokushi_shared::grading::{AuditEntry, Flag, GoldFlag, Grade, GradeInput};
use sqlx::Row;

use super::{AssignmentRow, GRADE_COLUMNS, ItemRow, grade_from_row};
use crate::clock::now_rfc3339;
use crate::db::exam_sets::question_from_body;
use crate::db::{Db, DbError, corrupt};

/// Why a versioned save did not happen: someone saved since (the current version).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Stale(pub u32);

fn flags_text(flags: &[Flag]) -> String {
    let mut ids: Vec<&str> = flags.iter().map(|f| f.id()).collect();
    ids.sort_unstable();
    ids.dedup();
    ids.join(",")
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.is_unique_violation())
}

impl Db {
    /// The current version of an assignment's grade.
    pub async fn current_grade(&self, assignment: i64) -> Result<Option<Grade>, DbError> {
        sqlx::query(&format!(
            "SELECT {GRADE_COLUMNS} FROM grades g JOIN users u ON u.id = g.created_by \
             WHERE g.assignment_id = $1 ORDER BY g.version DESC LIMIT 1"
        ))
        .bind(assignment)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| grade_from_row(&r, "grades"))
        .transpose()
    }

    /// Appends version `expected + 1` of an assignment's grade and its audit line, unless the
    /// current version is not `expected` (then nothing is written).
    pub async fn save_grade(
        &self,
        assignment: &AssignmentRow,
        actor: i64,
        input: &GradeInput,
    ) -> Result<Result<Grade, Stale>, DbError> {
        self.append_version(
            Versioned::Grade,
            assignment.id,
            (assignment.task_id, assignment.item_id),
            (actor, &assignment.annotator),
            input,
        )
        .await
    }

    /// Appends version `expected + 1` of an item's adjudication and its audit line, unless
    /// the current version is not `expected`.
    pub async fn adjudicate(
        &self,
        item: &ItemRow,
        actor: i64,
        actor_name: &str,
        input: &GradeInput,
    ) -> Result<Result<Grade, Stale>, DbError> {
        self.append_version(
            Versioned::Adjudication,
            item.id,
            (item.task_id, item.id),
            (actor, actor_name),
            input,
        )
        .await
    }

    /// The one way a grade or an adjudication is written: in one transaction, read the current
    /// version; unless it is the one the form was filled from, write nothing; else append the
    /// next version and the audit line (before → after). A concurrent append of the same
    /// version (PostgreSQL, read committed) fails the primary key and is reported as stale too.
    async fn append_version(
        &self,
        what: Versioned,
        key: i64,
        (task, item): (i64, i64),
        (actor, by): (i64, &str),
        input: &GradeInput,
    ) -> Result<Result<Grade, Stale>, DbError> {
        let (table, key_column) = what.table();
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let before = sqlx::query(&format!(
            "SELECT {GRADE_COLUMNS} FROM {table} g JOIN users u ON u.id = g.created_by \
             WHERE g.{key_column} = $1 ORDER BY g.version DESC LIMIT 1"
        ))
        .bind(key)
        .fetch_optional(&mut *tx)
        .await?
        .map(|r| grade_from_row(&r, table))
        .transpose()?;
        let current = before.as_ref().map_or(0, |g| g.version);
        if current != input.expected_version {
            tx.rollback().await?;
            return Ok(Err(Stale(current)));
        }
        let version = current + 1;
        let inserted = sqlx::query(&format!(
            "INSERT INTO {table} ({key_column}, version, verdict, letters, rationale, flags, \
             comment, created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
        ))
        .bind(key)
        .bind(i64::from(version))
        .bind(input.verdict.id())
        .bind(&input.letters)
        .bind(input.rationale.map(i64::from))
        .bind(flags_text(&input.flags))
        .bind(&input.comment)
        .bind(actor)
        .bind(&now)
        .execute(&mut *tx)
        .await;
        match inserted {
            Err(e) if is_unique_violation(&e) => return Ok(Err(Stale(version))),
            other => {
                other?;
            }
        }
        // The run's stored human decisions are behind now (see `db::human`).
        sqlx::query(
            "UPDATE runs SET grading_version = grading_version + 1 \
             WHERE id = (SELECT run_id FROM grading_items WHERE id = $1)",
        )
        .bind(item)
        .execute(&mut *tx)
        .await?;
        let after = Grade {
            version,
            verdict: input.verdict,
            letters: input.letters.clone(),
            rationale: input.rationale,
            flags: input.flags.clone(),
            comment: input.comment.clone(),
            by: by.to_owned(),
            at: now.clone(),
        };
        let json = |g: &Grade| {
            serde_json::to_string(g).map_err(|e| corrupt("audit_log", "after_value", e))
        };
        sqlx::query(
            "INSERT INTO audit_log (at, actor_id, action, task_id, item_id, before_value, after_value) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&now)
        .bind(actor)
        .bind(what.action(version))
        .bind(task)
        .bind(item)
        .bind(before.as_ref().map(json).transpose()?)
        .bind(json(&after)?)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(Ok(after))
    }

    /// The audit log, oldest first: of one task, of one item, or all.
    pub async fn audit_log(
        &self,
        project: Option<i64>,
        task: Option<i64>,
        item: Option<i64>,
        page: Option<crate::page::Page>,
    ) -> Result<Vec<AuditEntry>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT l.id, l.at, u.username, l.action, l.task_id, l.item_id, l.before_value, \
                    l.after_value FROM audit_log l JOIN users u ON u.id = l.actor_id \
             WHERE (l.task_id = $1 OR $1 = -1) AND (l.item_id = $2 OR $2 = -1) \
               AND ($3 = -1 OR l.task_id IN (SELECT t.id FROM grading_tasks t \
                                            WHERE t.project_id = $3)) ORDER BY l.id {}",
            page.map(|p| p.sql()).unwrap_or_default()
        ))
        .bind(task.unwrap_or(-1))
        .bind(item.unwrap_or(-1))
        .bind(project.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(AuditEntry {
                    id: r.try_get("id")?,
                    at: r.try_get("at")?,
                    actor: r.try_get("username")?,
                    action: r.try_get("action")?,
                    task_id: r.try_get("task_id")?,
                    item_id: r.try_get("item_id")?,
                    before: r.try_get("before_value")?,
                    after: r.try_get("after_value")?,
                })
            })
            .collect()
    }

    /// Every version of every grade of a task, oldest first: (item id, run id, problem id,
    /// annotator, grade).
    pub async fn grade_history(
        &self,
        task: i64,
    ) -> Result<Vec<(i64, i64, String, String, Grade)>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT i.id AS item_id, i.run_id, i.problem_id, a.username AS annotator, {GRADE_COLUMNS} \
             FROM grades g JOIN grading_assignments x ON x.id = g.assignment_id \
             JOIN grading_items i ON i.id = x.item_id JOIN users a ON a.id = x.annotator_id \
             JOIN users u ON u.id = g.created_by WHERE x.task_id = $1 \
             ORDER BY i.id, a.username, g.version"
        ))
        .bind(task)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok((
                    r.try_get("item_id")?,
                    r.try_get("run_id")?,
                    r.try_get("problem_id")?,
                    r.try_get("annotator")?,
                    grade_from_row(r, "grades")?,
                ))
            })
            .collect()
    }

    /// Items whose current grades say "gold looks wrong", per exam set question, for the
    /// exam sets `owner` uploaded (or every exam set for `None`; sets uploaded before
    /// owners were recorded count as everyone's).
    pub async fn gold_flags(
        &self,
        scope: &crate::db::projects::Scope,
        owner: Option<i64>,
    ) -> Result<Vec<GoldFlag>, DbError> {
        let rows = sqlx::query(
            "SELECT e.name AS exam_set, q.body, i.problem_id, x.annotator_id, g.comment \
             FROM grades g JOIN grading_assignments x ON x.id = g.assignment_id \
             JOIN grading_items i ON i.id = x.item_id JOIN grading_tasks t ON t.id = i.task_id \
             JOIN exam_sets e ON e.id = t.exam_set_id \
             JOIN questions q ON q.exam_set_id = e.id AND q.problem_id = i.problem_id \
             WHERE g.version = (SELECT MAX(g2.version) FROM grades g2 WHERE g2.assignment_id = g.assignment_id) \
             AND g.flags LIKE '%gold_wrong%' \
             AND ($1 = -1 OR e.uploaded_by = $1 OR e.uploaded_by IS NULL) \
             AND t.project_id = $2 \
             ORDER BY e.name, i.problem_id",
        )
        .bind(owner.unwrap_or(-1))
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?;
        let mut out: Vec<GoldFlag> = Vec::new();
        // Per entry of `out`, the annotators counted: one who flagged it in two tasks counts once.
        let mut flaggers: Vec<Vec<i64>> = Vec::new();
        for r in rows {
            let exam_set: String = r.try_get("exam_set")?;
            let problem_id: String = r.try_get("problem_id")?;
            let annotator: i64 = r.try_get("annotator_id")?;
            let comment: String = r.try_get("comment")?;
            let at = match out
                .iter()
                .position(|f| f.exam_set == exam_set && f.problem_id == problem_id)
            {
                Some(at) => at,
                None => {
                    let q = question_from_body(&r.try_get::<String, _>("body")?)?;
                    out.push(GoldFlag {
                        exam_set,
                        problem_id,
                        gold: q.gold.display(),
                        flagged_by: 0,
                        comments: Vec::new(),
                    });
                    flaggers.push(Vec::new());
                    out.len() - 1
                }
            };
            if !flaggers[at].contains(&annotator) {
                flaggers[at].push(annotator);
                out[at].flagged_by += 1;
            }
            if !comment.trim().is_empty() {
                out[at].comments.push(comment);
            }
        }
        Ok(out)
    }
}

/// The two versioned records.
#[derive(Debug, Clone, Copy)]
enum Versioned {
    /// An annotator's grade of an assignment.
    Grade,
    /// A reviewer's decision on an item.
    Adjudication,
}

impl Versioned {
    /// The table and the column its versions are numbered under.
    fn table(self) -> (&'static str, &'static str) {
        match self {
            Versioned::Grade => ("grades", "assignment_id"),
            Versioned::Adjudication => ("adjudications", "item_id"),
        }
    }

    /// The audit log's action for saving `version`.
    fn action(self, version: u32) -> &'static str {
        match (self, version) {
            (Versioned::Grade, 1) => "graded",
            (Versioned::Grade, _) => "regraded",
            (Versioned::Adjudication, _) => "adjudicated",
        }
    }
}
