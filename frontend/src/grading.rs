//! The grading app (`/grading…`, its own bundle): annotators grade model answers blind, one
//! item at a time and from the keyboard; researchers create grading tasks, watch agreement
//! and adjudicate disputed items.
//!
//! Two bundles (`Bundle::Grading`: my tasks and the grading screen, what an annotator loads;
//! `Bundle::Review`: a task's agreement and items, for researchers). They share the library
//! with the portal (API calls, session, locale, error banner) but have their own header and
//! router: a link to another bundle's page is a full page load. Pure logic — keys, forms, labels — lives in plain modules tested on the
//! host (`keys`, `forms`, `labels`).

pub(crate) mod forms;
mod header;
mod home;
mod item;
mod keys;
mod labels;
pub(crate) mod rubric;
pub(crate) mod screen;
mod task;
mod task_form;

use kokushi_shared::bundle::Bundle;
use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::api;
use crate::app::{ThisBundle, elsewhere};
use crate::i18n::{self, t};
use crate::paths;
use crate::session::{Session, SessionState};

/// Grading: my tasks (and a researcher's new-task form) and the grading screen.
#[component]
pub fn GradingApp() -> impl IntoView {
    view! {
        <GradingShell bundle=Bundle::Grading>
            <Routes fallback=elsewhere(NotFound)>
                <Route path=path!("/grading") view=home::HomePage />
                <Route path=path!("/grading/do/:task") view=screen::ScreenPage />
            </Routes>
        </GradingShell>
    }
}

/// A grading task's agreement and its items, for researchers.
#[component]
pub fn ReviewApp() -> impl IntoView {
    view! {
        <GradingShell bundle=Bundle::Review>
            <Routes fallback=elsewhere(NotFound)>
                <Route path=path!("/grading/tasks/:id") view=task::TaskPage />
                <Route path=path!("/grading/items/:id") view=item::ItemPage />
            </Routes>
        </GradingShell>
    }
}

/// What both grading apps share around their routes: the session and the grading header.
#[component]
fn GradingShell(bundle: Bundle, children: Children) -> impl IntoView {
    let session = Session(RwSignal::new(SessionState::Unknown));
    provide_context(session);
    provide_context(ThisBundle(bundle));
    // Who is signed in; nobody → the portal's sign-in page (a page load: it is not a route
    // here).
    leptos::task::spawn_local(async move {
        match api::me().await {
            Ok(me) => session.0.set(SessionState::SignedIn(me)),
            Err(error) if error.is_unauthorized() => {
                session.0.set(SessionState::SignedOut);
                paths::open_page(paths::LOGIN);
            }
            // Server trouble: the page's own request shows the error.
            Err(_) => {}
        }
    });
    view! {
        <Router>
            <header::GradingHeader />
            <main class="grading">{children()}</main>
        </Router>
    }
}

#[component]
fn NotFound() -> impl IntoView {
    view! {
        <section class="not-found">
            <h1>{t(i18n::GRADING_NOT_FOUND)}</h1>
            <p>
                <a href=paths::GRADING>{t(i18n::GRADING_BACK_TO_GRADING)}</a>
            </p>
        </section>
    }
}

/// The page for an id segment that is not an id.
fn not_an_id(segment: String) -> AnyView {
    view! {
        <section>
            <h1>{t(i18n::GRADING_NOT_FOUND)}</h1>
            <p class="error" role="alert">
                {crate::i18n::tf(i18n::GRADING_NOT_AN_ID, &[("segment", &segment)])}
            </p>
        </section>
    }
    .into_any()
}

/// A route's `:name` segment as a positive id, with the raw segment for the error.
fn id_param(name: &'static str) -> Memo<(Option<i64>, String)> {
    let params = leptos_router::hooks::use_params_map();
    Memo::new(move |_| {
        let segment = params.with(|p| p.get(name)).unwrap_or_default();
        (paths::parse_run_id(&segment), segment)
    })
}

/// A one-off fetch into `state` (no polling): pages call it again to refresh.
fn fetch_into<T, Fut>(state: RwSignal<crate::refresh::Loaded<T>>, request: Fut)
where
    T: Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, crate::error::ApiError>> + 'static,
{
    leptos::task::spawn_local(async move {
        let result = request.await;
        state.try_update(|s| s.record(result));
    });
}
