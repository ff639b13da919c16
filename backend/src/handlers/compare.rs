//! Two views the browser needs beside the run itself: two runs compared question by question
//! (`GET /api/compare`), and one question of a run with every metric of its answer
//! (`GET /api/runs/{id}/questions/{problem_id}`). Both score with `shared::score`, exactly as
//! `kokushi score` does.

use actix_web::{HttpResponse, web};
use kokushi_shared::api::{DifferingQuestion, QuestionView, RunComparison};
use kokushi_shared::score::{ScoreOptions, score_question, score_with};
use serde::Deserialize;

use crate::db::projects::{Owned, Visibility};
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct CompareQuery {
    first: Option<String>,
    second: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
}

/// A run's questions, replies and rule packs, for scoring; 404 for no such run.
pub(crate) async fn scoring(
    state: &AppState,
    id: i64,
) -> Result<crate::db::rule_packs::RunScoring, ApiError> {
    state
        .db
        .run_scoring(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
}

fn run_id(field: &str, value: Option<&str>) -> Result<i64, ApiError> {
    let value = value.ok_or_else(|| {
        ApiError::BadRequest(format!("the query needs {field}=RUN_ID (first=…&second=…)"))
    })?;
    value
        .parse::<i64>()
        .ok()
        .filter(|id| *id > 0)
        .ok_or_else(|| ApiError::BadRequest(format!("{field}={value:?} is not a run id")))
}

/// `GET /api/compare?first=A&second=B[&confidence=0.95]`: the paired comparison (McNemar, the
/// bootstrap interval of the points difference) and the questions where the answers or the
/// verdicts differ. Both runs must ask the same questions (the same exam set and limit).
pub async fn compare(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    query: web::Query<CompareQuery>,
) -> Result<HttpResponse, ApiError> {
    let first_id = run_id("first", query.first.as_deref())?;
    let second_id = run_id("second", query.second.as_deref())?;
    // Runs named in the query pass the project check the access check gives path ids.
    let scope = caller.scope()?;
    for id in [first_id, second_id] {
        if state.db.visibility(&scope, Owned::Run, id).await? != Visibility::Own {
            return Err(ApiError::NotFound(format!("run {id} does not exist")));
        }
    }
    let mut options = ScoreOptions::default();
    if let Some(confidence) = query.confidence {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(ApiError::BadRequest(format!(
                "confidence {confidence} must be between 0 and 1"
            )));
        }
        options.confidence = confidence;
    }
    let summary = |id: i64| {
        let state = state.clone();
        async move {
            state
                .db
                .run_summary(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))
        }
    };
    let (first, second) = (summary(first_id).await?, summary(second_id).await?);
    let first_run = scoring(&state, first_id).await?;
    let second_run = scoring(&state, second_id).await?;
    let (questions, first_predictions, first_packs) = (
        first_run.questions,
        first_run.predictions,
        first_run.rules.packs,
    );
    let (second_questions, second_predictions, second_packs) = (
        second_run.questions,
        second_run.predictions,
        second_run.rules.packs,
    );
    let ids = |qs: &[kokushi_shared::Question]| -> Vec<String> {
        qs.iter().map(|q| q.problem_id.clone()).collect()
    };
    if ids(&questions) != ids(&second_questions) {
        return Err(ApiError::BadRequest(format!(
            "runs {first_id} ({}, {} questions) and {second_id} ({}, {} questions) do not ask \
             the same questions; compare runs of one exam set with the same limit",
            first.exam_set,
            questions.len(),
            second.exam_set,
            second_questions.len()
        )));
    }
    // Scoring with bootstrap resampling is CPU work: keep it off the async workers.
    let confidence = options.confidence;
    let scored = web::block(move || {
        // The paired comparison scores both under the first run's packs (the same rules for
        // both sides of a difference); the second's own totals under its own.
        let run = crate::scoring::run(
            &questions,
            &first_predictions,
            Some(&second_predictions),
            &options,
            &first_packs,
        );
        let other = score_with(&questions, &second_predictions, &options, &second_packs);
        run.map(|run| (run, other, questions))
    })
    .await
    .map_err(|e| ApiError::Internal(format!("comparing stopped: {e}")))?
    .map_err(|e| ApiError::BadRequest(format!("runs {first_id} and {second_id}: {e}")))?;
    let (run, other, questions) = scored;
    let comparison = run.comparison.ok_or_else(|| {
        ApiError::Internal("the comparison was asked for but not made".to_owned())
    })?;
    let shown = |q: &kokushi_shared::score::QuestionScore| {
        q.prediction.as_ref().map(|_| {
            if let Some(number) = &q.number {
                number.clone()
            } else {
                kokushi_shared::exam::join_letters(&q.letters)
            }
        })
    };
    let mut differing = Vec::new();
    for ((q, a), b) in questions
        .iter()
        .zip(&run.report.questions)
        .zip(&other.questions)
    {
        let (first_answer, second_answer) = (shown(a), shown(b));
        if first_answer != second_answer || a.letter_correct != b.letter_correct {
            differing.push(DifferingQuestion {
                problem_id: q.problem_id.clone(),
                text: q.text.clone(),
                gold: q.gold.display(),
                first: first_answer,
                first_correct: a.letter_correct,
                second: second_answer,
                second_correct: b.letter_correct,
            });
        }
    }
    let accuracy = |r: &kokushi_shared::score::ScoreReport| r.overall.accuracy;
    Ok(HttpResponse::Ok().json(RunComparison {
        first_accuracy: accuracy(&run.report),
        second_accuracy: accuracy(&other),
        first,
        second,
        comparison,
        confidence,
        differing,
    }))
}

/// `GET /api/runs/{id}/questions/{problem_id}`: the question (stem, choices, gold, where it
/// sits in the exam), the run's answer and its metrics: verdicts, exact match, the Gestalt
/// similarity of the reply to each choice; and the questions before and after it.
pub async fn question(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (id, problem_id) = path.into_inner();
    let id = super::parse_id("run", &id)?;
    let detail = state
        .db
        .run_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let crate::db::rule_packs::RunScoring {
        questions,
        predictions,
        ..
    } = scoring(&state, id).await?;
    let Some(index) = questions.iter().position(|q| q.problem_id == problem_id) else {
        return Err(ApiError::NotFound(format!(
            "run {id} does not ask question {problem_id:?}"
        )));
    };
    let question = questions[index].clone();
    let reply = predictions.get(&problem_id);
    let options = ScoreOptions::default();
    let score = reply.map(|r| score_question(&question, Some(r), options.mode));
    let answer = detail
        .questions
        .iter()
        .find(|q| q.problem_id == problem_id)
        .and_then(|q| q.answer.clone());
    let at = |i: Option<usize>| {
        i.and_then(|i| questions.get(i))
            .map(|q| q.problem_id.clone())
    };
    Ok(HttpResponse::Ok().json(QuestionView {
        run: detail.run,
        question,
        answer,
        score,
        rules_version: detail.rules_version,
        position: u32::try_from(index + 1).unwrap_or(u32::MAX),
        total: u32::try_from(questions.len()).unwrap_or(u32::MAX),
        previous: at(index.checked_sub(1)),
        next: at(Some(index + 1)),
        credit: detail.credit,
    }))
}
