//! The summary of one run at the top of its page.

use kokushi_shared::api::RunDetail;
use leptos::prelude::*;

use crate::components::status_badge::StatusBadge;
use crate::format;
use crate::i18n::{self, t, tf};

#[component]
pub fn RunSummaryList(detail: RunDetail) -> impl IntoView {
    let run = detail.run;
    let rules = detail
        .rules_version
        .unwrap_or_else(|| format::NONE.to_owned());
    // Human grading's accuracy beside the automatic one, once humans have decided any answer.
    let human = run
        .human
        .and_then(|h| h.accuracy().map(|a| (a, h)))
        .map(|(accuracy, h)| {
            tf(
                i18n::RUN_SUMMARY_HUMAN,
                &[
                    ("accuracy", &format::percent(accuracy)),
                    ("graded", &h.resolved),
                    ("changed", &h.changed),
                ],
            )
        });
    let error = run.error.map(|message| {
        view! {
            <dt>{t(i18n::RUN_SUMMARY_ERROR)}</dt>
            <dd class="run-error">{message}</dd>
        }
    });
    view! {
        <dl id="run-summary" class="summary">
            <dt>{t(i18n::RUN_SUMMARY_STATUS)}</dt>
            <dd>
                <StatusBadge status=run.status />
            </dd>
            <dt>{t(i18n::RUN_SUMMARY_EXAM_SET)}</dt>
            <dd>{run.exam_set}</dd>
            <dt>{t(i18n::RUN_SUMMARY_PROMPT_FORMAT)}</dt>
            <dd>
                <code>{run.prompt_format}</code>
                " · "
                {crate::format::scoring(run.scoring)}
            </dd>
            <dt>{t(i18n::RUN_SUMMARY_PROGRESS)}</dt>
            <dd class="progress">{format::progress(run.tally.answered, run.total)}</dd>
            <dt>{t(i18n::RUN_SUMMARY_ACCURACY)}</dt>
            <dd class="accuracy">
                {format::accuracy(&run.tally)}
                {human.map(|text| view! { " · " <span id="human-accuracy">{text}</span> })}
            </dd>
            <dt>{t(i18n::RUN_SUMMARY_POINTS)}</dt>
            <dd class="points">{format::points(&run.tally)}</dd>
            <dt>{t(i18n::RUN_SUMMARY_PARSE_FAILURES)}</dt>
            <dd class="parse-failures">{run.tally.parse_failures}</dd>
            <dt>{t(i18n::RUN_SUMMARY_EXTRACTION_RULES)}</dt>
            <dd class="rules-version">
                <code>{rules}</code>
            </dd>
            <dt>{t(i18n::RUN_SUMMARY_STARTED)}</dt>
            <dd class="created-at">{run.created_at}</dd>
            {error}
        </dl>
    }
}
