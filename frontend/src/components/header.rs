//! The site header: the product name, linking to the leaderboard.

use leptos::prelude::*;

use crate::paths;

#[component]
pub fn Header() -> impl IntoView {
    view! {
        <header class="site-header">
            <a class="brand" href=paths::HOME>
                "Kokushi "
                <span lang="ja">"国試"</span>
            </a>
            <span class="tagline">"Japanese medical LLMs on the National Medical Licensing Examination"</span>
        </header>
    }
}
