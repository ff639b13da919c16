//! The grading app's header: the brand (back to the main app, a page load), the grading
//! home, the language switch and the signed-in account with sign-out.

use leptos::prelude::*;

use crate::api;
use crate::components::header::LocaleSwitch;
use crate::i18n::{self, t};
use crate::paths;
use crate::session::{Session, SessionState};

#[component]
pub fn GradingHeader() -> impl IntoView {
    let session = Session::get();
    let sign_out = move |_| {
        let csrf = session.csrf();
        leptos::task::spawn_local(async move {
            // Signed out either way: a failed call leaves at worst a session that expires.
            let _ = api::logout(&csrf).await;
            session.0.set(SessionState::SignedOut);
            paths::open_page(paths::LOGIN);
        });
    };
    let account = move || match session.0.get() {
        SessionState::SignedIn(me) => view! {
            <span class="account">
                <span id="account-name">{me.username}</span>
                <button id="sign-out" type="button" on:click=sign_out>
                    {t(i18n::COMMON_SIGN_OUT)}
                </button>
            </span>
        }
        .into_any(),
        _ => ().into_any(),
    };
    view! {
        <header class="site-header">
            <a class="brand" href=paths::HOME rel="external">
                "Kokushi "
                <span lang="ja">"国試"</span>
            </a>
            <nav class="site-nav">
                <a href=paths::GRADING>{t(i18n::GRADING_TITLE)}</a>
            </nav>
            <span class="tagline">{t(i18n::GRADING_TAGLINE)}</span>
            <LocaleSwitch />
            {account}
        </header>
    }
}
