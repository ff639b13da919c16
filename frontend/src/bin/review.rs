//! The bundle of the review of grading tasks (`review.html`: `/grading/tasks/…`,
//! `/grading/items/…`). Everything lives in the library (`src/lib.rs`);
//! `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_review();
}
