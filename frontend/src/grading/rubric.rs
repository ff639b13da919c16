//! Pieces the grading screen and the adjudication form share: the question with its lettered
//! choices and the gold ones marked, the verdict buttons with the letters field, and reading a
//! key press from the DOM.

use kokushi_shared::exam::choice_letter;
use kokushi_shared::grading::Verdict;
use leptos::html;
use leptos::prelude::*;
use wasm_bindgen::JsCast;

use super::forms::Draft;
use super::keys::{self, Action, Press};
use super::labels::{gold_letters, verdict as verdict_label};
use crate::i18n::{self, t};

/// The stem, the choices (gold ones marked) and the gold answer.
pub fn question(stem: String, choices: Vec<String>, gold: String) -> impl IntoView {
    let golds = gold_letters(&gold);
    let items = choices
        .into_iter()
        .enumerate()
        .map(|(i, text)| {
            let letter = choice_letter(i);
            let is_gold = golds.contains(&letter);
            view! {
                <li class="choice" class:gold=is_gold data-letter=letter.to_string()>
                    <span class="letter">{letter.to_string()}</span>
                    <span class="choice-text">{text}</span>
                    {is_gold.then(|| view! { <span class="tag gold-tag">{t(i18n::QUESTION_TAG_GOLD)}</span> })}
                </li>
            }
        })
        .collect_view();
    view! {
        <p class="stem" lang="ja" id="grade-question">{stem}</p>
        <ol class="choice-list" lang="ja">{items}</ol>
        <p class="gold-line">
            {t(i18n::GRADING_GOLD)}": "
            <strong id="grade-gold">{gold}</strong>
        </p>
    }
}

/// The four verdict buttons (keys 1–4) and, for an unparseable answer, the letters it gives.
/// Typing letters picks "unparseable".
pub fn verdict_picker(draft: RwSignal<Draft>, letters: NodeRef<html::Input>) -> impl IntoView {
    let buttons = Verdict::ALL
        .into_iter()
        .zip(1..)
        .map(|(v, key)| {
            view! {
                <button type="button" class="chip verdict-choice" data-verdict=v.id()
                    aria-pressed=move || draft.with(|d| (d.verdict == Some(v)).to_string())
                    on:click=move |_| draft.update(|d| d.verdict = Some(v))>
                    <kbd>{key}</kbd>" "{verdict_label(v)}
                </button>
            }
        })
        .collect_view();
    view! {
        <div class="verdicts" role="group" aria-label=t(i18n::GRADING_VERDICT)>{buttons}</div>
        <label class="letters-field"
            class:active=move || draft.with(|d| d.verdict == Some(Verdict::Unparseable))>
            <span>{t(i18n::GRADING_LETTERS)}</span>
            <input id="grade-letters" type="text" autocomplete="off" node_ref=letters
                placeholder=t(i18n::GRADING_LETTERS_PLACEHOLDER)
                prop:value=move || draft.with(|d| d.letters.clone())
                on:input=move |ev| {
                    let value = event_target_value(&ev);
                    draft.update(|d| {
                        if !value.trim().is_empty() {
                            d.verdict = Some(Verdict::Unparseable);
                        }
                        d.letters = value;
                    });
                } />
        </label>
    }
}

/// The shortcut a key press asks for, if any (see [`keys::action`]).
pub fn action_of(ev: &web_sys::KeyboardEvent) -> Option<Action> {
    let typing = ev
        .target()
        .and_then(|target| target.dyn_into::<web_sys::Element>().ok())
        .is_some_and(|element| keys::is_text_field(&element.tag_name()));
    let (key, code) = (ev.key(), ev.code());
    keys::action(Press {
        key: &key,
        code: &code,
        shift: ev.shift_key(),
        modifier: ev.ctrl_key() || ev.alt_key() || ev.meta_key(),
        typing,
    })
}

/// Takes the focus out of the field being typed in.
pub fn leave_field() {
    let active = web_sys::window()
        .and_then(|w| w.document())
        .and_then(|d| d.active_element())
        .and_then(|e| e.dyn_into::<web_sys::HtmlElement>().ok());
    if let Some(element) = active {
        let _ = element.blur();
    }
}
