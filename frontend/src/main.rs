//! The portal's bundle (`kokushi_frontend.wasm`, loaded by `index.html`: the leaderboard, runs,
//! questions, comparisons, sign-in). Everything lives in the library (`src/lib.rs`).

fn main() {
    kokushi_ui::start_portal();
}
