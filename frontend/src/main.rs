//! Kokushi's browser app: a Leptos client-side app, compiled to WebAssembly and served by the
//! backend as static files beside `index.html`.
//!
//! This file only mounts [`app::App`]. HTTP lives in [`api`], pure logic (formatting, polling
//! decisions, error messages) in plain modules tested on the host, and the DOM in `pages/` and
//! `components/`, one component a file.
//!
//! Architecture invariant: the app never panics and never computes a score itself; every
//! number it shows comes from the API, typed with `kokushi-shared`.

mod api;
mod app;
mod chart;
mod components;
#[cfg(all(test, target_arch = "wasm32"))]
mod dom_tests;
mod error;
mod format;
mod forms;
mod i18n;
mod live;
mod pages;
mod paths;
mod poll;
mod refresh;
mod session;
mod table;

fn main() {
    console_error_panic_hook::set_once();
    i18n::init();
    leptos::mount::mount_to_body(app::App);
}
