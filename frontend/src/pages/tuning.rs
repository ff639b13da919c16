//! `/tunings/:id`: one LoRA tuning, its training and validation loss drawn live as SVG while it
//! runs, and the evaluations it chained.

use kokushi_shared::api::TuningDetail;
use leptos::prelude::*;
use leptos_router::hooks::use_params_map;

use crate::chart::{Frame, axes, polyline, tick_label};
use crate::components::error_banner::load_status;
use crate::components::status_badge::StatusBadge;
use crate::i18n::{self, t, tf};
use crate::poll::poll;
use crate::refresh::Loaded;
use crate::{format, paths};

const WIDTH: f64 = 880.0;
const HEIGHT: f64 = 320.0;

#[component]
pub fn TuningPage() -> impl IntoView {
    let params = use_params_map();
    let id = Memo::new(move |_| params.with(|p| p.get("id").and_then(|s| paths::parse_run_id(&s))));
    move || match id.get() {
        Some(id) => view! { <TuningView id /> }.into_any(),
        None => view! { <section><h1>{t(i18n::TUNING_NO_SUCH_TUNING)}</h1></section> }.into_any(),
    }
}

fn unfinished(d: &TuningDetail) -> bool {
    !d.tuning.status.is_finished()
}

#[component]
fn TuningView(id: i64) -> impl IntoView {
    let state = RwSignal::new(Loaded::<TuningDetail>::default());
    poll(state, move || crate::api::tuning(id), unfinished);
    let body = move || state.with(|s| s.latest.clone()).map(detail_view);
    view! {
        <section class="tuning">
            <h1 id="tuning-title">{tf(i18n::TUNING_TITLE, &[("id", &id)])}</h1>
            {load_status(state)}
            {body}
        </section>
    }
}

fn loss_chart(d: &TuningDetail) -> AnyView {
    let train: Vec<(f64, f64)> = d
        .points
        .iter()
        .filter(|p| !p.validation)
        .map(|p| (p.step as f64, p.loss))
        .collect();
    let validation: Vec<(f64, f64)> = d
        .points
        .iter()
        .filter(|p| p.validation)
        .map(|p| (p.step as f64, p.loss))
        .collect();
    let frame = Frame::of(WIDTH, HEIGHT);
    let Some(ax) = axes(&[&train, &validation], frame) else {
        return view! { <p class="waiting" id="loss-chart-empty">{t(i18n::TUNING_NO_STEPS)}</p> }
            .into_any();
    };
    let x_ticks = ax
        .x_ticks
        .iter()
        .map(|t| {
            let x = ax.x.at(*t);
            view! {
                <line class="grid" x1=x x2=x y1=frame.top y2=frame.bottom />
                <text class="tick" x=x y=frame.bottom + 18.0 text-anchor="middle">{tick_label(*t)}</text>
            }
        })
        .collect_view();
    let y_ticks = ax
        .y_ticks
        .iter()
        .map(|t| {
            let y = ax.y.at(*t);
            view! {
                <line class="grid" x1=frame.left x2=frame.right y1=y y2=y />
                <text class="tick" x=frame.left - 8.0 y=y + 4.0 text-anchor="end">{tick_label(*t)}</text>
            }
        })
        .collect_view();
    let dots = validation
        .iter()
        .map(|(x, y)| view! { <circle class="validation-dot" cx=ax.x.at(*x) cy=ax.y.at(*y) r="4" /> })
        .collect_view();
    view! {
        <svg
            id="loss-chart"
            class="chart"
            viewBox=format!("0 0 {WIDTH} {HEIGHT}")
            width=WIDTH
            height=HEIGHT
            role="img"
            aria-label=t(i18n::TUNING_CHART_LABEL)
        >
            {x_ticks}
            {y_ticks}
            <line class="axis" x1=frame.left x2=frame.right y1=frame.bottom y2=frame.bottom />
            <line class="axis" x1=frame.left x2=frame.left y1=frame.top y2=frame.bottom />
            <polyline id="train-curve" class="train" points=polyline(&train, &ax) />
            <polyline class="validation" points=polyline(&validation, &ax) />
            {dots}
            <text class="axis-label" x=(frame.left + frame.right) / 2.0 y=HEIGHT - 2.0 text-anchor="middle">{t(i18n::TUNING_AXIS_STEP)}</text>
            <text class="axis-label" x=frame.left + 6.0 y=frame.top + 12.0>{t(i18n::TUNING_AXIS_LOSS)}</text>
        </svg>
        <p class="legend">
            <span class="key train">{t(i18n::TUNING_TRAINING_LOSS)}</span>
            <span class="key validation">{t(i18n::TUNING_VALIDATION_LOSS)}</span>
        </p>
    }
    .into_any()
}

fn detail_view(d: TuningDetail) -> impl IntoView {
    let tuning = d.tuning.clone();
    let chart = loss_chart(&d);
    let share = if tuning.steps == 0 {
        0.0
    } else {
        tuning.steps_done as f64 / tuning.steps as f64
    };
    let opt = |v: Option<f64>| v.map_or_else(|| format::NONE.to_owned(), |v| format!("{v:.4}"));
    let runs = match (tuning.base_run_id, tuning.tuned_run_id) {
        (Some(base), Some(tuned)) => Some(view! {
            <p class="chained" id="chained-runs">
                {t(i18n::TUNING_CHAINED)}
                <a href=paths::run_path(base)>{tf(i18n::TUNING_BASE_RUN, &[("id", &base)])}</a>
                " · "
                <a href=paths::run_path(tuned)>{tf(i18n::TUNING_TUNED_RUN, &[("id", &tuned)])}</a>
                " · "
                <a href=paths::compare_path(tuned, base)>{t(i18n::TUNING_COMPARE)}</a>
            </p>
        }),
        _ => None,
    };
    view! {
        <div class="progress-bar" data-status=tuning.status.as_str()>
            <div class="progress-fill" style:width=crate::chart::bar_percent(share)></div>
            <span class="progress-label">{tf(i18n::TUNING_PROGRESS, &[("done", &tuning.steps_done), ("total", &tuning.steps), ("status", &crate::format::status(tuning.status))])}</span>
        </div>
        {d.waiting.as_ref().map(|w| view! {
            <p class="note" id="tuning-waiting" role="status">{format::waiting(w)}</p>
        })}
        {chart}
        {runs}
        <dl class="summary" id="tuning-summary">
            <dt>{t(i18n::TUNING_STATUS)}</dt>
            <dd><StatusBadge status=tuning.status /></dd>
            <dt>{t(i18n::TUNING_ADAPTER)}</dt>
            <dd><code>{tuning.adapter.clone()}</code></dd>
            <dt>{t(i18n::TUNING_BASE_MODEL)}</dt>
            <dd>{tuning.base_model.clone()}</dd>
            <dt>{t(i18n::TUNING_TRAINING_DATA)}</dt>
            <dd>{tf(i18n::TUNING_EXAMPLES, &[
                ("exam_set", &tuning.data_exam_set),
                ("train", &tuning.train_examples.map_or("?".to_owned(), |n| n.to_string())),
                ("validation", &tuning.validation_examples.map_or("?".to_owned(), |n| n.to_string())),
                ("too_long", &tuning.too_long.filter(|n| *n > 0).map_or(String::new(), |n| tf(i18n::TUNING_TOO_LONG, &[("count", &n)]))),
            ])}</dd>
            <dt>{t(i18n::TUNING_PRESET_FORMAT)}</dt>
            <dd>{format!("{} · {}", tuning.preset, tuning.prompt_format)}</dd>
            <dt>{t(i18n::TUNING_LAST_TRAINING_LOSS)}</dt>
            <dd>{opt(tuning.last_loss)}</dd>
            <dt>{t(i18n::TUNING_FINAL_VALIDATION_LOSS)}</dt>
            <dd>{opt(tuning.final_validation_loss)}</dd>
            <dt>{t(i18n::TUNING_WORKER)}</dt>
            <dd>{tuning.worker.clone().unwrap_or_default()} " " <span class="hint">{tuning.model_info.clone().unwrap_or_default()}</span></dd>
            <dt>{t(i18n::TUNING_QUEUED_AT)}</dt>
            <dd>{tuning.created_at.clone()}</dd>
            {tuning.error.clone().map(|e| view! { <dt>{t(i18n::TUNING_ERROR)}</dt><dd class="run-error">{e}</dd> })}
        </dl>
    }
}
