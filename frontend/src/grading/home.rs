//! `/grading`: my grading tasks with their progress; for researchers also every task, the
//! new-task form and the gold answers annotators have questioned.

use kokushi_shared::api::Role;
use kokushi_shared::grading::{GoldFlag, GradingTaskSummary, MyTask};
use leptos::prelude::*;

use super::fetch_into;
use super::labels::{progress_share, selection};
use super::task_form::TaskForm;
use crate::api::grading as api;
use crate::chart::bar_percent;
use crate::components::error_banner::load_status;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;
use crate::session::Session;

#[component]
pub fn HomePage() -> impl IntoView {
    let session = Session::get();
    let mine = RwSignal::new(Loaded::<Vec<MyTask>>::default());
    fetch_into(mine, api::mine());
    let researcher = move || session.has(Role::Researcher);
    view! {
        <section id="grading-home">
            <h1>{t(i18n::GRADING_MY_GRADING)}</h1>
            {load_status(mine)}
            {move || mine.with(|m| m.latest.clone()).map(my_tasks)}
            <Show when=researcher>
                <ResearcherPart on_created=move || fetch_into(mine, api::mine()) />
            </Show>
        </section>
    }
}

fn my_tasks(tasks: Vec<MyTask>) -> impl IntoView {
    if tasks.is_empty() {
        return view! { <p class="note" id="my-tasks">{t(i18n::GRADING_MY_TASKS_EMPTY)}</p> }
            .into_any();
    }
    let rows = tasks
        .into_iter()
        .map(|task| {
            let label = if task.graded == 0 {
                t(i18n::GRADING_START)
            } else if task.resume.is_some() {
                t(i18n::GRADING_RESUME)
            } else {
                t(i18n::GRADING_REVIEW)
            };
            view! {
                <tr class="my-task" data-task-id=task.id>
                    <td>{task.name}</td>
                    <td class="progress-cell">{progress(task.graded, task.assigned)}</td>
                    <td>
                        <a class="grade-start button primary" href=paths::grading_do_path(task.id)>
                            {label}
                        </a>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="my-tasks" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_TASK)}</th>
                    <th>{t(i18n::GRADING_COL_PROGRESS)}</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

/// A bar with `graded / assigned` on it.
pub(super) fn progress(graded: u32, assigned: u32) -> impl IntoView {
    view! {
        <div class="progress-bar small">
            <div class="progress-fill" style:width=bar_percent(progress_share(graded, assigned))></div>
            <span class="progress-label">
                {tf(i18n::GRADING_GRADED_OF, &[("graded", &graded), ("assigned", &assigned)])}
            </span>
        </div>
    }
}

#[component]
fn ResearcherPart(on_created: impl Fn() + Copy + Send + Sync + 'static) -> impl IntoView {
    let tasks = RwSignal::new(Loaded::<Vec<GradingTaskSummary>>::default());
    fetch_into(tasks, api::tasks());
    let flags = RwSignal::new(Loaded::<Vec<GoldFlag>>::default());
    fetch_into(flags, api::gold_flags());
    let created = move |task: GradingTaskSummary| {
        tasks.update(|s| {
            if let Some(list) = s.latest.as_mut() {
                list.insert(0, task);
            }
        });
        on_created();
    };
    view! {
        <h2>{t(i18n::GRADING_TASKS)}</h2>
        {load_status(tasks)}
        {move || tasks.with(|s| s.latest.clone()).map(task_list)}
        <TaskForm on_created=created />
        <h2>{t(i18n::GRADING_GOLD_FLAGS)}</h2>
        {load_status(flags)}
        {move || flags.with(|s| s.latest.clone()).map(gold_flags)}
    }
}

fn task_list(tasks: Vec<GradingTaskSummary>) -> impl IntoView {
    if tasks.is_empty() {
        return view! { <p class="note" id="task-list">{t(i18n::GRADING_TASKS_EMPTY)}</p> }
            .into_any();
    }
    let rows = tasks
        .into_iter()
        .map(|task| {
            let what = match task.sample_size {
                Some(n) => format!("{} ({n})", selection(task.selection)),
                None => selection(task.selection).to_owned(),
            };
            let disputed = task.disputed != 0;
            view! {
                <tr class="task-row" data-task-id=task.id>
                    <td>
                        <a class="task-open" href=paths::grading_task_path(task.id)>{task.name}</a>
                    </td>
                    <td>{task.exam_set}</td>
                    <td>{what}</td>
                    <td class="num">{task.overlap}</td>
                    <td class="progress-cell">{progress(task.complete, task.items)}</td>
                    <td class="num disputed" class:bad=disputed>{task.disputed}</td>
                    <td class="created-at">{task.created_by}" · "{task.created_at.get(..10).unwrap_or_default().to_owned()}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="task-list" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_TASK)}</th>
                    <th>{t(i18n::GRADING_COL_EXAM_SET)}</th>
                    <th>{t(i18n::GRADING_COL_SELECTION)}</th>
                    <th class="num" title=t(i18n::GRADING_COL_OVERLAP_TITLE)>{t(i18n::GRADING_COL_OVERLAP)}</th>
                    <th>{t(i18n::GRADING_COL_COMPLETE)}</th>
                    <th class="num">{t(i18n::GRADING_COL_DISPUTED)}</th>
                    <th>{t(i18n::GRADING_COL_CREATED)}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}

fn gold_flags(flags: Vec<GoldFlag>) -> impl IntoView {
    if flags.is_empty() {
        return view! { <p class="note" id="gold-flags">{t(i18n::GRADING_GOLD_FLAGS_EMPTY)}</p> }
            .into_any();
    }
    let rows = flags
        .into_iter()
        .map(|f| {
            view! {
                <tr class="gold-flag">
                    <td>{f.exam_set}</td>
                    <td>{f.problem_id}</td>
                    <td>{f.gold}</td>
                    <td class="num">{f.flagged_by}</td>
                    <td lang="ja">{f.comments.join(" / ")}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="gold-flags" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_EXAM_SET)}</th>
                    <th>{t(i18n::GRADING_COL_PROBLEM)}</th>
                    <th>{t(i18n::GRADING_COL_GOLD)}</th>
                    <th class="num">{t(i18n::GRADING_COL_FLAGGED_BY)}</th>
                    <th>{t(i18n::GRADING_COL_COMMENTS)}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
    .into_any()
}
