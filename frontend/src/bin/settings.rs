//! Project settings' bundle (`settings.html`: `/projects`).
//! Everything lives in the library (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths
//! to bundles.

fn main() {
    kokushi_ui::start_settings();
}
