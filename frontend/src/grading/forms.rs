//! The grading forms as typed: the rubric being filled in for one item (the annotator's grade
//! or a reviewer's adjudication) and the new-task form. Checked here before anything is sent,
//! so a mistake is named next to its field; the server checks everything again. Pure, tested on
//! the host.

use kokushi_shared::api::{RunStatus, RunSummary};
use kokushi_shared::grading::{
    CreateGradingTask, Flag, Grade, GradeInput, Selection, Verdict, normalize_letters,
};

use crate::forms::{FieldError, error, optional_number};
use crate::i18n::{self, t, tf};

/// The rubric of one item, as the annotator has filled it in so far.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Draft {
    pub verdict: Option<Verdict>,
    /// For an unparseable answer: the letters the text gives.
    pub letters: String,
    pub rationale: Option<u8>,
    pub flags: Vec<Flag>,
    pub comment: String,
}

impl Draft {
    /// The form filled from the grade on record (empty without one).
    pub fn from_grade(grade: Option<&Grade>) -> Self {
        grade.map_or_else(Self::default, |g| Self {
            verdict: Some(g.verdict),
            letters: g.letters.clone(),
            rationale: g.rationale,
            flags: g.flags.clone(),
            comment: g.comment.clone(),
        })
    }

    pub fn toggle_flag(&mut self, flag: Flag) {
        match self.flags.iter().position(|f| *f == flag) {
            Some(at) => {
                self.flags.remove(at);
            }
            None => {
                self.flags.push(flag);
                self.flags.sort_unstable();
            }
        }
    }

    pub fn has(&self, flag: Flag) -> bool {
        self.flags.contains(&flag)
    }

    /// Sets the rationale score; the same score again clears it (no explanation to rate).
    pub fn toggle_rationale(&mut self, score: u8) {
        self.rationale = (self.rationale != Some(score)).then_some(score);
    }

    /// What to send, made from the grade version the form was filled from (0: none); a
    /// missing verdict or letters that are not choice letters are named instead.
    pub fn input(&self, expected_version: u32) -> Result<GradeInput, FieldError> {
        let verdict = self
            .verdict
            .ok_or_else(|| error("verdict", t(i18n::GRADING_CHOOSE_VERDICT)))?;
        let letters = if verdict == Verdict::Unparseable {
            normalize_letters(&self.letters)
                .map_err(|_| error("letters", t(i18n::GRADING_LETTERS_INVALID)))?
        } else {
            String::new()
        };
        Ok(GradeInput {
            expected_version,
            verdict,
            letters,
            rationale: self.rationale,
            flags: self.flags.clone(),
            comment: self.comment.trim().to_owned(),
        })
    }
}

/// The new-task form, as typed.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskForm {
    pub name: String,
    pub runs: Vec<i64>,
    pub selection: Selection,
    pub sample_size: String,
    pub seed: String,
    pub overlap: String,
    pub annotators: Vec<i64>,
}

impl Default for TaskForm {
    fn default() -> Self {
        Self {
            name: String::new(),
            runs: Vec::new(),
            selection: Selection::All,
            sample_size: String::new(),
            seed: String::new(),
            overlap: "2".to_owned(),
            annotators: Vec::new(),
        }
    }
}

/// `list` with `id` added, or removed when it was there; kept sorted.
pub fn toggle_id(list: &mut Vec<i64>, id: i64) {
    match list.iter().position(|x| *x == id) {
        Some(at) => {
            list.remove(at);
        }
        None => {
            list.push(id);
            list.sort_unstable();
        }
    }
}

impl TaskForm {
    pub fn request(&self) -> Result<CreateGradingTask, Vec<FieldError>> {
        let mut errors = Vec::new();
        let name = self.name.trim();
        if name.is_empty() {
            errors.push(error("name", t(i18n::GRADING_FORM_NAME_NEEDED)));
        }
        if self.runs.is_empty() {
            errors.push(error("runs", t(i18n::GRADING_FORM_RUNS_NEEDED)));
        } else if self.selection == Selection::Disagreements && self.runs.len() != 2 {
            errors.push(error("runs", t(i18n::GRADING_FORM_TWO_RUNS)));
        }
        let sample_size = if self.selection == Selection::Sample {
            let size =
                optional_number("sample_size", &self.sample_size, 1u32, 100_000, &mut errors);
            if size.is_none() && self.sample_size.trim().is_empty() {
                errors.push(error("sample_size", t(i18n::GRADING_FORM_SAMPLE_NEEDED)));
            }
            size
        } else {
            None
        };
        let seed = optional_number("seed", &self.seed, 0u64, u64::MAX, &mut errors);
        let overlap = optional_number("overlap", &self.overlap, 1u32, 100, &mut errors);
        if overlap.is_none() && self.overlap.trim().is_empty() {
            errors.push(error(
                "overlap",
                tf(i18n::FORMS_NUMBER_RANGE, &[("min", &1), ("max", &100)]),
            ));
        }
        if self.annotators.is_empty() {
            errors.push(error("annotators", t(i18n::GRADING_FORM_ANNOTATORS_NEEDED)));
        } else if let Some(k) = overlap.filter(|k| *k as usize > self.annotators.len()) {
            errors.push(error(
                "overlap",
                tf(
                    i18n::GRADING_FORM_OVERLAP_TOO_HIGH,
                    &[("overlap", &k), ("annotators", &self.annotators.len())],
                ),
            ));
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(CreateGradingTask {
            name: name.to_owned(),
            run_ids: self.runs.clone(),
            selection: self.selection,
            sample_size,
            seed,
            overlap: overlap.unwrap_or(1),
            annotators: self.annotators.clone(),
        })
    }
}

/// The runs a task can grade: those that succeeded, newest first.
pub fn gradable_runs(runs: &[RunSummary]) -> Vec<RunSummary> {
    let mut kept: Vec<RunSummary> = runs
        .iter()
        .filter(|r| r.status == RunStatus::Succeeded)
        .cloned()
        .collect();
    kept.sort_by(|a, b| a.exam_set.cmp(&b.exam_set).then(b.id.cmp(&a.id)));
    kept
}

/// Whether run `candidate` may be ticked beside the runs already ticked: a task's runs share
/// one exam set.
pub fn run_allowed(runs: &[RunSummary], ticked: &[i64], candidate: &RunSummary) -> bool {
    ticked.contains(&candidate.id)
        || runs
            .iter()
            .filter(|r| ticked.contains(&r.id))
            .all(|r| r.exam_set == candidate.exam_set)
}

#[cfg(test)]
mod tests {
    use kokushi_shared::metric::Tally;

    use super::*;

    fn field_names(result: Result<CreateGradingTask, Vec<FieldError>>) -> Vec<&'static str> {
        result
            .expect_err("refused")
            .iter()
            .map(|e| e.field)
            .collect()
    }

    fn filled() -> TaskForm {
        TaskForm {
            name: "  Pilot  ".into(),
            runs: vec![3],
            overlap: "2".into(),
            annotators: vec![5, 6],
            ..TaskForm::default()
        }
    }

    #[test]
    fn a_filled_task_form_becomes_the_request() {
        let request = filled().request().expect("valid");
        assert_eq!(request.name, "Pilot");
        assert_eq!(request.run_ids, [3]);
        assert_eq!(request.selection, Selection::All);
        assert_eq!(
            (request.sample_size, request.seed, request.overlap),
            (None, None, 2)
        );
        let sample = TaskForm {
            selection: Selection::Sample,
            sample_size: "50".into(),
            seed: "42".into(),
            ..filled()
        };
        let request = sample.request().expect("valid");
        assert_eq!((request.sample_size, request.seed), (Some(50), Some(42)));
    }

    #[test]
    fn the_task_form_names_each_field_it_refuses() {
        let cases: [(TaskForm, &[&str]); 6] = [
            (TaskForm::default(), &["name", "runs", "annotators"]),
            (
                TaskForm {
                    selection: Selection::Sample,
                    ..filled()
                },
                &["sample_size"],
            ),
            (
                TaskForm {
                    selection: Selection::Disagreements,
                    ..filled()
                },
                &["runs"],
            ),
            (
                TaskForm {
                    overlap: "3".into(),
                    ..filled()
                },
                &["overlap"],
            ),
            (
                TaskForm {
                    overlap: "0".into(),
                    ..filled()
                },
                &["overlap"],
            ),
            (
                TaskForm {
                    seed: "-1".into(),
                    ..filled()
                },
                &["seed"],
            ),
        ];
        for (form, expected) in cases {
            assert_eq!(field_names(form.request()), expected, "{form:?}");
        }
    }

    #[test]
    fn ticking_an_id_twice_unticks_it() {
        let mut ids = vec![];
        toggle_id(&mut ids, 4);
        toggle_id(&mut ids, 2);
        assert_eq!(ids, [2, 4]);
        toggle_id(&mut ids, 4);
        assert_eq!(ids, [2]);
    }

    fn grade(verdict: Verdict) -> Grade {
        Grade {
            version: 3,
            verdict,
            letters: "bd".into(),
            rationale: Some(4),
            flags: vec![Flag::Unsafe],
            comment: "ok".into(),
            by: String::new(),
            at: String::new(),
        }
    }

    #[test]
    fn a_draft_starts_from_the_grade_on_record() {
        assert_eq!(Draft::from_grade(None), Draft::default());
        let draft = Draft::from_grade(Some(&grade(Verdict::Partial)));
        assert_eq!(draft.verdict, Some(Verdict::Partial));
        assert_eq!(draft.rationale, Some(4));
        assert!(draft.has(Flag::Unsafe));
    }

    #[test]
    fn flags_and_rationale_toggle() {
        let mut draft = Draft::default();
        draft.toggle_flag(Flag::Unsafe);
        draft.toggle_flag(Flag::GoldWrong);
        assert_eq!(draft.flags, [Flag::GoldWrong, Flag::Unsafe]);
        draft.toggle_flag(Flag::Unsafe);
        assert_eq!(draft.flags, [Flag::GoldWrong]);
        draft.toggle_rationale(3);
        assert_eq!(draft.rationale, Some(3));
        draft.toggle_rationale(5);
        assert_eq!(draft.rationale, Some(5));
        draft.toggle_rationale(5);
        assert_eq!(draft.rationale, None);
    }

    #[test]
    fn a_draft_needs_a_verdict_and_readable_letters() {
        assert_eq!(
            Draft::default().input(0).expect_err("no verdict").field,
            "verdict"
        );
        let unparseable = Draft {
            verdict: Some(Verdict::Unparseable),
            letters: "D, b".into(),
            comment: " unclear ".into(),
            ..Draft::default()
        };
        let input = unparseable.input(2).expect("valid");
        assert_eq!(input.expected_version, 2);
        assert_eq!(input.letters, "bd");
        assert_eq!(input.comment, "unclear");
        let bad = Draft {
            letters: "b1".into(),
            ..unparseable.clone()
        };
        assert_eq!(bad.input(0).expect_err("not a letter").field, "letters");
        // Letters matter only for an unparseable answer.
        let correct = Draft {
            verdict: Some(Verdict::Correct),
            ..bad
        };
        assert_eq!(correct.input(0).expect("valid").letters, "");
    }

    fn run(id: i64, exam_set: &str, status: RunStatus) -> RunSummary {
        RunSummary {
            id,
            exam_set: exam_set.into(),
            model: "m".into(),
            adapter: None,
            prompt_format: "chatml_ja_v1".into(),
            scoring: Default::default(),
            shots: 0,
            status,
            total: 1,
            tally: Tally::default(),
            accuracy_interval: None,
            years: Vec::new(),
            metrics: None,
            human: None,
            created_at: String::new(),
            error: None,
            project: String::new(),
            published: false,
        }
    }

    #[test]
    fn only_succeeded_runs_of_one_exam_set_go_together() {
        let runs = vec![
            run(1, "b", RunStatus::Succeeded),
            run(2, "a", RunStatus::Succeeded),
            run(3, "a", RunStatus::Running),
            run(4, "a", RunStatus::Succeeded),
        ];
        let ids: Vec<i64> = gradable_runs(&runs).iter().map(|r| r.id).collect();
        assert_eq!(ids, [4, 2, 1]);
        assert!(run_allowed(&runs, &[], &runs[0]));
        assert!(run_allowed(&runs, &[2], &runs[3]));
        assert!(!run_allowed(&runs, &[2], &runs[0]));
        assert!(
            run_allowed(&runs, &[1], &runs[0]),
            "a ticked run can be unticked"
        );
    }
}
