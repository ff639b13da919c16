//! Each run's answers that human grading decided, stored with whether the human verdict and the
//! automatic result count each one correct and its question's facets, so that the
//! human-adjusted columns are one indexed sum (under the same facet filter as the cells), or
//! for the run as a whole three columns of its row, instead of resolving the run's whole
//! grading state on every request.
//!
//! Every grading write raises `runs.grading_version` of the runs it touches, in its own
//! transaction (a task created, a grade or an adjudication saved); the decisions are stored
//! with the version they were computed from (`runs.human_stamp`). A run whose two differ is
//! computed again (`grading::refresh_human`) before it is read. The version is read before the
//! grading state, so a grade that lands in between leaves the stamp behind and the run is
//! computed again at the next read.

use std::collections::HashMap;

use sqlx::Row;

use super::cells::{CellFilter, CellKey};
use super::{Db, DbError, IN_CHUNK, flag, placeholders_from, to_u32};

/// Rows per `INSERT` when storing decisions (9 values each).
const INSERT_CHUNK: usize = 100;

/// One decided answer of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub problem_id: String,
    /// Whether the human verdict counts the answer correct.
    pub human_correct: bool,
    /// Whether the automatic result did (answers are never changed once stored).
    pub automatic_correct: bool,
    /// Its question's facets.
    pub facets: CellKey,
}

/// The decided answers of a run, summed against the automatic results.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HumanSums {
    /// Decided answers (of questions the run answered: an answer without one is not decided).
    pub resolved: u32,
    /// Decided correct where the automatic result was wrong.
    pub gained: u32,
    /// Decided wrong where the automatic result was correct.
    pub lost: u32,
}

impl Db {
    /// Of `run_ids` (of every run, with `None`), those whose stored decisions are behind their
    /// grading, each with its current grading version (the stamp to store once computed).
    pub async fn human_stale(&self, run_ids: Option<&[i64]>) -> Result<Vec<(i64, i64)>, DbError> {
        let select = "SELECT id, grading_version FROM runs WHERE grading_version <> human_stamp";
        let rows = self
            .rows_for_ids(run_ids, |ids| match ids {
                None => format!("{select} ORDER BY id"),
                Some(ids) => format!("{select} AND id IN ({ids}) ORDER BY id"),
            })
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("id")?, r.try_get("grading_version")?)))
            .collect()
    }

    /// Replaces run `run_id`'s decisions with `decisions`, computed from its grading at
    /// `version`, in one transaction.
    pub async fn store_human(
        &self,
        run_id: i64,
        version: i64,
        decisions: &[Decision],
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        // The run's row first: on PostgreSQL it is locked until this commits, so that two
        // servers storing the same run take turns (the second's delete then sees the first's
        // rows) instead of colliding on the primary key.
        let totals = sums_of(decisions);
        sqlx::query(
            "UPDATE runs SET human_stamp = $2, human_resolved = $3, human_gained = $4, \
             human_lost = $5 WHERE id = $1",
        )
        .bind(run_id)
        .bind(version)
        .bind(i64::from(totals.resolved))
        .bind(i64::from(totals.gained))
        .bind(i64::from(totals.lost))
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM human_decisions WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        for chunk in decisions.chunks(INSERT_CHUNK) {
            let values = (0..chunk.len())
                .map(|i| format!("({})", placeholders_from(1 + i * 9, 9)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO human_decisions (run_id, problem_id, human_correct, \
                 automatic_correct, year, block, section, specialty, text_only) VALUES {values}"
            );
            let mut query = sqlx::query(&sql);
            for d in chunk {
                let key = &d.facets;
                query = query
                    .bind(run_id)
                    .bind(d.problem_id.clone())
                    .bind(flag(d.human_correct))
                    .bind(flag(d.automatic_correct))
                    .bind(key.year.map(i64::from))
                    .bind(key.block.clone())
                    .bind(key.section.map(|s| s.id()))
                    .bind(key.specialty.clone())
                    .bind(flag(key.text_only));
            }
            query.execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Per run of `run_ids` with decided answers `filter` keeps (all with `None`, read from
    /// the run's row): how many, and how many the human verdict turned from wrong to right and
    /// from right to wrong.
    pub async fn human_sums(
        &self,
        run_ids: &[i64],
        filter: Option<&CellFilter<'_>>,
    ) -> Result<HashMap<i64, HumanSums>, DbError> {
        let mut out = HashMap::new();
        for chunk in run_ids.chunks(IN_CHUNK) {
            let ids = placeholders_from(1, chunk.len());
            let (sql, facets) = match filter {
                None => (
                    format!(
                        "SELECT id AS run_id, human_resolved AS resolved, human_gained AS gained, \
                         human_lost AS lost FROM runs WHERE id IN ({ids}) AND human_resolved > 0"
                    ),
                    None,
                ),
                Some(filter) => {
                    let facets = filter.conditions("", 1 + chunk.len());
                    let mut conditions = vec![format!("run_id IN ({ids})")];
                    conditions.extend(facets.conditions.iter().cloned());
                    // CAST: PostgreSQL sums BIGINTs as NUMERIC.
                    (
                        format!(
                            "SELECT run_id, COUNT(*) AS resolved, \
                             CAST(SUM(CASE WHEN human_correct = 1 AND automatic_correct = 0 \
                             THEN 1 ELSE 0 END) AS BIGINT) AS gained, \
                             CAST(SUM(CASE WHEN human_correct = 0 AND automatic_correct = 1 \
                             THEN 1 ELSE 0 END) AS BIGINT) AS lost \
                             FROM human_decisions WHERE {} GROUP BY run_id",
                            conditions.join(" AND ")
                        ),
                        Some(facets),
                    )
                }
            };
            let query = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            let query = match &facets {
                Some(facets) => facets.bind(query),
                None => query,
            };
            for r in query.fetch_all(&self.pool).await? {
                let n = |column: &str| -> Result<u32, DbError> {
                    Ok(to_u32(r.try_get::<Option<i64>, _>(column)?.unwrap_or(0)))
                };
                out.insert(
                    r.try_get("run_id")?,
                    HumanSums {
                        resolved: n("resolved")?,
                        gained: n("gained")?,
                        lost: n("lost")?,
                    },
                );
            }
        }
        Ok(out)
    }
}

/// The sums of `decisions`, as [`Db::human_sums`] counts them.
pub fn sums_of(decisions: &[Decision]) -> HumanSums {
    let mut out = HumanSums::default();
    for d in decisions {
        out.resolved += 1;
        out.gained += u32::from(d.human_correct && !d.automatic_correct);
        out.lost += u32::from(!d.human_correct && d.automatic_correct);
    }
    out
}
