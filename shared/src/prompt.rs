//! Prompt formats: how a question is put to a model. Each format has a stable id that runs
//! record, so a score always says which words produced it.

use serde::{Deserialize, Serialize};

use crate::exam::choice_letter;

/// The prompt formats Kokushi knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PromptFormat {
    /// ChatML turns (`<|im_start|>`), for instruction-tuned models that use them (SmolLM2,
    /// Qwen): a Japanese instruction, the question, lettered choices, and the assistant turn
    /// opened with 「答え：」.
    #[serde(rename = "chatml_ja_v1")]
    ChatmlJa,
    /// The same words without chat markup, for base models.
    #[serde(rename = "plain_ja_v1")]
    PlainJa,
    /// Gemma's turns (`<start_of_turn>user` … `<end_of_turn>`, then the model's turn opened with
    /// 「答え：」), for Gemma 2 and 3 instruction-tuned models, which have no system turn: the
    /// instruction opens the user's turn.
    #[serde(rename = "gemma_ja_v1")]
    GemmaJa,
}

const INSTRUCTION: &str = "以下は医師国家試験の問題です。選択肢の記号で答えてください。";

impl PromptFormat {
    pub const ALL: [PromptFormat; 3] = [
        PromptFormat::ChatmlJa,
        PromptFormat::PlainJa,
        PromptFormat::GemmaJa,
    ];

    /// The id stored with a run.
    pub fn id(self) -> &'static str {
        match self {
            PromptFormat::ChatmlJa => "chatml_ja_v1",
            PromptFormat::PlainJa => "plain_ja_v1",
            PromptFormat::GemmaJa => "gemma_ja_v1",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.id() == id)
    }

    /// The full prompt text for one question.
    pub fn render(self, text: &str, choices: &[String]) -> String {
        let body = question_body(text, choices);
        match self {
            PromptFormat::ChatmlJa => format!(
                "<|im_start|>system\n{INSTRUCTION}<|im_end|>\n<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n答え："
            ),
            PromptFormat::PlainJa => format!("{INSTRUCTION}\n\n{body}\n答え："),
            PromptFormat::GemmaJa => format!(
                "<start_of_turn>user\n{INSTRUCTION}\n\n{body}<end_of_turn>\n<start_of_turn>model\n答え："
            ),
        }
    }

    /// Strings that end the model's answer.
    pub fn stop_sequences(self) -> Vec<String> {
        match self {
            PromptFormat::ChatmlJa => vec!["<|im_end|>".to_owned(), "<|im_start|>".to_owned()],
            PromptFormat::PlainJa => vec!["\n\n".to_owned(), "問題：".to_owned()],
            PromptFormat::GemmaJa => vec!["<end_of_turn>".to_owned(), "<start_of_turn>".to_owned()],
        }
    }
}

/// The words of one user turn, for a model's own chat template: the instruction and the
/// question with its lettered choices (the template supplies the turns; the caller opens the
/// answer with 「答え：」 after it).
pub fn user_turn(text: &str, choices: &[String]) -> String {
    format!("{INSTRUCTION}\n\n{}", question_body(text, choices))
}

/// What opens the model's answer after any prompt.
pub const ANSWER_OPENING: &str = "答え：";

fn question_body(text: &str, choices: &[String]) -> String {
    let mut body = format!("問題：{text}\n");
    for (i, choice) in choices.iter().enumerate() {
        body.push_str(&format!("{}. {choice}\n", choice_letter(i)));
    }
    body
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for f in PromptFormat::ALL {
            assert_eq!(PromptFormat::from_id(f.id()), Some(f));
        }
        assert_eq!(PromptFormat::from_id("nope"), None);
    }

    #[test]
    fn choices_are_lettered_in_order() {
        let prompt =
            PromptFormat::PlainJa.render("正しいのはどれか。", &["甲".into(), "乙".into()]);
        assert!(
            prompt.contains("問題：正しいのはどれか。\na. 甲\nb. 乙\n"),
            "{prompt}"
        );
        assert!(prompt.ends_with("答え："));
    }
}
