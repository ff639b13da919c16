//! Exam questions and their gold answers, as Kokushi holds them after import.

use serde::{Deserialize, Serialize};

/// One exam question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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
    /// Where the question sits in its exam, and what is known about it beyond the answer.
    #[serde(default, skip_serializing_if = "QuestionMeta::is_empty")]
    pub meta: QuestionMeta,
}

/// The two sections of the medical licensing exam, each with its own pass mark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Section {
    /// 必修問題: must reach 80 % of its points.
    Required,
    /// 一般問題 and 臨床実地問題 outside the required section: must reach the year's cut-off.
    General,
}

impl Section {
    pub fn id(self) -> &'static str {
        match self {
            Section::Required => "required",
            Section::General => "general",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        match id {
            "required" | "必修" => Some(Section::Required),
            "general" | "一般" => Some(Section::General),
            _ => None,
        }
    }
}

/// Optional facts about a question: given in the file, or derived from its id where the exam's
/// structure is known (see `igakuqa::derive_structure`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(default)]
pub struct QuestionMeta {
    /// The exam's number, e.g. "116" for the 116th exam.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exam: Option<String>,
    /// The calendar year the exam was held, e.g. 2022.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub year: Option<u16>,
    /// The block (booklet) letter, e.g. "A".
    #[serde(skip_serializing_if = "Option::is_none")]
    pub block: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub section: Option<Section>,
    /// The clinical specialty, free text (e.g. "循環器").
    #[serde(skip_serializing_if = "Option::is_none")]
    pub specialty: Option<String>,
    /// Prohibited choices (禁忌肢): letters whose choice fails a candidate who picks too many.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub prohibited: Vec<char>,
    /// The share of real examinees who answered correctly, 0 to 1.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub examinee_accuracy: Option<f64>,
    /// The share of examinees who chose each choice, in the choices' order (empty when the
    /// file does not say). For a question asking for several letters each share is the
    /// letter's own, so they may sum past 1.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choice_shares: Vec<f64>,
}

impl QuestionMeta {
    pub fn is_empty(&self) -> bool {
        *self == QuestionMeta::default()
    }
}

/// The accepted answer of a question.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(tag = "kind", rename_all = "snake_case", try_from = "TaggedWire")]
pub enum Gold {
    /// Exactly this set of choice letters (sorted, lowercase) is correct.
    Letters { letters: Vec<char> },
    /// An official ruling accepts any one of these letters alone (e.g. 112B30: a or d).
    AnyOf { letters: Vec<char> },
    /// An official ruling counts the question as correct for every examinee (e.g. 116A71).
    Everyone,
    /// A numeric answer written out as text, e.g. "26" or "7.20".
    Numeric { value: String },
    /// No answer was published (the data writes `"NA"`, as DenQA does for questions the
    /// examiners withdrew). Kept so the set is complete; never scored, never used for tuning.
    Unpublished,
}

/// An internally tagged enum of this crate as JSON holds it: `kind` and the fields of the
/// variants. Read through this plain struct instead of serde's tagged-enum machinery, which
/// buffers every value first (and costs the web bundles several KB of code per enum); the JSON
/// is the same both ways.
#[derive(Deserialize)]
pub(crate) struct TaggedWire {
    kind: String,
    #[serde(default)]
    letters: Option<Vec<char>>,
    #[serde(default)]
    value: Option<String>,
}

impl TaggedWire {
    pub(crate) fn kind(&self) -> &str {
        &self.kind
    }

    pub(crate) fn letters(&mut self) -> Result<Vec<char>, String> {
        self.letters
            .take()
            .ok_or_else(|| format!("missing field `letters` for kind {:?}", self.kind))
    }

    pub(crate) fn value(&mut self) -> Result<String, String> {
        self.value
            .take()
            .ok_or_else(|| format!("missing field `value` for kind {:?}", self.kind))
    }
}

impl TryFrom<TaggedWire> for Gold {
    type Error = String;

    fn try_from(mut wire: TaggedWire) -> Result<Self, String> {
        Ok(match wire.kind() {
            "letters" => Gold::Letters {
                letters: wire.letters()?,
            },
            "any_of" => Gold::AnyOf {
                letters: wire.letters()?,
            },
            "everyone" => Gold::Everyone,
            "numeric" => Gold::Numeric {
                value: wire.value()?,
            },
            "unpublished" => Gold::Unpublished,
            other => return Err(format!("unknown gold answer kind {other:?}")),
        })
    }
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
            Gold::Unpublished => "NA".to_owned(),
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

/// How many choices a question asks for, as its text says to an examinee (「2つ選べ」,
/// 「３つ選べ」, 「二つ選べ」); 1 when it does not say.
pub fn asked_count(text: &str) -> usize {
    let Some(at) = text.find("つ選べ") else {
        return 1;
    };
    match text[..at].chars().next_back() {
        Some(c @ '1'..='9') => c as usize - '0' as usize,
        Some(c @ '１'..='９') => c as usize - '１' as usize + 1,
        Some('二') => 2,
        Some('三') => 3,
        Some('四') => 4,
        _ => 1,
    }
}

/// The index of a choice letter ('a' → 0), if it is a lowercase ASCII letter.
pub fn letter_index(letter: char) -> Option<usize> {
    letter
        .is_ascii_lowercase()
        .then(|| usize::from(letter as u8 - b'a'))
}

#[cfg(test)]
mod asked_tests {
    use super::*;

    #[test]
    fn the_number_of_answers_asked_is_read_from_the_question() {
        assert_eq!(asked_count("誤っているのはどれか。2つ選べ。"), 2);
        assert_eq!(asked_count("正しいのはどれか。３つ選べ。"), 3);
        assert_eq!(asked_count("どれか。二つ選べ。"), 2);
        assert_eq!(asked_count("最も考えられるのはどれか。"), 1);
    }
}

#[cfg(test)]
mod wire_tests {
    use super::*;
    use crate::extract::Extracted;

    #[test]
    fn gold_and_extracted_answers_read_back_what_they_write() {
        for gold in [
            Gold::Letters {
                letters: vec!['b', 'd'],
            },
            Gold::AnyOf {
                letters: vec!['a', 'd'],
            },
            Gold::Everyone,
            Gold::Numeric {
                value: "7.20".into(),
            },
            Gold::Unpublished,
        ] {
            let json = serde_json::to_string(&gold).unwrap();
            assert_eq!(serde_json::from_str::<Gold>(&json).unwrap(), gold, "{json}");
        }
        for extracted in [
            Extracted::Letters { letters: vec!['c'] },
            Extracted::Number { value: "26".into() },
            Extracted::Unparsed,
        ] {
            let json = serde_json::to_string(&extracted).unwrap();
            assert_eq!(serde_json::from_str::<Extracted>(&json).unwrap(), extracted);
        }
        // The tag may come last, and fields of other variants are ignored, as before.
        let late: Gold = serde_json::from_str(r#"{"letters": ["a"], "kind": "letters"}"#).unwrap();
        assert_eq!(late, Gold::Letters { letters: vec!['a'] });
        for (bad, says) in [
            (r#"{"kind": "letters"}"#, "letters"),
            (r#"{"kind": "guess"}"#, "guess"),
            (r#"{"letters": ["a"]}"#, "kind"),
        ] {
            let error = serde_json::from_str::<Gold>(bad).unwrap_err().to_string();
            assert!(error.contains(says), "{bad}: {error}");
        }
    }
}
