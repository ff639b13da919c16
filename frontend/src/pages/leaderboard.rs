//! `/`: every run, newest first, with its scores so far. Polls while any run is unfinished.

use kokushi_shared::api::RunSummary;
use leptos::prelude::*;

use crate::api;
use crate::components::error_banner::ErrorBanner;
use crate::components::run_row::RunRow;
use crate::poll::poll;
use crate::refresh::{Loaded, leaderboard_unfinished};

#[component]
pub fn LeaderboardPage() -> impl IntoView {
    let state = RwSignal::new(Loaded::<Vec<RunSummary>>::default());
    poll(state, api::leaderboard, |runs: &Vec<RunSummary>| {
        leaderboard_unfinished(runs)
    });

    let error =
        move || state.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let loading = move || {
        state
            .with(Loaded::is_loading)
            .then(|| view! { <p class="loading">"Loading…"</p> })
    };
    let has_data = move || state.with(|s| s.latest.is_some());
    let runs = move || state.with(|s| s.latest.clone().unwrap_or_default());
    let is_empty = move || state.with(|s| s.latest.as_ref().is_some_and(Vec::is_empty));

    view! {
        <section class="leaderboard">
            <h1>"Leaderboard"</h1>
            {error}
            {loading}
            <Show when=has_data>
                <table id="leaderboard">
                    <thead>
                        <tr>
                            <th>"Model"</th>
                            <th>"Exam set"</th>
                            <th>"Prompt format"</th>
                            <th>"Status"</th>
                            <th class="num">"Progress"</th>
                            <th class="num">"Accuracy"</th>
                            <th class="num">"Points"</th>
                            <th class="num">"Parse failures"</th>
                        </tr>
                    </thead>
                    <tbody>
                        <Show when=is_empty>
                            <tr class="empty">
                                <td colspan="8">
                                    "No runs yet. Start one through the API and it will appear here."
                                </td>
                            </tr>
                        </Show>
                        // Rows are rebuilt only when something they show has changed.
                        <For
                            each=runs
                            key=|run| (run.id, run.status.as_str(), run.tally.answered, run.total)
                            children=|run| view! { <RunRow run /> }
                        />
                    </tbody>
                </table>
            </Show>
            <p class="note">
                "Accuracy and points count answered questions only; a run's score is final once it has succeeded."
            </p>
        </section>
    }
}
