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
use kokushi_backend::import::read_exam_set;
use kokushi_backend::{Application, Settings};
use kokushi_queue::RedisQueue;
use kokushi_shared::prompt::PromptFormat;
use kokushi_worker::{Worker, WorkerConfig};

#[derive(Parser)]
#[command(
    name = "kokushi",
    version,
    about = "Kokushi (国試): evaluate Japanese medical language models on the national medical licensing exam",
    long_about = "Kokushi (国試): evaluate Japanese medical language models on the Japanese National \
Medical Licensing Examination (IgakuQA).\n\nOne machine: `kokushi serve` (SQLite file, in-process \
queue and worker). A cluster: `kokushi serve --database-url postgres://... --redis-url redis://...` \
on API nodes and `kokushi worker --redis-url redis://...` on GPU nodes.\n\nEvery flag can also be \
set with the environment variable shown in its help."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the API and the web UI.
    Serve(ServeArgs),
    /// Take evaluation jobs from Redis and answer them with the engine.
    Worker(WorkerArgs),
    /// Import an IgakuQA-format exam set (a .jsonl file or a folder of them).
    Import(ImportArgs),
    /// Create or update the database schema, then exit.
    Migrate(DbArgs),
    /// Import IgakuQA 2022, queue an evaluation of the demo model and serve the portal.
    Demo(DemoArgs),
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
}

#[derive(Args)]
struct ImportArgs {
    #[command(flatten)]
    db: DbArgs,
    /// The exam set's name, e.g. "IgakuQA 2022".
    #[arg(long)]
    name: String,
    /// .jsonl files or folders of them.
    #[arg(required = true)]
    paths: Vec<PathBuf>,
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("KOKUSHI_LOG")
                .unwrap_or_else(|_| "info,sqlx=warn,actix_server=warn".into()),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args, None).await,
        Command::Worker(args) => worker(args).await,
        Command::Import(args) => import(args).await,
        Command::Migrate(args) => {
            Db::connect(&args.database_url).await?;
            println!("database is up to date");
            Ok(())
        }
        Command::Demo(args) => demo(args).await,
    }
}

fn settings(args: &ServeArgs) -> Settings {
    Settings {
        database_url: args.db.database_url.clone(),
        redis_url: args.redis_url.clone(),
        queue_prefix: args.queue_prefix.clone(),
        bind: args.bind.clone(),
        model_store: args.model_store.clone(),
        static_dir: args.static_dir.clone(),
        embedded_worker: args.embedded_worker.unwrap_or(args.redis_url.is_none()),
        max_upload_bytes: 32 * 1024 * 1024,
    }
}

async fn serve(args: ServeArgs, banner: Option<String>) -> anyhow::Result<()> {
    let app = Application::build(settings(&args)).await?;
    let stop = app.stop_handle();
    let host = args.bind.rsplit_once(':').map_or("127.0.0.1", |(h, _)| h);
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

async fn worker(args: WorkerArgs) -> anyhow::Result<()> {
    let queue = Arc::new(RedisQueue::connect(&args.redis_url, &args.queue_prefix).await?);
    let name = args
        .name
        .unwrap_or_else(|| format!("worker-{}", std::process::id()));
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name,
            model_store: args.model_store,
            poll: Duration::from_secs(2),
        },
    );
    worker.run_until_stopped(shutdown_signal()).await;
    Ok(())
}

async fn import(args: ImportArgs) -> anyhow::Result<()> {
    let questions = read_exam_set(&args.paths)?;
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
        prompt_format,
        limit: Some(args.limit),
        max_new_tokens: 32,
    };
    // A second start reuses the run: unfinished, the server re-publishes it; finished, it stays.
    if db.find_run(&new).await?.is_none() {
        db.create_run(&new).await?;
    }
    db.close().await;
    serve(
        args.serve,
        Some(format!(
            "Demo: {} on {} text-only questions of IgakuQA 2022. Ctrl-C stops; starting again resumes.",
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
