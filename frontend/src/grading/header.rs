//! The grading app's header: the brand and, for researchers, the portal's pages (page loads:
//! another bundle), the grading home, project settings, the project the session acts in (a
//! switch), the language switch and the signed-in account with sign-out.

use leptos::prelude::*;

use kokushi_shared::api::Role;

use crate::api;
use crate::components::header::{LocaleSwitch, ProjectSwitch};
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
    // The portal's pages for those who may see them (other bundles: full page loads); an
    // annotator only grades.
    let nav = move || {
        let researcher = session.has(Role::Researcher);
        let admin = session.has(Role::Admin);
        view! {
            <nav class="site-nav">
                {researcher.then(|| view! {
                    <a id="nav-leaderboard" href=paths::HOME rel="external">{t(i18n::COMMON_NAV_LEADERBOARD)}</a>
                    <a href=paths::JOBS rel="external">{t(i18n::COMMON_NAV_JOBS)}</a>
                    <a href=paths::EXAM_SETS rel="external">{t(i18n::COMMON_NAV_EXAM_SETS)}</a>
                })}
                {admin.then(|| view! { <a href=paths::WORKERS rel="external">{t(i18n::COMMON_NAV_WORKERS)}</a> })}
                <a href=paths::GRADING>{t(i18n::GRADING_TITLE)}</a>
                <a id="nav-projects" href=paths::PROJECTS rel="external">{t(i18n::COMMON_NAV_PROJECT)}</a>
            </nav>
        }
    };
    view! {
        <header class="site-header">
            <a class="brand" href=paths::HOME rel="external">
                "Kokushi "
                <span lang="ja">"国試"</span>
            </a>
            {nav}
            <span class="tagline">{t(i18n::GRADING_TAGLINE)}</span>
            <ProjectSwitch />
            <LocaleSwitch />
            {account}
        </header>
    }
}
