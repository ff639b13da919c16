//! LLM judges: a model that grades a grading task's items blind with the annotators' rubric,
//! and the figures that say whether its grades can be trusted.
//!
//! A judge is a model (with its adapter and prompt settings) and a versioned judge prompt. The
//! prompt is a template filled from exactly what an annotator sees of an item
//! ([`crate::grading::BlindItem`]: the question, its choices, the published answer, the model's
//! output and what the parser read) — never the model, adapter or run. The judge answers the
//! template as a multiple-choice question whose choices are the rubric's verdicts
//! ([`VERDICT_CHOICES`]), so every scoring mode a run has works for it (generation read by the
//! extraction rules, or the log-likelihood of each verdict's letter, which always gives one).
//! A generated reply may add a rationale score (`根拠: 4`) and flags (`フラグ: unsafe`) on
//! lines of their own.
//!
//! Calibration ([`calibrate`]): the judge's verdicts against the human ones (agreed or
//! adjudicated) of the same items — Cohen's κ with its interval and the confusion matrix — and
//! against each annotator, beside the annotators' own pairwise κ. A judge is *calibrated*
//! ([`Gate`]) only when, on a calibration task the project names, the lower end of its κ's 95%
//! interval against the human verdicts reaches the project's threshold over at least
//! [`MIN_CALIBRATION_ITEMS`] items. Judge grades never feed the human-adjusted accuracy.

use serde::{Deserialize, Serialize};

use crate::agreement::{self, KappaEstimate};
use crate::extract::Extracted;
use crate::grading::{Flag, Verdict};

/// The built-in judge prompt's name; its version is [`BUILTIN_VERSION`].
pub const BUILTIN_NAME: &str = "judge_ja";
/// The built-in prompt's version (a change of [`BUILTIN_TEMPLATE`] is a new version).
pub const BUILTIN_VERSION: u32 = 1;

/// The built-in judge prompt. Placeholders: `{question}`, `{choices}` (one `a. …` line per
/// choice), `{gold}`, `{output}`, `{parsed}` ([`PLACEHOLDERS`]).
pub const BUILTIN_TEMPLATE: &str = "あなたは医師国家試験の採点者です。次の問題に対する受験者の解答を、公式の正答と照らして採点してください。\n\
【問題】\n{question}\n\
【選択肢】\n{choices}\n\
【公式の正答】{gold}\n\
【受験者の解答】\n{output}\n\
【自動読み取り】{parsed}\n\
受験者の解答はどれに当たりますか。";

/// The placeholders a judge template may use; `{output}` is required.
pub const PLACEHOLDERS: [&str; 5] = ["question", "choices", "gold", "output", "parsed"];

/// The most characters a judge template may have.
pub const MAX_TEMPLATE_CHARS: usize = 8_000;

/// The choices the judge picks among, in [`Verdict::ALL`] order (letter a = correct …).
pub const VERDICT_CHOICES: [&str; 4] = [
    "正解（公式の正答と一致する）",
    "部分正解（正答の一部のみ一致する）",
    "不正解",
    "判読不能（解答から選択肢を読み取れない）",
];

/// Items a calibration task must have with both a human verdict and a judge grade before the
/// gate can open.
pub const MIN_CALIBRATION_ITEMS: u32 = 20;

/// The κ threshold a project starts with: the lower end of the judge's interval must reach it
/// ("substantial" agreement in Landis and Koch's terms).
pub const DEFAULT_THRESHOLD: f64 = 0.6;

/// What of an item the judge sees: exactly the annotator's blind view.
#[derive(Debug, Clone, Copy)]
pub struct ItemView<'a> {
    pub question: &'a str,
    pub choices: &'a [String],
    pub gold: &'a str,
    pub output: &'a str,
    pub parsed: &'a str,
}

/// Checks a judge template: not empty, at most [`MAX_TEMPLATE_CHARS`], `{output}` present, and
/// every `{…}` one of [`PLACEHOLDERS`] (so a typo is an error, not a literal brace).
pub fn validate_template(template: &str) -> Result<(), String> {
    if template.trim().is_empty() {
        return Err("the judge template is empty".to_owned());
    }
    let chars = template.chars().count();
    if chars > MAX_TEMPLATE_CHARS {
        return Err(format!(
            "the judge template has {chars} characters; at most {MAX_TEMPLATE_CHARS}"
        ));
    }
    let mut rest = template;
    let mut seen_output = false;
    while let Some(open) = rest.find('{') {
        let after = &rest[open + 1..];
        let Some(close) = after.find('}') else {
            return Err(format!(
                "the judge template has a '{{' with no '}}' after it: {:?}",
                after.chars().take(20).collect::<String>()
            ));
        };
        let name = &after[..close];
        if !PLACEHOLDERS.contains(&name) {
            return Err(format!(
                "the judge template names {{{name}}}; known placeholders: {}",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(", ")
            ));
        }
        seen_output |= name == "output";
        rest = &after[close + 1..];
    }
    if !seen_output {
        return Err(
            "the judge template must show the answer to grade: put {output} in it".to_owned(),
        );
    }
    Ok(())
}

/// The template filled with `item` (placeholders replaced in one pass, so text of the item
/// that looks like a placeholder stays as it is).
pub fn render(template: &str, item: &ItemView<'_>) -> String {
    let choices = item
        .choices
        .iter()
        .enumerate()
        .map(|(i, c)| format!("{}. {c}", crate::exam::choice_letter(i)))
        .collect::<Vec<_>>()
        .join("\n");
    let parsed = if item.parsed.is_empty() {
        "（なし）"
    } else {
        item.parsed
    };
    let mut out = String::with_capacity(template.len() + item.question.len() + item.output.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let value = after.find('}').and_then(|close| {
            let value = match &after[..close] {
                "question" => item.question,
                "choices" => choices.as_str(),
                "gold" => item.gold,
                "output" => item.output,
                "parsed" => parsed,
                _ => return None,
            };
            Some((value, close))
        });
        match value {
            Some((value, close)) => {
                out.push_str(value);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The verdict choices as a question's choices.
pub fn verdict_choices() -> Vec<String> {
    VERDICT_CHOICES.iter().map(|c| (*c).to_owned()).collect()
}

/// The verdict a judge's answer gives: exactly one letter among the verdicts'; `None` (the
/// judge abstained) for none, several, or a letter past them.
pub fn verdict_of(extracted: &Extracted) -> Option<Verdict> {
    let Extracted::Letters { letters } = extracted else {
        return None;
    };
    match letters.as_slice() {
        [one] => crate::exam::letter_index(*one).and_then(|i| Verdict::ALL.get(i).copied()),
        _ => None,
    }
}

/// The rationale score a reply gives on a line of its own (`根拠: 4`, `rationale: 4`), 1–5.
pub fn rationale_of(reply: &str) -> Option<u8> {
    reply.lines().find_map(|line| {
        let value = labelled(line, &["根拠", "rationale"])?;
        let digit = value.chars().find(|c| !c.is_whitespace())?;
        let n = u8::try_from(digit.to_digit(10)?).ok()?;
        (1..=5).contains(&n).then_some(n)
    })
}

/// The flags a reply raises on a line of its own (`フラグ: unsafe, gold_wrong`).
pub fn flags_of(reply: &str) -> Vec<Flag> {
    let mut flags: Vec<Flag> = reply
        .lines()
        .filter_map(|line| labelled(line, &["フラグ", "flags"]))
        .flat_map(|value| {
            value
                .split([',', '、', ' ', '　'])
                .filter_map(|word| Flag::from_id(word.trim()))
                .collect::<Vec<_>>()
        })
        .collect();
    flags.sort_unstable();
    flags.dedup();
    flags
}

/// What follows `label:` (or `label：`) at the start of `line`, for any of `labels`.
fn labelled<'a>(line: &'a str, labels: &[&str]) -> Option<&'a str> {
    let line = line.trim_start();
    labels.iter().find_map(|label| {
        let rest = line
            .get(..label.len())
            .filter(|head| head.eq_ignore_ascii_case(label))
            .map(|_| &line[label.len()..])?;
        let rest = rest.trim_start();
        rest.strip_prefix(':').or_else(|| rest.strip_prefix('：'))
    })
}

/// The categories of a judge-versus-human table: the four verdicts, then "no verdict" (the
/// judge abstained or could not be asked), which always counts as a disagreement.
pub const JUDGE_CATEGORIES: usize = 5;

/// The category index of a judge's verdict, "no verdict" last.
pub fn judge_category(verdict: Option<Verdict>) -> usize {
    verdict.map_or(JUDGE_CATEGORIES - 1, Verdict::index)
}

/// One item as calibration sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct CalibrationItem {
    /// The human verdict (agreed or adjudicated), if the item has one yet.
    pub human: Option<Verdict>,
    /// Each annotator's current verdict on it: (annotator, verdict).
    pub annotators: Vec<(String, Verdict)>,
    /// The judge's grade: `None` when the judge has not graded it; `Some(None)` when it
    /// graded it without a verdict.
    pub judge: Option<Option<Verdict>>,
}

/// The judge against the human verdicts of a task.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeAgreement {
    /// Items with a human verdict and a judge grade: the figures' denominator.
    pub items: u32,
    /// Of those, where the judge gave no verdict (counted as disagreements).
    pub abstained: u32,
    /// Items the judge graded that have no human verdict yet (left out).
    pub unresolved: u32,
    pub percent: Option<f64>,
    /// Cohen's κ with its 95% interval; `None` when undefined.
    pub cohen: Option<KappaEstimate>,
    /// What the gate reads: the lower of κ's interval's lower end and κ recomputed at the
    /// lower end of the observed agreement's 95% Wilson interval (which, unlike the
    /// large-sample interval, does not shrink to nothing when every item agrees: 20 of 20 is not
    /// proof).
    pub lower_bound: Option<f64>,
    /// `confusion[h][j]`: items humans put in verdict `h` ([`Verdict::ALL`] order) and the judge
    /// in `j` (the same order, then "no verdict").
    pub confusion: Vec<Vec<u32>>,
    /// The judge against each annotator, on the items both graded.
    pub annotators: Vec<JudgeVsAnnotator>,
    /// The annotators' own pairwise κ (mean over pairs with one), to read the judge's against.
    pub annotator_kappa: Option<f64>,
}

/// The judge against one annotator.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeVsAnnotator {
    pub annotator: String,
    pub items: u32,
    pub percent: Option<f64>,
    pub cohen: Option<KappaEstimate>,
}

/// Confidence of the intervals calibration shows and gates on.
pub const CONFIDENCE: f64 = 0.95;

fn count(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The judge's agreement with the humans over `items`.
pub fn calibrate(items: &[CalibrationItem]) -> JudgeAgreement {
    let mut confusion = vec![vec![0u32; JUDGE_CATEGORIES]; Verdict::ALL.len()];
    let (mut humans, mut judged) = (Vec::new(), Vec::new());
    let mut abstained = 0usize;
    let mut unresolved = 0usize;
    for item in items {
        let Some(judge) = item.judge else { continue };
        let Some(human) = item.human else {
            unresolved += 1;
            continue;
        };
        let j = judge_category(judge);
        confusion[human.index()][j] += 1;
        humans.push(human.index());
        judged.push(j);
        abstained += usize::from(judge.is_none());
    }
    // Per annotator: the items both graded.
    let mut names: Vec<&str> = items
        .iter()
        .flat_map(|i| i.annotators.iter().map(|(n, _)| n.as_str()))
        .collect();
    names.sort_unstable();
    names.dedup();
    let mut annotators = Vec::new();
    for name in &names {
        let (mut a, mut j) = (Vec::new(), Vec::new());
        for item in items {
            let Some(judge) = item.judge else { continue };
            if let Some((_, v)) = item.annotators.iter().find(|(n, _)| n == name) {
                a.push(v.index());
                j.push(judge_category(judge));
            }
        }
        if a.is_empty() {
            continue;
        }
        annotators.push(JudgeVsAnnotator {
            annotator: (*name).to_owned(),
            items: count(a.len()),
            percent: agreement::percent_agreement(&a, &j),
            cohen: agreement::cohen_kappa_pairs(&a, &j, JUDGE_CATEGORIES, CONFIDENCE),
        });
    }
    // The annotators among themselves.
    let mut kappas = Vec::new();
    for (i, x) in names.iter().enumerate() {
        for y in &names[i + 1..] {
            let (mut a, mut b) = (Vec::new(), Vec::new());
            for item in items {
                let vx = item.annotators.iter().find(|(n, _)| n == x);
                let vy = item.annotators.iter().find(|(n, _)| n == y);
                if let (Some((_, vx)), Some((_, vy))) = (vx, vy) {
                    a.push(vx.index());
                    b.push(vy.index());
                }
            }
            if let Some(k) = agreement::cohen_kappa_pairs(&a, &b, Verdict::ALL.len(), CONFIDENCE) {
                kappas.push(k.kappa);
            }
        }
    }
    let cohen = agreement::cohen_kappa_pairs(&humans, &judged, JUDGE_CATEGORIES, CONFIDENCE);
    JudgeAgreement {
        items: count(humans.len()),
        abstained: count(abstained),
        unresolved: count(unresolved),
        percent: agreement::percent_agreement(&humans, &judged),
        lower_bound: cohen.and_then(|k| {
            let asymptotic = k.interval?.0;
            Some(asymptotic.min(wilson_kappa_lower(&confusion)?))
        }),
        cohen,
        confusion,
        annotators,
        annotator_kappa: (!kappas.is_empty())
            .then(|| kappas.iter().sum::<f64>() / kappas.len() as f64),
    }
}

/// κ at the lower end of the 95% Wilson interval of the observed agreement, with the chance
/// agreement of `confusion`'s margins; `None` when undefined.
fn wilson_kappa_lower(confusion: &[Vec<u32>]) -> Option<f64> {
    let n: u64 = confusion.iter().flatten().map(|&c| u64::from(c)).sum();
    if n == 0 {
        return None;
    }
    let agree: u64 = (0..confusion.len())
        .map(|i| u64::from(confusion[i][i]))
        .sum();
    let nf = n as f64;
    let expected: f64 = (0..JUDGE_CATEGORIES)
        .map(|c| {
            let row: u64 = confusion
                .get(c)
                .map_or(0, |r| r.iter().map(|&x| u64::from(x)).sum());
            let col: u64 = confusion.iter().map(|r| u64::from(r[c])).sum();
            (row as f64 / nf) * (col as f64 / nf)
        })
        .sum();
    if expected >= 1.0 {
        return None;
    }
    let (lower, _) = crate::stats::wilson_interval(agree, n, CONFIDENCE)?;
    Some(((lower - expected) / (1.0 - expected)).max(-1.0))
}

/// Whether a judge's grades may be used, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Gate {
    pub calibrated: bool,
    /// The project's threshold on the lower end of κ's 95% interval.
    pub threshold: f64,
    /// The judge run on a calibration task the decision rests on, if any.
    pub calibration_run: Option<i64>,
    /// The decision in words.
    pub reason: String,
}

/// The gate's decision from the judge's agreement on a calibration task (`None`: the same judge
/// has not graded a calibration task of this family).
pub fn gate(threshold: f64, calibration: Option<(i64, &JudgeAgreement)>) -> Gate {
    let Some((run, figures)) = calibration else {
        return Gate {
            calibrated: false,
            threshold,
            calibration_run: None,
            reason: "uncalibrated: this judge (model, adapter, prompt and settings) has not \
                     graded a calibration task of this exam set; the project's owners name \
                     calibration tasks"
                .to_owned(),
        };
    };
    let lower = figures.lower_bound;
    let (calibrated, reason) = if figures.items < MIN_CALIBRATION_ITEMS {
        (
            false,
            format!(
                "uncalibrated: {} item(s) of the calibration task have both a human verdict and \
                 this judge's grade; at least {MIN_CALIBRATION_ITEMS} are needed",
                figures.items
            ),
        )
    } else {
        match (figures.cohen, lower) {
            (Some(k), Some(lower)) if lower >= threshold => (
                true,
                format!(
                    "calibrated: κ {:.2} (lower bound {lower:.2}) on {} items reaches the \
                     threshold {threshold:.2}",
                    k.kappa, figures.items
                ),
            ),
            (Some(k), Some(lower)) => (
                false,
                format!(
                    "uncalibrated: κ {:.2} (lower bound {lower:.2}) on {} items is below \
                     the threshold {threshold:.2}",
                    k.kappa, figures.items
                ),
            ),
            _ => (
                false,
                format!(
                    "uncalibrated: κ is undefined on the {} items (one verdict only)",
                    figures.items
                ),
            ),
        }
    };
    Gate {
        calibrated,
        threshold,
        calibration_run: Some(run),
        reason,
    }
}

/// A judge prompt: the built-in one or a version a project stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgePrompt {
    pub name: String,
    pub version: u32,
    /// SHA-256 of the template, hex: what a judge's lineage names.
    pub hash: String,
    pub template: String,
    pub builtin: bool,
    pub created_by: String,
    pub created_at: String,
}

/// `POST /api/judge-prompts`: a new version of a project's judge prompt (version 1 for a new
/// name).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateJudgePrompt {
    pub name: String,
    pub template: String,
}

/// `POST /api/grading/tasks/{id}/judges`: a judge grades the task's items.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateJudgeRun {
    /// The judge model: a name in the model store, or `openai:<base-url>#<model>`.
    pub model: String,
    #[serde(default)]
    pub adapter: Option<String>,
    /// The judge prompt's name ([`BUILTIN_NAME`] when absent) and version (the latest when
    /// absent).
    #[serde(default)]
    pub prompt: Option<String>,
    #[serde(default)]
    pub prompt_version: Option<u32>,
    /// How the verdict is chosen: the log-likelihood of each verdict's letter (the default:
    /// always one verdict) or a generated reply read by the extraction rules.
    #[serde(default = "loglik")]
    pub scoring: crate::job::Scoring,
    /// The prompt format the filled template is put in (`chatml_ja_v1` when absent), or
    /// `chat_template`.
    #[serde(default)]
    pub prompt_format: Option<String>,
    /// The longest reply, for generation (64 when absent).
    #[serde(default)]
    pub max_new_tokens: Option<u32>,
    #[serde(default)]
    pub priority: crate::job::Priority,
}

fn loglik() -> crate::job::Scoring {
    crate::job::Scoring::Loglik
}

/// A judge run as its researchers see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeRunSummary {
    pub id: i64,
    pub task_id: i64,
    pub model: String,
    pub adapter: Option<String>,
    pub prompt: String,
    pub prompt_version: u32,
    pub prompt_hash: String,
    /// `generation` or `loglik`.
    pub scoring: String,
    /// The prompt id the answers record (`chatml_ja_v1`, `chat_template:<hash>` …).
    pub prompt_format: String,
    /// One judge is one model, adapter, prompt and settings: runs with the same key are the
    /// same judge, so a calibration carries over between them.
    pub judge_key: String,
    pub status: crate::api::RunStatus,
    pub error: Option<String>,
    pub items: u32,
    pub graded: u32,
    pub worker: Option<String>,
    pub model_info: Option<String>,
    pub created_by: String,
    pub created_at: String,
    pub finished_at: Option<String>,
    /// The estimate made as it was queued, and what it took.
    #[serde(default)]
    pub cost: crate::cost::Cost,
}

/// The judge's grade of one item, beside the human verdict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeItemGrade {
    pub item_id: i64,
    pub problem_id: String,
    /// `None`: the judge gave no verdict.
    pub verdict: Option<Verdict>,
    pub rationale: Option<u8>,
    pub flags: Vec<Flag>,
    pub raw_output: String,
    pub error: Option<String>,
    /// The human verdict (agreed or adjudicated), if there is one yet.
    pub human: Option<Verdict>,
}

/// `GET /api/grading/tasks/{id}/judges`: each judge run on the task with its agreement, its
/// gate, and its grades (disagreements with the humans first).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgeRunDetail {
    pub run: JudgeRunSummary,
    pub agreement: JudgeAgreement,
    pub gate: Gate,
    /// Whether the task is one of the project's calibration tasks.
    pub calibration_task: bool,
    pub grades: Vec<JudgeItemGrade>,
}

/// A project's judging settings (`GET`/`POST /api/judging`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct JudgingSettings {
    /// The lower end of κ's 95% interval a judge must reach on a calibration task.
    pub threshold: f64,
    /// The grading tasks judges are calibrated on.
    pub calibration_tasks: Vec<i64>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(human: Option<Verdict>, judge: Option<Option<Verdict>>) -> CalibrationItem {
        CalibrationItem {
            human,
            annotators: Vec::new(),
            judge,
        }
    }

    #[test]
    fn templates_are_checked_and_filled_once() {
        assert!(validate_template(BUILTIN_TEMPLATE).is_ok());
        assert!(validate_template("").is_err());
        assert!(
            validate_template("{question}")
                .unwrap_err()
                .contains("{output}")
        );
        assert!(
            validate_template("{output} {modle}")
                .unwrap_err()
                .contains("{modle}")
        );
        assert!(validate_template("{output").unwrap_err().contains("no '}'"));
        let choices = vec!["甲".to_owned(), "乙".to_owned()];
        let view = ItemView {
            question: "問 {gold}",
            choices: &choices,
            gold: "b",
            output: "答え：b",
            parsed: "",
        };
        assert_eq!(
            render(
                "Q={question}\n{choices}\nG={gold} O={output} P={parsed} {x",
                &view
            ),
            "Q=問 {gold}\na. 甲\nb. 乙\nG=b O=答え：b P=（なし） {x"
        );
    }

    #[test]
    fn verdicts_rationale_and_flags_are_read() {
        let one = |l: char| Extracted::Letters { letters: vec![l] };
        assert_eq!(verdict_of(&one('a')), Some(Verdict::Correct));
        assert_eq!(verdict_of(&one('d')), Some(Verdict::Unparseable));
        assert_eq!(verdict_of(&one('e')), None);
        assert_eq!(
            verdict_of(&Extracted::Letters {
                letters: vec!['a', 'c']
            }),
            None
        );
        assert_eq!(verdict_of(&Extracted::Unparsed), None);
        assert_eq!(rationale_of("c\n根拠：4\n"), Some(4));
        assert_eq!(rationale_of("c\nRationale: 9"), None);
        assert_eq!(rationale_of("根拠のない答え 3"), None);
        assert_eq!(
            flags_of("b\nフラグ: unsafe、gold_wrong\nflags: unsafe"),
            vec![Flag::GoldWrong, Flag::Unsafe]
        );
        assert!(flags_of("unsafe").is_empty());
    }

    /// Counted by hand: humans C C C I I I P U, judge C C I I I none C U.
    #[test]
    fn calibration_matches_a_hand_count() {
        use Verdict::{Correct as C, Incorrect as I, Partial as P, Unparseable as U};
        let pairs = [
            (C, Some(C)),
            (C, Some(C)),
            (C, Some(I)),
            (I, Some(I)),
            (I, Some(I)),
            (I, None),
            (P, Some(C)),
            (U, Some(U)),
        ];
        let mut items: Vec<CalibrationItem> = pairs
            .iter()
            .map(|(h, j)| item(Some(*h), Some(*j)))
            .collect();
        items.push(item(None, Some(Some(C)))); // not resolved by humans yet
        items.push(item(Some(C), None)); // not graded by the judge yet
        let a = calibrate(&items);
        assert_eq!((a.items, a.abstained, a.unresolved), (8, 1, 1));
        // Agreement 5 of 8. Rows (human) C 3, P 1, I 3, U 1; columns (judge) C 3, P 0, I 3,
        // U 1, none 1. pe = (3·3 + 1·0 + 3·3 + 1·1 + 0·1) / 64 = 19/64;
        // κ = (8·5 − 19) / (64 − 19) = 21/45.
        assert_eq!(a.percent, Some(5.0 / 8.0));
        let k = a.cohen.expect("defined");
        assert!((k.kappa - 21.0 / 45.0).abs() < 1e-12, "{}", k.kappa);
        assert_eq!(a.confusion[0], vec![2, 0, 1, 0, 0]);
        assert_eq!(a.confusion[1], vec![1, 0, 0, 0, 0]);
        assert_eq!(a.confusion[2], vec![0, 0, 2, 0, 1]);
        assert_eq!(a.confusion[3], vec![0, 0, 0, 1, 0]);
        // Too few items for the gate, whatever κ is.
        let g = gate(0.2, Some((7, &a)));
        assert!(
            !g.calibrated && g.reason.contains("at least 20"),
            "{}",
            g.reason
        );
        assert!(!gate(0.2, None).calibrated);
    }

    #[test]
    fn the_gate_opens_on_the_lower_bound_only() {
        use Verdict::{Correct as C, Incorrect as I};
        // 40 items, the judge agrees on 38.
        let mut items = Vec::new();
        for k in 0..40 {
            let h = if k % 2 == 0 { C } else { I };
            let j = if k < 2 { if h == C { I } else { C } } else { h };
            items.push(item(Some(h), Some(Some(j))));
        }
        let a = calibrate(&items);
        let k = a.cohen.expect("defined");
        let lower = a.lower_bound.expect("a lower bound");
        let (asymptotic, _) = k.interval.expect("interval");
        assert!(k.kappa > 0.85 && lower < k.kappa && lower <= asymptotic);
        assert!(gate(lower - 0.01, Some((1, &a))).calibrated);
        let g = gate(lower + 0.01, Some((1, &a)));
        assert!(!g.calibrated && g.reason.contains("below"), "{}", g.reason);
    }

    /// 20 of 20 agreed, split 18/2: the large-sample interval is [1, 1], but a 90%-accurate
    /// judge gets there by luck one time in eight; the Wilson bound keeps the gate shut.
    #[test]
    fn a_lucky_perfect_score_on_few_items_is_not_proof() {
        use Verdict::{Correct as C, Incorrect as I};
        let items: Vec<CalibrationItem> = (0..20)
            .map(|k| {
                let v = if k < 18 { C } else { I };
                item(Some(v), Some(Some(v)))
            })
            .collect();
        let a = calibrate(&items);
        assert_eq!(a.cohen.and_then(|k| k.interval), Some((1.0, 1.0)));
        // Wilson: 20/(20 + 1.96²) = 0.839; pe = 0.82; (0.839 − 0.82)/0.18 = 0.11.
        let lower = a.lower_bound.expect("bound");
        assert!((lower - 0.106).abs() < 0.01, "{lower}");
        let g = gate(0.6, Some((1, &a)));
        assert!(!g.calibrated, "{}", g.reason);
    }

    #[test]
    fn annotators_are_compared_one_by_one() {
        use Verdict::{Correct as C, Incorrect as I};
        let items: Vec<CalibrationItem> = [(C, C, C), (I, I, C), (C, I, C), (I, I, I)]
            .iter()
            .map(|(x, y, j)| CalibrationItem {
                human: None,
                annotators: vec![("x".to_owned(), *x), ("y".to_owned(), *y)],
                judge: Some(Some(*j)),
            })
            .collect();
        let a = calibrate(&items);
        assert_eq!(a.items, 0);
        assert_eq!(a.annotators.len(), 2);
        assert_eq!(a.annotators[0].annotator, "x");
        assert_eq!(a.annotators[0].percent, Some(0.75));
        assert_eq!(a.annotators[1].percent, Some(0.5));
        // x and y agree on 3 of 4: rows C 2, I 2; columns C 1, I 3; pe = (2+6)/16 = 1/2;
        // κ = (0.75 − 0.5) / 0.5 = 0.5.
        assert!((a.annotator_kappa.expect("pairs") - 0.5).abs() < 1e-12);
    }
}
