//! A finished run's scores as `kokushi score` computes them: one row per exam year with the
//! pass/fail verdict against that year's published criteria, then accuracy by block, section
//! and specialty as bars with their intervals.

use kokushi_shared::score::{Breakdown, GroupScore, ScoreReport};
use leptos::prelude::*;

use crate::chart::bar_percent;
use crate::components::whisker::AccuracyWhisker;
use crate::format;

fn verdict(group: &GroupScore) -> AnyView {
    match group.pass {
        Some(true) => view! { <span class="verdict pass">"Pass"</span> }.into_any(),
        Some(false) => view! { <span class="verdict fail">"Fail"</span> }.into_any(),
        None => view! {
            <span class="verdict unknown" title=group.notes.join(" ")>
                "—"
            </span>
        }
        .into_any(),
    }
}

fn group_row(label: String, group: GroupScore) -> impl IntoView {
    let whisker = group
        .accuracy_interval
        .map(|interval| view! { <AccuracyWhisker point=group.accuracy interval /> });
    let prohibited = group
        .prohibited_chosen
        .map_or_else(|| format::NONE.to_owned(), |n| n.to_string());
    let required = format!("{}/{}", group.required_points, group.required_max);
    let general = format!("{}/{}", group.general_points, group.general_max);
    let key = label.clone();
    view! {
        <tr class="year-row" data-year=key>
            <td>{label}</td>
            <td class="num">{group.questions}</td>
            <td class="num">
                {format!("{} ({}/{})", format::percent(group.accuracy), group.correct, group.questions)}
                {whisker}
            </td>
            <td class="num">{format!("{}/{}", group.points, group.points_max)}</td>
            <td class="num">{required}</td>
            <td class="num">{general}</td>
            <td class="num">{prohibited}</td>
            <td class="num">{group.exact_match}</td>
            <td class="num">{group.gestalt_correct}</td>
            <td class="num">{group.parse_failures}</td>
            <td>{verdict(&group)}</td>
        </tr>
    }
}

fn breakdown_bars(title: &'static str, rows: Vec<Breakdown>) -> impl IntoView {
    let items = rows
        .into_iter()
        .map(|b| {
            let ci = b.accuracy_interval.map(|(lo, hi)| {
                view! {
                    <span
                        class="bar-ci"
                        style:left=bar_percent(lo)
                        style:width=bar_percent(hi - lo)
                    ></span>
                }
            });
            let warning = b.warning.clone();
            view! {
                <li class="bar-row" title=warning>
                    <span class="bar-label">{b.key.clone()}</span>
                    <span class="bar-track">
                        <span class="bar-fill" style:width=bar_percent(b.accuracy)></span>
                        {ci}
                    </span>
                    <span class="bar-value num">
                        {format!("{} · {}/{}", format::percent(b.accuracy), b.correct, b.questions)}
                    </span>
                </li>
            }
        })
        .collect_view();
    view! {
        <div class="breakdown">
            <h3>{title}</h3>
            <ul class="bars">{items}</ul>
        </div>
    }
}

#[component]
pub fn ScoreTables(report: ScoreReport) -> impl IntoView {
    let years = report
        .years
        .into_iter()
        .map(|g| {
            let label = match (&g.exam, g.year) {
                (Some(exam), Some(year)) => format!("第{exam}回 ({year})"),
                (None, Some(year)) => year.to_string(),
                (Some(exam), None) => exam.clone(),
                (None, None) => "—".to_owned(),
            };
            group_row(label, g)
        })
        .collect_view();
    let overall = group_row("All".to_owned(), report.overall);
    let by = |what: &str| -> Vec<Breakdown> {
        report
            .breakdowns
            .iter()
            .filter(|b| b.by == what)
            .cloned()
            .collect()
    };
    let (blocks, sections, specialties) = (by("block"), by("section"), by("specialty"));
    view! {
        <section class="scores" id="scores">
            <h2>"Scores by exam year"</h2>
            <table id="year-scores">
                <thead>
                    <tr>
                        <th>"Exam"</th>
                        <th class="num">"Questions"</th>
                        <th class="num">"Accuracy (95% CI)"</th>
                        <th class="num">"Points"</th>
                        <th class="num">"Required"</th>
                        <th class="num">"General"</th>
                        <th class="num">"Prohibited chosen"</th>
                        <th class="num">"Exact match"</th>
                        <th class="num">"Gestalt"</th>
                        <th class="num">"Parse failures"</th>
                        <th>"Verdict"</th>
                    </tr>
                </thead>
                <tbody>{years} {overall}</tbody>
            </table>
            <p class="note">
                {format!(
                    "Scored with rules {} in {} mode. Pass: required section ≥ 80%, general section at the year's cut-off, at most 3 prohibited choices.",
                    report.rules_version,
                    if report.options.mode == kokushi_shared::score::LetterMode::Strict { "strict" } else { "lenient" },
                )}
            </p>
            <div class="breakdowns">
                {(!sections.is_empty()).then(|| breakdown_bars("By section", sections))}
                {(!blocks.is_empty()).then(|| breakdown_bars("By block", blocks))}
                {(!specialties.is_empty()).then(|| breakdown_bars("By specialty", specialties))}
            </div>
        </section>
    }
}
