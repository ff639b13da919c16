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

/// The seed papers' accuracy: the `k` choices whose texts are most similar to the reply
/// (Gestalt, both directions averaged; ties go to the earlier choice) are the answer, with `k`
/// the number of gold letters; correct only when that set equals the gold set. `None` for a
/// question without choices, where the method does not apply.
pub fn similarity_correct(gold: &Gold, reply: &str, choices: &[String]) -> Option<bool> {
    if choices.is_empty() {
        return None;
    }
    let mut scored: Vec<(usize, f64)> = choices
        .iter()
        .enumerate()
        .map(|(i, choice)| (i, crate::gestalt::gestalt_mean(reply, choice)))
        .collect();
    // A stable sort keeps the earlier choice first among equals.
    scored.sort_by(|x, y| y.1.total_cmp(&x.1));
    let picked: Vec<char> = scored
        .iter()
        .take(gold.answer_count())
        .map(|(i, _)| crate::exam::choice_letter(*i))
        .collect();
    Some(is_correct(gold, &Extracted::Letters { letters: picked }))
}

fn sorted(letters: &[char]) -> Vec<char> {
    let mut v = letters.to_vec();
    v.sort_unstable();
    v.dedup();
    v
}

/// Counts that summarise a run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
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
