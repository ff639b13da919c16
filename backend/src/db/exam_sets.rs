//! Exam sets and their questions.

use std::collections::BTreeSet;

use kokushi_shared::Question;
use kokushi_shared::api::ExamSetSummary;
use sha2::{Digest, Sha256};
use sqlx::Row;

use super::{Db, DbError, corrupt, flag, to_u32};
use crate::clock::now_rfc3339;

/// An exam set with its question counts; read by [`summary_from_row`].
const SUMMARY_SELECT: &str = "SELECT e.id, e.name, e.content_hash, e.created_at, e.import_notes, \
     e.project_id, p.name AS project_name, \
     (SELECT COUNT(*) FROM questions q WHERE q.exam_set_id = e.id) AS n, \
     (SELECT COUNT(*) FROM questions q WHERE q.exam_set_id = e.id AND q.text_only = 1) AS t, \
     (SELECT COUNT(*) FROM exam_sets v \
       WHERE v.name = e.name AND v.project_id = e.project_id AND v.id <= e.id) AS version \
     FROM exam_sets e JOIN projects p ON p.id = e.project_id";

/// The sets a project reads: its own and those shared with it; binds the project as `$1`.
const READABLE: &str = "(e.project_id = $1 OR e.id IN \
     (SELECT s.exam_set_id FROM exam_set_shares s WHERE s.project_id = $1))";

/// The exam years, blocks and specialties a set of questions holds: the values a leaderboard
/// filter may name.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Facets {
    pub years: BTreeSet<u16>,
    pub blocks: BTreeSet<String>,
    pub specialties: BTreeSet<String>,
}

impl Facets {
    /// The years, blocks and specialties of `questions`.
    pub fn of<'a>(questions: impl IntoIterator<Item = &'a Question>) -> Self {
        let mut f = Facets::default();
        for q in questions {
            if let Some(y) = q.meta.year {
                f.years.insert(y);
            }
            if let Some(b) = &q.meta.block {
                f.blocks.insert(b.clone());
            }
            if let Some(s) = &q.meta.specialty {
                f.specialties.insert(s.clone());
            }
        }
        f
    }

    fn merge(&mut self, other: Facets) {
        self.years.extend(other.years);
        self.blocks.extend(other.blocks);
        self.specialties.extend(other.specialties);
    }
}

/// An exam set ready to store: its questions with their content hash, facets and stored
/// bodies, made in one go (CPU work: a server makes it off its request threads).
#[derive(Debug, Clone)]
pub struct PreparedSet {
    pub questions: Vec<Question>,
    hash: String,
    facets: String,
    bodies: Vec<String>,
    /// What the import repaired and left out (JSON), when anything.
    notes: Option<String>,
}

impl PreparedSet {
    pub fn new(questions: Vec<Question>) -> Result<Self, DbError> {
        let hash = content_hash(&questions);
        let facets = serde_json::to_string(&Facets::of(&questions))
            .map_err(|e| corrupt("exam_sets", "facets", e))?;
        let bodies = questions
            .iter()
            .map(|q| serde_json::to_string(q).map_err(|e| corrupt("questions", "body", e)))
            .collect::<Result<_, _>>()?;
        Ok(Self {
            questions,
            hash,
            facets,
            bodies,
            notes: None,
        })
    }

    /// The set with what its import repaired and left out, kept beside it.
    pub fn with_notes(
        mut self,
        notes: &kokushi_shared::igakuqa::ImportNotes,
    ) -> Result<Self, DbError> {
        self.notes = if notes.is_empty() {
            None
        } else {
            Some(
                serde_json::to_string(notes)
                    .map_err(|e| corrupt("exam_sets", "import_notes", e))?,
            )
        };
        Ok(self)
    }
}

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
    /// recognised and not stored twice. Returns the set and whether it was created. (The
    /// hashing and encoding happen here, on the caller's thread: a server prepares a large
    /// set off its request threads with [`PreparedSet::new`] and [`Db::insert_prepared`].)
    /// The set goes into the default project (the command line's).
    pub async fn insert_exam_set(
        &self,
        name: &str,
        questions: &[Question],
    ) -> Result<(ExamSetSummary, bool), DbError> {
        let project = self.default_project().await?;
        self.insert_prepared(project, name, &PreparedSet::new(questions.to_vec())?)
            .await
    }

    /// [`Db::insert_exam_set`] of a set whose hash, facets and rows are already made.
    /// Identical content is recognised within `project` only: another project's upload of the
    /// same file is a set of its own, and neither learns of the other's.
    pub async fn insert_prepared(
        &self,
        project: i64,
        name: &str,
        set: &PreparedSet,
    ) -> Result<(ExamSetSummary, bool), DbError> {
        let hash = &set.hash;
        let mut tx = self.begin_write().await?;
        let existing = sqlx::query(
            "SELECT id FROM exam_sets WHERE project_id = $1 AND name = $2 AND content_hash = $3",
        )
        .bind(project)
        .bind(name)
        .bind(hash)
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
            "INSERT INTO exam_sets (name, content_hash, created_at, facets, import_notes, \
                                    project_id) \
             VALUES ($1, $2, $3, $4, $5, $6) RETURNING id",
        )
        .bind(name)
        .bind(hash)
        .bind(now_rfc3339())
        .bind(&set.facets)
        .bind(&set.notes)
        .bind(project)
        .fetch_one(&mut *tx)
        .await?
        .try_get("id")?;
        for (position, (q, body)) in set.questions.iter().zip(&set.bodies).enumerate() {
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

    /// The years, blocks and specialties the exam sets of a board hold together (a project's
    /// own and shared sets; the portal's: the sets of published runs). A set stored before
    /// facets were kept has them computed from its questions and stored, once.
    pub async fn facets(&self, board: super::runs::Board) -> Result<Facets, DbError> {
        let rows = match board {
            super::runs::Board::Project(project) => {
                sqlx::query(&format!(
                    "SELECT e.id, e.facets FROM exam_sets e WHERE {READABLE}"
                ))
                .bind(project)
                .fetch_all(&self.pool)
                .await?
            }
            super::runs::Board::Portal => {
                sqlx::query(
                    "SELECT e.id, e.facets FROM exam_sets e WHERE e.id IN \
                     (SELECT r.exam_set_id FROM runs r JOIN published_runs pr ON pr.run_id = r.id)",
                )
                .fetch_all(&self.pool)
                .await?
            }
            super::runs::Board::All => {
                sqlx::query("SELECT e.id, e.facets FROM exam_sets e")
                    .fetch_all(&self.pool)
                    .await?
            }
        };
        let mut all = Facets::default();
        for row in rows {
            let stored: Option<String> = row.try_get("facets")?;
            let facets = match stored {
                Some(text) => {
                    serde_json::from_str(&text).map_err(|e| corrupt("exam_sets", "facets", e))?
                }
                None => {
                    let id: i64 = row.try_get("id")?;
                    let bodies = sqlx::query("SELECT body FROM questions WHERE exam_set_id = $1")
                        .bind(id)
                        .fetch_all(&self.pool)
                        .await?;
                    let questions = bodies
                        .iter()
                        .map(|r| question_from_body(&r.try_get::<String, _>("body")?))
                        .collect::<Result<Vec<_>, DbError>>()?;
                    let facets = Facets::of(&questions);
                    let text = serde_json::to_string(&facets)
                        .map_err(|e| corrupt("exam_sets", "facets", e))?;
                    sqlx::query("UPDATE exam_sets SET facets = $1 WHERE id = $2")
                        .bind(text)
                        .bind(id)
                        .execute(&self.pool)
                        .await?;
                    facets
                }
            };
            all.merge(facets);
        }
        Ok(all)
    }

    /// The exam sets a project reads (its own and those shared with it), newest first, and how
    /// many there are.
    pub async fn exam_sets(
        &self,
        scope: &super::projects::Scope,
        page: crate::page::Page,
    ) -> Result<(Vec<ExamSetSummary>, u64), DbError> {
        let rows = sqlx::query(&format!(
            "{SUMMARY_SELECT} WHERE {READABLE} ORDER BY e.id DESC {}",
            page.sql()
        ))
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?;
        let total: i64 = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM exam_sets e WHERE {READABLE}"
        ))
        .bind(scope.project)
        .fetch_one(&self.pool)
        .await?
        .try_get("n")?;
        let sets = rows
            .iter()
            .map(|row| {
                let mut set = summary_from_row(row)?;
                if row.try_get::<i64, _>("project_id")? != scope.project {
                    set.shared_from = Some(row.try_get("project_name")?);
                }
                Ok(set)
            })
            .collect::<Result<Vec<_>, DbError>>()?;
        Ok((sets, u64::try_from(total).unwrap_or(0)))
    }

    /// An exam set `scope`'s project reads (its own, or one shared with it); `None` for any
    /// other, exactly as for a missing id.
    pub async fn readable_exam_set(
        &self,
        scope: &super::projects::Scope,
        id: i64,
    ) -> Result<Option<ExamSetSummary>, DbError> {
        if !self.exam_set_readable(scope, id).await? {
            return Ok(None);
        }
        self.exam_set(id).await
    }

    /// One exam set, whoever's it is: for ids already checked against the caller's project
    /// (the access check's, or [`Db::exam_set_readable`]).
    pub async fn exam_set(&self, id: i64) -> Result<Option<ExamSetSummary>, DbError> {
        let row = sqlx::query(&format!("{SUMMARY_SELECT} WHERE e.id = $1"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(summary_from_row).transpose()
    }

    /// The newest exam set of this name in the default project (the command line's).
    pub async fn exam_set_by_name(&self, name: &str) -> Result<Option<ExamSetSummary>, DbError> {
        let project = self.default_project().await?;
        let id: Option<i64> = sqlx::query(
            "SELECT id FROM exam_sets WHERE name = $1 AND project_id = $2 \
             ORDER BY id DESC LIMIT 1",
        )
        .bind(name)
        .bind(project)
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
        import_notes: match row.try_get::<Option<String>, _>("import_notes")? {
            Some(json) => {
                serde_json::from_str(&json).map_err(|e| corrupt("exam_sets", "import_notes", e))?
            }
            None => kokushi_shared::igakuqa::ImportNotes::default(),
        },
        shared_from: None,
    })
}

pub(super) fn question_from_body(body: &str) -> Result<Question, DbError> {
    serde_json::from_str(body).map_err(|e| corrupt("questions", "body", e))
}
