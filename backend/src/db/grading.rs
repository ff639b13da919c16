//! Human grading's SQL: tasks, items, assignments, the answers and questions they grade, and
//! everything grading knows at once (`GradingState`). The versioned grades and adjudications
//! and the append-only audit log are in `grades`: every write that changes a grade appends a
//! grade version and an audit line in one transaction; nothing here updates or deletes a grade
//! (the migration's triggers would refuse it anyway).

mod grades;

use std::collections::{BTreeSet, HashMap};

use kokushi_shared::Question;
use kokushi_shared::extract::Extracted;
use kokushi_shared::grading::{Flag, Grade, Grader, Verdict};
use sqlx::Row;

use super::exam_sets::question_from_body;
use super::{Db, DbError, IN_CHUNK, corrupt, placeholders_from, to_u32};
use crate::clock::now_rfc3339;

pub use grades::Stale;

/// A task as stored.
#[derive(Debug, Clone)]
pub struct TaskRow {
    pub id: i64,
    pub name: String,
    pub exam_set_id: i64,
    pub exam_set: String,
    pub selection: String,
    pub sample_size: Option<i64>,
    pub seed: u64,
    pub overlap: i64,
    pub created_by: String,
    pub created_at: String,
}

/// One (run, question) to grade.
#[derive(Debug, Clone)]
pub struct ItemRow {
    pub id: i64,
    pub task_id: i64,
    pub run_id: i64,
    pub problem_id: String,
}

/// Who grades an item, and where it sits in their order.
#[derive(Debug, Clone)]
pub struct AssignmentRow {
    pub id: i64,
    /// The random handle its annotator knows it by.
    pub handle: i64,
    pub task_id: i64,
    pub item_id: i64,
    pub annotator_id: i64,
    pub annotator: String,
    pub position: i64,
}

/// Everything grading knows, for one task or for all: items, assignments, the current
/// (highest) version of every grade and adjudication.
#[derive(Debug, Default)]
pub struct GradingState {
    pub items: Vec<ItemRow>,
    pub assignments: Vec<AssignmentRow>,
    /// Current grade by assignment id.
    pub grades: HashMap<i64, Grade>,
    /// Current adjudication by item id.
    pub adjudications: HashMap<i64, Grade>,
}

/// A run's stored answer to one question.
#[derive(Debug, Clone)]
pub struct AnswerRow {
    pub problem_id: String,
    pub raw_output: String,
    pub extracted: Extracted,
    pub correct: bool,
    pub unparsed: bool,
}

/// One of an annotator's assignments, as their own lists show it.
#[derive(Debug, Clone)]
pub struct MyAssignment {
    pub task_id: i64,
    pub task_name: String,
    /// The assignment's random handle (never its row id).
    pub handle: i64,
    /// 1-based place in the annotator's order.
    pub position: u32,
    pub graded: bool,
}

/// A new task, items and assignments decided.
#[derive(Debug)]
pub struct NewTask<'a> {
    pub name: &'a str,
    pub exam_set_id: i64,
    pub selection: &'a str,
    pub sample_size: Option<u32>,
    pub seed: u64,
    pub overlap: u32,
    pub created_by: i64,
    /// The project it belongs to (its runs' project).
    pub project_id: i64,
    pub run_ids: &'a [i64],
    /// (run id, problem id) per item.
    pub items: &'a [(i64, String)],
    /// Per item: (annotator id, position in that annotator's order, random handle).
    pub assignments: &'a [Vec<(i64, u32, i64)>],
    /// The request as made, for the audit log.
    pub audit: String,
}

const GRADE_COLUMNS: &str = "g.version, g.verdict, g.letters, g.rationale, g.flags, g.comment, \
     u.username AS by_name, g.created_at";

fn grade_from_row(row: &sqlx::any::AnyRow, table: &'static str) -> Result<Grade, DbError> {
    let verdict: String = row.try_get("verdict")?;
    let flags: String = row.try_get("flags")?;
    Ok(Grade {
        version: to_u32(row.try_get("version")?),
        verdict: Verdict::from_id(&verdict).ok_or_else(|| corrupt(table, "verdict", &verdict))?,
        letters: row.try_get("letters")?,
        rationale: row
            .try_get::<Option<i64>, _>("rationale")?
            .and_then(|r| u8::try_from(r).ok()),
        flags: flags
            .split(',')
            .filter(|f| !f.is_empty())
            .map(|f| Flag::from_id(f).ok_or_else(|| corrupt(table, "flags", f)))
            .collect::<Result<_, _>>()?,
        comment: row.try_get("comment")?,
        by: row.try_get("by_name")?,
        at: row.try_get("created_at")?,
    })
}

fn task_from_row(row: &sqlx::any::AnyRow) -> Result<TaskRow, DbError> {
    Ok(TaskRow {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        exam_set_id: row.try_get("exam_set_id")?,
        exam_set: row.try_get("exam_set")?,
        selection: row.try_get("selection")?,
        sample_size: row.try_get("sample_size")?,
        // Stored as the same 64 bits, signed.
        seed: row.try_get::<i64, _>("seed")? as u64,
        overlap: row.try_get("overlap")?,
        created_by: row.try_get("created_by_name")?,
        created_at: row.try_get("created_at")?,
    })
}

const TASK_SELECT: &str = "SELECT t.id, t.name, t.exam_set_id, e.name AS exam_set, t.selection, \
     t.sample_size, t.seed, t.overlap, u.username AS created_by_name, t.created_at \
     FROM grading_tasks t JOIN exam_sets e ON e.id = t.exam_set_id \
     JOIN users u ON u.id = t.created_by";

impl Db {
    /// A project's active annotators, by name.
    pub async fn graders(&self, scope: &super::projects::Scope) -> Result<Vec<Grader>, DbError> {
        let rows = sqlx::query(
            "SELECT u.id, u.username FROM users u JOIN project_members m ON m.user_id = u.id \
             WHERE m.project_id = $1 AND m.role = 'annotator' AND u.disabled = 0 \
             ORDER BY u.username",
        )
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(Grader {
                    id: r.try_get("id")?,
                    username: r.try_get("username")?,
                })
            })
            .collect()
    }

    /// Every answer a run has, in the run's order.
    pub async fn run_answers(&self, run_id: i64) -> Result<Vec<AnswerRow>, DbError> {
        let rows = sqlx::query(
            "SELECT a.problem_id, a.raw_output, a.extracted, a.correct, a.unparsed \
             FROM answers a JOIN run_questions rq ON rq.run_id = a.run_id AND rq.problem_id = a.problem_id \
             WHERE a.run_id = $1 ORDER BY rq.position",
        )
        .bind(run_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(answer_from_row).collect()
    }

    /// One run's answer to one question, with the question; `None` when either is missing.
    pub async fn answer_with_question(
        &self,
        run_id: i64,
        problem_id: &str,
    ) -> Result<Option<(AnswerRow, Question)>, DbError> {
        let Some(row) = sqlx::query(
            "SELECT a.problem_id, a.raw_output, a.extracted, a.correct, a.unparsed, q.body, \
                    r.exam_set_id \
             FROM answers a JOIN runs r ON r.id = a.run_id \
             JOIN questions q ON q.exam_set_id = r.exam_set_id AND q.problem_id = a.problem_id \
             WHERE a.run_id = $1 AND a.problem_id = $2",
        )
        .bind(run_id)
        .bind(problem_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let question = question_from_body(&row.try_get::<String, _>("body")?)?;
        Ok(Some((answer_from_row(&row)?, question)))
    }

    /// Questions of an exam set by problem id (those asked for), one query per chunk of ids.
    pub async fn questions_by_id(
        &self,
        exam_set_id: i64,
        problem_ids: &[String],
    ) -> Result<HashMap<String, Question>, DbError> {
        let wanted: Vec<&String> = problem_ids
            .iter()
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let mut out = HashMap::new();
        for chunk in wanted.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT problem_id, body FROM questions WHERE exam_set_id = $1 \
                 AND problem_id IN ({})",
                placeholders_from(2, chunk.len())
            );
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql).bind(exam_set_id), |q, pid| {
                    q.bind(pid.as_str())
                });
            for row in query.fetch_all(&self.pool).await? {
                out.insert(
                    row.try_get::<String, _>("problem_id")?,
                    question_from_body(&row.try_get::<String, _>("body")?)?,
                );
            }
        }
        Ok(out)
    }

    /// The automatic result (correct, parse failed) of each of one run's answers to
    /// `problem_ids`, one query per chunk of ids.
    pub async fn answer_results(
        &self,
        run_id: i64,
        problem_ids: &[&str],
    ) -> Result<HashMap<String, (bool, bool)>, DbError> {
        let mut out = HashMap::new();
        for chunk in problem_ids.chunks(IN_CHUNK) {
            let sql = format!(
                "SELECT problem_id, correct, unparsed FROM answers WHERE run_id = $1 \
                 AND problem_id IN ({})",
                placeholders_from(2, chunk.len())
            );
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql).bind(run_id), |q, pid| q.bind(*pid));
            for row in query.fetch_all(&self.pool).await? {
                out.insert(
                    row.try_get::<String, _>("problem_id")?,
                    (
                        row.try_get::<i64, _>("correct")? != 0,
                        row.try_get::<i64, _>("unparsed")? != 0,
                    ),
                );
            }
        }
        Ok(out)
    }

    /// Writes a task, its items and assignments and the audit line, in one transaction.
    pub async fn create_grading_task(&self, t: &NewTask<'_>) -> Result<i64, DbError> {
        let now = now_rfc3339();
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query(
            "INSERT INTO grading_tasks (name, exam_set_id, selection, sample_size, seed, overlap, \
             created_by, created_at, project_id) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) \
             RETURNING id",
        )
        .bind(t.name)
        .bind(t.exam_set_id)
        .bind(t.selection)
        .bind(t.sample_size.map(i64::from))
        .bind(t.seed as i64)
        .bind(i64::from(t.overlap))
        .bind(t.created_by)
        .bind(&now)
        .bind(t.project_id)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for run in t.run_ids {
            sqlx::query("INSERT INTO grading_task_runs (task_id, run_id) VALUES ($1, $2)")
                .bind(id)
                .bind(run)
                .execute(&mut *tx)
                .await?;
        }
        for ((run, problem_id), graders) in t.items.iter().zip(t.assignments) {
            let item: i64 = sqlx::query(
                "INSERT INTO grading_items (task_id, run_id, problem_id) VALUES ($1, $2, $3) \
                 RETURNING id",
            )
            .bind(id)
            .bind(run)
            .bind(problem_id)
            .fetch_one(&mut *tx)
            .await?
            .try_get("id")?;
            for (annotator, position, handle) in graders {
                sqlx::query(
                    "INSERT INTO grading_assignments (task_id, item_id, annotator_id, position, \
                     handle) VALUES ($1, $2, $3, $4, $5)",
                )
                .bind(id)
                .bind(item)
                .bind(annotator)
                .bind(i64::from(*position))
                .bind(handle)
                .execute(&mut *tx)
                .await?;
            }
        }
        // The runs' stored human decisions are behind now (see `db::human`).
        sqlx::query(
            "UPDATE runs SET grading_version = grading_version + 1 \
             WHERE id IN (SELECT run_id FROM grading_items WHERE task_id = $1)",
        )
        .bind(id)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_log (at, actor_id, action, task_id, item_id, before_value, after_value) \
             VALUES ($1, $2, 'task_created', $3, NULL, NULL, $4)",
        )
        .bind(&now)
        .bind(t.created_by)
        .bind(id)
        .bind(&t.audit)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(id)
    }

    /// A project's tasks (`None`: every project's), newest first.
    pub async fn grading_tasks(
        &self,
        project: Option<i64>,
        page: Option<crate::page::Page>,
    ) -> Result<Vec<TaskRow>, DbError> {
        let rows = sqlx::query(&format!(
            "{TASK_SELECT} WHERE ($1 = -1 OR t.project_id = $1) ORDER BY t.id DESC {}",
            page.map(|p| p.sql()).unwrap_or_default()
        ))
        .bind(project.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(task_from_row).collect()
    }

    /// How many tasks a project has.
    pub async fn grading_task_count(&self, project: i64) -> Result<u64, DbError> {
        let n: i64 = sqlx::query("SELECT COUNT(*) AS n FROM grading_tasks WHERE project_id = $1")
            .bind(project)
            .fetch_one(&self.pool)
            .await?
            .try_get("n")?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub async fn grading_task(&self, id: i64) -> Result<Option<TaskRow>, DbError> {
        sqlx::query(&format!("{TASK_SELECT} WHERE t.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(task_from_row)
            .transpose()
    }

    /// The runs a task grades, by task id.
    pub async fn grading_task_runs(&self) -> Result<HashMap<i64, Vec<i64>>, DbError> {
        let rows = sqlx::query("SELECT task_id, run_id FROM grading_task_runs ORDER BY run_id")
            .fetch_all(&self.pool)
            .await?;
        let mut out: HashMap<i64, Vec<i64>> = HashMap::new();
        for r in rows {
            out.entry(r.try_get("task_id")?)
                .or_default()
                .push(r.try_get("run_id")?);
        }
        Ok(out)
    }

    /// Items, assignments and current grades of one task (`Some(id)`) or of all.
    pub async fn grading_state(&self, task: Option<i64>) -> Result<GradingState, DbError> {
        let (filter, bind) = match task {
            Some(id) => ("WHERE x.task_id = $1", id),
            // Always true, with a placeholder to bind.
            None => ("WHERE x.task_id <> $1", -1),
        };
        self.state_where(filter, filter, &[bind]).await
    }

    /// Items, assignments and current grades of the items of `runs` (of every task), read in
    /// chunks of runs; nothing when `runs` is empty.
    pub async fn grading_state_of_runs(&self, runs: &[i64]) -> Result<GradingState, DbError> {
        let mut state = GradingState::default();
        for chunk in runs.chunks(IN_CHUNK) {
            let list = placeholders_from(1, chunk.len());
            let part = self
                .state_where(
                    &format!("WHERE x.run_id IN ({list})"),
                    &format!(
                        "WHERE x.item_id IN (SELECT gi.id FROM grading_items gi \
                         WHERE gi.run_id IN ({list}))"
                    ),
                    chunk,
                )
                .await?;
            state.items.extend(part.items);
            state.assignments.extend(part.assignments);
            state.grades.extend(part.grades);
            state.adjudications.extend(part.adjudications);
        }
        state.items.sort_by_key(|i| i.id);
        state.assignments.sort_by_key(|a| a.id);
        Ok(state)
    }

    /// The grading state under two filters on the alias `x`: `items` on `grading_items`,
    /// `assignments` on `grading_assignments`, both binding `binds` in order.
    async fn state_where(
        &self,
        items_filter: &str,
        assignments_filter: &str,
        binds: &[i64],
    ) -> Result<GradingState, DbError> {
        let items_sql = format!(
            "SELECT x.id, x.task_id, x.run_id, x.problem_id FROM grading_items x {items_filter} \
             ORDER BY x.id"
        );
        let assignments_sql = format!(
            "SELECT x.id, x.handle, x.task_id, x.item_id, x.annotator_id, u.username, x.position \
             FROM grading_assignments x JOIN users u ON u.id = x.annotator_id \
             {assignments_filter} ORDER BY x.id"
        );
        let grades_sql = format!(
            "SELECT g.assignment_id, {GRADE_COLUMNS} FROM grades g \
             JOIN grading_assignments x ON x.id = g.assignment_id \
             JOIN users u ON u.id = g.created_by {assignments_filter} \
             AND g.version = (SELECT MAX(g2.version) FROM grades g2 WHERE g2.assignment_id = g.assignment_id)"
        );
        let adjudications_sql = format!(
            "SELECT g.item_id, {GRADE_COLUMNS} FROM adjudications g \
             JOIN grading_items x ON x.id = g.item_id \
             JOIN users u ON u.id = g.created_by {items_filter} \
             AND g.version = (SELECT MAX(g2.version) FROM adjudications g2 WHERE g2.item_id = g.item_id)"
        );
        let bound = |sql| binds.iter().fold(sqlx::query(sql), |q, b| q.bind(*b));
        let items = bound(&items_sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(item_from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        let assignments = bound(&assignments_sql)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(assignment_from_row)
            .collect::<Result<Vec<_>, DbError>>()?;
        let mut grades = HashMap::new();
        for r in bound(&grades_sql).fetch_all(&self.pool).await? {
            grades.insert(
                r.try_get::<i64, _>("assignment_id")?,
                grade_from_row(&r, "grades")?,
            );
        }
        let mut adjudications = HashMap::new();
        for r in bound(&adjudications_sql).fetch_all(&self.pool).await? {
            adjudications.insert(
                r.try_get::<i64, _>("item_id")?,
                grade_from_row(&r, "adjudications")?,
            );
        }
        Ok(GradingState {
            items,
            assignments,
            grades,
            adjudications,
        })
    }

    /// The assignment with a handle, with its item.
    pub async fn assignment_by_handle(
        &self,
        handle: i64,
    ) -> Result<Option<(AssignmentRow, ItemRow)>, DbError> {
        let Some(r) = sqlx::query(
            "SELECT x.id, x.handle, x.task_id, x.item_id, x.annotator_id, u.username, \
                    x.position, i.run_id, i.problem_id \
             FROM grading_assignments x JOIN users u ON u.id = x.annotator_id \
             JOIN grading_items i ON i.id = x.item_id WHERE x.handle = $1",
        )
        .bind(handle)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        let a = assignment_from_row(&r)?;
        let item = ItemRow {
            id: a.item_id,
            task_id: a.task_id,
            run_id: r.try_get("run_id")?,
            problem_id: r.try_get("problem_id")?,
        };
        Ok(Some((a, item)))
    }

    /// One item.
    pub async fn grading_item(&self, id: i64) -> Result<Option<ItemRow>, DbError> {
        sqlx::query("SELECT id, task_id, run_id, problem_id FROM grading_items WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .map(|r| item_from_row(&r))
            .transpose()
    }

    /// An annotator's assignments, of one task or of all (newest task first), each task's in
    /// the annotator's order.
    pub async fn my_assignments(
        &self,
        scope: &super::projects::Scope,
        task: Option<i64>,
    ) -> Result<Vec<MyAssignment>, DbError> {
        let rows = sqlx::query(
            "SELECT x.task_id, t.name, x.handle, x.position, \
                    (SELECT COUNT(*) FROM grades g WHERE g.assignment_id = x.id) AS versions \
             FROM grading_assignments x JOIN grading_tasks t ON t.id = x.task_id \
             WHERE x.annotator_id = $1 AND (x.task_id = $2 OR $2 = -1) AND t.project_id = $3 \
             ORDER BY x.task_id DESC, x.position",
        )
        .bind(scope.user)
        .bind(task.unwrap_or(-1))
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(MyAssignment {
                    task_id: r.try_get("task_id")?,
                    task_name: r.try_get("name")?,
                    handle: r.try_get("handle")?,
                    position: to_u32(r.try_get("position")?),
                    graded: r.try_get::<i64, _>("versions")? > 0,
                })
            })
            .collect()
    }

    /// Records who uploaded an exam set, if nobody is recorded yet.
    pub async fn set_exam_set_owner(&self, exam_set_id: i64, user: i64) -> Result<(), DbError> {
        sqlx::query("UPDATE exam_sets SET uploaded_by = $1 WHERE id = $2 AND uploaded_by IS NULL")
            .bind(user)
            .bind(exam_set_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}

fn item_from_row(r: &sqlx::any::AnyRow) -> Result<ItemRow, DbError> {
    Ok(ItemRow {
        id: r.try_get("id")?,
        task_id: r.try_get("task_id")?,
        run_id: r.try_get("run_id")?,
        problem_id: r.try_get("problem_id")?,
    })
}

fn assignment_from_row(r: &sqlx::any::AnyRow) -> Result<AssignmentRow, DbError> {
    Ok(AssignmentRow {
        id: r.try_get("id")?,
        handle: r.try_get("handle")?,
        task_id: r.try_get("task_id")?,
        item_id: r.try_get("item_id")?,
        annotator_id: r.try_get("annotator_id")?,
        annotator: r.try_get("username")?,
        position: r.try_get("position")?,
    })
}

fn answer_from_row(r: &sqlx::any::AnyRow) -> Result<AnswerRow, DbError> {
    let extracted: String = r.try_get("extracted")?;
    Ok(AnswerRow {
        problem_id: r.try_get("problem_id")?,
        raw_output: r.try_get("raw_output")?,
        extracted: serde_json::from_str(&extracted)
            .map_err(|e| corrupt("answers", "extracted", e))?,
        correct: r.try_get::<i64, _>("correct")? != 0,
        unparsed: r.try_get::<i64, _>("unparsed")? != 0,
    })
}
