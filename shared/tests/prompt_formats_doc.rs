//! `docs/prompt-formats.md` shows the exact text of every prompt format for one question; this
//! renders that question in each format and compares, so the page cannot drift from the code.

use kokushi_shared::prompt::PromptFormat;

const DOC: &str = include_str!("../../docs/prompt-formats.md");

#[test]
fn every_format_renders_exactly_the_text_the_page_shows() {
    let choices: Vec<String> = ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"]
        .map(str::to_owned)
        .to_vec();
    for format in PromptFormat::ALL {
        let opening = format!("```text {}\n", format.id());
        let start = DOC
            .find(&opening)
            .unwrap_or_else(|| panic!("the page shows no block for {}", format.id()))
            + opening.len();
        let end = start + DOC[start..].find("\n```").expect("the block is closed");
        let shown = &DOC[start..end];
        let rendered = format.render("インスリンを分泌する細胞はどれか。", &choices);
        assert_eq!(rendered, shown, "{}", format.id());
    }
}
