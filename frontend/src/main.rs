//! The portal's bundle (`index.html`: the leaderboard, sign-in, and the not-found page of
//! unknown paths). Everything lives in the library (`src/lib.rs`);
//! `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_portal();
}
