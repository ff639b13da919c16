//! `/compare?first=A&second=B`: two runs of the same questions. The 2×2 table of right and
//! wrong, the exact McNemar test, the paired bootstrap interval of the points difference, and
//! every question they answered differently, each opening its question view in either run.

use kokushi_shared::api::{RunComparison, RunSummary};
use leptos::prelude::*;
use leptos_router::hooks::use_query_map;

use crate::components::error_banner::ErrorBanner;
use crate::i18n::{self, t, tf};
use crate::poll::poll;
use crate::refresh::Loaded;
use crate::{format, paths};

#[component]
pub fn ComparePage() -> impl IntoView {
    let query = use_query_map();
    let ids = Memo::new(move |_| {
        query.with(|q| {
            (
                q.get("first").and_then(|s| paths::parse_run_id(&s)),
                q.get("second").and_then(|s| paths::parse_run_id(&s)),
            )
        })
    });
    move || match ids.get() {
        (Some(first), Some(second)) => view! { <Comparison first second /> }.into_any(),
        _ => view! {
            <section class="compare">
                <h1>{t(i18n::COMPARE_TITLE)}</h1>
                <p class="error" role="alert">
                    {t(i18n::COMPARE_CHOOSE_BEFORE)}
                    <a href=paths::HOME>{t(i18n::COMPARE_CHOOSE_LINK)}</a>
                    {t(i18n::COMPARE_CHOOSE_AFTER)}
                </p>
            </section>
        }
        .into_any(),
    }
}

fn run_label(run: &RunSummary) -> String {
    match &run.adapter {
        Some(adapter) => format!(
            "#{} {} + {adapter} ({})",
            run.id, run.model, run.prompt_format
        ),
        None => format!("#{} {} ({})", run.id, run.model, run.prompt_format),
    }
}

#[component]
fn Comparison(first: i64, second: i64) -> impl IntoView {
    let state = RwSignal::new(Loaded::<RunComparison>::default());
    poll(state, move || crate::api::compare(first, second), |_| false);
    let error =
        move || state.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let loading = move || {
        state
            .with(Loaded::is_loading)
            .then(|| view! { <p class="loading">{t(i18n::COMPARE_COMPARING)}</p> })
    };
    let body = move || state.with(|s| s.latest.clone()).map(comparison_view);
    view! {
        <section class="compare">
            <h1 id="compare-title">{tf(i18n::COMPARE_HEADING, &[("first", &first), ("second", &second)])}</h1>
            {error}
            {loading}
            {body}
        </section>
    }
}

fn comparison_view(c: RunComparison) -> impl IntoView {
    let p = c.comparison.clone();
    let (a, b) = (c.first.id, c.second.id);
    let significant = p.mcnemar_p < 1.0 - c.confidence;
    let level = format!("{:.0}", c.confidence * 100.0);
    let p_value = format!("{:.4}", p.mcnemar_p);
    let verdict = if p.only_first + p.only_second == 0 {
        t(i18n::COMPARE_VERDICT_SAME).to_owned()
    } else {
        tf(
            if significant {
                i18n::COMPARE_VERDICT_SIGNIFICANT
            } else {
                i18n::COMPARE_VERDICT_NOT_SIGNIFICANT
            },
            &[("level", &level), ("p", &p_value)],
        )
    };
    let rows = c
        .differing
        .iter()
        .map(|d| {
            let mark = |ok: bool| if ok { "✓" } else { "✗" };
            let text = format::shorten(&d.text, 60).unwrap_or_else(|| d.text.clone());
            let answer = |x: &Option<String>| match x {
                None => format::NONE.to_owned(),
                Some(s) if s.is_empty() => t(i18n::COMPARE_PARSE_FAILED).to_owned(),
                Some(s) => s.clone(),
            };
            view! {
                <tr class="differing-row" data-problem-id=d.problem_id.clone()>
                    <td class="problem-id">{d.problem_id.clone()}</td>
                    <td class="question" lang="ja">{text}</td>
                    <td class="gold">{d.gold.clone()}</td>
                    <td class=if d.first_correct { "ok" } else { "bad" }>
                        <a href=paths::question_path(a, &d.problem_id)>
                            {format!("{} {}", mark(d.first_correct), answer(&d.first))}
                        </a>
                    </td>
                    <td class=if d.second_correct { "ok" } else { "bad" }>
                        <a href=paths::question_path(b, &d.problem_id)>
                            {format!("{} {}", mark(d.second_correct), answer(&d.second))}
                        </a>
                    </td>
                </tr>
            }
        })
        .collect_view();
    let differing = c.differing.len();
    view! {
        <div class="compare-runs">
            <div class="run-card">
                <span class="label">{t(i18n::COMPARE_FIRST)}</span>
                <a href=paths::run_path(a) id="compare-first">{run_label(&c.first)}</a>
                <span class="big">{format::percent(c.first_accuracy)}</span>
                <span class="hint">{c.first.exam_set.clone()}</span>
            </div>
            <div class="run-card">
                <span class="label">{t(i18n::COMPARE_SECOND)}</span>
                <a href=paths::run_path(b) id="compare-second">{run_label(&c.second)}</a>
                <span class="big">{format::percent(c.second_accuracy)}</span>
                <span class="hint">{c.second.exam_set.clone()}</span>
            </div>
        </div>
        <p class="verdict-line" id="paired-test">{verdict}</p>
        <div class="compare-grid">
            <table class="contingency" id="contingency">
                <thead>
                    <tr>
                        <th></th>
                        <th>{t(i18n::COMPARE_SECOND_RIGHT)}</th>
                        <th>{t(i18n::COMPARE_SECOND_WRONG)}</th>
                    </tr>
                </thead>
                <tbody>
                    <tr>
                        <th>{t(i18n::COMPARE_FIRST_RIGHT)}</th>
                        <td class="num">{p.both_correct}</td>
                        <td class="num strong">{p.only_first}</td>
                    </tr>
                    <tr>
                        <th>{t(i18n::COMPARE_FIRST_WRONG)}</th>
                        <td class="num strong">{p.only_second}</td>
                        <td class="num">{p.neither}</td>
                    </tr>
                </tbody>
            </table>
            <dl class="summary">
                <dt>{t(i18n::COMPARE_ACCURACY_DIFFERENCE)}</dt>
                <dd>
                    {tf(
                        i18n::COMPARE_ACCURACY_DIFFERENCE_VALUE,
                        &[("difference", &format!("{:+.1}", p.accuracy_difference * 100.0))],
                    )}
                </dd>
                <dt>{t(i18n::COMPARE_POINTS_DIFFERENCE)}</dt>
                <dd id="points-difference">
                    {tf(
                        i18n::COMPARE_POINTS_DIFFERENCE_VALUE,
                        &[
                            ("difference", &format!("{:+}", p.points_difference)),
                            ("level", &level),
                            ("low", &format!("{:+}", p.points_difference_interval.0)),
                            ("high", &format!("{:+}", p.points_difference_interval.1)),
                        ],
                    )}
                </dd>
                <dt>{t(i18n::COMPARE_MCNEMAR_P)}</dt>
                <dd>{p_value}</dd>
            </dl>
        </div>
        <h2>{tf(i18n::COMPARE_DIFFERING_HEADING, &[("count", &differing)])}</h2>
        <table id="differing">
            <thead>
                <tr>
                    <th>{t(i18n::COMPARE_COLUMN_ID)}</th>
                    <th>{t(i18n::COMPARE_COLUMN_QUESTION)}</th>
                    <th>{t(i18n::COMPARE_COLUMN_GOLD)}</th>
                    <th>{tf(i18n::COMPARE_COLUMN_RUN, &[("id", &a)])}</th>
                    <th>{tf(i18n::COMPARE_COLUMN_RUN, &[("id", &b)])}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
