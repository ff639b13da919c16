//! `kokushi import`: an exam set read from disk (`kokushi_backend::import`: IgakuQA JSON lines,
//! the CSV upload format, JMMLU files, IgakuQA119's files) and stored in the database, once:
//! importing the same content again finds the set already present. `--preview` shows what
//! would be stored, every problem and the repairs proposed, and stores nothing; `--repair` and
//! `--exclude` turn refused records into an importable set.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::Args;
use kokushi_backend::db::{Db, PreparedSet};
use kokushi_shared::igakuqa::ImportPreview;

use super::flags::{DbArgs, SetArgs};

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The exam set's name, e.g. "IgakuQA 2022".
    #[arg(long)]
    name: String,
    /// .jsonl, .csv or .json files (IgakuQA119's question files with its answers CSV), or
    /// folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    set: SetArgs,
    /// Show what would be imported: every problem by file, line and field, the repairs
    /// proposed (with the --repair that accepts each) and the records left out; store nothing.
    #[arg(long)]
    preview: bool,
    /// The project the set belongs to, by slug (docs/projects.md).
    #[arg(long, default_value = "default", value_name = "SLUG")]
    project: String,
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    if args.preview {
        print!("{}", preview(&args.set.report(&args.paths)?));
        return Ok(());
    }
    let (questions, notes) = args.set.read(&args.paths)?;
    let report = &notes;
    for r in &report.repairs {
        eprintln!(
            "repaired {} ({}:{}): {} {}: {:?} → {:?}",
            r.problem_id,
            r.file,
            r.line,
            r.kind.id(),
            r.field,
            r.before,
            r.after
        );
    }
    for e in &report.excluded {
        eprintln!(
            "left out {} ({}:{}): {}",
            e.problem_id, e.file, e.line, e.reason
        );
    }
    let prepared = PreparedSet::new(questions)?.with_notes(&notes)?;
    let db = Db::connect(&args.db.database_url).await?;
    let project = db.project_by_slug(&args.project).await?.ok_or_else(|| {
        anyhow::anyhow!(
            "there is no project {:?} (an admin creates projects: POST /api/projects)",
            args.project
        )
    })?;
    let (set, created) = db.insert_prepared(project, &args.name, &prepared).await?;
    println!(
        "{} exam set {:?} (id {}): {} questions, {} text-only, sha256 {}",
        if created {
            "imported"
        } else {
            "already present:"
        },
        set.name,
        set.id,
        set.question_count,
        set.text_only_count,
        set.content_hash
    );
    Ok(())
}

/// The preview as text: what would be stored, each problem, each repair proposed or applied,
/// each record left out.
fn preview(report: &ImportPreview) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{} question(s) would be imported; {} problem(s); {} repair(s) proposed, {} applied; {} record(s) left out",
        report.questions.len(),
        report.errors.len(),
        report.proposed.len(),
        report.applied.len(),
        report.excluded.len()
    );
    for e in &report.errors {
        let _ = writeln!(out, "problem: {e}");
    }
    for (what, list) in [("proposed", &report.proposed), ("applied", &report.applied)] {
        for r in list {
            let _ = writeln!(
                out,
                "{what}: --repair {}:{} ({}:{}, field `{}`)\n  before: {}\n  after:  {}",
                r.problem_id,
                r.kind.id(),
                r.file,
                r.line,
                r.field,
                r.before,
                r.after
            );
        }
    }
    for e in &report.excluded {
        let _ = writeln!(
            out,
            "left out: {} ({}:{}): {}",
            e.problem_id, e.file, e.line, e.reason
        );
    }
    out
}
