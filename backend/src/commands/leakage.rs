//! `kokushi leakage`: how much of an exam set some tuning data covers (character 13-gram
//! overlap per question, `kokushi_shared::leakage`), from a tuned adapter's record or from the
//! data itself; and [`leakage_gate`], the same measure `kokushi eval` applies before it
//! evaluates through a tuned adapter.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use kokushi_backend::import::{SetFormat, read_exam_set_as};
use kokushi_shared::leakage::{self, LeakageReport, NgramIndex};
use kokushi_shared::prompt::PromptFormat;

use super::tune::read_tuning_data;

#[derive(Args)]
pub struct LeakageArgs {
    /// A tuned adapter folder (its tuning.json and tuning-ngrams.bin).
    #[arg(long, required_unless_present = "data")]
    pub adapter: Option<PathBuf>,
    /// Or the tuning data itself, [exam:|jmmlu:|instructions:]PATH (repeatable).
    #[arg(long = "data", num_args = 1..)]
    pub data: Vec<String>,
    /// The exam set: .jsonl/.csv files or folders of them (repeatable).
    #[arg(long = "exam-set", required = true, num_args = 1..)]
    pub exam_set: Vec<PathBuf>,
    /// The share of a question's character 13-grams that makes it count as leaked.
    #[arg(long, default_value_t = leakage::DEFAULT_MIN_COVERAGE)]
    pub min_coverage: f64,
    /// Also print each leaked question's id and coverage.
    #[arg(long)]
    pub list: bool,
}

/// `kokushi leakage`.
pub fn leakage(args: &LeakageArgs) -> anyhow::Result<()> {
    let index = match &args.adapter {
        Some(adapter) => kokushi_worker::tune::ngrams_of(adapter).with_context(|| {
            format!(
                "{} has no tuning record (tuning.json and its n-gram file): pass the data with \
                 --data instead",
                adapter.display()
            )
        })?,
        None => {
            // The format does not change the content compared.
            let (examples, _) = read_tuning_data(&args.data, PromptFormat::AlpacaJa)?;
            NgramIndex::from_texts(examples.iter().map(|e| e.content.as_str()))
        }
    };
    let questions = read_exam_set_as(&args.exam_set, None, SetFormat::Auto)?;
    let report = leakage::measure(&index, &questions, args.min_coverage);
    println!("{}", report.summary());
    if args.list {
        for (id, coverage) in &report.worst {
            println!("  {id}: {:.0} %", 100.0 * coverage);
        }
    }
    Ok(())
}

/// The gate before an evaluation through `adapter`: measures the overlap of its tuning data with
/// `questions`, refuses above `max_share` unless `allow` gives a reason, and writes the report
/// (with any override) beside the predictions as `<out>.leakage.json`. An adapter without a
/// tuning record is let through with a note.
pub fn leakage_gate(
    adapter: &Path,
    questions: &[kokushi_shared::Question],
    max_share: f64,
    allow: Option<&str>,
    out: &Path,
) -> anyhow::Result<Option<LeakageReport>> {
    let Some(index) = kokushi_worker::tune::ngrams_of(adapter) else {
        eprintln!(
            "note: {} has no tuning record (tuning.json): the overlap of its tuning data with \
             this exam set cannot be checked",
            adapter.display()
        );
        return Ok(None);
    };
    let report = leakage::measure(&index, questions, leakage::DEFAULT_MIN_COVERAGE);
    eprintln!("leakage gate: {}", report.summary());
    if report.leaked_share() > max_share {
        let Some(reason) = allow else {
            anyhow::bail!(
                "the adapter's tuning data covers {:.1} % of these questions (more than \
                 --max-leakage {:.1} %), e.g. {}: its scores would measure memory, not \
                 knowledge. Evaluate on another exam set, or pass --allow-leakage \"REASON\" \
                 (recorded with the predictions)",
                100.0 * report.leaked_share(),
                100.0 * max_share,
                report
                    .worst
                    .iter()
                    .take(5)
                    .map(|(id, _)| id.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        };
        eprintln!("leakage gate overridden: {reason}");
    }
    let record = serde_json::json!({
        "adapter": adapter.display().to_string(),
        "report": report,
        "max_leaked_share": max_share,
        "override": allow,
    });
    let mut name = out.as_os_str().to_owned();
    name.push(".leakage.json");
    let path = PathBuf::from(name);
    std::fs::write(&path, serde_json::to_string_pretty(&record)?)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(Some(report))
}
