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
    /// The Japanese Alpaca layout (指示 / 入力 / 応答), as Japanese instruction-tuned models and
    /// the LoRA recipes of the seed papers use it: the instruction, the question as the input,
    /// and the response opened with 「答え：」.
    #[serde(rename = "alpaca_ja_v1")]
    AlpacaJa,
    /// Med-PaLM 2's multiple-choice layout in Japanese: a one-line preamble, the question and
    /// its choices under bold labels, choices in parentheses, and the answer opened with
    /// 「**答え：**(」 so the next token is the letter.
    #[serde(rename = "medpalm_ja_v1")]
    MedpalmJa,
}

/// The preamble of the Med-PaLM 2-style layout ("The following are multiple choice questions
/// (with answers) about medical knowledge.").
const MEDPALM_PREAMBLE: &str = "以下は医学知識に関する多肢選択問題（答え付き）です。";

/// The preamble of the Japanese Alpaca layout.
const ALPACA_PREAMBLE: &str = "以下は、タスクを説明する指示と、文脈のある入力の組み合わせです。要求を適切に満たす応答を書きなさい。";

/// The preamble of the Japanese Alpaca layout for an instruction without an input.
const ALPACA_PREAMBLE_NO_INPUT: &str =
    "以下は、タスクを説明する指示です。要求を適切に満たす応答を書きなさい。";

const INSTRUCTION: &str = "以下は医師国家試験の問題です。選択肢の記号で答えてください。";

impl PromptFormat {
    pub const ALL: [PromptFormat; 5] = [
        PromptFormat::ChatmlJa,
        PromptFormat::PlainJa,
        PromptFormat::GemmaJa,
        PromptFormat::AlpacaJa,
        PromptFormat::MedpalmJa,
    ];

    /// The id stored with a run.
    pub fn id(self) -> &'static str {
        match self {
            PromptFormat::ChatmlJa => "chatml_ja_v1",
            PromptFormat::PlainJa => "plain_ja_v1",
            PromptFormat::GemmaJa => "gemma_ja_v1",
            PromptFormat::AlpacaJa => "alpaca_ja_v1",
            PromptFormat::MedpalmJa => "medpalm_ja_v1",
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
            PromptFormat::AlpacaJa => format!(
                "{ALPACA_PREAMBLE}\n\n### 指示:\n{INSTRUCTION}\n\n### 入力:\n{body}\n### 応答:\n答え："
            ),
            PromptFormat::MedpalmJa => format!(
                "{MEDPALM_PREAMBLE}\n\n{}**答え：**(",
                medpalm_body(text, choices)
            ),
        }
    }

    /// The prompt with worked examples first (k-shot): each shot is a question answered with
    /// its gold letters, in the format's own turns, then the question itself as [`render`]
    /// writes it. With no shots this is exactly [`render`].
    ///
    /// [`render`]: PromptFormat::render
    pub fn render_with_shots(self, shots: &[Shot<'_>], text: &str, choices: &[String]) -> String {
        if shots.is_empty() {
            return self.render(text, choices);
        }
        let body = question_body(text, choices);
        let mut out = String::new();
        match self {
            PromptFormat::ChatmlJa => {
                out.push_str(&format!("<|im_start|>system\n{INSTRUCTION}<|im_end|>\n"));
                for shot in shots {
                    out.push_str(&format!(
                        "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n答え：{}<|im_end|>\n",
                        question_body(shot.text, shot.choices),
                        shot.answer
                    ));
                }
                out.push_str(&format!(
                    "<|im_start|>user\n{body}<|im_end|>\n<|im_start|>assistant\n答え："
                ));
            }
            PromptFormat::PlainJa => {
                out.push_str(&format!("{INSTRUCTION}\n\n"));
                for shot in shots {
                    out.push_str(&format!(
                        "{}\n答え：{}\n\n",
                        question_body(shot.text, shot.choices),
                        shot.answer
                    ));
                }
                out.push_str(&format!("{body}\n答え："));
            }
            PromptFormat::AlpacaJa => {
                out.push_str(&format!(
                    "{ALPACA_PREAMBLE}\n\n### 指示:\n{INSTRUCTION}\n\n"
                ));
                for shot in shots {
                    out.push_str(&format!(
                        "### 入力:\n{}\n### 応答:\n答え：{}\n\n",
                        question_body(shot.text, shot.choices),
                        shot.answer
                    ));
                }
                out.push_str(&format!("### 入力:\n{body}\n### 応答:\n答え："));
            }
            PromptFormat::MedpalmJa => {
                out.push_str(&format!("{MEDPALM_PREAMBLE}\n\n"));
                for shot in shots {
                    out.push_str(&format!(
                        "{}**答え：**({})\n\n",
                        medpalm_body(shot.text, shot.choices),
                        shot.answer
                    ));
                }
                out.push_str(&format!("{}**答え：**(", medpalm_body(text, choices)));
            }
            PromptFormat::GemmaJa => {
                for (i, shot) in shots.iter().enumerate() {
                    let instruction = if i == 0 {
                        format!("{INSTRUCTION}\n\n")
                    } else {
                        String::new()
                    };
                    out.push_str(&format!(
                        "<start_of_turn>user\n{instruction}{}<end_of_turn>\n<start_of_turn>model\n答え：{}<end_of_turn>\n",
                        question_body(shot.text, shot.choices),
                        shot.answer
                    ));
                }
                out.push_str(&format!(
                    "<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\n答え："
                ));
            }
        }
        out
    }

    /// What closes an answer in this format, written after the answer in tuning examples so a
    /// tuned model learns to stop where evaluation's stop sequences expect it.
    pub fn answer_end(self) -> &'static str {
        match self {
            PromptFormat::ChatmlJa => "<|im_end|>",
            PromptFormat::GemmaJa => "<end_of_turn>",
            PromptFormat::PlainJa | PromptFormat::AlpacaJa => "\n\n",
            PromptFormat::MedpalmJa => ")\n\n",
        }
    }

    /// The prompt for a free instruction (Alpaca-style tuning data): `instruction` in the place
    /// the exam instruction takes, `input` (may be empty) in the question's place, and the
    /// response opened without 「答え：」.
    pub fn render_instruction(self, instruction: &str, input: &str) -> String {
        let body = if input.is_empty() {
            instruction.to_owned()
        } else {
            format!("{instruction}\n\n{input}")
        };
        match self {
            PromptFormat::ChatmlJa if input.is_empty() => {
                format!("<|im_start|>user\n{instruction}<|im_end|>\n<|im_start|>assistant\n")
            }
            PromptFormat::ChatmlJa => format!(
                "<|im_start|>system\n{instruction}<|im_end|>\n<|im_start|>user\n{input}<|im_end|>\n<|im_start|>assistant\n"
            ),
            PromptFormat::PlainJa => format!("{body}\n"),
            PromptFormat::GemmaJa => {
                format!("<start_of_turn>user\n{body}<end_of_turn>\n<start_of_turn>model\n")
            }
            PromptFormat::AlpacaJa if input.is_empty() => {
                format!("{ALPACA_PREAMBLE_NO_INPUT}\n\n### 指示:\n{instruction}\n\n### 応答:\n")
            }
            PromptFormat::AlpacaJa => format!(
                "{ALPACA_PREAMBLE}\n\n### 指示:\n{instruction}\n\n### 入力:\n{input}\n\n### 応答:\n"
            ),
            PromptFormat::MedpalmJa => format!("{body}\n**答え：**"),
        }
    }

    /// Strings that end the model's answer.
    pub fn stop_sequences(self) -> Vec<String> {
        match self {
            PromptFormat::ChatmlJa => vec!["<|im_end|>".to_owned(), "<|im_start|>".to_owned()],
            PromptFormat::PlainJa => vec!["\n\n".to_owned(), "問題：".to_owned()],
            PromptFormat::GemmaJa => vec!["<end_of_turn>".to_owned(), "<start_of_turn>".to_owned()],
            PromptFormat::AlpacaJa => vec!["\n\n".to_owned(), "###".to_owned()],
            PromptFormat::MedpalmJa => vec!["\n\n".to_owned(), "**問題".to_owned()],
        }
    }
}

/// A worked example for a k-shot prompt: a question and its answer as the model should write
/// it (`b`, `a,c`, `26`).
#[derive(Debug, Clone, Copy)]
pub struct Shot<'a> {
    pub text: &'a str,
    pub choices: &'a [String],
    pub answer: &'a str,
}

/// FNV-1a over the seed and both ids: a fixed, well-spread order of the candidates.
pub(crate) fn shot_rank(seed: u64, question: &str, candidate: &str) -> u64 {
    let bytes: Vec<u8> = question
        .bytes()
        .chain([0xff])
        .chain(candidate.bytes())
        .collect();
    crate::tuning::fnv(seed, &bytes)
}

/// The words of one user turn, for a model's own chat template: the instruction and the
/// question with its lettered choices (the template supplies the turns; the caller opens the
/// answer with 「答え：」 after it).
pub fn user_turn(text: &str, choices: &[String]) -> String {
    format!("{INSTRUCTION}\n\n{}", question_body(text, choices))
}

/// What opens the model's answer after any prompt.
pub const ANSWER_OPENING: &str = "答え：";

/// The question under Med-PaLM 2's bold labels, choices as `(a) …`.
fn medpalm_body(text: &str, choices: &[String]) -> String {
    let mut body = format!("**問題：** {text}\n");
    for (i, choice) in choices.iter().enumerate() {
        body.push_str(&format!("({}) {choice}\n", choice_letter(i)));
    }
    body
}

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
    use crate::job::pick_shots;

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

    #[test]
    fn shots_come_before_the_question_in_each_formats_own_turns() {
        let choices: Vec<String> = ["甲", "乙"].map(str::to_owned).to_vec();
        let shot = Shot {
            text: "例題。",
            choices: &choices,
            answer: "b",
        };
        for format in PromptFormat::ALL {
            assert_eq!(
                format.render_with_shots(&[], "問い。", &choices),
                format.render("問い。", &choices)
            );
            let prompt = format.render_with_shots(&[shot], "問い。", &choices);
            let example = prompt.find("例題。").expect("the shot is in the prompt");
            let question = prompt
                .find("問い。")
                .expect("the question is in the prompt");
            assert!(example < question, "{prompt}");
            let (answered, cue, preamble) = match format {
                PromptFormat::MedpalmJa => ("**答え：**(b)", "**答え：**(", MEDPALM_PREAMBLE),
                _ => ("答え：b", "答え：", INSTRUCTION),
            };
            assert!(prompt.contains(answered), "{prompt}");
            assert!(prompt.ends_with(cue), "{prompt}");
            assert_eq!(prompt.matches(preamble).count(), 1, "{prompt}");
        }
    }

    #[test]
    fn shots_never_come_from_the_questions_own_exam_and_are_reproducible() {
        let q = |id: &str, letters: &[char], text_only: bool| crate::Question {
            problem_id: id.to_owned(),
            text: format!("{id}の問題"),
            choices: ["甲", "乙", "丙"].map(str::to_owned).to_vec(),
            gold: crate::Gold::Letters {
                letters: letters.to_vec(),
            },
            points: 1,
            text_only,
            meta: crate::QuestionMeta::default(),
        };
        let pool = [
            q("116A1", &['a'], true),
            q("116A2", &['b'], true),
            q("115A1", &['a'], true),
            q("115A2", &['a', 'b'], true),
            q("115A3", &['c'], false),
            q("114B1", &['b'], true),
            q("114B2", &['c'], true),
        ];
        let question = &crate::job::JobQuestion::of(&pool[0]);
        let pool: Vec<crate::job::ShotExample> = pool
            .iter()
            .filter_map(crate::job::ShotExample::from_question)
            .collect();
        let picked = pick_shots(&pool, question, 5, 7);
        let ids: Vec<&str> = picked.iter().map(|p| p.problem_id.as_str()).collect();
        assert_eq!(
            ids.len(),
            3,
            "{ids:?}: single-answer, text-only, other exams only"
        );
        assert!(ids.iter().all(|id| !id.starts_with("116")), "{ids:?}");
        assert!(
            !ids.contains(&"115A2") && !ids.contains(&"115A3"),
            "{ids:?}"
        );
        let again: Vec<&str> = pick_shots(&pool, question, 5, 7)
            .iter()
            .map(|p| p.problem_id.as_str())
            .collect();
        assert_eq!(ids, again);
        assert_eq!(pick_shots(&pool, question, 1, 7).len(), 1);
        // The part of the pool a job carries gives every question the same examples.
        let questions = vec![question.clone()];
        let carried = crate::job::shot_pool_for(&pool, &questions, 2, 7);
        assert_eq!(carried.len(), 2);
        let from_carried: Vec<&str> = pick_shots(&carried, question, 2, 7)
            .iter()
            .map(|p| p.problem_id.as_str())
            .collect();
        assert_eq!(from_carried, ids[..2]);
    }
}
