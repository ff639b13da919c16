//! One run on the leaderboard.

use kokushi_shared::api::RunSummary;
use leptos::prelude::*;

use crate::components::status_badge::StatusBadge;
use crate::{format, paths};

#[component]
pub fn RunRow(run: RunSummary) -> impl IntoView {
    let error = run.error.clone();
    view! {
        <tr class="run-row" data-run-id=run.id>
            <td class="model">
                <a class="run-link" href=paths::run_path(run.id)>
                    {run.model}
                </a>
                {run
                    .adapter
                    .map(|adapter| {
                        view! { <span class="adapter" title="LoRA adapter">" + "{adapter}</span> }
                    })}
            </td>
            <td class="exam-set">{run.exam_set}</td>
            <td class="prompt-format">
                <code>{run.prompt_format}</code>
            </td>
            <td class="run-status" title=error>
                <StatusBadge status=run.status />
            </td>
            <td class="progress num">{format::progress(run.tally.answered, run.total)}</td>
            <td class="accuracy num">{format::accuracy(&run.tally)}</td>
            <td class="points num">{format::points(&run.tally)}</td>
            <td class="parse-failures num">{run.tally.parse_failures}</td>
        </tr>
    }
}
