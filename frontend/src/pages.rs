//! One routed page a file.

pub mod leaderboard;
pub mod login;
pub mod not_found;
pub mod run;
