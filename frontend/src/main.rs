//! The main app's bundle (`kokushi_frontend.wasm`, loaded by `index.html`). Everything lives in
//! the library (`src/lib.rs`).

fn main() {
    kokushi_ui::start_main();
}
