//! The grading app's bundle (`kokushi_grading.wasm`, loaded by `grading.html`, which the server
//! answers for `/grading` and every path below it). Everything lives in the library
//! (`src/lib.rs`).

fn main() {
    kokushi_ui::start_grading();
}
