//! `cargo xtask bench api`: the leaderboard endpoint of a release build, on a SQLite database of
//! 100 runs × 2,000 answers, under load from `wrk` (a second process, loopback only, a bounded
//! duration), beside the cheapest endpoint of the same server (`GET /api/health`, a static JSON
//! body through the same middleware: the ceiling of actix on this machine). Prints one
//! `RESULT {json}` line per endpoint.
//!
//! Settings (environment): `KOKUSHI_BENCH_SECONDS` (10), `KOKUSHI_BENCH_CONNECTIONS` (32).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kokushi_backend::db::Db;
use kokushi_backend::db::runs::NewRun;
use kokushi_backend::{Application, Settings, accounts, auth};
use kokushi_shared::api::Role;
use kokushi_shared::igakuqa::Importer;
use kokushi_shared::prompt::PromptFormat;

const RUNS: usize = 100;
const ANSWERS: usize = 2_000;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An exam set of `ANSWERS` text-only questions, 100 runs asking all of them, every question
/// answered in every run; returns an API token of an admin.
async fn populate(url: &str) -> Result<String> {
    let db = Db::connect(url).await?;
    let mut text = String::new();
    for i in 0..ANSWERS {
        let block = char::from(b'A' + u8::try_from(i / 100).unwrap_or(0));
        text.push_str(
            &serde_json::json!({
                "problem_id": format!("950{block}{}", i % 100 + 1),
                "problem_text": format!("第{i}問。インスリンを分泌する細胞はどれか。"),
                "choices": ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"],
                "text_only": true,
                "answer": ["b"],
                "points": "1",
            })
            .to_string(),
        );
        text.push('\n');
    }
    let mut importer = Importer::new();
    importer.add_file("bench.jsonl", &text);
    let questions = importer
        .finish()
        .map_err(|e| anyhow::anyhow!("bench exam: {:?}", e.first()))?;
    let (set, _) = db.insert_exam_set("bench", &questions).await?;
    for i in 0..RUNS {
        db.create_run(&NewRun {
            exam_set_id: set.id,
            model: format!("model-{i}.gguf"),
            adapter: None,
            settings: kokushi_shared::job::EvalSettings::new(PromptFormat::ChatmlJa, 32),
            shot_pool_exam_set_id: None,
            limit: None,
            priority: Default::default(),
            created_by: None,
            project_id: db.default_project().await?,
        })
        .await?
        .context("exam set exists")?;
    }
    // Answers in bulk, one statement; then the stored tallies as the migration computes them.
    let choices: Vec<String> = ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"]
        .map(str::to_owned)
        .to_vec();
    let extracted = serde_json::to_string(&kokushi_shared::extract::extract("b", &choices))?;
    let pool = sqlx::AnyPool::connect(url).await?;
    sqlx::query(
        "INSERT INTO answers (run_id, problem_id, raw_output, extracted, rules_version, correct, \
         unparsed, points, prompt_tokens, generated_tokens, latency_ms, created_at) \
         SELECT run_id, problem_id, 'b', $1, 'letters-v1', position % 2, 0, 1, 120, 4, 250, \
         '2026-11-29T00:00:00Z' FROM run_questions",
    )
    .bind(extracted)
    .execute(&pool)
    .await?;
    sqlx::query(
        "UPDATE runs SET \
         tally_answered = (SELECT COUNT(*) FROM answers a WHERE a.run_id = runs.id), \
         tally_correct = (SELECT COALESCE(SUM(a.correct), 0) FROM answers a WHERE a.run_id = runs.id), \
         tally_points = (SELECT COALESCE(SUM(a.points * a.correct), 0) FROM answers a WHERE a.run_id = runs.id), \
         tally_points_possible = (SELECT COALESCE(SUM(a.points), 0) FROM answers a WHERE a.run_id = runs.id)",
    )
    .execute(&pool)
    .await?;
    let n: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM answers")
            .fetch_one(&pool)
            .await?,
        "n",
    )?;
    anyhow::ensure!(n == i64::try_from(RUNS * ANSWERS)?, "{n} answers stored");
    pool.close().await;
    let admin = accounts::create_user(&db, "bench", "bench-password", &[Role::Admin])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let token = auth::new_api_token();
    db.create_token(
        admin.id,
        "bench",
        &auth::digest(&token),
        None,
        db.default_project().await?,
        false,
    )
    .await?;
    db.close().await;
    Ok(token)
}

/// wrk's figures: requests/s and latency percentiles in milliseconds.
#[derive(Debug)]
struct Load {
    rps: f64,
    p50: f64,
    p90: f64,
    p99: f64,
    requests: u64,
    errors: u64,
}

fn millis(value: &str) -> Option<f64> {
    let value = value.trim();
    let (number, unit) = value.split_at(value.find(|c: char| c.is_ascii_alphabetic())?);
    let number: f64 = number.parse().ok()?;
    Some(match unit {
        "us" => number / 1000.0,
        "ms" => number,
        "s" => number * 1000.0,
        "m" => number * 60_000.0,
        _ => return None,
    })
}

fn parse_wrk(out: &str) -> Result<Load> {
    let mut load = Load {
        rps: 0.0,
        p50: f64::NAN,
        p90: f64::NAN,
        p99: f64::NAN,
        requests: 0,
        errors: 0,
    };
    for line in out.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["Requests/sec:", rps] => load.rps = rps.parse()?,
            ["50%", v] => load.p50 = millis(v).context("p50")?,
            ["90%", v] => load.p90 = millis(v).context("p90")?,
            ["99%", v] => load.p99 = millis(v).context("p99")?,
            [n, "requests", "in", ..] => load.requests = n.parse()?,
            ["Non-2xx", "or", "3xx", "responses:", n] => load.errors += n.parse::<u64>()?,
            ["Socket", "errors:", ..] => load.errors += 1,
            _ => {}
        }
    }
    if load.rps == 0.0 || load.p99.is_nan() {
        bail!("could not read wrk's output:\n{out}");
    }
    Ok(load)
}

fn wrk(url: &str, token: Option<&str>, seconds: u64, connections: u64) -> Result<Load> {
    let mut cmd = Command::new("wrk");
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--latency",
    ]);
    if let Some(token) = token {
        cmd.args(["-H", &format!("Authorization: Bearer {token}")]);
    }
    let out = cmd
        .arg(url)
        .output()
        .context("running wrk (apt-get install wrk; `cargo xtask bench api` installs it)")?;
    anyhow::ensure!(
        out.status.success(),
        "wrk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    parse_wrk(&String::from_utf8_lossy(&out.stdout))
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<()> {
    let seconds = env_or("KOKUSHI_BENCH_SECONDS", 10);
    let connections = env_or("KOKUSHI_BENCH_CONNECTIONS", 32);
    let dir = tempfile::tempdir()?;
    let url = format!("sqlite://{}", dir.path().join("bench.sqlite").display());
    let started = Instant::now();
    let token = populate(&url).await?;
    eprintln!(
        "populated {RUNS} runs x {ANSWERS} answers in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    let mut settings = Settings::embedded(url, dir.path());
    settings.embedded_worker = false;
    let app = Application::build(settings).await?;
    let base = format!("http://127.0.0.1:{}", app.port());
    let stop = app.stop_handle();
    let server = tokio::spawn(app.run_until_stopped());

    // The leaderboard answers, in full, before it is loaded.
    let board: Vec<kokushi_shared::api::RunSummary> = reqwest::Client::new()
        .get(format!("{base}/api/leaderboard"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(board.len() == RUNS, "{} rows", board.len());
    anyhow::ensure!(
        board.iter().all(|r| r.tally.answered as usize == ANSWERS),
        "every run has its {ANSWERS} answers"
    );

    for (name, path, auth) in [
        ("health (ceiling)", "/api/health", None),
        ("leaderboard", "/api/leaderboard", Some(token.as_str())),
    ] {
        let url = format!("{base}{path}");
        let warm = {
            let url = url.clone();
            let auth = auth.map(str::to_owned);
            tokio::task::spawn_blocking(move || wrk(&url, auth.as_deref(), 2, connections))
        };
        let warm = warm.await??;
        anyhow::ensure!(
            warm.errors == 0,
            "{name}: {} non-2xx responses or socket errors while warming up",
            warm.errors
        );
        let measured = {
            let auth = auth.map(str::to_owned);
            tokio::task::spawn_blocking(move || wrk(&url, auth.as_deref(), seconds, connections))
        }
        .await??;
        eprintln!(
            "{name:18} {:>8.0} req/s  p50 {:>6.2} ms  p90 {:>6.2} ms  p99 {:>6.2} ms  ({} requests, {} errors)",
            measured.rps,
            measured.p50,
            measured.p90,
            measured.p99,
            measured.requests,
            measured.errors
        );
        // A figure of failing requests is no figure.
        anyhow::ensure!(
            measured.errors == 0,
            "{name}: {} non-2xx responses or socket errors: the bench fails",
            measured.errors
        );
        println!(
            "RESULT {}",
            serde_json::json!({
                "endpoint": name, "path": path, "rps": measured.rps, "p50_ms": measured.p50,
                "p90_ms": measured.p90, "p99_ms": measured.p99, "requests": measured.requests,
                "errors": measured.errors, "connections": connections, "seconds": seconds,
                "runs": RUNS, "answers_per_run": ANSWERS,
            })
        );
    }
    stop.stop().await;
    server.await??;
    Ok(())
}
