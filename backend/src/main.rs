//! `kokushi`: the portal's one binary. `serve` runs the API and the UI, `worker` a GPU-node
//! worker, `import` loads an exam set, `migrate` prepares a database, `demo` does all of it on
//! one machine; `eval`, `score`, `tune` and `leakage` work on files without a server. This file
//! is the command line itself and its dispatch; each command is a module of `commands`.

use std::path::PathBuf;

use clap::{Parser, Subcommand};

use commands::flags::DbArgs;
use commands::{admin, demo, eval, import, leakage, migrate, openapi, score, serve, tune, worker};

mod config_file;
mod commands {
    //! One module per command: its flags (a clap `Args`) beside what it does. `flags` holds the
    //! flag groups several commands take.
    pub mod admin;
    pub mod demo;
    pub mod eval;
    pub mod flags;
    pub mod import;
    pub mod leakage;
    pub mod migrate;
    pub mod openapi;
    pub mod score;
    pub mod serve;
    pub mod tune;
    pub mod worker;
}

#[derive(Parser)]
#[command(
    name = "kokushi",
    version,
    about = "Kokushi (国試): evaluate Japanese medical language models on the national medical licensing exam",
    long_about = "Kokushi (国試): evaluate Japanese medical language models on the Japanese National \
Medical Licensing Examination (IgakuQA).\n\nOne machine: `kokushi serve` (SQLite file, in-process \
queue and worker). A cluster: `kokushi serve --database-url postgres://... --redis-url redis://...` \
on API nodes and `kokushi worker --redis-url redis://...` on GPU nodes.\n\nEvery flag can also be \
set with the environment variable shown in its help, or in a TOML file given with --config \
(keys: the variables' names without KOKUSHI_, in lower case, e.g. `bind = \"0.0.0.0:8080\"`); a \
flag beats the variable, which beats the file."
)]
struct Cli {
    /// A TOML file of settings: `database_url = "postgres://…"`, `redis_url = …`, `bind = …`,
    /// `model_store = …`, … (any KOKUSHI_* variable, without the prefix, in lower case).
    /// Flags and environment variables override it.
    #[arg(long, global = true, env = "KOKUSHI_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the web UI.
    Serve(serve::ServeArgs),
    /// Take evaluation and tuning jobs from Redis and carry them out with the engine.
    Worker(worker::WorkerArgs),
    /// Import an exam set: IgakuQA JSON lines, the CSV upload format, JMMLU files, or
    /// IgakuQA119's files; --preview shows every problem and the repairs proposed, storing
    /// nothing.
    Import(import::ImportArgs),
    /// Score predictions made anywhere against an exam set: accuracy, points and pass/fail per
    /// exam year, as IgakuQA and the seed papers count them.
    #[command(long_about = score::SCORE_HELP)]
    Score(score::ScoreArgs),
    /// Ask a model every question of an exam set in this process and write a predictions file
    /// that `kokushi score` reads.
    #[command(long_about = eval::EVAL_HELP)]
    Eval(eval::EvalArgs),
    /// Instruction-tune a base model with LoRA (DenQA, JMMLU, Alpaca-style JSON lines) and
    /// write a PEFT adapter.
    #[command(long_about = tune::TUNE_HELP)]
    Tune(tune::TuneArgs),
    /// Measure how much of an exam set a tuned adapter's data (or any tuning data) covers:
    /// character 13-gram overlap per question.
    Leakage(leakage::LeakageArgs),
    /// Create or update the database schema, then exit.
    Migrate(DbArgs),
    /// Print the OpenAPI document of the JSON API (also served at /api/openapi.json, and kept
    /// as docs/openapi.json).
    Openapi,
    /// Manage accounts from the command line: the first admin of a new installation, API
    /// tokens for scripts.
    #[command(subcommand)]
    Admin(admin::AdminCommand),
    /// Import IgakuQA 2022, queue an evaluation of the demo model and serve the portal.
    Demo(demo::DemoArgs),
}

fn main() -> std::process::ExitCode {
    use clap::{CommandFactory, FromArgMatches};
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(path) = config_file::path_from(&args) {
        command = match config_file::apply(command, &path) {
            Ok(command) => command,
            Err(err) => {
                eprintln!("error: {err}");
                return std::process::ExitCode::from(2);
            }
        };
    }
    let cli = match Cli::from_arg_matches(&command.get_matches_from(args)) {
        Ok(cli) => cli,
        Err(err) => err.exit(),
    };
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return std::process::ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes, one per line, without a backtrace: errors here name the
            // file, line, field or value at fault, which is what a user needs.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKUSHI_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,actix_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => serve::serve(args, None).await,
        Command::Worker(args) => worker::worker(args).await,
        Command::Import(args) => import::import(args).await,
        Command::Score(args) => score::score(args),
        Command::Eval(args) => eval::eval(&args).await,
        Command::Tune(args) => tokio::task::block_in_place(|| tune::tune(&args)),
        Command::Leakage(args) => leakage::leakage(&args),
        Command::Migrate(args) => migrate::migrate(&args).await,
        Command::Openapi => openapi::openapi(),
        Command::Admin(command) => admin::admin(command).await,
        Command::Demo(args) => demo::demo(args).await,
    }
}
