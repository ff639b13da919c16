//! Tunings over HTTP: `POST /api/tunings` checks everything it can before queueing (the base
//! model in the store, a free adapter name, a recipe within bounds, data with examples), records
//! the tuning and publishes its job (`crate::tuning`), which trains an adapter on an uploaded
//! exam set's questions and answers on whichever worker takes it and streams the loss curves
//! back; when asked, evaluations of the base and the tuned model on another exam set follow.
//! Also the list, one tuning with its curves, and cancel and retry by its owner or an admin.

use actix_web::{HttpResponse, web};
use kokushi_shared::api::{CreateTuning, TuningSummary};
use kokushi_shared::prompt::PromptFormat;
use kokushi_worker::tune::{DataSource, PRESETS, Recipe, RunPlan};

use super::{ensure_owner, ensure_queue_room, parse_id, plain_name};
use crate::db::tunings::NewTuning;
use crate::error::ApiError;
use crate::limits::MAX_MAX_NEW_TOKENS;
use crate::state::AppState;
use crate::tuning::{examples_of, job_of, tune_job};

/// Most steps one tuning may ask for.
const MAX_STEPS: u64 = 1_000_000;

/// `POST /api/tunings`: validates everything it can before queueing (the base model exists in
/// the store, the adapter name is free, the data has examples), then queues the job.
pub async fn create_tuning(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateTuning>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
    let scope = principal.scope()?;
    ensure_queue_room(&state, &principal).await?;
    let base_model = plain_name("base_model", &req.base_model)?;
    // Another project's adapter is not a base the caller may name (nor know of).
    if state
        .db
        .foreign_adapters(&scope)
        .await?
        .contains(&base_model)
    {
        return Err(ApiError::NotFound(format!(
            "base model {base_model:?} is not in the model store"
        )));
    }
    let adapter = plain_name("adapter", &req.adapter)?;
    kokushi_worker::resolve_model(&state.model_store, &base_model)
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    if state.db.adapter_taken(&adapter).await? {
        return Err(ApiError::Conflict(format!(
            "another tuning writes (or wrote) the adapter {adapter:?}; choose another name"
        )));
    }
    kokushi_worker::adapter_folder(&state.model_store, &adapter).map_err(|e| {
        if matches!(e, kokushi_worker::ModelStoreError::Taken { .. }) {
            ApiError::Conflict(e.to_string())
        } else {
            ApiError::BadRequest(e.to_string())
        }
    })?;
    let format = PromptFormat::from_id(&req.prompt_format).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown prompt_format {:?}; known: {}",
            req.prompt_format,
            PromptFormat::ALL.map(PromptFormat::id).join(", ")
        ))
    })?;
    let preset = req.preset.clone().unwrap_or_else(|| "small".to_owned());
    let mut recipe = Recipe::preset(&preset).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "unknown preset {preset:?}; known: {}",
            PRESETS.join(", ")
        ))
    })?;
    if let Some(batch) = req.batch {
        if !(1..=256).contains(&batch) {
            return Err(ApiError::BadRequest(format!(
                "batch {batch} must be between 1 and 256"
            )));
        }
        recipe.batch = batch;
    }
    if let Some(lr) = req.learning_rate {
        if !(lr > 0.0 && lr < 1.0) {
            return Err(ApiError::BadRequest(format!(
                "learning_rate {lr} must be above 0 and below 1"
            )));
        }
        recipe.learning_rate = lr;
    }
    let validation_share = req.validation_share.unwrap_or(0.1);
    if !(0.0..0.9).contains(&validation_share) {
        return Err(ApiError::BadRequest(format!(
            "validation_share {validation_share} must be at least 0 and below 0.9"
        )));
    }
    let data = state
        .db
        .readable_exam_set(&scope, req.data_exam_set_id)
        .await?
        .ok_or_else(|| {
            ApiError::NotFound(format!("exam set {} does not exist", req.data_exam_set_id))
        })?;
    if let Some(chain) = &req.evaluate {
        state
            .db
            .readable_exam_set(&scope, chain.exam_set_id)
            .await?
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "exam set {} (to evaluate on) does not exist",
                    chain.exam_set_id
                ))
            })?;
        if chain.limit == Some(0) {
            return Err(ApiError::BadRequest(
                "evaluate.limit must be at least 1".to_owned(),
            ));
        }
        if let Some(tokens) = chain.max_new_tokens
            && !(1..=MAX_MAX_NEW_TOKENS).contains(&tokens)
        {
            return Err(ApiError::BadRequest(format!(
                "evaluate.max_new_tokens {tokens} must be between 1 and {}",
                MAX_MAX_NEW_TOKENS
            )));
        }
    }
    let questions = state.db.exam_questions(data.id).await?;
    let seed = req.seed.unwrap_or(0);
    let mut plan = RunPlan {
        base_model: base_model.clone(),
        preset: preset.clone(),
        recipe,
        prompt_format: format.id().to_owned(),
        sources: Vec::new(),
        seed,
        validation_share,
        steps: 0,
        eval_every: 0,
        checkpoint_every: 0,
    };
    // The split depends on the seed and the share alone, not on the steps set below.
    let (train, validation) = examples_of(&plan, &questions).map_err(ApiError::BadRequest)?;
    if train.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "exam set {} ({}) has no text-only question with a published answer to train on",
            data.id, data.name
        )));
    }
    let steps = req
        .steps
        .unwrap_or_else(|| train.len().div_ceil(plan.recipe.batch) as u64);
    if !(1..=MAX_STEPS).contains(&steps) {
        return Err(ApiError::BadRequest(format!(
            "steps {steps} must be between 1 and {MAX_STEPS}"
        )));
    }
    plan.steps = steps;
    plan.eval_every = (steps / 10).max(1);
    plan.checkpoint_every = (steps / 10).max(1);
    plan.sources = vec![DataSource {
        kind: "exam".to_owned(),
        path: format!("exam set {} v{} ({})", data.name, data.version, data.id),
        sha256: data.content_hash.clone(),
        examples: questions.len(),
    }];
    let new = NewTuning {
        adapter,
        base_model,
        data_exam_set_id: data.id,
        prompt_format: format.id().to_owned(),
        preset,
        plan: serde_json::to_string(&plan)
            .map_err(|e| ApiError::Internal(format!("encoding the plan: {e}")))?,
        steps,
        priority: req.priority,
        evaluate: req.evaluate,
        created_by: Some(principal.user.id),
        project_id: scope.project,
    };
    let row = state.db.create_tuning(&new).await?;
    let summary = state
        .db
        .tuning_summary(row.tuning_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tuning {} vanished", row.tuning_id)))?;
    // Recorded as queued before it is published: the reconciler republishes it if this fails.
    state
        .queue
        .publish_job(&tune_job(&row, &plan, train, validation))
        .await?;
    tracing::info!(
        tuning_id = row.tuning_id,
        job_id = row.job_id,
        steps,
        "tuning queued"
    );
    Ok(HttpResponse::Created().json(summary))
}

/// `GET /api/tunings`: the project's tunings, newest first, with their progress.
pub async fn tunings(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::LISTS)?;
    let (tunings, total) = state.db.tunings(&caller.scope()?, page).await?;
    Ok(page.respond(&req, &tunings, total))
}

/// `GET /api/tunings/{id}`: a tuning and its loss curves (training steps and validations).
pub async fn tuning_detail(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("tuning", &path)?;
    let mut detail = state
        .db
        .tuning_detail(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tuning {id} does not exist")))?;
    if detail.tuning.status == kokushi_shared::api::RunStatus::Queued {
        detail.waiting = waiting_for(&state, id).await?;
    }
    Ok(HttpResponse::Ok().json(detail))
}

/// Why queued tuning `id` waits, when no live worker can hold its base model for its longest
/// sequence (estimated as its job was, from its plan alone).
async fn waiting_for(
    state: &AppState,
    id: i64,
) -> Result<Option<kokushi_shared::api::Waiting>, ApiError> {
    let Some((base, plan)) = state.db.tuning_plan(id).await? else {
        return Ok(None);
    };
    let Ok(plan) = serde_json::from_str::<RunPlan>(&plan) else {
        return Ok(None);
    };
    let work = kokushi_worker::eval::Workload {
        positions: plan.recipe.max_seq_len,
        batch: 1,
        training: true,
    };
    Ok(crate::routing::waiting(state, &base, work).await)
}

/// `POST /api/tunings/{id}/cancel`: stops a queued or running tuning after its current step;
/// its last checkpoint stays in the adapter folder. 409 once it has finished.
pub async fn cancel_tuning(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("tuning", &path)?;
    let owner = state.db.tuning_owner(id).await?;
    ensure_owner(&caller, "tuning", id, owner, "cancel")?;
    match state.db.cancel_tuning(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "tuning {id} is {} already; only a queued or running tuning can be cancelled",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("tuning {id} does not exist"))),
        Ok(Some((job_id, attempt))) => state.queue.cancel_job(job_id, attempt).await?,
    }
    tracing::info!(tuning_id = id, "tuning cancelled");
    Ok(HttpResponse::Ok().json(summary_of(&state, id).await?))
}

/// `POST /api/tunings/{id}/retry`: queues a failed or cancelled tuning again; the worker resumes
/// from the adapter folder's last checkpoint. 409 for a queued, running or succeeded tuning.
pub async fn retry_tuning(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("tuning", &path)?;
    let owner = state.db.tuning_owner(id).await?;
    ensure_owner(&principal, "tuning", id, owner, "retry")?;
    ensure_queue_room(&state, &principal).await?;
    let row = match state.db.retry_tuning(id).await? {
        Err(status) => {
            return Err(ApiError::Conflict(format!(
                "tuning {id} is {}; only a failed or cancelled tuning can be retried",
                status.as_str()
            )));
        }
        Ok(None) => return Err(ApiError::NotFound(format!("tuning {id} does not exist"))),
        Ok(Some(row)) => row,
    };
    let job = job_of(&state.db, &row).await?;
    state.queue.publish_job(&job).await?;
    tracing::info!(tuning_id = id, job_id = row.job_id, "tuning retried");
    Ok(HttpResponse::Ok().json(summary_of(&state, id).await?))
}

/// A tuning's summary after a change to it.
async fn summary_of(state: &AppState, id: i64) -> Result<TuningSummary, ApiError> {
    state
        .db
        .tuning_summary(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("tuning {id} vanished")))
}
