//! The Kokushi server: the HTTP API and the built frontend (actix-web), the database (sqlx,
//! SQLite or PostgreSQL), ingestion of worker events, and what the `kokushi` binary's commands
//! call.
//!
//! Layout: `startup` builds the [`state::AppState`] and the app; `routes` is the table of every
//! endpoint, whose handlers live in `handlers` (one module per resource); `auth` checks every
//! request against that table. Below the handlers, and knowing nothing of them: the logic
//! (`accounts`, `grading`, `tuning`, `scoring`, `export`, `import`, `ingest`), all SQL (`db`),
//! and the limits both sides share (`limits`).
//!
//! Error policy: handlers return [`error::ApiError`], the one place that maps errors to HTTP
//! statuses; a 4xx says exactly what was wrong, a 5xx is opaque to the client and logged in full.
//!
//! Architecture invariant: no candle here. Models are reached only through `kokushi-worker`.

pub mod accounts;
pub mod auth;
pub mod clock;
pub mod cost;
pub mod db;
pub mod error;
pub mod export;
pub mod grading;
pub mod handlers;
pub mod headers;
pub mod import;
pub mod ingest;
pub mod judging;
pub mod limits;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod routes;
pub mod routing;
pub mod scoring;
pub mod settings;
pub mod startup;
pub mod state;
pub mod tuning;

pub use settings::Settings;
pub use startup::Application;
