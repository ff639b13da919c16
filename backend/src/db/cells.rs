//! Each run's results summed by question facet — exam year, block, section, specialty,
//! text-only — so that a filtered leaderboard adds up the cells its filter keeps (one indexed
//! `SUM … GROUP BY run_id` over the page's runs) instead of scoring every run of the page again.
//!
//! A run's cells are computed by the same scoring as `kokushi score` (`shared::score`, under the
//! rule packs the run is scored under) and stored with a stamp of what they were computed from:
//! the number of answers, the pack versions the run recorded and how many packs its exam set
//! has stored (packs are only ever added). A run whose stamp no longer matches — answers arrived,
//! a pack was added, it was rescored — is scored again before its cells are read.

use std::collections::{BTreeMap, HashMap};
use std::sync::OnceLock;

use kokushi_shared::Question;
use kokushi_shared::api::RunMetrics;
use kokushi_shared::exam::Section;
use kokushi_shared::metric::Tally;
use kokushi_shared::score::QuestionScore;
use sqlx::Row;

use super::rule_packs::RulesVersions;
use super::{Db, DbError, IN_CHUNK, corrupt, flag, placeholders_from, to_u32};

/// Bumped when what a cell holds, or how it is computed, changes: every stamp changes with it.
const CELLS_VERSION: u32 = 1;

/// Rows per `INSERT` when storing cells (16 values each).
const INSERT_CHUNK: usize = 100;

/// The counting columns of `run_cells`, in the order [`Db::store_cells`] binds them.
const COUNT_COLUMNS: [&str; 10] = [
    "questions",
    "answered",
    "correct",
    "parse_failures",
    "points",
    "points_possible",
    "metric_questions",
    "correct_strict",
    "exact_match",
    "gestalt_correct",
];

/// The questions of one facet combination and what the run scored on them.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CellCounts {
    /// Questions the run asks (answered or not).
    pub questions: u32,
    /// Over the answered questions with a published answer.
    pub tally: Tally,
    /// The text metrics over the same questions.
    pub metrics: RunMetrics,
}

impl CellCounts {
    fn add(&mut self, other: &CellCounts) {
        self.questions += other.questions;
        let (t, o) = (&mut self.tally, &other.tally);
        t.answered += o.answered;
        t.correct += o.correct;
        t.parse_failures += o.parse_failures;
        t.points += o.points;
        t.points_possible += o.points_possible;
        let (m, o) = (&mut self.metrics, &other.metrics);
        m.questions += o.questions;
        m.correct_strict += o.correct_strict;
        m.exact_match += o.exact_match;
        m.gestalt_correct += o.gestalt_correct;
    }
}

/// One facet combination of a run's questions.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct CellKey {
    pub year: Option<u16>,
    pub block: Option<String>,
    pub section: Option<Section>,
    pub specialty: Option<String>,
    pub text_only: bool,
}

impl CellKey {
    pub(crate) fn of(q: &Question) -> Self {
        CellKey {
            year: q.meta.year,
            block: q.meta.block.clone(),
            section: q.meta.section,
            specialty: q.meta.specialty.clone(),
            text_only: q.text_only,
        }
    }
}

/// A run's cells: its questions grouped by facet, with `scores` (one per question scored,
/// matched by problem id; a question without one counts as asked and unanswered). `unscorable`
/// are the questions without a published answer: asked, never in a tally.
pub fn cells_of(
    questions: &[Question],
    scores: &[QuestionScore],
    unscorable: &[String],
) -> BTreeMap<CellKey, CellCounts> {
    let by_id: HashMap<&str, &QuestionScore> =
        scores.iter().map(|s| (s.problem_id.as_str(), s)).collect();
    let unscorable: std::collections::HashSet<&str> =
        unscorable.iter().map(String::as_str).collect();
    let mut cells: BTreeMap<CellKey, CellCounts> = BTreeMap::new();
    for q in questions {
        let cell = cells.entry(CellKey::of(q)).or_default();
        cell.questions += 1;
        let Some(s) = by_id.get(q.problem_id.as_str()) else {
            continue;
        };
        if s.prediction.is_none() || unscorable.contains(q.problem_id.as_str()) {
            continue;
        }
        cell.tally.add(s.letter_correct, s.parse_failed, s.points);
        cell.metrics.questions += 1;
        cell.metrics.correct_strict += u32::from(s.letter_correct_strict);
        cell.metrics.exact_match += u32::from(s.exact_match);
        cell.metrics.gestalt_correct += u32::from(s.gestalt_correct == Some(true));
    }
    cells
}

/// What a run's cells were computed from: its answers, the pack versions it recorded and the
/// packs its exam set has stored, under this release's built-in packs.
pub fn stamp(answers: usize, recorded: &RulesVersions, stored_packs: usize) -> String {
    static BUILT_IN: OnceLock<String> = OnceLock::new();
    let built_in = BUILT_IN.get_or_init(|| {
        kokushi_shared::rules::built_in()
            .iter()
            .map(|p| format!("{}:{}", p.exam, p.version))
            .collect::<Vec<_>>()
            .join(",")
    });
    let recorded = recorded
        .iter()
        .map(|(exam, v)| format!("{exam}:{v}"))
        .collect::<Vec<_>>()
        .join(",");
    format!("v{CELLS_VERSION}|{built_in}|{answers}|{recorded}|{stored_packs}")
}

impl super::rule_packs::RunScoring {
    /// The [`stamp`] of the cells computed from this scoring.
    pub fn cells_stamp(&self) -> String {
        stamp(
            self.predictions.len(),
            &self.rules.recorded,
            self.rules.stored,
        )
    }
}

/// Which cells a filtered leaderboard keeps; empty lists keep every value.
#[derive(Debug, Clone, Copy, Default)]
pub struct CellFilter<'a> {
    pub years: &'a [u16],
    pub blocks: &'a [String],
    pub section: Option<Section>,
    pub specialty: Option<&'a str>,
    pub text_only: bool,
}

/// A [`CellFilter`] as SQL conditions on the facet columns (of the table aliased `alias`, or
/// unqualified with `""`), with the values to bind after whatever precedes them.
pub(crate) struct FacetConditions<'a> {
    pub(crate) conditions: Vec<String>,
    years: &'a [u16],
    strings: Vec<&'a str>,
}

impl<'a> FacetConditions<'a> {
    /// Binds the conditions' values, in the order of their placeholders.
    pub(crate) fn bind<'q>(
        &self,
        mut query: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    ) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>
    where
        'a: 'q,
    {
        for year in self.years {
            query = query.bind(i64::from(*year));
        }
        for s in &self.strings {
            query = query.bind(*s);
        }
        query
    }
}

impl<'a> CellFilter<'a> {
    /// This filter's conditions, numbering its placeholders from `$next`.
    pub(crate) fn conditions(&self, alias: &str, mut next: usize) -> FacetConditions<'a> {
        let column = |name: &str| {
            if alias.is_empty() {
                name.to_owned()
            } else {
                format!("{alias}.{name}")
            }
        };
        let mut conditions = Vec::new();
        let mut strings: Vec<&'a str> = Vec::new();
        if !self.years.is_empty() {
            conditions.push(format!(
                "{} IN ({})",
                column("year"),
                placeholders_from(next, self.years.len())
            ));
            next += self.years.len();
        }
        if !self.blocks.is_empty() {
            conditions.push(format!(
                "{} IN ({})",
                column("block"),
                placeholders_from(next, self.blocks.len())
            ));
            next += self.blocks.len();
            strings.extend(self.blocks.iter().map(String::as_str));
        }
        if let Some(section) = self.section {
            conditions.push(format!("{} = ${next}", column("section")));
            next += 1;
            strings.push(section.id());
        }
        if let Some(specialty) = self.specialty {
            conditions.push(format!("{} = ${next}", column("specialty")));
            strings.push(specialty);
        }
        if self.text_only {
            conditions.push(format!("{} = 1", column("text_only")));
        }
        FacetConditions {
            conditions,
            years: self.years,
            strings,
        }
    }
}

impl Db {
    /// For each of `run_ids` (every run that is neither queued nor running, with `None`): the
    /// stamp its cells would have if computed now, and whether the stored one is that.
    pub async fn cell_stamps(&self, run_ids: Option<&[i64]>) -> Result<Vec<(i64, bool)>, DbError> {
        let select = "SELECT r.id, r.tally_answered, r.rules_versions, r.cells_stamp, \
             (SELECT COUNT(*) FROM exam_set_rule_packs p WHERE p.exam_set_id = r.exam_set_id) \
             AS packs FROM runs r";
        let rows = self
            .rows_for_ids(run_ids, |ids| match ids {
                None => {
                    format!("{select} WHERE r.status NOT IN ('queued', 'running') ORDER BY r.id")
                }
                Some(ids) => format!("{select} WHERE r.id IN ({ids})"),
            })
            .await?;
        rows.iter()
            .map(|r| {
                let recorded: RulesVersions =
                    match r.try_get::<Option<String>, _>("rules_versions")? {
                        Some(text) => serde_json::from_str(&text)
                            .map_err(|e| corrupt("runs", "rules_versions", e))?,
                        None => RulesVersions::new(),
                    };
                let expected = stamp(
                    usize::try_from(r.try_get::<i64, _>("tally_answered")?).unwrap_or(0),
                    &recorded,
                    usize::try_from(r.try_get::<i64, _>("packs")?).unwrap_or(0),
                );
                let stored: Option<String> = r.try_get("cells_stamp")?;
                Ok((
                    r.try_get("id")?,
                    stored.as_deref() == Some(expected.as_str()),
                ))
            })
            .collect()
    }

    /// Replaces run `run_id`'s cells with `cells`, computed from what `stamp` says, in one
    /// transaction.
    pub async fn store_cells(
        &self,
        run_id: i64,
        stamp: &str,
        cells: &BTreeMap<CellKey, CellCounts>,
    ) -> Result<(), DbError> {
        let mut tx = self.begin_write().await?;
        sqlx::query("DELETE FROM run_cells WHERE run_id = $1")
            .bind(run_id)
            .execute(&mut *tx)
            .await?;
        let cells: Vec<(&CellKey, &CellCounts)> = cells.iter().collect();
        for chunk in cells.chunks(INSERT_CHUNK) {
            let values = (0..chunk.len())
                .map(|i| format!("({})", placeholders_from(1 + i * 16, 16)))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "INSERT INTO run_cells (run_id, year, block, section, specialty, text_only, {}) \
                 VALUES {values}",
                COUNT_COLUMNS.join(", ")
            );
            let mut query = sqlx::query(&sql);
            for (key, c) in chunk {
                query = query
                    .bind(run_id)
                    .bind(key.year.map(i64::from))
                    .bind(key.block.clone())
                    .bind(key.section.map(|s| s.id()))
                    .bind(key.specialty.clone())
                    .bind(flag(key.text_only));
                for n in [
                    c.questions,
                    c.tally.answered,
                    c.tally.correct,
                    c.tally.parse_failures,
                    c.tally.points,
                    c.tally.points_possible,
                    c.metrics.questions,
                    c.metrics.correct_strict,
                    c.metrics.exact_match,
                    c.metrics.gestalt_correct,
                ] {
                    query = query.bind(i64::from(n));
                }
            }
            query.execute(&mut *tx).await?;
        }
        sqlx::query("UPDATE runs SET cells_stamp = $2 WHERE id = $1")
            .bind(run_id)
            .bind(stamp)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    /// The sums of the cells `filter` keeps, per run of `run_ids` (a run none of whose cells
    /// it keeps is absent).
    pub async fn filtered_cells(
        &self,
        run_ids: &[i64],
        filter: &CellFilter<'_>,
    ) -> Result<HashMap<i64, CellCounts>, DbError> {
        let mut out: HashMap<i64, CellCounts> = HashMap::new();
        for chunk in run_ids.chunks(IN_CHUNK) {
            let facets = filter.conditions("", 1 + chunk.len());
            let mut conditions = vec![format!("run_id IN ({})", placeholders_from(1, chunk.len()))];
            conditions.extend(facets.conditions.iter().cloned());
            // CAST: PostgreSQL sums BIGINTs as NUMERIC.
            let sums = COUNT_COLUMNS
                .iter()
                .map(|c| format!("CAST(SUM({c}) AS BIGINT) AS {c}"))
                .collect::<Vec<_>>()
                .join(", ");
            let sql = format!(
                "SELECT run_id, {sums} FROM run_cells WHERE {} GROUP BY run_id",
                conditions.join(" AND ")
            );
            let query = chunk.iter().fold(sqlx::query(&sql), |q, id| q.bind(*id));
            for r in facets.bind(query).fetch_all(&self.pool).await? {
                let n = |column: &str| -> Result<u32, DbError> {
                    Ok(to_u32(r.try_get::<Option<i64>, _>(column)?.unwrap_or(0)))
                };
                out.insert(
                    r.try_get("run_id")?,
                    CellCounts {
                        questions: n("questions")?,
                        tally: Tally {
                            answered: n("answered")?,
                            correct: n("correct")?,
                            parse_failures: n("parse_failures")?,
                            points: n("points")?,
                            points_possible: n("points_possible")?,
                        },
                        metrics: RunMetrics {
                            questions: n("metric_questions")?,
                            correct_strict: n("correct_strict")?,
                            exact_match: n("exact_match")?,
                            gestalt_correct: n("gestalt_correct")?,
                        },
                    },
                );
            }
        }
        Ok(out)
    }
}

/// Adds up `cells` (those a filter keeps) as a filtered row counts them.
pub fn total(cells: impl IntoIterator<Item = CellCounts>) -> CellCounts {
    let mut out = CellCounts::default();
    for c in cells {
        out.add(&c);
    }
    out
}
