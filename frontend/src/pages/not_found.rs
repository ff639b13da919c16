//! The page for a path the app does not know.

use leptos::prelude::*;

use crate::i18n::{self, t};
use crate::paths;

#[component]
pub fn NotFoundPage() -> impl IntoView {
    view! {
        <section class="not-found">
            <h1>{t(i18n::COMMON_NOT_FOUND_TITLE)}</h1>
            <p>
                <a href=paths::HOME>{t(i18n::COMMON_BACK_TO_LEADERBOARD)}</a>
            </p>
        </section>
    }
}
