//! A visible message for a failed API call, saying whether the page keeps retrying. Shared by
//! both apps: its sign-in link is a full page load, since `/login` is the main app's.

use leptos::prelude::*;

use crate::error::ApiError;
use crate::i18n::{self, t, tf};
use crate::refresh::POLL_INTERVAL_MS;

#[component]
pub fn ErrorBanner(error: ApiError) -> impl IntoView {
    let retry = error.is_transient().then(|| {
        let seconds = POLL_INTERVAL_MS / 1_000;
        format!(" {}", tf(i18n::COMMON_RETRYING, &[("seconds", &seconds)]))
    });
    let sign_in = error.is_unauthorized().then(|| {
        view! { " " <a href=crate::paths::LOGIN rel="external">{t(i18n::COMMON_SIGN_IN)}</a> }
    });
    view! {
        <p class="error" role="alert">
            {error.to_string()}
            {retry}
            {sign_in}
        </p>
    }
}

/// What every page shows of its data's state: the error of the latest request, if any, and
/// "Loading…" until the first answer.
pub fn load_status<T: Send + Sync + 'static>(
    state: RwSignal<crate::refresh::Loaded<T>>,
) -> impl IntoView {
    let error =
        move || state.with(|s| s.error.clone().map(|error| view! { <ErrorBanner error /> }));
    let loading = move || {
        state
            .with(crate::refresh::Loaded::is_loading)
            .then(|| view! { <p class="loading">{t(i18n::COMMON_LOADING)}</p> })
    };
    view! {
        {error}
        {loading}
    }
}
