//! The new-task form: a name, runs of one exam set (succeeded ones), which of their answers,
//! the sample size and seed, annotators per item and the annotators. Checked field by field
//! before sending; a refusal from the server is shown with its message.

use kokushi_shared::api::{LeaderboardQuery, RunSummary};
use kokushi_shared::grading::{Grader, GradingTaskSummary, Selection};
use leptos::prelude::*;

use super::fetch_into;
use super::forms::{TaskForm as Form, gradable_runs, run_allowed, toggle_id};
use super::labels::selection;
use crate::api::{self, grading};
use crate::components::error_banner::{ErrorBanner, load_status};
use crate::error::ApiError;
use crate::forms::{FieldError, message_for};
use crate::i18n::{self, t, tf};
use crate::paths;
use crate::refresh::Loaded;
use crate::session::Session;

/// A labelled field with its error under it.
fn field(
    label: &'static str,
    name: &'static str,
    errors: RwSignal<Vec<FieldError>>,
    input: impl IntoView + 'static,
) -> impl IntoView {
    view! {
        <div class="field" data-field=name>
            <span>{label}</span>
            {input}
            {move || {
                errors
                    .with(|e| message_for(e, name))
                    .map(|m| view! { <span class="field-error">{m}</span> })
            }}
        </div>
    }
}

#[component]
pub fn TaskForm(on_created: impl Fn(GradingTaskSummary) + Copy + 'static) -> impl IntoView {
    let session = Session::get();
    let runs = RwSignal::new(Loaded::<Vec<RunSummary>>::default());
    fetch_into(runs, async {
        api::leaderboard(LeaderboardQuery::default())
            .await
            .map(|all| gradable_runs(&all))
    });
    let graders = RwSignal::new(Loaded::<Vec<Grader>>::default());
    fetch_into(graders, grading::annotators());
    let form = RwSignal::new(Form::default());
    let errors = RwSignal::new(Vec::<FieldError>::new());
    let refused = RwSignal::new(None::<ApiError>);
    let created = RwSignal::new(None::<GradingTaskSummary>);
    let busy = RwSignal::new(false);

    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        refused.set(None);
        created.set(None);
        let request = match form.with_untracked(Form::request) {
            Ok(request) => request,
            Err(found) => {
                errors.set(found);
                return;
            }
        };
        errors.set(Vec::new());
        busy.set(true);
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match grading::create_task(&request, &csrf).await {
                Ok(task) => {
                    created.set(Some(task.clone()));
                    form.set(Form::default());
                    on_created(task);
                }
                Err(error) => refused.set(Some(error)),
            }
            busy.set(false);
        });
    };

    let run_boxes = move || {
        runs.with(|s| s.latest.clone()).map(|all| {
            if all.is_empty() {
                return view! { <p class="note">{t(i18n::GRADING_FORM_RUNS_EMPTY)}</p> }.into_any();
            }
            all.iter()
                .map(|run| {
                    let id = run.id;
                    let allowed = {
                        let (all, run) = (all.clone(), run.clone());
                        move || form.with(|f| run_allowed(&all, &f.runs, &run))
                    };
                    let model = match &run.adapter {
                        Some(adapter) => format!("{} + {adapter}", run.model),
                        None => run.model.clone(),
                    };
                    view! {
                        <label class="check run-choice">
                            <input type="checkbox" class="task-run" value=id
                                prop:checked=move || form.with(|f| f.runs.contains(&id))
                                disabled=move || !allowed()
                                on:change=move |_| form.update(|f| toggle_id(&mut f.runs, id)) />
                            <span>{format!("#{id} · {model} · {} · {}", run.exam_set, crate::format::accuracy(&run.tally))}</span>
                        </label>
                    }
                })
                .collect_view()
                .into_any()
        })
    };
    let annotator_boxes = move || {
        graders.with(|s| s.latest.clone()).map(|all| {
            if all.is_empty() {
                return view! { <p class="note">{t(i18n::GRADING_FORM_ANNOTATORS_EMPTY)}</p> }
                    .into_any();
            }
            all.into_iter()
                .map(|grader| {
                    let id = grader.id;
                    view! {
                        <label class="chip-check">
                            <input type="checkbox" class="task-annotator" value=id
                                prop:checked=move || form.with(|f| f.annotators.contains(&id))
                                on:change=move |_| form.update(|f| toggle_id(&mut f.annotators, id)) />
                            {grader.username}
                        </label>
                    }
                })
                .collect_view()
                .into_any()
        })
    };
    let selections = Selection::ALL
        .into_iter()
        .map(|s| view! { <option value=s.id()>{selection(s)}</option> })
        .collect_view();
    let is_sample = move || form.with(|f| f.selection == Selection::Sample);

    view! {
        <h2>{t(i18n::GRADING_NEW_TASK)}</h2>
        <form id="task-form" class="panel task-form" on:submit=submit>
            {field(t(i18n::GRADING_FORM_NAME), "name", errors, view! {
                <input id="task-name" type="text"
                    prop:value=move || form.with(|f| f.name.clone())
                    on:input=move |ev| form.update(|f| f.name = event_target_value(&ev)) />
            })}
            {field(t(i18n::GRADING_FORM_RUNS), "runs", errors, view! {
                <div class="run-choices">{load_status(runs)}{run_boxes}</div>
            })}
            <div class="row">
                {field(t(i18n::GRADING_FORM_SELECTION), "selection", errors, view! {
                    <select id="task-selection"
                        prop:value=move || form.with(|f| f.selection.id())
                        on:change=move |ev| {
                            let value = event_target_value(&ev);
                            form.update(|f| f.selection = Selection::from_id(&value).unwrap_or(Selection::All));
                        }>
                        {selections}
                    </select>
                })}
                <Show when=is_sample>
                    {field(t(i18n::GRADING_FORM_SAMPLE_SIZE), "sample_size", errors, view! {
                        <input id="task-sample-size" type="number" min="1"
                            prop:value=move || form.with(|f| f.sample_size.clone())
                            on:input=move |ev| form.update(|f| f.sample_size = event_target_value(&ev)) />
                    })}
                </Show>
                {field(t(i18n::GRADING_FORM_SEED), "seed", errors, view! {
                    <input id="task-seed" type="number" min="0"
                        placeholder=t(i18n::GRADING_FORM_SEED_PLACEHOLDER)
                        prop:value=move || form.with(|f| f.seed.clone())
                        on:input=move |ev| form.update(|f| f.seed = event_target_value(&ev)) />
                })}
                {field(t(i18n::GRADING_FORM_OVERLAP), "overlap", errors, view! {
                    <input id="task-overlap" type="number" min="1"
                        prop:value=move || form.with(|f| f.overlap.clone())
                        on:input=move |ev| form.update(|f| f.overlap = event_target_value(&ev)) />
                })}
            </div>
            {field(t(i18n::GRADING_FORM_ANNOTATORS), "annotators", errors, view! {
                <div class="annotator-choices">{load_status(graders)}{annotator_boxes}</div>
            })}
            {move || refused.get().map(|error| view! { <ErrorBanner error /> })}
            {move || created.get().map(|task| view! {
                <p class="ok-banner" id="task-created">
                    <a href=paths::grading_task_path(task.id)>
                        {tf(i18n::GRADING_FORM_CREATED, &[("name", &task.name), ("items", &task.items)])}
                    </a>
                </p>
            })}
            <div>
                <button id="task-create" type="submit" class="primary" disabled=move || busy.get()>
                    {move || if busy.get() { t(i18n::GRADING_FORM_CREATING) } else { t(i18n::GRADING_FORM_CREATE) }}
                </button>
            </div>
        </form>
    }
}
