//! `/runs/:id`: one run, question by question. Polls until the run is finished.

use kokushi_shared::api::RunDetail;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::components::credit_footer::CreditFooter;
use crate::components::error_banner::ErrorBanner;
use crate::components::question_row::QuestionRow;
use crate::components::run_summary::RunSummaryList;
use crate::error::ApiError;
use crate::paths;
use crate::poll::poll;
use crate::refresh::{Loaded, run_unfinished};

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
                    <h1 id="run-title">"No such run"</h1>
                    <p class="error" role="alert">
                        {format!("“{segment}” is not a run id.")}
                    </p>
                </section>
            }
            .into_any(),
        }
    }
}

#[component]
fn RunView(id: i64) -> impl IntoView {
    let state = RwSignal::new(Loaded::<RunDetail>::default());
    poll(state, move || crate::api::run(id), run_unfinished);

    let title = move || {
        state.with(|s| match &s.latest {
            Some(detail) => format!("Run {id} · {}", detail.run.model),
            None if s.error.as_ref().is_some_and(ApiError::is_not_found) => {
                format!("Run {id} not found")
            }
            None => format!("Run {id}"),
        })
    };
    let error =
        move || state.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let loading = move || {
        state
            .with(Loaded::is_loading)
            .then(|| view! { <p class="loading">"Loading…"</p> })
    };
    let summary = move || {
        state.with(|s| {
            s.latest
                .clone()
                .map(|detail| view! { <RunSummaryList detail /> })
        })
    };
    let has_data = move || state.with(|s| s.latest.is_some());
    let questions = move || {
        state.with(|s| {
            s.latest
                .as_ref()
                .map(|d| d.questions.clone())
                .unwrap_or_default()
        })
    };
    let credit = move || {
        state.with(|s| {
            s.latest
                .as_ref()
                .map(|d| view! { <CreditFooter credit=d.credit.clone() /> })
        })
    };

    view! {
        <section class="run">
            <h1 id="run-title">{title}</h1>
            {error}
            {loading}
            {summary}
            <Show when=has_data>
                <table id="questions">
                    <thead>
                        <tr>
                            <th>"ID"</th>
                            <th>"Question"</th>
                            <th>"Choices"</th>
                            <th>"Gold"</th>
                            <th>"Model output"</th>
                            <th>"Parsed"</th>
                            <th>"Result"</th>
                            <th class="num">"Latency"</th>
                        </tr>
                    </thead>
                    <tbody>
                        // A row is rebuilt only when its question gets its answer, so an
                        // expanded question stays open while the run goes on.
                        <For
                            each=questions
                            key=|q| (q.problem_id.clone(), q.answer.is_some())
                            children=|question| view! { <QuestionRow question /> }
                        />
                    </tbody>
                </table>
            </Show>
            {credit}
        </section>
    }
}
