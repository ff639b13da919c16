//! The data credit, shown wherever exam data is shown.

use leptos::prelude::*;

#[component]
pub fn CreditFooter(credit: String) -> impl IntoView {
    view! {
        <footer id="credit" class="credit">
            {credit}
        </footer>
    }
}
