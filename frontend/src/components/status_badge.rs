//! A run's status as a badge: `<span class="status" data-status="running">running</span>`.

use kokushi_shared::api::RunStatus;
use leptos::prelude::*;

#[component]
pub fn StatusBadge(status: RunStatus) -> impl IntoView {
    view! {
        <span class="status" data-status=status.as_str()>
            {status.as_str()}
        </span>
    }
}
