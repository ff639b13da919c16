//! `/grading/items/:id`: one item for a reviewer — the question, the model and its output,
//! every annotator's current grade side by side, the history of every version, and the
//! adjudication form (verdict by button or keys 1–4, letters, comment). A save refused as
//! stale (409) says so and offers to reload.

use kokushi_shared::grading::{AuditEntry, Grade, GradingItemDetail, Verdict};
use leptos::html;
use leptos::prelude::*;

use super::forms::Draft;
use super::keys::Action;
use super::labels::{automatic, flag, state, state_id, verdict};
use super::rubric::{action_of, leave_field, question, verdict_picker};
use super::{id_param, not_an_id};
use crate::api::grading as api;
use crate::components::credit_footer::CreditFooter;
use crate::components::error_banner::{ErrorBanner, load_status};
use crate::error::ApiError;
use crate::format::{self, NONE};
use crate::forms::FieldError;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;
use crate::session::Session;

#[component]
pub fn ItemPage() -> impl IntoView {
    let id = id_param("id");
    move || match id.get() {
        (Some(id), _) => view! { <ItemView id /> }.into_any(),
        (None, segment) => not_an_id(segment),
    }
}

#[component]
fn ItemView(id: i64) -> impl IntoView {
    let session = Session::get();
    let loaded = RwSignal::new(Loaded::<GradingItemDetail>::default());
    let draft = RwSignal::new(Draft::default());
    let version = RwSignal::new(0u32);
    let conflict = RwSignal::new(false);
    let field_error = RwSignal::new(None::<FieldError>);
    let save_error = RwSignal::new(None::<ApiError>);
    let saved = RwSignal::new(None::<u32>);
    let busy = RwSignal::new(false);
    let letters = NodeRef::<html::Input>::new();
    // Fetches the item and fills the form from the adjudication on record.
    let load = move || {
        leptos::task::spawn_local(async move {
            let result = api::item(id).await;
            if let Ok(detail) = &result {
                let current = detail.status.adjudication.as_ref();
                draft.set(Draft::from_grade(current));
                version.set(current.map_or(0, |g| g.version));
                conflict.set(false);
            }
            loaded.try_update(|s| s.record(result));
        });
    };
    load();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        let input = match draft.with_untracked(|d| d.input(version.get_untracked())) {
            Ok(input) => input,
            Err(error) => {
                field_error.set(Some(error));
                return;
            }
        };
        field_error.set(None);
        save_error.set(None);
        saved.set(None);
        busy.set(true);
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match api::adjudicate(id, &input, &csrf).await {
                Ok(grade) => {
                    saved.set(Some(grade.version));
                    load();
                }
                Err(error) if error.is_conflict() => conflict.set(true),
                Err(error) => save_error.set(Some(error)),
            }
            busy.set(false);
        });
    };
    let keys = window_event_listener(leptos::ev::keydown, move |ev: web_sys::KeyboardEvent| {
        match action_of(&ev) {
            Some(Action::Verdict(v)) => {
                draft.update(|d| d.verdict = Some(v));
                if v == Verdict::Unparseable
                    && let Some(input) = letters.get_untracked()
                {
                    let _ = input.focus();
                }
            }
            Some(Action::Escape) => leave_field(),
            _ => return,
        }
        ev.prevent_default();
    });
    on_cleanup(move || keys.remove());

    let form = view! {
        <form id="adjudicate-form" class="panel adjudicate" on:submit=submit>
            <h2>{t(i18n::GRADING_ADJUDICATE)}</h2>
            <div class="rubric-row">
                <span class="rubric-label">{t(i18n::GRADING_VERDICT)}</span>
                {verdict_picker(draft, letters)}
            </div>
            <label class="rubric-row">
                <span class="rubric-label">{t(i18n::GRADING_COMMENT)}</span>
                <textarea id="adjudicate-comment" rows="2"
                    prop:value=move || draft.with(|d| d.comment.clone())
                    on:input=move |ev| draft.update(|d| d.comment = event_target_value(&ev))>
                </textarea>
            </label>
            {move || field_error.get().map(|e| view! { <p class="field-error" role="alert">{e.message}</p> })}
            {move || conflict.get().then(|| view! {
                <div id="adjudicate-conflict" class="error" role="alert">
                    {t(i18n::GRADING_CONFLICT)}" "
                    <button type="button" on:click=move |_| load()>{t(i18n::GRADING_RELOAD)}</button>
                </div>
            })}
            {move || save_error.get().map(|error| view! { <ErrorBanner error /> })}
            {move || saved.get().map(|v| view! {
                <p class="ok-banner" id="adjudicate-saved">{tf(i18n::GRADING_ADJUDICATE_SAVED, &[("version", &v)])}</p>
            })}
            <div class="actions">
                <button id="adjudicate-save" type="submit" class="primary" disabled=move || busy.get()>
                    {t(i18n::GRADING_ADJUDICATE_SAVE)}
                </button>
                <span class="hint">{t(i18n::GRADING_ADJUDICATE_HINT)}</span>
            </div>
        </form>
    };
    view! {
        <section id="item-detail" class="grading-item">
            {load_status(loaded)}
            {move || loaded.with(|s| s.latest.clone()).map(|d| detail(id, d))}
            {form}
            {move || loaded.with(|s| s.latest.as_ref().map(|d| history(d.history.clone())))}
        </section>
    }
}

fn detail(id: i64, d: GradingItemDetail) -> impl IntoView {
    let status = d.status;
    let human = status
        .human
        .map_or_else(|| NONE.to_owned(), |v| verdict(v).to_owned());
    let adjudication = status.adjudication.as_ref().map(|a| {
        tf(
            i18n::GRADING_ADJUDICATION_CURRENT,
            &[
                ("verdict", &verdict(a.verdict)),
                ("version", &a.version),
                ("by", &a.by),
            ],
        )
    });
    let parsed = if d.parsed.is_empty() {
        t(i18n::GRADING_PARSED_NOTHING).to_owned()
    } else {
        d.parsed
    };
    view! {
        <p class="crumbs">
            <a href=paths::grading_task_path(d.task_id)>{t(i18n::GRADING_BACK_TO_TASK)}</a>
        </p>
        <h1>{tf(i18n::GRADING_ITEM_TITLE, &[("id", &id), ("problem", &status.problem_id)])}</h1>
        <dl class="summary" id="item-summary">
            <dt>{t(i18n::GRADING_MODEL)}</dt>
            <dd>{d.model}</dd>
            <dt>{t(i18n::GRADING_RUN)}</dt>
            <dd><a href=paths::run_path(status.run_id) rel="external">{format!("#{}", status.run_id)}</a></dd>
            <dt>{t(i18n::GRADING_COL_AUTOMATIC)}</dt>
            <dd>{automatic(status.automatic_correct, status.parse_failed)}</dd>
            <dt>{t(i18n::GRADING_STATE)}</dt>
            <dd>
                <code id="item-state">{state_id(status.state)}</code>" "{state(status.state)}
            </dd>
            <dt>{t(i18n::GRADING_COL_HUMAN)}</dt>
            <dd id="item-human">{human}</dd>
        </dl>
        <div class="grade-grid">
            <div class="grade-question">
                {question(d.question, d.choices, d.gold)}
                <CreditFooter credit=d.credit />
            </div>
            <div class="grade-answer">
                <h2>{t(i18n::GRADING_OUTPUT)}</h2>
                <pre id="item-output" class="raw-output full" lang="ja">{d.output}</pre>
                <p class="parsed-line">{t(i18n::GRADING_PARSED_AS)}" "<strong>{parsed}</strong></p>
            </div>
        </div>
        <h2>{t(i18n::GRADING_GRADES)}</h2>
        {grades(status.grades)}
        <h2>{t(i18n::GRADING_ADJUDICATION)}</h2>
        <p id="item-adjudication">{adjudication.unwrap_or_else(|| NONE.to_owned())}</p>
    }
}

fn grades(grades: Vec<Grade>) -> impl IntoView {
    if grades.is_empty() {
        return view! { <p class="note">{t(i18n::GRADING_GRADES_EMPTY)}</p> }.into_any();
    }
    let cards = grades
        .into_iter()
        .map(|g| {
            let flags = g.flags.iter().map(|f| flag(*f)).collect::<Vec<_>>().join(", ");
            view! {
                <div class="grade-card" data-verdict=g.verdict.id()>
                    <h3>{g.by}</h3>
                    <dl class="summary">
                        <dt>{t(i18n::GRADING_VERDICT)}</dt>
                        <dd class="grade-verdict">{verdict(g.verdict)}</dd>
                        <dt>{t(i18n::GRADING_LETTERS)}</dt>
                        <dd>{or_none(g.letters)}</dd>
                        <dt>{t(i18n::GRADING_COL_RATIONALE)}</dt>
                        <dd>{g.rationale.map_or_else(|| NONE.to_owned(), |r| format!("{r} / 5"))}</dd>
                        <dt>{t(i18n::GRADING_COL_FLAGS)}</dt>
                        <dd>{or_none(flags)}</dd>
                        <dt>{t(i18n::GRADING_COL_COMMENT)}</dt>
                        <dd lang="ja">{or_none(g.comment)}</dd>
                        <dt>{t(i18n::GRADING_COL_VERSION)}</dt>
                        <dd class="created-at">{format!("v{} · {}", g.version, g.at)}</dd>
                    </dl>
                </div>
            }
        })
        .collect_view();
    view! { <div class="grade-cards" id="item-grades">{cards}</div> }.into_any()
}

fn or_none(text: String) -> String {
    if text.is_empty() {
        NONE.to_owned()
    } else {
        text
    }
}

/// A version in the audit log, in a few words (`v2 Incorrect (bd)`); text that is not a
/// grade is shown shortened as it is.
fn change(json: Option<&str>) -> String {
    let Some(json) = json.filter(|j| *j != "null") else {
        return NONE.to_owned();
    };
    match serde_json::from_str::<Grade>(json) {
        Ok(g) if g.letters.is_empty() => format!("v{} {}", g.version, verdict(g.verdict)),
        Ok(g) => format!("v{} {} ({})", g.version, verdict(g.verdict), g.letters),
        Err(_) => format::shorten(json, 60).unwrap_or_else(|| json.to_owned()),
    }
}

fn history(entries: Vec<AuditEntry>) -> impl IntoView {
    let rows = entries
        .into_iter()
        .map(|e| {
            let what = format!(
                "{} → {}",
                change(e.before.as_deref()),
                change(e.after.as_deref())
            );
            view! {
                <tr class="history-row">
                    <td class="created-at">{e.at}</td>
                    <td>{e.actor}</td>
                    <td><code>{e.action}</code></td>
                    <td>{what}</td>
                </tr>
            }
        })
        .collect_view();
    view! {
        <h2>{t(i18n::GRADING_HISTORY)}</h2>
        <table id="item-history" class="grading-table">
            <thead>
                <tr>
                    <th>{t(i18n::GRADING_COL_AT)}</th>
                    <th>{t(i18n::GRADING_COL_ACTOR)}</th>
                    <th>{t(i18n::GRADING_COL_ACTION)}</th>
                    <th>{t(i18n::GRADING_COL_CHANGE)}</th>
                </tr>
            </thead>
            <tbody>{rows}</tbody>
        </table>
    }
}
