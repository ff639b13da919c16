//! Evaluation runs: `POST /api/runs` checks a request (prompt format, model and adapter names,
//! limits) and records the run as queued before publishing its job; a run's detail, its
//! answers exported (JSON lines, CSV, `kokushi eval`'s predictions lines) and scored with
//! `shared::score` as `kokushi score` scores them; cancel and retry, by its owner or an admin.

use actix_web::{HttpResponse, web};
use kokushi_shared::api::CreateRun;
use kokushi_shared::prompt::PromptFormat;
use serde::Deserialize;

use super::{download, ensure_owner, ensure_queue_room, parse_id, plain_name};
use crate::db::runs::NewRun;
use crate::error::ApiError;
use crate::limits::{DEFAULT_MAX_NEW_TOKENS, MAX_MAX_NEW_TOKENS, MAX_SHOTS};
use crate::state::AppState;

/// The model a run may name: a plain name in the model store, or `openai:<base-url>#<model>`
/// whose server is on the operator's allow-list (`--remote-model-allow`), in its normal form.
fn run_model(state: &AppState, model: &str) -> Result<String, ApiError> {
    let Some(spec) = kokushi_worker::remote::RemoteSpec::parse(model) else {
        return plain_name("model", model);
    };
    let spec = spec.map_err(ApiError::BadRequest)?;
    if kokushi_worker::remote::is_allowed(&state.remote_model_allow, &spec.base_url) {
        return Ok(spec.to_string());
    }
    Err(ApiError::BadRequest(
        if state.remote_model_allow.is_empty() {
            "this portal lets runs name no remote model: its operator lists the servers runs may \
         use with --remote-model-allow (docs/remote-models.md)"
                .to_owned()
        } else {
            format!(
                "{} is not among the servers this portal lets runs name: {}",
                spec.base_url,
                state.remote_model_allow.join(", ")
            )
        },
    ))
}

/// `POST /api/runs`: a new run, recorded as queued (with its job) before the job is published;
/// 201 with its summary. Its cost estimate is kept with its job before the job is published.
pub async fn create_run(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
    ensure_queue_room(&state, &principal).await?;
    let new = new_run(&state, &principal, &req).await?;
    let job = state
        .db
        .create_run(&new)
        .await?
        .ok_or_else(|| missing_sets(&new))?;
    state.leaderboard.clear();
    // The reply describes the run as created (queued), read before publishing so that a fast
    // worker cannot make it say otherwise.
    let summary = state
        .db
        .run_summary(job.run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} vanished", job.run_id)))?;
    let project = principal.scope()?.project;
    crate::cost::keep_estimate(
        &state.db,
        &state.model_store,
        job.job_id,
        planned(&job, project),
    )
    .await;
    // The run is recorded as queued before it is published: if publishing fails, the
    // reconciler publishes it at the next start.
    let (run_id, job_id) = (job.run_id, job.job_id);
    state.queue.publish_job(&job.into()).await?;
    tracing::info!(run_id, job_id, model = %summary.model, "run queued");
    Ok(HttpResponse::Created().json(summary))
}

/// What a run's job puts to its model, for its cost estimate.
fn planned(job: &kokushi_shared::job::EvalJob, project_id: i64) -> crate::cost::Planned {
    crate::cost::Planned {
        project_id,
        model: job.model.clone(),
        adapter: job.adapter.clone(),
        settings: job.settings.clone(),
        shot_pool: job.shot_pool.clone(),
        questions: job.questions.clone(),
        one_answer: false,
    }
}

/// `POST /api/runs/estimate`: what the run the body describes would cost — a dry run: every
/// prompt built as the worker will, counted with the model's tokenizer, timed with its measured
/// speed. Nothing is queued or written.
pub async fn estimate_run(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateRun>,
) -> Result<HttpResponse, ApiError> {
    // The turn first: the dry run's transaction is work too.
    let turn = crate::cost::turn()?;
    let new = new_run(&state, &principal, &body).await?;
    let job = state
        .db
        .preview_run(&new)
        .await?
        .ok_or_else(|| missing_sets(&new))?;
    let planned = planned(&job, new.project_id);
    let estimate = crate::cost::estimate(&state.db, &state.model_store, planned, turn).await?;
    Ok(HttpResponse::Ok().json(estimate))
}

/// `GET /api/runs/{id}/cost`: the run's estimate as it was queued, and what it took.
pub async fn run_cost(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    let cost = state.db.job_cost(crate::db::costs::CostOf::Run(id)).await?;
    Ok(HttpResponse::Ok().json(cost))
}

/// The model and adapter a run (or a judge run) names, checked: the model a plain name in the
/// store or an allowed remote model, the adapter a plain name; neither another project's adapter
/// (not the caller's to use, nor to know of, by any field).
pub(super) async fn model_and_adapter(
    state: &AppState,
    scope: &crate::db::projects::Scope,
    model: &str,
    adapter: Option<&str>,
) -> Result<(String, Option<String>), ApiError> {
    let model = run_model(state, model.trim())?;
    let foreign = state.db.foreign_adapters(scope).await?;
    if foreign.contains(&model) {
        return Err(ApiError::NotFound(format!(
            "model {model:?} is not in the model store"
        )));
    }
    let adapter = match adapter.map(str::trim) {
        None | Some("") => None,
        Some(name) => {
            let name = plain_name("adapter", name)?;
            if foreign.contains(&name) {
                return Err(ApiError::NotFound(format!(
                    "adapter {name:?} is not in the model store"
                )));
            }
            Some(name)
        }
    };
    Ok((model, adapter))
}

/// The refusal of a run whose exam set (or shot pool) the caller cannot read.
fn missing_sets(new: &NewRun) -> ApiError {
    ApiError::NotFound(match new.shot_pool_exam_set_id {
        Some(pool) if pool != new.exam_set_id => format!(
            "exam set {} or exam set {pool} (the shot pool) does not exist",
            new.exam_set_id
        ),
        _ => format!("exam set {} does not exist", new.exam_set_id),
    })
}

/// The run a request describes, checked (prompt format, shots, model and adapter names,
/// limits).
async fn new_run(
    state: &AppState,
    principal: &crate::auth::Principal,
    req: &CreateRun,
) -> Result<NewRun, ApiError> {
    let scope = principal.scope()?;
    let chat_template = req.prompt_format == "chat_template";
    let prompt_format = if chat_template {
        PromptFormat::ChatmlJa
    } else {
        PromptFormat::from_id(&req.prompt_format).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown prompt_format {:?}; known: {}, chat_template",
                req.prompt_format,
                PromptFormat::ALL.map(PromptFormat::id).join(", ")
            ))
        })?
    };
    if req.shots > MAX_SHOTS {
        return Err(ApiError::BadRequest(format!(
            "shots {} must be between 0 and {MAX_SHOTS}",
            req.shots
        )));
    }
    let shot_seed = req
        .shot_seed
        .unwrap_or(kokushi_shared::job::DEFAULT_SHOT_SEED);
    if i64::try_from(shot_seed).is_err() {
        return Err(ApiError::BadRequest(format!(
            "shot_seed {shot_seed} must be below 2^63"
        )));
    }
    let (model, adapter) =
        model_and_adapter(state, &scope, &req.model, req.adapter.as_deref()).await?;
    let max_new_tokens = req.max_new_tokens.unwrap_or(DEFAULT_MAX_NEW_TOKENS);
    if !(1..=MAX_MAX_NEW_TOKENS).contains(&max_new_tokens) {
        return Err(ApiError::BadRequest(format!(
            "max_new_tokens {max_new_tokens} must be between 1 and {MAX_MAX_NEW_TOKENS}"
        )));
    }
    if req.limit == Some(0) {
        return Err(ApiError::BadRequest("limit must be at least 1".to_owned()));
    }
    Ok(NewRun {
        exam_set_id: req.exam_set_id,
        model,
        adapter,
        settings: kokushi_shared::job::EvalSettings {
            prompt_format,
            chat_template,
            scoring: req.scoring,
            loglik_target: req.loglik_target,
            max_new_tokens,
            shots: req.shots,
            shot_seed,
            keep_quantization: req.keep_quantization,
        },
        shot_pool_exam_set_id: req.shot_pool_exam_set_id.filter(|_| req.shots > 0),
        limit: req.limit,
        priority: req.priority,
        created_by: Some(principal.user.id),
        project_id: scope.project,
    })
}

/// `GET /api/runs/{id}[?questions=false]`: the run with every question and its answer (or,
/// with `questions=false`, without them: what a page of the run shows above its questions,
/// which it reads a page at a time from `GET /api/runs/{id}/questions`), and its
/// human-adjusted accuracy where its answers were graded.
pub async fn run_detail(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<kokushi_shared::api::RunDetailQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    let not_found = || ApiError::NotFound(format!("run {id} does not exist"));
    let mut detail = if query.questions == Some(false) {
        let (exam_set_id, run) = state.db.run_head(id).await?.ok_or_else(not_found)?;
        let outcomes = state
            .run_outcomes
            .of(&state.db, id, run.tally.answered)
            .await?;
        let facts = state.question_facts.of(&state.db, exam_set_id).await?;
        let mut specialties: Vec<String> = outcomes
            .questions
            .iter()
            .filter_map(|q| facts.get(&q.problem_id)?.specialty.clone())
            .collect();
        specialties.sort();
        specialties.dedup();
        kokushi_shared::api::RunDetail {
            credit: kokushi_shared::igakuqa::credit_for(
                outcomes.questions.iter().map(|q| q.problem_id.as_str()),
            ),
            run,
            rules_version: outcomes.rules_version.clone(),
            questions: Vec::new(),
            specialties,
            waiting: None,
        }
    } else {
        state.db.run_detail(id).await?.ok_or_else(not_found)?
    };
    crate::grading::attach_human(&state.db, std::slice::from_mut(&mut detail.run), None).await?;
    if detail.run.status == kokushi_shared::api::RunStatus::Queued {
        // Estimated as its job was: one prompt and a long answer.
        let work = kokushi_worker::eval_workload(256, 1);
        detail.waiting = crate::routing::waiting(&state, &detail.run.model, work).await;
    }
    Ok(HttpResponse::Ok().json(detail))
}

/// The longest specialty a question filter may name (longer names no question).
const MAX_SPECIALTY_BYTES: usize = 200;

/// `GET /api/runs/{id}/questions[?show=…][&specialty=…][&limit=N&offset=M]`: one page of the
/// run's questions in order, each with its answer so far (default 100 a page, at most 1,000;
/// `X-Total-Count` is how many the filter keeps). `show`: `all` (default), `wrong`,
/// `parse-failed`, `multi-answer` or `unanswered`; `specialty`: only that clinical specialty.
/// Only the page's questions are read in full.
pub async fn run_questions(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    path: web::Path<String>,
    query: web::Query<kokushi_shared::api::RunQuestionsQuery>,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    use kokushi_shared::api::QuestionFilter;
    let id = parse_id("run", &path)?;
    let page = page.page(crate::page::QUESTIONS)?;
    let show = match query.show.as_deref().map(str::trim) {
        None | Some("") => QuestionFilter::All,
        Some(other) => QuestionFilter::from_id(other).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "show: {} is none of {}",
                crate::auth::for_log(other),
                QuestionFilter::ALL.map(QuestionFilter::id).join(", ")
            ))
        })?,
    };
    let specialty = query
        .specialty
        .as_deref()
        .map(str::trim)
        .filter(|s| !s.is_empty());
    if specialty.is_some_and(|s| s.len() > MAX_SPECIALTY_BYTES) {
        return Err(ApiError::BadRequest(format!(
            "specialty: longer than {MAX_SPECIALTY_BYTES} bytes"
        )));
    }
    let (exam_set_id, answered) = state
        .db
        .run_set_and_answered(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    let outcomes = state.run_outcomes.of(&state.db, id, answered).await?;
    let facts = state.question_facts.of(&state.db, exam_set_id).await?;
    let kept: Vec<String> = outcomes
        .questions
        .iter()
        .filter(|q| {
            let fact = facts.get(&q.problem_id);
            show.keeps_facts(q.answer, fact.map_or(1, |f| f.gold_letters))
                && specialty.is_none_or(|s| fact.and_then(|f| f.specialty.as_deref()) == Some(s))
        })
        .map(|q| q.problem_id.clone())
        .collect();
    let total = u64::try_from(kept.len()).unwrap_or(u64::MAX);
    let questions = state
        .db
        .run_questions(id, exam_set_id, &page.slice(kept))
        .await?;
    Ok(page.annotate(HttpResponse::Ok().json(questions), &req, total))
}

/// `POST /api/runs/{id}/cancel`: stops a queued or running run; its answers so far are kept.
/// The worker on it stops before its next question. 409 when the run is already finished.
pub async fn cancel_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    ensure_owner(&caller, "run", id, state.db.run_owner(id).await?, "cancel")?;
    match state.db.cancel_run(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "run {id} is {} already; only a queued or running run can be cancelled",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("run {id} does not exist"))),
        Ok(Some((job_id, attempt))) => state.queue.cancel_job(job_id, attempt).await?,
    }
    state.leaderboard.clear();
    tracing::info!(run_id = id, "run cancelled");
    let summary = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} vanished")))?;
    Ok(HttpResponse::Ok().json(summary))
}

/// `POST /api/runs/{id}/retry`: queues a failed or cancelled run again; it resumes with the
/// questions it has no answer to yet. 409 for a run that is queued, running or succeeded.
pub async fn retry_run(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    ensure_owner(
        &principal,
        "run",
        id,
        state.db.run_owner(id).await?,
        "retry",
    )?;
    // A remote model must still be allowed: the operator's list may have shrunk since.
    if let Some(run) = state.db.run_lineage_row(id).await? {
        run_model(&state, &run.model)?;
    }
    ensure_queue_room(&state, &principal).await?;
    let job = match state.db.retry_run(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "run {id} is {}; only a failed or cancelled run can be retried",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("run {id} does not exist"))),
        Ok(Some(job)) => job,
    };
    state.leaderboard.clear();
    let summary = state
        .db
        .run_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} vanished")))?;
    let (remaining, job_id) = (job.questions.len(), job.job_id);
    state.queue.publish_job(&job.into()).await?;
    tracing::info!(run_id = id, job_id, remaining, "run retried");
    Ok(HttpResponse::Ok().json(summary))
}

/// The query of a run's export: `format`.
#[derive(Deserialize)]
pub struct ExportQuery {
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/runs/{id}/export?format=jsonl|csv|predictions`: the run's answers; the JSON lines
/// are a predictions file that `kokushi score` reads, and `predictions` is exactly the file
/// `kokushi eval` writes for the same model and settings.
pub async fn run_export(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ExportQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    let detail = state
        .db
        .run_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
    match query.format.as_deref().unwrap_or("jsonl") {
        "jsonl" => Ok(download(
            crate::export::answers_jsonl(&detail),
            "application/x-ndjson; charset=utf-8",
            &format!("run-{id}-answers.jsonl"),
        )),
        "csv" => Ok(download(
            crate::export::answers_csv(&detail),
            "text/csv; charset=utf-8",
            &format!("run-{id}-answers.csv"),
        )),
        "predictions" => {
            let lines = state
                .db
                .run_prediction_lines(id)
                .await?
                .ok_or_else(|| ApiError::NotFound(format!("run {id} does not exist")))?;
            let mut body = String::new();
            for line in &lines {
                body.push_str(
                    &serde_json::to_string(line).map_err(|e| ApiError::Internal(e.to_string()))?,
                );
                body.push('\n');
            }
            Ok(download(
                body,
                "application/x-ndjson; charset=utf-8",
                &format!("run-{id}-predictions.jsonl"),
            ))
        }
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: jsonl, csv, predictions"
        ))),
    }
}

/// The query of a run's scores: `mode`, `confidence`, `format`.
#[derive(Deserialize)]
pub struct ScoreQuery {
    #[serde(default)]
    mode: Option<String>,
    #[serde(default)]
    confidence: Option<f64>,
    /// `json` (default) or `csv` (one row per exam year, then `all`, as `kokushi score`).
    #[serde(default)]
    format: Option<String>,
}

/// `GET /api/runs/{id}/score[?mode=strict|lenient][&confidence=0.95]`: the run's answers
/// scored by `shared::score`, exactly as `kokushi score` scores a run export
/// (docs/scoring.md): per year, overall, and by block, section and specialty.
pub async fn run_score(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<ScoreQuery>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("run", &path)?;
    let mut options = kokushi_shared::score::ScoreOptions::default();
    if let Some(mode) = query.mode.as_deref() {
        options.mode = kokushi_shared::score::LetterMode::from_id(mode).ok_or_else(|| {
            ApiError::BadRequest(format!("unknown mode {mode:?}; known: strict, lenient"))
        })?;
    }
    if let Some(confidence) = query.confidence {
        if !(confidence > 0.0 && confidence < 1.0) {
            return Err(ApiError::BadRequest(format!(
                "confidence {confidence} must be between 0 and 1"
            )));
        }
        options.confidence = confidence;
    }
    let s = super::compare::scoring(&state, id).await?;
    // Bootstrap resampling is CPU work: keep it off the async workers.
    let report = web::block(move || {
        kokushi_shared::score::score_with(&s.questions, &s.predictions, &options, &s.rules.packs)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("scoring stopped: {e}")))?;
    match query.format.as_deref().unwrap_or("json") {
        "json" => Ok(HttpResponse::Ok().json(report)),
        "csv" => Ok(download(
            crate::scoring::render_csv(&crate::scoring::Scoring {
                report,
                comparison: None,
            }),
            "text/csv; charset=utf-8",
            &format!("run-{id}-metrics.csv"),
        )),
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: json, csv"
        ))),
    }
}
