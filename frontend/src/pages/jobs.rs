//! `/jobs`: launch an evaluation or a LoRA tuning, and watch the queue: unfinished runs and
//! every tuning, with cancel and retry.

use kokushi_shared::api::{ExamSetSummary, RunSummary, StoreEntry, TuningSummary};
use kokushi_shared::prompt::PromptFormat;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::components::error_banner::ErrorBanner;
use crate::components::status_badge::StatusBadge;
use crate::error::ApiError;
use crate::forms::{EvalForm, FieldError, PRESETS, TuneForm, message_for};
use crate::poll::poll;
use crate::refresh::{Loaded, leaderboard_unfinished};
use crate::session::Session;
use crate::{format, paths};

fn tunings_unfinished(tunings: &[TuningSummary]) -> bool {
    tunings.iter().any(|t| !t.status.is_finished())
}

/// A labelled form field with its error under it.
fn field(
    label: &'static str,
    name: &'static str,
    errors: RwSignal<Vec<FieldError>>,
    input: impl IntoView + 'static,
) -> impl IntoView {
    view! {
        <label class="field" data-field=name>
            <span>{label}</span>
            {input}
            {move || {
                errors
                    .with(|e| message_for(e, name))
                    .map(|m| view! { <span class="field-error">{m}</span> })
            }}
        </label>
    }
}

fn text_input(
    id: &'static str,
    placeholder: &'static str,
    value: impl Fn() -> String + Send + Sync + 'static,
    set: impl Fn(String) + 'static,
) -> impl IntoView {
    view! {
        <input
            id=id
            type="text"
            placeholder=placeholder
            prop:value=value
            on:input=move |ev| set(event_target_value(&ev))
        />
    }
}

fn options_of(items: Vec<(String, String)>, current: String) -> impl IntoView {
    items
        .into_iter()
        .map(|(value, label)| {
            let selected = value == current;
            view! { <option value=value selected=selected>{label}</option> }
        })
        .collect_view()
}

fn exam_set_options(sets: &[ExamSetSummary]) -> Vec<(String, String)> {
    sets.iter()
        .map(|s| {
            (
                s.id.to_string(),
                format!("{} v{} · {} questions", s.name, s.version, s.question_count),
            )
        })
        .collect()
}

fn format_options() -> Vec<(String, String)> {
    PromptFormat::ALL
        .iter()
        .map(|f| (f.id().to_owned(), f.id().to_owned()))
        .collect()
}

#[component]
pub fn JobsPage() -> impl IntoView {
    let session = Session::get();
    let navigate = use_navigate();
    let sets = RwSignal::new(Loaded::<Vec<ExamSetSummary>>::default());
    poll(sets, crate::api::exam_sets, |_| false);
    let store = RwSignal::new(Loaded::<Vec<StoreEntry>>::default());
    poll(store, crate::api::models, |_| false);
    let runs = RwSignal::new(Loaded::<Vec<RunSummary>>::default());
    poll(runs, crate::api::leaderboard, |r: &Vec<RunSummary>| {
        leaderboard_unfinished(r)
    });
    let tunings = RwSignal::new(Loaded::<Vec<TuningSummary>>::default());
    poll(tunings, crate::api::tunings, |t: &Vec<TuningSummary>| {
        tunings_unfinished(t)
    });

    let models = Memo::new(move |_| {
        store.with(|s| {
            s.latest
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|e| e.runnable && e.format != "peft-lora")
                .map(|e| {
                    let what = [e.architecture.clone(), e.quantization.clone()]
                        .into_iter()
                        .flatten()
                        .collect::<Vec<_>>()
                        .join(", ");
                    (e.name.clone(), format!("{} ({what})", e.name))
                })
                .collect::<Vec<_>>()
        })
    });
    let adapters = Memo::new(move |_| {
        store.with(|s| {
            s.latest
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|e| e.runnable && e.format == "peft-lora")
                .map(|e| {
                    let base = e.base_entry.clone().unwrap_or_else(|| "?".to_owned());
                    (e.name.clone(), format!("{} (on {base})", e.name))
                })
                .collect::<Vec<_>>()
        })
    });
    let set_options = Memo::new(move |_| {
        sets.with(|s| exam_set_options(s.latest.as_deref().unwrap_or_default()))
    });

    // The evaluation form.
    let eval = RwSignal::new(EvalForm {
        prompt_format: "chatml_ja_v1".to_owned(),
        priority: "normal".to_owned(),
        ..EvalForm::default()
    });
    // The tuning form.
    let tune = RwSignal::new(TuneForm {
        prompt_format: "chatml_ja_v1".to_owned(),
        preset: "small".to_owned(),
        priority: "normal".to_owned(),
        ..TuneForm::default()
    });
    // Defaults once the lists arrive: the first exam set and model.
    Effect::new(move |_| {
        let first_set = set_options.with(|o| o.first().map(|(v, _)| v.clone()));
        let first_model = models.with(|o| o.first().map(|(v, _)| v.clone()));
        eval.update(|f| {
            if f.exam_set.is_empty()
                && let Some(v) = first_set.clone()
            {
                f.exam_set = v;
            }
            if f.model.is_empty()
                && let Some(v) = first_model.clone()
            {
                f.model = v;
            }
        });
        tune.update(|f| {
            if f.data_exam_set.is_empty()
                && let Some(v) = first_set
            {
                f.data_exam_set = v;
            }
            if f.base_model.is_empty()
                && let Some(v) = first_model
            {
                f.base_model = v;
            }
        });
    });
    let eval_errors = RwSignal::new(Vec::<FieldError>::new());
    let eval_failed = RwSignal::new(None::<ApiError>);
    let eval_busy = RwSignal::new(false);
    let submit_eval = {
        let navigate = navigate.clone();
        move |ev: leptos::ev::SubmitEvent| {
            ev.prevent_default();
            match eval.with_untracked(EvalForm::request) {
                Err(errors) => eval_errors.set(errors),
                Ok(request) => {
                    eval_errors.set(Vec::new());
                    eval_busy.set(true);
                    let csrf = session.csrf();
                    let navigate = navigate.clone();
                    leptos::task::spawn_local(async move {
                        match crate::api::create_run(&request, &csrf).await {
                            Ok(run) => navigate(&paths::run_path(run.id), Default::default()),
                            Err(error) => eval_failed.set(Some(error)),
                        }
                        eval_busy.set(false);
                    });
                }
            }
        }
    };

    let tune_errors = RwSignal::new(Vec::<FieldError>::new());
    let tune_failed = RwSignal::new(None::<ApiError>);
    let tune_busy = RwSignal::new(false);
    let submit_tune = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        match tune.with_untracked(TuneForm::request) {
            Err(errors) => tune_errors.set(errors),
            Ok(request) => {
                tune_errors.set(Vec::new());
                tune_busy.set(true);
                let csrf = session.csrf();
                let navigate = navigate.clone();
                leptos::task::spawn_local(async move {
                    match crate::api::create_tuning(&request, &csrf).await {
                        Ok(t) => navigate(&paths::tuning_path(t.id), Default::default()),
                        Err(error) => tune_failed.set(Some(error)),
                    }
                    tune_busy.set(false);
                });
            }
        }
    };

    let queue_error = RwSignal::new(None::<ApiError>);
    let act_run = move |id: i64, action: &'static str| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match crate::api::run_action(id, action, &csrf).await {
                Ok(_) => {
                    queue_error.set(None);
                    poll(runs, crate::api::leaderboard, |r: &Vec<RunSummary>| {
                        leaderboard_unfinished(r)
                    });
                }
                Err(e) => queue_error.set(Some(e)),
            }
        });
    };
    let act_tuning = move |id: i64, action: &'static str| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            match crate::api::tuning_action(id, action, &csrf).await {
                Ok(_) => {
                    queue_error.set(None);
                    poll(tunings, crate::api::tunings, |t: &Vec<TuningSummary>| {
                        tunings_unfinished(t)
                    });
                }
                Err(e) => queue_error.set(Some(e)),
            }
        });
    };
    let waiting_runs = move || {
        runs.with(|r| {
            r.latest
                .as_deref()
                .unwrap_or_default()
                .iter()
                .filter(|r| !r.status.is_finished())
                .cloned()
                .collect::<Vec<_>>()
        })
    };
    let tuning_rows = move || tunings.with(|t| t.latest.clone().unwrap_or_default());

    view! {
        <section class="jobs">
            <h1>"Jobs"</h1>
            <div class="forms">
                <form class="panel" id="eval-form" on:submit=submit_eval>
                    <h2>"Evaluate a model"</h2>
                    {field("Exam set", "exam_set", eval_errors, view! {
                        <select id="eval-exam-set" on:change=move |ev| eval.update(|f| f.exam_set = event_target_value(&ev))>
                            {move || options_of(set_options.get(), eval.with(|f| f.exam_set.clone()))}
                        </select>
                    })}
                    {field("Model", "model", eval_errors, view! {
                        <select id="eval-model" on:change=move |ev| eval.update(|f| f.model = event_target_value(&ev))>
                            {move || options_of(models.get(), eval.with(|f| f.model.clone()))}
                        </select>
                    })}
                    {field("LoRA adapter", "adapter", eval_errors, view! {
                        <select id="eval-adapter" on:change=move |ev| eval.update(|f| f.adapter = event_target_value(&ev))>
                            <option value="">"None"</option>
                            {move || options_of(adapters.get(), eval.with(|f| f.adapter.clone()))}
                        </select>
                    })}
                    {field("Prompt format", "prompt_format", eval_errors, view! {
                        <select id="eval-format" on:change=move |ev| eval.update(|f| f.prompt_format = event_target_value(&ev))>
                            {move || options_of(format_options(), eval.with(|f| f.prompt_format.clone()))}
                        </select>
                    })}
                    <div class="row">
                        {field("Questions (empty: all)", "limit", eval_errors, text_input("eval-limit", "all", move || eval.with(|f| f.limit.clone()), move |v| eval.update(|f| f.limit = v)))}
                        {field("Max new tokens", "max_new_tokens", eval_errors, text_input("eval-tokens", "32", move || eval.with(|f| f.max_new_tokens.clone()), move |v| eval.update(|f| f.max_new_tokens = v)))}
                        {field("Priority", "priority", eval_errors, view! {
                            <select id="eval-priority" on:change=move |ev| eval.update(|f| f.priority = event_target_value(&ev))>
                                <option value="normal">"normal"</option>
                                <option value="high">"high"</option>
                            </select>
                        })}
                    </div>
                    <button type="submit" class="primary" id="eval-submit" disabled=move || eval_busy.get()>
                        "Queue the evaluation"
                    </button>
                    {move || eval_failed.get().map(|error| view! { <ErrorBanner error /> })}
                </form>
                <form class="panel" id="tune-form" on:submit=submit_tune>
                    <h2>"Tune with LoRA"</h2>
                    {field("Base model", "base_model", tune_errors, view! {
                        <select id="tune-base" on:change=move |ev| tune.update(|f| f.base_model = event_target_value(&ev))>
                            {move || options_of(models.get(), tune.with(|f| f.base_model.clone()))}
                        </select>
                    })}
                    {field("New adapter name", "adapter", tune_errors, text_input("tune-adapter", "e.g. igaku-lora-1", move || tune.with(|f| f.adapter.clone()), move |v| tune.update(|f| f.adapter = v)))}
                    {field("Training data (exam set)", "data_exam_set", tune_errors, view! {
                        <select id="tune-data" on:change=move |ev| tune.update(|f| f.data_exam_set = event_target_value(&ev))>
                            {move || options_of(set_options.get(), tune.with(|f| f.data_exam_set.clone()))}
                        </select>
                    })}
                    <div class="row">
                        {field("Prompt format", "prompt_format", tune_errors, view! {
                            <select id="tune-format" on:change=move |ev| tune.update(|f| f.prompt_format = event_target_value(&ev))>
                                {move || options_of(format_options(), tune.with(|f| f.prompt_format.clone()))}
                            </select>
                        })}
                        {field("Preset", "preset", tune_errors, view! {
                            <select id="tune-preset" on:change=move |ev| tune.update(|f| f.preset = event_target_value(&ev))>
                                {move || options_of(PRESETS.iter().map(|p| ((*p).to_owned(), (*p).to_owned())).collect(), tune.with(|f| f.preset.clone()))}
                            </select>
                        })}
                    </div>
                    <div class="row">
                        {field("Steps (empty: one epoch)", "steps", tune_errors, text_input("tune-steps", "one epoch", move || tune.with(|f| f.steps.clone()), move |v| tune.update(|f| f.steps = v)))}
                        {field("Learning rate", "learning_rate", tune_errors, text_input("tune-lr", "preset", move || tune.with(|f| f.learning_rate.clone()), move |v| tune.update(|f| f.learning_rate = v)))}
                        {field("Validation share", "validation_share", tune_errors, text_input("tune-validation", "0.1", move || tune.with(|f| f.validation_share.clone()), move |v| tune.update(|f| f.validation_share = v)))}
                        {field("Seed", "seed", tune_errors, text_input("tune-seed", "preset", move || tune.with(|f| f.seed.clone()), move |v| tune.update(|f| f.seed = v)))}
                    </div>
                    <div class="row">
                        {field("Then evaluate on", "evaluate_exam_set", tune_errors, view! {
                            <select id="tune-evaluate" on:change=move |ev| tune.update(|f| f.evaluate_exam_set = event_target_value(&ev))>
                                <option value="">"No evaluation"</option>
                                {move || options_of(set_options.get(), tune.with(|f| f.evaluate_exam_set.clone()))}
                            </select>
                        })}
                        {field("Questions", "evaluate_limit", tune_errors, text_input("tune-evaluate-limit", "all", move || tune.with(|f| f.evaluate_limit.clone()), move |v| tune.update(|f| f.evaluate_limit = v)))}
                    </div>
                    <button type="submit" class="primary" id="tune-submit" disabled=move || tune_busy.get()>
                        "Queue the tuning"
                    </button>
                    {move || tune_failed.get().map(|error| view! { <ErrorBanner error /> })}
                </form>
            </div>
            <h2>"Queue"</h2>
            {move || queue_error.get().map(|error| view! { <ErrorBanner error /> })}
            <table id="queue-runs">
                <thead>
                    <tr>
                        <th>"Run"</th>
                        <th>"Model"</th>
                        <th>"Exam set"</th>
                        <th>"Status"</th>
                        <th class="num">"Progress"</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=waiting_runs
                        key=|r| (r.id, r.status.as_str(), r.tally.answered)
                        children=move |r| {
                            let id = r.id;
                            view! {
                                <tr>
                                    <td><a href=paths::run_path(id)>{format!("#{id}")}</a></td>
                                    <td>{r.model}{r.adapter.map(|a| format!(" + {a}"))}</td>
                                    <td>{r.exam_set}</td>
                                    <td><StatusBadge status=r.status /></td>
                                    <td class="num">{format::progress(r.tally.answered, r.total)}</td>
                                    <td><button type="button" on:click=move |_| act_run(id, "cancel")>"Cancel"</button></td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
            <h2>"Tunings"</h2>
            <table id="tunings">
                <thead>
                    <tr>
                        <th>"Tuning"</th>
                        <th>"Adapter"</th>
                        <th>"Base model"</th>
                        <th>"Data"</th>
                        <th>"Status"</th>
                        <th class="num">"Steps"</th>
                        <th class="num">"Last loss"</th>
                        <th class="num">"Validation loss"</th>
                        <th>"Worker"</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=tuning_rows
                        key=|t| (t.id, t.status.as_str(), t.steps_done)
                        children=move |t| {
                            let id = t.id;
                            let finished = t.status.is_finished();
                            let retryable = matches!(t.status, kokushi_shared::api::RunStatus::Failed | kokushi_shared::api::RunStatus::Cancelled);
                            view! {
                                <tr class="tuning-row" data-tuning-id=id title=t.error.clone()>
                                    <td><a href=paths::tuning_path(id)>{format!("#{id}")}</a></td>
                                    <td>{t.adapter}</td>
                                    <td>{t.base_model}</td>
                                    <td>{t.data_exam_set}</td>
                                    <td><StatusBadge status=t.status /></td>
                                    <td class="num">{format!("{}/{}", t.steps_done, t.steps)}</td>
                                    <td class="num">{t.last_loss.map_or_else(|| format::NONE.to_owned(), |l| format!("{l:.4}"))}</td>
                                    <td class="num">{t.final_validation_loss.map_or_else(|| format::NONE.to_owned(), |l| format!("{l:.4}"))}</td>
                                    <td>{t.worker.unwrap_or_default()}</td>
                                    <td>
                                        {(!finished).then(|| view! { <button type="button" on:click=move |_| act_tuning(id, "cancel")>"Cancel"</button> })}
                                        {retryable.then(|| view! { <button type="button" on:click=move |_| act_tuning(id, "retry")>"Retry"</button> })}
                                    </td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
        </section>
    }
}
