//! The workbench's bundle (`workbench.html`: `/exam-sets`, `/tunings/…`, `/workers`).
//! Everything lives in the library (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths
//! to bundles.

fn main() {
    kokushi_ui::start_workbench();
}
