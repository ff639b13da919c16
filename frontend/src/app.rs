//! The root component: the session, the header and the routes.

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
use crate::pages::question::QuestionPage;
use crate::pages::run::RunPage;
use crate::pages::tuning::TuningPage;
use crate::pages::workers::WorkersPage;
use crate::paths;
use crate::session::{Session, SessionState};

#[component]
pub fn App() -> impl IntoView {
    provide_context(Session(RwSignal::new(SessionState::Unknown)));
    view! {
        <Router>
            <SessionCheck />
            <Header />
            <main>
                <Routes fallback=NotFoundPage>
                    <Route path=path!("/") view=LeaderboardPage />
                    <Route path=path!("/login") view=LoginPage />
                    <Route path=path!("/runs/:id") view=RunPage />
                    <Route path=path!("/runs/:id/questions/:problem_id") view=QuestionPage />
                    <Route path=path!("/compare") view=ComparePage />
                    <Route path=path!("/exam-sets") view=ExamSetsPage />
                    <Route path=path!("/jobs") view=JobsPage />
                    <Route path=path!("/tunings/:id") view=TuningPage />
                    <Route path=path!("/workers") view=WorkersPage />
                </Routes>
            </main>
        </Router>
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
