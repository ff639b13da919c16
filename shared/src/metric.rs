//! Metrics over parsed answers. This first one is the IgakuQA letter-set match: a question is
//! answered correctly when the set of letters given equals the gold set (all or nothing for
//! multi-answer questions), with the examiners' rulings applied.

use serde::{Deserialize, Serialize};

use crate::exam::Gold;
use crate::extract::Extracted;

/// Whether `answer` earns the question under the exam's rules.
pub fn is_correct(gold: &Gold, answer: &Extracted) -> bool {
    match (gold, answer) {
        (Gold::Everyone, _) => true,
        (Gold::Letters { letters }, Extracted::Letters { letters: given }) => {
            sorted(given) == sorted(letters)
        }
        (Gold::AnyOf { letters }, Extracted::Letters { letters: given }) => {
            given.len() == 1 && letters.contains(&given[0])
        }
        (Gold::Numeric { value }, Extracted::Number { value: given }) => {
            match (value.parse::<f64>(), given.parse::<f64>()) {
                (Ok(a), Ok(b)) => a == b,
                _ => value == given,
            }
        }
        _ => false,
    }
}

/// Kokushi's lenient letter match, the one runs are scored by: the extracted answer earns the
/// question ([`is_correct`]), or the reply as written passes IgakuQA's own match
/// ([`strict_letter_correct`]), so lenient never scores below strict.
pub fn lenient_correct(gold: &Gold, reply: &str, extracted: &Extracted) -> bool {
    is_correct(gold, extracted) || strict_letter_correct(gold, reply)
}

/// The seed papers' accuracy: the `k` choices whose texts are most similar to the reply
/// (Gestalt, both directions averaged; ties go to the earlier choice) are the answer, with `k`
/// the number of gold letters; correct only when that set equals the gold set. `None` for a
/// question without choices, where the method does not apply.
pub fn similarity_correct(gold: &Gold, reply: &str, choices: &[String]) -> Option<bool> {
    if choices.is_empty() {
        return None;
    }
    let scores: Vec<f64> = choices
        .iter()
        .map(|choice| crate::gestalt::gestalt_mean(reply, choice))
        .collect();
    Some(top_k_correct(gold, &scores))
}

/// The letters of the `k` highest scores, sorted; among equal scores the earlier choice wins.
pub fn top_k_letters(scores: &[f64], k: usize) -> Vec<char> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    // A stable sort keeps the earlier choice first among equals.
    order.sort_by(|&x, &y| scores[y].total_cmp(&scores[x]));
    let mut picked: Vec<char> = order
        .into_iter()
        .take(k)
        .map(crate::exam::choice_letter)
        .collect();
    picked.sort_unstable();
    picked
}

/// Whether the top-`k` choices by `scores` (one per choice) earn the question, `k` being the
/// number of gold letters.
pub fn top_k_correct(gold: &Gold, scores: &[f64]) -> bool {
    let picked = top_k_letters(scores, gold.answer_count());
    is_correct(gold, &Extracted::Letters { letters: picked })
}

/// A string similarity in 0..=1.
pub type Similarity = fn(&str, &str) -> f64;

/// The secondary string similarities (from `strsim`), by name.
pub const SECONDARY_SIMILARITIES: [(&str, Similarity); 3] = [
    ("levenshtein", strsim::normalized_levenshtein),
    ("jaro_winkler", strsim::jaro_winkler),
    ("sorensen_dice", strsim::sorensen_dice),
];

/// The documented normalisation for exact match: full-width ASCII folded to half-width,
/// lowercase, Japanese commas (、，) read as ",", whitespace removed, and one trailing full
/// stop (. or 。) dropped. `" B、d。"` becomes `"b,d"`.
pub fn normalize_answer(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| match c {
            '、' | '，' => ',',
            '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        })
        .filter(|c| !c.is_whitespace())
        .flat_map(char::to_lowercase)
        .collect();
    if out.ends_with('.') || out.ends_with('。') {
        out.pop();
    }
    out
}

/// Exact match: the whole reply, normalised ([`normalize_answer`]), equals the gold answer as
/// the exam writes it (`b,d`; "a or d" or one of its letters; the number). A question ruled
/// correct for everyone matches any reply.
pub fn exact_match(gold: &Gold, reply: &str) -> bool {
    let reply = normalize_answer(reply);
    match gold {
        Gold::Everyone => true,
        Gold::AnyOf { letters } => {
            reply == normalize_answer(&gold.display())
                || letters.iter().any(|l| reply == l.to_string())
        }
        Gold::Letters { letters } => reply == crate::exam::join_letters(letters),
        Gold::Numeric { value } => reply == normalize_answer(value),
        Gold::Unpublished => false,
    }
}

/// IgakuQA's own letter match (`scripts/evaluate_main.py`), reproduced exactly: the reply
/// split on "," with nothing trimmed or lowercased, sorted, must equal the sorted gold list as
/// the data file writes it (so "b, d" and "B" are wrong). An "any of" ruling (112B30) accepts
/// exactly one of its letters, or the gold string as written ("a or d"); a question ruled
/// correct for everyone (116A71) is correct whatever the reply.
pub fn strict_letter_correct(gold: &Gold, reply: &str) -> bool {
    let mut given: Vec<&str> = reply.split(',').collect();
    given.sort_unstable();
    match gold {
        Gold::Everyone => true,
        Gold::AnyOf { letters } => {
            let written = letters
                .iter()
                .map(char::to_string)
                .collect::<Vec<_>>()
                .join(" or ");
            given.len() == 1
                && (given[0] == written
                    || letters.iter().any(|l| {
                        let mut buf = [0u8; 4];
                        given[0] == l.encode_utf8(&mut buf)
                    }))
        }
        Gold::Letters { letters } => {
            let mut gold: Vec<String> = letters.iter().map(char::to_string).collect();
            gold.sort_unstable();
            given.len() == gold.len() && given.iter().zip(&gold).all(|(g, w)| *g == w.as_str())
        }
        Gold::Numeric { value } => given.len() == 1 && given[0] == value,
        Gold::Unpublished => false,
    }
}

fn sorted(letters: &[char]) -> Vec<char> {
    let mut v = letters.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Counts that summarise a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Tally {
    pub answered: u32,
    pub correct: u32,
    pub parse_failures: u32,
    pub points: u32,
    pub points_possible: u32,
}

impl Tally {
    /// Adds one scored answer worth `points`.
    pub fn add(&mut self, correct: bool, unparsed: bool, points: u32) {
        self.answered += 1;
        self.correct += u32::from(correct);
        self.parse_failures += u32::from(unparsed);
        self.points_possible += points;
        if correct {
            self.points += points;
        }
    }

    /// Share of answered questions that are correct; `None` before any answer.
    pub fn accuracy(&self) -> Option<f64> {
        (self.answered > 0).then(|| f64::from(self.correct) / f64::from(self.answered))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn letters(s: &[char]) -> Extracted {
        Extracted::Letters {
            letters: s.to_vec(),
        }
    }

    #[test]
    fn letter_sets_match_all_or_nothing() {
        let gold = Gold::Letters {
            letters: vec!['b', 'd'],
        };
        let cases: &[(Extracted, bool)] = &[
            (letters(&['b', 'd']), true),
            (letters(&['d', 'b']), true),
            (letters(&['b']), false),
            (letters(&['b', 'd', 'e']), false),
            (Extracted::Unparsed, false),
        ];
        for (answer, expected) in cases {
            assert_eq!(is_correct(&gold, answer), *expected, "{answer:?}");
        }
    }

    #[test]
    fn rulings_are_applied() {
        let any_of = Gold::AnyOf {
            letters: vec!['a', 'd'],
        };
        assert!(is_correct(&any_of, &letters(&['a'])));
        assert!(is_correct(&any_of, &letters(&['d'])));
        assert!(!is_correct(&any_of, &letters(&['a', 'd'])));
        assert!(is_correct(&Gold::Everyone, &Extracted::Unparsed));
    }

    #[test]
    fn numbers_compare_by_value() {
        let gold = Gold::Numeric {
            value: "7.20".into(),
        };
        assert!(is_correct(
            &gold,
            &Extracted::Number {
                value: "7.2".into()
            }
        ));
        assert!(!is_correct(
            &gold,
            &Extracted::Number {
                value: "7.3".into()
            }
        ));
    }

    #[test]
    fn the_most_similar_choices_are_the_seed_methods_answer() {
        let choices: Vec<String> = [
            "夜間高血圧",
            "減量を推奨する",
            "α遮断薬",
            "早朝高血圧",
            "CPAP",
        ]
        .map(String::from)
        .to_vec();
        let one = Gold::Letters { letters: vec!['c'] };
        let two = Gold::Letters {
            letters: vec!['b', 'c'],
        };
        let cases: &[(&Gold, &str, Option<bool>)] = &[
            (&one, "α遮断薬が第一選択です", Some(true)),
            (&one, "減量を推奨する", Some(false)),
            (&two, "α遮断薬と、減量を推奨する", Some(true)),
            (&two, "α遮断薬", Some(false)),
            (&Gold::Everyone, "", Some(true)),
        ];
        for (gold, reply, expected) in cases {
            assert_eq!(
                similarity_correct(gold, reply, &choices),
                *expected,
                "{reply}"
            );
        }
        let numeric = Gold::Numeric { value: "26".into() };
        assert_eq!(similarity_correct(&numeric, "26", &[]), None);
    }

    #[test]
    fn a_tally_counts_points_and_failures() {
        let mut t = Tally::default();
        t.add(true, false, 3);
        t.add(false, true, 1);
        assert_eq!(t.accuracy(), Some(0.5));
        assert_eq!((t.points, t.points_possible, t.parse_failures), (3, 4, 1));
        assert_eq!(Tally::default().accuracy(), None);
    }
}
