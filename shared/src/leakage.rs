//! The leakage gate: how much of an exam set a model may have seen while it was tuned.
//!
//! Method (documented in docs/tuning.md): texts are normalised — whitespace removed, full-width
//! ASCII folded to half-width, Latin letters lower-cased — and cut into overlapping character
//! 13-grams ([`NGRAM`]), each kept as a 64-bit hash. An exam question (its stem and choices) is
//! **leaked** when at least [`DEFAULT_MIN_COVERAGE`] of its 13-grams occur in the tuning data;
//! questions sharing any 13-gram at all are counted too, as a looser signal (set phrases such as
//! 「誤っているのはどれか。2つ選べ。」 are shared by unrelated questions, which is why a single
//! shared 13-gram does not count as leakage). Questions shorter than 13 characters are compared
//! whole. The gate refuses an evaluation when the leaked share exceeds a threshold
//! ([`DEFAULT_MAX_LEAKED_SHARE`]) unless the user overrides it with a reason, which the run
//! records.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::Question;

/// The n-gram length, in characters (as in GPT-3's contamination study).
pub const NGRAM: usize = 13;

/// The share of a question's n-grams that must occur in the tuning data for it to count as
/// leaked.
pub const DEFAULT_MIN_COVERAGE: f64 = 0.5;

/// The largest share of leaked questions an evaluation accepts without an override.
pub const DEFAULT_MAX_LEAKED_SHARE: f64 = 0.01;

/// The n-gram hashes of a body of text (the tuning data).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NgramIndex {
    hashes: HashSet<u64>,
}

impl NgramIndex {
    /// The index of `texts`.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let mut hashes = HashSet::new();
        for text in texts {
            hashes.extend(ngram_hashes(text));
        }
        Self { hashes }
    }

    /// How many distinct n-grams it holds.
    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    /// The hashes, sorted, as little-endian bytes (8 a hash): a stable file form.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut sorted: Vec<u64> = self.hashes.iter().copied().collect();
        sorted.sort_unstable();
        sorted.iter().flat_map(|h| h.to_le_bytes()).collect()
    }

    /// Reads [`NgramIndex::to_bytes`]' form; `None` when the length is not a multiple of 8.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        if !bytes.len().is_multiple_of(8) {
            return None;
        }
        let hashes = bytes
            .chunks_exact(8)
            .map(|c| {
                let mut word = [0u8; 8];
                word.copy_from_slice(c);
                u64::from_le_bytes(word)
            })
            .collect();
        Some(Self { hashes })
    }

    /// The share (0 to 1) of `text`'s n-grams found here; 0 for an empty text.
    pub fn coverage(&self, text: &str) -> f64 {
        let grams = ngram_hashes(text);
        if grams.is_empty() {
            return 0.0;
        }
        let found = grams.iter().filter(|h| self.hashes.contains(h)).count();
        #[allow(clippy::cast_precision_loss)]
        let share = found as f64 / grams.len() as f64;
        share
    }
}

/// The words of a question the gate compares: its stem and choices.
pub fn question_text(question: &Question) -> String {
    let mut text = question.text.clone();
    for choice in &question.choices {
        text.push('\n');
        text.push_str(choice);
    }
    text
}

/// What the gate found for one exam set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LeakageReport {
    pub ngram: usize,
    pub min_coverage: f64,
    pub questions: usize,
    /// Questions sharing at least one n-gram with the tuning data.
    pub any_overlap: usize,
    /// Questions with at least `min_coverage` of their n-grams in the tuning data.
    pub leaked: usize,
    /// The leaked questions' ids with their coverage, most covered first (at most 20).
    pub worst: Vec<(String, f64)>,
}

impl LeakageReport {
    /// The share of leaked questions (0 when there are none).
    pub fn leaked_share(&self) -> f64 {
        share(self.leaked, self.questions)
    }

    /// The share of questions with any overlap.
    pub fn any_overlap_share(&self) -> f64 {
        share(self.any_overlap, self.questions)
    }

    /// One line for a person.
    pub fn summary(&self) -> String {
        format!(
            "{} of {} exam questions ({:.1} %) have ≥{:.0} % of their character {}-grams in the \
             tuning data; {} ({:.1} %) share at least one",
            self.leaked,
            self.questions,
            100.0 * self.leaked_share(),
            100.0 * self.min_coverage,
            self.ngram,
            self.any_overlap,
            100.0 * self.any_overlap_share(),
        )
    }
}

fn share(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        return 0.0;
    }
    #[allow(clippy::cast_precision_loss)]
    let s = part as f64 / whole as f64;
    s
}

/// Compares `questions` with the tuning data's `index`.
pub fn measure(index: &NgramIndex, questions: &[Question], min_coverage: f64) -> LeakageReport {
    let mut any_overlap = 0;
    let mut leaked = Vec::new();
    for question in questions {
        let coverage = index.coverage(&question_text(question));
        if coverage > 0.0 {
            any_overlap += 1;
        }
        if coverage >= min_coverage && coverage > 0.0 {
            leaked.push((question.problem_id.clone(), coverage));
        }
    }
    let count = leaked.len();
    leaked.sort_by(|a, b| b.1.total_cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    leaked.truncate(20);
    LeakageReport {
        ngram: NGRAM,
        min_coverage,
        questions: questions.len(),
        any_overlap,
        leaked: count,
        worst: leaked,
    }
}

/// The normalised characters of `text`: no whitespace, full-width ASCII as half-width, Latin
/// letters in lower case.
fn normalise(text: &str) -> Vec<char> {
    text.chars()
        .filter(|c| !c.is_whitespace())
        .map(|c| match u32::from(c) {
            0xFF01..=0xFF5E => char::from_u32(u32::from(c) - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

/// The hashes of `text`'s n-grams (the whole text as one when it is shorter).
fn ngram_hashes(text: &str) -> Vec<u64> {
    let chars = normalise(text);
    if chars.is_empty() {
        return Vec::new();
    }
    let hash = |window: &[char]| {
        let bytes: Vec<u8> = window
            .iter()
            .flat_map(|c| u32::from(*c).to_le_bytes())
            .collect();
        crate::tuning::fnv(0, &bytes)
    };
    if chars.len() < NGRAM {
        return vec![hash(&chars)];
    }
    chars.windows(NGRAM).map(hash).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Gold, QuestionMeta};

    fn question(id: &str, text: &str) -> Question {
        Question {
            problem_id: id.to_owned(),
            text: text.to_owned(),
            choices: vec!["心筋梗塞".to_owned(), "狭心症".to_owned()],
            gold: Gold::Letters { letters: vec!['a'] },
            points: 1,
            text_only: true,
            meta: QuestionMeta::default(),
        }
    }

    #[test]
    fn a_question_in_the_tuning_data_is_leaked_and_a_new_one_is_not() {
        let seen = question(
            "116A1",
            "65歳の男性。胸痛を主訴に来院した。最も考えられるのはどれか。",
        );
        let unseen = question(
            "116A2",
            "新生児の黄疸で光線療法の適応を決めるのに用いるのはどれか。",
        );
        // The tuning data holds the first question, re-spaced and with full-width digits.
        let tuning =
            "６５歳の男性。 胸痛を主訴に来院した。\n最も考えられるのはどれか。\n心筋梗塞\n狭心症";
        let index = NgramIndex::from_texts([tuning]);
        assert!((index.coverage(&question_text(&seen)) - 1.0).abs() < 1e-12);
        let report = measure(&index, &[seen, unseen], DEFAULT_MIN_COVERAGE);
        assert_eq!(report.questions, 2);
        assert_eq!(report.leaked, 1);
        assert_eq!(report.worst[0].0, "116A1");
        assert!((report.leaked_share() - 0.5).abs() < 1e-12);
        assert!(
            report
                .summary()
                .starts_with("1 of 2 exam questions (50.0 %)")
        );
    }

    #[test]
    fn a_shared_set_phrase_overlaps_without_counting_as_leakage() {
        let exam = question(
            "116A3",
            "腎盂腎炎の起炎菌として最も多いのはどれか。誤っているのはどれか。2つ選べ。",
        );
        let index =
            NgramIndex::from_texts(["アスピリンの副作用について誤っているのはどれか。2つ選べ。"]);
        let report = measure(&index, std::slice::from_ref(&exam), DEFAULT_MIN_COVERAGE);
        assert_eq!(report.any_overlap, 1);
        assert_eq!(report.leaked, 0);
    }

    #[test]
    fn the_index_round_trips_through_bytes() {
        let index = NgramIndex::from_texts(["これは十三文字より長い文章の例です。", "短い"]);
        let bytes = index.to_bytes();
        assert_eq!(bytes.len(), index.len() * 8);
        assert_eq!(NgramIndex::from_bytes(&bytes), Some(index));
        assert_eq!(NgramIndex::from_bytes(&[1, 2, 3]), None);
    }
}
