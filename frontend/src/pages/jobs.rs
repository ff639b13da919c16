//! `/jobs`: launch an evaluation or a LoRA tuning, and watch the queue: unfinished runs and
//! every tuning, with cancel and retry.

use kokushi_shared::api::{ExamSetSummary, RunSummary, StoreEntry, TuningSummary};
use kokushi_shared::prompt::PromptFormat;
use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::components::error_banner::ErrorBanner;
use crate::components::status_badge::StatusBadge;
use crate::error::ApiError;
use crate::forms::{CHAT_TEMPLATE, EvalForm, FieldError, PRESETS, TuneForm, message_for};
use crate::i18n::{self, t, tf};
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
                tf(
                    i18n::JOBS_EXAM_SET_OPTION,
                    &[
                        ("name", &s.name),
                        ("version", &s.version),
                        ("count", &s.question_count),
                    ],
                ),
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

/// An evaluation's prompt formats: the formats, then the model's own chat template.
fn eval_format_options() -> Vec<(String, String)> {
    let mut options = format_options();
    options.push((
        CHAT_TEMPLATE.to_owned(),
        t(i18n::JOBS_CHAT_TEMPLATE).to_owned(),
    ));
    options
}

/// The runs, polled while any is unfinished (one function, so one copy of the polling code).
fn poll_runs(runs: RwSignal<Loaded<Vec<RunSummary>>>) {
    poll(
        runs,
        || crate::api::leaderboard(Default::default()),
        |r: &Vec<RunSummary>| leaderboard_unfinished(r),
    );
}

/// The tunings, polled while any is unfinished.
fn poll_tunings(tunings: RwSignal<Loaded<Vec<TuningSummary>>>) {
    poll(tunings, crate::api::tunings, |t: &Vec<TuningSummary>| {
        tunings_unfinished(t)
    });
}

/// A run's estimated cost, as the form shows it before queueing.
fn estimate_view(e: kokushi_shared::cost::Estimate) -> impl IntoView {
    let figures = tf(
        i18n::JOBS_ESTIMATE_FIGURES,
        &[
            ("questions", &e.questions),
            ("prompt", &e.prompt_tokens),
            ("generated", &e.generated_tokens),
        ],
    );
    let time = match e.seconds {
        Some(seconds) => tf(
            i18n::JOBS_ESTIMATE_TIME,
            &[
                ("time", &format::latency((seconds * 1000.0).round() as u64)),
                ("factor", &e.factor),
            ],
        ),
        None => t(i18n::JOBS_ESTIMATE_NO_TIME).to_owned(),
    };
    view! {
        <p id="run-estimate" class="estimate" title=e.note data-seconds=e.seconds.map(|s| format!("{s:.1}"))>
            {figures}<br/>{time}
        </p>
    }
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
    poll_runs(runs);
    let tunings = RwSignal::new(Loaded::<Vec<TuningSummary>>::default());
    poll_tunings(tunings);

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
                    let label = tf(
                        i18n::JOBS_ADAPTER_OPTION,
                        &[("name", &e.name), ("base", &base)],
                    );
                    (e.name.clone(), label)
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

    // The cost of the evaluation as the form stands, asked for before queueing it; any change
    // to the form makes it stale, so it goes.
    let estimate = RwSignal::new(None::<kokushi_shared::cost::Estimate>);
    Effect::new(move |_| {
        eval.track();
        estimate.set(None);
    });
    let estimate_eval = move |_| match eval.with_untracked(EvalForm::request) {
        Err(errors) => eval_errors.set(errors),
        Ok(request) => {
            eval_errors.set(Vec::new());
            let csrf = session.csrf();
            leptos::task::spawn_local(async move {
                match crate::api::estimate_run(&request, &csrf).await {
                    Ok(e) => {
                        eval_failed.set(None);
                        estimate.set(Some(e));
                    }
                    Err(error) => eval_failed.set(Some(error)),
                }
            });
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
                    poll_runs(runs);
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
                    poll_tunings(tunings);
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
            <h1>{t(i18n::COMMON_NAV_JOBS)}</h1>
            <div class="forms">
                <form class="panel" id="eval-form" on:submit=submit_eval>
                    <h2>{t(i18n::JOBS_EVAL_TITLE)}</h2>
                    {field(t(i18n::JOBS_EXAM_SET), "exam_set", eval_errors, view! {
                        <select id="eval-exam-set" on:change=move |ev| eval.update(|f| f.exam_set = event_target_value(&ev))>
                            {move || options_of(set_options.get(), eval.with(|f| f.exam_set.clone()))}
                        </select>
                    })}
                    {field(t(i18n::JOBS_MODEL), "model", eval_errors, view! {
                        <select id="eval-model" on:change=move |ev| eval.update(|f| f.model = event_target_value(&ev))>
                            {move || options_of(models.get(), eval.with(|f| f.model.clone()))}
                        </select>
                    })}
                    {field(t(i18n::JOBS_LORA_ADAPTER), "adapter", eval_errors, view! {
                        <select id="eval-adapter" on:change=move |ev| eval.update(|f| f.adapter = event_target_value(&ev))>
                            <option value="">{t(i18n::JOBS_NO_ADAPTER)}</option>
                            {move || options_of(adapters.get(), eval.with(|f| f.adapter.clone()))}
                        </select>
                    })}
                    {field(t(i18n::JOBS_PROMPT_FORMAT), "prompt_format", eval_errors, view! {
                        <select id="eval-format" on:change=move |ev| eval.update(|f| f.prompt_format = event_target_value(&ev))>
                            {move || options_of(eval_format_options(), eval.with(|f| f.prompt_format.clone()))}
                        </select>
                    })}
                    {field(t(i18n::JOBS_SCORING), "scoring", eval_errors, view! {
                        <select id="eval-scoring" on:change=move |ev| eval.update(|f| f.scoring = event_target_value(&ev))>
                            <option value="generation">{t(i18n::JOBS_SCORING_GENERATION)}</option>
                            <option value="loglik">{t(i18n::JOBS_SCORING_LOGLIK)}</option>
                        </select>
                    })}
                    {move || eval.with(|f| f.scoring == "loglik").then(|| field(t(i18n::JOBS_LOGLIK_TARGET), "loglik_target", eval_errors, view! {
                        <select id="eval-target" on:change=move |ev| eval.update(|f| f.loglik_target = event_target_value(&ev))>
                            <option value="letter">{t(i18n::JOBS_LOGLIK_TARGET_LETTER)}</option>
                            <option value="text">{t(i18n::JOBS_LOGLIK_TARGET_TEXT)}</option>
                        </select>
                    }))}
                    <div class="row">
                        {field(t(i18n::JOBS_SHOTS), "shots", eval_errors, text_input("eval-shots", "0", move || eval.with(|f| f.shots.clone()), move |v| eval.update(|f| f.shots = v)))}
                        {field(t(i18n::JOBS_SHOT_POOL), "shot_pool", eval_errors, view! {
                            <select id="eval-shot-pool" on:change=move |ev| eval.update(|f| f.shot_pool = event_target_value(&ev))>
                                <option value="">{t(i18n::JOBS_SHOT_POOL_OWN)}</option>
                                {move || options_of(set_options.get(), eval.with(|f| f.shot_pool.clone()))}
                            </select>
                        })}
                        {field(t(i18n::JOBS_SHOT_SEED), "shot_seed", eval_errors, text_input("eval-shot-seed", "20230331", move || eval.with(|f| f.shot_seed.clone()), move |v| eval.update(|f| f.shot_seed = v)))}
                    </div>
                    <label class="check">
                        <input type="checkbox" id="eval-requantize"
                            prop:checked=move || eval.with(|f| f.requantize)
                            on:change=move |ev| eval.update(|f| f.requantize = event_target_checked(&ev)) />
                        {t(i18n::JOBS_REQUANTIZE)}
                    </label>
                    <div class="row">
                        {field(t(i18n::JOBS_LIMIT), "limit", eval_errors, text_input("eval-limit", t(i18n::JOBS_LIMIT_PLACEHOLDER), move || eval.with(|f| f.limit.clone()), move |v| eval.update(|f| f.limit = v)))}
                        {field(t(i18n::JOBS_MAX_NEW_TOKENS), "max_new_tokens", eval_errors, text_input("eval-tokens", "32", move || eval.with(|f| f.max_new_tokens.clone()), move |v| eval.update(|f| f.max_new_tokens = v)))}
                        {field(t(i18n::JOBS_PRIORITY), "priority", eval_errors, view! {
                            <select id="eval-priority" on:change=move |ev| eval.update(|f| f.priority = event_target_value(&ev))>
                                <option value="normal">{t(i18n::JOBS_PRIORITY_NORMAL)}</option>
                                <option value="high">{t(i18n::JOBS_PRIORITY_HIGH)}</option>
                            </select>
                        })}
                    </div>
                    <button type="submit" class="primary" id="eval-submit" disabled=move || eval_busy.get()>
                        {t(i18n::JOBS_QUEUE_EVALUATION)}
                    </button>
                    <button type="button" id="eval-estimate" on:click=estimate_eval>
                        {t(i18n::JOBS_ESTIMATE)}
                    </button>
                    {move || estimate.get().map(estimate_view)}
                    {move || eval_failed.get().map(|error| view! { <ErrorBanner error /> })}
                </form>
                <form class="panel" id="tune-form" on:submit=submit_tune>
                    <h2>{t(i18n::JOBS_TUNE_TITLE)}</h2>
                    {field(t(i18n::JOBS_BASE_MODEL), "base_model", tune_errors, view! {
                        <select id="tune-base" on:change=move |ev| tune.update(|f| f.base_model = event_target_value(&ev))>
                            {move || options_of(models.get(), tune.with(|f| f.base_model.clone()))}
                        </select>
                    })}
                    {field(t(i18n::JOBS_NEW_ADAPTER), "adapter", tune_errors, text_input("tune-adapter", t(i18n::JOBS_NEW_ADAPTER_PLACEHOLDER), move || tune.with(|f| f.adapter.clone()), move |v| tune.update(|f| f.adapter = v)))}
                    {field(t(i18n::JOBS_TRAINING_DATA), "data_exam_set", tune_errors, view! {
                        <select id="tune-data" on:change=move |ev| tune.update(|f| f.data_exam_set = event_target_value(&ev))>
                            {move || options_of(set_options.get(), tune.with(|f| f.data_exam_set.clone()))}
                        </select>
                    })}
                    <div class="row">
                        {field(t(i18n::JOBS_PROMPT_FORMAT), "prompt_format", tune_errors, view! {
                            <select id="tune-format" on:change=move |ev| tune.update(|f| f.prompt_format = event_target_value(&ev))>
                                {move || options_of(format_options(), tune.with(|f| f.prompt_format.clone()))}
                            </select>
                        })}
                        {field(t(i18n::JOBS_PRESET), "preset", tune_errors, view! {
                            <select id="tune-preset" on:change=move |ev| tune.update(|f| f.preset = event_target_value(&ev))>
                                {move || options_of(PRESETS.iter().map(|p| ((*p).to_owned(), (*p).to_owned())).collect(), tune.with(|f| f.preset.clone()))}
                            </select>
                        })}
                    </div>
                    <div class="row">
                        {field(t(i18n::JOBS_STEPS_FIELD), "steps", tune_errors, text_input("tune-steps", t(i18n::JOBS_STEPS_PLACEHOLDER), move || tune.with(|f| f.steps.clone()), move |v| tune.update(|f| f.steps = v)))}
                        {field(t(i18n::JOBS_LEARNING_RATE), "learning_rate", tune_errors, text_input("tune-lr", t(i18n::JOBS_PRESET_PLACEHOLDER), move || tune.with(|f| f.learning_rate.clone()), move |v| tune.update(|f| f.learning_rate = v)))}
                        {field(t(i18n::JOBS_VALIDATION_SHARE), "validation_share", tune_errors, text_input("tune-validation", "0.1", move || tune.with(|f| f.validation_share.clone()), move |v| tune.update(|f| f.validation_share = v)))}
                        {field(t(i18n::JOBS_SEED), "seed", tune_errors, text_input("tune-seed", t(i18n::JOBS_PRESET_PLACEHOLDER), move || tune.with(|f| f.seed.clone()), move |v| tune.update(|f| f.seed = v)))}
                    </div>
                    <div class="row">
                        {field(t(i18n::JOBS_EVALUATE_ON), "evaluate_exam_set", tune_errors, view! {
                            <select id="tune-evaluate" on:change=move |ev| tune.update(|f| f.evaluate_exam_set = event_target_value(&ev))>
                                <option value="">{t(i18n::JOBS_NO_EVALUATION)}</option>
                                {move || options_of(set_options.get(), tune.with(|f| f.evaluate_exam_set.clone()))}
                            </select>
                        })}
                        {field(t(i18n::JOBS_EVALUATE_LIMIT), "evaluate_limit", tune_errors, text_input("tune-evaluate-limit", t(i18n::JOBS_LIMIT_PLACEHOLDER), move || tune.with(|f| f.evaluate_limit.clone()), move |v| tune.update(|f| f.evaluate_limit = v)))}
                    </div>
                    <button type="submit" class="primary" id="tune-submit" disabled=move || tune_busy.get()>
                        {t(i18n::JOBS_QUEUE_TUNING)}
                    </button>
                    {move || tune_failed.get().map(|error| view! { <ErrorBanner error /> })}
                </form>
            </div>
            <h2>{t(i18n::JOBS_QUEUE)}</h2>
            {move || queue_error.get().map(|error| view! { <ErrorBanner error /> })}
            <table id="queue-runs">
                <thead>
                    <tr>
                        <th>{t(i18n::JOBS_RUN)}</th>
                        <th>{t(i18n::JOBS_MODEL)}</th>
                        <th>{t(i18n::JOBS_EXAM_SET)}</th>
                        <th>{t(i18n::JOBS_STATUS)}</th>
                        <th class="num">{t(i18n::JOBS_PROGRESS)}</th>
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
                                    <td><button type="button" on:click=move |_| act_run(id, "cancel")>{t(i18n::JOBS_CANCEL)}</button></td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
            <h2>{t(i18n::JOBS_TUNINGS)}</h2>
            <table id="tunings">
                <thead>
                    <tr>
                        <th>{t(i18n::JOBS_TUNING)}</th>
                        <th>{t(i18n::JOBS_ADAPTER)}</th>
                        <th>{t(i18n::JOBS_BASE_MODEL)}</th>
                        <th>{t(i18n::JOBS_DATA)}</th>
                        <th>{t(i18n::JOBS_STATUS)}</th>
                        <th class="num">{t(i18n::JOBS_STEPS)}</th>
                        <th class="num">{t(i18n::JOBS_LAST_LOSS)}</th>
                        <th class="num">{t(i18n::JOBS_VALIDATION_LOSS)}</th>
                        <th>{t(i18n::JOBS_WORKER)}</th>
                        <th></th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=tuning_rows
                        key=|t| (t.id, t.status.as_str(), t.steps_done)
                        children=move |tuning| {
                            let id = tuning.id;
                            let finished = tuning.status.is_finished();
                            let retryable = matches!(tuning.status, kokushi_shared::api::RunStatus::Failed | kokushi_shared::api::RunStatus::Cancelled);
                            view! {
                                <tr class="tuning-row" data-tuning-id=id title=tuning.error.clone()>
                                    <td><a href=paths::tuning_path(id)>{format!("#{id}")}</a></td>
                                    <td>{tuning.adapter}</td>
                                    <td>{tuning.base_model}</td>
                                    <td>{tuning.data_exam_set}</td>
                                    <td><StatusBadge status=tuning.status /></td>
                                    <td class="num">{format!("{}/{}", tuning.steps_done, tuning.steps)}</td>
                                    <td class="num">{tuning.last_loss.map_or_else(|| format::NONE.to_owned(), |l| format!("{l:.4}"))}</td>
                                    <td class="num">{tuning.final_validation_loss.map_or_else(|| format::NONE.to_owned(), |l| format!("{l:.4}"))}</td>
                                    <td>{tuning.worker.unwrap_or_default()}</td>
                                    <td>
                                        {(!finished).then(|| view! { <button type="button" on:click=move |_| act_tuning(id, "cancel")>{t(i18n::JOBS_CANCEL)}</button> })}
                                        {retryable.then(|| view! { <button type="button" on:click=move |_| act_tuning(id, "retry")>{t(i18n::JOBS_RETRY)}</button> })}
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
