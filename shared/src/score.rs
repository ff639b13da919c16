//! Scoring a set of predictions against an exam set the way the exam and the seed papers do:
//! per question every metric (letter match in strict and lenient modes, exact match, Gestalt
//! both directions and the seed method's top-k, secondary similarities, points, prohibited
//! choices), then per exam year the totals, confidence intervals and the pass/fail verdict,
//! and breakdowns by block, section and specialty.
//!
//! Pure code: the command line (`kokushi score`), the server and the browser all call it.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::exam::{Gold, Question, Section};
use crate::extract::{Extracted, RULES_VERSION, extract};
use crate::igakuqa::FormatError;
use crate::metric::{
    SECONDARY_SIMILARITIES, exact_match, lenient_correct, strict_letter_correct, top_k_correct,
    top_k_letters,
};
use crate::passing::{PassCriteria, Verdict};
use crate::rules::{Applied, RulePack};
use crate::stats;

/// How a reply's letters are matched with the gold answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LetterMode {
    /// IgakuQA's `evaluate_main.py`: split on "," untrimmed, sorted, compared as written.
    Strict,
    /// Kokushi's extraction rules ([`RULES_VERSION`]): letters in any form models write them.
    Lenient,
}

impl LetterMode {
    pub fn from_id(id: &str) -> Option<Self> {
        match id {
            "strict" => Some(LetterMode::Strict),
            "lenient" => Some(LetterMode::Lenient),
            _ => None,
        }
    }
}

/// Settings of a scoring.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreOptions {
    pub mode: LetterMode,
    /// Confidence level of every interval, e.g. 0.95.
    pub confidence: f64,
    /// Bootstrap resamples.
    pub resamples: usize,
    /// Bootstrap seed, so the intervals are reproducible.
    pub seed: u64,
    /// Groups with fewer questions than this carry a warning.
    pub min_questions: u32,
    /// Whether to compare the model with the examinees where questions carry examinee
    /// accuracy ([`crate::examinees`]).
    #[serde(default = "yes")]
    pub examinees: bool,
    /// The spread of examinees' abilities (logits) for the comparison's percentiles; `None`
    /// calibrates it to each year's pass rate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examinee_spread: Option<f64>,
}

fn yes() -> bool {
    true
}

impl Default for ScoreOptions {
    fn default() -> Self {
        Self {
            mode: LetterMode::Lenient,
            confidence: 0.95,
            resamples: 2000,
            seed: 20_230_331,
            min_questions: 30,
            examinees: true,
            examinee_spread: None,
        }
    }
}

/// What a predictions file says for one question: the answer (`prediction`, IgakuQA's field:
/// letters such as `b,d`, or free text) and, when the file has it, the model's whole reply
/// (`raw_output`). Letter matching reads `prediction`; the text metrics (exact match, Gestalt,
/// the secondary similarities) read the reply when there is one, as the seed papers scored the
/// model's response.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reply {
    pub prediction: String,
    pub response: Option<String>,
}

impl From<String> for Reply {
    fn from(prediction: String) -> Self {
        Self {
            prediction,
            response: None,
        }
    }
}

impl From<&str> for Reply {
    fn from(prediction: &str) -> Self {
        prediction.to_owned().into()
    }
}

/// Every metric for one question.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct QuestionScore {
    pub problem_id: String,
    /// The answer as given; `None` when the predictions hold nothing for this question.
    pub prediction: Option<String>,
    /// The model's whole reply, when the predictions give it apart from the answer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<String>,
    /// Letters found by the lenient extraction rules.
    pub letters: Vec<char>,
    /// The number found, for a numeric question.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub number: Option<String>,
    pub parse_failed: bool,
    /// Letter match in the selected mode; this one earns the points.
    pub letter_correct: bool,
    pub letter_correct_strict: bool,
    pub letter_correct_lenient: bool,
    pub exact_match: bool,
    /// Per choice: `[ratio(prediction, choice), ratio(choice, prediction), mean]`.
    pub gestalt: Vec<[f64; 3]>,
    /// The seed method's answer: the top-k choices by the Gestalt mean.
    pub gestalt_letters: Vec<char>,
    /// `None` for a question without choices.
    pub gestalt_correct: Option<bool>,
    /// The seed method with the secondary similarities: name → correct.
    pub secondary_correct: BTreeMap<String, bool>,
    pub points: u32,
    pub points_earned: u32,
    pub section: Option<Section>,
    /// How many of the question's prohibited choices the extracted letters name.
    pub prohibited_chosen: u32,
}

/// Scores one question's reply (`None`: no reply).
pub fn score_question(q: &Question, given: Option<&Reply>, mode: LetterMode) -> QuestionScore {
    let prediction = given.map(|r| r.prediction.as_str());
    let reply = prediction.unwrap_or("");
    // The text the similarity metrics compare: the whole reply if given, else the answer.
    let text = given.and_then(|r| r.response.as_deref()).unwrap_or(reply);
    let extracted = if prediction.is_some() {
        extract(reply, &q.choices)
    } else {
        Extracted::Unparsed
    };
    let strict = prediction.is_some() && strict_letter_correct(&q.gold, reply)
        || matches!(q.gold, Gold::Everyone);
    // Lenient reads more forms than strict and never fewer: a reply IgakuQA's scorer accepts
    // (such as 112B30's gold string "a or d" itself) is accepted here too.
    let lenient = lenient_correct(&q.gold, reply, &extracted) || strict;
    let letter_correct = match mode {
        LetterMode::Strict => strict,
        LetterMode::Lenient => lenient,
    };
    let gestalt: Vec<[f64; 3]> = q
        .choices
        .iter()
        .map(|choice| {
            let ab = crate::gestalt::gestalt_ratio(text, choice);
            let ba = crate::gestalt::gestalt_ratio(choice, text);
            [ab, ba, (ab + ba) / 2.0]
        })
        .collect();
    let (gestalt_letters, gestalt_correct) = if q.choices.is_empty() {
        (Vec::new(), None)
    } else {
        let means: Vec<f64> = gestalt.iter().map(|g| g[2]).collect();
        (
            top_k_letters(&means, q.gold.answer_count()),
            Some(top_k_correct(&q.gold, &means)),
        )
    };
    let secondary_correct = if q.choices.is_empty() {
        BTreeMap::new()
    } else {
        SECONDARY_SIMILARITIES
            .iter()
            .map(|(name, similarity)| {
                let scores: Vec<f64> = q.choices.iter().map(|c| similarity(text, c)).collect();
                ((*name).to_owned(), top_k_correct(&q.gold, &scores))
            })
            .collect()
    };
    let (letters, number) = match &extracted {
        Extracted::Letters { letters } => (letters.clone(), None),
        Extracted::Number { value } => (Vec::new(), Some(value.clone())),
        Extracted::Unparsed => (Vec::new(), None),
    };
    let prohibited_chosen = letters
        .iter()
        .filter(|l| q.meta.prohibited.contains(l))
        .count();
    QuestionScore {
        problem_id: q.problem_id.clone(),
        prediction: prediction.map(str::to_owned),
        response: given.and_then(|r| r.response.clone()),
        letters,
        number,
        parse_failed: extracted.is_unparsed(),
        letter_correct,
        letter_correct_strict: strict,
        letter_correct_lenient: lenient,
        exact_match: prediction.is_some() && exact_match(&q.gold, text)
            || matches!(q.gold, Gold::Everyone),
        gestalt,
        gestalt_letters,
        gestalt_correct,
        secondary_correct,
        points: q.points,
        points_earned: if letter_correct { q.points } else { 0 },
        section: q.meta.section,
        prohibited_chosen: u32::try_from(prohibited_chosen).unwrap_or(u32::MAX),
    }
}

/// The totals of a group of questions (an exam year, or everything).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupScore {
    pub year: Option<u16>,
    pub exam: Option<String>,
    /// Every question of the group, excluded (0-point) ones included.
    pub questions: u32,
    /// Questions the predictions hold no reply for (scored as wrong).
    pub missing: u32,
    /// Questions judged correct by the selected letter mode, among all `questions`.
    pub correct: u32,
    pub accuracy: f64,
    pub accuracy_interval: Option<(f64, f64)>,
    /// Percentile bootstrap interval of the accuracy (same resamples and seed as the points').
    pub accuracy_bootstrap_interval: Option<(f64, f64)>,
    pub correct_strict: u32,
    pub correct_lenient: u32,
    pub exact_match: u32,
    pub gestalt_correct: u32,
    /// The seed method with each secondary similarity: name → questions correct.
    pub secondary_correct: BTreeMap<String, u32>,
    pub parse_failures: u32,
    /// `required_points + general_points` (plus any question without a section).
    pub points: u32,
    pub points_max: u32,
    pub points_interval: Option<(f64, f64)>,
    pub required_points: u32,
    pub required_max: u32,
    pub general_points: u32,
    pub general_max: u32,
    /// `None` when the exam set lists no prohibited choices for the group.
    pub prohibited_chosen: Option<u32>,
    /// `None` when no criteria are known for the year or the set does not hold the whole year.
    pub pass: Option<bool>,
    /// The verdict rests on a provisional figure of the year's rule pack (a cut-off not yet
    /// announced, say): show it as provisional.
    #[serde(default)]
    pub provisional: bool,
    pub verdict: Option<Verdict>,
    pub criteria: Option<PassCriteria>,
    /// Why there is no verdict, or other caveats.
    pub notes: Vec<String>,
}

/// Skips a value, giving the field its default.
fn ignored<'de, D: serde::Deserializer<'de>, T: Default>(d: D) -> Result<T, D::Error> {
    serde::de::IgnoredAny::deserialize(d)?;
    Ok(T::default())
}

/// Accuracy and points of one slice (a block, a section, a specialty).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Breakdown {
    /// `block`, `section` or `specialty`.
    pub by: String,
    pub key: String,
    pub questions: u32,
    pub correct: u32,
    pub accuracy: f64,
    pub accuracy_interval: Option<(f64, f64)>,
    pub points: u32,
    pub points_max: u32,
    /// Set when the slice has too few questions for its accuracy to mean much.
    pub warning: Option<String>,
}

/// A whole scoring.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScoreReport {
    pub rules_version: String,
    pub options: ScoreOptions,
    pub years: Vec<GroupScore>,
    pub overall: GroupScore,
    pub breakdowns: Vec<Breakdown>,
    /// Predictions for problem ids the exam set does not have.
    pub unknown_predictions: Vec<String>,
    /// Questions without a published answer, left out of every total.
    pub unscorable: Vec<String>,
    /// What the exams' rule packs changed before scoring (exclusions, rulings), with where
    /// each comes from. Written, never read back: reading a report leaves it empty (the
    /// browser has no use for it, and its bundles are smaller without the code to read it).
    #[serde(default, deserialize_with = "ignored")]
    pub rules_applied: Vec<Applied>,
    /// The model against the examinees, where the questions carry examinee accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub examinees: Option<crate::examinees::ExamineeComparison>,
    #[serde(skip)]
    pub questions: Vec<QuestionScore>,
}

/// Scores `predictions` (problem id → reply) against `questions` under the built-in rule
/// packs ([`crate::rules::built_in`]).
pub fn score(
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    options: &ScoreOptions,
) -> ScoreReport {
    score_with(questions, predictions, options, crate::rules::built_in())
}

/// [`score`] under `packs`: each question of an exam a pack covers (its id without a
/// namespace, its exam's number the pack's) takes the pack's exclusions, rulings and
/// prohibited choices, and its year and section where the set does not say; each exam year is
/// judged by its pack.
pub fn score_with(
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    options: &ScoreOptions,
    packs: &[RulePack],
) -> ScoreReport {
    let (adjusted, rules_applied) = apply_packs(questions, packs);
    let questions = adjusted.as_slice();
    let scored: Vec<QuestionScore> = questions
        .iter()
        .map(|q| score_question(q, predictions.get(&q.problem_id), options.mode))
        .collect();
    let known: std::collections::HashSet<&str> =
        questions.iter().map(|q| q.problem_id.as_str()).collect();
    let unknown_predictions = predictions
        .keys()
        .filter(|id| !known.contains(id.as_str()))
        .cloned()
        .collect();

    // Questions without a published answer cannot be judged: they stay out of every total.
    let scorable: Vec<usize> = (0..questions.len())
        .filter(|&i| questions[i].gold != Gold::Unpublished)
        .collect();
    let unscorable = questions
        .iter()
        .filter(|q| q.gold == Gold::Unpublished)
        .map(|q| q.problem_id.clone())
        .collect();
    let mut by_year: BTreeMap<(Option<u16>, Option<String>), Vec<usize>> = BTreeMap::new();
    for &i in &scorable {
        let q = &questions[i];
        by_year
            .entry((q.meta.year, q.meta.exam.clone()))
            .or_default()
            .push(i);
    }
    let years: Vec<GroupScore> = by_year
        .into_iter()
        .map(|((year, exam), idx)| {
            group(
                questions,
                &scored,
                &idx,
                year,
                exam,
                options,
                packs,
                &rules_applied,
            )
        })
        .collect();
    let examinees = if options.examinees {
        let criteria: Vec<_> = years
            .iter()
            .map(|g: &GroupScore| (g.exam.clone(), g.year, g.criteria.clone()))
            .collect();
        crate::examinees::compare(
            questions,
            &scored,
            &criteria,
            packs,
            options.examinee_spread,
        )
    } else {
        None
    };
    let overall = group(
        questions,
        &scored,
        &scorable,
        None,
        None,
        options,
        packs,
        &rules_applied,
    );

    let mut breakdowns = Vec::new();
    type KeyOf = fn(&Question) -> Option<String>;
    let slices: [(&str, KeyOf); 3] = [
        ("block", |q| {
            q.meta
                .block
                .as_ref()
                .map(|b| format!("{}{b}", q.meta.exam.as_deref().unwrap_or("")))
        }),
        ("section", |q| q.meta.section.map(|s| s.id().to_owned())),
        ("specialty", |q| q.meta.specialty.clone()),
    ];
    for (by, key_of) in slices {
        let mut slices: BTreeMap<String, Vec<usize>> = BTreeMap::new();
        for &i in &scorable {
            if let Some(key) = key_of(&questions[i]) {
                slices.entry(key).or_default().push(i);
            }
        }
        for (key, idx) in slices {
            breakdowns.push(breakdown(by, key, &scored, &idx, options));
        }
    }
    ScoreReport {
        rules_version: RULES_VERSION.to_owned(),
        options: *options,
        years,
        overall,
        breakdowns,
        unknown_predictions,
        unscorable,
        rules_applied,
        examinees,
        questions: scored,
    }
}

/// The pack `packs` holds for `exam`.
fn pack_for<'a>(packs: &'a [RulePack], exam: &str) -> Option<&'a RulePack> {
    packs.iter().find(|p| p.exam == exam)
}

/// `questions` with their exams' packs applied, and what the packs changed.
fn apply_packs(questions: &[Question], packs: &[RulePack]) -> (Vec<Question>, Vec<Applied>) {
    let mut adjusted = questions.to_vec();
    let mut applied = Vec::new();
    for pack in packs {
        let mut own: Vec<usize> = Vec::new();
        for (i, q) in adjusted.iter_mut().enumerate() {
            // A namespaced id ("denqa:116A71") is another exam's question.
            if q.problem_id.contains(':') || q.meta.exam.as_deref() != Some(pack.exam.as_str()) {
                continue;
            }
            q.meta.year.get_or_insert(pack.year);
            if q.meta.section.is_none()
                && let Some(block) = &q.meta.block
            {
                q.meta.section = pack.section_of_block(block);
            }
            own.push(i);
        }
        if own.is_empty() {
            continue;
        }
        let mut mine: Vec<Question> = own.iter().map(|&i| adjusted[i].clone()).collect();
        applied.extend(pack.apply(&mut mine));
        for (i, q) in own.into_iter().zip(mine) {
            adjusted[i] = q;
        }
    }
    (adjusted, applied)
}

/// `part / whole`, 0 for an empty whole.
fn share(part: u32, whole: u32) -> f64 {
    if whole == 0 {
        0.0
    } else {
        f64::from(part) / f64::from(whole)
    }
}

fn count(idx: &[usize], test: impl Fn(usize) -> bool) -> u32 {
    u32::try_from(idx.iter().filter(|&&i| test(i)).count()).unwrap_or(u32::MAX)
}

/// The bootstrap interval of the points, as a ratio: the share of points earned in each
/// resample of the questions, times the group's points at stake.
fn points_interval(
    scored: &[QuestionScore],
    idx: &[usize],
    o: &ScoreOptions,
) -> Option<(f64, f64)> {
    let earned: Vec<f64> = idx
        .iter()
        .map(|&i| f64::from(scored[i].points_earned))
        .collect();
    let at_stake: Vec<f64> = idx.iter().map(|&i| f64::from(scored[i].points)).collect();
    stats::bootstrap_ratio_interval(
        &earned,
        &at_stake,
        at_stake.iter().sum(),
        o.resamples,
        o.confidence,
        o.seed,
    )
}

#[allow(clippy::too_many_arguments)]
fn group(
    questions: &[Question],
    scored: &[QuestionScore],
    idx: &[usize],
    year: Option<u16>,
    exam: Option<String>,
    o: &ScoreOptions,
    packs: &[RulePack],
    applied: &[Applied],
) -> GroupScore {
    let n = u32::try_from(idx.len()).unwrap_or(u32::MAX);
    let correct = count(idx, |i| scored[i].letter_correct);
    let sum = |section: Option<Section>, earned: bool| -> u32 {
        idx.iter()
            .filter(|&&i| section.is_none() || scored[i].section == section)
            .map(|&i| {
                if earned {
                    scored[i].points_earned
                } else {
                    scored[i].points
                }
            })
            .sum()
    };
    let lists_prohibited = idx
        .iter()
        .any(|&i| !questions[i].meta.prohibited.is_empty());
    let prohibited_chosen =
        lists_prohibited.then(|| idx.iter().map(|&i| scored[i].prohibited_chosen).sum());
    let mut secondary_correct = BTreeMap::new();
    for (name, _) in SECONDARY_SIMILARITIES {
        secondary_correct.insert(
            name.to_owned(),
            count(idx, |i| {
                scored[i].secondary_correct.get(name) == Some(&true)
            }),
        );
    }
    let mut g = GroupScore {
        year,
        exam: exam.clone(),
        questions: n,
        missing: count(idx, |i| scored[i].prediction.is_none()),
        correct,
        accuracy: share(correct, n),
        accuracy_interval: stats::wilson_interval(u64::from(correct), u64::from(n), o.confidence),
        accuracy_bootstrap_interval: stats::bootstrap_mean_interval(
            &idx.iter()
                .map(|&i| f64::from(u8::from(scored[i].letter_correct)))
                .collect::<Vec<_>>(),
            o.resamples,
            o.confidence,
            o.seed,
        ),
        correct_strict: count(idx, |i| scored[i].letter_correct_strict),
        correct_lenient: count(idx, |i| scored[i].letter_correct_lenient),
        exact_match: count(idx, |i| scored[i].exact_match),
        gestalt_correct: count(idx, |i| scored[i].gestalt_correct == Some(true)),
        secondary_correct,
        parse_failures: count(idx, |i| scored[i].parse_failed),
        points: sum(None, true),
        points_max: sum(None, false),
        points_interval: points_interval(scored, idx, o),
        required_points: sum(Some(Section::Required), true),
        required_max: sum(Some(Section::Required), false),
        general_points: sum(Some(Section::General), true),
        general_max: sum(Some(Section::General), false),
        prohibited_chosen,
        pass: None,
        provisional: false,
        verdict: None,
        criteria: None,
        notes: Vec::new(),
    };
    if g.missing > 0 {
        g.notes.push(format!(
            "{} question(s) have no prediction and count as wrong",
            g.missing
        ));
    }
    if n < o.min_questions && n > 0 {
        g.notes.push(format!(
            "only {n} questions: too few for a reliable accuracy"
        ));
    }
    let (Some(year), Some(exam)) = (year, exam) else {
        return g;
    };
    let Some(pack) = pack_for(packs, &exam).filter(|p| p.year == year) else {
        g.notes
            .push(format!("no pass criteria known for exam {exam} ({year})"));
        return g;
    };
    // A section's examinees' mean points, when every question of it carries their accuracy.
    let examinee_mean = |section: Section| -> Option<f64> {
        let mut total = 0.0;
        for &i in idx.iter().filter(|&&i| scored[i].section == Some(section)) {
            total += f64::from(questions[i].points) * questions[i].meta.examinee_accuracy?;
        }
        Some(total)
    };
    let c = match PassCriteria::from_pack(pack, examinee_mean) {
        Ok(c) => c,
        Err(why) => {
            g.notes.push(format!("no verdict for exam {exam}: {why}"));
            return g;
        }
    };
    let held = |set: u32, exam_points: u32| exam_points.checked_sub(set);
    let (Some(required_missing), Some(general_missing)) = (
        held(g.required_max, c.required_max),
        held(g.general_max, c.general_max),
    ) else {
        g.notes.push(format!(
            "the set holds {}/{} required and {}/{} general points of exam {exam}: more than \
             the exam has; no verdict",
            g.required_max, c.required_max, g.general_max, c.general_max
        ));
        g.criteria = Some(c);
        return g;
    };
    // Questions the set lacks (a block not imported, a record left out) count as wrong for a
    // verdict that stands whatever they are, and as right for one that falls whatever they are.
    let mut verdict = c.judge(g.required_points, g.general_points, g.prohibited_chosen);
    if required_missing + general_missing > 0 {
        let best = c.judge(
            g.required_points + required_missing,
            g.general_points + general_missing,
            g.prohibited_chosen,
        );
        let missing = format!(
            "the set holds {}/{} required and {}/{} general points of exam {exam}",
            g.required_max, c.required_max, g.general_max, c.general_max
        );
        if !verdict.pass && best.pass {
            g.notes.push(format!(
                "{missing}: pass/fail turns on the points it lacks; no verdict"
            ));
            g.criteria = Some(c);
            return g;
        }
        g.notes.push(format!(
            "{missing}; the verdict stands whatever the {} missing points are",
            required_missing + general_missing
        ));
    }
    // A question changed by a provisional entry (an exclusion, a ruling) makes it provisional
    // too.
    let ids: std::collections::HashSet<&str> = idx
        .iter()
        .map(|&i| questions[i].problem_id.as_str())
        .collect();
    let provisional_changes: Vec<&Applied> = applied
        .iter()
        .filter(|a| {
            a.provenance.kind == crate::rules::ProvenanceKind::Provisional
                && ids.contains(a.problem_id.as_str())
        })
        .collect();
    verdict.provisional |= !provisional_changes.is_empty();
    if verdict.provisional {
        let mut standing_in: Vec<String> = c.provisional.clone();
        standing_in.extend(
            provisional_changes
                .iter()
                .map(|a| format!("{}: {} ({})", a.problem_id, a.what, a.provenance.source)),
        );
        g.notes.push(format!(
            "provisional verdict: it rests on {}",
            standing_in.join("; ")
        ));
    }
    g.pass = Some(verdict.pass);
    g.provisional = verdict.provisional;
    g.verdict = Some(verdict);
    g.criteria = Some(c);
    g
}

fn breakdown(
    by: &str,
    key: String,
    scored: &[QuestionScore],
    idx: &[usize],
    o: &ScoreOptions,
) -> Breakdown {
    let n = u32::try_from(idx.len()).unwrap_or(u32::MAX);
    let correct = count(idx, |i| scored[i].letter_correct);
    Breakdown {
        by: by.to_owned(),
        key,
        questions: n,
        correct,
        accuracy: share(correct, n),
        accuracy_interval: stats::wilson_interval(u64::from(correct), u64::from(n), o.confidence),
        points: idx.iter().map(|&i| scored[i].points_earned).sum(),
        points_max: idx.iter().map(|&i| scored[i].points).sum(),
        warning: (n < o.min_questions)
            .then(|| format!("only {n} questions: too few for a reliable accuracy")),
    }
}

/// Reads predictions: IgakuQA's `baseline_results` lines (`{"problem_id": ..., "prediction":
/// ...}`, with the model's whole reply in an optional `"raw_output"`, other fields ignored) or Kokushi's own run export (`GET /api/runs/{id}`: a JSON
/// document whose `questions` carry `answer.raw_output`). An id repeated within the file is an
/// error naming both lines.
pub fn parse_predictions(
    file: &str,
    content: &str,
    into: &mut BTreeMap<String, Reply>,
) -> Result<(), Vec<FormatError>> {
    let content = content.strip_prefix('\u{feff}').unwrap_or(content);
    let err = |line: usize, field: &str, message: String| FormatError {
        file: file.to_owned(),
        line,
        field: field.to_owned(),
        message,
    };
    // One JSON document with `questions`: a run export. Anything wrong in it is reported as
    // such, not as a malformed first line of JSON lines.
    if let Ok(document) = serde_json::from_str::<serde_json::Value>(content)
        && document.get("questions").is_some()
    {
        let export: crate::api::RunDetail = serde_json::from_value(document).map_err(|e| {
            vec![err(
                1,
                "questions",
                format!("not a Kokushi run export: {e}"),
            )]
        })?;
        for q in export.questions {
            if let Some(answer) = q.answer {
                into.insert(q.problem_id, answer.raw_output.into());
            }
        }
        return Ok(());
    }
    let mut errors = Vec::new();
    let mut seen: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (index, line) in content.lines().enumerate() {
        let line_no = index + 1;
        if line.trim().is_empty() {
            continue;
        }
        let value: serde_json::Value = match serde_json::from_str(line) {
            Ok(v) => v,
            Err(e) => {
                errors.push(err(line_no, "line", format!("not a JSON object: {e}")));
                continue;
            }
        };
        let id = value.get("problem_id").and_then(|v| v.as_str());
        let prediction = value.get("prediction");
        match (id, prediction) {
            (None, _) => errors.push(err(line_no, "problem_id", "missing or not text".into())),
            (Some(_), None) => errors.push(err(line_no, "prediction", "missing".into())),
            (Some(id), Some(p)) => {
                let text = match p {
                    serde_json::Value::String(s) => s.clone(),
                    serde_json::Value::Null => String::new(),
                    other => other.to_string(),
                };
                if let Some(first) = seen.insert(id.to_owned(), line_no) {
                    errors.push(err(
                        line_no,
                        "problem_id",
                        format!("{id:?} appears twice in this file (first on line {first})"),
                    ));
                }
                let response = match value.get("raw_output") {
                    None | Some(serde_json::Value::Null) => None,
                    Some(serde_json::Value::String(s)) => Some(s.clone()),
                    Some(other) => {
                        errors.push(err(
                            line_no,
                            "raw_output",
                            format!("expected text, got {other}"),
                        ));
                        None
                    }
                };
                into.insert(
                    id.to_owned(),
                    Reply {
                        prediction: text,
                        response,
                    },
                );
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(errors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exam::QuestionMeta;

    fn question(id: &str, gold: Gold, points: u32, section: Section) -> Question {
        let choices = if matches!(gold, Gold::Numeric { .. }) {
            Vec::new()
        } else {
            ["心筋梗塞", "肺塞栓症", "大動脈解離", "気胸", "心膜炎"]
                .map(str::to_owned)
                .to_vec()
        };
        Question {
            problem_id: id.to_owned(),
            text: "どれか。".to_owned(),
            choices,
            gold,
            points,
            text_only: true,
            meta: QuestionMeta {
                exam: Some("900".to_owned()),
                year: Some(2099),
                block: Some(id[3..4].to_owned()),
                section: Some(section),
                ..QuestionMeta::default()
            },
        }
    }

    fn letters(ls: &[char]) -> Gold {
        Gold::Letters {
            letters: ls.to_vec(),
        }
    }

    /// (gold, reply, strict, lenient, exact match)
    #[test]
    fn strict_lenient_and_exact_match_read_replies_as_documented() {
        let any_of = Gold::AnyOf {
            letters: vec!['a', 'd'],
        };
        let numeric = Gold::Numeric {
            value: "26".to_owned(),
        };
        let table: &[(&Gold, &str, bool, bool, bool)] = &[
            (&letters(&['b']), "b", true, true, true),
            (&letters(&['b']), "B", false, true, true),
            (&letters(&['b']), "ｂ", false, true, true),
            (&letters(&['b']), "(b)", false, true, false),
            (&letters(&['b']), "b ", false, true, true),
            (&letters(&['b']), "答え：b", false, true, false),
            (&letters(&['b', 'd']), "b,d", true, true, true),
            (&letters(&['b', 'd']), "d,b", true, true, false),
            (&letters(&['b', 'd']), "b, d", false, true, true),
            (&letters(&['b', 'd']), "b と d", false, true, false),
            (&letters(&['b', 'd']), "答え：b、d", false, true, false),
            (&letters(&['b', 'd']), "b", false, false, false),
            (&letters(&['b', 'd']), "b,c,d", false, false, false),
            (&any_of, "a", true, true, true),
            (&any_of, "d", true, true, true),
            (&any_of, "a or d", true, true, true),
            (&any_of, "a,d", false, false, false),
            (&any_of, "b", false, false, false),
            (&Gold::Everyone, "", true, true, true),
            (&Gold::Everyone, "c", true, true, true),
            (&numeric, "26", true, true, true),
            (&numeric, "２６", false, true, true),
            (&numeric, "26.0", false, true, false),
            (&numeric, "答えは26", false, true, false),
            (&numeric, "25", false, false, false),
        ];
        for &(gold, reply, strict, lenient, exact) in table {
            let q = question("900A1", gold.clone(), 1, Section::General);
            for (mode, want) in [(LetterMode::Strict, strict), (LetterMode::Lenient, lenient)] {
                let s = score_question(&q, Some(&reply.into()), mode);
                assert_eq!(s.letter_correct_strict, strict, "strict {gold:?} {reply:?}");
                assert_eq!(
                    s.letter_correct_lenient, lenient,
                    "lenient {gold:?} {reply:?}"
                );
                assert_eq!(s.exact_match, exact, "exact {gold:?} {reply:?}");
                assert_eq!(s.letter_correct, want);
                assert_eq!(s.points_earned, u32::from(want));
            }
        }
    }

    #[test]
    fn a_missing_reply_is_wrong_except_where_everyone_is_right() {
        let q = question("900A1", letters(&['c']), 1, Section::General);
        let s = score_question(&q, None, LetterMode::Lenient);
        assert!(!s.letter_correct && !s.exact_match && s.parse_failed);
        assert_eq!(s.prediction, None);
        let q = question("900A2", Gold::Everyone, 3, Section::Required);
        let s = score_question(&q, None, LetterMode::Strict);
        assert!(s.letter_correct && s.exact_match);
        assert_eq!(s.points_earned, 3);
    }

    #[test]
    fn the_seed_method_takes_the_top_k_choices_by_gestalt_in_both_directions() {
        let q = question("900A1", letters(&['a', 'c']), 1, Section::General);
        let s = score_question(
            &q,
            Some(&"心筋梗塞と大動脈解離".into()),
            LetterMode::Lenient,
        );
        assert_eq!(s.gestalt.len(), 5);
        for (i, g) in s.gestalt.iter().enumerate() {
            let ab = crate::gestalt::gestalt_ratio("心筋梗塞と大動脈解離", &q.choices[i]);
            let ba = crate::gestalt::gestalt_ratio(&q.choices[i], "心筋梗塞と大動脈解離");
            assert_eq!(*g, [ab, ba, (ab + ba) / 2.0]);
        }
        assert_eq!(s.gestalt_letters, vec!['a', 'c']);
        assert_eq!(s.gestalt_correct, Some(true));
        assert!(
            s.parse_failed,
            "no letters in the reply, and two choices quoted"
        );
    }

    #[test]
    fn years_total_points_by_section_count_prohibited_choices_and_flag_small_groups() {
        let mut questions = vec![
            question("900B1", letters(&['a']), 1, Section::Required),
            question("900B2", letters(&['b']), 3, Section::Required),
            question("900A1", letters(&['c']), 1, Section::General),
            question("900A2", letters(&['d']), 0, Section::General),
        ];
        questions[2].meta.prohibited = vec!['e'];
        let predictions: BTreeMap<String, Reply> = [
            ("900B1", "a"),
            ("900B2", "c"),
            ("900A1", "e"),
            ("900A2", "d"),
            ("999Z9", "a"),
        ]
        .map(|(k, v)| (k.to_owned(), Reply::from(v)))
        .into_iter()
        .collect();
        let report = score(&questions, &predictions, &ScoreOptions::default());
        assert_eq!(report.years.len(), 1);
        let y = &report.years[0];
        assert_eq!((y.year, y.exam.as_deref()), (Some(2099), Some("900")));
        assert_eq!(y.questions, 4);
        assert_eq!(
            y.correct, 2,
            "0-point questions count among the correct, as IgakuQA's do"
        );
        assert_eq!((y.required_points, y.required_max), (1, 4));
        assert_eq!((y.general_points, y.general_max), (0, 1));
        assert_eq!(y.points, 1);
        assert_eq!(y.prohibited_chosen, Some(1));
        assert_eq!(y.pass, None, "no criteria for an unknown exam");
        assert!(
            y.notes.iter().any(|n| n.contains("no pass criteria")),
            "{:?}",
            y.notes
        );
        assert!(
            y.notes.iter().any(|n| n.contains("too few")),
            "{:?}",
            y.notes
        );
        assert_eq!(report.unknown_predictions, vec!["999Z9".to_owned()]);
        let sections: Vec<_> = report
            .breakdowns
            .iter()
            .filter(|b| b.by == "section")
            .map(|b| (b.key.as_str(), b.questions, b.correct, b.warning.is_some()))
            .collect();
        assert_eq!(
            sections,
            [("general", 2, 1, true), ("required", 2, 1, true)]
        );
    }

    #[test]
    fn predictions_are_read_from_baseline_lines_and_refused_with_their_line() {
        let mut into = BTreeMap::new();
        let ok = "\u{feff}{\"problem_id\": \"116A1\", \"prediction\": \"c\", \"explanation\": \"c\"}\n\n{\"problem_id\": \"116A2\", \"prediction\": null}\n";
        parse_predictions("p.jsonl", ok, &mut into).expect("valid");
        assert_eq!(into["116A1"], Reply::from("c"));
        assert_eq!(into["116A2"], Reply::from(""));
        let bad = "{\"problem_id\": \"116A1\", \"prediction\": \"c\"}\n{\"problem_id\": 5, \"prediction\": \"c\"}\n{\"problem_id\": \"116A3\"}\n[1]\n{\"problem_id\": \"116A1\", \"prediction\": \"d\"}\n";
        let errors = parse_predictions("bad.jsonl", bad, &mut BTreeMap::new()).unwrap_err();
        let shown: Vec<String> = errors.iter().map(ToString::to_string).collect();
        assert_eq!(shown.len(), 4, "{shown:#?}");
        assert!(
            shown[0].starts_with("bad.jsonl:2: field `problem_id`"),
            "{}",
            shown[0]
        );
        assert!(
            shown[1].starts_with("bad.jsonl:3: field `prediction`"),
            "{}",
            shown[1]
        );
        assert!(
            shown[2].starts_with("bad.jsonl:4: field `problem_id`"),
            "{}",
            shown[2]
        );
        assert!(shown[3].contains("first on line 1"), "{}", shown[3]);
    }

    #[test]
    fn questions_without_a_published_answer_stay_out_of_every_total() {
        let questions = vec![
            question("900A1", letters(&['a']), 1, Section::General),
            question("900A2", Gold::Unpublished, 1, Section::General),
        ];
        let predictions: BTreeMap<String, Reply> = [("900A1", "a"), ("900A2", "a")]
            .map(|(k, v)| (k.to_owned(), Reply::from(v)))
            .into_iter()
            .collect();
        let report = score(&questions, &predictions, &ScoreOptions::default());
        assert_eq!(report.overall.questions, 1);
        assert_eq!(report.overall.correct, 1);
        assert_eq!(report.overall.points_max, 1);
        assert_eq!(report.unscorable, vec!["900A2".to_owned()]);
        assert!(!report.questions[1].letter_correct && !report.questions[1].exact_match);
    }

    #[test]
    fn the_text_metrics_read_the_whole_reply_when_the_file_gives_it() {
        let q = question("900A1", letters(&['c']), 1, Section::General);
        let reply = Reply {
            prediction: "c".to_owned(),
            response: Some("大動脈解離".to_owned()),
        };
        let s = score_question(&q, Some(&reply), LetterMode::Strict);
        assert!(s.letter_correct, "letters come from the prediction");
        assert_eq!(s.gestalt_letters, vec!['c'], "similarity reads the reply");
        assert_eq!(s.gestalt[2][0], 1.0);
        assert!(!s.exact_match, "the reply is not the gold string");
        let mut into = BTreeMap::new();
        let line =
            "{\"problem_id\": \"900A1\", \"prediction\": \"c\", \"raw_output\": \"大動脈解離\"}";
        parse_predictions("p.jsonl", line, &mut into).expect("valid");
        assert_eq!(into["900A1"], reply);
        let bad = "{\"problem_id\": \"900A1\", \"prediction\": \"c\", \"raw_output\": 3}";
        let errors = parse_predictions("p.jsonl", bad, &mut BTreeMap::new()).unwrap_err();
        assert_eq!(errors[0].field, "raw_output");
    }

    #[test]
    fn a_broken_run_export_is_reported_as_one() {
        let broken = r#"{"run": {}, "questions": [{"problem_id": 3}]}"#;
        let errors = parse_predictions("run-7.json", broken, &mut BTreeMap::new()).unwrap_err();
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].message.contains("not a Kokushi run export"),
            "{}",
            errors[0]
        );
    }
}
