//! `kokushi`: the portal's one binary. `serve` runs the API and the UI, `worker` a GPU-node
//! worker, `import` loads an exam set, `migrate` prepares a database, `demo` does all of it on
//! one machine.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use kokushi_backend::db::Db;
use kokushi_backend::db::runs::NewRun;
use kokushi_backend::import::{SetFormat, read_exam_set, read_exam_set_as};
use kokushi_backend::scoring::OutputFormat;
use kokushi_backend::{Application, Settings};
use kokushi_queue::RedisQueue;
use kokushi_shared::prompt::PromptFormat;
use kokushi_worker::{Worker, WorkerConfig};

mod config_file;
mod tune_cmd;
mod commands {
    //! One module per command that is not the server.
    pub mod eval;
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
    Serve(ServeArgs),
    /// Take evaluation and tuning jobs from Redis and carry them out with the engine.
    Worker(WorkerArgs),
    /// Import an exam set: IgakuQA JSON lines, the CSV upload format, or JMMLU files.
    Import(ImportArgs),
    /// Score predictions made anywhere against an exam set: accuracy, points and pass/fail per
    /// exam year, as IgakuQA and the seed papers count them.
    #[command(long_about = SCORE_HELP)]
    Score(ScoreArgs),
    /// Ask a model every question of an exam set in this process and write a predictions file
    /// that `kokushi score` reads.
    #[command(long_about = commands::eval::EVAL_HELP)]
    Eval(commands::eval::EvalArgs),
    /// Instruction-tune a base model with LoRA (DenQA, JMMLU, Alpaca-style JSON lines) and
    /// write a PEFT adapter.
    #[command(long_about = tune_cmd::TUNE_HELP)]
    Tune(tune_cmd::TuneArgs),
    /// Measure how much of an exam set a tuned adapter's data (or any tuning data) covers:
    /// character 13-gram overlap per question.
    Leakage(tune_cmd::LeakageArgs),
    /// Create or update the database schema, then exit.
    Migrate(DbArgs),
    /// Print the OpenAPI document of the JSON API (also served at /api/openapi.json, and kept
    /// as docs/openapi.json).
    Openapi,
    /// Manage accounts from the command line: the first admin of a new installation, API
    /// tokens for scripts.
    #[command(subcommand)]
    Admin(AdminCommand),
    /// Import IgakuQA 2022, queue an evaluation of the demo model and serve the portal.
    Demo(DemoArgs),
}

#[derive(Subcommand)]
enum AdminCommand {
    /// Create an account (the first admin of a new installation, for instance). Without
    /// --password-stdin a random password is made and printed once.
    Create(AdminCreateArgs),
    /// Issue a personal API token for an account, printed once; scripts send it as
    /// `Authorization: Bearer <token>`.
    Token(AdminTokenArgs),
}

#[derive(Args)]
struct AdminCreateArgs {
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
struct AdminTokenArgs {
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
}

fn parse_role(s: &str) -> Result<kokushi_shared::api::Role, String> {
    kokushi_shared::api::Role::from_id(s)
        .ok_or_else(|| format!("unknown role {s:?}; known: admin, researcher, annotator"))
}

#[derive(Args, Clone)]
struct DbArgs {
    /// sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "KOKUSHI_DATABASE_URL",
        default_value = "sqlite://kokushi.sqlite"
    )]
    database_url: String,
}

#[derive(Args, Clone)]
struct ServeArgs {
    #[command(flatten)]
    db: DbArgs,
    /// Redis for the distributed mode; without it jobs go through an in-process queue.
    #[arg(long, env = "KOKUSHI_REDIS_URL")]
    redis_url: Option<String>,
    /// Key prefix on Redis, to share one Redis between installations.
    #[arg(long, env = "KOKUSHI_QUEUE_PREFIX", default_value = "kokushi")]
    queue_prefix: String,
    /// Address to listen on.
    #[arg(long, env = "KOKUSHI_BIND", default_value = "127.0.0.1:8080")]
    bind: String,
    /// The folder models are loaded from; runs name files inside it.
    #[arg(long, env = "KOKUSHI_MODEL_STORE", default_value = "models")]
    model_store: PathBuf,
    /// The built frontend to serve (`cargo xtask frontend` builds it).
    #[arg(long, env = "KOKUSHI_STATIC_DIR")]
    static_dir: Option<PathBuf>,
    /// Also run a worker inside this process (the default without --redis-url).
    #[arg(long, env = "KOKUSHI_EMBEDDED_WORKER")]
    embedded_worker: Option<bool>,
    /// Mark session cookies Secure even on plain HTTP: for a TLS proxy in front that does not
    /// send X-Forwarded-Proto (with it, cookies are marked Secure anyway).
    #[arg(long, env = "KOKUSHI_SECURE_COOKIES")]
    secure_cookies: bool,
    #[command(flatten)]
    reliability: ReliabilityArgs,
    /// Seconds between the server's checks that the queue still holds every unfinished job
    /// (Redis may lose its data: FLUSHALL, a restart without persistence).
    #[arg(
        long,
        env = "KOKUSHI_RECONCILE_INTERVAL",
        default_value_t = 10,
        value_name = "SECS"
    )]
    reconcile_interval: u64,
    /// Jobs (runs and tunings) one account may have waiting in the queue at once; more are
    /// refused (409).
    #[arg(long, env = "KOKUSHI_MAX_QUEUED_PER_USER", default_value_t = 50)]
    max_queued_per_user: i64,
    /// A reverse proxy (an address, or a network as ADDR/BITS) whose X-Forwarded-For and
    /// X-Forwarded-Proto headers are believed: sign-in limits then count the client's address,
    /// and cookies are Secure when the client came over TLS. Repeat, or separate with commas.
    /// Without it the peer's address is the client's and forwarding headers are ignored.
    #[arg(
        long = "trusted-proxy",
        env = "KOKUSHI_TRUSTED_PROXY",
        value_delimiter = ',',
        value_name = "ADDR[/BITS]"
    )]
    trusted_proxies: Vec<String>,
    /// Minutes a browser session may go unused before it ends (it ends 7 days after sign-in
    /// in any case).
    #[arg(
        long,
        env = "KOKUSHI_SESSION_IDLE_MINUTES",
        default_value_t = 480,
        value_name = "MINUTES",
        value_parser = clap::value_parser!(u64).range(1..=10_080)
    )]
    session_idle_minutes: u64,
    /// Base URL of an OpenAI-compatible server that runs may name as
    /// openai:<base-url>#<model> (repeat, or separate with commas). Without any, runs may
    /// name only models of the store; the workers keep their own allow-list
    /// (docs/remote-models.md).
    #[arg(
        long = "remote-model-allow",
        env = "KOKUSHI_REMOTE_MODEL_ALLOW",
        value_delimiter = ',',
        value_name = "BASE_URL"
    )]
    remote_model_allow: Vec<String>,
    #[command(flatten)]
    batch: WorkerBatchArgs,
}

#[derive(Args)]
struct WorkerArgs {
    #[arg(long, env = "KOKUSHI_REDIS_URL")]
    redis_url: String,
    #[arg(long, env = "KOKUSHI_QUEUE_PREFIX", default_value = "kokushi")]
    queue_prefix: String,
    #[arg(long, env = "KOKUSHI_MODEL_STORE", default_value = "models")]
    model_store: PathBuf,
    /// The name this worker goes by on the queue (default: host-pid).
    #[arg(long, env = "KOKUSHI_WORKER_NAME")]
    name: Option<String>,
    /// Let jobs name remote models (openai:<base-url>#<model>): off by default. Even then the
    /// worker calls only public addresses, and sends its API key to none, except as
    /// --remote-allow and --remote-allow-private say.
    #[arg(long, env = "KOKUSHI_REMOTE_MODELS")]
    remote_models: bool,
    /// A base URL the worker may call at any address and send its API key to (repeat, or
    /// separate with commas), e.g. https://api.example.org/v1.
    #[arg(
        long = "remote-allow",
        env = "KOKUSHI_REMOTE_ALLOW",
        value_delimiter = ',',
        value_name = "BASE_URL"
    )]
    remote_allow: Vec<String>,
    /// Also call remote models at loopback, private and link-local addresses that are not on
    /// --remote-allow (without the key).
    #[arg(long, env = "KOKUSHI_REMOTE_ALLOW_PRIVATE")]
    remote_allow_private: bool,
    /// The environment variable holding the API key for remote models.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "NAME")]
    api_key_env: String,
    #[command(flatten)]
    reliability: ReliabilityArgs,
    /// Deliveries of one job after which it is given up as a dead letter (its run fails with
    /// the reason).
    #[arg(long, env = "KOKUSHI_MAX_ATTEMPTS", default_value_t = 3)]
    max_attempts: u32,
    #[command(flatten)]
    batch: WorkerBatchArgs,
}

/// How many questions a worker answers at once (`serve`'s embedded worker, `worker`).
#[derive(Args, Clone)]
struct WorkerBatchArgs {
    /// Questions a worker answers together: decoded in one batch by the local engine, sent at
    /// once to a remote server. Throughput only: a batch changes no answer.
    #[arg(long = "worker-batch", env = "KOKUSHI_WORKER_BATCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    worker_batch: u16,
}

#[derive(Args, Clone)]
struct ReliabilityArgs {
    /// Seconds a claimed job may go without its worker's heartbeat (or a delivered event
    /// without its server's acknowledgement) before another worker (server) takes it over.
    #[arg(
        long,
        env = "KOKUSHI_VISIBILITY_TIMEOUT",
        default_value_t = 60,
        value_name = "SECS"
    )]
    visibility_timeout: u64,
}

#[derive(Args)]
struct ImportArgs {
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

#[derive(Args, Clone)]
pub(crate) struct SetArgs {
    /// Prefix every problem id with NAMESPACE: (e.g. `denqa`, `jmmlu`) for an exam other than
    /// the medical exam, whose ids would otherwise collide with it. No medical rulings,
    /// sections or years are derived for a namespaced set.
    #[arg(long)]
    namespace: Option<String>,
    /// How the exam-set files are written: `auto` reads IgakuQA JSONL and Kokushi CSV (by
    /// extension); `jmmlu` reads JMMLU CSV (no header, 4 choices, answer A-D).
    #[arg(long = "set-format", value_enum, default_value_t = SetFormat::Auto)]
    set_format: SetFormat,
}

const SCORE_HELP: &str = "Score predictions made anywhere against an exam set, as IgakuQA and the \
seed papers count them, and print per exam year: questions, correct, accuracy with its Wilson \
interval, points with a bootstrap interval, required and general points, prohibited choices \
chosen and pass/fail against the year's published criteria.

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
  kokushi score --exam-set data/igakuqa --predictions out.jsonl --per-question scored.jsonl";

#[derive(Args)]
struct ScoreArgs {
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
}

#[derive(Args)]
struct DemoArgs {
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
        Command::Serve(args) => serve(args, None).await,
        Command::Worker(args) => worker(args).await,
        Command::Import(args) => import(args).await,
        Command::Score(args) => score(args),
        Command::Eval(args) => commands::eval::eval(&args).await,
        Command::Tune(args) => tokio::task::block_in_place(|| tune_cmd::tune(&args)),
        Command::Leakage(args) => tune_cmd::leakage(&args),
        Command::Migrate(args) => {
            Db::connect(&args.database_url).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Openapi => {
            print!("{}", kokushi_backend::openapi::document_json());
            Ok(())
        }
        Command::Admin(command) => admin(command).await,
        Command::Demo(args) => demo(args).await,
    }
}

async fn admin(command: AdminCommand) -> anyhow::Result<()> {
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
            let summary = db
                .create_token(
                    user.user.id,
                    &args.name,
                    &kokushi_backend::auth::digest(&token),
                    expires_at.as_deref(),
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

fn settings(args: &ServeArgs) -> anyhow::Result<Settings> {
    let trusted_proxies = kokushi_backend::auth::TrustedProxies::parse(&args.trusted_proxies)
        .map_err(|e| anyhow::anyhow!("--trusted-proxy: {e}"))?;
    let remote_model_allow = base_urls("--remote-model-allow", &args.remote_model_allow)?;
    Ok(Settings {
        database_url: args.db.database_url.clone(),
        redis_url: args.redis_url.clone(),
        queue_prefix: args.queue_prefix.clone(),
        bind: args.bind.clone(),
        model_store: args.model_store.clone(),
        static_dir: args.static_dir.clone(),
        embedded_worker: args.embedded_worker.unwrap_or(args.redis_url.is_none()),
        max_upload_bytes: 32 * 1024 * 1024,
        secure_cookies: args.secure_cookies,
        visibility_timeout: Duration::from_secs(args.reliability.visibility_timeout),
        max_attempts: 3,
        worker_batch: usize::from(args.batch.worker_batch),
        reconcile_interval: Duration::from_secs(args.reconcile_interval),
        max_queued_per_user: args.max_queued_per_user,
        trusted_proxies,
        session_idle: Duration::from_secs(args.session_idle_minutes * 60),
        session_purge_interval: Duration::from_secs(300),
        max_concurrent_sign_ins: kokushi_backend::auth::LoginLimiter::DEFAULT_CONCURRENT_CHECKS,
        max_streams_per_user: kokushi_backend::settings::DEFAULT_STREAMS_PER_USER,
        remote_model_allow,
    })
}

async fn serve(args: ServeArgs, banner: Option<String>) -> anyhow::Result<()> {
    let app = Application::build(settings(&args)?).await?;
    let stop = app.stop_handle();
    let host = args.bind.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
    if banner.is_some()
        && let Some(warning) = demo_bind_warning(host)
    {
        eprintln!("{warning}");
    }
    println!("Kokushi is serving at http://{host}:{}/", app.port());
    if let Some(banner) = banner {
        println!("{banner}");
    }
    tokio::spawn(async move {
        shutdown_signal().await;
        eprintln!("shutting down…");
        stop.stop().await;
    });
    app.run_until_stopped().await?;
    eprintln!("stopped cleanly");
    Ok(())
}

/// An allow-list of base URLs as a flag gave them, each in its one normal form.
fn base_urls(flag: &str, given: &[String]) -> anyhow::Result<Vec<String>> {
    given
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| {
            kokushi_worker::remote::allowed_base_url(u).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        })
        .collect()
}

/// The demo's warning when it listens where other machines can reach it (its admin password
/// is printed): `None` for a loopback host (`127.0.0.1`, `[::1]`, `localhost`).
fn demo_bind_warning(host: &str) -> Option<String> {
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

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let queue = Arc::new(
        RedisQueue::connect(&args.redis_url, &args.queue_prefix)
            .await?
            .with_visibility_timeout(Duration::from_secs(args.reliability.visibility_timeout)),
    );
    let name = args
        .name
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let allow = base_urls("--remote-allow", &args.remote_allow)?;
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name,
            model_store: args.model_store,
            poll: Duration::from_secs(2),
            remote: args
                .remote_models
                .then(|| kokushi_worker::remote::RemoteOptions {
                    api_key_env: Some(args.api_key_env),
                    policy: kokushi_worker::remote::RemotePolicy {
                        allow,
                        allow_private: args.remote_allow_private,
                    },
                    ..kokushi_worker::remote::RemoteOptions::default()
                }),
            visibility_timeout: Duration::from_secs(args.reliability.visibility_timeout),
            max_attempts: args.max_attempts,
            batch: usize::from(args.batch.worker_batch),
        },
    );
    worker.run_until_stopped(shutdown_signal()).await;
    Ok(())
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
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

fn score(args: ScoreArgs) -> anyhow::Result<()> {
    use kokushi_backend::scoring;
    use kokushi_shared::score::{LetterMode, ScoreOptions};
    anyhow::ensure!(
        args.confidence > 0.0 && args.confidence < 1.0,
        "--confidence {} must be between 0 and 1, e.g. 0.95",
        args.confidence
    );
    anyhow::ensure!(args.resamples > 0, "--resamples must be at least 1");
    let mode = LetterMode::from_id(&args.mode).context("--mode is strict or lenient")?;
    let (questions, left_out): (Vec<_>, Vec<_>) = read_exam_set_as(
        &args.exam_set,
        args.set.namespace.as_deref(),
        args.set.set_format,
    )?
    .into_iter()
    .partition(|q| {
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
            "scoring {} of the {all} questions (--text-only / --choices); pass/fail needs the \
             whole exam",
            questions.len()
        );
    }
    let options = ScoreOptions {
        mode,
        confidence: args.confidence,
        resamples: args.resamples,
        seed: args.seed,
        ..ScoreOptions::default()
    };
    let scored = scoring::run(&questions, &predictions, baseline.as_ref(), &options)?;
    if let Some(path) = &args.per_question {
        scoring::write_per_question(path, &scored.report)?;
    }
    let credit = args
        .set
        .namespace
        .is_none()
        .then_some(kokushi_shared::igakuqa::IGAKUQA_CREDIT);
    let out = match args.format {
        OutputFormat::Table => scoring::render_table(&scored, mode, credit),
        OutputFormat::Json => scoring::render_json(&scored)?,
        OutputFormat::Csv => scoring::render_csv(&scored),
    };
    print!("{out}");
    Ok(())
}

/// The account `kokushi demo` signs in with.
const DEMO_USER: &str = "demo";

async fn demo(args: DemoArgs) -> anyhow::Result<()> {
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
    match db.user_by_name(DEMO_USER).await? {
        Some(existing) => {
            let hash = kokushi_backend::auth::hash_password(&password)
                .map_err(|e| anyhow::anyhow!("{e}"))?;
            db.update_user(existing.user.id, Some(&roles), Some(false), Some(&hash))
                .await?;
        }
        None => {
            kokushi_backend::accounts::create_user(&db, DEMO_USER, &password, &roles)
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        }
    }
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

/// Ctrl-C or SIGTERM.
async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_demo_warns_when_other_machines_can_reach_it() {
        for host in ["127.0.0.1", "127.8.0.1", "[::1]", "localhost", "LOCALHOST"] {
            assert_eq!(super::demo_bind_warning(host), None, "{host}");
        }
        for host in ["0.0.0.0", "192.168.1.5", "[::]", "example.org"] {
            let warning = super::demo_bind_warning(host).expect(host);
            assert!(warning.contains("password"), "{warning}");
        }
    }
}
