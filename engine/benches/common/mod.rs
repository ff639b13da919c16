//! What the engine's benches share: the prompt they run on.

use kokushi_engine::Model;

/// Japanese exam text, repeated until the prompt is long enough.
const TEXT: &str = "62歳の男性。2時間前からの前胸部痛を主訴に救急車で搬入された。\
    高血圧症と脂質異常症で内服治療中である。意識は清明。脈拍 104/分、整。血圧 92/60 mmHg。\
    心電図で II、III、aVF 誘導に ST 上昇を認める。最も適切な対応はどれか。";

/// The first `tokens` ids (BOS included where the model wants one) of the exam text repeated
/// until it is long enough, and the text they were cut from.
pub fn exam_prompt(model: &Model, tokens: usize) -> (Vec<u32>, String) {
    let mut text = String::new();
    loop {
        text.push_str(TEXT);
        let ids = model
            .tokenizer()
            .encode(text.as_str(), true)
            .expect("encode")
            .get_ids()
            .to_vec();
        if ids.len() >= tokens {
            return (ids[..tokens].to_vec(), text);
        }
    }
}
