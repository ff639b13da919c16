//! Human grading over HTTP: researchers make grading tasks from runs, annotators grade the
//! items assigned to them blind, reviewers adjudicate disagreements; agreement statistics and
//! human-adjusted accuracy come out of the grades (`crate::grading`, which does the counting).
//!
//! Who sees what: the task, item, audit and export endpoints are for researchers (the access
//! column of [`crate::routes::ENDPOINTS`]). An annotator's endpoints (`/api/grading/mine…`,
//! `/api/grading/assignments/…`) answer only about the caller's own assignments — another
//! annotator's assignment is "not found", exactly like one that does not exist — and never
//! carry a run id, a model, an adapter or another annotator's grade.

use std::collections::{BTreeSet, HashMap};

use actix_web::{HttpResponse, web};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use kokushi_shared::grading::{
    BlindItem, CreateGradingTask, GradeInput, GradingItemDetail, GradingTaskDetail,
    GradingTaskSummary, ItemState, ItemStatus, MyItem, MyQueue, MyTask,
};
use kokushi_shared::igakuqa::credit_for;
use serde::Deserialize;

use super::{download, parse_id};
use crate::auth::Principal;
use crate::db::Db;
use crate::db::grading::{AnswerRow, ItemRow, NewTask, TaskRow};
use crate::db::projects::{Owned, Visibility};
use crate::error::ApiError;
use crate::grading::{
    agreement_of, assign, audit_export, automatic, grades_export, human_correctness, item_status,
    my_task, resolve_all, select, stale, summarize, validated,
};
use crate::state::AppState;

/// `GET /api/grading/annotators`: who may be asked to grade: the project's annotators.
pub async fn annotators(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.graders(&caller.scope()?).await?))
}

/// `POST /api/grading/tasks`.
pub async fn create_task(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateGradingTask>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
    let scope = principal.scope()?;
    let name = req.name.trim();
    if name.is_empty() || name.chars().count() > 200 {
        return Err(ApiError::BadRequest(
            "name must be 1 to 200 characters".to_owned(),
        ));
    }
    let run_ids: Vec<i64> = {
        let mut seen = BTreeSet::new();
        req.run_ids
            .iter()
            .copied()
            .filter(|id| seen.insert(*id))
            .collect()
    };
    if run_ids.is_empty() {
        return Err(ApiError::BadRequest(
            "run_ids must name at least one run".to_owned(),
        ));
    }
    let mut exam_set: Option<(i64, String)> = None;
    let mut answers: Vec<(i64, Vec<AnswerRow>)> = Vec::new();
    for &id in &run_ids {
        // Only the project's own runs; another's is as if missing.
        let own = state.db.visibility(&scope, Owned::Run, id).await? == Visibility::Own;
        let Some(run) = state.db.run_lineage_row(id).await?.filter(|_| own) else {
            return Err(ApiError::BadRequest(format!("run {id} does not exist")));
        };
        let summary = state
            .db
            .run_summary(id)
            .await?
            .ok_or_else(|| ApiError::BadRequest(format!("run {id} does not exist")))?;
        match &exam_set {
            None => exam_set = Some((run.exam_set_id, summary.exam_set.clone())),
            Some((set, set_name)) if *set != run.exam_set_id => {
                return Err(ApiError::BadRequest(format!(
                    "run {id} answers exam set {:?}, not {set_name:?}: a task's runs must share their exam set",
                    summary.exam_set
                )));
            }
            Some(_) => {}
        }
        answers.push((id, state.db.run_answers(id).await?));
    }
    let (exam_set_id, _) = exam_set.unwrap_or_default();
    let seed = req.seed.unwrap_or_else(|| OsRng.next_u64() >> 11);
    let items = select(&req, &answers, seed)?;
    if items.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "the selection {:?} matches no answer of run(s) {}",
            req.selection.id(),
            run_ids
                .iter()
                .map(i64::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    let graders = state.db.graders(&scope).await?;
    let mut annotators: Vec<i64> = Vec::new();
    for id in &req.annotators {
        if annotators.contains(id) {
            return Err(ApiError::BadRequest(format!(
                "annotator {id} is listed twice"
            )));
        }
        if !graders.iter().any(|g| g.id == *id) {
            return Err(ApiError::BadRequest(format!(
                "account {id} is not an active annotator of this project"
            )));
        }
        annotators.push(*id);
    }
    let overlap = usize::try_from(req.overlap).unwrap_or(usize::MAX);
    let (items, assignments) = assign(&items, &annotators, overlap, seed)?;
    let audit = serde_json::to_string(&CreateGradingTask {
        name: name.to_owned(),
        run_ids: run_ids.clone(),
        seed: Some(seed),
        annotators: annotators.clone(),
        ..req.clone()
    })
    .map_err(|e| ApiError::Internal(e.to_string()))?;
    let id = state
        .db
        .create_grading_task(&NewTask {
            name,
            exam_set_id,
            selection: req.selection.id(),
            sample_size: req.sample_size,
            seed,
            overlap: req.overlap,
            created_by: principal.user.id,
            project_id: scope.project,
            run_ids: &run_ids,
            items: &items,
            assignments: &assignments,
            audit,
        })
        .await?;
    let task = state
        .db
        .grading_task(id)
        .await?
        .ok_or_else(|| ApiError::Internal(format!("grading task {id} vanished")))?;
    let gstate = state.db.grading_state(Some(id)).await?;
    let summary = summarize(&task, run_ids, &gstate, &resolve_all(&gstate));
    Ok(HttpResponse::Created().json(summary))
}

/// `GET /api/grading/tasks[?limit=N&offset=M]`: one page of tasks with their progress, newest
/// first (`crate::page`).
pub async fn tasks(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::TASKS)?;
    let scope = caller.scope()?;
    let total = state.db.grading_task_count(scope.project).await?;
    let tasks = state
        .db
        .grading_tasks(Some(scope.project), Some(page))
        .await?;
    let runs = state.db.grading_task_runs().await?;
    // Only the page's tasks are read and resolved.
    let mut out: Vec<GradingTaskSummary> = Vec::with_capacity(tasks.len());
    for t in &tasks {
        let s = state.db.grading_state(Some(t.id)).await?;
        out.push(summarize(
            t,
            runs.get(&t.id).cloned().unwrap_or_default(),
            &s,
            &resolve_all(&s),
        ));
    }
    Ok(page.respond(&req, &out, total))
}

async fn load_task(db: &Db, path: &str) -> Result<TaskRow, ApiError> {
    task_by_id(db, parse_id("grading task", path)?).await
}

async fn task_by_id(db: &Db, id: i64) -> Result<TaskRow, ApiError> {
    db.grading_task(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grading task {id} does not exist")))
}

/// `GET /api/grading/tasks/{id}`: progress, agreement and every item, disputed first.
pub async fn task_detail(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task = load_task(&state.db, &path).await?;
    let runs = state.db.grading_task_runs().await?;
    let s = state.db.grading_state(Some(task.id)).await?;
    let resolved = resolve_all(&s);
    let auto = automatic(&state.db, s.items.iter().map(|i| i.run_id).collect()).await?;
    let human = human_correctness(
        &state.db,
        task.exam_set_id,
        &resolved.iter().collect::<Vec<_>>(),
    )
    .await?;
    let overlap = usize::try_from(task.overlap).unwrap_or(0);
    let agreement = agreement_of(&resolved, overlap, task.seed);
    let mut items: Vec<ItemStatus> = resolved
        .iter()
        .map(|r| item_status(r, &auto, &human, s.adjudications.get(&r.item.id)))
        .collect();
    let rank = |st: ItemState| match st {
        ItemState::Disputed => 0,
        ItemState::Pending => 1,
        ItemState::Adjudicated => 2,
        ItemState::Agreed => 3,
    };
    items.sort_by_key(|i| (rank(i.state), i.item_id));
    let summary = summarize(
        &task,
        runs.get(&task.id).cloned().unwrap_or_default(),
        &s,
        &resolved,
    );
    Ok(HttpResponse::Ok().json(GradingTaskDetail {
        task: summary,
        agreement,
        items,
    }))
}

/// `GET /api/grading/items/{id}`: one item with the model, every grade and its history.
pub async fn item_detail(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("grading item", &path)?;
    let item = state
        .db
        .grading_item(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grading item {id} does not exist")))?;
    let task = task_by_id(&state.db, item.task_id).await?;
    let s = state.db.grading_state(Some(task.id)).await?;
    let resolved = resolve_all(&s);
    let r = resolved
        .iter()
        .find(|r| r.item.id == id)
        .ok_or_else(|| ApiError::Internal(format!("grading item {id} is not in its task")))?;
    let (answer, question) = answer_of(&state.db, &item).await?;
    let credit = credit_for([question.problem_id.as_str()]);
    let auto = HashMap::from([(
        (item.run_id, item.problem_id.clone()),
        (answer.correct, answer.unparsed),
    )]);
    let human = human_correctness(&state.db, task.exam_set_id, &[r]).await?;
    let status = item_status(r, &auto, &human, s.adjudications.get(&id));
    let run = state
        .db
        .run_summary(item.run_id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("run {} does not exist", item.run_id)))?;
    let model = match &run.adapter {
        Some(adapter) => format!("{} + {adapter}", run.model),
        None => run.model.clone(),
    };
    Ok(HttpResponse::Ok().json(GradingItemDetail {
        task_id: task.id,
        status,
        model,
        question: question.text,
        choices: question.choices,
        gold: question.gold.display(),
        output: answer.raw_output,
        parsed: answer.extracted.display(),
        history: state
            .db
            .audit_log(None, Some(task.id), Some(id), None)
            .await?,
        credit,
    }))
}

/// The answer an item grades and its question; "not found" when the run's answer is gone.
async fn answer_of(
    db: &Db,
    item: &ItemRow,
) -> Result<(AnswerRow, kokushi_shared::Question), ApiError> {
    db.answer_with_question(item.run_id, &item.problem_id)
        .await?
        .ok_or_else(|| {
            // Annotators reach this too: the message names no run.
            tracing::warn!(run_id = item.run_id, problem_id = %item.problem_id, "a graded answer is gone");
            ApiError::NotFound(format!(
                "the answer to {} being graded is no longer stored",
                item.problem_id
            ))
        })
}

/// `POST /api/grading/items/{id}/adjudicate`: a reviewer's verdict, which becomes the
/// item's human grade.
pub async fn adjudicate(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<GradeInput>,
) -> Result<HttpResponse, ApiError> {
    let id = parse_id("grading item", &path)?;
    let item = state
        .db
        .grading_item(id)
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("grading item {id} does not exist")))?;
    let (_, question) = answer_of(&state.db, &item).await?;
    let mut input = validated(body.into_inner(), question.choices.len())?;
    input.rationale = None;
    input.flags.clear();
    let expected = input.expected_version;
    match state
        .db
        .adjudicate(&item, principal.user.id, &principal.user.username, &input)
        .await?
    {
        Ok(grade) => {
            state.leaderboard.clear();
            Ok(HttpResponse::Created().json(grade))
        }
        Err(s) => Err(stale("the adjudication of this item", s, expected)),
    }
}

/// `GET /api/grading/mine`: the caller's tasks and progress.
pub async fn my_tasks(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    // An account in no project has nothing to grade.
    let rows = match principal.scope() {
        Ok(scope) => state.db.my_assignments(&scope, None).await?,
        Err(_) => Vec::new(),
    };
    let tasks: Vec<MyTask> = rows
        .chunk_by(|a, b| a.task_id == b.task_id)
        .filter_map(my_task)
        .collect();
    Ok(HttpResponse::Ok().json(tasks))
}

/// `GET /api/grading/mine/{task_id}`: the caller's items of one task, in their order.
pub async fn my_queue(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let task_id = parse_id("grading task", &path)?;
    let rows = state
        .db
        .my_assignments(&principal.scope()?, Some(task_id))
        .await?;
    let task = my_task(&rows).ok_or_else(|| {
        ApiError::NotFound(format!("you have no items in grading task {task_id}"))
    })?;
    let items = rows
        .iter()
        .map(|a| MyItem {
            assignment_id: a.handle,
            position: a.position,
            graded: a.graded,
        })
        .collect();
    Ok(HttpResponse::Ok().json(MyQueue { task, items }))
}

/// The caller's own assignment by its handle, or "not found" — also for someone else's, so
/// that an annotator cannot even learn which handles exist.
async fn own_assignment(
    db: &Db,
    principal: &Principal,
    path: &str,
) -> Result<(crate::db::grading::AssignmentRow, ItemRow), ApiError> {
    let id = parse_id("assignment", path)?;
    match db.assignment_by_handle(id).await? {
        Some((a, item)) if a.annotator_id == principal.user.id => Ok((a, item)),
        _ => Err(ApiError::NotFound(format!(
            "assignment {id} does not exist or is not yours"
        ))),
    }
}

/// `GET /api/grading/assignments/{id}`: the item, blind.
pub async fn assignment(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    let (a, item) = own_assignment(&state.db, &principal, &path).await?;
    let (answer, question) = answer_of(&state.db, &item).await?;
    let credit = credit_for([question.problem_id.as_str()]);
    let mine = state
        .db
        .my_assignments(&principal.scope()?, Some(a.task_id))
        .await?;
    let at = mine.iter().position(|m| m.handle == a.handle).unwrap_or(0);
    let grade = state.db.current_grade(a.id).await?.map(|mut g| {
        g.by.clear();
        g
    });
    Ok(HttpResponse::Ok().json(BlindItem {
        assignment_id: a.handle,
        task_id: a.task_id,
        position: u32::try_from(at + 1).unwrap_or(u32::MAX),
        of: u32::try_from(mine.len()).unwrap_or(u32::MAX),
        problem_id: item.problem_id,
        asked: u32::try_from(kokushi_shared::exam::asked_count(&question.text)).unwrap_or(1),
        question: question.text,
        choices: question.choices,
        gold: question.gold.display(),
        output: answer.raw_output,
        parsed: answer.extracted.display(),
        grade,
        previous: at
            .checked_sub(1)
            .and_then(|p| mine.get(p))
            .map(|m| m.handle),
        next: mine.get(at + 1).map(|m| m.handle),
        credit,
    }))
}

/// `POST /api/grading/assignments/{id}/grade`: appends a version of the caller's grade.
pub async fn grade(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
    path: web::Path<String>,
    body: web::Json<GradeInput>,
) -> Result<HttpResponse, ApiError> {
    let (a, item) = own_assignment(&state.db, &principal, &path).await?;
    let (_, question) = answer_of(&state.db, &item).await?;
    let input = validated(body.into_inner(), question.choices.len())?;
    let expected = input.expected_version;
    match state.db.save_grade(&a, principal.user.id, &input).await? {
        Ok(mut grade) => {
            state.leaderboard.clear();
            grade.by.clear();
            Ok(HttpResponse::Created().json(grade))
        }
        Err(s) => Err(stale("your grade of this item", s, expected)),
    }
}

#[derive(Debug, Deserialize)]
pub struct FormatQuery {
    #[serde(default)]
    format: Option<String>,
    #[serde(default)]
    task: Option<i64>,
}

fn format_of(q: &FormatQuery) -> Result<&'static str, ApiError> {
    match q.format.as_deref().unwrap_or("csv") {
        "csv" => Ok("csv"),
        "jsonl" => Ok("jsonl"),
        other => Err(ApiError::BadRequest(format!(
            "unknown format {other:?}; known: csv, jsonl"
        ))),
    }
}

/// The media type of an export in `format` (`csv` or `jsonl`).
fn media_type(format: &str) -> &'static str {
    if format == "jsonl" {
        "application/x-ndjson; charset=utf-8"
    } else {
        "text/csv; charset=utf-8"
    }
}

/// `GET /api/grading/tasks/{id}/export?format=csv|jsonl`: every version of every grade and
/// adjudication of a task, oldest first per item.
pub async fn export_grades(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    path: web::Path<String>,
    query: web::Query<FormatQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = format_of(&query)?;
    let task = load_task(&state.db, &path).await?;
    let body = grades_export(&state.db, task.id, format).await?;
    let file = format!("grading-task-{}-grades.{format}", task.id);
    Ok(download(body, media_type(format), &file))
}

/// `GET /api/grading/audit[?task=ID][&format=csv|jsonl][&limit=N&offset=M]`: the audit log,
/// oldest first, a page at a time (10,000 lines unless asked otherwise; `crate::page`).
pub async fn audit(
    caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: web::Query<FormatQuery>,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = format_of(&query)?;
    let page = page.page(crate::page::AUDIT)?;
    let project = Some(caller.scope()?.project);
    let total = state.db.audit_count(project, query.task).await?;
    let entries = state
        .db
        .audit_log(project, query.task, None, Some(page))
        .await?;
    let file = match query.task {
        Some(t) => format!("grading-task-{t}-audit.{format}"),
        None => format!("grading-audit.{format}"),
    };
    let body = audit_export(&entries, format)?;
    Ok(page.annotate(download(body, media_type(format), &file), &req, total))
}

/// `GET /api/grading/gold-flags`: answers graders say the published gold gets wrong, for
/// the exam sets the caller uploaded (an admin: all).
pub async fn gold_flags(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let owner = (!principal.owns_project()).then_some(principal.user.id);
    Ok(HttpResponse::Ok().json(state.db.gold_flags(&principal.scope()?, owner).await?))
}
