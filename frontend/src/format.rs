//! How numbers and answers are written on the page: percentages, counts, latencies, shortened
//! question text and the outcome of a question.
//!
//! Pure functions only, tested on the host; components call them and never format by hand.

use kokushi_shared::api::{QuestionResult, RunStatus};
use kokushi_shared::extract::Extracted;
use kokushi_shared::metric::Tally;

use crate::i18n::{self, t, tf};

/// Shown where there is no value yet.
pub const NONE: &str = "—";

/// A ratio in 0..=1 as a percentage with one decimal: `0.15` → `15.0%`.
/// Why a queued run or tuning waits, in the page's language.
pub fn waiting(w: &kokushi_shared::api::Waiting) -> String {
    let needs = bytes(w.needs);
    match w.largest_worker {
        Some(largest) => crate::i18n::tf(
            crate::i18n::RUN_WAITING,
            &[("needs", &needs), ("largest", &bytes(largest))],
        ),
        None => crate::i18n::tf(crate::i18n::RUN_WAITING_NO_WORKER, &[("needs", &needs)]),
    }
}

/// A size in bytes for people: `23.4 GiB`, `512 MiB`.
pub fn bytes(n: u64) -> String {
    const MIB: u64 = 1 << 20;
    const GIB: u64 = 1 << 30;
    if n >= GIB {
        // Tenths of a GiB, rounded.
        let tenths = (u128::from(n) * 10 + u128::from(GIB) / 2) / u128::from(GIB);
        format!("{}.{} GiB", tenths / 10, tenths % 10)
    } else {
        format!("{} MiB", (n + MIB / 2) / MIB)
    }
}

pub fn percent(ratio: f64) -> String {
    format!("{:.1}%", ratio * 100.0)
}

/// How a run chose its answers, in a word or two.
pub fn scoring(scoring: kokushi_shared::job::Scoring) -> &'static str {
    t(match scoring {
        kokushi_shared::job::Scoring::Generation => i18n::FORMAT_SCORING_GENERATION,
        kokushi_shared::job::Scoring::Loglik => i18n::FORMAT_SCORING_LOGLIK,
    })
}

/// `count` of `total` as a percentage; [`NONE`] when there is nothing to count.
pub fn share(count: u32, total: u32) -> String {
    if total == 0 {
        NONE.to_owned()
    } else {
        percent(f64::from(count) / f64::from(total))
    }
}

/// Accuracy over the answered questions with its counts, e.g. `15.0% (3/20)`; [`NONE`] before
/// the first answer.
pub fn accuracy(tally: &Tally) -> String {
    match tally.accuracy() {
        Some(ratio) => format!("{} ({}/{})", percent(ratio), tally.correct, tally.answered),
        None => NONE.to_owned(),
    }
}

/// A run's accuracy after human grading with how many answers humans decided, e.g.
/// `72.5% (12 graded)`; [`NONE`] while nobody has graded it.
pub fn human(human: Option<&kokushi_shared::grading::HumanAdjusted>) -> String {
    match human.and_then(|h| h.accuracy().map(|a| (a, h.resolved))) {
        Some((accuracy, graded)) => tf(
            i18n::LEADERBOARD_HUMAN_VALUE,
            &[("accuracy", &percent(accuracy)), ("graded", &graded)],
        ),
        None => NONE.to_owned(),
    }
}

/// Points earned out of the points of the answered questions, e.g. `12/20`.
pub fn points(tally: &Tally) -> String {
    format!("{}/{}", tally.points, tally.points_possible)
}

/// Questions answered out of the questions in the run, e.g. `3/20`.
pub fn progress(answered: u32, total: u32) -> String {
    format!("{answered}/{total}")
}

/// A model's answer time: milliseconds below one second, else seconds with one decimal.
pub fn latency(ms: u64) -> String {
    if ms < 1_000 {
        format!("{ms} ms")
    } else {
        // Integer tenths, rounded half up, so no float formatting is needed.
        let tenths = ms.saturating_add(50) / 100;
        format!("{}.{} s", tenths / 10, tenths % 10)
    }
}

/// The parsed answer as shown in the table; an answer the rules could not read says so.
pub fn parsed_answer(extracted: &Extracted) -> String {
    if extracted.is_unparsed() {
        t(i18n::FORMAT_PARSE_FAILED).to_owned()
    } else {
        extracted.display()
    }
}

/// A run's state as the page shows it; the API's name (`succeeded`) in English.
pub fn status(status: RunStatus) -> &'static str {
    t(match status {
        RunStatus::Queued => i18n::FORMAT_STATUS_QUEUED,
        RunStatus::Running => i18n::FORMAT_STATUS_RUNNING,
        RunStatus::Succeeded => i18n::FORMAT_STATUS_SUCCEEDED,
        RunStatus::Failed => i18n::FORMAT_STATUS_FAILED,
        RunStatus::Cancelled => i18n::FORMAT_STATUS_CANCELLED,
    })
}

/// A section of the exam (`required`, `general`, as the API names it) as the page shows it;
/// an id it does not know is shown as it is.
pub fn section(id: &str) -> &str {
    match id {
        "required" => t(i18n::FORMAT_SECTION_REQUIRED),
        "general" => t(i18n::FORMAT_SECTION_GENERAL),
        other => other,
    }
}

/// `text` cut to at most `max_chars` characters with an ellipsis, or `None` when it already
/// fits. Counts characters, not bytes, so Japanese text is never cut inside a character.
pub fn shorten(text: &str, max_chars: usize) -> Option<String> {
    let text = text.trim();
    if text.chars().count() <= max_chars {
        return None;
    }
    let kept: String = text.chars().take(max_chars.saturating_sub(1)).collect();
    Some(format!("{}…", kept.trim_end()))
}

/// Where a question of a run stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Waiting,
    Correct,
    Wrong,
}

impl Outcome {
    pub fn of(question: &QuestionResult) -> Self {
        match &question.answer {
            None => Outcome::Waiting,
            Some(answer) if answer.correct => Outcome::Correct,
            Some(_) => Outcome::Wrong,
        }
    }

    /// The CSS class of the mark.
    pub fn class(self) -> &'static str {
        match self {
            Outcome::Waiting => "waiting",
            Outcome::Correct => "correct",
            Outcome::Wrong => "wrong",
        }
    }

    /// The mark itself.
    pub fn mark(self) -> &'static str {
        match self {
            Outcome::Waiting => t(i18n::FORMAT_WAITING),
            Outcome::Correct => "✓",
            Outcome::Wrong => "✗",
        }
    }
}

#[cfg(test)]
mod tests {
    use kokushi_shared::Gold;
    use kokushi_shared::api::ScoredAnswer;

    use super::*;

    #[test]
    fn sizes_read_as_people_say_them() {
        assert_eq!(super::bytes(0), "0 MiB");
        assert_eq!(super::bytes(512 << 20), "512 MiB");
        assert_eq!(super::bytes(24 << 30), "24.0 GiB");
        assert_eq!(super::bytes((23 << 30) + (430 << 20)), "23.4 GiB");
        assert_eq!(super::bytes(u64::MAX), "17179869184.0 GiB");
    }

    #[test]
    fn human_accuracy_names_how_many_answers_humans_decided() {
        use kokushi_shared::grading::HumanAdjusted;
        let human = HumanAdjusted {
            answered: 40,
            correct: 29,
            resolved: 12,
            changed: 2,
        };
        assert_eq!(super::human(Some(&human)), "72.5% (12 graded)");
        assert_eq!(super::human(None), "—");
        assert_eq!(super::human(Some(&HumanAdjusted::default())), "—");
    }

    fn tally(answered: u32, correct: u32) -> Tally {
        Tally {
            answered,
            correct,
            parse_failures: 0,
            points: correct * 3,
            points_possible: answered * 3,
        }
    }

    #[test]
    fn accuracy_shows_the_percentage_with_its_counts() {
        let cases = [
            (tally(20, 3), "15.0% (3/20)"),
            (tally(3, 2), "66.7% (2/3)"),
            (tally(8, 1), "12.5% (1/8)"),
            (tally(4, 4), "100.0% (4/4)"),
            (tally(5, 0), "0.0% (0/5)"),
            (tally(0, 0), "—"),
        ];
        for (t, expected) in cases {
            assert_eq!(accuracy(&t), expected, "{t:?}");
        }
    }

    #[test]
    fn points_and_progress_are_fractions() {
        assert_eq!(points(&tally(20, 3)), "9/60");
        assert_eq!(progress(3, 20), "3/20");
    }

    #[test]
    fn latency_switches_to_seconds_at_one_second() {
        let cases = [
            (0, "0 ms"),
            (850, "850 ms"),
            (999, "999 ms"),
            (1_000, "1.0 s"),
            (12_340, "12.3 s"),
            (12_350, "12.4 s"),
            (1_960, "2.0 s"),
        ];
        for (ms, expected) in cases {
            assert_eq!(latency(ms), expected, "{ms}");
        }
    }

    #[test]
    fn an_unparsed_answer_reads_parse_failed() {
        assert_eq!(parsed_answer(&Extracted::Unparsed), "parse failed");
        assert_eq!(
            parsed_answer(&Extracted::Letters {
                letters: vec!['b', 'd']
            }),
            "b,d"
        );
        assert_eq!(
            parsed_answer(&Extracted::Number { value: "26".into() }),
            "26"
        );
    }

    #[test]
    fn states_and_sections_read_as_the_api_names_them_in_english() {
        for status in [
            RunStatus::Queued,
            RunStatus::Running,
            RunStatus::Succeeded,
            RunStatus::Failed,
            RunStatus::Cancelled,
        ] {
            assert_eq!(super::status(status), status.as_str());
        }
        assert_eq!(section("required"), "required");
        assert_eq!(section("general"), "general");
        assert_eq!(section("clinical"), "clinical");
    }

    #[test]
    fn shortening_counts_characters_and_leaves_short_text_alone() {
        assert_eq!(shorten("短い問題文", 10), None);
        assert_eq!(
            shorten("六十歳の男性。三日前からの発熱を主訴に来院した。", 8),
            Some("六十歳の男性。…".to_owned())
        );
        assert_eq!(shorten("  padded  ", 6), None);
        assert_eq!(shorten("abcdefgh", 4), Some("abc…".to_owned()));
    }

    #[test]
    fn a_question_is_waiting_until_answered_then_correct_or_wrong() {
        let mut question = QuestionResult {
            problem_id: "116A1".into(),
            text: "問題".into(),
            choices: vec!["甲".into(), "乙".into()],
            gold: Gold::Letters { letters: vec!['a'] },
            specialty: None,
            points: 1,
            answer: None,
        };
        assert_eq!(Outcome::of(&question), Outcome::Waiting);
        let answer = |correct| ScoredAnswer {
            raw_output: "a".into(),
            extracted: Extracted::Letters { letters: vec!['a'] },
            correct,
            latency_ms: 10,
            choice_logprobs: None,
        };
        question.answer = Some(answer(true));
        assert_eq!(Outcome::of(&question).class(), "correct");
        question.answer = Some(answer(false));
        assert_eq!(Outcome::of(&question).mark(), "✗");
    }
}
