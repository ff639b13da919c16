//! The model against the examinees, where the exam set carries each question's examinee
//! accuracy (and, optionally, each choice's share): the model's percentile among examinees per
//! exam year and section, the questions it got right that most examinees missed and the
//! reverse, and whether its wrong answers are the examinees' common wrong answers.
//!
//! **The percentile** needs the distribution of examinees' scores, which the published shares
//! alone do not give (they say how hard each question was, not how the same examinees fared
//! across questions). Kokushi uses the Rasch model: an examinee of ability θ answers question
//! *i* right with probability σ(θ − bᵢ); abilities are normal with mean 0 and spread s. Each
//! difficulty bᵢ is solved so that the model reproduces the question's accuracy exactly over
//! the examinees, and the spread s is solved so that the model reproduces the year's announced
//! pass rate (the share of examinees clearing both sections' pass marks; the rule pack's
//! `examinees`). The distribution of points then follows exactly (a convolution per ability,
//! integrated over abilities on a fixed grid), and the percentile is the share of examinees
//! scoring below the model plus half the share scoring the same. Where a year cannot be
//! calibrated (the set lacks part of it, a question lacks its accuracy, or the pack has no
//! pass rate) the spread is [`ASSUMED_SPREAD`] and the group says so.

use serde::{Deserialize, Serialize};

use crate::exam::{Gold, Question, Section, choice_letter};
use crate::passing::PassCriteria;
use crate::rules::RulePack;
use crate::score::QuestionScore;

/// The spread of abilities (in logits) assumed where the pass rate cannot calibrate it.
pub const ASSUMED_SPREAD: f64 = 1.0;
/// The bounds a calibrated spread is searched in.
const SPREAD_RANGE: (f64, f64) = (0.05, 6.0);
/// Abilities are integrated on this many points of the standard normal, from −5 to 5.
const NODES: usize = 41;
/// The most questions and points one year may have for its percentiles to be modelled: the
/// work grows with their product (a real exam has 400 questions and 500 points).
const MAX_QUESTIONS: usize = 2_000;
const MAX_POINTS: u32 = 6_000;
/// The most work (questions × points, summed over the years modelled) one comparison does: a
/// set of many years stops modelling percentiles past it (every real exam year together is
/// under 2 million).
const MAX_WORK: u64 = 20_000_000;

/// Everything the comparison finds; `None` on a report whose questions carry no examinee
/// accuracy.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExamineeComparison {
    /// Per exam year: the year whole (`section` empty), then each section.
    pub groups: Vec<ExamineeGroup>,
    /// Questions the model answered right that most examinees missed (accuracy below one
    /// half), the hardest first.
    pub right_where_missed: Vec<ExamineeQuestion>,
    /// Questions the model missed that most examinees answered right (accuracy above one
    /// half), the easiest first.
    pub missed_where_right: Vec<ExamineeQuestion>,
    /// The model's wrong answers on questions that carry each choice's share, with the
    /// examinees' most common wrong choice beside each. (The web pages show only their count,
    /// `wrong_answers`, and do not read them.)
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub wrong_choices: Vec<WrongChoice>,
    /// How many `wrong_choices` there are.
    pub wrong_answers: u32,
    /// Of `wrong_choices`, how many chose the examinees' most common wrong choice.
    pub common_wrong: u32,
    /// The mean share of examinees who chose as the model did, over `wrong_choices`.
    pub same_choice_share: Option<f64>,
}

/// The model's place among the examinees in one exam year, or one section of it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExamineeGroup {
    pub exam: Option<String>,
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub year: Option<u16>,
    /// `None`: the year whole.
    pub section: Option<Section>,
    /// Questions compared (scored, worth points, with examinee accuracy).
    pub questions: u32,
    /// Questions of the group without examinee accuracy, left out of the comparison.
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub without_accuracy: u32,
    /// The model's points on the questions compared, and their total.
    pub points: u32,
    pub points_max: u32,
    /// The examinees' mean points on them (Σ points × accuracy).
    pub examinee_mean: f64,
    /// The model's percentile among examinees, 0 to 100; `None` for a year too large to
    /// model (the note says so).
    pub percentile: Option<f64>,
    /// The spread of examinees' abilities (logits) the percentile rests on.
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub spread: f64,
    /// Whether the spread was calibrated to the year's pass rate (else assumed).
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub calibrated: bool,
    /// How the spread was had, in words.
    pub note: String,
}

/// A question on one of the comparison's lists.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ExamineeQuestion {
    pub problem_id: String,
    pub examinee_accuracy: f64,
    /// The model's answer (its letters, or its number), empty when it gave none.
    #[cfg_attr(target_arch = "wasm32", serde(skip_deserializing))]
    pub answer: String,
}

/// A wrong answer of the model, against the examinees' choices.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct WrongChoice {
    pub problem_id: String,
    /// The model's letters.
    pub chosen: String,
    /// The share of examinees who chose the model's wrong letters (their mean, when several).
    pub share: f64,
    /// The wrong choice most examinees made, and its share.
    pub most_common: String,
    pub most_common_share: f64,
}

/// Compares the model's answers (`scored`, one per question of `questions`, in order) with the
/// examinees'. `years` gives each exam year's pass criteria (the report's groups); `packs` the
/// pass rates. `spread` fixes the spread of abilities instead of calibrating it.
pub fn compare(
    questions: &[Question],
    scored: &[QuestionScore],
    criteria: &[(Option<String>, Option<u16>, Option<PassCriteria>)],
    packs: &[RulePack],
    spread: Option<f64>,
) -> Option<ExamineeComparison> {
    compare_within(questions, scored, criteria, packs, spread, MAX_WORK)
}

/// [`compare`] doing at most `max_work` (questions × points, summed over the years modelled).
fn compare_within(
    questions: &[Question],
    scored: &[QuestionScore],
    criteria: &[(Option<String>, Option<u16>, Option<PassCriteria>)],
    packs: &[RulePack],
    spread: Option<f64>,
    max_work: u64,
) -> Option<ExamineeComparison> {
    // The questions that count: published answer, worth points.
    let counted: Vec<usize> = (0..questions.len())
        .filter(|&i| questions[i].gold != Gold::Unpublished && questions[i].points > 0)
        .collect();
    if !counted
        .iter()
        .any(|&i| questions[i].meta.examinee_accuracy.is_some())
    {
        return None;
    }
    let nodes = Nodes::new();
    let mut groups = Vec::new();
    let mut work: u64 = 0;
    for (exam, year, year_criteria) in criteria {
        let in_year: Vec<usize> = counted
            .iter()
            .copied()
            .filter(|&i| questions[i].meta.exam == *exam && questions[i].meta.year == *year)
            .collect();
        let items = |section: Option<Section>| -> Vec<Item> {
            in_year
                .iter()
                .filter(|&&i| section.is_none() || questions[i].meta.section == section)
                .filter_map(|&i| {
                    Some(Item {
                        points: questions[i].points,
                        accuracy: questions[i].meta.examinee_accuracy?,
                        earned: scored[i].points_earned,
                    })
                })
                .collect()
        };
        let all = items(None);
        if all.is_empty() {
            continue;
        }
        let rate = exam
            .as_deref()
            .and_then(|e| packs.iter().find(|p| p.exam == e))
            .and_then(|p| p.examinees.as_ref());
        let year_points: u32 = all.iter().map(|i| i.points).sum();
        work = work.saturating_add(all.len() as u64 * u64::from(year_points));
        let too_large = all.len() > MAX_QUESTIONS || year_points > MAX_POINTS || work > max_work;
        let (s, calibrated, note) = match (spread, year_criteria, rate) {
            _ if too_large => (
                ASSUMED_SPREAD,
                false,
                format!(
                    "no percentile: more than {MAX_QUESTIONS} questions or {MAX_POINTS} points \
                     in the year, or more years with examinee accuracy than one comparison \
                     models"
                ),
            ),
            (Some(s), ..) => (s, false, format!("spread of abilities set to {s} logits")),
            (None, Some(c), Some(rate)) => {
                let required = items(Some(Section::Required));
                let general = items(Some(Section::General));
                let whole =
                    |items: &[Item], max: u32| items.iter().map(|i| i.points).sum::<u32>() == max;
                if all.len() == in_year.len()
                    && whole(&required, c.required_max)
                    && whole(&general, c.general_max)
                {
                    let target = rate.pass_rate();
                    let (s, hit) = calibrate_spread(
                        &nodes,
                        &required,
                        &general,
                        (c.required_min, c.general_min),
                        target,
                    );
                    let note = if hit {
                        format!(
                            "spread of abilities {s:.2} logits, calibrated so that {:.1}% pass \
                             ({} of {} examinees)",
                            100.0 * target,
                            rate.passed,
                            rate.sat
                        )
                    } else {
                        format!(
                            "spread of abilities {s:.2} logits, the nearest the model comes to \
                             the announced {:.1}% passing",
                            100.0 * target
                        )
                    };
                    (s, true, note)
                } else {
                    (
                        ASSUMED_SPREAD,
                        false,
                        format!(
                            "spread of abilities assumed ({ASSUMED_SPREAD} logit): the set does \
                             not hold the whole year with examinee accuracy, so the pass rate \
                             cannot calibrate it"
                        ),
                    )
                }
            }
            _ => (
                ASSUMED_SPREAD,
                false,
                format!(
                    "spread of abilities assumed ({ASSUMED_SPREAD} logit): no pass marks or \
                     pass rate are known for the year"
                ),
            ),
        };
        let mut sections: Vec<Option<Section>> = vec![None];
        for section in [Section::Required, Section::General] {
            if in_year
                .iter()
                .any(|&i| questions[i].meta.section == Some(section))
            {
                sections.push(Some(section));
            }
        }
        for section in sections {
            let compared = items(section);
            let of_group = in_year
                .iter()
                .filter(|&&i| section.is_none() || questions[i].meta.section == section)
                .count();
            if compared.is_empty() {
                continue;
            }
            let points: u32 = compared.iter().map(|i| i.earned).sum();
            groups.push(ExamineeGroup {
                exam: exam.clone(),
                year: *year,
                section,
                questions: count(compared.len()),
                without_accuracy: count(of_group - compared.len()),
                points,
                points_max: compared.iter().map(|i| i.points).sum(),
                examinee_mean: compared
                    .iter()
                    .map(|i| f64::from(i.points) * i.accuracy)
                    .sum(),
                percentile: (!too_large).then(|| percentile(&nodes, &compared, points, s)),
                spread: s,
                calibrated,
                note: note.clone(),
            });
        }
    }

    let answer = |i: usize| {
        let s = &scored[i];
        s.number
            .clone()
            .unwrap_or_else(|| s.letters.iter().collect())
    };
    let mut right_where_missed = Vec::new();
    let mut missed_where_right = Vec::new();
    let mut wrong_choices = Vec::new();
    for &i in &counted {
        let q = &questions[i];
        let Some(accuracy) = q.meta.examinee_accuracy else {
            continue;
        };
        if q.gold == Gold::Everyone {
            continue;
        }
        let item = || ExamineeQuestion {
            problem_id: q.problem_id.clone(),
            examinee_accuracy: accuracy,
            answer: answer(i),
        };
        let right = scored[i].letter_correct;
        if right && accuracy < 0.5 {
            right_where_missed.push(item());
        } else if !right && accuracy > 0.5 {
            missed_where_right.push(item());
        }
        if !right
            && !q.meta.choice_shares.is_empty()
            && let Some(wrong) = wrong_choice(q, &scored[i])
        {
            wrong_choices.push(wrong);
        }
    }
    right_where_missed.sort_by(|a, b| a.examinee_accuracy.total_cmp(&b.examinee_accuracy));
    missed_where_right.sort_by(|a, b| b.examinee_accuracy.total_cmp(&a.examinee_accuracy));
    let common_wrong = count(
        wrong_choices
            .iter()
            .filter(|w| w.chosen.contains(w.most_common.as_str()))
            .count(),
    );
    let same_choice_share = (!wrong_choices.is_empty())
        .then(|| wrong_choices.iter().map(|w| w.share).sum::<f64>() / wrong_choices.len() as f64);
    Some(ExamineeComparison {
        groups,
        right_where_missed,
        missed_where_right,
        wrong_answers: count(wrong_choices.len()),
        wrong_choices,
        common_wrong,
        same_choice_share,
    })
}

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The model's wrong answer on `q` against the examinees' choices: `None` when it chose no
/// wrong letter (it gave none, or too few).
fn wrong_choice(q: &Question, s: &QuestionScore) -> Option<WrongChoice> {
    let gold: Vec<char> = match &q.gold {
        Gold::Letters { letters } | Gold::AnyOf { letters } => letters.clone(),
        _ => return None,
    };
    let shares = &q.meta.choice_shares;
    let share_of = |c: char| crate::exam::letter_index(c).and_then(|i| shares.get(i).copied());
    let wrong: Vec<f64> = s
        .letters
        .iter()
        .filter(|c| !gold.contains(c))
        .filter_map(|&c| share_of(c))
        .collect();
    if wrong.is_empty() {
        return None;
    }
    let (most_common, most_common_share) = shares
        .iter()
        .enumerate()
        .map(|(i, &share)| (choice_letter(i), share))
        .filter(|(c, _)| !gold.contains(c))
        .fold(None, |best: Option<(char, f64)>, (c, share)| match best {
            Some((_, top)) if top >= share => best,
            _ => Some((c, share)),
        })?;
    Some(WrongChoice {
        problem_id: q.problem_id.clone(),
        chosen: s.letters.iter().collect(),
        share: wrong.iter().sum::<f64>() / wrong.len() as f64,
        most_common: most_common.to_string(),
        most_common_share,
    })
}

/// One question as the comparison reads it.
#[derive(Debug, Clone, Copy)]
struct Item {
    points: u32,
    accuracy: f64,
    /// The model's points on it.
    earned: u32,
}

/// The grid of standard-normal abilities and their weights (summing to 1).
struct Nodes {
    z: Vec<f64>,
    w: Vec<f64>,
}

impl Nodes {
    fn new() -> Self {
        let z: Vec<f64> = (0..NODES)
            .map(|k| -5.0 + 10.0 * k as f64 / (NODES - 1) as f64)
            .collect();
        let density: Vec<f64> = z.iter().map(|z| (-0.5 * z * z).exp()).collect();
        let total: f64 = density.iter().sum();
        Self {
            z,
            w: density.into_iter().map(|d| d / total).collect(),
        }
    }
}

fn logistic(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The difficulty at which examinees of spread `s` answer right with probability `accuracy`
/// on the whole.
fn difficulty(nodes: &Nodes, accuracy: f64, s: f64) -> f64 {
    let mean = |b: f64| -> f64 {
        nodes
            .z
            .iter()
            .zip(&nodes.w)
            .map(|(z, w)| w * logistic(s * z - b))
            .sum()
    };
    // The mean falls as b grows.
    let (mut lo, mut hi) = (-40.0, 40.0);
    for _ in 0..60 {
        let mid = 0.5 * (lo + hi);
        if mean(mid) > accuracy {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// Questions every examinee answers alike (accuracy 0 or 1) add a fixed number of points;
/// the rest are drawn. Returns (fixed points, drawn items with their difficulty).
fn calibrated(nodes: &Nodes, items: &[Item], s: f64) -> (u32, Vec<(u32, f64)>) {
    let mut fixed = 0;
    let mut drawn = Vec::new();
    for item in items {
        if item.accuracy >= 1.0 - 1e-9 {
            fixed += item.points;
        } else if item.accuracy > 1e-9 {
            drawn.push((item.points, difficulty(nodes, item.accuracy, s)));
        }
    }
    (fixed, drawn)
}

/// The distribution of points over `drawn` (points, difficulty) for an examinee of ability θ.
fn distribution(drawn: &[(u32, f64)], theta: f64) -> Vec<f64> {
    let max: usize = drawn.iter().map(|(p, _)| *p as usize).sum();
    let mut dist = vec![0.0; max + 1];
    dist[0] = 1.0;
    let mut top = 0;
    for &(points, b) in drawn {
        let p = logistic(theta - b);
        let points = points as usize;
        for score in (0..=top).rev() {
            let here = dist[score];
            dist[score + points] += here * p;
            dist[score] = here * (1.0 - p);
        }
        top += points;
    }
    dist
}

/// The percentile (0–100) of `points` among examinees of spread `s` on `items`.
fn percentile(nodes: &Nodes, items: &[Item], points: u32, s: f64) -> f64 {
    let (fixed, drawn) = calibrated(nodes, items, s);
    let mut below = 0.0;
    for (z, w) in nodes.z.iter().zip(&nodes.w) {
        let dist = distribution(&drawn, s * z);
        for (score, p) in dist.iter().enumerate() {
            let total = fixed as usize + score;
            match total.cmp(&(points as usize)) {
                std::cmp::Ordering::Less => below += w * p,
                std::cmp::Ordering::Equal => below += 0.5 * w * p,
                std::cmp::Ordering::Greater => {}
            }
        }
    }
    (100.0 * below).clamp(0.0, 100.0)
}

/// The share of examinees of spread `s` who clear both pass marks (the prohibited-choice limit
/// is not modelled: the shares do not say who chose what).
fn pass_rate(nodes: &Nodes, required: &[Item], general: &[Item], marks: (u32, u32), s: f64) -> f64 {
    let (req_fixed, req) = calibrated(nodes, required, s);
    let (gen_fixed, general_drawn) = calibrated(nodes, general, s);
    let at_least = |dist: &[f64], fixed: u32, mark: u32| -> f64 {
        dist.iter()
            .enumerate()
            .filter(|(score, _)| fixed as usize + score >= mark as usize)
            .map(|(_, p)| p)
            .sum()
    };
    nodes
        .z
        .iter()
        .zip(&nodes.w)
        .map(|(z, w)| {
            let theta = s * z;
            w * at_least(&distribution(&req, theta), req_fixed, marks.0)
                * at_least(&distribution(&general_drawn, theta), gen_fixed, marks.1)
        })
        .sum()
}

/// The spread at which `target` of examinees pass, and whether it was reached within
/// [`SPREAD_RANGE`] (else the bound that comes nearest). When the marks lie below the
/// examinees' mean, as they do in the real exam, the pass rate falls as the spread grows (a
/// wider spread sends more examinees below them); above the mean it rises. Either way the
/// rate is searched between the bounds for where it crosses `target`.
fn calibrate_spread(
    nodes: &Nodes,
    required: &[Item],
    general: &[Item],
    marks: (u32, u32),
    target: f64,
) -> (f64, bool) {
    let miss = |s| pass_rate(nodes, required, general, marks, s) - target;
    let (mut lo, mut hi) = SPREAD_RANGE;
    let (at_lo, at_hi) = (miss(lo), miss(hi));
    if at_lo.signum() == at_hi.signum() {
        return (if at_lo.abs() <= at_hi.abs() { lo } else { hi }, false);
    }
    let falling = at_lo > 0.0;
    for _ in 0..22 {
        let mid = 0.5 * (lo + hi);
        if (miss(mid) > 0.0) == falling {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    (0.5 * (lo + hi), true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn items(accuracies: &[f64], points: u32) -> Vec<Item> {
        accuracies
            .iter()
            .map(|&accuracy| Item {
                points,
                accuracy,
                earned: 0,
            })
            .collect()
    }

    /// Past the work budget, a year gets no percentile (and says why); the years before it do.
    #[test]
    fn the_work_is_bounded_across_years() {
        let mut importer = crate::igakuqa::Importer::new();
        let lines: String = [901, 902, 903]
            .iter()
            .flat_map(|exam| {
                (1..=4).map(move |i| {
                    format!(
                        "{{\"problem_id\": \"{exam}A{i}\", \"problem_text\": \"x\", \"choices\": \
                         [\"1\", \"2\"], \"answer\": [\"a\"], \"year\": {}, \
                         \"examinee_accuracy\": 0.7}}\n",
                        1100 + exam
                    )
                })
            })
            .collect();
        importer.add_file("years.jsonl", &lines);
        let questions = importer.finish().unwrap();
        let scored: Vec<QuestionScore> = questions
            .iter()
            .map(|q| {
                crate::score::score_question(
                    q,
                    Some(&"a".into()),
                    crate::score::LetterMode::Lenient,
                )
            })
            .collect();
        let criteria: Vec<_> = [901, 902, 903]
            .iter()
            .map(|exam| (Some(exam.to_string()), Some(1100 + *exam as u16), None))
            .collect();
        // Each year is 4 one-point questions: 4 × 4 = 16 of work; a budget of 40 models two.
        let e = compare_within(&questions, &scored, &criteria, &[], Some(1.0), 40).unwrap();
        let whole: Vec<(Option<&str>, bool)> = e
            .groups
            .iter()
            .map(|g| (g.exam.as_deref(), g.percentile.is_some()))
            .collect();
        assert_eq!(
            whole,
            [
                (Some("901"), true),
                (Some("902"), true),
                (Some("903"), false)
            ]
        );
        assert!(
            e.groups[2].note.starts_with("no percentile"),
            "{}",
            e.groups[2].note
        );
    }

    #[test]
    fn each_difficulty_reproduces_its_accuracy() {
        let nodes = Nodes::new();
        for s in [0.05, 1.0, 3.0] {
            for accuracy in [0.02, 0.3, 0.5, 0.83, 0.99] {
                let b = difficulty(&nodes, accuracy, s);
                let mean: f64 = nodes
                    .z
                    .iter()
                    .zip(&nodes.w)
                    .map(|(z, w)| w * logistic(s * z - b))
                    .sum();
                assert!((mean - accuracy).abs() < 1e-9, "{s} {accuracy}: {mean}");
            }
        }
    }

    /// Four one-point questions every examinee answers right half the time, abilities all but
    /// alike: scores are Binomial(4, ½) = 1, 4, 6, 4, 1 sixteenths. Three points beat 11/16
    /// and tie 4/16: the 81.25th percentile; four points beat 15/16 and tie 1/16: 96.875.
    #[test]
    fn the_percentile_matches_a_hand_count_when_abilities_are_alike() {
        let nodes = Nodes::new();
        let four = items(&[0.5; 4], 1);
        let at = |points| percentile(&nodes, &four, points, 1e-6);
        assert!((at(3) - 81.25).abs() < 1e-6, "{}", at(3));
        assert!((at(4) - 96.875).abs() < 1e-6, "{}", at(4));
        assert!((at(0) - 3.125).abs() < 1e-6, "{}", at(0));
        // A question everyone answers right adds its points to every examinee alike.
        let mut five = four.clone();
        five.push(Item {
            points: 3,
            accuracy: 1.0,
            earned: 0,
        });
        assert!((percentile(&nodes, &five, 6, 1e-6) - 81.25).abs() < 1e-6);
    }

    /// Against every answer pattern enumerated by hand (2⁵ of them) at each ability.
    #[test]
    fn the_distribution_matches_enumeration() {
        let nodes = Nodes::new();
        let accuracies = [0.9, 0.75, 0.6, 0.35, 0.2];
        let points = [1u32, 3, 1, 1, 3];
        let s = 1.3;
        let drawn: Vec<(u32, f64)> = accuracies
            .iter()
            .zip(points)
            .map(|(&a, p)| (p, difficulty(&nodes, a, s)))
            .collect();
        for theta in [-2.0, 0.0, 1.7] {
            let dist = distribution(&drawn, theta);
            let mut by_hand = vec![0.0; dist.len()];
            for pattern in 0u32..32 {
                let mut p = 1.0;
                let mut score = 0;
                for (k, &(pts, b)) in drawn.iter().enumerate() {
                    let right = logistic(theta - b);
                    if pattern & (1 << k) != 0 {
                        p *= right;
                        score += pts as usize;
                    } else {
                        p *= 1.0 - right;
                    }
                }
                by_hand[score] += p;
            }
            for (a, b) in dist.iter().zip(&by_hand) {
                assert!((a - b).abs() < 1e-12, "{dist:?} vs {by_hand:?}");
            }
        }
    }

    #[test]
    fn the_spread_is_calibrated_to_the_pass_rate() {
        let nodes = Nodes::new();
        let required = items(
            &[0.95, 0.9, 0.85, 0.92, 0.88, 0.97, 0.8, 0.9, 0.93, 0.86],
            1,
        );
        let general: Vec<Item> = (0..40)
            .map(|k| Item {
                points: 1,
                accuracy: 0.45 + 0.5 * f64::from(k) / 40.0,
                earned: 0,
            })
            .collect();
        // Marks well below the examinees' means (8.96 of 10, 27.75 of 40), as in the real exam:
        // with abilities all alike 97% would pass.
        let marks = (7, 22);
        let (s, hit) = calibrate_spread(&nodes, &required, &general, marks, 0.9);
        assert!(hit, "{s}");
        let rate = pass_rate(&nodes, &required, &general, marks, s);
        assert!((rate - 0.9).abs() < 1e-4, "{rate} at spread {s}");
        // A wider spread fails more.
        assert!(pass_rate(&nodes, &required, &general, marks, s + 1.0) < rate);
    }
}
