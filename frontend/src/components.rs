//! Pieces of pages, one component a file.

pub mod credit_footer;
pub mod error_banner;
pub mod header;
pub mod lineage_card;
pub mod question_row;
pub mod run_row;
pub mod run_summary;
pub mod score_tables;
pub mod status_badge;
pub mod whisker;
