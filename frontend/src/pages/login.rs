//! `/login`: the sign-in form. On success the server sets the session cookie and the app goes
//! to the leaderboard, or an account that only grades to the grading app.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::error::ApiError;
use crate::i18n::{self, t};
use crate::paths;
use crate::session::{Session, SessionState, grading_only};

#[component]
pub fn LoginPage() -> impl IntoView {
    let session = Session::get();
    let username = RwSignal::new(String::new());
    let password = RwSignal::new(String::new());
    let error = RwSignal::new(None::<ApiError>);
    let busy = RwSignal::new(false);
    let navigate = use_navigate();
    let submit = move |ev: leptos::ev::SubmitEvent| {
        ev.prevent_default();
        if busy.get_untracked() {
            return;
        }
        busy.set(true);
        error.set(None);
        let (name, secret) = (username.get_untracked(), password.get_untracked());
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            match api::login(&name, &secret).await {
                // An annotator only grades: the grading app is a page load away.
                Ok(me) if grading_only(&me) => paths::open_page(paths::GRADING),
                Ok(me) => {
                    session.0.set(SessionState::SignedIn(me));
                    navigate(paths::HOME, Default::default());
                }
                Err(e) => {
                    error.set(Some(e));
                    busy.set(false);
                }
            }
        });
    };
    view! {
        <section class="login">
            <h1>{t(i18n::COMMON_SIGN_IN)}</h1>
            <form id="login-form" on:submit=submit>
                <label>
                    {t(i18n::COMMON_USER_NAME)}
                    <input id="login-username" type="text" autocomplete="username" required
                        bind:value=username />
                </label>
                <label>
                    {t(i18n::COMMON_PASSWORD)}
                    <input id="login-password" type="password" autocomplete="current-password"
                        required bind:value=password />
                </label>
                {move || error.get().map(|error| view! {
                    <p class="error" role="alert">{error.to_string()}</p>
                })}
                <button id="login-submit" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { t(i18n::COMMON_SIGNING_IN) } else { t(i18n::COMMON_SIGN_IN) }}
                </button>
            </form>
            <p class="note">{t(i18n::COMMON_ACCOUNTS_NOTE)}</p>
        </section>
    }
}
