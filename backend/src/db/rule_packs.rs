//! Rule packs of an exam set, one row per version and never changed once written, and the
//! versions each run was scored under (docs/rule-packs.md).
//!
//! A set is scored under the highest stored version of each exam's pack, else the built-in
//! pack. A succeeded run records the versions of the exams it holds; it is scored under those
//! until it is rescored on request ([`Db::set_run_rules_versions`]).

use std::collections::BTreeMap;

use kokushi_shared::api::StoredRulePack;
use kokushi_shared::rules::{self, RulePack};
use sqlx::Row;

use super::{Db, DbError, corrupt};
use crate::clock::now_rfc3339;

/// Exam → pack version, as a run records them.
pub type RulesVersions = BTreeMap<String, u32>;

/// A run's questions, its replies and the rule packs it is scored under.
#[derive(Debug, Clone)]
pub struct RunScoring {
    pub questions: Vec<kokushi_shared::Question>,
    pub predictions: BTreeMap<String, kokushi_shared::score::Reply>,
    pub rules: RunRules,
}

/// The packs a run is scored under, and the versions they are.
#[derive(Debug, Clone)]
pub struct RunRules {
    pub packs: Vec<RulePack>,
    /// The versions recorded for the run (empty before it succeeded).
    pub recorded: RulesVersions,
    /// The versions its exam set is scored under now, for the exams the run holds.
    pub current: RulesVersions,
    /// The packs its exam set is scored under now.
    pub current_packs: Vec<RulePack>,
    /// How many packs its exam set has stored (they are only ever added): with `recorded` and
    /// the answers, what its leaderboard cells are computed from (`db::cells::stamp`).
    pub stored: usize,
}

fn pack_of(body: &str) -> Result<RulePack, DbError> {
    serde_json::from_str(body).map_err(|e| corrupt("exam_set_rule_packs", "body", e))
}

impl Db {
    /// Stores `pack` as the next version of its exam's pack for the exam set: one past the
    /// built-in pack's version and every stored one, whatever version the pack says.
    pub async fn add_rule_pack(
        &self,
        exam_set_id: i64,
        mut pack: RulePack,
        user: i64,
    ) -> Result<StoredRulePack, DbError> {
        let mut tx = self.begin_write().await?;
        let stored: Option<i64> = sqlx::query(
            "SELECT MAX(version) AS v FROM exam_set_rule_packs WHERE exam_set_id = $1 AND exam = $2",
        )
        .bind(exam_set_id)
        .bind(&pack.exam)
        .fetch_one(&mut *tx)
        .await?
        .try_get("v")?;
        let built_in = rules::built_in_for(&pack.exam).map_or(0, |p| p.version);
        let version = u32::try_from(stored.unwrap_or(0))
            .unwrap_or(u32::MAX)
            .max(built_in)
            .saturating_add(1);
        pack.version = version;
        let body = serde_json::to_string(&pack).map_err(|e| DbError::Refused(e.to_string()))?;
        let at = now_rfc3339();
        sqlx::query(
            "INSERT INTO exam_set_rule_packs (exam_set_id, exam, version, body, created_by, \
             created_at) VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(exam_set_id)
        .bind(&pack.exam)
        .bind(i64::from(version))
        .bind(&body)
        .bind(user)
        .bind(&at)
        .execute(&mut *tx)
        .await?;
        let by: String = sqlx::query("SELECT username FROM users WHERE id = $1")
            .bind(user)
            .fetch_one(&mut *tx)
            .await?
            .try_get("username")?;
        tx.commit().await?;
        Ok(StoredRulePack {
            exam: pack.exam.clone(),
            version,
            created_by: by,
            created_at: at,
            pack,
        })
    }

    /// Every stored version of the exam set's packs, by exam and version.
    pub async fn rule_packs(&self, exam_set_id: i64) -> Result<Vec<StoredRulePack>, DbError> {
        let rows = sqlx::query(
            "SELECT p.exam, p.version, p.body, u.username, p.created_at \
             FROM exam_set_rule_packs p JOIN users u ON u.id = p.created_by \
             WHERE p.exam_set_id = $1 ORDER BY p.exam, p.version",
        )
        .bind(exam_set_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(StoredRulePack {
                    exam: r.try_get("exam")?,
                    version: u32::try_from(r.try_get::<i64, _>("version")?)
                        .map_err(|e| corrupt("exam_set_rule_packs", "version", e))?,
                    created_by: r.try_get("username")?,
                    created_at: r.try_get("created_at")?,
                    pack: pack_of(&r.try_get::<String, _>("body")?)?,
                })
            })
            .collect()
    }

    /// The packs stored for the exam set, by exam and version (oldest first).
    async fn stored_packs(&self, exam_set_id: i64) -> Result<Vec<RulePack>, DbError> {
        Ok(self
            .rule_packs(exam_set_id)
            .await?
            .into_iter()
            .map(|s| s.pack)
            .collect())
    }

    /// The packs run `run_id` is scored under: the versions it recorded, else (before it
    /// succeeded, or for an exam it recorded no version of) its exam set's current ones. A
    /// recorded built-in version this release no longer carries gives way to the current one.
    /// `exams` are the exams its questions belong to. `None` for no such run.
    pub async fn run_rules(
        &self,
        run_id: i64,
        exams: &std::collections::BTreeSet<String>,
    ) -> Result<Option<RunRules>, DbError> {
        let Some(row) = sqlx::query("SELECT exam_set_id, rules_versions FROM runs WHERE id = $1")
            .bind(run_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let exam_set_id: i64 = row.try_get("exam_set_id")?;
        let recorded: RulesVersions = match row.try_get::<Option<String>, _>("rules_versions")? {
            Some(text) => {
                serde_json::from_str(&text).map_err(|e| corrupt("runs", "rules_versions", e))?
            }
            None => RulesVersions::new(),
        };
        let stored = self.stored_packs(exam_set_id).await?;
        // Oldest first: each exam's highest version stands.
        let current_packs = rules::built_in_with(stored.iter().cloned());
        let current: RulesVersions = current_packs
            .iter()
            .filter(|p| exams.contains(&p.exam))
            .map(|p| (p.exam.clone(), p.version))
            .collect();
        let packs = current_packs
            .iter()
            .cloned()
            .map(|now| {
                let Some(&version) = recorded.get(&now.exam) else {
                    return now;
                };
                if version == now.version {
                    return now;
                }
                stored
                    .iter()
                    .find(|p| p.exam == now.exam && p.version == version)
                    .or_else(|| rules::built_in_for(&now.exam).filter(|b| b.version == version))
                    .cloned()
                    .unwrap_or(now)
            })
            .collect();
        Ok(Some(RunRules {
            packs,
            recorded,
            current,
            current_packs,
            stored: stored.len(),
        }))
    }

    /// Run `run_id`'s questions and replies ([`Db::run_predictions`]) with the packs it is
    /// scored under ([`Db::run_rules`]); `None` for no such run.
    pub async fn run_scoring(&self, run_id: i64) -> Result<Option<RunScoring>, DbError> {
        let Some((questions, predictions)) = self.run_predictions(run_id).await? else {
            return Ok(None);
        };
        let exams = questions
            .iter()
            .filter_map(|q| q.meta.exam.clone())
            .collect();
        let Some(rules) = self.run_rules(run_id, &exams).await? else {
            return Ok(None);
        };
        Ok(Some(RunScoring {
            questions,
            predictions,
            rules,
        }))
    }

    /// Who uploaded exam set `exam_set_id` (`Some(None)` when no one is recorded); `None` for
    /// no such set. One row read: the check before anything costlier.
    pub async fn exam_set_owner(&self, exam_set_id: i64) -> Result<Option<Option<i64>>, DbError> {
        Ok(
            sqlx::query("SELECT uploaded_by FROM exam_sets WHERE id = $1")
                .bind(exam_set_id)
                .fetch_optional(&self.pool)
                .await?
                .map(|row| row.try_get::<Option<i64>, _>("uploaded_by"))
                .transpose()?,
        )
    }

    /// The exams an exam set's questions belong to (medical exams only: a namespaced question
    /// takes no pack) and who uploaded it; `None` for no such set.
    pub async fn exam_set_exams(
        &self,
        exam_set_id: i64,
    ) -> Result<Option<(std::collections::BTreeSet<String>, Option<i64>)>, DbError> {
        let Some(row) = sqlx::query("SELECT uploaded_by FROM exam_sets WHERE id = $1")
            .bind(exam_set_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let owner: Option<i64> = row.try_get("uploaded_by")?;
        let rows = sqlx::query("SELECT body FROM questions WHERE exam_set_id = $1")
            .bind(exam_set_id)
            .fetch_all(&self.pool)
            .await?;
        let mut exams = std::collections::BTreeSet::new();
        for r in rows {
            let q = super::exam_sets::question_from_body(&r.try_get::<String, _>("body")?)?;
            if !q.problem_id.contains(':')
                && let Some(exam) = q.meta.exam
            {
                exams.insert(exam);
            }
        }
        Ok(Some((exams, owner)))
    }

    /// Records the pack versions run `run_id` is scored under.
    pub async fn set_run_rules_versions(
        &self,
        run_id: i64,
        versions: &RulesVersions,
    ) -> Result<(), DbError> {
        let text = serde_json::to_string(versions).map_err(|e| DbError::Refused(e.to_string()))?;
        sqlx::query("UPDATE runs SET rules_versions = $2 WHERE id = $1")
            .bind(run_id)
            .bind(text)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
