//! `/workers` (admins): every worker that reported lately, its device, loaded model, job and
//! last heartbeat. Refreshed every two seconds.

use kokushi_shared::api::WorkerInfo;
use leptos::prelude::*;

use crate::components::error_banner::ErrorBanner;
use crate::i18n::{self, t, tf};
use crate::poll::poll;
use crate::refresh::Loaded;
use crate::{format, paths};

#[component]
pub fn WorkersPage() -> impl IntoView {
    let state = RwSignal::new(Loaded::<Vec<WorkerInfo>>::default());
    // Workers come and go: keep asking while the page is open.
    poll(state, crate::api::workers, |_| true);
    let error =
        move || state.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let rows = move || state.with(|s| s.latest.clone().unwrap_or_default());
    let now = move || js_now_unix();
    view! {
        <section class="workers">
            <h1>{t(i18n::COMMON_NAV_WORKERS)}</h1>
            {error}
            <table id="workers">
                <thead>
                    <tr>
                        <th>{t(i18n::WORKERS_COLUMN_WORKER)}</th>
                        <th>{t(i18n::WORKERS_COLUMN_DEVICE)}</th>
                        <th>{t(i18n::WORKERS_COLUMN_MEMORY)}</th>
                        <th>{t(i18n::WORKERS_COLUMN_MODEL)}</th>
                        <th>{t(i18n::WORKERS_COLUMN_JOB)}</th>
                        <th class="num">{t(i18n::WORKERS_COLUMN_HEARTBEAT)}</th>
                        <th class="num">{t(i18n::WORKERS_COLUMN_UP_FOR)}</th>
                    </tr>
                </thead>
                <tbody>
                    <For
                        each=rows
                        key=|w| (w.name.clone(), w.last_seen_unix, w.job_id)
                        children=move |w| {
                            let ago = (now() - w.last_seen_unix).max(0);
                            let up = (now() - w.started_unix).max(0);
                            view! {
                                <tr class="worker-row">
                                    <td>{w.name}</td>
                                    <td class="worker-device">
                                        {w.device}
                                        {w.device_name.map(|n| view! { <span class="hint device-name">{n}</span> })}
                                    </td>
                                    <td class="worker-memory">
                                        {match (w.memory_free, w.memory_total) {
                                            (Some(free), Some(total)) => tf(
                                                i18n::WORKERS_MEMORY,
                                                &[("free", &format::bytes(free)), ("total", &format::bytes(total))],
                                            ),
                                            _ => format::NONE.to_owned(),
                                        }}
                                        {w.capacity.map(|c| view! {
                                            <span class="hint worker-capacity">
                                                {tf(i18n::WORKERS_TAKES, &[("capacity", &format::bytes(c))])}
                                            </span>
                                        })}
                                    </td>
                                    <td>{w.model.unwrap_or_else(|| format::NONE.to_owned())}</td>
                                    <td>
                                        {match (w.run_id, w.job_id) {
                                            (Some(run), _) => view! { <a href=paths::run_path(run)>{tf(i18n::WORKERS_RUN, &[("id", &run)])}</a> }.into_any(),
                                            (None, Some(job)) => view! { <span>{tf(i18n::WORKERS_JOB, &[("id", &job)])}</span> }.into_any(),
                                            _ => view! { <span class="hint">{t(i18n::WORKERS_IDLE)}</span> }.into_any(),
                                        }}
                                    </td>
                                    <td class="num">{tf(i18n::WORKERS_SECONDS_AGO, &[("seconds", &ago)])}</td>
                                    <td class="num">{tf(i18n::WORKERS_MINUTES, &[("minutes", &(up / 60))])}</td>
                                </tr>
                            }
                        }
                    />
                </tbody>
            </table>
        </section>
    }
}

fn js_now_unix() -> i64 {
    (js_sys_now() / 1000.0) as i64
}

fn js_sys_now() -> f64 {
    web_sys::window()
        .and_then(|w| w.performance())
        .map_or(0.0, |p| p.time_origin() + p.now())
}
