//! The workbench's bundle (`kokushi_workbench.wasm`, loaded by `workbench.html`, which the
//! server answers for `/jobs`, `/exam-sets`, `/tunings/…` and `/workers`). Everything lives in
//! the library (`src/lib.rs`).

fn main() {
    kokushi_ui::start_workbench();
}
