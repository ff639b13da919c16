//! `/`: every run with its scores; sortable, filterable, two rows selectable for a comparison.
//! Polls while any run is unfinished.

use kokushi_shared::api::RunSummary;
use leptos::prelude::*;

use crate::api;
use crate::components::error_banner::load_status;
use crate::components::run_row::RunRow;
use crate::paths;
use crate::poll::poll;
use crate::refresh::{Loaded, leaderboard_unfinished};
use crate::table::{Filter, Sort, SortKey, exam_set_names, visible_runs};

#[component]
pub fn LeaderboardPage() -> impl IntoView {
    let state = RwSignal::new(Loaded::<Vec<RunSummary>>::default());
    poll(state, api::leaderboard, |runs: &Vec<RunSummary>| {
        leaderboard_unfinished(runs)
    });
    let sort = RwSignal::new(Sort::default());
    let filter = RwSignal::new(Filter::default());
    let selected = RwSignal::new(Vec::<i64>::new());

    let rows = Memo::new(move |_| {
        state.with(|s| {
            s.latest
                .as_ref()
                .map(|runs| filter.with(|f| visible_runs(runs, f, sort.get())))
                .unwrap_or_default()
        })
    });
    let names = Memo::new(move |_| {
        state.with(|s| s.latest.as_deref().map(exam_set_names).unwrap_or_default())
    });
    let has_data = move || state.with(|s| s.latest.is_some());
    let is_empty = move || rows.with(Vec::is_empty);
    let header = move |key: SortKey, label: &'static str, class: &'static str| {
        view! {
            <th class=class aria-sort=move || sort.get().aria(key)>
                <button
                    type="button"
                    class="sort"
                    data-sort=label
                    on:click=move |_| sort.update(|s| *s = s.clicked(key))
                >
                    {label}
                </button>
            </th>
        }
    };
    let compare_link = move || {
        selected.with(|s| match s.as_slice() {
            [a, b] => view! {
                <a id="compare-selected" class="button primary" href=paths::compare_path(*a, *b)>
                    "Compare the two selected runs"
                </a>
            }
            .into_any(),
            _ => view! {
                <span class="hint">
                    {format!("Tick two runs to compare them ({} ticked).", s.len())}
                </span>
            }
            .into_any(),
        })
    };

    view! {
        <section class="leaderboard">
            <div class="page-head">
                <h1>"Leaderboard"</h1>
                <a class="button" href=paths::JOBS>
                    "New evaluation"
                </a>
                <a class="button" href="/api/leaderboard/export?format=csv" download>
                    "Download CSV"
                </a>
            </div>
            <div class="toolbar">
                <input
                    id="filter-text"
                    type="search"
                    placeholder="Filter: model, adapter, exam set, format"
                    prop:value=move || filter.with(|f| f.text.clone())
                    on:input=move |ev| filter.update(|f| f.text = event_target_value(&ev))
                />
                <select
                    id="filter-exam-set"
                    on:change=move |ev| filter.update(|f| f.exam_set = event_target_value(&ev))
                >
                    <option value="">"Every exam set"</option>
                    <For
                        each=move || names.get()
                        key=|name| name.clone()
                        children=move |name| {
                            let value = name.clone();
                            view! {
                                <option
                                    value=value.clone()
                                    selected=move || filter.with(|f| f.exam_set == value)
                                >
                                    {name}
                                </option>
                            }
                        }
                    />
                </select>
                <label class="check">
                    <input
                        id="filter-succeeded"
                        type="checkbox"
                        prop:checked=move || filter.with(|f| f.succeeded_only)
                        on:change=move |ev| {
                            filter.update(|f| f.succeeded_only = event_target_checked(&ev))
                        }
                    />
                    " Finished runs only"
                </label>
                <span class="spacer"></span>
                {compare_link}
            </div>
            {load_status(state)}
            <Show when=has_data>
                <table id="leaderboard">
                    <thead>
                        <tr>
                            <th class="select" title="Select two runs to compare"></th>
                            {header(SortKey::Model, "Model", "")}
                            {header(SortKey::ExamSet, "Exam set", "")}
                            {header(SortKey::Format, "Prompt format", "")}
                            {header(SortKey::Status, "Status", "")}
                            <th class="num">"Progress"</th>
                            {header(SortKey::Accuracy, "Accuracy (95% CI)", "num")}
                            <th title="Pass or fail per exam year, against its published criteria">
                                "Pass/fail"
                            </th>
                            {header(SortKey::Points, "Points", "num")}
                            {header(SortKey::ParseFailures, "Parse failures", "num")}
                            {header(SortKey::Created, "Started", "")}
                        </tr>
                    </thead>
                    <tbody>
                        <Show when=is_empty>
                            <tr class="empty">
                                <td colspan="11">
                                    "No runs to show. Launch an evaluation from "
                                    <a href=paths::JOBS>"Jobs"</a>
                                    "."
                                </td>
                            </tr>
                        </Show>
                        // Rows are rebuilt only when something they show has changed.
                        <For
                            each=move || rows.get()
                            key=|run| (run.id, run.status.as_str(), run.tally.answered, run.total)
                            children=move |run| view! { <RunRow run selected /> }
                        />
                    </tbody>
                </table>
            </Show>
            <p class="note">
                "Accuracy and points count the questions answered so far; the whisker is the 95% Wilson interval of the accuracy. A run's score is final once it has succeeded; its page has the per-year pass/fail."
            </p>
        </section>
    }
}
