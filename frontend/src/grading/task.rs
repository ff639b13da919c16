//! `/grading/tasks/:id`: one grading task for its researchers — who has graded how much, the
//! agreement between annotators (Fleiss' κ for the task, Cohen's κ per pair, with their 95%
//! intervals, and plain percent agreement), every item with disputed ones first, and the
//! downloads.

use kokushi_shared::grading::{GradingTaskDetail, ItemStatus, PairAgreement};
use leptos::prelude::*;

use super::home::progress;
use super::labels::{
    automatic, kappa, kappa_interval, percent, selection, state, state_id, state_rank, verdict,
};
use super::{fetch_into, id_param, not_an_id};
use crate::api::grading as api;
use crate::components::error_banner::load_status;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;

#[component]
pub fn TaskPage() -> impl IntoView {
    let id = id_param("id");
    move || match id.get() {
        (Some(id), _) => view! { <TaskView id /> }.into_any(),
        (None, segment) => not_an_id(segment),
    }
}

#[component]
fn TaskView(id: i64) -> impl IntoView {
    let loaded = RwSignal::new(Loaded::<GradingTaskDetail>::default());
    fetch_into(loaded, api::task(id));
    let refresh = move |_| fetch_into(loaded, api::task(id));
    view! {
        <section class="grading-task">
            <div class="page-head">
                <h1 id="task-title">
                    {move || loaded.with(|s| s.latest.as_ref().map(|d| {
                        tf(i18n::GRADING_TASK_TITLE, &[("name", &d.task.name)])
                    }))}
                </h1>
                <a class="button" href=paths::GRADING>{t(i18n::GRADING_BACK_TO_GRADING)}</a>
                <button type="button" id="task-refresh" on:click=refresh>{t(i18n::GRADING_REFRESH)}</button>
            </div>
            {load_status(loaded)}
            {move || loaded.with(|s| s.latest.clone()).map(detail)}
        </section>
    }
}

fn detail(d: GradingTaskDetail) -> impl IntoView {
    let task = d.task;
    let runs = task
        .run_ids
        .iter()
        .map(|run| {
            // The main app's page: a full page load.
            view! { <a href=paths::run_path(*run) rel="external">{format!("#{run}")}</a>" " }
        })
        .collect_view();
    let what = match task.sample_size {
        Some(n) => format!("{} ({n})", selection(task.selection)),
        None => selection(task.selection).to_owned(),
    };
    let annotators = task
        .annotators
        .into_iter()
        .map(|a| {
            view! {
                <tr class="annotator-row">
                    <td>{a.username}</td>
                    <td class="num">{a.assigned}</td>
                    <td class="num">{a.graded}</td>
                    <td class="progress-cell">{progress(a.graded, a.assigned)}</td>
                </tr>
            }
        })
        .collect_view();
    let agreement = d.agreement;
    let downloads = [
        (api::export_path(task.id, "csv"), i18n::GRADING_EXPORT_GRADES_CSV),
        (api::export_path(task.id, "jsonl"), i18n::GRADING_EXPORT_GRADES_JSONL),
        (api::audit_path(task.id, "csv"), i18n::GRADING_EXPORT_AUDIT_CSV),
        (api::audit_path(task.id, "jsonl"), i18n::GRADING_EXPORT_AUDIT_JSONL),
    ]
    .into_iter()
    .map(|(href, label)| view! { <a class="button" href=href download rel="external">{t(label)}</a> })
    .collect_view();
    view! {
        <dl class="summary" id="task-summary">
            <dt>{t(i18n::GRADING_COL_EXAM_SET)}</dt>
            <dd>{task.exam_set}</dd>
            <dt>{t(i18n::GRADING_TASK_RUNS)}</dt>
            <dd>{runs}</dd>
            <dt>{t(i18n::GRADING_COL_SELECTION)}</dt>
            <dd>{what}</dd>
            <dt>{t(i18n::GRADING_TASK_SEED)}</dt>
            <dd><code>{task.seed}</code></dd>
            <dt>{t(i18n::GRADING_COL_OVERLAP_TITLE)}</dt>
            <dd>{task.overlap}</dd>
            <dt>{t(i18n::GRADING_TASK_ITEMS)}</dt>
            <dd>{task.items}</dd>
            <dt>{t(i18n::GRADING_COL_COMPLETE)}</dt>
            <dd class="progress-cell">{progress(task.complete, task.items)}</dd>
            <dt>{t(i18n::GRADING_COL_DISPUTED)}</dt>
            <dd id="task-disputed">{task.disputed}</dd>
            <dt>{t(i18n::GRADING_STATE_ADJUDICATED)}</dt>
            <dd>{task.adjudicated}</dd>
            <dt>{t(i18n::GRADING_TASK_CREATED)}</dt>
            <dd class="created-at">{task.created_by}" · "{task.created_at}</dd>
        </dl>
        <div class="task-columns">
            <div>
                <h2>{t(i18n::GRADING_ANNOTATORS)}</h2>
                <table id="annotator-progress" class="grading-table">
                    <thead>
                        <tr>
                            <th>{t(i18n::GRADING_COL_ANNOTATOR)}</th>
                            <th class="num">{t(i18n::GRADING_COL_ASSIGNED)}</th>
                            <th class="num">{t(i18n::GRADING_COL_GRADED)}</th>
                            <th>{t(i18n::GRADING_COL_PROGRESS)}</th>
                        </tr>
                    </thead>
                    <tbody>{annotators}</tbody>
                </table>
            </div>
            <div id="agreement">
                <h2>{t(i18n::GRADING_AGREEMENT)}</h2>
                <dl class="summary">
                    <dt>{t(i18n::GRADING_AGREEMENT_ITEMS)}</dt>
                    <dd id="agreement-items">{agreement.items}</dd>
                    <dt>{t(i18n::GRADING_RATERS_PER_ITEM)}</dt>
                    <dd>{agreement.raters_per_item}</dd>
                    <dt>{t(i18n::GRADING_FLEISS)}</dt>
                    <dd>
                        <strong id="fleiss-kappa">{kappa(agreement.fleiss.as_ref())}</strong>
                        " "
                        <span class="ci" id="fleiss-interval">{kappa_interval(agreement.fleiss.as_ref())}</span>
                    </dd>
                    <dt>{t(i18n::GRADING_PERCENT_AGREEMENT)}</dt>
                    <dd id="percent-agreement">{percent(agreement.percent)}</dd>
                </dl>
                <h3>{t(i18n::GRADING_PAIRS)}</h3>
                {pairs(agreement.pairs)}
            </div>
        </div>
        <h2>{t(i18n::GRADING_ITEMS)}</h2>
        {items(d.items)}
        <h2>{t(i18n::GRADING_DOWNLOADS)}</h2>
        <div class="actions" id="task-downloads">{downloads}</div>
    }
}

fn pairs(pairs: Vec<PairAgreement>) -> impl IntoView {
    let empty = pairs.is_empty().then(|| {
        view! { <tr class="empty"><td colspan="4">{t(i18n::GRADING_PAIRS_EMPTY)}</td></tr> }
    });
    let rows = pairs
        .into_iter()
        .map(|p| {
            view! {
                <tr class="pair-row">
                    <td>{p.a}" · "{p.b}</td>
                    <td class="num">{p.items}</td>
                    <td class="num">{percent(p.percent)}</td>
                    <td class="num">
                        {kappa(p.cohen.as_ref())}" "
                        <span class="ci">{kappa_interval(p.cohen.as_ref())}</span>
                    </td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="pairs" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_PAIR)}</th>
                    <th class="num">{t(i18n::GRADING_COL_ITEMS)}</th>
                    <th class="num">{t(i18n::GRADING_PERCENT_AGREEMENT)}</th>
                    <th class="num">{t(i18n::GRADING_COL_COHEN)}</th>
                </tr>
            </thead>
            <tbody>{empty}{rows}</tbody>
        </table>
    }
}

fn items(mut items: Vec<ItemStatus>) -> impl IntoView {
    // What needs a reviewer first; the server's order within a state.
    items.sort_by_key(|i| state_rank(i.state));
    let rows = items
        .into_iter()
        .map(|item| {
            let human = item.human.map(|v| {
                let mark = match item.human_correct {
                    Some(true) => " ✓",
                    Some(false) => " ✗",
                    None => "",
                };
                format!("{}{mark}", verdict(v))
            });
            let grades = item
                .grades
                .iter()
                .map(|g| view! { <span class="grade-chip" data-verdict=g.verdict.id()>{g.by.clone()}": "{verdict(g.verdict)}</span> })
                .collect_view();
            view! {
                <tr class="item-row" data-state=state_id(item.state) data-item-id=item.item_id>
                    <td>{item.problem_id}</td>
                    <td class="num">{item.run_id}</td>
                    <td class="mark" class:correct=item.automatic_correct class:wrong=!item.automatic_correct>
                        {automatic(item.automatic_correct, item.parse_failed)}
                    </td>
                    <td class="item-state">{state(item.state)}</td>
                    <td>{human.unwrap_or_else(|| crate::format::NONE.to_owned())}</td>
                    <td>{grades}</td>
                    <td><a class="item-open" href=paths::grading_item_path(item.item_id)>{t(i18n::GRADING_OPEN)}</a></td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <table id="items" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_PROBLEM)}</th>
                    <th class="num">{t(i18n::GRADING_COL_RUN)}</th>
                    <th>{t(i18n::GRADING_COL_AUTOMATIC)}</th>
                    <th>{t(i18n::GRADING_COL_STATE)}</th>
                    <th>{t(i18n::GRADING_COL_HUMAN)}</th>
                    <th>{t(i18n::GRADING_COL_GRADES)}</th>
                    <th></th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
