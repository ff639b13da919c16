//! Kokushi's browser apps: Leptos client-side apps, compiled to WebAssembly and served by the
//! backend as static files, one HTML page per app (`cargo xtask frontend` writes them).
//!
//! Eight bundles share this library (`kokushi_shared::bundle::Bundle` says which serves which
//! path, and names its page and binary): the portal (`src/main.rs`: the leaderboard, sign-in),
//! a run, a question of a run, a comparison, jobs, the rest of the workbench (exam sets, tunings,
//! workers), grading (my tasks, the grading screen) and the review of grading tasks, each a
//! binary in `src/bin/` that calls one `start_*` function below. Each links only what its
//! root reaches, so the first page of each loads at most 250 KB of gzipped WebAssembly, and a
//! link from one to another is a full page load. HTTP lives in `api`, pure logic (formatting,
//! polling decisions, error messages, forms, key bindings) in plain modules tested on the host,
//! and the DOM in `pages/`, `components/` and `grading/`, one component a file.
//!
//! The modules are private and only the starts are exported: each binary is one call, and
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

/// Starts the portal (the leaderboard, sign-in): `src/main.rs`.
pub fn start_portal() {
    start(Bundle::Portal);
    leptos::mount::mount_to_body(app::PortalApp);
}

/// Starts a run's page: `src/bin/runs.rs`.
pub fn start_runs() {
    start(Bundle::Runs);
    leptos::mount::mount_to_body(app::RunsApp);
}

/// Starts a question's page: `src/bin/question.rs`.
pub fn start_question() {
    start(Bundle::Question);
    leptos::mount::mount_to_body(app::QuestionApp);
}

/// Starts the comparison of two runs: `src/bin/compare.rs`.
pub fn start_compare() {
    start(Bundle::Compare);
    leptos::mount::mount_to_body(app::CompareApp);
}

/// Starts the jobs page: `src/bin/jobs.rs`.
pub fn start_jobs() {
    start(Bundle::Jobs);
    leptos::mount::mount_to_body(app::JobsApp);
}

/// Starts the workbench (exam sets, tunings, workers): `src/bin/workbench.rs`.
pub fn start_workbench() {
    start(Bundle::Workbench);
    leptos::mount::mount_to_body(app::WorkbenchApp);
}

/// Starts project settings: `src/bin/settings.rs`.
pub fn start_settings() {
    start(Bundle::Settings);
    leptos::mount::mount_to_body(app::SettingsApp);
}

/// Starts the grading app (my tasks, the grading screen): `src/bin/grading.rs`.
pub fn start_grading() {
    start(Bundle::Grading);
    leptos::mount::mount_to_body(grading::GradingApp);
}

/// Starts the review of grading tasks: `src/bin/review.rs`.
pub fn start_review() {
    start(Bundle::Review);
    leptos::mount::mount_to_body(grading::ReviewApp);
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
