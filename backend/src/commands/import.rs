//! `kokushi import`: an exam set read from disk (`kokushi_backend::import`: IgakuQA JSON lines,
//! the CSV upload format, JMMLU files) and stored in the database, once: importing the same
//! content again finds the set already present.

use std::path::PathBuf;

use clap::Args;
use kokushi_backend::db::Db;
use kokushi_backend::import::read_exam_set_as;

use super::flags::{DbArgs, SetArgs};

#[derive(Args)]
pub struct ImportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The exam set's name, e.g. "IgakuQA 2022".
    #[arg(long)]
    name: String,
    /// .jsonl or .csv files, or folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
    #[command(flatten)]
    set: SetArgs,
}

pub async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let questions = read_exam_set_as(
        &args.paths,
        args.set.namespace.as_deref(),
        args.set.set_format,
    )?;
    let db = Db::connect(&args.db.database_url).await?;
    let (set, created) = db.insert_exam_set(&args.name, &questions).await?;
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
