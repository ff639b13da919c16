//! The grading app's bundle (`grading.html`: `/grading`, `/grading/do/…`). Everything lives in
//! the library (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_grading();
}
