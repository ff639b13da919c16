//! The IgakuQA JSON-lines format: one question a line, as published by the IgakuQA authors
//! (Kasai et al. 2023) and as Kokushi accepts uploads.
//!
//! Parsing is all-or-nothing: every problem in a file is reported (file, line, field, value),
//! and a caller writes nothing unless the whole import parsed.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::exam::{Gold, Question, letter_index};

/// The credit that must accompany IgakuQA questions wherever they are shown.
pub const IGAKUQA_CREDIT: &str = "Questions: Ministry of Health, Labour and Welfare of Japan \
(Public Data License 1.0). Formatted by Kasai, Kasai, Sakaguchi, Yamada and Radev, \
\"Evaluating GPT-4 and ChatGPT on Japanese Medical Licensing Examinations\", arXiv:2303.18027.";

/// One problem found in an uploaded file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FormatError {
    pub file: String,
    /// 1-based line number.
    pub line: usize,
    /// The JSON field at fault, or `line` when the line itself is not a JSON object.
    pub field: String,
    pub message: String,
}

impl fmt::Display for FormatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: field `{}`: {}",
            self.file, self.line, self.field, self.message
        )
    }
}

/// The raw shape of a line; every field optional so that a missing one is reported by name.
#[derive(Deserialize)]
struct RawLine {
    problem_id: Option<serde_json::Value>,
    problem_text: Option<serde_json::Value>,
    choices: Option<serde_json::Value>,
    answer: Option<serde_json::Value>,
    points: Option<serde_json::Value>,
    text_only: Option<serde_json::Value>,
}

/// Rulings published by the examiners after the exam, kept as data rather than as special cases
/// in the scorer.
const EVERYONE_CORRECT: &[&str] = &["116A71"];

/// Accumulates the questions of one import (one or many files) and every problem found.
#[derive(Debug, Default)]
pub struct Importer {
    questions: Vec<Question>,
    errors: Vec<FormatError>,
    /// problem_id → (file, line) of its first occurrence.
    seen: HashMap<String, (String, usize)>,
}

impl Importer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Parses one JSON-lines file's content. Blank lines are skipped.
    pub fn add_file(&mut self, file: &str, content: &str) {
        let content = content.strip_prefix('\u{feff}').unwrap_or(content);
        for (index, line) in content.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line_no = index + 1;
            match parse_line(file, line_no, line) {
                Ok(question) => {
                    if let Some((first_file, first_line)) = self.seen.get(&question.problem_id) {
                        self.errors.push(FormatError {
                            file: file.to_owned(),
                            line: line_no,
                            field: "problem_id".to_owned(),
                            message: format!(
                                "duplicate problem_id \"{}\" (first seen at {first_file}:{first_line})",
                                question.problem_id
                            ),
                        });
                    } else {
                        self.seen
                            .insert(question.problem_id.clone(), (file.to_owned(), line_no));
                        self.questions.push(question);
                    }
                }
                Err(mut errors) => self.errors.append(&mut errors),
            }
        }
    }

    /// The questions, or every problem found in any file.
    pub fn finish(self) -> Result<Vec<Question>, Vec<FormatError>> {
        if self.errors.is_empty() {
            if self.questions.is_empty() {
                return Err(vec![FormatError {
                    file: "(upload)".to_owned(),
                    line: 0,
                    field: "line".to_owned(),
                    message: "no questions found".to_owned(),
                }]);
            }
            Ok(self.questions)
        } else {
            Err(self.errors)
        }
    }
}

fn parse_line(file: &str, line: usize, text: &str) -> Result<Question, Vec<FormatError>> {
    let err = |field: &str, message: String| FormatError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    let raw: RawLine = serde_json::from_str(text)
        .map_err(|e| vec![err("line", format!("not a JSON object: {e}"))])?;
    let mut errors = Vec::new();

    let problem_id = match raw.problem_id {
        Some(serde_json::Value::String(s)) if is_valid_problem_id(&s) => s,
        Some(v) => {
            errors.push(err(
                "problem_id",
                format!("expected an id like \"116A13\", got {v}"),
            ));
            String::new()
        }
        None => {
            errors.push(err("problem_id", "missing".to_owned()));
            String::new()
        }
    };
    let text = match raw.problem_text {
        Some(serde_json::Value::String(s)) if !s.trim().is_empty() => s,
        Some(v) => {
            errors.push(err(
                "problem_text",
                format!("expected non-empty text, got {v}"),
            ));
            String::new()
        }
        None => {
            errors.push(err("problem_text", "missing".to_owned()));
            String::new()
        }
    };
    let choices = match raw.choices {
        Some(serde_json::Value::Array(items)) => {
            let mut choices = Vec::with_capacity(items.len());
            for (i, item) in items.into_iter().enumerate() {
                match item {
                    serde_json::Value::String(s) => choices.push(s),
                    v => errors.push(err("choices", format!("choice {} is not text: {v}", i + 1))),
                }
            }
            if choices.len() > 26 {
                errors.push(err(
                    "choices",
                    format!("{} choices; at most 26", choices.len()),
                ));
            }
            choices
        }
        Some(v) => {
            errors.push(err("choices", format!("expected a list of texts, got {v}")));
            Vec::new()
        }
        None => {
            errors.push(err("choices", "missing".to_owned()));
            Vec::new()
        }
    };
    let points = match raw.points {
        Some(serde_json::Value::String(s)) => s.trim().parse::<u32>().ok().filter(|p| *p <= 100),
        Some(serde_json::Value::Number(n)) => n.as_u64().and_then(|p| u32::try_from(p).ok()),
        _ => None,
    }
    .unwrap_or_else(|| {
        errors.push(err(
            "points",
            "expected a whole number of points such as \"1\"".to_owned(),
        ));
        0
    });
    let text_only = match raw.text_only {
        Some(serde_json::Value::Bool(b)) => b,
        None => true,
        Some(v) => {
            errors.push(err("text_only", format!("expected true or false, got {v}")));
            true
        }
    };
    let gold = match raw.answer {
        Some(value) => parse_answer(&value, choices.len()).map_err(|m| err("answer", m)),
        None => Err(err("answer", "missing".to_owned())),
    };
    let gold = match gold {
        Ok(g) => g,
        Err(e) => {
            errors.push(e);
            Gold::Everyone
        }
    };
    if !errors.is_empty() {
        return Err(errors);
    }
    let gold = if EVERYONE_CORRECT.contains(&problem_id.as_str()) {
        Gold::Everyone
    } else {
        gold
    };
    Ok(Question {
        problem_id,
        text,
        choices,
        gold,
        points,
        text_only,
    })
}

/// `116A13`: exam number, one block letter, question number.
fn is_valid_problem_id(id: &str) -> bool {
    let digits_end = id.find(|c: char| !c.is_ascii_digit()).unwrap_or(id.len());
    let rest = &id[digits_end..];
    let mut rest_chars = rest.chars();
    digits_end > 0
        && rest_chars.next().is_some_and(|c| c.is_ascii_uppercase())
        && !rest_chars.as_str().is_empty()
        && rest_chars.all(|c| c.is_ascii_digit())
}

fn parse_answer(value: &serde_json::Value, choice_count: usize) -> Result<Gold, String> {
    let items = match value {
        serde_json::Value::Array(items) if !items.is_empty() => items,
        v => return Err(format!("expected a non-empty list, got {v}")),
    };
    let texts: Vec<&str> = items
        .iter()
        .map(|v| v.as_str().ok_or_else(|| format!("answer {v} is not text")))
        .collect::<Result<_, _>>()?;
    if choice_count == 0 {
        return match texts.as_slice() {
            [one] if one.trim().parse::<f64>().is_ok() => Ok(Gold::Numeric {
                value: one.trim().to_owned(),
            }),
            _ => Err(format!(
                "a question without choices needs one numeric answer, got {value}"
            )),
        };
    }
    let check = |s: &str| -> Result<char, String> {
        let mut chars = s.trim().chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if letter_index(c).is_some_and(|i| i < choice_count) => Ok(c),
            _ => Err(format!(
                "unknown answer letter \"{s}\": choices are a..{}",
                crate::exam::choice_letter(choice_count - 1)
            )),
        }
    };
    if let [one] = texts.as_slice()
        && one.contains(" or ")
    {
        let mut letters = one
            .split(" or ")
            .map(check)
            .collect::<Result<Vec<_>, _>>()?;
        letters.sort_unstable();
        letters.dedup();
        return Ok(Gold::AnyOf { letters });
    }
    let mut letters = texts
        .iter()
        .map(|s| check(s))
        .collect::<Result<Vec<_>, _>>()?;
    letters.sort_unstable();
    let before = letters.len();
    letters.dedup();
    if letters.len() != before {
        return Err(format!("answer {value} repeats a letter"));
    }
    Ok(Gold::Letters { letters })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(lines: &str) -> Result<Vec<Question>, Vec<FormatError>> {
        let mut importer = Importer::new();
        importer.add_file("116-A.jsonl", lines);
        importer.finish()
    }

    const GOOD: &str = r#"{"problem_id": "116A1", "problem_text": "正しくないのはどれか。", "choices": ["甲", "乙", "丙", "丁", "戊"], "text_only": true, "answer": ["c"], "points": "1"}"#;

    #[test]
    fn a_well_formed_line_becomes_a_question() {
        let questions = parse(GOOD).expect("parses");
        assert_eq!(questions.len(), 1);
        assert_eq!(questions[0].problem_id, "116A1");
        assert_eq!(questions[0].gold, Gold::Letters { letters: vec!['c'] });
        assert_eq!(questions[0].points, 1);
    }

    #[test]
    fn rulings_are_data_not_special_cases() {
        let any_of = r#"{"problem_id": "112B30", "problem_text": "x", "choices": ["1","2","3","4","5"], "answer": ["a or d"], "points": "1", "text_only": true}"#;
        let everyone = r#"{"problem_id": "116A71", "problem_text": "x", "choices": ["1","2","3","4","5"], "answer": ["b"], "points": "3", "text_only": true}"#;
        let qs = parse(&format!("{any_of}\n{everyone}\n")).expect("parses");
        assert_eq!(
            qs[0].gold,
            Gold::AnyOf {
                letters: vec!['a', 'd']
            }
        );
        assert_eq!(qs[1].gold, Gold::Everyone);
    }

    #[test]
    fn numeric_answers_need_no_choices() {
        let line = r#"{"problem_id": "112C66", "problem_text": "求めよ", "choices": [], "answer": ["26"], "points": "1", "text_only": true}"#;
        let qs = parse(line).expect("parses");
        assert_eq!(qs[0].gold, Gold::Numeric { value: "26".into() });
    }

    #[test]
    fn bad_lines_are_reported_with_file_line_and_field() {
        let cases: &[(&str, &str, &str)] = &[
            ("{not json", "line", "not a JSON object"),
            (
                r#"{"problem_id": "116A2", "problem_text": "x", "choices": ["1","2"], "answer": ["f"], "points": "1"}"#,
                "answer",
                "unknown answer letter \"f\"",
            ),
            (
                r#"{"problem_id": "116A2", "problem_text": "x", "choices": ["1","2"], "answer": ["a"]}"#,
                "points",
                "whole number",
            ),
            (
                r#"{"problem_id": "A2", "problem_text": "x", "choices": ["1","2"], "answer": ["a"], "points": "1"}"#,
                "problem_id",
                "expected an id",
            ),
        ];
        for (line, field, message) in cases {
            let errors = parse(&format!("{GOOD}\n{line}\n")).expect_err(line);
            assert_eq!(errors.len(), 1, "{line}: {errors:?}");
            assert_eq!(errors[0].file, "116-A.jsonl");
            assert_eq!(errors[0].line, 2, "{line}");
            assert_eq!(errors[0].field, *field, "{line}");
            assert!(errors[0].message.contains(message), "{line}: {}", errors[0]);
        }
    }

    #[test]
    fn a_duplicate_problem_id_is_refused_naming_both_places() {
        let mut importer = Importer::new();
        importer.add_file("116-A.jsonl", GOOD);
        importer.add_file("116-B.jsonl", &format!("\n{GOOD}"));
        let errors = importer.finish().expect_err("duplicate");
        assert_eq!(errors.len(), 1);
        assert_eq!(
            (errors[0].file.as_str(), errors[0].line),
            ("116-B.jsonl", 2)
        );
        assert!(errors[0].message.contains("116-A.jsonl:1"), "{}", errors[0]);
    }

    #[test]
    fn an_empty_upload_is_refused() {
        assert!(parse("\n\n").is_err());
    }
}
