//! One routed page a file.

pub mod leaderboard;
pub mod not_found;
pub mod run;
