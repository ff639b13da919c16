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
    fn a_tally_counts_points_and_failures() {
        let mut t = Tally::default();
        t.add(true, false, 3);
        t.add(false, true, 1);
        assert_eq!(t.accuracy(), Some(0.5));
        assert_eq!((t.points, t.points_possible, t.parse_failures), (3, 4, 1));
        assert_eq!(Tally::default().accuracy(), None);
    }
}
