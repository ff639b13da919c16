//! The site header: the product name, linking to the leaderboard, the project the session acts
//! in (a switch when the account has several: every page shows that project's data), and the
//! signed-in account with a sign-out button.

use leptos::prelude::*;
use leptos_router::hooks::use_navigate;

use crate::api;
use crate::i18n::{self, Locale, t};
use crate::paths;
use kokushi_shared::api::Role;

use crate::session::{Session, SessionState};

#[component]
pub fn Header() -> impl IntoView {
    let session = Session::get();
    let navigate = use_navigate();
    let sign_out = move |_| {
        let SessionState::SignedIn(me) = session.0.get_untracked() else {
            return;
        };
        let navigate = navigate.clone();
        leptos::task::spawn_local(async move {
            // Signed out either way: a failed call leaves at worst a session that expires.
            let _ = api::logout(me.csrf_token.as_deref().unwrap_or_default()).await;
            session.0.set(SessionState::SignedOut);
            navigate(paths::LOGIN, Default::default());
        });
    };
    let account = move || {
        match session.0.get() {
        SessionState::SignedIn(me) => view! {
            <span class="account">
                <span id="account-name">{me.username.clone()}</span>
                <button id="sign-out" type="button" on:click=sign_out.clone()>{t(i18n::COMMON_SIGN_OUT)}</button>
            </span>
        }
        .into_any(),
        SessionState::SignedOut => view! {
            <a class="account" id="sign-in" href=paths::LOGIN>{t(i18n::COMMON_SIGN_IN)}</a>
        }
        .into_any(),
        SessionState::Unknown => ().into_any(),
    }
    };
    // Links by role: researchers (and admins) the evaluation pages, admins the workers too, every
    // account the grading app.
    // The server enforces the same on every endpoint; this only hides what would be refused.
    let nav = move || {
        let researcher = session.has(Role::Researcher);
        let admin = session.has(Role::Admin);
        let signed_in = session.0.with(|s| matches!(s, SessionState::SignedIn(_)));
        view! {
            <nav class="site-nav">
                {researcher.then(|| view! {
                    <a href=paths::HOME>{t(i18n::COMMON_NAV_LEADERBOARD)}</a>
                    <a href=paths::JOBS>{t(i18n::COMMON_NAV_JOBS)}</a>
                    <a href=paths::EXAM_SETS>{t(i18n::COMMON_NAV_EXAM_SETS)}</a>
                })}
                {admin.then(|| view! { <a href=paths::WORKERS>{t(i18n::COMMON_NAV_WORKERS)}</a> })}
                // The grading app is another bundle: a full page load, not a route.
                {signed_in.then(|| view! {
                    <a id="nav-grading" href=paths::GRADING rel="external">{t(i18n::COMMON_NAV_GRADING)}</a>
                    <a id="nav-projects" href=paths::PROJECTS>{t(i18n::COMMON_NAV_PROJECT)}</a>
                })}
            </nav>
        }
    };
    view! {
        <header class="site-header">
            <a class="brand" href=paths::HOME>
                "Kokushi "
                <span lang="ja">"国試"</span>
            </a>
            {nav}
            <span class="tagline">{t(i18n::COMMON_BRAND_TAGLINE)}</span>
            <ProjectSwitch />
            <LocaleSwitch />
            {account}
        </header>
    }
}

/// The project the session acts in; with several, a switch to another, after which the page
/// loads again in it.
#[component]
pub(crate) fn ProjectSwitch() -> impl IntoView {
    let session = Session::get();
    move || {
        let (current, list) = session.0.with(|s| match s {
            SessionState::SignedIn(me) => Some((me.project.clone()?, me.projects.clone())),
            _ => None,
        })?;
        Some(view! {
            <select id="project-switch" class="project-switch" title=t(i18n::COMMON_PROJECT)
                on:change=|ev| paths::switch_project(&event_target_value(&ev))>
                {list
                    .into_iter()
                    .map(|p| {
                        let chosen = p.id == current.id;
                        view! { <option value=p.id.to_string() selected=chosen>{p.name}</option> }
                    })
                    .collect_view()}
            </select>
        })
    }
}

/// A button naming the other language in that language; choosing it reloads the page in it.
#[component]
pub(crate) fn LocaleSwitch() -> impl IntoView {
    let current = i18n::locale();
    let other = Locale::ALL
        .into_iter()
        .find(|l| *l != current)
        .unwrap_or(current);
    view! {
        <button id="locale-switch" class="locale-switch" type="button" lang=other.code()
            title=t(i18n::COMMON_SWITCH_LANGUAGE)
            on:click=move |_| i18n::switch(other)>
            {other.name()}
        </button>
    }
}
