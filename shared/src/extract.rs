//! From a model's free-text reply to the answer it gives: choice letters, or a number.
//!
//! The rules are versioned ([`RULES_VERSION`]) and every parsed answer records the version
//! that produced it, so a score can always say which rules it rests on.

use serde::{Deserialize, Serialize};

use crate::exam::letter_index;

/// The version of the extraction rules below; bump it whenever their behaviour changes.
pub const RULES_VERSION: &str = "letters-v1";

/// What the extraction found in a reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(
    tag = "kind",
    rename_all = "snake_case",
    try_from = "crate::exam::TaggedWire"
)]
pub enum Extracted {
    /// Choice letters, sorted and without repeats.
    Letters { letters: Vec<char> },
    /// A number, for questions that ask for one.
    Number { value: String },
    /// Nothing usable: the parse failed.
    Unparsed,
}

impl TryFrom<crate::exam::TaggedWire> for Extracted {
    type Error = String;

    fn try_from(mut wire: crate::exam::TaggedWire) -> Result<Self, String> {
        Ok(match wire.kind() {
            "letters" => Extracted::Letters {
                letters: wire.letters()?,
            },
            "number" => Extracted::Number {
                value: wire.value()?,
            },
            "unparsed" => Extracted::Unparsed,
            other => return Err(format!("unknown extraction kind {other:?}")),
        })
    }
}

impl Extracted {
    /// The answer as a short display string (`b,d`, `26`, or empty when unparsed).
    pub fn display(&self) -> String {
        match self {
            Extracted::Letters { letters } => crate::exam::join_letters(letters),
            Extracted::Number { value } => value.clone(),
            Extracted::Unparsed => String::new(),
        }
    }

    pub fn is_unparsed(&self) -> bool {
        matches!(self, Extracted::Unparsed)
    }
}

/// Markers after which models write their answer ("答え：b", "Answer: b").
const ANSWER_MARKERS: &[&str] = &["答え", "解答", "正解", "回答", "answer", "答"];

/// Extracts the answer from `reply` for a question with `choices` (empty for numeric answers).
pub fn extract(reply: &str, choices: &[String]) -> Extracted {
    let normalized = normalize(reply);
    if choices.is_empty() {
        return extract_number(&normalized);
    }
    // Prefer what follows an explicit answer marker; otherwise read the whole reply.
    // ASCII-only lowercasing keeps byte offsets valid in `normalized`.
    let lower = normalized.to_ascii_lowercase();
    let region = ANSWER_MARKERS
        .iter()
        .filter_map(|m| lower.find(m).map(|at| &normalized[at + m.len()..]))
        .next()
        .unwrap_or(&normalized);
    let letters = standalone_letters(region, choices.len());
    if !letters.is_empty() {
        return Extracted::Letters { letters };
    }
    // No letter: a reply that quotes exactly one choice's text answers with that choice.
    let quoted: Vec<usize> = choices
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.trim().is_empty() && normalized.contains(c.trim()))
        .map(|(i, _)| i)
        .collect();
    if let [only] = quoted.as_slice() {
        return Extracted::Letters {
            letters: vec![crate::exam::choice_letter(*only)],
        };
    }
    Extracted::Unparsed
}

/// Folds full-width ASCII (ａ, Ｂ, １) to half-width so one set of rules reads both.
fn normalize(text: &str) -> String {
    text.chars()
        .map(|c| match c {
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            '\u{3000}' => ' ',
            _ => c,
        })
        .collect()
}

/// Letters a..(a + n - 1) that stand alone: not part of a longer Latin word ("b", "(b)",
/// "b,d", "bとd"), taken from the first line that has any.
fn standalone_letters(text: &str, choice_count: usize) -> Vec<char> {
    for line in text.lines() {
        let chars: Vec<char> = line.chars().collect();
        let mut letters = Vec::new();
        for (i, &c) in chars.iter().enumerate() {
            let lower = c.to_ascii_lowercase();
            let in_range = letter_index(lower).is_some_and(|idx| idx < choice_count);
            if !c.is_ascii_alphabetic() || !in_range {
                continue;
            }
            let before = i.checked_sub(1).map(|j| chars[j]);
            let after = chars.get(i + 1).copied();
            let alone = |n: Option<char>| n.is_none_or(|n| !n.is_ascii_alphanumeric());
            if alone(before) && alone(after) {
                letters.push(lower);
            }
        }
        if !letters.is_empty() {
            letters.sort_unstable();
            letters.dedup();
            return letters;
        }
    }
    Vec::new()
}

fn extract_number(text: &str) -> Extracted {
    let start = text.find(|c: char| c.is_ascii_digit());
    let Some(start) = start else {
        return Extracted::Unparsed;
    };
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(rest.len());
    let value = rest[..end].trim_end_matches('.').to_owned();
    Extracted::Number { value }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn choices(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("選択肢{i}")).collect()
    }

    fn check(reply: &str, expected: &[char]) {
        let got = extract(reply, &choices(5));
        assert_eq!(
            got,
            Extracted::Letters {
                letters: expected.to_vec()
            },
            "reply {reply:?}"
        );
    }

    #[test]
    fn letters_are_read_in_the_forms_models_write_them() {
        check("b", &['b']);
        check("B", &['b']);
        check("ｂ", &['b']);
        check("(b)", &['b']);
        check("b,d", &['b', 'd']);
        check("d, b", &['b', 'd']);
        check("b と d", &['b', 'd']);
        check("答え：b、d", &['b', 'd']);
        check("Answer: c", &['c']);
        check("The answer is (e).", &['e']);
    }

    #[test]
    fn letters_inside_words_or_out_of_range_are_not_answers() {
        assert_eq!(extract("about", &choices(5)), Extracted::Unparsed);
        assert_eq!(extract("f", &choices(5)), Extracted::Unparsed);
        assert_eq!(extract("", &choices(5)), Extracted::Unparsed);
    }

    #[test]
    fn a_quoted_choice_text_selects_that_choice() {
        let cs = vec!["夜間高血圧".to_owned(), "減量".to_owned()];
        assert_eq!(
            extract("減量を推奨します。", &cs),
            Extracted::Letters { letters: vec!['b'] }
        );
    }

    #[test]
    fn numbers_are_read_for_numeric_questions() {
        assert_eq!(
            extract("答えは２６Torrです", &[]),
            Extracted::Number { value: "26".into() }
        );
        assert_eq!(
            extract("7.20.", &[]),
            Extracted::Number {
                value: "7.20".into()
            }
        );
        assert_eq!(extract("不明", &[]), Extracted::Unparsed);
    }

    #[test]
    fn a_reply_after_an_opened_parenthesis_reads_its_letters() {
        // medpalm_ja_v1 ends the prompt with "**答え：**(": the reply starts after it.
        assert_eq!(
            extract("b)", &choices(5)),
            Extracted::Letters { letters: vec!['b'] }
        );
        assert_eq!(
            extract("b), (d)\n**問題", &choices(5)),
            Extracted::Letters {
                letters: vec!['b', 'd']
            }
        );
    }
}
