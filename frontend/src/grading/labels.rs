//! How the grading pages write what the API sends: verdicts, flags, selections and item
//! states in the interface's language, κ with its interval, progress. Pure, tested on the host.

use kokushi_shared::agreement::KappaEstimate;
use kokushi_shared::grading::{Flag, ItemState, Selection, Verdict};

use crate::format::{self, NONE};
use crate::i18n::{self, t};

pub fn verdict(v: Verdict) -> &'static str {
    t(match v {
        Verdict::Correct => i18n::GRADING_VERDICT_CORRECT,
        Verdict::Partial => i18n::GRADING_VERDICT_PARTIAL,
        Verdict::Incorrect => i18n::GRADING_VERDICT_INCORRECT,
        Verdict::Unparseable => i18n::GRADING_VERDICT_UNPARSEABLE,
    })
}

pub fn flag(f: Flag) -> &'static str {
    t(match f {
        Flag::GoldWrong => i18n::GRADING_FLAG_GOLD_WRONG,
        Flag::Ambiguous => i18n::GRADING_FLAG_AMBIGUOUS,
        Flag::Unsafe => i18n::GRADING_FLAG_UNSAFE,
    })
}

/// The key that toggles a flag.
pub fn flag_key(f: Flag) -> &'static str {
    match f {
        Flag::GoldWrong => "f",
        Flag::Ambiguous => "a",
        Flag::Unsafe => "u",
    }
}

pub fn selection(s: Selection) -> &'static str {
    t(match s {
        Selection::All => i18n::GRADING_SELECTION_ALL,
        Selection::ParseFailures => i18n::GRADING_SELECTION_PARSE_FAILURES,
        Selection::Wrong => i18n::GRADING_SELECTION_WRONG,
        Selection::Sample => i18n::GRADING_SELECTION_SAMPLE,
        Selection::Disagreements => i18n::GRADING_SELECTION_DISAGREEMENTS,
    })
}

/// The state's id as the API writes it (`disputed`), for `data-state`.
pub fn state_id(s: ItemState) -> &'static str {
    match s {
        ItemState::Pending => "pending",
        ItemState::Agreed => "agreed",
        ItemState::Disputed => "disputed",
        ItemState::Adjudicated => "adjudicated",
    }
}

pub fn state(s: ItemState) -> &'static str {
    t(match s {
        ItemState::Pending => i18n::GRADING_STATE_PENDING,
        ItemState::Agreed => i18n::GRADING_STATE_AGREED,
        ItemState::Disputed => i18n::GRADING_STATE_DISPUTED,
        ItemState::Adjudicated => i18n::GRADING_STATE_ADJUDICATED,
    })
}

/// Where an item sorts in a reviewer's table: what needs a decision first.
pub fn state_rank(s: ItemState) -> u8 {
    match s {
        ItemState::Disputed => 0,
        ItemState::Pending => 1,
        ItemState::Agreed => 2,
        ItemState::Adjudicated => 3,
    }
}

/// κ with two decimals (`0.62`), or [`NONE`] when undefined.
pub fn kappa(estimate: Option<&KappaEstimate>) -> String {
    estimate.map_or_else(|| NONE.to_owned(), |k| format!("{:.2}", k.kappa))
}

/// κ's 95% interval, `[0.41, 0.80]`; empty when there is none.
pub fn kappa_interval(estimate: Option<&KappaEstimate>) -> String {
    estimate
        .and_then(|k| k.interval)
        .map(|(lo, hi)| format!("[{lo:.2}, {hi:.2}]"))
        .unwrap_or_default()
}

/// An agreement share (0..=1) as a percentage, or [`NONE`].
pub fn percent(share: Option<f64>) -> String {
    share.map_or_else(|| NONE.to_owned(), format::percent)
}

/// Graded of assigned as a share for a progress bar (0 when nothing is assigned).
pub fn progress_share(graded: u32, assigned: u32) -> f64 {
    if assigned == 0 {
        0.0
    } else {
        f64::from(graded.min(assigned)) / f64::from(assigned)
    }
}

/// The automatic result of an item: ✓, ✗, or ✗ with a note when the parser read nothing.
pub fn automatic(correct: bool, parse_failed: bool) -> String {
    match (correct, parse_failed) {
        (true, _) => "✓".to_owned(),
        (false, false) => "✗".to_owned(),
        (false, true) => format!("✗ ({})", t(i18n::FORMAT_PARSE_FAILED)),
    }
}

/// The letters of a gold answer as the API writes it (`b,d`, `B/D`): lower case, in order.
pub fn gold_letters(gold: &str) -> Vec<char> {
    gold.chars()
        .filter(char::is_ascii_alphabetic)
        .map(|c| c.to_ascii_lowercase())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kappa_has_two_decimals_and_a_dash_when_undefined() {
        let k = KappaEstimate {
            kappa: 0.6249,
            se: Some(0.1),
            interval: Some((0.405, 0.8)),
        };
        assert_eq!(kappa(Some(&k)), "0.62");
        assert_eq!(kappa_interval(Some(&k)), "[0.41, 0.80]");
        assert_eq!(kappa(None), "—");
        let no_ci = KappaEstimate {
            interval: None,
            ..k
        };
        assert_eq!(kappa_interval(Some(&no_ci)), "");
        let negative = KappaEstimate {
            kappa: -0.125,
            ..no_ci
        };
        assert_eq!(kappa(Some(&negative)), "-0.12");
    }

    #[test]
    fn disputed_items_come_first() {
        let mut states = [
            ItemState::Agreed,
            ItemState::Adjudicated,
            ItemState::Disputed,
            ItemState::Pending,
        ];
        states.sort_by_key(|s| state_rank(*s));
        assert_eq!(states[0], ItemState::Disputed);
        assert_eq!(state_id(states[0]), "disputed");
    }

    #[test]
    fn progress_and_percentages() {
        assert_eq!(progress_share(3, 4), 0.75);
        assert_eq!(progress_share(0, 0), 0.0);
        assert_eq!(progress_share(5, 4), 1.0);
        assert_eq!(percent(Some(0.85)), "85.0%");
        assert_eq!(percent(None), "—");
        assert_eq!(automatic(true, false), "✓");
        assert_eq!(automatic(false, false), "✗");
    }

    #[test]
    fn gold_letters_are_read_from_any_separator() {
        assert_eq!(gold_letters("b,d"), ['b', 'd']);
        assert_eq!(gold_letters("B / E"), ['b', 'e']);
        assert!(gold_letters("").is_empty());
    }

    #[test]
    fn every_label_has_a_text() {
        for v in Verdict::ALL {
            assert!(!verdict(v).is_empty());
        }
        for f in Flag::ALL {
            assert!(!flag(f).is_empty() && !flag_key(f).is_empty());
        }
        for s in Selection::ALL {
            assert!(!selection(s).is_empty());
        }
    }
}
