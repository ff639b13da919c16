//! The page for a path the app does not know.

use leptos::prelude::*;

use crate::paths;

#[component]
pub fn NotFoundPage() -> impl IntoView {
    view! {
        <section class="not-found">
            <h1>"Page not found"</h1>
            <p>
                <a href=paths::HOME>"Back to the leaderboard"</a>
            </p>
        </section>
    }
}
