//! The summary of one run at the top of its page.

use kokushi_shared::api::RunDetail;
use leptos::prelude::*;

use crate::components::status_badge::StatusBadge;
use crate::format;

#[component]
pub fn RunSummaryList(detail: RunDetail) -> impl IntoView {
    let run = detail.run;
    let rules = detail
        .rules_version
        .unwrap_or_else(|| format::NONE.to_owned());
    let error = run.error.map(|message| {
        view! {
            <dt>"Error"</dt>
            <dd class="run-error">{message}</dd>
        }
    });
    view! {
        <dl id="run-summary" class="summary">
            <dt>"Status"</dt>
            <dd>
                <StatusBadge status=run.status />
            </dd>
            <dt>"Exam set"</dt>
            <dd>{run.exam_set}</dd>
            <dt>"Prompt format"</dt>
            <dd>
                <code>{run.prompt_format}</code>
            </dd>
            <dt>"Progress"</dt>
            <dd class="progress">{format::progress(run.tally.answered, run.total)}</dd>
            <dt>"Accuracy"</dt>
            <dd class="accuracy">{format::accuracy(&run.tally)}</dd>
            <dt>"Points"</dt>
            <dd class="points">{format::points(&run.tally)}</dd>
            <dt>"Parse failures"</dt>
            <dd class="parse-failures">{run.tally.parse_failures}</dd>
            <dt>"Extraction rules"</dt>
            <dd class="rules-version">
                <code>{rules}</code>
            </dd>
            <dt>"Started"</dt>
            <dd class="created-at">{run.created_at}</dd>
            {error}
        </dl>
    }
}
