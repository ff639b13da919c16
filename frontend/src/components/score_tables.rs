//! A finished run's scores as `kokushi score` computes them: one row per exam year with the
//! pass/fail verdict against that year's published criteria, then accuracy by block, section
//! and specialty as bars with their intervals.

use kokushi_shared::examinees::{ExamineeComparison, ExamineeQuestion};
use kokushi_shared::score::{Breakdown, GroupScore, ScoreReport};
use leptos::prelude::*;

use crate::chart::bar_percent;
use crate::components::whisker::AccuracyWhisker;
use crate::format;
use crate::i18n::{self, t, tf};

fn verdict(group: &GroupScore) -> AnyView {
    // A provisional verdict says so, and why (the notes name the figures standing in).
    let provisional = group.provisional.then(|| {
        view! {
            <span class="verdict-provisional" title=group.notes.join(" ")>
                {format!(" ({})", t(i18n::RUN_SCORE_PROVISIONAL))}
            </span>
        }
    });
    match group.pass {
        Some(true) => view! {
            <span class="verdict pass">{t(i18n::RUN_SCORE_PASS)}</span>
            {provisional}
        }
        .into_any(),
        Some(false) => view! {
            <span class="verdict fail">{t(i18n::RUN_SCORE_FAIL)}</span>
            {provisional}
        }
        .into_any(),
        None => view! {
            <span class="verdict unknown" title=group.notes.join(" ")>
                "—"
            </span>
        }
        .into_any(),
    }
}

/// One row of the year table; `key` (the year's label, or `All`) marks it for tests and styles
/// in every language, `label` is what the row shows.
fn group_row(key: String, label: String, group: GroupScore) -> impl IntoView {
    let whisker = group
        .accuracy_interval
        .map(|interval| view! { <AccuracyWhisker point=group.accuracy interval /> });
    let prohibited = group
        .prohibited_chosen
        .map_or_else(|| format::NONE.to_owned(), |n| n.to_string());
    let required = format!("{}/{}", group.required_points, group.required_max);
    let general = format!("{}/{}", group.general_points, group.general_max);
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
    // Sections are named by their API ids (`required`); blocks and specialties are data.
    let label = |b: &Breakdown| {
        if b.by == "section" {
            format::section(&b.key).to_owned()
        } else {
            b.key.clone()
        }
    };
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
                    <span class="bar-label">{label(&b)}</span>
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
            // `data-year` stays the same in every language; the label follows the page's.
            let (key, label) = match (&g.exam, g.year) {
                (Some(exam), Some(year)) => (
                    format!("第{exam}回 ({year})"),
                    tf(
                        i18n::RUN_SCORE_EXAM_YEAR,
                        &[("exam", exam), ("year", &year)],
                    ),
                ),
                (None, Some(year)) => (year.to_string(), year.to_string()),
                (Some(exam), None) => (exam.clone(), exam.clone()),
                (None, None) => ("—".to_owned(), "—".to_owned()),
            };
            group_row(key, label, g)
        })
        .collect_view();
    let overall = group_row(
        "All".to_owned(),
        t(i18n::RUN_SCORE_ALL).to_owned(),
        report.overall,
    );
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
            <h2>{t(i18n::RUN_SCORE_HEADING)}</h2>
            <table id="year-scores">
                <thead>
                    <tr>
                        <th>{t(i18n::RUN_SCORE_COL_EXAM)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_QUESTIONS)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_ACCURACY)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_POINTS)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_REQUIRED)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_GENERAL)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_PROHIBITED)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_EXACT_MATCH)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_GESTALT)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_PARSE_FAILURES)}</th>
                        <th>{t(i18n::RUN_SCORE_COL_VERDICT)}</th>
                    </tr>
                </thead>
                <tbody>{years} {overall}</tbody>
            </table>
            <p class="note">
                {tf(
                    i18n::RUN_SCORE_NOTE,
                    &[
                        ("rules", &report.rules_version),
                        (
                            "mode",
                            &if report.options.mode == kokushi_shared::score::LetterMode::Strict {
                                t(i18n::RUN_SCORE_MODE_STRICT)
                            } else {
                                t(i18n::RUN_SCORE_MODE_LENIENT)
                            },
                        ),
                    ],
                )}
            </p>
            <div class="breakdowns">
                {(!sections.is_empty()).then(|| breakdown_bars(t(i18n::RUN_SCORE_BY_SECTION), sections))}
                {(!blocks.is_empty()).then(|| breakdown_bars(t(i18n::RUN_SCORE_BY_BLOCK), blocks))}
                {(!specialties.is_empty()).then(|| breakdown_bars(t(i18n::RUN_SCORE_BY_SPECIALTY), specialties))}
            </div>
            {report.examinees.map(examinee_tables)}
        </section>
    }
}

/// The model against the examinees: its percentile per year and section, the questions it got
/// right that most examinees missed and the reverse, its wrong answers against theirs.
fn examinee_tables(e: ExamineeComparison) -> impl IntoView {
    let rows = e
        .groups
        .iter()
        .map(|g| {
            view! {
                <tr class="examinee-row">
                    <td>{g.exam.clone().unwrap_or_default()}</td>
                    <td>{g.section.map_or(t(i18n::RUN_EXAMINEES_WHOLE), |s| s.id())}</td>
                    <td class="num">{g.questions}</td>
                    <td class="num">{format!("{}/{}", g.points, g.points_max)}</td>
                    <td class="num">{format!("{:.1}", g.examinee_mean)}</td>
                    <td class="num percentile">{g.percentile.map_or("—".to_owned(), |p| format!("{p:.1}"))}</td>
                </tr>
            }
        })
        .collect_view();
    let notes: Vec<String> = e
        .groups
        .iter()
        .filter(|g| g.section.is_none())
        .map(|g| format!("{} {}", g.exam.as_deref().unwrap_or("—"), g.note))
        .collect();
    let list = |items: &[ExamineeQuestion]| -> String {
        if items.is_empty() {
            return "—".to_owned();
        }
        items
            .iter()
            .map(|q| format!("{} ({:.0}%)", q.problem_id, q.examinee_accuracy * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let wrong = e.same_choice_share.map(|share| {
        view! {
            <p id="wrong-choices">
                {tf(
                    i18n::RUN_EXAMINEES_WRONG,
                    &[
                        ("count", &e.wrong_answers),
                        ("common", &e.common_wrong),
                        ("share", &format!("{:.0}", share * 100.0)),
                    ],
                )}
            </p>
        }
    });
    view! {
        <section id="examinees">
            <h3>{t(i18n::RUN_EXAMINEES_HEADING)}</h3>
            <table id="examinee-percentiles">
                <thead>
                    <tr>
                        <th>{t(i18n::RUN_SCORE_COL_EXAM)}</th>
                        <th>{t(i18n::RUN_EXAMINEES_COL_SECTION)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_QUESTIONS)}</th>
                        <th class="num">{t(i18n::RUN_SCORE_COL_POINTS)}</th>
                        <th class="num">{t(i18n::RUN_EXAMINEES_COL_MEAN)}</th>
                        <th class="num">{t(i18n::RUN_EXAMINEES_COL_PERCENTILE)}</th>
                    </tr>
                </thead>
                <tbody>{rows}</tbody>
            </table>
            <p class="note">{tf(i18n::RUN_EXAMINEES_METHOD, &[("notes", &notes.join("; "))])}</p>
            <p id="right-where-missed">
                {tf(i18n::RUN_EXAMINEES_RIGHT_MISSED, &[("count", &e.right_where_missed.len())])}
                " " {list(&e.right_where_missed)}
            </p>
            <p id="missed-where-right">
                {tf(i18n::RUN_EXAMINEES_MISSED_RIGHT, &[("count", &e.missed_where_right.len())])}
                " " {list(&e.missed_where_right)}
            </p>
            {wrong}
        </section>
    }
}
