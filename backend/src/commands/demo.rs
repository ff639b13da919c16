//! `kokushi demo`: everything on one machine. It imports IgakuQA 2022, queues an evaluation of
//! the demo model (once: a second start reuses the run), gives the `demo` account a fresh
//! password, and serves the portal with `kokushi serve`'s flags.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use kokushi_backend::db::Db;
use kokushi_backend::db::runs::NewRun;
use kokushi_backend::import::read_exam_set;
use kokushi_shared::prompt::PromptFormat;

use super::serve::{ServeArgs, serve};

#[derive(Args)]
pub struct DemoArgs {
    #[command(flatten)]
    serve: ServeArgs,
    /// The IgakuQA data folder (with 2018/ … 2022/ inside).
    #[arg(long, env = "KOKUSHI_DATA", default_value = "../shared/data/igakuqa")]
    data: PathBuf,
    /// The model file (inside --model-store) to evaluate.
    #[arg(long, default_value = "SmolLM2-135M-Instruct.Q4_1.gguf")]
    model: String,
    /// How many text-only questions to ask.
    #[arg(long, default_value_t = 20)]
    limit: u32,
    /// Prompt format id.
    #[arg(long, default_value = "chatml_ja_v1")]
    prompt_format: String,
}

/// The account `kokushi demo` signs in with.
const DEMO_USER: &str = "demo";

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let year = args.data.join("2022");
    anyhow::ensure!(
        year.is_dir(),
        "no IgakuQA data at {}: pass --data with the folder that holds 2018/ … 2022/ \
         (the `data/` folder of the public IgakuQA repository by Kasai et al.)",
        args.data.display()
    );
    let prompt_format = PromptFormat::from_id(&args.prompt_format)
        .with_context(|| format!("unknown prompt format {:?}", args.prompt_format))?;
    let questions = read_exam_set(&[year])?;
    let db = Db::connect(&args.serve.db.database_url).await?;
    let (set, _) = db
        .insert_exam_set("IgakuQA 2022 (116th)", &questions)
        .await?;
    let new = NewRun {
        exam_set_id: set.id,
        model: args.model.clone(),
        adapter: None,
        settings: kokushi_shared::job::EvalSettings::new(prompt_format, 32),
        shot_pool_exam_set_id: None,
        limit: Some(args.limit),
        priority: kokushi_shared::job::Priority::Normal,
        created_by: None,
        project_id: db.default_project().await?,
    };
    // A second start reuses the run: unfinished, the server re-publishes it; finished, it stays.
    if db.find_run(&new).await?.is_none() {
        db.create_run(&new).await?;
    }
    // The demo's account: a fresh password at every start (only its hash is stored, so the
    // last one cannot be shown again).
    let password = kokushi_backend::auth::new_secret()[..16].to_owned();
    // Annotator too, so that one account can try grading: make a task, assign yourself.
    let roles = [
        kokushi_shared::api::Role::Admin,
        kokushi_shared::api::Role::Researcher,
        kokushi_shared::api::Role::Annotator,
    ];
    let demo_user = match db.user_by_name(DEMO_USER).await? {
        Some(existing) => {
            let hash = kokushi_backend::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            db.update_user(existing.user.id, Some(&roles), Some(false), Some(&hash))
                .await?;
            existing.user.id
        }
        None => {
            kokushi_backend::accounts::create_user(&db, DEMO_USER, &password, &roles)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .id
        }
    };
    // A second team's project (docs/projects.md), which the demo account owns too: the header
    // switches between the two; the exam set is shared with it read-only, its runs its own.
    if db.project_by_slug(SECOND_PROJECT).await?.is_none() {
        db.create_project(
            SECOND_PROJECT,
            "Second team (demo)",
            &[demo_user],
            demo_user,
        )
        .await?;
    }
    let scope = kokushi_backend::db::projects::Scope {
        project: db.default_project().await?,
        user: demo_user,
    };
    db.set_shared(&scope, set.id, SECOND_PROJECT, true).await?;
    db.close().await;
    serve(
        args.serve,
        Some(format!(
            "Demo: {} on {} text-only questions of IgakuQA 2022. Sign in as {DEMO_USER} with \
             password {password}. Ctrl-C stops; starting again resumes.",
            args.model, args.limit
        )),
    )
    .await
}

/// The demo's second project.
const SECOND_PROJECT: &str = "second-team";

/// The demo's warning when it listens where other machines can reach it (its admin password
/// is printed): `None` for a loopback host (`127.0.0.1`, `[::1]`, `localhost`).
pub fn bind_warning(host: &str) -> Option<String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare.eq_ignore_ascii_case("localhost")
        || bare
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    (!loopback).then(|| {
        format!(
            "WARNING: the demo listens on {host}, which other machines can reach, and its \
             account's password is printed below: anyone who reads it can sign in as an admin. \
             Bind to 127.0.0.1 (the default) unless that is what you want."
        )
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_warns_when_other_machines_can_reach_it() {
        for host in ["127.0.0.1", "127.8.0.1", "[::1]", "localhost", "LOCALHOST"] {
            assert_eq!(super::bind_warning(host), None, "{host}");
        }
        for host in ["0.0.0.0", "192.168.1.5", "[::]", "example.org"] {
            let warning = super::bind_warning(host).expect(host);
            assert!(warning.contains("password"), "{warning}");
        }
    }
}
