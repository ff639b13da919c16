//! Human grading over HTTP: researchers make grading tasks from runs, annotators grade the
//! items assigned to them blind, reviewers adjudicate disagreements; agreement statistics and
//! human-adjusted accuracy come out of the grades.
//!
//! Who sees what: the task, item, audit and export endpoints are for researchers (the access
//! column of [`crate::routes::ENDPOINTS`]). An annotator's endpoints (`/api/grading/mine…`,
//! `/api/grading/assignments/…`) answer only about the caller's own assignments — another
//! annotator's assignment is "not found", exactly like one that does not exist — and never
//! carry a run id, a model, an adapter or another annotator's grade.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use actix_web::{HttpResponse, web};
use argon2::password_hash::rand_core::{OsRng, RngCore};
use kokushi_shared::agreement;
use kokushi_shared::api::{Role, RunSummary};
use kokushi_shared::csv::{Field, Writer};
use kokushi_shared::grading::{
    Agreement, AnnotatorProgress, BlindItem, CreateGradingTask, Grade, GradeInput,
    GradingItemDetail, GradingTaskDetail, GradingTaskSummary, HumanAdjusted, ItemState, ItemStatus,
    MyItem, MyQueue, MyTask, PairAgreement, Selection, Verdict,
};
use kokushi_shared::igakuqa::IGAKUQA_CREDIT;
use kokushi_shared::score::{LetterMode, Reply, score_question};
use serde::Deserialize;

use crate::accounts::parse_id;
use crate::auth::Principal;
use crate::db::Db;
use crate::db::grading::{AnswerRow, GradingState, ItemRow, MyAssignment, NewTask, Stale, TaskRow};
use crate::error::ApiError;
use crate::routes::{AppState, download};

/// Largest comment kept with a grade, in characters.
const MAX_COMMENT: usize = 4000;
/// Confidence of every interval shown.
const CONFIDENCE: f64 = 0.95;

/// `GET /api/grading/annotators`: who may be asked to grade.
pub async fn annotators(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(state.db.graders().await?))
}

/// `POST /api/grading/tasks`.
pub async fn create_task(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
    body: web::Json<CreateGradingTask>,
) -> Result<HttpResponse, ApiError> {
    let req = body.into_inner();
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
        let Some(run) = state.db.run_lineage_row(id).await? else {
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
    let graders = state.db.graders().await?;
    let mut annotators: Vec<i64> = Vec::new();
    for id in &req.annotators {
        if annotators.contains(id) {
            return Err(ApiError::BadRequest(format!(
                "annotator {id} is listed twice"
            )));
        }
        if !graders.iter().any(|g| g.id == *id) {
            return Err(ApiError::BadRequest(format!(
                "account {id} is not an active account with the annotator role"
            )));
        }
        annotators.push(*id);
    }
    let overlap = usize::try_from(req.overlap).unwrap_or(usize::MAX);
    let spread = agreement::distribute(items.len(), annotators.len(), overlap, seed)
        .map_err(ApiError::BadRequest)?;
    // Each annotator's own order: their items shuffled with a seed of their own.
    let mut per_annotator: Vec<Vec<usize>> = vec![Vec::new(); annotators.len()];
    for (item, graders) in spread.iter().enumerate() {
        for &g in graders {
            per_annotator[g].push(item);
        }
    }
    // Each assignment gets a random handle, the only name its annotator learns for it.
    let mut handles = std::collections::HashSet::new();
    let mut assignments: Vec<Vec<(i64, u32, i64)>> = vec![Vec::new(); items.len()];
    for (g, mine) in per_annotator.iter().enumerate() {
        let order = agreement::shuffled(
            mine.len(),
            seed ^ (annotators[g] as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        );
        for (position, &k) in order.iter().enumerate() {
            let handle = loop {
                let h = crate::auth::random_handle();
                if handles.insert(h) {
                    break h;
                }
            };
            assignments[mine[k]].push((
                annotators[g],
                u32::try_from(position + 1).unwrap_or(u32::MAX),
                handle,
            ));
        }
    }
    // Items are written in a shuffled order too, so that not even their row ids follow the
    // runs they come from.
    let write_order = agreement::shuffled(items.len(), seed ^ 0x5EED_0F0A_D3E5_u64);
    let items: Vec<(i64, String)> = write_order.iter().map(|&i| items[i].clone()).collect();
    let assignments: Vec<Vec<(i64, u32, i64)>> = write_order
        .iter()
        .map(|&i| assignments[i].clone())
        .collect();
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

/// The items a selection makes of the runs' answers: (run id, problem id), in run order.
fn select(
    req: &CreateGradingTask,
    answers: &[(i64, Vec<AnswerRow>)],
    seed: u64,
) -> Result<Vec<(i64, String)>, ApiError> {
    let all = || {
        answers
            .iter()
            .flat_map(|(run, rows)| rows.iter().map(move |a| (*run, a)))
    };
    let items: Vec<(i64, String)> = match req.selection {
        Selection::All => all().map(|(r, a)| (r, a.problem_id.clone())).collect(),
        Selection::ParseFailures => all()
            .filter(|(_, a)| a.unparsed)
            .map(|(r, a)| (r, a.problem_id.clone()))
            .collect(),
        Selection::Wrong => all()
            .filter(|(_, a)| !a.correct)
            .map(|(r, a)| (r, a.problem_id.clone()))
            .collect(),
        Selection::Sample => {
            let pool: Vec<(i64, String)> = all().map(|(r, a)| (r, a.problem_id.clone())).collect();
            let n = req.sample_size.ok_or_else(|| {
                ApiError::BadRequest("selection \"sample\" needs sample_size".to_owned())
            })?;
            let n = usize::try_from(n).unwrap_or(usize::MAX);
            if n == 0 || n > pool.len() {
                return Err(ApiError::BadRequest(format!(
                    "sample_size {n} must be between 1 and the {} answers of the run(s)",
                    pool.len()
                )));
            }
            let mut chosen: Vec<usize> = agreement::shuffled(pool.len(), seed)
                .into_iter()
                .take(n)
                .collect();
            chosen.sort_unstable();
            chosen.into_iter().map(|i| pool[i].clone()).collect()
        }
        Selection::Disagreements => {
            let [(run_a, a), (run_b, b)] = answers else {
                return Err(ApiError::BadRequest(format!(
                    "selection \"disagreements\" compares exactly two runs, not {}",
                    answers.len()
                )));
            };
            let theirs: HashMap<&str, &AnswerRow> =
                b.iter().map(|x| (x.problem_id.as_str(), x)).collect();
            let mut out = Vec::new();
            for x in a {
                if let Some(y) = theirs.get(x.problem_id.as_str())
                    && x.extracted != y.extracted
                {
                    out.push((*run_a, x.problem_id.clone()));
                    out.push((*run_b, x.problem_id.clone()));
                }
            }
            out
        }
    };
    Ok(items)
}

/// Per item of a grading state: its current grades (in assignment order), assigned count,
/// and its state and decision.
struct Resolved<'a> {
    item: &'a ItemRow,
    grades: Vec<(i64, &'a Grade)>,
    assigned: usize,
    state: ItemState,
    decision: Option<(Verdict, String)>,
}

/// An item's assigned count and its current grades by annotator.
type ItemGrades<'a> = (usize, Vec<(i64, &'a Grade)>);

fn resolve_all(s: &GradingState) -> Vec<Resolved<'_>> {
    let mut by_item: HashMap<i64, ItemGrades<'_>> = HashMap::new();
    for a in &s.assignments {
        let entry = by_item.entry(a.item_id).or_default();
        entry.0 += 1;
        if let Some(g) = s.grades.get(&a.id) {
            entry.1.push((a.annotator_id, g));
        }
    }
    s.items
        .iter()
        .map(|item| {
            let (assigned, grades) = by_item.remove(&item.id).unwrap_or_default();
            let owned: Vec<Grade> = grades.iter().map(|(_, g)| (*g).clone()).collect();
            let (state, decision) =
                kokushi_shared::grading::resolve(&owned, assigned, s.adjudications.get(&item.id));
            Resolved {
                item,
                grades,
                assigned,
                state,
                decision,
            }
        })
        .collect()
}

/// A task's summary from a grading state that holds it (and perhaps others) and that state's
/// items resolved ([`resolve_all`], done once however many tasks are summarised).
fn summarize(
    task: &TaskRow,
    run_ids: Vec<i64>,
    s: &GradingState,
    resolved: &[Resolved<'_>],
) -> GradingTaskSummary {
    let mut progress: BTreeMap<(String, i64), (u32, u32)> = BTreeMap::new();
    for a in s.assignments.iter().filter(|a| a.task_id == task.id) {
        let p = progress
            .entry((a.annotator.clone(), a.annotator_id))
            .or_default();
        p.0 += 1;
        if s.grades.contains_key(&a.id) {
            p.1 += 1;
        }
    }
    let mine: Vec<&Resolved> = resolved
        .iter()
        .filter(|r| r.item.task_id == task.id)
        .collect();
    let count = |f: &dyn Fn(&Resolved) -> bool| {
        u32::try_from(mine.iter().filter(|r| f(r)).count()).unwrap_or(u32::MAX)
    };
    GradingTaskSummary {
        id: task.id,
        name: task.name.clone(),
        exam_set: task.exam_set.clone(),
        run_ids,
        selection: Selection::from_id(&task.selection).unwrap_or(Selection::All),
        sample_size: task.sample_size.and_then(|n| u32::try_from(n).ok()),
        seed: task.seed,
        overlap: u32::try_from(task.overlap).unwrap_or(0),
        items: count(&|_| true),
        complete: count(&|r| r.grades.len() >= r.assigned && r.assigned > 0),
        disputed: count(&|r| r.state == ItemState::Disputed),
        adjudicated: count(&|r| r.state == ItemState::Adjudicated),
        annotators: progress
            .into_iter()
            .map(
                |((username, user_id), (assigned, graded))| AnnotatorProgress {
                    user_id,
                    username,
                    assigned,
                    graded,
                },
            )
            .collect(),
        created_by: task.created_by.clone(),
        created_at: task.created_at.clone(),
    }
}

/// `GET /api/grading/tasks[?limit=N&offset=M]`: one page of tasks with their progress, newest
/// first (`crate::page`).
pub async fn tasks(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let page = page.page(crate::page::TASKS)?;
    let total = state.db.count(crate::db::Counted::GradingTasks).await?;
    let tasks = state.db.grading_tasks(Some(page)).await?;
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

/// The automatic result of every answer of `runs`: (run, problem) → (correct, parse failed).
async fn automatic(
    db: &Db,
    runs: BTreeSet<i64>,
) -> Result<HashMap<(i64, String), (bool, bool)>, ApiError> {
    let mut out = HashMap::new();
    for run in runs {
        for a in db.run_answers(run).await? {
            out.insert((run, a.problem_id), (a.correct, a.unparsed));
        }
    }
    Ok(out)
}

/// Whether each decided item is right, reading the gold answer where the decision is letters.
async fn human_correctness(
    db: &Db,
    exam_set_id: i64,
    resolved: &[&Resolved<'_>],
) -> Result<HashMap<i64, bool>, ApiError> {
    let need: Vec<String> = resolved
        .iter()
        .filter(|r| {
            r.decision
                .as_ref()
                .is_some_and(|d| d.0 == Verdict::Unparseable)
        })
        .map(|r| r.item.problem_id.clone())
        .collect();
    let questions = db.questions_by_id(exam_set_id, &need).await?;
    Ok(resolved
        .iter()
        .filter_map(|r| {
            let d = r.decision.as_ref()?;
            let right = kokushi_shared::grading::human_correct(d, |letters| {
                questions.get(&r.item.problem_id).is_some_and(|q| {
                    score_question(q, Some(&Reply::from(letters)), LetterMode::Strict)
                        .letter_correct
                })
            });
            Some((r.item.id, right))
        })
        .collect())
}

fn item_status(
    r: &Resolved<'_>,
    auto: &HashMap<(i64, String), (bool, bool)>,
    human: &HashMap<i64, bool>,
    adjudication: Option<&Grade>,
) -> ItemStatus {
    let (automatic_correct, parse_failed) = auto
        .get(&(r.item.run_id, r.item.problem_id.clone()))
        .copied()
        .unwrap_or_default();
    ItemStatus {
        item_id: r.item.id,
        run_id: r.item.run_id,
        problem_id: r.item.problem_id.clone(),
        automatic_correct,
        parse_failed,
        state: r.state,
        human: r.decision.as_ref().map(|d| d.0),
        human_correct: human.get(&r.item.id).copied(),
        grades: r.grades.iter().map(|(_, g)| (*g).clone()).collect(),
        adjudication: adjudication.cloned(),
    }
}

/// Agreement on the verdicts of a task's items.
fn agreement_of(resolved: &[Resolved<'_>], overlap: usize, seed: u64) -> Agreement {
    let categories = Verdict::ALL.len();
    // Task-wide: the items every assigned annotator graded.
    let complete: Vec<&Resolved> = resolved
        .iter()
        .filter(|r| r.assigned == overlap && r.grades.len() == overlap)
        .collect();
    let counts: Vec<Vec<u64>> = complete
        .iter()
        .map(|r| {
            let mut row = vec![0u64; categories];
            for (_, g) in &r.grades {
                row[g.verdict.index()] += 1;
            }
            row
        })
        .collect();
    let (percent, fleiss) = if overlap >= 2 {
        (
            agreement::fleiss_observed_agreement(&counts),
            agreement::fleiss_kappa(&counts, CONFIDENCE, seed),
        )
    } else {
        (None, None)
    };
    // Pairs: every two annotators, on the items both graded.
    let mut names: BTreeMap<i64, String> = BTreeMap::new();
    let mut verdicts: HashMap<(i64, i64), usize> = HashMap::new();
    for r in resolved {
        for (annotator, g) in &r.grades {
            names.entry(*annotator).or_insert_with(|| g.by.clone());
            verdicts.insert((r.item.id, *annotator), g.verdict.index());
        }
    }
    let ids: Vec<i64> = names.keys().copied().collect();
    let mut pairs = Vec::new();
    for (i, a) in ids.iter().enumerate() {
        for b in &ids[i + 1..] {
            let (mut va, mut vb) = (Vec::new(), Vec::new());
            for r in resolved {
                if let (Some(x), Some(y)) = (
                    verdicts.get(&(r.item.id, *a)),
                    verdicts.get(&(r.item.id, *b)),
                ) {
                    va.push(*x);
                    vb.push(*y);
                }
            }
            if va.is_empty() {
                continue;
            }
            pairs.push(PairAgreement {
                a: names[a].clone(),
                b: names[b].clone(),
                items: u32::try_from(va.len()).unwrap_or(u32::MAX),
                percent: agreement::percent_agreement(&va, &vb),
                cohen: agreement::cohen_kappa_pairs(&va, &vb, categories, CONFIDENCE),
            });
        }
    }
    Agreement {
        items: u32::try_from(complete.len()).unwrap_or(u32::MAX),
        raters_per_item: u32::try_from(overlap).unwrap_or(0),
        percent,
        fleiss,
        pairs,
    }
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
        history: state.db.audit_log(Some(task.id), Some(id), None).await?,
        credit: IGAKUQA_CREDIT.to_owned(),
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

/// Checks and tidies a rubric: rationale 1–5, letters only for "unparseable" and only the
/// question's own, a bounded comment.
fn validated(mut input: GradeInput, choices: usize) -> Result<GradeInput, ApiError> {
    if let Some(r) = input.rationale
        && !(1..=5).contains(&r)
    {
        return Err(ApiError::BadRequest(format!(
            "rationale {r} must be between 1 and 5"
        )));
    }
    input.letters = if input.verdict == Verdict::Unparseable {
        let letters = kokushi_shared::grading::normalize_letters(&input.letters)
            .map_err(|e| ApiError::BadRequest(format!("letters: {e}")))?;
        if let Some(bad) = letters
            .chars()
            .find(|c| kokushi_shared::exam::letter_index(*c).is_none_or(|i| i >= choices))
        {
            return Err(ApiError::BadRequest(format!(
                "letters: the question has {choices} choices; there is no {bad:?}"
            )));
        }
        letters
    } else {
        String::new()
    };
    input.comment = input.comment.trim().to_owned();
    if input.comment.chars().count() > MAX_COMMENT {
        return Err(ApiError::BadRequest(format!(
            "comment is longer than {MAX_COMMENT} characters"
        )));
    }
    input.flags.sort_unstable();
    input.flags.dedup();
    Ok(input)
}

fn stale(what: &str, Stale(current): Stale, expected: u32) -> ApiError {
    ApiError::Conflict(format!(
        "{what} was saved by someone else since you opened it: it is at version {current}, your \
         form was filled from version {expected}. Reload to see it, then save again"
    ))
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

/// An annotator's progress in one task from their assignments of it (in their order):
/// how many, how many graded, and the first not graded yet.
fn my_task(mine: &[MyAssignment]) -> Option<MyTask> {
    let first = mine.first()?;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    Some(MyTask {
        id: first.task_id,
        name: first.task_name.clone(),
        assigned: count(mine.len()),
        graded: count(mine.iter().filter(|a| a.graded).count()),
        resume: mine.iter().find(|a| !a.graded).map(|a| a.handle),
    })
}

/// `GET /api/grading/mine`: the caller's tasks and progress.
pub async fn my_tasks(
    principal: crate::auth::Member,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let rows = state.db.my_assignments(principal.user.id, None).await?;
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
        .my_assignments(principal.user.id, Some(task_id))
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
    let mine = state
        .db
        .my_assignments(principal.user.id, Some(a.task_id))
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
        credit: IGAKUQA_CREDIT.to_owned(),
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
    let items: HashMap<i64, ItemRow> = state
        .db
        .grading_state(Some(task.id))
        .await?
        .items
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    let mut rows: Vec<(String, i64, i64, String, String, Grade)> = state
        .db
        .grade_history(task.id)
        .await?
        .into_iter()
        .map(|(item, run, pid, annotator, g)| ("grade".to_owned(), item, run, pid, annotator, g))
        .collect();
    for entry in state.db.audit_log(Some(task.id), None, None).await? {
        if entry.action != "adjudicated" {
            continue;
        }
        let (Some(item_id), Some(after)) = (entry.item_id, entry.after.as_deref()) else {
            continue;
        };
        let g: Grade = serde_json::from_str(after)
            .map_err(|e| ApiError::Internal(format!("audit line {}: {e}", entry.id)))?;
        if let Some(item) = items.get(&item_id) {
            rows.push((
                "adjudication".to_owned(),
                item_id,
                item.run_id,
                item.problem_id.clone(),
                g.by.clone(),
                g,
            ));
        }
    }
    rows.sort_by(|a, b| (a.1, &a.0, &a.4, a.5.version).cmp(&(b.1, &b.0, &b.4, b.5.version)));
    let file = format!("grading-task-{}-grades.{format}", task.id);
    if format == "jsonl" {
        let mut out = String::new();
        for (kind, item, run, pid, annotator, g) in &rows {
            let line = serde_json::json!({
                "task_id": task.id, "kind": kind, "item_id": item, "run_id": run,
                "problem_id": pid, "annotator": annotator, "version": g.version,
                "verdict": g.verdict, "letters": g.letters, "rationale": g.rationale,
                "flags": g.flags, "comment": g.comment, "saved_by": g.by, "at": g.at,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        return Ok(download(out, "application/x-ndjson; charset=utf-8", &file));
    }
    let mut w = Writer::new(&[
        "task_id",
        "kind",
        "item_id",
        "run_id",
        "problem_id",
        "annotator",
        "version",
        "verdict",
        "letters",
        "rationale",
        "flags",
        "comment",
        "saved_by",
        "at",
    ]);
    for (kind, item, run, pid, annotator, g) in &rows {
        w.record(&[
            task.id.into(),
            kind.as_str().into(),
            (*item).into(),
            (*run).into(),
            pid.into(),
            annotator.into(),
            g.version.into(),
            g.verdict.id().into(),
            (&g.letters).into(),
            g.rationale.map(u32::from).into(),
            Field::owned(g.flags.iter().map(|f| f.id()).collect::<Vec<_>>().join(" ")),
            (&g.comment).into(),
            (&g.by).into(),
            (&g.at).into(),
        ]);
    }
    let out = w.finish();
    Ok(download(out, "text/csv; charset=utf-8", &file))
}

/// `GET /api/grading/audit[?task=ID][&format=csv|jsonl][&limit=N&offset=M]`: the audit log,
/// oldest first, a page at a time (10,000 lines unless asked otherwise; `crate::page`).
pub async fn audit(
    _caller: crate::auth::Researcher,
    state: web::Data<AppState>,
    req: actix_web::HttpRequest,
    query: web::Query<FormatQuery>,
    page: web::Query<crate::page::PageQuery>,
) -> Result<HttpResponse, ApiError> {
    let format = format_of(&query)?;
    let page = page.page(crate::page::AUDIT)?;
    let total = state.db.audit_count(query.task).await?;
    let entries = state.db.audit_log(query.task, None, Some(page)).await?;
    let file = match query.task {
        Some(t) => format!("grading-task-{t}-audit.{format}"),
        None => format!("grading-audit.{format}"),
    };
    if format == "jsonl" {
        let mut out = String::new();
        for e in &entries {
            out.push_str(&serde_json::to_string(e).map_err(|e| ApiError::Internal(e.to_string()))?);
            out.push('\n');
        }
        return Ok(page.annotate(
            download(out, "application/x-ndjson; charset=utf-8", &file),
            &req,
            total,
        ));
    }
    let mut w = Writer::new(&[
        "id", "at", "actor", "action", "task_id", "item_id", "before", "after",
    ]);
    for e in &entries {
        w.record(&[
            e.id.into(),
            (&e.at).into(),
            (&e.actor).into(),
            (&e.action).into(),
            e.task_id.into(),
            e.item_id.into(),
            e.before.as_deref().into(),
            e.after.as_deref().into(),
        ]);
    }
    let out = w.finish();
    Ok(page.annotate(download(out, "text/csv; charset=utf-8", &file), &req, total))
}

/// `GET /api/grading/gold-flags`: answers graders say the published gold gets wrong, for
/// the exam sets the caller uploaded (an admin: all).
pub async fn gold_flags(
    principal: crate::auth::Researcher,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let owner = (!principal.user.roles.contains(&Role::Admin)).then_some(principal.user.id);
    Ok(HttpResponse::Ok().json(state.db.gold_flags(owner).await?))
}

/// Fills `human` of each run that has a graded answer: its answers' automatic results, with
/// the human verdict in place of each where annotators agreed or a reviewer decided (the
/// newest task's decision when an answer was graded in several). With `kept` (run id →
/// problem ids), only those questions count: the runs were scored again on them.
pub async fn attach_human(
    db: &Db,
    runs: &mut [RunSummary],
    kept: Option<&HashMap<i64, HashSet<String>>>,
) -> Result<(), ApiError> {
    let s = db.grading_state(None).await?;
    if s.items.is_empty() {
        return Ok(());
    }
    let wanted: BTreeSet<i64> = runs.iter().map(|r| r.id).collect();
    let tasks: HashMap<i64, TaskRow> = db
        .grading_tasks(None)
        .await?
        .into_iter()
        .map(|t| (t.id, t))
        .collect();
    let resolved: Vec<Resolved> = resolve_all(&s)
        .into_iter()
        .filter(|r| wanted.contains(&r.item.run_id) && r.decision.is_some())
        .collect();
    // Newest task first, then keep the first decision per (run, problem).
    let mut by_task: BTreeMap<std::cmp::Reverse<i64>, Vec<&Resolved>> = BTreeMap::new();
    for r in &resolved {
        by_task
            .entry(std::cmp::Reverse(r.item.task_id))
            .or_default()
            .push(r);
    }
    let mut decided: HashMap<(i64, String), bool> = HashMap::new();
    for (std::cmp::Reverse(task_id), rs) in by_task {
        let Some(task) = tasks.get(&task_id) else {
            continue;
        };
        let right = human_correctness(db, task.exam_set_id, &rs).await?;
        for r in &rs {
            if let Some(ok) = right.get(&r.item.id) {
                decided
                    .entry((r.item.run_id, r.item.problem_id.clone()))
                    .or_insert(*ok);
            }
        }
    }
    let auto = automatic(db, decided.keys().map(|(run, _)| *run).collect()).await?;
    for run in runs.iter_mut() {
        let mine: Vec<(&String, bool)> = decided
            .iter()
            .filter(|((r, p), _)| {
                *r == run.id && kept.is_none_or(|k| k.get(r).is_some_and(|ps| ps.contains(p)))
            })
            .map(|((_, p), ok)| (p, *ok))
            .collect();
        if mine.is_empty() {
            continue;
        }
        let mut h = HumanAdjusted {
            answered: run.tally.answered,
            correct: run.tally.correct,
            ..HumanAdjusted::default()
        };
        for (problem, ok) in mine {
            let Some(&(was, _)) = auto.get(&(run.id, problem.clone())) else {
                continue;
            };
            h.resolved += 1;
            if was != ok {
                h.changed += 1;
                if ok {
                    h.correct += 1;
                } else {
                    h.correct = h.correct.saturating_sub(1);
                }
            }
        }
        run.human = Some(h);
    }
    Ok(())
}
