//! `kokushi score`: scores predictions made anywhere (IgakuQA's `baseline_results` files, or a
//! Kokushi run export) against an exam set, and prints the per-year table, JSON or CSV.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::Context;
use kokushi_shared::Question;
use kokushi_shared::score::{GroupScore, LetterMode, Reply, ScoreOptions, ScoreReport, score_with};
use kokushi_shared::stats::{PairedComparison, compare_paired};

/// Output forms of `kokushi score`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// A table for people.
    Table,
    /// One JSON document (`years`, `overall`, `breakdowns`, …).
    Json,
    /// One CSV row per exam year.
    Csv,
}

/// Reads every predictions file under `paths` (files, or folders of `.jsonl`/`.json` files).
pub fn read_predictions(paths: &[PathBuf]) -> anyhow::Result<BTreeMap<String, Reply>> {
    let mut predictions = BTreeMap::new();
    let mut origin: BTreeMap<String, String> = BTreeMap::new();
    for path in paths {
        let files: Vec<PathBuf> = if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl" || e == "json"))
                .collect();
            files.sort();
            anyhow::ensure!(
                !files.is_empty(),
                "{} holds no .jsonl or .json predictions files",
                path.display()
            );
            files
        } else {
            vec![path.clone()]
        };
        for file in files {
            let name = file.display().to_string();
            let bytes = std::fs::read(&file).with_context(|| format!("cannot read {name}"))?;
            let content = kokushi_shared::igakuqa::text_of(&name, &bytes)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            let mut these = BTreeMap::new();
            kokushi_shared::score::parse_predictions(&name, content, &mut these).map_err(
                |errors| anyhow::anyhow!("{}", crate::import::problems("the predictions", &errors)),
            )?;
            // One prediction per question: the same id in two files is a mistake (a folder
            // given twice, or two models' outputs mixed), not something to resolve silently.
            for (id, prediction) in these {
                if let Some(earlier) = origin.get(&id) {
                    anyhow::bail!("{id:?} has a prediction in both {earlier} and {name}");
                }
                origin.insert(id.clone(), name.clone());
                predictions.insert(id, prediction);
            }
        }
    }
    anyhow::ensure!(!predictions.is_empty(), "no predictions found");
    Ok(predictions)
}

/// Everything `kokushi score` prints, built from parsed inputs.
pub struct Scoring {
    pub report: ScoreReport,
    pub comparison: Option<PairedComparison>,
}

/// Scores `predictions`, and compares with `baseline` (the same questions, another model) if
/// given: exact McNemar test and paired bootstrap of the points difference.
pub fn run(
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    baseline: Option<&BTreeMap<String, Reply>>,
    options: &ScoreOptions,
    packs: &[kokushi_shared::rules::RulePack],
) -> anyhow::Result<Scoring> {
    let report = score_with(questions, predictions, options, packs);
    let comparison = match baseline {
        None => None,
        Some(other) => {
            let second = score_with(questions, other, options, packs);
            // The same questions as every total: those with a published answer.
            let pairs = |r: &ScoreReport| -> Vec<(bool, f64)> {
                r.questions
                    .iter()
                    .filter(|q| !r.unscorable.contains(&q.problem_id))
                    .map(|q| (q.letter_correct, f64::from(q.points_earned)))
                    .collect()
            };
            Some(
                compare_paired(
                    &pairs(&report),
                    &pairs(&second),
                    options.resamples,
                    options.confidence,
                    options.seed,
                )
                .map_err(anyhow::Error::msg)?,
            )
        }
    };
    Ok(Scoring { report, comparison })
}

/// Writes one JSON line per question to `path`, atomically (a temporary file renamed).
pub fn write_per_question(path: &Path, report: &ScoreReport) -> anyhow::Result<()> {
    let mut out = String::new();
    for q in &report.questions {
        out.push_str(&serde_json::to_string(q)?);
        out.push('\n');
    }
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    let tmp = path.with_extension("part");
    std::fs::write(&tmp, out).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| {
        format!(
            "cannot move {} to {} (in {})",
            tmp.display(),
            path.display(),
            dir.map_or_else(|| ".".into(), |d| d.display().to_string())
        )
    })?;
    Ok(())
}

fn year_label(g: &GroupScore) -> (String, String) {
    (
        g.year.map_or_else(|| "-".to_owned(), |y| y.to_string()),
        g.exam.clone().unwrap_or_else(|| "-".to_owned()),
    )
}

fn interval(i: Option<(f64, f64)>, scale: f64, digits: usize) -> String {
    i.map_or_else(String::new, |(lo, hi)| {
        format!("[{:.digits$}, {:.digits$}]", lo * scale, hi * scale)
    })
}

/// The verdict as the table shows it; a provisional one says so (`PASS?`, `fail?`: it rests on
/// a figure of the year's rule pack that stands in for one not yet known).
fn pass_word(g: &GroupScore) -> &'static str {
    match (g.pass, g.provisional) {
        (Some(true), false) => "PASS",
        (Some(true), true) => "PASS?",
        (Some(false), false) => "fail",
        (Some(false), true) => "fail?",
        (None, _) => "-",
    }
}

/// The human table.
pub fn render_table(s: &Scoring, mode: LetterMode, credit: Option<&str>) -> String {
    let r = &s.report;
    let mut out = String::new();
    let pct = (r.options.confidence * 100.0).round();
    let _ = writeln!(
        out,
        "letter match: {} (extraction rules {}); intervals: {pct}% (Wilson for accuracy, \
         bootstrap of {} resamples for points)",
        match mode {
            LetterMode::Strict => "strict (IgakuQA evaluate_main.py)",
            LetterMode::Lenient => "lenient",
        },
        r.rules_version,
        r.options.resamples
    );
    let _ = writeln!(
        out,
        "\n{:<5} {:<5} {:>5} {:>7} {:>7} {:<16} {:>7} {:<16} {:>9} {:>9} {:>5} {:>6} {:>6}  pass",
        "year",
        "exam",
        "qs",
        "correct",
        "acc %",
        "acc CI",
        "points",
        "points CI",
        "required",
        "general",
        "禁忌",
        "exact",
        "seed"
    );
    for g in r.years.iter().chain(std::iter::once(&r.overall)) {
        let (year, exam) = year_label(g);
        let (year, exam) = if std::ptr::eq(g, &r.overall) {
            ("all".to_owned(), String::new())
        } else {
            (year, exam)
        };
        let _ = writeln!(
            out,
            "{:<5} {:<5} {:>5} {:>7} {:>7.1} {:<16} {:>7} {:<16} {:>9} {:>9} {:>5} {:>6} {:>6}  {}",
            year,
            exam,
            g.questions,
            g.correct,
            g.accuracy * 100.0,
            interval(g.accuracy_interval, 100.0, 1),
            format!("{}/{}", g.points, g.points_max),
            interval(g.points_interval, 1.0, 0),
            format!("{}/{}", g.required_points, g.required_max),
            format!("{}/{}", g.general_points, g.general_max),
            g.prohibited_chosen
                .map_or_else(|| "-".to_owned(), |n| n.to_string()),
            g.exact_match,
            g.gestalt_correct,
            pass_word(g),
        );
    }
    for g in &r.years {
        for note in &g.notes {
            let _ = writeln!(out, "note ({}): {note}", year_label(g).0);
        }
    }
    let warned: Vec<_> = r
        .breakdowns
        .iter()
        .filter(|b| b.warning.is_some())
        .collect();
    if !r.breakdowns.is_empty() {
        let _ = writeln!(
            out,
            "\n{:<9} {:<12} {:>5} {:>7} {:>7} {:<16} {:>9}",
            "by", "key", "qs", "correct", "acc %", "acc CI", "points"
        );
        for b in &r.breakdowns {
            let _ = writeln!(
                out,
                "{:<9} {:<12} {:>5} {:>7} {:>7.1} {:<16} {:>9}{}",
                b.by,
                b.key,
                b.questions,
                b.correct,
                b.accuracy * 100.0,
                interval(b.accuracy_interval, 100.0, 1),
                format!("{}/{}", b.points, b.points_max),
                if b.warning.is_some() {
                    "  (too few questions)"
                } else {
                    ""
                }
            );
        }
        if !warned.is_empty() {
            let _ = writeln!(
                out,
                "{} slice(s) have fewer than {} questions: their accuracy is not reliable",
                warned.len(),
                r.options.min_questions
            );
        }
    }
    if let Some(c) = &s.comparison {
        let _ = writeln!(
            out,
            "\npaired with --compare: both correct {}, only this {}, only the other {}, neither {}; \
             exact McNemar p = {:.4}; points difference {:+} {} ; accuracy difference {:+.1} points of %",
            c.both_correct,
            c.only_first,
            c.only_second,
            c.neither,
            c.mcnemar_p,
            c.points_difference,
            interval(Some(c.points_difference_interval), 1.0, 1),
            c.accuracy_difference * 100.0
        );
    }
    if let Some(e) = &r.examinees {
        render_examinees(&mut out, e);
    }
    if !r.unknown_predictions.is_empty() {
        let _ = writeln!(
            out,
            "\n{} prediction(s) name questions the exam set does not have, e.g. {}",
            r.unknown_predictions.len(),
            r.unknown_predictions[0]
        );
    }
    if !r.unscorable.is_empty() {
        let _ = writeln!(
            out,
            "\n{} question(s) have no published answer and are left out of every total: {}",
            r.unscorable.len(),
            r.unscorable.join(", ")
        );
    }
    if let Some(credit) = credit {
        let _ = writeln!(out, "\n{credit}");
    }
    out
}

/// The model against the examinees: percentile per year and section, the questions it got
/// right that most examinees missed and the reverse, and its wrong answers against theirs.
fn render_examinees(out: &mut String, e: &kokushi_shared::examinees::ExamineeComparison) {
    let _ = writeln!(
        out,
        "\nagainst the examinees (Rasch model; questions with examinee accuracy):\n{:<9} {:<9} \
         {:>5} {:>9} {:>14} {:>10}",
        "exam", "section", "qs", "points", "examinee mean", "percentile"
    );
    for g in &e.groups {
        let _ = writeln!(
            out,
            "{:<9} {:<9} {:>5} {:>9} {:>14.1} {:>10}{}",
            g.exam.as_deref().unwrap_or("-"),
            g.section.map_or("whole", |s| s.id()),
            g.questions,
            format!("{}/{}", g.points, g.points_max),
            g.examinee_mean,
            g.percentile.map_or("-".to_owned(), |p| format!("{p:.1}")),
            if g.without_accuracy > 0 {
                format!("  ({} without accuracy left out)", g.without_accuracy)
            } else {
                String::new()
            }
        );
    }
    let mut notes: Vec<(&Option<String>, &str)> = e
        .groups
        .iter()
        .filter(|g| g.section.is_none())
        .map(|g| (&g.exam, g.note.as_str()))
        .collect();
    notes.dedup();
    for (exam, note) in notes {
        let _ = writeln!(out, "  {}: {note}", exam.as_deref().unwrap_or("-"));
    }
    let list = |items: &[kokushi_shared::examinees::ExamineeQuestion]| -> String {
        if items.is_empty() {
            return "none".to_owned();
        }
        items
            .iter()
            .map(|q| format!("{} ({:.0}%)", q.problem_id, q.examinee_accuracy * 100.0))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let _ = writeln!(
        out,
        "right where most examinees missed ({}): {}",
        e.right_where_missed.len(),
        list(&e.right_where_missed)
    );
    let _ = writeln!(
        out,
        "missed where most examinees were right ({}): {}",
        e.missed_where_right.len(),
        list(&e.missed_where_right)
    );
    if let Some(share) = e.same_choice_share {
        let _ = writeln!(
            out,
            "wrong answers on questions with choice shares: {}; the examinees' most common wrong \
             choice in {}; on average {:.0}% of examinees chose as the model did",
            e.wrong_choices.len(),
            e.common_wrong,
            share * 100.0
        );
        for w in &e.wrong_choices {
            let _ = writeln!(
                out,
                "  {}: chose {} ({:.0}% of examinees); their most common wrong choice {} ({:.0}%)",
                w.problem_id,
                w.chosen,
                w.share * 100.0,
                w.most_common,
                w.most_common_share * 100.0
            );
        }
    }
}

/// One JSON document.
pub fn render_json(s: &Scoring) -> anyhow::Result<String> {
    let mut value = serde_json::to_value(&s.report)?;
    if let (Some(map), Some(c)) = (value.as_object_mut(), &s.comparison) {
        map.insert("comparison".to_owned(), serde_json::to_value(c)?);
    }
    Ok(serde_json::to_string_pretty(&value)? + "\n")
}

/// One CSV row per exam year, then `all` (the exam's label comes from the uploaded file: it
/// is text, defused like any other).
pub fn render_csv(s: &Scoring) -> String {
    use kokushi_shared::csv::{Field, Writer};
    let mut w = Writer::new(&[
        "year",
        "exam",
        "questions",
        "correct",
        "accuracy",
        "accuracy_low",
        "accuracy_high",
        "correct_strict",
        "correct_lenient",
        "exact_match",
        "gestalt_correct",
        "parse_failures",
        "points",
        "points_max",
        "required_points",
        "required_max",
        "general_points",
        "general_max",
        "prohibited_chosen",
        "pass",
        "pass_provisional",
        "rules_version",
    ]);
    let r = &s.report;
    for (g, overall) in r
        .years
        .iter()
        .map(|g| (g, false))
        .chain(std::iter::once((&r.overall, true)))
    {
        let (year, exam) = if overall {
            ("all".to_owned(), String::new())
        } else {
            let (y, e) = year_label(g);
            (y.replace('-', ""), e.replace('-', ""))
        };
        w.record(&[
            Field::owned(year),
            Field::owned(exam),
            g.questions.into(),
            g.correct.into(),
            g.accuracy.into(),
            g.accuracy_interval.map(|(l, _)| l).into(),
            g.accuracy_interval.map(|(_, h)| h).into(),
            g.correct_strict.into(),
            g.correct_lenient.into(),
            g.exact_match.into(),
            g.gestalt_correct.into(),
            g.parse_failures.into(),
            g.points.into(),
            g.points_max.into(),
            g.required_points.into(),
            g.required_max.into(),
            g.general_points.into(),
            g.general_max.into(),
            g.prohibited_chosen.into(),
            g.pass.into(),
            g.pass.map(|_| g.provisional).into(),
            g.criteria.as_ref().map(|c| c.pack_version).into(),
        ]);
    }
    w.finish()
}

/// The tally and the text metrics of the answered questions among `scores` (a question
/// without a published answer counts in neither).
pub fn tally_and_metrics(
    scores: &[kokushi_shared::score::QuestionScore],
    unscorable: &[String],
) -> (
    kokushi_shared::metric::Tally,
    kokushi_shared::api::RunMetrics,
) {
    let mut tally = kokushi_shared::metric::Tally::default();
    let mut metrics = kokushi_shared::api::RunMetrics::default();
    for s in scores {
        if s.prediction.is_none() || unscorable.contains(&s.problem_id) {
            continue;
        }
        tally.add(s.letter_correct, s.parse_failed, s.points);
        metrics.questions += 1;
        metrics.correct_strict += u32::from(s.letter_correct_strict);
        metrics.exact_match += u32::from(s.exact_match);
        metrics.gestalt_correct += u32::from(s.gestalt_correct == Some(true));
    }
    (tally, metrics)
}

/// What the leaderboard keeps of a run, from one scoring of its answers.
#[derive(Debug, Clone, Default)]
pub struct FinalScores {
    /// Score and pass/fail per exam year.
    pub years: Vec<kokushi_shared::api::YearVerdict>,
    /// The text metrics over the answered questions.
    pub metrics: kokushi_shared::api::RunMetrics,
    /// The run's results by question facet, for filtered leaderboards.
    pub cells: Cells,
}

/// A run's results by question facet (`db::cells`).
pub type Cells = BTreeMap<crate::db::cells::CellKey, crate::db::cells::CellCounts>;

/// The leaderboard's options: no bootstrap (it shows no interval of points), no comparison
/// with examinees.
fn board_options() -> ScoreOptions {
    ScoreOptions {
        resamples: 0,
        examinees: false,
        ..ScoreOptions::default()
    }
}

/// A run's score per exam year (accuracy, points and pass/fail), its text metrics and its
/// results by question facet, for the leaderboard.
pub fn final_scores(
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    packs: &[kokushi_shared::rules::RulePack],
) -> FinalScores {
    let report = score_with(questions, predictions, &board_options(), packs);
    let (_, metrics) = tally_and_metrics(&report.questions, &report.unscorable);
    let cells = crate::db::cells::cells_of(questions, &report.questions, &report.unscorable);
    let years = report
        .years
        .into_iter()
        .map(|g| kokushi_shared::api::YearVerdict {
            exam: g.exam,
            year: g.year,
            questions: g.questions,
            accuracy: g.accuracy,
            points: g.points,
            points_max: g.points_max,
            pass: g.pass,
            provisional: g.provisional,
            rules_version: g.criteria.as_ref().map(|c| c.pack_version),
        })
        .collect();
    FinalScores {
        years,
        metrics,
        cells,
    }
}

/// A run's results by question facet alone (a run still answering, or one whose rule packs
/// changed).
pub fn cells(
    questions: &[Question],
    predictions: &BTreeMap<String, Reply>,
    packs: &[kokushi_shared::rules::RulePack],
) -> Cells {
    let report = score_with(questions, predictions, &board_options(), packs);
    crate::db::cells::cells_of(questions, &report.questions, &report.unscorable)
}
