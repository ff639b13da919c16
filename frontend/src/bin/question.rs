//! The bundle of a question's page (`question.html`: `/runs/…/questions/…`). Everything lives
//! in the library (`src/lib.rs`); `kokushi_shared::bundle::Bundle` maps paths to bundles.

fn main() {
    kokushi_ui::start_question();
}
