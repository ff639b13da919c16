//! `/login`: the sign-in form. On success the server sets the session cookie and the app goes
//! to the leaderboard.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::error::ApiError;
use crate::paths;
use crate::session::{Session, SessionState};

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
            <h1>"Sign in"</h1>
            <form id="login-form" on:submit=submit>
                <label>
                    "User name"
                    <input id="login-username" type="text" autocomplete="username" required
                        bind:value=username />
                </label>
                <label>
                    "Password"
                    <input id="login-password" type="password" autocomplete="current-password"
                        required bind:value=password />
                </label>
                {move || error.get().map(|error| view! {
                    <p class="error" role="alert">{error.to_string()}</p>
                })}
                <button id="login-submit" type="submit" disabled=move || busy.get()>
                    {move || if busy.get() { "Signing in…" } else { "Sign in" }}
                </button>
            </form>
            <p class="note">"Accounts are made by an admin (kokushi admin create, or the users API)."</p>
        </section>
    }
}
