//! `/`: every run with its scores; sortable, filterable, two rows selectable for a comparison.
//! Polls while any run is unfinished.

use kokushi_shared::api::{LeaderboardQuery, RunSummary};
use leptos::prelude::*;

use crate::api;
use crate::components::error_banner::load_status;
use crate::components::run_row::RunRow;
use crate::i18n::{self, Msg, t, tf};
use crate::paths;
use crate::poll::poll;
use crate::refresh::{Loaded, leaderboard_unfinished};
use crate::table::{
    Filter, Sort, SortKey, exam_set_names, list_contains, toggle_in_list, visible_runs, years_of,
};

/// The blocks of an IgakuQA year.
const BLOCKS: [&str; 6] = ["A", "B", "C", "D", "E", "F"];

#[component]
pub fn LeaderboardPage() -> impl IntoView {
    let state = RwSignal::new(Loaded::<Vec<RunSummary>>::default());
    // Which questions the server scores every run on; empty: all, as stored.
    let query = RwSignal::new(LeaderboardQuery::default());
    // The project's runs, or (`true`) every project's published runs.
    let portal = RwSignal::new(false);
    let asked = move || {
        let mut q = query.get();
        q.scope = portal.get().then(|| "portal".to_owned());
        q
    };
    poll(
        state,
        move || api::leaderboard(asked_untracked(query, portal)),
        |runs: &Vec<RunSummary>| leaderboard_unfinished(runs),
    );
    // A new filter is fetched at once (polling may have stopped with every run finished); an
    // answer for a filter changed meanwhile is dropped.
    Effect::new(move |first: Option<()>| {
        let asked = asked();
        if first.is_some() {
            leptos::task::spawn_local(async move {
                let result = api::leaderboard(asked.clone()).await;
                if asked_untracked(query, portal) == asked {
                    state.try_update(|s| s.record(result));
                }
            });
        }
    });
    // The years any run has been scored on, kept while a filter hides them.
    let known_years = RwSignal::new(Vec::<u16>::new());
    Effect::new(move |_| {
        let seen = state.with(|s| s.latest.as_deref().map(years_of).unwrap_or_default());
        if seen
            .iter()
            .any(|y| !known_years.with_untracked(|k| k.contains(y)))
        {
            known_years.update(|k| {
                k.extend(seen);
                k.sort_unstable();
                k.dedup();
            });
        }
    });
    let filtered = move || query.with(|q| *q != LeaderboardQuery::default());
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
    // `data-sort` names the column in English whatever the language: a hook, not a text.
    let header = move |key: SortKey, sort_id: &'static str, label: Msg, class: &'static str| {
        view! {
            <th class=class aria-sort=move || sort.get().aria(key)>
                <button
                    type="button"
                    class="sort"
                    id=(key == SortKey::Human).then_some("sort-human")
                    data-sort=sort_id
                    on:click=move |_| sort.update(|s| *s = s.clicked(key))
                >
                    {t(label)}
                </button>
            </th>
        }
    };
    let compare_link = move || {
        selected.with(|s| match s.as_slice() {
            [a, b] => view! {
                <a id="compare-selected" class="button primary" href=paths::compare_path(*a, *b)>
                    {t(i18n::LEADERBOARD_COMPARE_SELECTED)}
                </a>
            }
            .into_any(),
            _ => view! {
                <span class="hint">
                    {tf(i18n::LEADERBOARD_TICK_TWO, &[("count", &s.len())])}
                </span>
            }
            .into_any(),
        })
    };

    view! {
        <section class="leaderboard">
            <div class="page-head">
                <h1>{t(i18n::COMMON_NAV_LEADERBOARD)}</h1>
                <a class="button" href=paths::JOBS>
                    {t(i18n::LEADERBOARD_NEW_EVALUATION)}
                </a>
                <a class="button" href=move || api::leaderboard_export_path(&asked()) download>
                    {t(i18n::LEADERBOARD_DOWNLOAD_CSV)}
                </a>
                <select id="board-scope" title=t(i18n::LEADERBOARD_SCOPE_TITLE)
                    on:change=move |ev| portal.set(event_target_value(&ev) == "portal")>
                    <option value="project" selected=move || !portal.get()>
                        {t(i18n::LEADERBOARD_SCOPE_PROJECT)}
                    </option>
                    <option value="portal" selected=move || portal.get()>
                        {t(i18n::LEADERBOARD_SCOPE_PORTAL)}
                    </option>
                </select>
            </div>
            <div class="toolbar">
                <input
                    id="filter-text"
                    type="search"
                    placeholder=t(i18n::LEADERBOARD_FILTER_PLACEHOLDER)
                    prop:value=move || filter.with(|f| f.text.clone())
                    on:input=move |ev| filter.update(|f| f.text = event_target_value(&ev))
                />
                <select
                    id="filter-exam-set"
                    on:change=move |ev| filter.update(|f| f.exam_set = event_target_value(&ev))
                >
                    <option value="">{t(i18n::LEADERBOARD_EVERY_EXAM_SET)}</option>
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
                    {t(i18n::LEADERBOARD_FINISHED_ONLY)}
                </label>
                <span class="spacer"></span>
                {compare_link}
            </div>
            <QuestionFilter query known_years />
            {move || {
                filtered()
                    .then(|| view! { <p class="note filter-note">{t(i18n::LEADERBOARD_FILTERED_NOTE)}</p> })
            }}
            {load_status(state)}
            <Show when=has_data>
                <table id="leaderboard">
                    <thead>
                        <tr>
                            <th class="select" title=t(i18n::LEADERBOARD_SELECT_COLUMN_TITLE)></th>
                            {header(SortKey::Model, "Model", i18n::LEADERBOARD_COLUMN_MODEL, "")}
                            {header(SortKey::ExamSet, "Exam set", i18n::LEADERBOARD_COLUMN_EXAM_SET, "")}
                            {header(SortKey::Format, "Prompt format", i18n::LEADERBOARD_COLUMN_FORMAT, "")}
                            {header(SortKey::Shots, "Shots", i18n::LEADERBOARD_COLUMN_SHOTS, "num")}
                            {header(SortKey::Status, "Status", i18n::LEADERBOARD_COLUMN_STATUS, "")}
                            <th class="num">{t(i18n::LEADERBOARD_COLUMN_PROGRESS)}</th>
                            {header(SortKey::Accuracy, "Accuracy (95% CI)", i18n::LEADERBOARD_COLUMN_ACCURACY, "num")}
                            {header(SortKey::ExactMatch, "Exact match", i18n::LEADERBOARD_COLUMN_EXACT_MATCH, "num")}
                            {header(SortKey::Gestalt, "Gestalt", i18n::LEADERBOARD_COLUMN_GESTALT, "num")}
                            {header(SortKey::Human, "Human", i18n::LEADERBOARD_COLUMN_HUMAN, "num")}
                            <th title=t(i18n::LEADERBOARD_COLUMN_PASS_FAIL_TITLE)>
                                {t(i18n::LEADERBOARD_COLUMN_PASS_FAIL)}
                            </th>
                            {header(SortKey::Points, "Points", i18n::LEADERBOARD_COLUMN_POINTS, "num")}
                            {header(SortKey::ParseFailures, "Parse failures", i18n::LEADERBOARD_COLUMN_PARSE_FAILURES, "num")}
                            {header(SortKey::Created, "Started", i18n::LEADERBOARD_COLUMN_STARTED, "")}
                        </tr>
                    </thead>
                    <tbody>
                        <Show when=is_empty>
                            <tr class="empty">
                                <td colspan="15">
                                    {t(i18n::LEADERBOARD_EMPTY_BEFORE)}
                                    <a href=paths::JOBS>{t(i18n::COMMON_NAV_JOBS)}</a>
                                    {t(i18n::LEADERBOARD_EMPTY_AFTER)}
                                </td>
                            </tr>
                        </Show>
                        // Rows are rebuilt only when something they show has changed.
                        // The board's scope is in the key: a run on both boards is drawn
                        // again in the other's manner.
                        <For
                            each=move || {
                                portal.track();
                                rows.get()
                            }
                            key=move |run| {
                                (
                                    portal.get_untracked(),
                                    run.id,
                                    run.status.as_str(),
                                    run.tally.answered,
                                    run.tally.correct,
                                    run.total,
                                    run.human.map(|h| (h.correct, h.answered, h.resolved)),
                                )
                            }
                            children=move |run| view! { <RunRow run selected portal=portal.get_untracked() /> }
                        />
                    </tbody>
                </table>
            </Show>
            <p class="note">
                {t(i18n::LEADERBOARD_NOTE)}
            </p>
        </section>
    }
}

/// The query as asked now, with the board's scope, read without tracking.
fn asked_untracked(query: RwSignal<LeaderboardQuery>, portal: RwSignal<bool>) -> LeaderboardQuery {
    let mut q = query.get_untracked();
    q.scope = portal.get_untracked().then(|| "portal".to_owned());
    q
}

/// Which questions every run is scored on: exam years, blocks, section, specialty, text-only.
/// The server scores again; this only edits the query.
#[component]
pub(crate) fn QuestionFilter(
    query: RwSignal<LeaderboardQuery>,
    known_years: RwSignal<Vec<u16>>,
) -> impl IntoView {
    let year_boxes = move || {
        known_years
            .get()
            .into_iter()
            .map(|year| {
                let value = year.to_string();
                let checked = {
                    let value = value.clone();
                    move || query.with(|q| list_contains(&q.years, &value))
                };
                let toggle = {
                    let value = value.clone();
                    move |_| query.update(|q| q.years = toggle_in_list(&q.years, &value))
                };
                view! {
                    <label class="chip-check">
                        <input type="checkbox" class="filter-year" value=value.clone()
                            prop:checked=checked on:change=toggle />
                        {value.clone()}
                    </label>
                }
            })
            .collect_view()
    };
    let block_boxes = BLOCKS
        .into_iter()
        .map(|block| {
            view! {
                <label class="chip-check">
                    <input type="checkbox" class="filter-block" value=block
                        prop:checked=move || query.with(|q| list_contains(&q.blocks, block))
                        on:change=move |_| query.update(|q| q.blocks = toggle_in_list(&q.blocks, block)) />
                    {block}
                </label>
            }
        })
        .collect_view();
    let set_section = move |ev| {
        let value = event_target_value(&ev);
        query.update(|q| q.section = (!value.is_empty()).then_some(value));
    };
    let set_specialty = move |ev| {
        let value = event_target_value(&ev).trim().to_owned();
        query.update(|q| q.specialty = (!value.is_empty()).then_some(value));
    };
    view! {
        <div class="toolbar question-filter" id="question-filter">
            <span class="filter-label">{t(i18n::LEADERBOARD_SCORE_ON)}</span>
            <span class="filter-group" title=t(i18n::LEADERBOARD_YEARS)>{year_boxes}</span>
            <span class="filter-group" title=t(i18n::LEADERBOARD_BLOCKS)>{block_boxes}</span>
            <select id="filter-section" on:change=set_section
                prop:value=move || query.with(|q| q.section.clone().unwrap_or_default())>
                <option value="">{t(i18n::LEADERBOARD_EVERY_SECTION)}</option>
                <option value="required">{t(i18n::LEADERBOARD_SECTION_REQUIRED)}</option>
                <option value="general">{t(i18n::LEADERBOARD_SECTION_GENERAL)}</option>
            </select>
            <input id="filter-specialty" type="search"
                placeholder=t(i18n::LEADERBOARD_SPECIALTY_PLACEHOLDER)
                prop:value=move || query.with(|q| q.specialty.clone().unwrap_or_default())
                on:change=set_specialty />
            <label class="check">
                <input id="filter-text-only" type="checkbox"
                    prop:checked=move || query.with(|q| q.text_only == Some(true))
                    on:change=move |ev| {
                        let on = event_target_checked(&ev);
                        query.update(|q| q.text_only = on.then_some(true));
                    } />
                {t(i18n::LEADERBOARD_TEXT_ONLY)}
            </label>
            {move || {
                query.with(|q| *q != LeaderboardQuery::default()).then(|| view! {
                    <button id="filter-clear" type="button"
                        on:click=move |_| query.set(LeaderboardQuery::default())>
                        {t(i18n::LEADERBOARD_CLEAR_FILTER)}
                    </button>
                })
            }}
        </div>
    }
}
