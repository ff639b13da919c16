//! One question of a run: the question, its choices, the gold answer and what the model said.

use kokushi_shared::api::QuestionResult;
use kokushi_shared::exam::choice_letter;
use leptos::prelude::*;

use crate::format::{self, Outcome};
use crate::i18n::{self, t};

/// Question stems longer than this are shortened, with the full text a click away.
const SHORT_TEXT_CHARS: usize = 80;

#[component]
pub fn QuestionRow(run_id: i64, question: QuestionResult) -> impl IntoView {
    let outcome = Outcome::of(&question);
    let problem_id = question.problem_id.clone();
    let text = match format::shorten(&question.text, SHORT_TEXT_CHARS) {
        Some(short) => view! {
            <details class="question-text" title=question.text.clone()>
                <summary>{short}</summary>
                <p>{question.text.clone()}</p>
            </details>
        }
        .into_any(),
        None => view! { <p class="question-text">{question.text}</p> }.into_any(),
    };
    let choices = question
        .choices
        .into_iter()
        .enumerate()
        .map(|(index, choice)| {
            view! {
                <li>
                    <span class="letter">{choice_letter(index).to_string()}</span>
                    " "
                    {choice}
                </li>
            }
        })
        .collect_view();
    let answer = match question.answer {
        Some(answer) => {
            let parsed_class = if answer.extracted.is_unparsed() {
                "parsed parse-failed"
            } else {
                "parsed"
            };
            view! {
                <td class="output">
                    <pre class="raw-output">{answer.raw_output}</pre>
                </td>
                <td class=parsed_class>{format::parsed_answer(&answer.extracted)}</td>
                <td class="result">
                    <span class=format!("mark {}", outcome.class())>{outcome.mark()}</span>
                </td>
                <td class="latency num">{format::latency(answer.latency_ms)}</td>
            }
            .into_any()
        }
        None => view! {
            <td class="output" colspan="4">
                <span class="waiting">{t(i18n::FORMAT_WAITING)}</span>
            </td>
        }
        .into_any(),
    };
    view! {
        <tr class="question-row" data-problem-id=problem_id>
            <td class="problem-id">
                <a class="question-link" href=crate::paths::question_path(run_id, &question.problem_id)>
                    {question.problem_id.clone()}
                </a>
            </td>
            <td class="question">{text}</td>
            <td class="choices-cell">
                <ol class="choices">{choices}</ol>
            </td>
            <td class="gold">{question.gold.display()}</td>
            {answer}
        </tr>
    }
}
