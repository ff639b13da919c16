//! A run's status as a badge: `<span class="status" data-status="running">running</span>`, the
//! text in the page's language, the `data-status` always the API's name.

use kokushi_shared::api::RunStatus;
use leptos::prelude::*;

use crate::format;

#[component]
pub fn StatusBadge(status: RunStatus) -> impl IntoView {
    view! {
        <span class="status" data-status=status.as_str()>
            {format::status(status)}
        </span>
    }
}
