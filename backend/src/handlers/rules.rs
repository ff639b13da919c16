//! Rule packs per exam set, and rescoring a run under new ones (docs/rule-packs.md).
//!
//! `GET /api/exam-sets/{id}/rules`: the pack in effect for each exam the set holds, and every
//! version uploaded for it. `POST` the same path: a new version of one exam's pack, checked
//! whole (a refusal names each field at fault) — by the set's owner or an admin. Runs keep the
//! versions they were scored under: `GET /api/runs/{id}/rescore` shows what scoring under the
//! set's current packs would change, and `POST` does it.

use actix_web::{HttpResponse, web};
use kokushi_shared::api::{
    ExamSetRules, PackInEffect, QuestionChange, RescoreDiff, YearChange, YearOutcome,
};
use kokushi_shared::rules;
use kokushi_shared::score::{GroupScore, ScoreOptions, ScoreReport, score_with};

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /api/exam-sets/{id}/rules`.
pub async fn exam_set_rules(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::parse_id("exam set", &path)?;
    let (exams, _) = state
        .db
        .exam_set_exams(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("exam set {id} does not exist")))?;
    let versions = state.db.rule_packs(id).await?;
    let current = rules::built_in_with(versions.iter().map(|v| v.pack.clone()));
    let in_effect = current
        .iter()
        .filter(|p| exams.contains(&p.exam))
        .map(|p| PackInEffect {
            exam: p.exam.clone(),
            version: p.version,
            title: p.title.clone(),
            built_in: !versions
                .iter()
                .any(|v| v.exam == p.exam && v.version == p.version),
        })
        .collect();
    Ok(HttpResponse::Ok().json(ExamSetRules {
        in_effect,
        versions,
    }))
}

/// `POST /api/exam-sets/{id}/rules` with a rule pack (JSON, at most
/// [`rules::MAX_PACK_BYTES`]) as the body: stored as the next version of its exam's pack for
/// the set. Only the set's owner or an admin; the pack's exam must be one the set holds.
pub async fn add_exam_set_rules(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    let id = super::parse_id("exam set", &path)?;
    // Who may, before reading anything of the set or the body (read as a stream, cut at the
    // limit).
    let owner = state
        .db
        .exam_set_owner(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("exam set {id} does not exist")))?;
    if owner != Some(caller.user.id) && !caller.owns_project() {
        return Err(ApiError::Forbidden(format!(
            "only the account that uploaded exam set {id}, the project's owner or an admin may \
             change its rule packs"
        )));
    }
    let body = super::exam_sets::read_limited(payload, 0, rules::MAX_PACK_BYTES).await?;
    let text = std::str::from_utf8(&body)
        .map_err(|e| ApiError::BadRequest(format!("the rule pack is not UTF-8: {e}")))?;
    let pack = rules::parse("rule pack", text).map_err(|errors| {
        ApiError::BadRequest(crate::import::problems("the rule pack", &errors))
    })?;
    let (exams, _) = state
        .db
        .exam_set_exams(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("exam set {id} does not exist")))?;
    if !exams.contains(&pack.exam) {
        return Err(ApiError::BadRequest(format!(
            "the rule pack is for the {}th exam; exam set {id} holds {}",
            pack.exam,
            if exams.is_empty() {
                "no question of a medical exam".to_owned()
            } else {
                exams.iter().cloned().collect::<Vec<_>>().join(", ")
            }
        )));
    }
    let stored = state.db.add_rule_pack(id, pack, caller.user.id).await?;
    // The set's runs that are scored under its current packs now score differently: their
    // leaderboard cells are computed again in the background (a filtered leaderboard read
    // before that scores a stale run itself).
    state.leaderboard.expire();
    let db = state.db.clone();
    tokio::spawn(async move {
        if let Err(e) = crate::ingest::refresh_stale_cells(&db).await {
            tracing::warn!(error = %e, "storing leaderboard cells after a new rule pack failed");
        }
    });
    Ok(HttpResponse::Created().json(stored))
}

/// `GET /api/runs/{id}/rescore`: what scoring the run under its exam set's current packs
/// would change. Nothing is stored.
pub async fn rescore_preview(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::parse_id("run", &path)?;
    Ok(HttpResponse::Ok().json(rescore(&state, id, false).await?))
}

/// `POST /api/runs/{id}/rescore`: scores the run under its exam set's current packs from now
/// on (its leaderboard verdicts too), answering what changed. Only the account that queued the
/// run, or an admin; only a run that succeeded (409 otherwise: until then it is scored under
/// its set's current packs anyway).
pub async fn rescore_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = super::parse_id("run", &path)?;
    super::ensure_owner(&caller, "run", id, state.db.run_owner(id).await?, "rescore")?;
    let status = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?
        .status;
    if status != kokushi_shared::api::RunStatus::Succeeded {
        return Err(ApiError::Conflict(format!(
            "run {id} is {}: only a run that succeeded keeps the rule packs it was scored under",
            status.as_str()
        )));
    }
    Ok(HttpResponse::Ok().json(rescore(&state, id, true).await?))
}

async fn rescore(state: &AppState, id: i64, apply: bool) -> Result<RescoreDiff, ApiError> {
    let scoring = super::compare::scoring(state, id).await?;
    let from = if scoring.rules.recorded.is_empty() {
        scoring.rules.current.clone()
    } else {
        scoring.rules.recorded.clone()
    };
    let to = scoring.rules.current.clone();
    let now_packs = scoring.rules.current_packs.clone();
    let options = ScoreOptions {
        resamples: 0,
        examinees: false,
        ..ScoreOptions::default()
    };
    let (before, after) = web::block(move || {
        let before = score_with(
            &scoring.questions,
            &scoring.predictions,
            &options,
            &scoring.rules.packs,
        );
        let after = score_with(
            &scoring.questions,
            &scoring.predictions,
            &options,
            &now_packs,
        );
        (before, after)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("rescoring stopped: {e}")))?;
    let diff = RescoreDiff {
        run_id: id,
        years: year_changes(&before, &after),
        questions: question_changes(&before, &after),
        from,
        to: to.clone(),
        applied: apply,
    };
    if apply {
        state.db.set_run_rules_versions(id, &to).await?;
        crate::ingest::store_final_scores(&state.db, id)
            .await
            .map_err(|e| ApiError::Internal(format!("storing the new scores: {e}")))?;
        // Its row changed on every board and under every filter.
        state.leaderboard.clear();
    }
    Ok(diff)
}

fn outcome(g: &GroupScore) -> YearOutcome {
    YearOutcome {
        points: g.points,
        points_max: g.points_max,
        pass: g.pass,
        provisional: g.provisional,
    }
}

/// Each exam year of either report, before and after.
fn year_changes(before: &ScoreReport, after: &ScoreReport) -> Vec<YearChange> {
    let empty = YearOutcome {
        points: 0,
        points_max: 0,
        pass: None,
        provisional: false,
    };
    let mut out: Vec<YearChange> = before
        .years
        .iter()
        .map(|b| YearChange {
            exam: b.exam.clone(),
            year: b.year,
            before: outcome(b),
            after: after
                .years
                .iter()
                .find(|a| a.exam == b.exam && a.year == b.year)
                .map_or_else(|| empty.clone(), outcome),
        })
        .collect();
    for a in &after.years {
        if !out.iter().any(|c| c.exam == a.exam && c.year == a.year) {
            out.push(YearChange {
                exam: a.exam.clone(),
                year: a.year,
                before: empty.clone(),
                after: outcome(a),
            });
        }
    }
    out
}

/// The questions whose points at stake or earned differ.
fn question_changes(before: &ScoreReport, after: &ScoreReport) -> Vec<QuestionChange> {
    before
        .questions
        .iter()
        .zip(&after.questions)
        .filter(|(b, a)| b.points != a.points || b.points_earned != a.points_earned)
        .map(|(b, a)| QuestionChange {
            problem_id: b.problem_id.clone(),
            points_before: b.points,
            earned_before: b.points_earned,
            points_after: a.points,
            earned_after: a.points_earned,
        })
        .collect()
}
