//! LLM judges below their endpoints (`handlers::judges`): the questions a judge job asks (the
//! judge prompt filled with each item's blind view), the job rebuilt from the database when
//! it is retried, finished with items missing, or lost with the queue; one judge's identity
//! (`judge_key`); and a judge run's agreement with the humans and its calibration gate
//! (`kokushi_shared::judge`).
//!
//! Judge grades live in their own table and are read only here and by the judge endpoints:
//! the human verdicts, the agreement among annotators and the human-adjusted accuracy
//! (`crate::grading`) never read them.

use std::collections::HashMap;

use kokushi_shared::grading::{ItemState, Verdict};
use kokushi_shared::job::{EvalSettings, JobQuestion, JudgeJob};
use kokushi_shared::judge::{
    CalibrationItem, ItemView, JudgeAgreement, JudgeItemGrade, JudgeRunDetail, calibrate, gate,
    render, verdict_choices,
};
use sha2::{Digest, Sha256};

use crate::db::grading::ItemRow;
use crate::db::judges::JudgeRunRow;
use crate::db::{Db, DbError};
use crate::grading::resolve_all;

/// SHA-256 of `text`, hex.
pub fn sha256_hex(text: &str) -> String {
    Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// One judge: the model, the adapter, the prompt (by its hash) and how it is asked. Runs of
/// the same key are the same judge, whose calibration carries over.
pub fn judge_key(
    model: &str,
    adapter: Option<&str>,
    prompt_hash: &str,
    settings: &EvalSettings,
) -> String {
    let identity = serde_json::json!({
        "model": model,
        "adapter": adapter,
        "prompt": prompt_hash,
        "prompt_format": settings.prompt_format.id(),
        "chat_template": settings.chat_template,
        "scoring": settings.scoring.as_str(),
        "loglik_target": settings.loglik_target.as_str(),
        "max_new_tokens": settings.max_new_tokens,
        "keep_quantization": settings.keep_quantization,
    });
    sha256_hex(&identity.to_string())[..16].to_owned()
}

/// The question the judge is asked about each of `items`: the template filled with the item's
/// blind view (question, choices, published answer, the model's output and what the parser
/// read), the verdicts as choices, the item's id as the problem id. An item whose answer or
/// question is gone is left out.
pub async fn questions_of(
    db: &Db,
    items: &[ItemRow],
    template: &str,
) -> Result<Vec<JobQuestion>, DbError> {
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let Some((answer, question)) = db
            .answer_with_question(item.run_id, &item.problem_id)
            .await?
        else {
            continue;
        };
        let gold = question.gold.display();
        let parsed = answer.extracted.display();
        let text = render(
            template,
            &ItemView {
                question: &question.text,
                choices: &question.choices,
                gold: &gold,
                output: &answer.raw_output,
                parsed: &parsed,
            },
        );
        out.push(JobQuestion {
            problem_id: item.id.to_string(),
            text,
            choices: verdict_choices(),
            exam: None,
        });
    }
    Ok(out)
}

/// The job of a queued or running judge run, asking only the items it has not graded yet;
/// `None` when the run is finished or gone.
pub async fn job_of(db: &Db, judge_run_id: i64) -> Result<Option<JudgeJob>, DbError> {
    let Some(run) = db.judge_run(judge_run_id).await? else {
        return Ok(None);
    };
    if !matches!(
        run.summary.status,
        kokushi_shared::api::RunStatus::Queued | kokushi_shared::api::RunStatus::Running
    ) {
        return Ok(None);
    }
    let Some((job_id, attempt)) = db.judge_job_attempt(judge_run_id).await? else {
        return Ok(None);
    };
    let missing: std::collections::HashSet<i64> = db
        .judge_items_missing(judge_run_id)
        .await?
        .into_iter()
        .collect();
    let state = db.grading_state(Some(run.summary.task_id)).await?;
    let items: Vec<ItemRow> = state
        .items
        .into_iter()
        .filter(|i| missing.contains(&i.id))
        .collect();
    Ok(Some(JudgeJob {
        job_id,
        judge_run_id,
        attempt,
        model: run.summary.model.clone(),
        adapter: run.summary.adapter.clone(),
        questions: questions_of(db, &items, &run.template).await?,
        settings: run.settings,
        priority: kokushi_shared::job::Priority::Normal,
        needs: Default::default(),
    }))
}

/// Grades a judge run's detail lists at most (disagreements first; the export has every
/// verdict), and the characters of a reply each shows.
pub const MAX_LISTED_GRADES: usize = 500;
pub const MAX_LISTED_REPLY_CHARS: usize = 1_000;

/// The judge's grades of a task's items beside the human verdicts (`state`: the task's
/// grading state), and its agreement with them.
async fn figures(
    db: &Db,
    run: &JudgeRunRow,
    state: &crate::db::grading::GradingState,
) -> Result<(JudgeAgreement, Vec<JudgeItemGrade>), DbError> {
    let resolved = resolve_all(state);
    let mut grades = db.judge_grades(run.summary.id).await?;
    let mut items = Vec::with_capacity(resolved.len());
    let mut listed = Vec::with_capacity(resolved.len());
    for r in &resolved {
        let human = match r.state {
            ItemState::Agreed | ItemState::Adjudicated => r.decision.as_ref().map(|d| d.0),
            ItemState::Pending | ItemState::Disputed => None,
        };
        let judge = grades.remove(&r.item.id);
        items.push(CalibrationItem {
            human,
            annotators: r
                .grades
                .iter()
                .map(|(_, g)| (g.by.clone(), g.verdict))
                .collect(),
            judge: judge.as_ref().map(|g| g.verdict),
        });
        if let Some(g) = judge {
            listed.push(JudgeItemGrade {
                item_id: r.item.id,
                problem_id: r.item.problem_id.clone(),
                verdict: g.verdict,
                rationale: g.rationale,
                flags: g.flags,
                raw_output: g.raw_output.chars().take(MAX_LISTED_REPLY_CHARS).collect(),
                error: g.error,
                human,
            });
        }
    }
    // Disagreements with the humans first, then abstentions, then items without a human
    // verdict, then agreements.
    let rank = |g: &JudgeItemGrade| match (g.human, g.verdict) {
        (Some(h), Some(j)) if h != j => 0,
        (Some(_), None) => 1,
        (None, _) => 2,
        _ => 3,
    };
    listed.sort_by_key(|g| (rank(g), g.item_id));
    listed.truncate(MAX_LISTED_GRADES);
    Ok((calibrate(&items), listed))
}

/// A judge run's detail: its agreement with the humans on its task, its gate, its grades.
pub async fn detail(
    db: &Db,
    run: JudgeRunRow,
    exam_set_id: i64,
) -> Result<JudgeRunDetail, DbError> {
    let state = db.grading_state(Some(run.summary.task_id)).await?;
    details(db, vec![run], exam_set_id, &state)
        .await?
        .pop()
        .ok_or_else(|| DbError::Refused("the judge run vanished".to_owned()))
}

/// The details of `runs`, all of one task whose grading state is `state` (read once however
/// many runs there are; a calibration run's figures are worked out once per run too).
pub async fn details(
    db: &Db,
    runs: Vec<JudgeRunRow>,
    exam_set_id: i64,
    state: &crate::db::grading::GradingState,
) -> Result<Vec<JudgeRunDetail>, DbError> {
    let mut out = Vec::with_capacity(runs.len());
    let mut bases: HashMap<i64, JudgeAgreement> = HashMap::new();
    for mut run in runs {
        run.summary.cost = db
            .job_cost(crate::db::costs::CostOf::Judge(run.summary.id))
            .await?;
        let settings = db.judging_settings(run.project_id).await?;
        let (agreement, grades) = figures(db, &run, state).await?;
        let basis = db
            .calibration_run(run.project_id, &run.summary.judge_key, exam_set_id)
            .await?;
        let gate = match basis {
            Some((id, _)) if id == run.summary.id => {
                gate(settings.threshold, Some((id, &agreement)))
            }
            Some((id, task)) => {
                if !bases.contains_key(&id)
                    && let Some(basis_run) = db.judge_run(id).await?
                {
                    let basis_state = if task == run.summary.task_id {
                        None
                    } else {
                        Some(db.grading_state(Some(task)).await?)
                    };
                    let (figures, _) =
                        figures(db, &basis_run, basis_state.as_ref().unwrap_or(state)).await?;
                    bases.insert(id, figures);
                }
                gate(settings.threshold, bases.get(&id).map(|f| (id, f)))
            }
            None => gate(settings.threshold, None),
        };
        out.push(JudgeRunDetail {
            calibration_task: settings.calibration_tasks.contains(&run.summary.task_id),
            run: run.summary,
            agreement,
            gate,
            grades,
        });
    }
    Ok(out)
}

/// The judge verdict of each item by the task's latest judge run, with whether that judge is
/// calibrated: the grading export's judge columns.
pub async fn latest_verdicts(
    db: &Db,
    task_id: i64,
    exam_set_id: i64,
) -> Result<Option<(JudgeRunDetail, HashMap<i64, Option<Verdict>>)>, DbError> {
    let Some(run) = db.judge_runs_of_task(task_id).await?.into_iter().next() else {
        return Ok(None);
    };
    let detail = detail(db, run, exam_set_id).await?;
    let verdicts = detail
        .grades
        .iter()
        .map(|g| (g.item_id, g.verdict))
        .collect();
    Ok(Some((detail, verdicts)))
}
