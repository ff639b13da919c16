//! The polling loop pages use to keep their data fresh.
//!
//! A page calls [`poll`] in its component body: the loop fetches, records the result in the
//! page's signal, waits [`POLL_INTERVAL_MS`] and goes again for as long as
//! [`keep_polling`] says so. It stops when the page is left (its owner is cleaned up), so no
//! request outlives the page that wanted it. The decisions themselves are in
//! [`crate::refresh`].

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gloo_timers::future::TimeoutFuture;
use leptos::prelude::*;

use crate::error::ApiError;
use crate::refresh::{Loaded, POLL_INTERVAL_MS, keep_polling};

/// Starts polling `fetch` into `state` while `unfinished` holds for the data (or a failed poll
/// may be retried). Call it inside a component so the loop ends with the component.
///
/// Only the step (fetch, record, decide) is generic; the loop with its timer is one function
/// for every page, which keeps the WebAssembly small.
pub fn poll<T, F, Fut>(state: RwSignal<Loaded<T>>, fetch: F, unfinished: fn(&T) -> bool)
where
    T: Send + Sync + 'static,
    F: Fn() -> Fut + 'static,
    Fut: Future<Output = Result<T, ApiError>> + 'static,
{
    let step: Step = Box::new(move || {
        let request = fetch();
        Box::pin(async move {
            let result = request.await;
            let again = keep_polling(&result, unfinished);
            // `None` means the signal is gone with its page: stop quietly.
            state.try_update(|s| s.record(result)).is_some() && again
        })
    });
    run_loop(step);
}

/// One poll: fetch, keep the answer, and say whether to go again.
type Step = Box<dyn Fn() -> Pin<Box<dyn Future<Output = bool>>>>;

fn run_loop(step: Step) {
    let left = Arc::new(AtomicBool::new(false));
    on_cleanup({
        let left = Arc::clone(&left);
        move || left.store(true, Ordering::Relaxed)
    });
    leptos::task::spawn_local(async move {
        loop {
            if left.load(Ordering::Relaxed) || !step().await {
                break;
            }
            TimeoutFuture::new(POLL_INTERVAL_MS).await;
        }
    });
}
