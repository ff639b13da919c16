//! Human grading: the rubric an annotator fills in, the grading tasks a researcher creates
//! from runs, the blind view of an item, adjudication, agreement figures, and how the human
//! grades of an item resolve into one human verdict.
//!
//! Grades are never changed in place: each save is a new *version* of an annotator's grade on
//! an assignment, and the client names the version it saw (`expected_version`) so that two
//! saves made from the same state cannot both win (optimistic locking). Adjudications are
//! versioned the same way, per item.

use serde::{Deserialize, Serialize};

use crate::agreement::KappaEstimate;

/// The annotator's verdict on one model answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = GradeVerdict))]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    Correct,
    /// Some of what the question asks is right (e.g. one of two letters): no points on the
    /// exam, but worth telling apart from a plain miss.
    Partial,
    Incorrect,
    /// The automatic parser could not read it; the annotator says which letters the text
    /// gives (`letters`, possibly none).
    Unparseable,
}

impl Verdict {
    /// In rubric order: the number key that picks each is its index + 1.
    pub const ALL: [Verdict; 4] = [
        Verdict::Correct,
        Verdict::Partial,
        Verdict::Incorrect,
        Verdict::Unparseable,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Verdict::Correct => "correct",
            Verdict::Partial => "partial",
            Verdict::Incorrect => "incorrect",
            Verdict::Unparseable => "unparseable",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|v| v.id() == id)
    }

    /// The category index used by the agreement statistics.
    pub fn index(self) -> usize {
        self as usize
    }
}

/// Flags an annotator may raise on an item.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Flag {
    /// The published answer looks wrong: listed for the exam set's owner.
    GoldWrong,
    /// The question can be read more than one way.
    Ambiguous,
    /// The answer gives unsafe advice or picks a prohibited choice (禁忌肢).
    Unsafe,
}

impl Flag {
    pub const ALL: [Flag; 3] = [Flag::GoldWrong, Flag::Ambiguous, Flag::Unsafe];

    pub fn id(self) -> &'static str {
        match self {
            Flag::GoldWrong => "gold_wrong",
            Flag::Ambiguous => "ambiguous",
            Flag::Unsafe => "unsafe",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|f| f.id() == id)
    }
}

/// Which answers of the chosen runs become items of a grading task.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Selection {
    /// Every answer.
    All,
    /// Answers the automatic parser could not read.
    ParseFailures,
    /// Answers scored wrong (parse failures included).
    Wrong,
    /// `sample_size` answers drawn at random with the task's seed.
    Sample,
    /// Exactly two runs: the questions they answered differently, both runs' answers.
    Disagreements,
}

impl Selection {
    pub const ALL: [Selection; 5] = [
        Selection::All,
        Selection::ParseFailures,
        Selection::Wrong,
        Selection::Sample,
        Selection::Disagreements,
    ];

    pub fn id(self) -> &'static str {
        match self {
            Selection::All => "all",
            Selection::ParseFailures => "parse_failures",
            Selection::Wrong => "wrong",
            Selection::Sample => "sample",
            Selection::Disagreements => "disagreements",
        }
    }

    pub fn from_id(id: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.id() == id)
    }
}

/// `POST /api/grading/tasks`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateGradingTask {
    pub name: String,
    /// One run, or several runs of the same exam set.
    pub run_ids: Vec<i64>,
    pub selection: Selection,
    /// For [`Selection::Sample`]: how many answers.
    #[serde(default)]
    pub sample_size: Option<u32>,
    /// Seeds the sample, the distribution and each annotator's order; random when absent.
    #[serde(default)]
    pub seed: Option<u64>,
    /// How many distinct annotators grade each item.
    pub overlap: u32,
    /// The annotators' account ids.
    pub annotators: Vec<i64>,
}

/// What an annotator (or a reviewer) submits: the rubric.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GradeInput {
    /// The version of the grade the form was filled from: 0 for a first grade. A save from
    /// a stale version is refused (409) rather than overwriting a newer grade.
    pub expected_version: u32,
    pub verdict: Verdict,
    /// For [`Verdict::Unparseable`]: the letters the text gives, e.g. `"bd"`; ignored
    /// otherwise.
    #[serde(default)]
    pub letters: String,
    /// How well the output explains its answer, 1–5, when it explains itself at all.
    #[serde(default)]
    pub rationale: Option<u8>,
    #[serde(default)]
    pub flags: Vec<Flag>,
    #[serde(default)]
    pub comment: String,
}

/// One saved version of an annotator's grade (or, with `flags` empty and `rationale`
/// `None`, of an adjudication).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grade {
    pub version: u32,
    pub verdict: Verdict,
    pub letters: String,
    pub rationale: Option<u8>,
    pub flags: Vec<Flag>,
    pub comment: String,
    /// Who saved it (an annotator's own view leaves it empty).
    pub by: String,
    pub at: String,
}

/// An account that may be asked to grade (`GET /api/grading/annotators`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Grader {
    pub id: i64,
    pub username: String,
}

/// How far one annotator is in a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AnnotatorProgress {
    pub user_id: i64,
    pub username: String,
    pub assigned: u32,
    pub graded: u32,
}

/// A grading task as its researchers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GradingTaskSummary {
    pub id: i64,
    pub name: String,
    pub exam_set: String,
    pub run_ids: Vec<i64>,
    pub selection: Selection,
    pub sample_size: Option<u32>,
    pub seed: u64,
    pub overlap: u32,
    pub items: u32,
    /// Items every assigned annotator has graded.
    pub complete: u32,
    /// Complete items whose grades disagree and that no reviewer has resolved yet.
    pub disputed: u32,
    pub adjudicated: u32,
    pub annotators: Vec<AnnotatorProgress>,
    pub created_by: String,
    pub created_at: String,
}

/// Where an item stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ItemState {
    /// Some assigned annotator has not graded it yet.
    Pending,
    /// Every annotator graded it, alike.
    Agreed,
    /// Every annotator graded it, not alike, and no reviewer has resolved it.
    Disputed,
    /// A reviewer's verdict decides it.
    Adjudicated,
}

/// One item of a task, for its researchers: the automatic result, every current grade and the
/// adjudication.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ItemStatus {
    pub item_id: i64,
    pub run_id: i64,
    pub problem_id: String,
    pub automatic_correct: bool,
    pub parse_failed: bool,
    pub state: ItemState,
    /// The human verdict once agreed or adjudicated.
    pub human: Option<Verdict>,
    /// Whether the human verdict makes the answer right (unparseable: the letters read
    /// against the gold answer).
    pub human_correct: Option<bool>,
    /// Current grade of each annotator who has graded it.
    pub grades: Vec<Grade>,
    pub adjudication: Option<Grade>,
}

/// Agreement between two annotators on the items both graded.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PairAgreement {
    pub a: String,
    pub b: String,
    pub items: u32,
    pub percent: Option<f64>,
    /// Cohen's κ with its 95% interval; `None` when undefined (e.g. one category only).
    pub cohen: Option<KappaEstimate>,
}

/// Agreement on a task's verdicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Agreement {
    /// Items graded by all their annotators: the ones the task-wide figures use.
    pub items: u32,
    pub raters_per_item: u32,
    /// Mean pairwise agreement over those items.
    pub percent: Option<f64>,
    /// Fleiss' κ over those items with a 95% bootstrap interval.
    pub fleiss: Option<KappaEstimate>,
    pub pairs: Vec<PairAgreement>,
}

/// `GET /api/grading/tasks/{id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GradingTaskDetail {
    pub task: GradingTaskSummary,
    pub agreement: Agreement,
    pub items: Vec<ItemStatus>,
}

/// `GET /api/grading/items/{id}`: everything a reviewer needs to adjudicate.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GradingItemDetail {
    pub task_id: i64,
    pub status: ItemStatus,
    pub model: String,
    pub question: String,
    pub choices: Vec<String>,
    pub gold: String,
    pub output: String,
    pub parsed: String,
    /// Every version of every grade and adjudication, oldest first.
    pub history: Vec<AuditEntry>,
    /// The exam data's credit, shown with the question.
    #[serde(default)]
    pub credit: String,
}

/// A task as its annotator sees it: no runs, no models.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyTask {
    pub id: i64,
    pub name: String,
    pub assigned: u32,
    pub graded: u32,
    /// Where to resume: the first of the annotator's items not graded yet.
    pub resume: Option<i64>,
}

/// One item in an annotator's order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyItem {
    /// The assignment's random handle: it says nothing of the run or of the order items
    /// were made in.
    pub assignment_id: i64,
    pub position: u32,
    pub graded: bool,
}

/// `GET /api/grading/mine/{task_id}`: an annotator's items in their own order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MyQueue {
    pub task: MyTask,
    pub items: Vec<MyItem>,
}

/// `GET /api/grading/assignments/{id}`: one item, blind — the question, the choices, the
/// gold answer and the model's output, never the model, adapter or run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct BlindItem {
    /// The assignment's random handle (as in [`MyItem`]); `previous` and `next` are handles too.
    pub assignment_id: i64,
    pub task_id: i64,
    /// 1-based place in the annotator's order, and how many they have.
    pub position: u32,
    pub of: u32,
    pub problem_id: String,
    pub question: String,
    pub choices: Vec<String>,
    /// The published answer, e.g. `b,d`.
    pub gold: String,
    /// How many letters the question asks for.
    pub asked: u32,
    pub output: String,
    /// The letters the automatic parser read, e.g. `b`; empty when it read none.
    pub parsed: String,
    /// The annotator's own current grade.
    pub grade: Option<Grade>,
    pub previous: Option<i64>,
    pub next: Option<i64>,
    /// The exam data's credit, shown with the question.
    #[serde(default)]
    pub credit: String,
}

/// One line of the append-only audit log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AuditEntry {
    pub id: i64,
    pub at: String,
    pub actor: String,
    /// `task_created`, `graded`, `regraded`, `adjudicated`.
    pub action: String,
    pub task_id: i64,
    pub item_id: Option<i64>,
    /// JSON of the grade before and after (`null` for none).
    pub before: Option<String>,
    pub after: Option<String>,
}

/// An item flagged "gold looks wrong", for the exam set's owner.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GoldFlag {
    pub exam_set: String,
    pub problem_id: String,
    pub gold: String,
    /// How many annotators' current grades raise the flag.
    pub flagged_by: u32,
    pub comments: Vec<String>,
}

/// Human grades of one run, beside its automatic score.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HumanAdjusted {
    /// The answered questions: the denominator, as for the automatic accuracy.
    pub answered: u32,
    /// Correct after human grades replace the automatic result where a human verdict exists.
    pub correct: u32,
    /// Answers with a human verdict (agreed or adjudicated).
    pub resolved: u32,
    /// Of those, where the human verdict differs from the automatic result.
    pub changed: u32,
}

impl HumanAdjusted {
    pub fn accuracy(&self) -> Option<f64> {
        (self.answered > 0).then(|| f64::from(self.correct) / f64::from(self.answered))
    }
}

/// The one decision a set of grades makes: the verdict, with the letters when the verdict is
/// [`Verdict::Unparseable`].
pub fn decision(g: &Grade) -> (Verdict, String) {
    let letters = if g.verdict == Verdict::Unparseable {
        normalize_letters(&g.letters).unwrap_or_default()
    } else {
        String::new()
    };
    (g.verdict, letters)
}

/// An item's state and human verdict from its current grades (one per annotator who graded),
/// the number of annotators assigned, and its adjudication.
pub fn resolve(
    grades: &[Grade],
    assigned: usize,
    adjudication: Option<&Grade>,
) -> (ItemState, Option<(Verdict, String)>) {
    if let Some(a) = adjudication {
        return (ItemState::Adjudicated, Some(decision(a)));
    }
    if grades.len() < assigned || grades.is_empty() {
        return (ItemState::Pending, None);
    }
    let first = decision(&grades[0]);
    if grades.iter().all(|g| decision(g) == first) {
        (ItemState::Agreed, Some(first))
    } else {
        (ItemState::Disputed, None)
    }
}

/// Whether a human decision makes the answer right: correct → yes; partial, incorrect → no
/// (the exam gives no points for part of an answer); unparseable → the letters read, scored
/// against `gold_correct`, which says whether given letters earn the points.
pub fn human_correct(decision: &(Verdict, String), gold_correct: impl Fn(&str) -> bool) -> bool {
    match decision.0 {
        Verdict::Correct => true,
        Verdict::Partial | Verdict::Incorrect => false,
        Verdict::Unparseable => !decision.1.is_empty() && gold_correct(&decision.1),
    }
}

/// Letters as stored: lower case a–z, sorted, each once, commas and spaces dropped
/// (`"D, b"` → `"bd"`); an error names the first character that is not a letter.
pub fn normalize_letters(raw: &str) -> Result<String, String> {
    let mut out: Vec<char> = Vec::new();
    for c in raw.chars() {
        if c == ',' || c.is_whitespace() {
            continue;
        }
        let l = c.to_ascii_lowercase();
        if !l.is_ascii_lowercase() {
            return Err(format!("{c:?} is not a choice letter (a–z)"));
        }
        if !out.contains(&l) {
            out.push(l);
        }
    }
    out.sort_unstable();
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grade(verdict: Verdict, letters: &str) -> Grade {
        Grade {
            version: 1,
            verdict,
            letters: letters.into(),
            rationale: None,
            flags: vec![],
            comment: String::new(),
            by: String::new(),
            at: String::new(),
        }
    }

    #[test]
    fn resolve_agreed_disputed_pending_adjudicated() {
        let c = grade(Verdict::Correct, "");
        let i = grade(Verdict::Incorrect, "");
        assert_eq!(
            resolve(std::slice::from_ref(&c), 2, None).0,
            ItemState::Pending
        );
        assert_eq!(
            resolve(&[c.clone(), c.clone()], 2, None),
            (ItemState::Agreed, Some((Verdict::Correct, String::new())))
        );
        assert_eq!(
            resolve(&[c.clone(), i.clone()], 2, None),
            (ItemState::Disputed, None)
        );
        assert_eq!(
            resolve(&[c, i.clone()], 2, Some(&i)),
            (
                ItemState::Adjudicated,
                Some((Verdict::Incorrect, String::new()))
            )
        );
        // Unparseable agrees only when the letters read agree too.
        let u1 = grade(Verdict::Unparseable, "b, D");
        let u2 = grade(Verdict::Unparseable, "db");
        let u3 = grade(Verdict::Unparseable, "b");
        assert_eq!(resolve(&[u1.clone(), u2], 2, None).0, ItemState::Agreed);
        assert_eq!(resolve(&[u1, u3], 2, None).0, ItemState::Disputed);
    }

    #[test]
    fn human_correct_reads_letters_for_unparseable() {
        let gold = |l: &str| l == "bd";
        assert!(human_correct(&(Verdict::Correct, String::new()), gold));
        assert!(!human_correct(&(Verdict::Partial, String::new()), gold));
        assert!(human_correct(&(Verdict::Unparseable, "bd".into()), gold));
        assert!(!human_correct(&(Verdict::Unparseable, "b".into()), gold));
        assert!(!human_correct(
            &(Verdict::Unparseable, String::new()),
            |_| true
        ));
    }

    #[test]
    fn letters_normalize_and_refuse_non_letters() {
        assert_eq!(normalize_letters("D, b b").unwrap(), "bd");
        assert_eq!(normalize_letters("").unwrap(), "");
        assert!(normalize_letters("b1").unwrap_err().contains("'1'"));
    }

    #[test]
    fn ids_round_trip() {
        for v in Verdict::ALL {
            assert_eq!(Verdict::from_id(v.id()), Some(v));
        }
        for f in Flag::ALL {
            assert_eq!(Flag::from_id(f.id()), Some(f));
        }
        for s in Selection::ALL {
            assert_eq!(Selection::from_id(s.id()), Some(s));
        }
    }
}
