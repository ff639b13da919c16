//! A run's progress as the server pushes it (`GET /api/runs/{id}/events`, server-sent events).
//!
//! The browser's `EventSource` reconnects by itself after a dropped connection; the stream is
//! closed here once the run has finished (the server ends it then, and a reconnect would only
//! fetch the same last summary again) and when the page is left.

use kokushi_shared::api::RunSummary;
use leptos::prelude::*;
use send_wrapper::SendWrapper;
use wasm_bindgen::JsCast;
use wasm_bindgen::closure::Closure;

/// Calls `on_summary` with each summary the server sends for run `id`, from now until the run
/// finishes or the calling component is cleaned up.
pub fn follow_run(id: i64, on_summary: impl Fn(RunSummary) + 'static) {
    let Ok(source) = web_sys::EventSource::new(&format!("/api/runs/{id}/events")) else {
        // No EventSource (a very old browser): the page's polling still updates it.
        return;
    };
    let listener =
        Closure::<dyn FnMut(web_sys::MessageEvent)>::new(move |event: web_sys::MessageEvent| {
            let Some(text) = event.data().as_string() else {
                return;
            };
            let Ok(summary) = serde_json::from_str::<RunSummary>(&text) else {
                return;
            };
            let finished = summary.status.is_finished();
            on_summary(summary);
            if finished
                && let Some(source) = event
                    .target()
                    .and_then(|t| t.dyn_into::<web_sys::EventSource>().ok())
            {
                source.close();
            }
        });
    if source
        .add_event_listener_with_callback("run", listener.as_ref().unchecked_ref())
        .is_err()
    {
        source.close();
        return;
    }
    let held = SendWrapper::new((source, listener));
    on_cleanup(move || {
        let (source, _listener) = held.take();
        source.close();
    });
}
