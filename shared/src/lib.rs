//! Types and pure logic shared by every part of Kokushi: the server, the worker and the
//! browser.
//!
//! This crate owns the vocabulary that crosses process boundaries (exam sets and questions,
//! runs, jobs, worker events, API bodies and error codes), the IgakuQA file format, prompt
//! formats, answer extraction and the metrics.
//!
//! Architecture invariant: no I/O, no async runtime, no database, no model code. It must build
//! for `wasm32-unknown-unknown` so the browser computes exactly what the server computes.

pub mod agreement;
pub mod api;
pub mod bundle;
pub mod cost;
pub mod csv;
pub mod exam;
pub mod examinees;
pub mod extract;
pub mod gestalt;
pub mod grading;
pub mod igakuqa;
pub mod job;
pub mod judge;
pub mod leakage;
pub mod metric;
pub mod passing;
pub mod prompt;
pub mod repair;
pub mod rules;
pub mod score;
pub mod stats;
pub mod tuning;

pub use exam::{Gold, Question, QuestionMeta, Section};
