//! The roots of the portal's and the workbench's apps: the session, the header and each one's
//! routes.
//!
//! Each is a bundle of its own ([`Bundle`]); a path of another bundle (a header link, a link on
//! a page, a navigation after signing in) reaches the fallback [`elsewhere`], which loads it
//! from the server.

use kokushi_shared::bundle::Bundle;
use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::hooks::{use_location, use_navigate};
use leptos_router::path;

use crate::api;
use crate::components::header::Header;
use crate::pages::compare::ComparePage;
use crate::pages::exam_sets::ExamSetsPage;
use crate::pages::jobs::JobsPage;
use crate::pages::leaderboard::LeaderboardPage;
use crate::pages::login::LoginPage;
use crate::pages::not_found::NotFoundPage;
use crate::pages::projects::ProjectsPage;
use crate::pages::question::QuestionPage;
use crate::pages::run::RunPage;
use crate::pages::tuning::TuningPage;
use crate::pages::workers::WorkersPage;
use crate::paths;
use crate::session::{Session, SessionState};

/// The portal: the leaderboard, sign-in, and the not-found page of every unknown path.
#[component]
pub fn PortalApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Portal>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/") view=LeaderboardPage />
                <Route path=path!("/login") view=LoginPage />
            </Routes>
        </Shell>
    }
}

/// A run.
#[component]
pub fn RunsApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Runs>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/runs/:id") view=RunPage />
            </Routes>
        </Shell>
    }
}

/// A question of a run.
#[component]
pub fn QuestionApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Question>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/runs/:id/questions/:problem_id") view=QuestionPage />
            </Routes>
        </Shell>
    }
}

/// Two runs compared.
#[component]
pub fn CompareApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Compare>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/compare") view=ComparePage />
            </Routes>
        </Shell>
    }
}

/// Jobs: evaluations and tunings launched and followed.
#[component]
pub fn JobsApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Jobs>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/jobs") view=JobsPage />
            </Routes>
        </Shell>
    }
}

/// The rest of the workbench: exam sets, a tuning, workers.
#[component]
pub fn WorkbenchApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Workbench>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/exam-sets") view=ExamSetsPage />
                <Route path=path!("/tunings/:id") view=TuningPage />
                <Route path=path!("/workers") view=WorkersPage />
            </Routes>
        </Shell>
    }
}

/// Project settings: members, roles, API tokens.
#[component]
pub fn SettingsApp() -> impl IntoView {
    view! {
        <Shell bundle=Bundle::Settings>
            <Routes fallback=elsewhere(NotFoundPage)>
                <Route path=path!("/projects") view=ProjectsPage />
            </Routes>
        </Shell>
    }
}

/// Which bundle is running, for [`elsewhere`].
#[derive(Clone, Copy)]
pub(crate) struct ThisBundle(pub(crate) Bundle);

/// What the portal's apps share around their routes.
#[component]
fn Shell(bundle: Bundle, children: Children) -> impl IntoView {
    provide_context(Session(RwSignal::new(SessionState::Unknown)));
    provide_context(ThisBundle(bundle));
    view! {
        <Router>
            <SessionCheck />
            <Header />
            <main>{children()}</main>
        </Router>
    }
}

/// The routes' fallback: a path no route of this bundle matches is another bundle's page,
/// loaded from the server (which answers it with that bundle); or, when it is this bundle's
/// own, a page that does not exist (`not_found`).
pub(crate) fn elsewhere<V: IntoView + 'static>(
    not_found: fn() -> V,
) -> impl Fn() -> AnyView + Clone + Send + Sync + 'static {
    move || {
        let location = use_location();
        let path = location.pathname.get_untracked();
        let here = use_context::<ThisBundle>().map(|b| b.0);
        if here.is_some_and(|b| Bundle::of(&path) != b) {
            let search = location.search.get_untracked();
            let url = format!(
                "{path}{}{search}{}",
                if search.is_empty() { "" } else { "?" },
                location.hash.get_untracked()
            );
            if paths::load_once(&path, &url) {
                return ().into_any();
            }
        }
        not_found().into_any()
    }
}

/// Asks the server once who is signed in; nobody → the sign-in page, an account that only
/// grades → the grading app.
#[component]
fn SessionCheck() -> impl IntoView {
    let session = Session::get();
    let navigate = use_navigate();
    let location = use_location();
    leptos::task::spawn_local(async move {
        match api::me().await {
            // An annotator only grades: nothing here is theirs to see (but the sign-in page
            // stays, to sign in as someone else).
            Ok(me)
                if crate::session::grading_only(&me)
                    && location.pathname.get_untracked() != paths::LOGIN =>
            {
                paths::open_page(paths::GRADING);
            }
            Ok(me) => session.0.set(SessionState::SignedIn(me)),
            Err(error) if error.is_unauthorized() => {
                session.0.set(SessionState::SignedOut);
                if location.pathname.get_untracked() != paths::LOGIN {
                    navigate(paths::LOGIN, Default::default());
                }
            }
            // Server trouble: the page's own request shows the error.
            Err(_) => {}
        }
    });
}
