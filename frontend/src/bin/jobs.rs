//! The bundle of the jobs page (`jobs.html`: `/jobs`). Everything lives in the library
//! (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_jobs();
}
