//! The Kokushi server: the HTTP API and the built frontend (actix-web), the database (sqlx,
//! SQLite or PostgreSQL), ingestion of worker events, and the `kokushi` binary's commands.
//!
//! Error policy: handlers return [`error::ApiError`], the one place that maps errors to HTTP
//! statuses; a 4xx says exactly what was wrong, a 5xx is opaque to the client and logged in full.
//!
//! Architecture invariant: no candle here. Models are reached only through `kokushi-worker`.

pub mod accounts;
pub mod auth;
pub mod clock;
pub mod compare;
pub mod db;
pub mod error;
pub mod export;
pub mod grading;
pub mod headers;
pub mod import;
pub mod ingest;
pub mod leaderboard;
pub mod lineage;
pub mod live;
pub mod metrics;
pub mod openapi;
pub mod page;
pub mod routes;
pub mod scoring;
pub mod settings;
pub mod startup;
pub mod tuning;
pub mod uploads;

pub use settings::Settings;
pub use startup::Application;
