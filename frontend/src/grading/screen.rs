//! `/grading/do/:task`: the grading screen, one item at a time, blind (no model, no run).
//!
//! Built for speed on a laptop: the question and its choices on the left, the model's output
//! and the rubric on the right, everything reachable from the keyboard ([`super::keys`]) and by
//! mouse. `?at=` names the assignment on screen, so the browser's back button and a reload
//! keep the place; without it the screen resumes at the first item not graded yet. `Enter`
//! saves (a new version of my grade, made from the version shown) and moves on; after the last
//! item the screen says so. A save refused as stale (409) says someone saved a newer version
//! and offers to reload it.

use kokushi_shared::grading::{BlindItem, Flag, MyQueue};
use leptos::html;
use leptos::prelude::*;
use leptos_router::hooks::{use_navigate, use_query_map};

use super::forms::Draft;
use super::home::progress;
use super::keys::Action;
use super::labels::flag;
use super::rubric::{action_of, leave_field, question, verdict_picker};
use super::{fetch_into, id_param, not_an_id};
use crate::api::grading as api;
use crate::components::credit_footer::CreditFooter;
use crate::components::error_banner::{ErrorBanner, load_status};
use crate::error::ApiError;
use crate::forms::FieldError;
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;
use crate::session::Session;

#[component]
pub fn ScreenPage() -> impl IntoView {
    let task = id_param("task");
    move || match task.get() {
        (Some(task), _) => view! { <Screen task /> }.into_any(),
        (None, segment) => not_an_id(segment),
    }
}

/// Everything the screen keeps between renders.
#[derive(Clone, Copy)]
struct State {
    task: i64,
    /// The assignment the screen should show (the URL's, else where to resume).
    current: Memo<Option<i64>>,
    item: RwSignal<Loaded<BlindItem>>,
    queue: RwSignal<Loaded<MyQueue>>,
    draft: RwSignal<Draft>,
    /// The version of my grade the form was filled from (0: none).
    version: RwSignal<u32>,
    /// The last item was saved: nothing comes next.
    finished: RwSignal<bool>,
    conflict: RwSignal<bool>,
    field_error: RwSignal<Option<FieldError>>,
    save_error: RwSignal<Option<ApiError>>,
    last_saved: RwSignal<Option<(String, u32)>>,
    saving: RwSignal<bool>,
    help: RwSignal<bool>,
    letters: NodeRef<html::Input>,
    comment: NodeRef<html::Textarea>,
}

impl State {
    /// Fetches assignment `id` and fills the form from my grade on record.
    fn load(self, id: i64) {
        leptos::task::spawn_local(async move {
            let result = api::assignment(id).await;
            // A newer item was asked for meanwhile, or the page is gone.
            if self.current.try_get_untracked() != Some(Some(id)) {
                return;
            }
            if let Ok(blind) = &result {
                self.draft.set(Draft::from_grade(blind.grade.as_ref()));
                self.version
                    .set(blind.grade.as_ref().map_or(0, |g| g.version));
            }
            self.conflict.set(false);
            self.field_error.set(None);
            self.save_error.set(None);
            self.item.try_update(|s| s.record(result));
        });
    }

    /// The item on screen, if it is the one asked for (not the previous one while the next
    /// loads).
    fn ready(self) -> Option<BlindItem> {
        let item = self.item.with_untracked(|s| s.latest.clone())?;
        (Some(item.assignment_id) == self.current.get_untracked() && !self.finished.get_untracked())
            .then_some(item)
    }

    fn focus_letters(self) {
        if let Some(input) = self.letters.get_untracked() {
            let _ = input.focus();
        }
    }
}

#[component]
pub(crate) fn Screen(task: i64) -> impl IntoView {
    let session = Session::get();
    let navigate = use_navigate();
    let query = use_query_map();
    let at = Memo::new(move |_| {
        query
            .with(|q| q.get("at"))
            .and_then(|s| paths::parse_run_id(&s))
    });
    let queue = RwSignal::new(Loaded::<MyQueue>::default());
    fetch_into(queue, api::my_queue(task));
    let current = Memo::new(move |_| {
        at.get()
            .or_else(|| queue.with(|q| q.latest.as_ref().and_then(|q| q.task.resume)))
    });
    let state = State {
        task,
        current,
        item: RwSignal::new(Loaded::default()),
        queue,
        draft: RwSignal::new(Draft::default()),
        version: RwSignal::new(0),
        finished: RwSignal::new(false),
        conflict: RwSignal::new(false),
        field_error: RwSignal::new(None),
        save_error: RwSignal::new(None),
        last_saved: RwSignal::new(None),
        saving: RwSignal::new(false),
        help: RwSignal::new(false),
        letters: NodeRef::new(),
        comment: NodeRef::new(),
    };
    Effect::new(move |_| {
        let id = current.get();
        state.finished.set(false);
        if let Some(id) = id {
            state.load(id);
        }
    });

    let go = {
        let navigate = navigate.clone();
        move |to: Option<i64>| {
            if let Some(to) = to {
                // The next item reuses the fields: leave them, so keys are shortcuts again.
                leave_field();
                navigate(&paths::grading_do_at(task, to), Default::default());
            }
        }
    };
    let save = {
        let go = go.clone();
        move || {
            let Some(item) = state.ready() else {
                return;
            };
            if state.saving.get_untracked() {
                return;
            }
            let draft = state.draft.get_untracked();
            // Nothing changed on a graded item: move on without a new version.
            if item.grade.is_some() && draft == Draft::from_grade(item.grade.as_ref()) {
                match item.next {
                    Some(next) => go(Some(next)),
                    None => state.finished.set(true),
                }
                return;
            }
            let input = match draft.input(state.version.get_untracked()) {
                Ok(input) => input,
                Err(error) => {
                    if error.field == "letters" {
                        state.focus_letters();
                    }
                    state.field_error.set(Some(error));
                    return;
                }
            };
            state.field_error.set(None);
            state.save_error.set(None);
            state.saving.set(true);
            let csrf = session.csrf();
            let go = go.clone();
            leptos::task::spawn_local(async move {
                let result = api::save_grade(item.assignment_id, &input, &csrf).await;
                state.saving.set(false);
                match result {
                    Ok(grade) => {
                        state.version.set(grade.version);
                        state
                            .last_saved
                            .set(Some((item.problem_id.clone(), grade.version)));
                        fetch_into(state.queue, api::my_queue(task));
                        match item.next {
                            Some(next) => go(Some(next)),
                            None => {
                                leave_field();
                                state.finished.set(true);
                            }
                        }
                    }
                    Err(error) if error.is_conflict() => state.conflict.set(true),
                    Err(error) => state.save_error.set(Some(error)),
                }
            });
        }
    };

    let keys = window_event_listener(leptos::ev::keydown, {
        let (save, go) = (save.clone(), go.clone());
        move |ev: web_sys::KeyboardEvent| {
            let Some(action) = action_of(&ev) else {
                return;
            };
            match action {
                Action::ToggleHelp => state.help.update(|h| *h = !*h),
                Action::Escape => {
                    state.help.set(false);
                    leave_field();
                }
                _ if state.ready().is_none() => return,
                Action::Verdict(v) => {
                    state.draft.update(|d| d.verdict = Some(v));
                    if v == kokushi_shared::grading::Verdict::Unparseable {
                        state.focus_letters();
                    }
                }
                Action::Rationale(n) => state.draft.update(|d| d.toggle_rationale(n)),
                Action::ToggleFlag(f) => state.draft.update(|d| d.toggle_flag(f)),
                Action::FocusComment => {
                    if let Some(comment) = state.comment.get_untracked() {
                        let _ = comment.focus();
                    }
                }
                Action::Save => save(),
                Action::Next => go(state.ready().and_then(|i| i.next)),
                Action::Previous => go(state.ready().and_then(|i| i.previous)),
            }
            ev.prevent_default();
        }
    });
    on_cleanup(move || keys.remove());

    let shown = Memo::new(move |_| state.item.with(|s| s.latest.clone()));
    let done = Memo::new(move |_| {
        state.finished.get() || (current.get().is_none() && queue.with(|q| q.latest.is_some()))
    });
    let body = move || {
        if done.get() {
            done_view(state).into_any()
        } else {
            let (save, go) = (save.clone(), go.clone());
            shown
                .get()
                .map(|item| item_view(state, item, save, go))
                .into_any()
        }
    };
    let position = move || {
        shown.with(|i| {
            i.as_ref().map_or_else(String::new, |i| {
                tf(
                    i18n::GRADING_POSITION,
                    &[("position", &i.position), ("of", &i.of)],
                )
            })
        })
    };
    let totals = move || {
        queue.with(|q| {
            q.latest
                .as_ref()
                .map(|q| progress(q.task.graded, q.task.assigned))
        })
    };
    let title = move || {
        queue.with(|q| {
            q.latest
                .as_ref()
                .map(|q| q.task.name.clone())
                .unwrap_or_default()
        })
    };
    view! {
        <section id="grading-screen" class="grading-screen">
            <div class="grade-bar">
                <a href=paths::GRADING class="crumb">{t(i18n::GRADING_MY_GRADING)}</a>
                <h1>{title}</h1>
                <span id="grade-progress" class="position">{position}</span>
                <span id="grade-problem" class="problem">
                    {move || shown.with(|i| i.as_ref().map(|i| i.problem_id.clone()))}
                </span>
                <span class="totals">{totals}</span>
                <span id="grade-saved" class="saved">
                    {move || state.last_saved.get().map(|(_, version)| {
                        tf(i18n::GRADING_SAVED, &[("version", &version)])
                    })}
                </span>
                <button id="grade-help-toggle" type="button" aria-expanded=move || state.help.get().to_string()
                    on:click=move |_| state.help.update(|h| *h = !*h)>
                    <kbd>"?"</kbd>" "{t(i18n::GRADING_HELP)}
                </button>
            </div>
            {move || state.conflict.get().then(|| view! {
                <div id="grade-conflict" class="error" role="alert">
                    {t(i18n::GRADING_CONFLICT)}" "
                    <button type="button" id="grade-reload" on:click=move |_| {
                        if let Some(id) = current.get_untracked() {
                            state.load(id);
                        }
                    }>{t(i18n::GRADING_RELOAD)}</button>
                </div>
            })}
            {move || state.save_error.get().map(|error| view! { <ErrorBanner error /> })}
            {load_status(queue)}
            {move || current.get().is_some().then(|| load_status(state.item))}
            {body}
            {move || state.help.get().then(|| help_view(state))}
        </section>
    }
}

fn item_view(
    state: State,
    item: BlindItem,
    save: impl Fn() + Clone + 'static,
    go: impl Fn(Option<i64>) + Clone + 'static,
) -> impl IntoView {
    let draft = state.draft;
    let parsed = if item.parsed.is_empty() {
        t(i18n::GRADING_PARSED_NOTHING).to_owned()
    } else {
        item.parsed.clone()
    };
    let on_record = match &item.grade {
        Some(grade) => tf(i18n::GRADING_CURRENT_GRADE, &[("version", &grade.version)]),
        None => t(i18n::GRADING_NOT_GRADED).to_owned(),
    };
    let rationale = (1..=5u8)
        .map(|n| {
            view! {
                <button type="button" class="chip rationale-choice" data-score=n
                    aria-pressed=move || draft.with(|d| (d.rationale == Some(n)).to_string())
                    on:click=move |_| draft.update(|d| d.toggle_rationale(n))>
                    {n}
                </button>
            }
        })
        .collect_view();
    let flags = Flag::ALL
        .into_iter()
        .map(|f| {
            view! {
                <button type="button" class="chip flag-choice" data-flag=f.id()
                    aria-pressed=move || draft.with(|d| d.has(f).to_string())
                    on:click=move |_| draft.update(|d| d.toggle_flag(f))>
                    <kbd>{super::labels::flag_key(f)}</kbd>" "{flag(f)}
                </button>
            }
        })
        .collect_view();
    let (previous, next) = (item.previous, item.next);
    let go_back = {
        let go = go.clone();
        move |_| go(previous)
    };
    view! {
        <div class="grade-grid" data-assignment=item.assignment_id>
            <div class="grade-question">
                {question(item.question, item.choices, item.gold)}
                <p class="hint">{tf(i18n::GRADING_ASKED, &[("count", &item.asked)])}</p>
                <CreditFooter credit=item.credit />
            </div>
            <div class="grade-answer">
                <h2>{t(i18n::GRADING_OUTPUT)}</h2>
                <pre id="grade-output" class="raw-output full" lang="ja">{item.output}</pre>
                <p class="parsed-line">
                    {t(i18n::GRADING_PARSED_AS)}" "<strong id="grade-parsed">{parsed}</strong>
                    <span class="hint" id="grade-current">" · "{on_record}</span>
                </p>
                <div class="rubric">
                    <div class="rubric-row">
                        <span class="rubric-label">
                            {t(i18n::GRADING_VERDICT)}" "
                            <code id="grade-verdict">
                                {move || draft.with(|d| d.verdict.map_or(crate::format::NONE, |v| v.id()))}
                            </code>
                        </span>
                        {verdict_picker(draft, state.letters)}
                    </div>
                    <div class="rubric-row" title=t(i18n::GRADING_RATIONALE_TITLE)>
                        <span class="rubric-label">{t(i18n::GRADING_RATIONALE)}</span>
                        {rationale}
                    </div>
                    <div class="rubric-row">
                        <span class="rubric-label">{t(i18n::GRADING_FLAGS)}</span>
                        {flags}
                    </div>
                    <label class="rubric-row">
                        <span class="rubric-label"><kbd>"c"</kbd>" "{t(i18n::GRADING_COMMENT)}</span>
                        <textarea id="grade-comment" rows="2" node_ref=state.comment
                            prop:value=move || draft.with(|d| d.comment.clone())
                            on:input=move |ev| draft.update(|d| d.comment = event_target_value(&ev))>
                        </textarea>
                    </label>
                    {move || state.field_error.get().map(|e| view! {
                        <p class="field-error" role="alert">{e.message}</p>
                    })}
                    <div class="actions">
                        <button type="button" id="grade-previous" disabled=previous.is_none()
                            on:click=go_back>
                            <kbd>"k"</kbd>" "{t(i18n::GRADING_PREVIOUS)}
                        </button>
                        <button type="button" id="grade-save" class="primary"
                            disabled=move || state.saving.get()
                            on:click=move |_| save()>
                            <kbd>"Enter"</kbd>" "
                            {move || if state.saving.get() { t(i18n::GRADING_SAVING) } else { t(i18n::GRADING_SAVE) }}
                        </button>
                        <button type="button" id="grade-next" disabled=next.is_none()
                            on:click=move |_| go(next)>
                            <kbd>"j"</kbd>" "{t(i18n::GRADING_NEXT)}
                        </button>
                    </div>
                    <p class="hint">{t(i18n::GRADING_KEYS_HINT)}</p>
                </div>
            </div>
        </div>
    }
}

/// After the last item: done, or how many are still ungraded and a way to the first.
fn done_view(state: State) -> impl IntoView {
    let task = state.task;
    let remaining = move || {
        state.queue.with(|q| {
            q.latest.as_ref().map(|q| {
                let ungraded: Vec<i64> = q
                    .items
                    .iter()
                    .filter(|i| !i.graded)
                    .map(|i| i.assignment_id)
                    .collect();
                match ungraded.first() {
                    Some(first) => view! {
                        <p>{tf(i18n::GRADING_DONE_REMAINING, &[("count", &ungraded.len())])}</p>
                        <a class="button primary" href=paths::grading_do_at(task, *first)>
                            {t(i18n::GRADING_FIRST_UNGRADED)}
                        </a>
                    }
                    .into_any(),
                    None => view! {
                        <p>{t(i18n::GRADING_DONE)}</p>
                        {q.items.first().map(|first| view! {
                            <a class="button" href=paths::grading_do_at(task, first.assignment_id)>
                                {t(i18n::GRADING_REVIEW_FROM_START)}
                            </a>
                        })}
                    }
                    .into_any(),
                }
            })
        })
    };
    view! {
        <div id="grade-done" class="panel done">
            {remaining}
            <a href=paths::GRADING>{t(i18n::GRADING_BACK_TO_GRADING)}</a>
        </div>
    }
}

/// The keys, over the screen; `?` or `Esc` closes it.
fn help_view(state: State) -> impl IntoView {
    let rows = [
        ("1 2 3 4", i18n::GRADING_KEY_VERDICT),
        ("Shift+1 … 5", i18n::GRADING_KEY_RATIONALE),
        ("f", i18n::GRADING_KEY_FLAG_GOLD),
        ("a", i18n::GRADING_KEY_FLAG_AMBIGUOUS),
        ("u", i18n::GRADING_KEY_FLAG_UNSAFE),
        ("c", i18n::GRADING_KEY_COMMENT),
        ("Enter", i18n::GRADING_KEY_SAVE),
        ("j / k", i18n::GRADING_KEY_NEXT_PREVIOUS),
        ("Esc", i18n::GRADING_KEY_ESCAPE),
        ("?", i18n::GRADING_KEY_HELP),
    ]
    .into_iter()
    .map(|(keys, what)| view! { <dt><kbd>{keys}</kbd></dt><dd>{t(what)}</dd> })
    .collect_view();
    view! {
        <div id="grade-help" class="overlay" role="dialog" aria-label=t(i18n::GRADING_HELP_TITLE)>
            <div class="panel">
                <h2>{t(i18n::GRADING_HELP_TITLE)}</h2>
                <dl class="keys">{rows}</dl>
                <button type="button" id="grade-help-close" on:click=move |_| state.help.set(false)>
                    {t(i18n::GRADING_HELP_CLOSE)}
                </button>
            </div>
        </div>
    }
}
