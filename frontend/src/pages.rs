//! One routed page a file.

pub mod compare;
pub mod exam_sets;
pub mod jobs;
pub mod leaderboard;
pub mod login;
pub mod not_found;
pub mod projects;
pub mod question;
pub mod run;
pub mod tuning;
pub mod workers;
