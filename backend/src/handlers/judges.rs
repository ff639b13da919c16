//! LLM judges over HTTP (docs/judges.md): judge prompts (the built-in one and each project's
//! versions), judge runs on a grading task (queued as jobs like runs; cancel, retry), each
//! with its agreement with the humans and its calibration gate, and a project's judging
//! settings (threshold, calibration tasks).
//!
//! Everything here is for researchers: an annotator's endpoints never carry a judge's grade,
//! and judge grades never reach the human verdicts or the human-adjusted accuracy
//! (`crate::judging`).

use actix_web::{HttpResponse, web};
use kokushi_shared::judge::{
    BUILTIN_NAME, BUILTIN_TEMPLATE, BUILTIN_VERSION, CreateJudgePrompt, CreateJudgeRun,
    JudgePrompt, JudgingSettings, validate_template,
};
use kokushi_shared::prompt::PromptFormat;

use super::{ensure_owner, ensure_queue_room, parse_id};
use crate::db::judges::NewJudgeRun;
use crate::error::ApiError;
use crate::judging::{judge_key, sha256_hex};
use crate::state::AppState;

/// The most versions of one judge prompt a project keeps, and of all its judge prompts.
pub const MAX_PROMPT_VERSIONS: u64 = 100;
pub const MAX_PROMPTS: u64 = 1_000;

/// The most items one judge run grades.
pub const MAX_JUDGE_ITEMS: usize = 5_000;
/// The longest reply a generating judge may give.
pub const MAX_JUDGE_NEW_TOKENS: u32 = 512;
/// The judge reply length when the request names none.
pub const DEFAULT_JUDGE_NEW_TOKENS: u32 = 64;

/// The built-in judge prompt.
fn builtin() -> JudgePrompt {
    JudgePrompt {
        name: BUILTIN_NAME.to_owned(),
        version: BUILTIN_VERSION,
        hash: sha256_hex(BUILTIN_TEMPLATE),
        template: BUILTIN_TEMPLATE.to_owned(),
        builtin: true,
        created_by: String::new(),
        created_at: String::new(),
    }
}

/// `GET /api/judge-prompts`: the built-in judge prompt, then every version of the project's.
pub async fn judge_prompts(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let mut prompts = vec![builtin()];
    prompts.extend(state.db.judge_prompts(caller.scope()?.project).await?);
    Ok(HttpResponse::Ok().json(prompts))
}

/// A judge prompt's name: 1–64 of `a-z 0-9 _ -`, not the built-in one's.
fn prompt_name(name: &str) -> Result<&str, ApiError> {
    let name = name.trim();
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
    {
        return Err(ApiError::BadRequest(format!(
            "judge prompt name {name:?} must be 1 to 64 of a-z, 0-9, _ and -"
        )));
    }
    if name == BUILTIN_NAME {
        return Err(ApiError::BadRequest(format!(
            "{BUILTIN_NAME} is the built-in judge prompt; name yours otherwise"
        )));
    }
    Ok(name)
}

/// `POST /api/judge-prompts`: a new version of one of the project's judge prompts; 201 with it.
pub async fn add_judge_prompt(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateJudgePrompt>,
) -> Result<HttpResponse, ApiError> {
    let scope = caller.scope()?;
    let name = prompt_name(&body.name)?;
    validate_template(&body.template).map_err(ApiError::BadRequest)?;
    let (total, named) = state.db.judge_prompt_counts(scope.project, name).await?;
    if named >= MAX_PROMPT_VERSIONS || total >= MAX_PROMPTS {
        return Err(ApiError::Conflict(format!(
            "a project keeps at most {MAX_PROMPT_VERSIONS} versions of a judge prompt and \
             {MAX_PROMPTS} in all; it has {named} of {name:?} and {total} in all"
        )));
    }
    let hash = sha256_hex(&body.template);
    let version = state
        .db
        .add_judge_prompt(scope.project, name, &body.template, &hash, caller.user.id)
        .await?;
    let prompt = state
        .db
        .judge_prompts(scope.project)
        .await?
        .into_iter()
        .find(|p| p.name == name && p.version == version)
        .ok_or_else(|| ApiError::Internal(format!("judge prompt {name} v{version} vanished")))?;
    Ok(HttpResponse::Created().json(prompt))
}

/// The judge prompt a request names: the built-in one, or a version (the latest when none is
/// named) of one of the project's.
async fn named_prompt(
    state: &AppState,
    project: i64,
    name: Option<&str>,
    version: Option<u32>,
) -> Result<JudgePrompt, ApiError> {
    let name = name.map(str::trim).filter(|n| !n.is_empty());
    match name {
        None | Some(BUILTIN_NAME) => match version {
            None | Some(BUILTIN_VERSION) => Ok(builtin()),
            Some(v) => Err(ApiError::BadRequest(format!(
                "the built-in judge prompt {BUILTIN_NAME} has version {BUILTIN_VERSION} only, not {v}"
            ))),
        },
        Some(name) => state
            .db
            .judge_prompts(project)
            .await?
            .into_iter()
            .filter(|p| p.name == name && version.is_none_or(|v| v == p.version))
            .max_by_key(|p| p.version)
            .ok_or_else(|| {
                ApiError::BadRequest(match version {
                    Some(v) => format!("judge prompt {name:?} has no version {v}"),
                    None => format!("there is no judge prompt {name:?} in this project"),
                })
            }),
    }
}

/// `POST /api/grading/tasks/{id}/judges`: a judge grades the task's items; the run is recorded
/// as queued with its job (and its cost estimate) before the job is published. 201 with its
/// detail.
pub async fn create_judge_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateJudgeRun>,
) -> Result<HttpResponse, ApiError> {
    ensure_queue_room(&state, &caller).await?;
    let (task, new) = plan_judge_run(&state, &caller, &path, &body).await?;
    let job = state.db.create_judge_run(&new).await?;
    let judge_run_id = job.judge_run_id;
    crate::cost::keep_estimate(
        &state.db,
        &state.model_store,
        job.job_id,
        planned(&job, new.project_id),
    )
    .await;
    state.queue.publish_job(&job.into()).await?;
    tracing::info!(task_id = task.id, judge_run_id, "judge run queued");
    let run = state
        .db
        .judge_run(judge_run_id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("judge run {judge_run_id} vanished")))?;
    let detail = crate::judging::detail(&state.db, run, task.exam_set_id).await?;
    Ok(HttpResponse::Created().json(detail))
}

/// What a judge job puts to its model, for its cost estimate.
fn planned(job: &kokushi_shared::job::JudgeJob, project_id: i64) -> crate::cost::Planned {
    crate::cost::Planned {
        project_id,
        model: job.model.clone(),
        adapter: job.adapter.clone(),
        settings: job.settings.clone(),
        shot_pool: Vec::new(),
        questions: job.questions.clone(),
        one_answer: true,
    }
}

/// `POST /api/grading/tasks/{id}/judges/estimate`: what the judge run the body describes would
/// cost (a dry run, as `POST /api/runs/estimate`); nothing is queued or written.
pub async fn estimate_judge_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<CreateJudgeRun>,
) -> Result<HttpResponse, ApiError> {
    // The turn first: reading the items and filling the prompts is work too.
    let turn = crate::cost::turn()?;
    let (_, new) = plan_judge_run(&state, &caller, &path, &body).await?;
    let planned = crate::cost::Planned {
        project_id: new.project_id,
        model: new.model,
        adapter: new.adapter,
        settings: new.settings,
        shot_pool: Vec::new(),
        questions: new.questions,
        one_answer: true,
    };
    let estimate = crate::cost::estimate(&state.db, &state.model_store, planned, turn).await?;
    Ok(HttpResponse::Ok().json(estimate))
}

/// The judge run a request describes on the task of `path`, checked, with its questions.
async fn plan_judge_run(
    state: &AppState,
    caller: &crate::auth::Principal,
    path: &str,
    req: &CreateJudgeRun,
) -> Result<(crate::db::grading::TaskRow, NewJudgeRun), ApiError> {
    let task_id = parse_id("grading task", path)?;
    let scope = caller.scope()?;
    let task = state
        .db
        .grading_task(task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grading task {task_id} does not exist")))?;
    let (model, adapter) =
        super::runs::model_and_adapter(state, &scope, &req.model, req.adapter.as_deref()).await?;
    let format_id = req.prompt_format.as_deref().map(str::trim).unwrap_or("");
    let chat_template = format_id == "chat_template";
    let prompt_format = if chat_template || format_id.is_empty() {
        PromptFormat::ChatmlJa
    } else {
        PromptFormat::from_id(format_id).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown prompt_format {format_id:?}; known: {}, chat_template",
                PromptFormat::ALL.map(PromptFormat::id).join(", ")
            ))
        })?
    };
    let max_new_tokens = req.max_new_tokens.unwrap_or(DEFAULT_JUDGE_NEW_TOKENS);
    if !(1..=MAX_JUDGE_NEW_TOKENS).contains(&max_new_tokens) {
        return Err(ApiError::BadRequest(format!(
            "max_new_tokens {max_new_tokens} must be between 1 and {MAX_JUDGE_NEW_TOKENS}"
        )));
    }
    let prompt = named_prompt(
        state,
        scope.project,
        req.prompt.as_deref(),
        req.prompt_version,
    )
    .await?;
    let settings = kokushi_shared::job::EvalSettings {
        prompt_format,
        chat_template,
        scoring: req.scoring,
        ..kokushi_shared::job::EvalSettings::new(prompt_format, max_new_tokens)
    };
    let grading = state.db.grading_state(Some(task.id)).await?;
    if grading.items.len() > MAX_JUDGE_ITEMS {
        return Err(ApiError::BadRequest(format!(
            "grading task {task_id} has {} items; a judge run grades at most {MAX_JUDGE_ITEMS}",
            grading.items.len()
        )));
    }
    let questions =
        crate::judging::questions_of(&state.db, &grading.items, &prompt.template).await?;
    if questions.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "grading task {task_id} has no item whose answer is still stored"
        )));
    }
    let key = judge_key(&model, adapter.as_deref(), &prompt.hash, &settings);
    let audit = serde_json::json!({
        "model": model,
        "adapter": adapter,
        "prompt": prompt.name,
        "prompt_version": prompt.version,
        "prompt_hash": prompt.hash,
        "scoring": settings.scoring.as_str(),
        "prompt_format": settings.prompt_id(None),
        "judge_key": key,
        "items": questions.len(),
    })
    .to_string();
    let new = NewJudgeRun {
        project_id: scope.project,
        task_id: task.id,
        model,
        adapter,
        settings,
        prompt,
        judge_key: key,
        created_by: caller.user.id,
        priority: req.priority,
        questions,
        audit,
    };
    Ok((task, new))
}

/// `GET /api/grading/tasks/{id}/judges`: the task's judge runs, newest first, each with its
/// agreement with the humans, its gate and its grades.
pub async fn judge_runs(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_id("grading task", &path)?;
    let task = state
        .db
        .grading_task(task_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grading task {task_id} does not exist")))?;
    let runs = state.db.judge_runs_of_task(task.id).await?;
    let grading = state.db.grading_state(Some(task.id)).await?;
    let out = crate::judging::details(&state.db, runs, task.exam_set_id, &grading).await?;
    Ok(HttpResponse::Ok().json(out))
}

/// The judge run `judge` of task `task` (another task's is as if missing).
async fn task_judge_run(
    state: &AppState,
    task: &str,
    judge: &str,
) -> Result<crate::db::judges::JudgeRunRow, ApiError> {
    let task_id = parse_id("grading task", task)?;
    let judge_id = parse_id("judge run", judge)?;
    state
        .db
        .judge_run(judge_id)
        .await?
        .filter(|r| r.summary.task_id == task_id)
        .ok_or_else(|| {
            ApiError::NotFound(format!(
                "judge run {judge_id} of grading task {task_id} does not exist"
            ))
        })
}

/// `POST /api/grading/tasks/{id}/judges/{judge_id}/cancel`: stops a queued or running judge
/// run (its grades so far stay); its launcher, the project's owners or an admin.
pub async fn cancel_judge_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (task, judge) = path.into_inner();
    let run = task_judge_run(&state, &task, &judge).await?;
    let id = run.summary.id;
    ensure_owner(
        &caller,
        "judge run",
        id,
        state.db.judge_run_creator(id).await?.map(Some),
        "cancel",
    )?;
    match state.db.cancel_judge_run(id).await? {
        Some((job_id, attempt)) => state.queue.cancel_job(job_id, attempt).await?,
        None => {
            return Err(ApiError::Conflict(format!(
                "judge run {id} is {} already; only a queued or running one can be cancelled",
                run.summary.status.as_str()
            )));
        }
    }
    tracing::info!(judge_run_id = id, "judge run cancelled");
    respond_run(&state, id).await
}

/// `POST /api/grading/tasks/{id}/judges/{judge_id}/retry`: queues a failed or cancelled judge
/// run again; it grades only the items it has no grade of yet.
pub async fn retry_judge_run(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, ApiError> {
    let (task, judge) = path.into_inner();
    let run = task_judge_run(&state, &task, &judge).await?;
    let id = run.summary.id;
    ensure_owner(
        &caller,
        "judge run",
        id,
        state.db.judge_run_creator(id).await?.map(Some),
        "retry",
    )?;
    ensure_queue_room(&state, &caller).await?;
    if !state.db.retry_judge_run(id).await? {
        return Err(ApiError::Conflict(format!(
            "judge run {id} is {}; only a failed or cancelled one can be retried",
            run.summary.status.as_str()
        )));
    }
    if let Some(job) = crate::judging::job_of(&state.db, id).await? {
        state.queue.publish_job(&job.into()).await?;
    }
    tracing::info!(judge_run_id = id, "judge run retried");
    respond_run(&state, id).await
}

async fn respond_run(state: &AppState, id: i64) -> Result<HttpResponse, ApiError> {
    let run = state
        .db
        .judge_run(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("judge run {id} vanished")))?;
    Ok(HttpResponse::Ok().json(run.summary))
}

/// `GET /api/judging`: the project's judging settings.
pub async fn judging_settings(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.judging_settings(caller.scope()?.project).await?))
}

/// `POST /api/judging` (the project's owners, admins): the threshold a judge's κ (the lower
/// end of its 95% interval) must reach on a calibration task, and which of the project's
/// grading tasks are calibration tasks.
pub async fn set_judging_settings(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<JudgingSettings>,
) -> Result<HttpResponse, ApiError> {
    if !caller.owns_project() {
        return Err(ApiError::Forbidden(
            "only the project's owners or an admin may set how judges are calibrated".to_owned(),
        ));
    }
    let scope = caller.scope()?;
    let mut settings = body.into_inner();
    if !settings.threshold.is_finite() || !(0.0..=1.0).contains(&settings.threshold) {
        return Err(ApiError::BadRequest(format!(
            "threshold {} must be between 0 and 1 (the lower end of κ's 95% interval)",
            settings.threshold
        )));
    }
    settings.calibration_tasks.sort_unstable();
    settings.calibration_tasks.dedup();
    if settings.calibration_tasks.len() > 100 {
        return Err(ApiError::BadRequest(
            "name at most 100 calibration tasks".to_owned(),
        ));
    }
    for &task in &settings.calibration_tasks {
        let own = state
            .db
            .visibility(&scope, crate::db::projects::Owned::GradingTask, task)
            .await?
            == crate::db::projects::Visibility::Own;
        if !own {
            return Err(ApiError::BadRequest(format!(
                "grading task {task} does not exist"
            )));
        }
    }
    state
        .db
        .set_judging_settings(scope.project, &settings, caller.user.id)
        .await?;
    tracing::info!(project = scope.project, threshold = settings.threshold, tasks = ?settings.calibration_tasks, "judging settings set");
    Ok(HttpResponse::Ok().json(state.db.judging_settings(scope.project).await?))
}
