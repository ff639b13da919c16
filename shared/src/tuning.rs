//! Instruction-tuning data: examples built from exam questions (IgakuQA-format sets such as
//! DenQA, JMMLU) and from generic Alpaca-style JSON lines, rendered with the same prompt formats
//! evaluation uses, and split into training and validation sets reproducibly.
//!
//! An [`Example`] is a prompt and the response the model should learn to write after it; the
//! loss covers only the response. For a question the response is its gold answer as evaluation
//! reads it (`b`, `a,c`, `26`) closed the way the format closes an answer
//! ([`PromptFormat::answer_end`]); for an instruction it is the `output` field. Each example also
//! keeps its `content` — the question and choices, or instruction, input and output, without the
//! format's boilerplate — which is what the leakage gate (`crate::leakage`) compares with an exam.

pub mod plan;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::igakuqa::FormatError;
use crate::prompt::PromptFormat;
use crate::{Gold, Question};

/// One training example.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Example {
    /// Where it came from: a problem id, or `file:line` for an instruction.
    pub id: String,
    /// Everything the model reads before its response.
    pub prompt: String,
    /// What the model should write: the only tokens the loss counts.
    pub response: String,
    /// The words of the example without the prompt format's own text (for the leakage gate).
    pub content: String,
}

/// The example for one question, or `None` for a question that cannot teach an answer: one
/// with an image the data lacks, no published answer, or a ruling that accepts everyone.
pub fn question_example(question: &Question, format: PromptFormat) -> Option<Example> {
    if !question.text_only {
        return None;
    }
    let answer = match &question.gold {
        Gold::Letters { letters } if !letters.is_empty() => crate::exam::join_letters(letters),
        // A ruling that accepts any one of several letters: the first is a correct answer.
        Gold::AnyOf { letters } => letters.first()?.to_string(),
        Gold::Numeric { value } => value.clone(),
        Gold::Letters { .. } | Gold::Everyone | Gold::Unpublished => return None,
    };
    Some(Example {
        id: question.problem_id.clone(),
        prompt: format.render(&question.text, &question.choices),
        response: format!("{answer}{}", format.answer_end()),
        content: crate::leakage::question_text(question),
    })
}

/// The examples of `questions` that can teach an answer (see [`question_example`]).
pub fn question_examples(questions: &[Question], format: PromptFormat) -> Vec<Example> {
    questions
        .iter()
        .filter_map(|q| question_example(q, format))
        .collect()
}

/// Parses Alpaca-style JSON lines — `{"instruction": …, "input": …, "output": …}` with `input`
/// optional — into examples, or every fault found (file, line, field). Blank lines are skipped.
pub fn instruction_examples(
    file: &str,
    content: &str,
    format: PromptFormat,
) -> Result<Vec<Example>, Vec<FormatError>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let mut examples = Vec::new();
    let mut errors = Vec::new();
    let error = |line: usize, field: &str, message: String| FormatError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    for (index, line) in content.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let fields: serde_json::Map<String, Value> = match serde_json::from_str(line) {
            Ok(fields) => fields,
            Err(e) => {
                errors.push(error(line_no, "line", format!("not a JSON object: {e}")));
                continue;
            }
        };
        for name in fields.keys() {
            if !["instruction", "input", "output"].contains(&name.as_str()) {
                errors.push(error(
                    line_no,
                    name,
                    format!("unknown field {name:?}; known fields: instruction, input, output"),
                ));
            }
        }
        let mut text = |name: &str, required: bool| -> String {
            match fields.get(name) {
                Some(Value::String(s)) if !required || !s.trim().is_empty() => s.clone(),
                None if !required => String::new(),
                Some(other) => {
                    errors.push(error(
                        line_no,
                        name,
                        format!("expected non-empty text, got {other}"),
                    ));
                    String::new()
                }
                None => {
                    errors.push(error(line_no, name, "missing".to_owned()));
                    String::new()
                }
            }
        };
        let instruction = text("instruction", true);
        let input = text("input", false);
        let output = text("output", true);
        let mut content = instruction.clone();
        for part in [&input, &output] {
            if !part.is_empty() {
                content.push('\n');
                content.push_str(part);
            }
        }
        examples.push(Example {
            id: format!("{file}:{line_no}"),
            prompt: format.render_instruction(&instruction, &input),
            response: format!("{output}{}", format.answer_end()),
            content,
        });
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    if examples.is_empty() {
        return Err(vec![error(0, "line", "no examples found".to_owned())]);
    }
    Ok(examples)
}

/// Splits `examples` into training and validation sets: a share `validation` (0 to 1) of them,
/// at least one when there are two or more and the share is positive, chosen by a hash of `seed`
/// and each example's id (so adding examples does not reshuffle the others). Both keep the input
/// order.
pub fn split(examples: Vec<Example>, validation: f64, seed: u64) -> (Vec<Example>, Vec<Example>) {
    if validation <= 0.0 || examples.len() < 2 {
        return (examples, Vec::new());
    }
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let wanted = ((examples.len() as f64 * validation.min(1.0)).round() as usize)
        .clamp(1, examples.len() - 1);
    let mut ranked: Vec<(u64, usize)> = examples
        .iter()
        .enumerate()
        .map(|(i, e)| (mix(fnv(0, e.id.as_bytes()) ^ mix(seed)), i))
        .collect();
    ranked.sort_unstable();
    let mut chosen = vec![false; examples.len()];
    for &(_, i) in ranked.iter().take(wanted) {
        chosen[i] = true;
    }
    let (mut train, mut held) = (Vec::new(), Vec::new());
    for (example, is_held) in examples.into_iter().zip(chosen) {
        if is_held {
            held.push(example);
        } else {
            train.push(example);
        }
    }
    (train, held)
}

/// SplitMix64's output function: the generator's next value from its state `z` (every input
/// bit reaches every output bit). Successive values come from states a golden step apart.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over a seed and bytes.
pub(crate) fn fnv(seed: u64, bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for &byte in bytes {
        h ^= u64::from(byte);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::QuestionMeta;

    fn question(id: &str, gold: Gold, text_only: bool) -> Question {
        Question {
            problem_id: id.to_owned(),
            text: "心筋梗塞のマーカーはどれか。".to_owned(),
            choices: vec!["CK".to_owned(), "PT".to_owned()],
            gold,
            points: 1,
            text_only,
            meta: QuestionMeta::default(),
        }
    }

    #[test]
    fn a_question_teaches_its_gold_letters_after_the_evaluation_prompt() {
        let q = question(
            "116A1",
            Gold::Letters {
                letters: vec!['a', 'b'],
            },
            true,
        );
        let e = question_example(&q, PromptFormat::AlpacaJa).expect("an example");
        assert_eq!(e.prompt, PromptFormat::AlpacaJa.render(&q.text, &q.choices));
        assert_eq!(e.response, "a,b\n\n");
        assert_eq!(e.content, "心筋梗塞のマーカーはどれか。\nCK\nPT");
        let e = question_example(&q, PromptFormat::MedpalmJa).expect("an example");
        assert_eq!(e.response, "a,b)\n\n");
        let e = question_example(&q, PromptFormat::ChatmlJa).expect("an example");
        assert_eq!(e.response, "a,b<|im_end|>");
    }

    #[test]
    fn questions_that_cannot_teach_an_answer_are_left_out() {
        let letters = Gold::Letters { letters: vec!['a'] };
        let questions = [
            question("116A1", letters.clone(), false),
            question("116A2", Gold::Unpublished, true),
            question("116A3", Gold::Everyone, true),
            question("116A4", letters, true),
            question(
                "116A5",
                Gold::AnyOf {
                    letters: vec!['b', 'a'],
                },
                true,
            ),
        ];
        let examples = question_examples(&questions, PromptFormat::PlainJa);
        let ids: Vec<&str> = examples.iter().map(|e| e.id.as_str()).collect();
        assert_eq!(ids, ["116A4", "116A5"]);
        assert_eq!(examples[1].response, "b\n\n");
    }

    #[test]
    fn instruction_lines_become_alpaca_examples_and_faults_name_line_and_field() {
        let text = "{\"instruction\": \"要約せよ\", \"input\": \"本文\", \"output\": \"要約\"}\n\n\
                    {\"instruction\": \"答えよ\", \"output\": \"はい\"}\n";
        let examples =
            instruction_examples("data.jsonl", text, PromptFormat::AlpacaJa).expect("valid");
        assert_eq!(examples.len(), 2);
        assert_eq!(examples[0].id, "data.jsonl:1");
        assert!(examples[0].prompt.contains("### 指示:\n要約せよ"));
        assert!(examples[0].prompt.contains("### 入力:\n本文"));
        assert!(examples[0].prompt.ends_with("### 応答:\n"));
        assert_eq!(examples[0].response, "要約\n\n");
        assert!(!examples[1].prompt.contains("### 入力"));
        assert_eq!(examples[1].id, "data.jsonl:3");

        let bad = "{\"instruction\": \"x\"}\nnot json\n{\"instruction\": \"x\", \"output\": 3, \"extra\": 1}\n";
        let errors =
            instruction_examples("bad.jsonl", bad, PromptFormat::AlpacaJa).expect_err("faults");
        let found: Vec<(usize, &str)> = errors.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            found,
            [(1, "output"), (2, "line"), (3, "extra"), (3, "output")]
        );
        assert!(instruction_examples("empty.jsonl", "\n", PromptFormat::AlpacaJa).is_err());
    }

    #[test]
    fn the_split_is_reproducible_and_keeps_each_example_once() {
        let examples: Vec<Example> = (0..100)
            .map(|i| Example {
                id: format!("q{i}"),
                prompt: String::new(),
                response: String::new(),
                content: String::new(),
            })
            .collect();
        let (train, held) = split(examples.clone(), 0.1, 7);
        assert_eq!((train.len(), held.len()), (90, 10));
        assert_eq!(
            split(examples.clone(), 0.1, 7),
            (train.clone(), held.clone())
        );
        assert_ne!(split(examples.clone(), 0.1, 8).1, held);
        let mut all: Vec<String> = train.iter().chain(&held).map(|e| e.id.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 100);
        assert_eq!(split(examples.clone(), 0.0, 7).1.len(), 0);
        assert_eq!(split(examples[..2].to_vec(), 0.01, 7).1.len(), 1);
    }
}
