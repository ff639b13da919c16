//! Exam questions and their gold answers, as Kokushi holds them after import.

use serde::{Deserialize, Serialize};

/// One exam question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Question {
    /// The exam's own identifier, e.g. `116A13` (exam 116, block A, question 13).
    pub problem_id: String,
    /// The question stem.
    pub text: String,
    /// Choice texts, lettered a, b, c, ... in order; empty for numeric-answer questions.
    pub choices: Vec<String>,
    pub gold: Gold,
    /// Points the question is worth; 0 means excluded from scoring by the examiners.
    pub points: u32,
    /// False where the printed question has an image that the data set does not include.
    pub text_only: bool,
}

/// The accepted answer of a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Gold {
    /// Exactly this set of choice letters (sorted, lowercase) is correct.
    Letters { letters: Vec<char> },
    /// An official ruling accepts any one of these letters alone (e.g. 112B30: a or d).
    AnyOf { letters: Vec<char> },
    /// An official ruling counts the question as correct for every examinee (e.g. 116A71).
    Everyone,
    /// A numeric answer written out as text, e.g. "26" or "7.20".
    Numeric { value: String },
}

impl Gold {
    /// The gold answer as the exam writes it: `b,d`, `a or d`, `26`, or `*` for everyone.
    pub fn display(&self) -> String {
        match self {
            Gold::Letters { letters } => join_letters(letters),
            Gold::AnyOf { letters } => letters
                .iter()
                .map(char::to_string)
                .collect::<Vec<_>>()
                .join(" or "),
            Gold::Everyone => "*".to_owned(),
            Gold::Numeric { value } => value.clone(),
        }
    }

    /// How many letters a complete answer names (1 for rulings and numeric answers).
    pub fn answer_count(&self) -> usize {
        match self {
            Gold::Letters { letters } => letters.len().max(1),
            _ => 1,
        }
    }
}

/// Joins letters as `a,b,c`.
pub fn join_letters(letters: &[char]) -> String {
    letters
        .iter()
        .map(char::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// The letter of the choice at `index` (0 → 'a').
pub fn choice_letter(index: usize) -> char {
    // Exams have at most a handful of choices; anything past 'z' is not a real exam.
    char::from(b'a' + u8::try_from(index.min(25)).unwrap_or(25))
}

/// The index of a choice letter ('a' → 0), if it is a lowercase ASCII letter.
pub fn letter_index(letter: char) -> Option<usize> {
    letter
        .is_ascii_lowercase()
        .then(|| usize::from(letter as u8 - b'a'))
}
