//! The root component: the header and the routes.

use leptos::prelude::*;
use leptos_router::components::{Route, Router, Routes};
use leptos_router::path;

use crate::components::header::Header;
use crate::pages::leaderboard::LeaderboardPage;
use crate::pages::not_found::NotFoundPage;
use crate::pages::run::RunPage;

#[component]
pub fn App() -> impl IntoView {
    view! {
        <Router>
            <Header />
            <main>
                <Routes fallback=NotFoundPage>
                    <Route path=path!("/") view=LeaderboardPage />
                    <Route path=path!("/runs/:id") view=RunPage />
                </Routes>
            </main>
        </Router>
    }
}
