//! Human grading's logic, below its endpoints (`handlers::grading`): which answers a task
//! grades (`select`) and how its items are spread over annotators (`assign`); how each item's
//! grades resolve into one human verdict, a task's progress and its agreement statistics
//! (Cohen's and Fleiss' κ); checks on a submitted rubric; the grade and audit exports; and the
//! human-adjusted accuracy attached to runs ([`attach_human`]) that the leaderboard and the run
//! page show.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use kokushi_shared::agreement;
use kokushi_shared::api::RunSummary;
use kokushi_shared::csv::{Field, Writer};
use kokushi_shared::grading::{
    Agreement, AnnotatorProgress, AuditEntry, CreateGradingTask, Grade, GradeInput,
    GradingTaskSummary, HumanAdjusted, ItemState, ItemStatus, MyTask, PairAgreement, Selection,
    Verdict,
};
use kokushi_shared::score::{LetterMode, Reply, score_question};

use crate::db::Db;
use crate::db::cells::{CellFilter, CellKey};
use crate::db::grading::{AnswerRow, GradingState, ItemRow, MyAssignment, Stale, TaskRow};
use crate::error::ApiError;

/// Largest comment kept with a grade, in characters.
const MAX_COMMENT: usize = 4000;
/// Confidence of every interval shown.
const CONFIDENCE: f64 = 0.95;

/// The items a selection makes of the runs' answers: (run id, problem id), in run order.
pub(crate) fn select(
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

/// An item to grade: (run id, problem id).
pub(crate) type Item = (i64, String);

/// One assignment of an item, as a task stores it: (annotator, position in the annotator's
/// order, handle).
pub(crate) type Assignment = (i64, u32, i64);

/// A new task's items and, per item, its assignments: the items spread over `annotators`,
/// `overlap` of them each (seeded, `agreement::distribute`), each annotator's items in an
/// order of their own, each assignment with a random handle, and the items in a shuffled order.
pub(crate) fn assign(
    items: &[Item],
    annotators: &[i64],
    overlap: usize,
    seed: u64,
) -> Result<(Vec<Item>, Vec<Vec<Assignment>>), ApiError> {
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
    let mut assignments: Vec<Vec<Assignment>> = vec![Vec::new(); items.len()];
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
    let items: Vec<Item> = write_order.iter().map(|&i| items[i].clone()).collect();
    let assignments: Vec<Vec<Assignment>> = write_order
        .iter()
        .map(|&i| assignments[i].clone())
        .collect();
    Ok((items, assignments))
}

/// Per item of a grading state: its current grades (in assignment order), assigned count,
/// and its state and decision.
pub(crate) struct Resolved<'a> {
    pub(crate) item: &'a ItemRow,
    pub(crate) grades: Vec<(i64, &'a Grade)>,
    pub(crate) assigned: usize,
    pub(crate) state: ItemState,
    pub(crate) decision: Option<(Verdict, String)>,
}

/// An item's assigned count and its current grades by annotator.
type ItemGrades<'a> = (usize, Vec<(i64, &'a Grade)>);

pub(crate) fn resolve_all(s: &GradingState) -> Vec<Resolved<'_>> {
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
pub(crate) fn summarize(
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

/// The automatic result of every answer of `runs`: (run, problem) → (correct, parse failed).
pub(crate) async fn automatic(
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
pub(crate) async fn human_correctness(
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

pub(crate) fn item_status(
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
pub(crate) fn agreement_of(resolved: &[Resolved<'_>], overlap: usize, seed: u64) -> Agreement {
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

/// Checks and tidies a rubric: rationale 1–5, letters only for "unparseable" and only the
/// question's own, a bounded comment.
pub(crate) fn validated(mut input: GradeInput, choices: usize) -> Result<GradeInput, ApiError> {
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

pub(crate) fn stale(what: &str, Stale(current): Stale, expected: u32) -> ApiError {
    ApiError::Conflict(format!(
        "{what} was saved by someone else since you opened it: it is at version {current}, your \
         form was filled from version {expected}. Reload to see it, then save again"
    ))
}

/// An annotator's progress in one task from their assignments of it (in their order):
/// how many, how many graded, and the first not graded yet.
pub(crate) fn my_task(mine: &[MyAssignment]) -> Option<MyTask> {
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

/// Every version of every grade and adjudication of a task, oldest first per item, as CSV or
/// JSON lines (`format`).
pub(crate) async fn grades_export(db: &Db, task_id: i64, format: &str) -> Result<String, ApiError> {
    let items: HashMap<i64, ItemRow> = db
        .grading_state(Some(task_id))
        .await?
        .items
        .into_iter()
        .map(|i| (i.id, i))
        .collect();
    let mut rows: Vec<(String, i64, i64, String, String, Grade)> = db
        .grade_history(task_id)
        .await?
        .into_iter()
        .map(|(item, run, pid, annotator, g)| ("grade".to_owned(), item, run, pid, annotator, g))
        .collect();
    for entry in db.audit_log(None, Some(task_id), None, None).await? {
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
    // The latest judge run's verdict on each item, with its label: never mixed into the human
    // columns.
    let judge = match db.grading_task(task_id).await? {
        Some(task) => crate::judging::latest_verdicts(db, task_id, task.exam_set_id).await?,
        None => None,
    };
    let judge_of = |item: i64| -> (String, String) {
        let Some((detail, verdicts)) = &judge else {
            return (String::new(), String::new());
        };
        let label = if detail.gate.calibrated {
            "calibrated"
        } else {
            "uncalibrated"
        };
        let verdict = match verdicts.get(&item) {
            Some(Some(v)) => v.id().to_owned(),
            Some(None) => "none".to_owned(),
            None => String::new(),
        };
        (verdict, format!("judge run {} ({label})", detail.run.id))
    };
    if format == "jsonl" {
        let mut out = String::new();
        for (kind, item, run, pid, annotator, g) in &rows {
            let (judge_verdict, judge) = judge_of(*item);
            let line = serde_json::json!({
                "task_id": task_id, "kind": kind, "item_id": item, "run_id": run,
                "problem_id": pid, "annotator": annotator, "version": g.version,
                "verdict": g.verdict, "letters": g.letters, "rationale": g.rationale,
                "flags": g.flags, "comment": g.comment, "saved_by": g.by, "at": g.at,
                "judge_verdict": judge_verdict, "judge": judge,
            });
            out.push_str(&line.to_string());
            out.push('\n');
        }
        return Ok(out);
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
        "judge_verdict",
        "judge",
    ]);
    for (kind, item, run, pid, annotator, g) in &rows {
        let (judge_verdict, judge) = judge_of(*item);
        w.record(&[
            task_id.into(),
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
            Field::owned(judge_verdict),
            Field::owned(judge),
        ]);
    }
    Ok(w.finish())
}

/// Lines of the audit log as CSV or JSON lines (`format`).
pub(crate) fn audit_export(entries: &[AuditEntry], format: &str) -> Result<String, ApiError> {
    if format == "jsonl" {
        let mut out = String::new();
        for e in entries {
            out.push_str(&serde_json::to_string(e).map_err(|e| ApiError::Internal(e.to_string()))?);
            out.push('\n');
        }
        return Ok(out);
    }
    let mut w = Writer::new(&[
        "id", "at", "actor", "action", "task_id", "item_id", "before", "after",
    ]);
    for e in entries {
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
    Ok(w.finish())
}

/// A run's decided answers: each question of the run a grading task reached a decision on
/// (agreed annotators or a reviewer; the newest task's decision when it was graded in several),
/// whether the human verdict counts it correct, and its question's facets.
pub async fn decisions_of_run(
    db: &Db,
    run_id: i64,
) -> Result<Vec<crate::db::human::Decision>, ApiError> {
    let s = db.grading_state_of_runs(&[run_id]).await?;
    if s.items.is_empty() {
        return Ok(Vec::new());
    }
    let mut tasks: HashMap<i64, TaskRow> = HashMap::new();
    for id in s.items.iter().map(|i| i.task_id).collect::<BTreeSet<_>>() {
        if let Some(task) = db.grading_task(id).await? {
            tasks.insert(id, task);
        }
    }
    let resolved: Vec<Resolved> = resolve_all(&s)
        .into_iter()
        .filter(|r| r.item.run_id == run_id && r.decision.is_some())
        .collect();
    // Newest task first, then keep the first decision per problem.
    let mut by_task: BTreeMap<std::cmp::Reverse<i64>, Vec<&Resolved>> = BTreeMap::new();
    for r in &resolved {
        by_task
            .entry(std::cmp::Reverse(r.item.task_id))
            .or_default()
            .push(r);
    }
    // Problem → (counted correct, the exam set its question is read from).
    let mut decided: BTreeMap<String, (bool, i64)> = BTreeMap::new();
    for (std::cmp::Reverse(task_id), rs) in by_task {
        let Some(task) = tasks.get(&task_id) else {
            continue;
        };
        let right = human_correctness(db, task.exam_set_id, &rs).await?;
        for r in &rs {
            if let Some(ok) = right.get(&r.item.id) {
                decided
                    .entry(r.item.problem_id.clone())
                    .or_insert((*ok, task.exam_set_id));
            }
        }
    }
    let mut by_set: BTreeMap<i64, Vec<String>> = BTreeMap::new();
    for (problem, (_, set)) in &decided {
        by_set.entry(*set).or_default().push(problem.clone());
    }
    let mut facets: HashMap<(i64, String), CellKey> = HashMap::new();
    for (set, problems) in by_set {
        for (id, q) in db.questions_by_id(set, &problems).await? {
            facets.insert((set, id), CellKey::of(&q));
        }
    }
    // The automatic results (answers never change once stored); a decision without an answer
    // has nothing to adjust.
    let problems: Vec<&str> = decided.keys().map(String::as_str).collect();
    let automatic = db.answer_results(run_id, &problems).await?;
    Ok(decided
        .into_iter()
        .filter_map(|(problem_id, (human_correct, set))| {
            let &(automatic_correct, _) = automatic.get(&problem_id)?;
            // A question missing from its set has no facets: only an unfiltered row counts it.
            let facets = facets
                .remove(&(set, problem_id.clone()))
                .unwrap_or_default();
            Some(crate::db::human::Decision {
                problem_id,
                human_correct,
                automatic_correct,
                facets,
            })
        })
        .collect())
}

/// Computes again the stored decisions of run `run` if its grading changed since (see
/// `db::human`), one run at a time, so that requests finding the same run stale wait for one
/// computation rather than repeat it. Whether it computed them.
async fn refresh_run(db: &Db, run: i64) -> Result<bool, ApiError> {
    let _one = db.human_refresh_lock().await;
    // Again under the lock: the request that held it may have computed them.
    let Some(&(_, version)) = db.human_stale(Some(&[run])).await?.first() else {
        return Ok(false);
    };
    let decisions = decisions_of_run(db, run).await?;
    db.store_human(run, version, &decisions).await?;
    Ok(true)
}

/// Computes again the stored decisions of those of `run_ids` whose grading changed since.
pub async fn refresh_human(db: &Db, run_ids: &[i64]) -> Result<(), ApiError> {
    for (run, _) in db.human_stale(Some(run_ids)).await? {
        refresh_run(db, run).await?;
    }
    Ok(())
}

/// Computes again the stored decisions of every run whose grading changed since (at startup:
/// runs graded before they were kept, or while the server was down). A run that fails is
/// reported and left for its next read. How many runs were computed.
pub async fn refresh_all_human(db: &Db) -> Result<usize, ApiError> {
    let mut done = 0;
    for (run, _) in db.human_stale(None).await? {
        match refresh_run(db, run).await {
            Ok(computed) => done += usize::from(computed),
            Err(e) => tracing::warn!(run, error = %e, "computing a run's human decisions failed"),
        }
    }
    Ok(done)
}

/// Fills `human` of each run that has a decided answer: its automatic result with the human
/// verdict in place of each answer annotators agreed on or a reviewer decided (the newest
/// task's decision when an answer was graded in several). With `filter`, only the questions it
/// keeps count: the runs' tallies were summed over those alone. Reads the stored decisions
/// (one sum per run), computing first those of runs whose grading changed.
pub async fn attach_human(
    db: &Db,
    runs: &mut [RunSummary],
    filter: Option<&CellFilter<'_>>,
) -> Result<(), ApiError> {
    let ids: Vec<i64> = runs.iter().map(|r| r.id).collect();
    refresh_human(db, &ids).await?;
    let sums = db.human_sums(&ids, filter).await?;
    for run in runs.iter_mut() {
        let Some(s) = sums.get(&run.id) else {
            continue;
        };
        run.human = Some(HumanAdjusted {
            answered: run.tally.answered,
            correct: run
                .tally
                .correct
                .saturating_add(s.gained)
                .saturating_sub(s.lost),
            resolved: s.resolved,
            changed: s.gained + s.lost,
        });
    }
    Ok(())
}
