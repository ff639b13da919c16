//! `kokushi score`: predictions made anywhere (IgakuQA's `baseline_results` files, a Kokushi
//! run export, `kokushi eval`'s lines) scored against an exam set with
//! `kokushi_backend::scoring`, optionally beside a second model's, and printed as a per-year
//! table, JSON or CSV.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kokushi_backend::scoring::OutputFormat;

use super::flags::SetArgs;

pub const SCORE_HELP: &str =
    "Score predictions made anywhere against an exam set, as IgakuQA and the \
seed papers count them, and print per exam year: questions, correct, accuracy with its Wilson \
interval, points with a bootstrap interval, required and general points, prohibited choices \
chosen and pass/fail against the year's criteria: its rule pack (built in for the 112th to \
the 120th exams, 2018-2026; docs/rule-packs.md). A verdict resting on a figure not yet \
announced is provisional: PASS? or fail? in the table, pass_provisional in the CSV, \
provisional in the JSON, with the figures standing in named in the notes.

Where the exam set carries each question's examinee_accuracy (and, optionally, choice_shares), \
the model is compared with the examinees: its percentile among them per year and section \
(Rasch model, the spread of abilities calibrated to the year's announced pass rate; \
--examinee-spread fixes it), the questions it got right that most examinees missed and the \
reverse, and whether its wrong answers are the examinees' common wrong answers \
(docs/scoring.md).

Predictions are IgakuQA's baseline_results files (one JSON object a line: {\"problem_id\": \
\"116A1\", \"prediction\": \"c\", ...}; one file per block or one for all, or a folder of \
them) or a Kokushi run export (GET /api/runs/ID). A question without a prediction counts as \
wrong and is reported.

Letter matching: --mode strict reproduces IgakuQA's evaluate_main.py (split on \",\" without \
trimming); --mode lenient (the default) reads letters in every form models write them \
(docs/scoring.md). Both counts are always reported; the mode picks the one that earns points.

Examples:
  kokushi score --exam-set ../shared/data/igakuqa --predictions baseline_results/2022
  kokushi score --exam-set data/igakuqa/2022 --predictions run-7.json --format json
  kokushi score --exam-set data/igakuqa --predictions a.jsonl --compare b.jsonl
  kokushi score --exam-set data/igakuqa --predictions out.jsonl --per-question scored.jsonl
  kokushi score --exam-set 120/ --predictions out.jsonl --rules medical-120-announced.json";

#[derive(Args)]
pub struct ScoreArgs {
    /// The exam set: .jsonl/.csv files or folders of them (repeatable).
    #[arg(long = "exam-set", required = true, num_args = 1..)]
    exam_set: Vec<PathBuf>,
    #[command(flatten)]
    set: SetArgs,
    /// Predictions files, or folders of .jsonl/.json files (repeatable).
    #[arg(long, required = true, num_args = 1..)]
    predictions: Vec<PathBuf>,
    /// Another model's predictions on the same questions: adds an exact McNemar test and a
    /// paired bootstrap of the points difference.
    #[arg(long, num_args = 1..)]
    compare: Vec<PathBuf>,
    /// Score only questions without an image (text_only).
    #[arg(long)]
    text_only: bool,
    /// Score only questions with exactly N choices (with --text-only, --choices 5 selects the
    /// 1,455 IgakuQA questions the 70B study evaluates).
    #[arg(long)]
    choices: Option<usize>,
    /// Letter matching: strict (IgakuQA's evaluate_main.py) or lenient.
    #[arg(long, default_value = "lenient", value_parser = ["strict", "lenient"])]
    mode: String,
    /// Output: a per-year table, one JSON document, or CSV (one row per year).
    #[arg(long, value_enum, default_value_t = OutputFormat::Table)]
    format: OutputFormat,
    /// Also write one JSON line per question (every metric) to this file.
    #[arg(long)]
    per_question: Option<PathBuf>,
    /// Confidence level of the intervals.
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// Bootstrap resamples.
    #[arg(long, default_value_t = 2000)]
    resamples: usize,
    /// Bootstrap seed (the same seed gives the same intervals).
    #[arg(long, default_value_t = 20_230_331)]
    seed: u64,
    /// The spread of examinees' abilities, in logits, for the percentiles against the
    /// examinees (where questions carry `examinee_accuracy`). By default it is calibrated to
    /// each year's announced pass rate; set it to see how the percentiles move with it.
    #[arg(long, value_name = "LOGITS", value_parser = spread)]
    examinee_spread: Option<f64>,
    /// Score under this rule pack instead of the built-in one for its exam (repeatable; a
    /// pack file as docs/rule-packs.md describes, e.g. the 120th's with its announced cut-off).
    #[arg(long, value_name = "PACK.json")]
    rules: Vec<PathBuf>,
}

/// The built-in packs with each of `files` in place of its exam's (or beside them, for an
/// exam without one); an error names the file and each field at fault.
fn packs_with(files: &[PathBuf]) -> anyhow::Result<Vec<kokushi_shared::rules::RulePack>> {
    let mut given = Vec::with_capacity(files.len());
    for file in files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read the rule pack {}", file.display()))?;
        let name = file.display().to_string();
        let pack = kokushi_shared::rules::parse(&name, &text)
            .map_err(|errors| anyhow::anyhow!(kokushi_backend::import::problems(&name, &errors)))?;
        given.push(pack);
    }
    Ok(kokushi_shared::rules::built_in_with(given))
}

fn spread(text: &str) -> Result<f64, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| (0.01..=10.0).contains(s))
        .ok_or_else(|| format!("expected a spread from 0.01 to 10 logits, got {text:?}"))
}

pub fn score(args: ScoreArgs) -> anyhow::Result<()> {
    use kokushi_backend::scoring;
    use kokushi_shared::score::{LetterMode, ScoreOptions};
    anyhow::ensure!(
        args.confidence > 0.0 && args.confidence < 1.0,
        "--confidence {} must be between 0 and 1, e.g. 0.95",
        args.confidence
    );
    anyhow::ensure!(args.resamples > 0, "--resamples must be at least 1");
    let mode = LetterMode::from_id(&args.mode).context("--mode is strict or lenient")?;
    let (questions, left_out): (Vec<_>, Vec<_>) =
        args.set.read(&args.exam_set)?.0.into_iter().partition(|q| {
            (!args.text_only || q.text_only) && args.choices.is_none_or(|n| q.choices.len() == n)
        });
    let all = questions.len() + left_out.len();
    anyhow::ensure!(
        !questions.is_empty(),
        "no question of the {all} in the exam set is left after --text-only / --choices"
    );
    let mut predictions = scoring::read_predictions(&args.predictions)?;
    let mut baseline = if args.compare.is_empty() {
        None
    } else {
        Some(scoring::read_predictions(&args.compare)?)
    };
    if !left_out.is_empty() {
        // Answers to questions left out of the selection are not "unknown": they are ignored.
        let left_out: std::collections::HashSet<String> =
            left_out.into_iter().map(|q| q.problem_id).collect();
        predictions.retain(|id, _| !left_out.contains(id));
        if let Some(b) = baseline.as_mut() {
            b.retain(|id, _| !left_out.contains(id));
        }
        eprintln!(
            "scoring {} of the {all} questions (--text-only / --choices); a year gets pass/fail \
             only where the questions left out cannot change it",
            questions.len()
        );
    }
    let options = ScoreOptions {
        mode,
        confidence: args.confidence,
        resamples: args.resamples,
        seed: args.seed,
        examinee_spread: args.examinee_spread,
        ..ScoreOptions::default()
    };
    let scored = scoring::run(
        &questions,
        &predictions,
        baseline.as_ref(),
        &options,
        &packs_with(&args.rules)?,
    )?;
    if let Some(path) = &args.per_question {
        scoring::write_per_question(path, &scored.report)?;
    }
    let credit = args.set.namespace.is_none().then(|| {
        kokushi_shared::igakuqa::credit_for(questions.iter().map(|q| q.problem_id.as_str()))
    });
    let out = match args.format {
        OutputFormat::Table => scoring::render_table(&scored, mode, credit.as_deref()),
        OutputFormat::Json => scoring::render_json(&scored)?,
        OutputFormat::Csv => scoring::render_csv(&scored),
    };
    print!("{out}");
    Ok(())
}
