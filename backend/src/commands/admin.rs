//! `kokushi admin`: accounts from the command line. `create` makes one (the first admin of a
//! new installation) through `kokushi_backend::accounts::create_user`, the same path as the
//! API; `token` issues a personal API token for scripts. Both print their secret once.

use anyhow::Context;
use clap::{Args, Subcommand};
use kokushi_backend::db::Db;

use super::flags::DbArgs;

#[derive(Subcommand)]
pub enum AdminCommand {
    /// Create an account (the first admin of a new installation, for instance). Without
    /// --password-stdin a random password is made and printed once.
    Create(AdminCreateArgs),
    /// Issue a personal API token for an account, printed once; scripts send it as
    /// `Authorization: Bearer <token>`.
    Token(AdminTokenArgs),
}

#[derive(Args)]
pub struct AdminCreateArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The user name: letters, digits and . _ - @, at most 64 characters.
    #[arg(long)]
    username: String,
    /// A role to give (repeat for several): admin, researcher, annotator.
    #[arg(long = "role", default_value = "admin", value_parser = parse_role)]
    roles: Vec<kokushi_shared::api::Role>,
    /// Read the password (10 to 1024 characters) from the first line of standard input.
    #[arg(long)]
    password_stdin: bool,
}

#[derive(Args)]
pub struct AdminTokenArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The account the token acts as.
    #[arg(long)]
    username: String,
    /// What the token is for, shown in the token list.
    #[arg(long, default_value = "command line")]
    name: String,
    /// Days until the token stops working (default: until revoked).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=3650))]
    expires_in_days: Option<u32>,
    /// The project the token acts in, by slug (docs/projects.md).
    #[arg(long, default_value = "default", value_name = "SLUG")]
    project: String,
    /// A token that may only read.
    #[arg(long)]
    read_only: bool,
}

fn parse_role(s: &str) -> Result<kokushi_shared::api::Role, String> {
    kokushi_shared::api::Role::from_id(s)
        .ok_or_else(|| format!("unknown role {s:?}; known: admin, researcher, annotator"))
}

pub async fn admin(command: AdminCommand) -> anyhow::Result<()> {
    match command {
        AdminCommand::Create(args) => {
            let (password, generated) = if args.password_stdin {
                let mut line = String::new();
                std::io::stdin()
                    .read_line(&mut line)
                    .context("reading the password from standard input")?;
                (line.trim_end_matches(['\r', '\n']).to_owned(), false)
            } else {
                (kokushi_backend::auth::new_secret()[..20].to_owned(), true)
            };
            let db = Db::connect(&args.db.database_url).await?;
            let user =
                kokushi_backend::accounts::create_user(&db, &args.username, &password, &args.roles)
                    .await
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            db.close().await;
            let roles = user.roles.iter().map(|r| r.id()).collect::<Vec<_>>();
            println!(
                "created {} (id {}) with role(s) {}",
                user.username,
                user.id,
                roles.join(", ")
            );
            if generated {
                println!("password (shown only now): {password}");
            }
            Ok(())
        }
        AdminCommand::Token(args) => {
            let db = Db::connect(&args.db.database_url).await?;
            let user = db
                .user_by_name(&args.username)
                .await?
                .with_context(|| format!("there is no account {:?}", args.username))?;
            let token = kokushi_backend::auth::new_api_token();
            let expires_at = args.expires_in_days.map(|days| {
                kokushi_backend::clock::format_unix(
                    kokushi_backend::clock::unix_now() + i64::from(days) * 86_400,
                )
            });
            let project = db.project_by_slug(&args.project).await?.with_context(|| {
                format!(
                    "there is no project {:?} (an admin creates projects: POST /api/projects)",
                    args.project
                )
            })?;
            let summary = db
                .create_token(
                    user.user.id,
                    &args.name,
                    &kokushi_backend::auth::digest(&token),
                    expires_at.as_deref(),
                    project,
                    args.read_only,
                )
                .await?;
            db.close().await;
            eprintln!(
                "token {} ({:?}) for {}; send it as `Authorization: Bearer <token>`; shown only now:",
                summary.id, summary.name, user.user.username
            );
            println!("{token}");
            Ok(())
        }
    }
}
