//! Kokushi's browser apps: Leptos client-side apps, compiled to WebAssembly and served by the
//! backend as static files beside `index.html` and `grading.html`.
//!
//! Two bundles share this library: the main app (`src/main.rs` calls [`start_main`]: the
//! leaderboard, runs, jobs) and the grading app (`src/bin/grading.rs` calls [`start_grading`]:
//! human grading under `/grading`). Each links only what its root reaches, so each stays under
//! its own size budget, and a link from one to the other is a full page load. HTTP lives in
//! `api`, pure logic (formatting, polling decisions, error messages, forms, key bindings) in
//! plain modules tested on the host, and the DOM in `pages/`, `components/` and `grading/`, one
//! component a file.
//!
//! The modules are private and only the two starts are exported: each binary is one call, and
//! everything else is compiled once, here.
//!
//! Architecture invariant: the apps never panic and never compute a score themselves; every
//! number they show comes from the API, typed with `kokushi-shared`.

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

/// Starts the main app (the leaderboard, runs, jobs): `src/main.rs`.
pub fn start_main() {
    start();
    leptos::mount::mount_to_body(app::App);
}

/// Starts the grading app (`/grading…`): `src/bin/grading.rs`.
pub fn start_grading() {
    start();
    leptos::mount::mount_to_body(grading::GradingApp);
}

/// What both bundles do first: panics reported in the console (where and why; a hook of our
/// own, a few hundred bytes smaller than one that adds the JavaScript stack), the interface's
/// language chosen.
fn start() {
    std::panic::set_hook(Box::new(|info| {
        web_sys::console::error_1(&info.to_string().into());
    }));
    i18n::init();
}
