//! One run on the leaderboard.

use kokushi_shared::api::RunSummary;
use leptos::prelude::*;

use crate::components::status_badge::StatusBadge;
use crate::components::whisker::AccuracyWhisker;
use crate::i18n::{self, t, tf};
use crate::table::toggle_selected;
use crate::{format, paths};

#[component]
pub fn RunRow(
    run: RunSummary,
    selected: RwSignal<Vec<i64>>,
    /// A row of the portal-wide leaderboard: another project's run names its project, and its
    /// page (its project's) is not linked.
    #[prop(optional)]
    portal: bool,
) -> impl IntoView {
    let id = run.id;
    let error = run.error.clone();
    let accuracy = (run.tally.answered > 0)
        .then(|| f64::from(run.tally.correct) / f64::from(run.tally.answered));
    let created = run
        .created_at
        .get(..16)
        .unwrap_or(&run.created_at)
        .replace('T', " ");
    let years = run
        .years
        .iter()
        .map(|y| {
            let label = match (&y.exam, y.year) {
                (Some(exam), _) => exam.clone(),
                (None, Some(year)) => year.to_string(),
                (None, None) => "—".to_owned(),
            };
            let (class, mark, what) = match y.pass {
                Some(true) => ("year-chip pass", "✓", t(i18n::LEADERBOARD_YEAR_PASS)),
                Some(false) => ("year-chip fail", "✗", t(i18n::LEADERBOARD_YEAR_FAIL)),
                None => ("year-chip", "", t(i18n::LEADERBOARD_YEAR_NO_VERDICT)),
            };
            // A provisional verdict: marked `?` and said in the title.
            let (mark, what) = if y.pass.is_some() && y.provisional {
                (
                    if mark == "✓" { "✓?" } else { "✗?" },
                    format!("{what} — {}", t(i18n::LEADERBOARD_YEAR_PROVISIONAL)),
                )
            } else {
                (mark, what.to_string())
            };
            let title = tf(
                i18n::LEADERBOARD_YEAR_TITLE,
                &[
                    ("label", &label),
                    ("accuracy", &format::percent(y.accuracy)),
                    ("points", &y.points),
                    ("max", &y.points_max),
                    ("verdict", &what),
                ],
            );
            view! { <span class=class title=title>{format!("{label}{mark}")}</span> }
        })
        .collect_view();
    let share = |count: fn(&kokushi_shared::api::RunMetrics) -> u32| {
        run.metrics.as_ref().map_or_else(
            || format::NONE.to_owned(),
            |m| format::share(count(m), m.questions),
        )
    };
    let exact = share(|m| m.exact_match);
    let gestalt = share(|m| m.gestalt_correct);
    view! {
        <tr
            class="run-row"
            data-run-id=run.id
            class:selected=move || selected.with(|s| s.contains(&id))
        >
            <td class="select">
                <input
                    type="checkbox"
                    class="select-run"
                    aria-label=tf(i18n::LEADERBOARD_SELECT_RUN, &[("id", &id)])
                    prop:checked=move || selected.with(|s| s.contains(&id))
                    on:change=move |_| selected.update(|s| *s = toggle_selected(s, id))
                />
            </td>
            <td class="model">
                {if portal {
                    view! { <span class="run-model">{run.model}</span> }.into_any()
                } else {
                    view! { <a class="run-link" href=paths::run_path(run.id)>{run.model}</a> }
                        .into_any()
                }}
                {run
                    .adapter
                    .map(|adapter| {
                        view! { <span class="adapter" title=t(i18n::LEADERBOARD_ADAPTER_TITLE)>" + "{adapter}</span> }
                    })}
                {if portal {
                    Some(view! { " " <span class="tag project-tag">{run.project}</span> }.into_any())
                } else {
                    run.published.then(|| {
                        view! { " " <span class="tag published-tag">{t(i18n::LEADERBOARD_PUBLISHED)}</span> }
                            .into_any()
                    })
                }}
            </td>
            <td class="exam-set">{run.exam_set}</td>
            <td class="prompt-format">
                <code>{run.prompt_format}</code>
                {(run.scoring == kokushi_shared::job::Scoring::Loglik).then(|| view! {
                    " "
                    <span class="tag scoring-tag">{format::scoring(run.scoring)}</span>
                })}
            </td>
            <td class="shots num">{run.shots}</td>
            <td class="run-status" title=error>
                <StatusBadge status=run.status />
            </td>
            <td class="progress num">{format::progress(run.tally.answered, run.total)}</td>
            <td class="accuracy num">
                <span class="accuracy-value">{format::accuracy(&run.tally)}</span>
                {accuracy
                    .zip(run.accuracy_interval)
                    .map(|(point, interval)| view! { <AccuracyWhisker point interval /> })}
            </td>
            <td class="exact-match num">{exact}</td>
            <td class="gestalt num">{gestalt}</td>
            <td class="human num">{format::human(run.human.as_ref())}</td>
            <td class="years">{years}</td>
            <td class="points num">{format::points(&run.tally)}</td>
            <td class="parse-failures num">{run.tally.parse_failures}</td>
            <td class="created-at">
                {created}
                " "
                {(!portal).then(|| view! {
                    <a
                        class="lineage-link"
                        href=format!("{}#lineage", paths::run_path(id))
                        title=t(i18n::LEADERBOARD_LINEAGE_LINK_TITLE)
                    >
                        {t(i18n::LEADERBOARD_LINEAGE_LINK)}
                    </a>
                })}
            </td>
        </tr>
    }
}
