//! `/runs/:id`: one run. Live progress from the server's event stream, the scores per exam year
//! with pass/fail and per section once it has finished, and the questions, filtered and paged
//! by the server (`/api/runs/{id}/questions`: a run of 2,000 questions is never sent whole).

use kokushi_shared::api::{QuestionResult, RunDetail, RunStatus, RunSummary};
use kokushi_shared::score::ScoreReport;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::components::credit_footer::CreditFooter;
use crate::components::error_banner::{ErrorBanner, load_status};
use crate::components::lineage_card::LineageCard;
use crate::components::question_row::QuestionRow;
use crate::components::run_summary::RunSummaryList;
use crate::components::score_tables::ScoreTables;
use crate::error::ApiError;
use crate::format;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::poll::poll;
use crate::refresh::{Loaded, run_unfinished};
use crate::session::Session;
use crate::table::{PAGE_SIZE, QuestionFilter, filter_label, page_count};

/// Reads the run id from the path and shows that run. A new id builds a new [`RunView`], so
/// the old run's polling stops with the old view.
#[component]
pub fn RunPage() -> impl IntoView {
    let params = use_params_map();
    let segment = Memo::new(move |_| params.with(|p| p.get("id")).unwrap_or_default());
    move || {
        let segment = segment.get();
        match paths::parse_run_id(&segment) {
            Some(id) => view! { <RunView id /> }.into_any(),
            None => view! {
                <section class="run">
                    <h1 id="run-title">{t(i18n::RUN_NO_SUCH_RUN)}</h1>
                    <p class="error" role="alert">
                        {tf(i18n::RUN_NOT_A_RUN_ID, &[("segment", &segment)])}
                    </p>
                </section>
            }
            .into_any(),
        }
    }
}

#[component]
fn RunView(id: i64) -> impl IntoView {
    let session = Session::get();
    let state = RwSignal::new(Loaded::<RunDetail>::default());
    poll(state, move || crate::api::run(id), run_unfinished);
    // The event stream moves the progress bar between two polls of the whole run.
    let live = RwSignal::new(None::<RunSummary>);
    crate::live::follow_run(id, move |summary| live.set(Some(summary)));
    let score = RwSignal::new(Loaded::<ScoreReport>::default());
    let score_asked = RwSignal::new(false);
    Effect::new(move |_| {
        let succeeded = state.with(|s| {
            s.latest
                .as_ref()
                .is_some_and(|d| d.run.status == RunStatus::Succeeded)
        });
        if succeeded && !score_asked.get_untracked() {
            score_asked.set(true);
            leptos::task::spawn_local(async move {
                let result = crate::api::run_score(id).await;
                score.try_update(|s| s.record(result));
            });
        }
    });
    let lineage = RwSignal::new(Loaded::<kokushi_shared::api::RunLineage>::default());
    leptos::task::spawn_local(async move {
        let result = crate::api::lineage(id).await;
        lineage.try_update(|s| s.record(result));
    });
    let lineage_view = move || {
        lineage
            .with(|l| l.latest.clone())
            .map(|lineage| view! { <LineageCard lineage /> })
    };
    let filter = RwSignal::new(QuestionFilter::All);
    // A specialty the questions are narrowed to; empty: every one.
    let specialty = RwSignal::new(String::new());
    let page = RwSignal::new(0usize);
    let action_error = RwSignal::new(None::<ApiError>);

    let title = move || {
        state.with(|s| match &s.latest {
            Some(detail) => match &detail.run.adapter {
                Some(adapter) => tf(
                    i18n::RUN_TITLE_MODEL_ADAPTER,
                    &[
                        ("id", &id),
                        ("model", &detail.run.model),
                        ("adapter", adapter),
                    ],
                ),
                None => tf(
                    i18n::RUN_TITLE_MODEL,
                    &[("id", &id), ("model", &detail.run.model)],
                ),
            },
            None if s.error.as_ref().is_some_and(ApiError::is_not_found) => {
                tf(i18n::RUN_TITLE_NOT_FOUND, &[("id", &id)])
            }
            None => tf(i18n::RUN_TITLE, &[("id", &id)]),
        })
    };
    let progress = move || {
        let summary = live
            .get()
            .or_else(|| state.with(|s| s.latest.as_ref().map(|d| d.run.clone())))?;
        let share = if summary.total == 0 {
            0.0
        } else {
            f64::from(summary.tally.answered) / f64::from(summary.total)
        };
        Some(view! {
            <div class="progress-bar" data-status=summary.status.as_str()>
                <div class="progress-fill" style:width=crate::chart::bar_percent(share)></div>
                <span class="progress-label">
                    {tf(
                        i18n::RUN_PROGRESS,
                        &[
                            ("answered", &summary.tally.answered),
                            ("total", &summary.total),
                            ("status", &format::status(summary.status)),
                        ],
                    )}
                </span>
            </div>
        })
    };
    // A queued run no live worker can hold says so (the server estimates what it needs).
    let waiting = move || {
        state.with(|s| {
            let text = format::waiting(s.latest.as_ref()?.waiting.as_ref()?);
            Some(view! { <p class="note" id="run-waiting" role="status">{text}</p> })
        })
    };
    let act = move |action: &'static str| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match crate::api::run_action(id, action, &csrf).await {
                Ok(_) => {
                    action_error.set(None);
                    // Polling may have stopped on a finished run: start it again.
                    poll(state, move || crate::api::run(id), run_unfinished);
                    if action == "retry" {
                        crate::live::follow_run(id, move |summary| live.set(Some(summary)));
                    }
                }
                Err(error) => action_error.set(Some(error)),
            }
        });
    };
    let actions = move || {
        let (status, published) =
            state.with(|s| s.latest.as_ref().map(|d| (d.run.status, d.run.published)))?;
        // On the portal-wide leaderboard, or off it (docs/projects.md).
        let publish_button = view! {
            <button id="publish-run" type="button" data-published=published.to_string()
                on:click=move |_| act(if published { "unpublish" } else { "publish" })>
                {t(if published { i18n::RUN_UNPUBLISH } else { i18n::RUN_PUBLISH })}
            </button>
        };
        let cancel = (!status.is_finished()).then(|| {
            view! {
                <button id="cancel-run" type="button" on:click=move |_| act("cancel")>
                    {t(i18n::RUN_CANCEL)}
                </button>
            }
        });
        let retry = matches!(status, RunStatus::Failed | RunStatus::Cancelled).then(|| {
            view! {
                <button id="retry-run" type="button" on:click=move |_| act("retry")>
                    {t(i18n::RUN_RETRY)}
                </button>
            }
        });
        Some(view! {
            <div class="actions">
                {cancel}
                {retry}
                {publish_button}
                <a class="button" href=format!("/api/runs/{id}/export?format=jsonl") download>
                    {t(i18n::RUN_EXPORT_ANSWERS_JSONL)}
                </a>
                <a class="button" href=format!("/api/runs/{id}/export?format=csv") download>
                    {t(i18n::RUN_EXPORT_ANSWERS_CSV)}
                </a>
                <a class="button" href=format!("/api/runs/{id}/score?format=csv") download>
                    {t(i18n::RUN_EXPORT_METRICS_CSV)}
                </a>
            </div>
        })
    };
    let action_error_view = move || {
        action_error
            .get()
            .map(|error| view! { <ErrorBanner error /> })
    };
    let summary = move || {
        state.with(|s| {
            s.latest
                .clone()
                .map(|detail| view! { <RunSummaryList detail /> })
        })
    };
    let scores = move || {
        score.with(|s| {
            if let Some(error) = s.error.clone() {
                return Some(view! { <ErrorBanner error /> }.into_any());
            }
            s.latest
                .clone()
                .map(|report| view! { <ScoreTables report /> }.into_any())
        })
    };
    let has_data = move || state.with(|s| s.latest.is_some());
    // The page of questions shown, read from the server: again whenever the filter, the
    // specialty or the page changes, and whenever a poll brings more answers. Only the newest
    // request's answer is kept.
    let questions = RwSignal::new((Vec::<QuestionResult>::new(), 0usize));
    let questions_error = RwSignal::new(None::<ApiError>);
    let asked = StoredValue::new(0u64);
    Effect::new(move |_| {
        let answered = state.with(|s| s.latest.as_ref().map(|d| d.run.tally.answered))?;
        let (f, specialty, page) = (filter.get(), specialty.get(), page.get());
        let ticket = asked.get_value() + 1;
        asked.set_value(ticket);
        leptos::task::spawn_local(async move {
            let result = crate::api::run_questions(id, f, &specialty, page * PAGE_SIZE).await;
            if asked.try_get_value() != Some(ticket) {
                return;
            }
            match result {
                Ok(found) => {
                    questions.try_set(found);
                    questions_error.try_set(None);
                }
                Err(error) => {
                    questions_error.try_set(Some(error));
                }
            }
        });
        Some(answered)
    });
    let specialties = Memo::new(move |_| {
        state.with(|s| {
            s.latest
                .as_ref()
                .map(|d| d.specialties.clone())
                .unwrap_or_default()
        })
    });
    // Only for an exam set that names specialties.
    let specialty_select = move || {
        let names = specialties.get();
        (!names.is_empty()).then(|| {
            view! {
                <select id="filter-specialty" aria-label=t(i18n::RUN_FILTER_SPECIALTY)
                    on:change=move |ev| {
                        specialty.set(event_target_value(&ev));
                        page.set(0);
                    }>
                    <option value="">{t(i18n::RUN_FILTER_ANY_SPECIALTY)}</option>
                    {names
                        .into_iter()
                        .map(|n| view! { <option value=n.clone()>{n.clone()}</option> })
                        .collect_view()}
                </select>
            }
        })
    };
    let shown_count = move || questions.with(|(_, total)| *total);
    let pages = move || page_count(shown_count());
    let rows = move || questions.with(|(rows, _)| rows.clone());
    let questions_error_view = move || {
        questions_error
            .get()
            .map(|error| view! { <ErrorBanner error /> })
    };
    let credit = move || {
        state.with(|s| {
            s.latest
                .as_ref()
                .map(|d| view! { <CreditFooter credit=d.credit.clone() /> })
        })
    };
    let filter_button = move |f: QuestionFilter| {
        view! {
            <button
                type="button"
                class="chip"
                data-filter=f.id()
                aria-pressed=move || (filter.get() == f).to_string()
                on:click=move |_| {
                    filter.set(f);
                    page.set(0);
                }
            >
                {filter_label(f)}
            </button>
        }
    };

    view! {
        <section class="run">
            <h1 id="run-title">{title}</h1>
            {load_status(state)}
            {progress}
            {waiting}
            {actions}
            {action_error_view}
            {summary}
            {scores}
            <Show when=has_data>
                <h2>{t(i18n::RUN_QUESTIONS)}</h2>
                <div class="toolbar">
                    {QuestionFilter::ALL.map(filter_button)}
                    {specialty_select}
                    <span class="spacer"></span>
                    <span class="hint" id="question-count">
                        {move || tf(i18n::RUN_QUESTION_COUNT, &[("count", &shown_count())])}
                    </span>
                </div>
                {questions_error_view}
                <table id="questions">
                    <thead>
                        <tr>
                            <th>{t(i18n::RUN_COL_ID)}</th>
                            <th>{t(i18n::RUN_COL_QUESTION)}</th>
                            <th>{t(i18n::RUN_COL_CHOICES)}</th>
                            <th>{t(i18n::RUN_COL_GOLD)}</th>
                            <th>{t(i18n::RUN_COL_MODEL_OUTPUT)}</th>
                            <th>{t(i18n::RUN_COL_PARSED)}</th>
                            <th>{t(i18n::RUN_COL_RESULT)}</th>
                            <th class="num">{t(i18n::RUN_COL_LATENCY)}</th>
                        </tr>
                    </thead>
                    <tbody>
                        // A row is rebuilt only when its question gets its answer, so an
                        // expanded question stays open while the run goes on.
                        <For
                            each=rows
                            key=|q| (q.problem_id.clone(), q.answer.is_some())
                            children=move |question| view! { <QuestionRow run_id=id question /> }
                        />
                    </tbody>
                </table>
                <nav class="pager" aria-label=t(i18n::RUN_PAGER_LABEL)>
                    <button
                        type="button"
                        id="page-previous"
                        disabled=move || page.get() == 0
                        on:click=move |_| page.update(|p| *p = p.saturating_sub(1))
                    >
                        {t(i18n::RUN_PREVIOUS)}
                    </button>
                    <span id="page-label">
                        {move || {
                            let pages = pages();
                            tf(
                                i18n::RUN_PAGE_OF,
                                &[("page", &(page.get().min(pages - 1) + 1)), ("pages", &pages)],
                            )
                        }}
                    </span>
                    <button
                        type="button"
                        id="page-next"
                        disabled=move || { page.get() + 1 >= pages() }
                        on:click=move |_| page.update(|p| *p += 1)
                    >
                        {t(i18n::RUN_NEXT)}
                    </button>
                </nav>
            </Show>
            {lineage_view}
            {credit}
        </section>
    }
}
