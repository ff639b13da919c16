//! `/runs/:id/questions/:problem_id`: one question of a run. The stem, the lettered choices
//! with the gold ones marked, the raw reply and the parsed answer, the verdicts, and the
//! Gestalt similarity of the reply to each choice as bars. ← and → (or k and j) move to the
//! previous and next question.

use kokushi_shared::api::QuestionView;
use kokushi_shared::exam::{Gold, choice_letter};
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_params_map};

use crate::chart::bar_percent;
use crate::components::credit_footer::CreditFooter;
use crate::components::error_banner::load_status;
use crate::i18n::{self, t, tf};
use crate::poll::poll;
use crate::refresh::Loaded;
use crate::{format, paths};

#[component]
pub fn QuestionPage() -> impl IntoView {
    let params = use_params_map();
    let key = Memo::new(move |_| {
        params.with(|p| {
            (
                p.get("id").and_then(|s| paths::parse_run_id(&s)),
                p.get("problem_id").unwrap_or_default(),
            )
        })
    });
    move || match key.get() {
        (Some(run), problem_id) => view! { <QuestionScreen run problem_id /> }.into_any(),
        (None, _) => view! {
            <section class="question-view">
                <h1>{t(i18n::RUN_NO_SUCH_RUN)}</h1>
            </section>
        }
        .into_any(),
    }
}

#[component]
fn QuestionScreen(run: i64, problem_id: String) -> impl IntoView {
    let state = RwSignal::new(Loaded::<QuestionView>::default());
    let id = problem_id.clone();
    poll(
        state,
        move || {
            let id = id.clone();
            async move { crate::api::question(run, &id).await }
        },
        |_| false,
    );
    let navigate = use_navigate();
    let go = move |to: Option<String>| {
        if let Some(to) = to {
            navigate(&paths::question_path(run, &to), Default::default());
        }
    };
    let keys = window_event_listener(leptos::ev::keydown, {
        let go = go.clone();
        move |ev: web_sys::KeyboardEvent| {
            if ev.alt_key() || ev.ctrl_key() || ev.meta_key() {
                return;
            }
            let target = match ev.key().as_str() {
                "ArrowLeft" | "k" => {
                    state.with_untracked(|s| s.latest.as_ref().and_then(|v| v.previous.clone()))
                }
                "ArrowRight" | "j" => {
                    state.with_untracked(|s| s.latest.as_ref().and_then(|v| v.next.clone()))
                }
                _ => return,
            };
            ev.prevent_default();
            go(target);
        }
    });
    on_cleanup(move || keys.remove());

    let body = move || {
        state
            .with(|s| s.latest.clone())
            .map(|view| view_of(run, view))
    };
    view! {
        <section class="question-view">
            <p class="crumbs">
                <a href=paths::run_path(run)>{tf(i18n::RUN_TITLE, &[("id", &run)])}</a>
                " › "
                {problem_id.clone()}
            </p>
            {load_status(state)}
            {body}
        </section>
    }
}

fn gold_letters(gold: &Gold) -> Vec<char> {
    match gold {
        Gold::Letters { letters } | Gold::AnyOf { letters } => letters.clone(),
        _ => Vec::new(),
    }
}

fn view_of(run: i64, v: QuestionView) -> impl IntoView {
    let q = v.question;
    let gold = gold_letters(&q.gold);
    let chosen: Vec<char> = v
        .score
        .as_ref()
        .map(|s| s.letters.clone())
        .unwrap_or_default();
    let gestalt: Vec<f64> = v
        .score
        .as_ref()
        .map(|s| s.gestalt.iter().map(|g| g[2]).collect())
        .unwrap_or_default();
    let logprobs: Vec<f64> = v
        .answer
        .as_ref()
        .and_then(|a| a.choice_logprobs.clone())
        .unwrap_or_default();
    let shares = crate::chart::probabilities(&logprobs);
    let with_logprobs = !logprobs.is_empty();
    let prohibited = q.meta.prohibited.clone();
    let choices = q
        .choices
        .iter()
        .enumerate()
        .map(|(i, text)| {
            let letter = choice_letter(i);
            let is_gold = gold.contains(&letter);
            let is_chosen = chosen.contains(&letter);
            let is_prohibited = prohibited.contains(&letter);
            // A log-likelihood answer is a bare letter: its likeness to a choice's text says
            // nothing, so the probability bar takes the Gestalt bar's place.
            let similarity = gestalt.get(i).copied().filter(|_| logprobs.is_empty());
            let probability = logprobs.get(i).copied().zip(shares.get(i).copied());
            view! {
                <li
                    class="choice"
                    class:gold=is_gold
                    class:chosen=is_chosen
                    data-letter=letter.to_string()
                >
                    <span class="letter">{letter.to_string()}</span>
                    <span class="choice-text">{text.clone()}</span>
                    <span class="marks">
                        {is_gold.then(|| view! { <span class="tag gold-tag">{t(i18n::QUESTION_TAG_GOLD)}</span> })}
                        {is_chosen.then(|| view! { <span class="tag chosen-tag">{t(i18n::QUESTION_TAG_MODEL)}</span> })}
                        {is_prohibited.then(|| view! {
                            <span class="tag prohibited-tag" title=t(i18n::QUESTION_PROHIBITED_TITLE) lang="ja">"禁忌"</span>
                        })}
                    </span>
                    {similarity.map(|g| view! {
                        <span class="bar-track gestalt" title=t(i18n::QUESTION_GESTALT_TITLE)>
                            <span class="bar-fill" style:width=bar_percent(g)></span>
                        </span>
                        <span class="bar-value num">{format!("{g:.3}")}</span>
                    })}
                    {probability.map(|(lp, share)| view! {
                        <span class="bar-track logprob" title=t(i18n::QUESTION_LOGPROB_TITLE)>
                            <span class="bar-fill" style:width=bar_percent(share)></span>
                        </span>
                        <span class="bar-value num" title=format!("log p = {lp:.3}")>
                            {format::percent(share)}
                        </span>
                    })}
                </li>
            }
        })
        .collect_view();
    let meta = q.meta.clone();
    let facts = [
        (
            t(i18n::QUESTION_FACT_EXAM),
            meta.exam
                .map(|e| tf(i18n::QUESTION_EXAM_NUMBER, &[("exam", &e)])),
        ),
        (
            t(i18n::QUESTION_FACT_YEAR),
            meta.year.map(|y| y.to_string()),
        ),
        (
            t(i18n::QUESTION_FACT_SECTION),
            meta.section.map(|s| format::section(s.id()).to_owned()),
        ),
        (t(i18n::QUESTION_FACT_SPECIALTY), meta.specialty.clone()),
        (t(i18n::QUESTION_FACT_POINTS), Some(q.points.to_string())),
        (
            t(i18n::QUESTION_FACT_TEXT_ONLY),
            Some(
                if q.text_only {
                    t(i18n::QUESTION_TEXT_ONLY_YES)
                } else {
                    t(i18n::QUESTION_TEXT_ONLY_NO)
                }
                .to_owned(),
            ),
        ),
    ]
    .into_iter()
    .filter_map(|(k, v)| v.map(|v| view! { <dt>{k}</dt> <dd>{v}</dd> }))
    .collect_view();
    let answer = match (&v.answer, &v.score) {
        (Some(answer), Some(score)) => {
            // The class is the same in every language; the text follows the page's.
            let (verdict, verdict_text) = if answer.correct {
                ("correct", t(i18n::QUESTION_VERDICT_CORRECT))
            } else {
                ("wrong", t(i18n::QUESTION_VERDICT_WRONG))
            };
            view! {
                <h2>{t(i18n::QUESTION_ANSWER_HEADING)}</h2>
                <pre class="raw-output full" id="raw-output">{answer.raw_output.clone()}</pre>
                <dl class="summary">
                    <dt>{t(i18n::QUESTION_PARSED_STRICT)}</dt>
                    <dd id="parsed">{format::parsed_answer(&answer.extracted)}</dd>
                    <dt>{t(i18n::QUESTION_LETTERS_LENIENT)}</dt>
                    <dd>{kokushi_shared::exam::join_letters(&score.letters)}</dd>
                    <dt>{t(i18n::QUESTION_VERDICT)}</dt>
                    <dd>
                        <span class=format!("verdict {verdict}") id="verdict">{verdict_text}</span>
                        {tf(
                            i18n::QUESTION_VERDICT_DETAIL,
                            &[
                                ("strict", &yes(score.letter_correct_strict)),
                                ("lenient", &yes(score.letter_correct_lenient)),
                                ("exact", &yes(score.exact_match)),
                                ("gestalt", &score.gestalt_correct.map_or("—", yes)),
                            ],
                        )}
                    </dd>
                    <dt>{t(i18n::RUN_COL_LATENCY)}</dt>
                    <dd>{format::latency(answer.latency_ms)}</dd>
                    <dt>{t(i18n::QUESTION_RULES_VERSION)}</dt>
                    <dd><code>{v.rules_version.clone().unwrap_or_default()}</code></dd>
                    <dt>{t(i18n::QUESTION_LOGPROBS)}</dt>
                    <dd class="hint">
                        {if answer.choice_logprobs.is_some() {
                            t(i18n::QUESTION_LOGPROBS_SHOWN)
                        } else {
                            t(i18n::QUESTION_LOGPROBS_NOTE)
                        }}
                    </dd>
                </dl>
            }
            .into_any()
        }
        _ => view! { <p class="waiting">{t(i18n::QUESTION_NOT_ANSWERED)}</p> }.into_any(),
    };
    let nav = |label: &'static str, id: &'static str, to: Option<String>| match to {
        Some(to) => view! {
            <a class="button" id=id href=paths::question_path(run, &to)>{label}</a>
        }
        .into_any(),
        None => view! { <span class="button disabled">{label}</span> }.into_any(),
    };
    view! {
        <div class="question-head">
            <h1 id="question-title">
                {match &v.run.adapter {
                    Some(adapter) => format!("{} · {} + {adapter}", q.problem_id, v.run.model),
                    None => format!("{} · {}", q.problem_id, v.run.model),
                }}
            </h1>
            <span class="hint">{tf(i18n::QUESTION_POSITION, &[("position", &v.position), ("total", &v.total)])}</span>
            {nav(t(i18n::RUN_PREVIOUS), "question-previous", v.previous.clone())}
            {nav(t(i18n::RUN_NEXT), "question-next", v.next.clone())}
        </div>
        <div class="question-grid">
            <div>
                <p class="stem" lang="ja" id="stem">{q.text.clone()}</p>
                <ol class="choice-list" class:with-logprobs=with_logprobs lang="ja">{choices}</ol>
                <p class="gold-line">{t(i18n::QUESTION_GOLD_ANSWER)} <strong id="gold">{q.gold.display()}</strong></p>
                {answer}
            </div>
            <aside>
                <dl class="summary">{facts}</dl>
                <p class="hint">{t(i18n::QUESTION_KEYS_HINT)}</p>
            </aside>
        </div>
        <CreditFooter credit=v.credit.clone() />
    }
}

fn yes(b: bool) -> &'static str {
    if b { "✓" } else { "✗" }
}
