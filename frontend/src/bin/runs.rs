//! The bundle of a run's page (`runs.html`: `/runs/…`). Everything lives in the library
//! (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_runs();
}
