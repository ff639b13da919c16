//! Kokushi's browser apps: Leptos client-side apps, compiled to WebAssembly and served by the
//! backend as static files beside `index.html`, `workbench.html` and `grading.html`.
//!
//! Three bundles share this library (`kokushi_shared::bundle::Bundle` says which serves which
//! path): the portal (`src/main.rs` calls [`start_portal`]: the leaderboard, runs, questions,
//! comparisons, sign-in), the workbench (`src/bin/workbench.rs` calls [`start_workbench`]: jobs,
//! exam sets, tunings, workers) and the grading app (`src/bin/grading.rs` calls
//! [`start_grading`]: human grading under `/grading`). Each links only what its root reaches, so
//! each stays under its own size budget, and a link from one to another is a full page load. HTTP lives in
//! `api`, pure logic (formatting, polling decisions, error messages, forms, key bindings) in
//! plain modules tested on the host, and the DOM in `pages/`, `components/` and `grading/`, one
//! component a file.
//!
//! The modules are private and only the three starts are exported: each binary is one call, and
//! everything else is compiled once, here.
//!
//! Architecture invariant: the apps never panic and never compute a score themselves; every
//! number they show comes from the API, typed with `kokushi-shared`.

use kokushi_shared::bundle::Bundle;

mod api;
mod app;
mod chart;
mod components;
#[cfg(all(test, target_arch = "wasm32"))]
mod dom_tests;
mod error;
mod format;
mod forms;
mod grading;
mod i18n;
mod live;
mod pages;
mod paths;
mod poll;
mod refresh;
mod session;
mod table;

/// Starts the portal (the leaderboard, runs, questions, comparisons, sign-in): `src/main.rs`.
pub fn start_portal() {
    start(Bundle::Portal);
    leptos::mount::mount_to_body(app::PortalApp);
}

/// Starts the workbench (jobs, exam sets, tunings, workers): `src/bin/workbench.rs`.
pub fn start_workbench() {
    start(Bundle::Workbench);
    leptos::mount::mount_to_body(app::WorkbenchApp);
}

/// Starts the grading app (`/grading…`): `src/bin/grading.rs`.
pub fn start_grading() {
    start(Bundle::Grading);
    leptos::mount::mount_to_body(grading::GradingApp);
}

/// What every bundle does first: panics reported in the console (where and why; a hook of our
/// own, a few hundred bytes smaller than one that adds the JavaScript stack), the interface's
/// language chosen, a reload that brought the browser here noted as done.
fn start(bundle: Bundle) {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    i18n::init();
    paths::arrived(bundle);
}
