//! `cargo xtask bench api`: the leaderboard of a release build at scale — a SQLite database of
//! 10,000 runs × 2,000 answers and a grading state of 50,000 grades (two annotators on 25,000
//! answers) — under load from `wrk` (a second process, loopback only, a bounded duration):
//! the stored leaderboard, a filtered one that no cache answers (a page size other than the
//! default is never cached), and what a graded run's page reads (the run without its questions,
//! then their first page of 100), beside the cheapest endpoint of the same
//! server (`GET /api/health`, a static JSON body through the same middleware: the ceiling of
//! actix on this machine). Each endpoint is measured twice: saturated by wrk's busy
//! connections (its ceiling in requests/s), then at the stated rate (`KOKUSHI_BENCH_RATE`, 100
//! requests/s: every open page of a busy portal polling at once), each request sent when due
//! and timed from then; that p99 is judged against the goal of 50 ms. Any non-2xx response
//! fails the bench. Prints one `RESULT {json}` line per endpoint.
//!
//! Settings (environment): `KOKUSHI_BENCH_RUNS` (10,000), `KOKUSHI_BENCH_ANSWERS` (2,000),
//! `KOKUSHI_BENCH_GRADES` (50,000), `KOKUSHI_BENCH_SECONDS` (10),
//! `KOKUSHI_BENCH_CONNECTIONS` (32), `KOKUSHI_BENCH_RATE` (100), `KOKUSHI_BENCH_DB` (a SQLite
//! file to keep: populated the first time, which takes minutes at the default scale, and
//! reused as it is after), `KOKUSHI_BENCH_URL` (a PostgreSQL database instead: populated when
//! empty, reused when this bench populated it, refused otherwise), `KOKUSHI_BENCH_ONLY` (only
//! the endpoints whose name holds it).

use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kokushi_backend::db::Db;
use kokushi_backend::db::grading::NewTask;
use kokushi_backend::db::runs::NewRun;
use kokushi_backend::{Application, Settings, accounts, auth};
use kokushi_shared::api::Role;
use kokushi_shared::igakuqa::Importer;
use kokushi_shared::prompt::PromptFormat;

/// The p99 latency the leaderboard's requests should stay under, in milliseconds.
const GOAL_P99_MS: f64 = 50.0;

/// What the bench stores.
#[derive(Clone, Copy)]
struct Scale {
    runs: usize,
    answers: usize,
    grades: usize,
}

/// What `populate` made: an admin's API token and a run with graded answers.
struct Populated {
    token: String,
    graded_run: i64,
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An exam set of `answers` text-only questions in blocks of 100 (A, B, …), `runs` runs asking
/// all of them, every question answered in every run (in bulk, by SQL: one run through the
/// database layer as the template, the rest copied from it), and a grading task whose two
/// annotators graded the first `grades / 2` answers alike.
async fn populate(url: &str, scale: Scale) -> Result<Populated> {
    let db = Db::connect(url).await?;
    let mut text = String::new();
    for i in 0..scale.answers {
        let block = char::from(b'A' + u8::try_from(i / 100 % 26).unwrap_or(0));
        text.push_str(
            &serde_json::json!({
                "problem_id": format!("950{block}{}", i % 100 + 1 + 100 * (i / 2600)),
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
    let project = db.default_project().await?;
    let template = db
        .create_run(&NewRun {
            exam_set_id: set.id,
            model: "model-0.gguf".to_owned(),
            adapter: None,
            settings: kokushi_shared::job::EvalSettings::new(PromptFormat::ChatmlJa, 32),
            shot_pool_exam_set_id: None,
            limit: None,
            priority: Default::default(),
            created_by: None,
            project_id: project,
        })
        .await?
        .context("exam set exists")?
        .run_id;
    let pool = sqlx::AnyPool::connect(url).await?;
    // The other runs: the template's row with another model name, and its questions.
    sqlx::query(
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < $1) \
         INSERT INTO runs (exam_set_id, model, prompt_format, question_limit, max_new_tokens, \
                           status, total, created_at, priority, created_by, adapter, scoring, \
                           eval_settings, shot_pool_exam_set_id, project_id) \
         SELECT r.exam_set_id, 'model-' || n.i || '.gguf', r.prompt_format, r.question_limit, \
                r.max_new_tokens, r.status, r.total, r.created_at, r.priority, r.created_by, \
                r.adapter, r.scoring, r.eval_settings, r.shot_pool_exam_set_id, r.project_id \
         FROM n, runs r WHERE r.id = $2",
    )
    .bind(i64::try_from(scale.runs.saturating_sub(1))?)
    .bind(template)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO run_questions (run_id, position, problem_id) \
         SELECT r.id, q.position, q.problem_id FROM runs r, run_questions q \
         WHERE q.run_id = $1 AND r.id <> $1",
    )
    .bind(template)
    .execute(&pool)
    .await?;
    // Answers in bulk, one statement; then the stored tallies as the migration computes them.
    let choices: Vec<String> = ["膵α細胞", "膵β細胞", "膵δ細胞", "肝細胞", "腺房細胞"]
        .map(str::to_owned)
        .to_vec();
    let extracted = serde_json::to_string(&kokushi_shared::extract::extract("b", &choices))?;
    sqlx::query(
        "INSERT INTO answers (run_id, problem_id, raw_output, extracted, rules_version, correct, \
         unparsed, points, prompt_tokens, generated_tokens, latency_ms, created_at) \
         SELECT run_id, problem_id, 'b', $1, 'letters-v1', 1, 0, 1, 120, 4, \
         250, '2026-11-29T00:00:00Z' FROM run_questions",
    )
    .bind(extracted)
    .execute(&pool)
    .await?;
    sqlx::query(
        "UPDATE runs SET status = 'succeeded', \
         tally_answered = (SELECT COUNT(*) FROM answers a WHERE a.run_id = runs.id), \
         tally_correct = (SELECT COALESCE(SUM(a.correct), 0) FROM answers a WHERE a.run_id = runs.id), \
         tally_points = (SELECT COALESCE(SUM(a.points * a.correct), 0) FROM answers a WHERE a.run_id = runs.id), \
         tally_points_possible = (SELECT COALESCE(SUM(a.points), 0) FROM answers a WHERE a.run_id = runs.id)",
    )
    .execute(&pool)
    .await?;
    sqlx::query("UPDATE jobs SET status = 'succeeded'")
        .execute(&pool)
        .await?;
    // What a run's success stores — per-year verdicts, text metrics, pack versions and the
    // facet cells filtered boards add up — computed for the template by the server's own code,
    // and copied to the others (their answers are the template's): a server started on this
    // database has nothing left to compute in the background while it is measured.
    kokushi_backend::ingest::store_final_scores(&db, template).await?;
    sqlx::query(
        "UPDATE runs SET \
         year_verdicts = (SELECT t.year_verdicts FROM runs t WHERE t.id = $1), \
         text_metrics = (SELECT t.text_metrics FROM runs t WHERE t.id = $1), \
         rules_versions = (SELECT t.rules_versions FROM runs t WHERE t.id = $1), \
         cells_stamp = (SELECT t.cells_stamp FROM runs t WHERE t.id = $1) \
         WHERE id <> $1",
    )
    .bind(template)
    .execute(&pool)
    .await?;
    sqlx::query(
        "INSERT INTO run_cells (run_id, year, block, section, specialty, text_only, questions, \
         answered, correct, parse_failures, points, points_possible, metric_questions, \
         correct_strict, exact_match, gestalt_correct) \
         SELECT r.id, c.year, c.block, c.section, c.specialty, c.text_only, c.questions, \
         c.answered, c.correct, c.parse_failures, c.points, c.points_possible, \
         c.metric_questions, c.correct_strict, c.exact_match, c.gestalt_correct \
         FROM runs r, run_cells c WHERE c.run_id = $1 AND r.id <> $1",
    )
    .bind(template)
    .execute(&pool)
    .await?;
    let n: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM answers")
            .fetch_one(&pool)
            .await?,
        "n",
    )?;
    anyhow::ensure!(
        n == i64::try_from(scale.runs * scale.answers)?,
        "{n} answers stored"
    );
    let admin = accounts::create_user(&db, "bench", "bench-password", &[Role::Admin])
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    // The grading state: two annotators on the first grades / 2 answers, run by run.
    let mut annotators = Vec::new();
    for name in ["annotator-1", "annotator-2"] {
        annotators.push(
            accounts::create_user(&db, name, "bench-password", &[Role::Annotator])
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?
                .id,
        );
    }
    let graded_items = scale.grades / 2;
    let run_ids: Vec<i64> = sqlx::query("SELECT id FROM runs ORDER BY id")
        .fetch_all(&pool)
        .await?
        .iter()
        .map(|r| sqlx::Row::try_get(r, "id"))
        .collect::<Result<_, _>>()?;
    // The newest runs are graded (what a team grades is what it just ran): their human
    // columns are on the leaderboard's first page.
    let graded_runs: Vec<i64> = run_ids
        .iter()
        .rev()
        .copied()
        .take(graded_items.div_ceil(scale.answers.max(1)))
        .collect();
    let items: Vec<(i64, String)> = graded_runs
        .iter()
        .flat_map(|&run| questions.iter().map(move |q| (run, q.problem_id.clone())))
        .take(graded_items)
        .collect();
    let assignments: Vec<Vec<(i64, u32, i64)>> = (0..items.len())
        .map(|i| {
            let position = u32::try_from(i).unwrap_or(u32::MAX);
            let handle = i64::try_from(i).unwrap_or(i64::MAX) * 2 + 1;
            vec![
                (annotators[0], position, handle),
                (annotators[1], position, handle + 1),
            ]
        })
        .collect();
    if !items.is_empty() {
        db.create_grading_task(&NewTask {
            name: "bench grading",
            exam_set_id: set.id,
            selection: "all",
            sample_size: None,
            seed: 1,
            overlap: 2,
            created_by: admin.id,
            project_id: project,
            run_ids: &graded_runs,
            items: &items,
            assignments: &assignments,
            audit: "{}".to_owned(),
        })
        .await?;
        // Both annotators agree: one answer in three incorrect, the rest correct.
        sqlx::query(
            "INSERT INTO grades (assignment_id, version, verdict, letters, rationale, flags, \
             comment, created_by, created_at) \
             SELECT id, 1, CASE WHEN item_id % 3 = 0 THEN 'incorrect' ELSE 'correct' END, '', \
             NULL, '', '', annotator_id, '2026-11-30T00:00:00Z' FROM grading_assignments",
        )
        .execute(&pool)
        .await?;
        // What the server keeps of a grading change (the runs' decided answers), computed as it
        // would at startup, so that it is not computing them while measured.
        kokushi_backend::grading::refresh_all_human(&db).await?;
    }
    pool.close().await;
    let token = auth::new_api_token();
    db.create_token(
        admin.id,
        "bench",
        &auth::digest(&token),
        None,
        project,
        false,
    )
    .await?;
    db.close().await;
    Ok(Populated {
        token,
        graded_run: graded_runs.first().copied().unwrap_or(template),
    })
}

/// Whether the PostgreSQL database at `url` is one `populate` made (reused), or empty — no
/// tables at all — (to populate). Any other database is refused before anything is written
/// into it (not even the migrations).
async fn populated_before(url: &str) -> Result<bool> {
    sqlx::any::install_default_drivers();
    let shown = without_credentials(url);
    let pool = sqlx::AnyPool::connect(url).await.with_context(|| {
        format!("connecting to {shown} (create an empty database for the bench first, e.g. `createdb kokushi_bench`)")
    })?;
    let tables: i64 = sqlx::Row::try_get(
        &sqlx::query(
            "SELECT COUNT(*) AS n FROM information_schema.tables WHERE table_schema = 'public'",
        )
        .fetch_one(&pool)
        .await?,
        "n",
    )?;
    let ours = tables > 0 && {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM users WHERE username = 'bench') AS users, \
             (SELECT COUNT(*) FROM exam_sets WHERE name = 'bench') AS sets",
        )
        .fetch_one(&pool)
        .await;
        match row {
            Ok(row) => {
                sqlx::Row::try_get::<i64, _>(&row, "users")? == 1
                    && sqlx::Row::try_get::<i64, _>(&row, "sets")? == 1
            }
            Err(_) => false,
        }
    };
    pool.close().await;
    anyhow::ensure!(
        tables == 0 || ours,
        "{shown} holds tables this bench did not make: name an empty database"
    );
    Ok(ours)
}

/// `url` without a user or password, for printing.
fn without_credentials(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, rest))) => format!("{scheme}://{rest}"),
        _ => url.to_owned(),
    }
}

/// A database `populate` made before: a fresh token for its admin, its scale as stored.
async fn reuse(url: &str) -> Result<(Populated, Scale)> {
    let db = Db::connect(url).await?;
    let admin = db
        .user_by_name("bench")
        .await?
        .context("no bench user: not a database this bench populated")?;
    let pool = sqlx::AnyPool::connect(url).await?;
    let count = |sql: &'static str| {
        let pool = pool.clone();
        async move {
            let row = sqlx::query(sql).fetch_one(&pool).await?;
            anyhow::Ok(sqlx::Row::try_get::<i64, _>(&row, "n")?)
        }
    };
    let scale = Scale {
        runs: usize::try_from(count("SELECT COUNT(*) AS n FROM runs").await?)?,
        answers: usize::try_from(count("SELECT MAX(total) AS n FROM runs").await?)?,
        grades: usize::try_from(count("SELECT COUNT(*) AS n FROM grades").await?)?,
    };
    let graded_run = count("SELECT COALESCE(MAX(run_id), 1) AS n FROM grading_items").await?;
    // Populating ends with the admin's token named "bench": without it, it stopped halfway.
    let finished = count("SELECT COUNT(*) AS n FROM api_tokens WHERE name = 'bench'").await?;
    anyhow::ensure!(
        finished > 0,
        "populating {} did not finish: delete it (or drop and create the database) and run \
         again",
        without_credentials(url)
    );
    // A database kept from before the server stored something at a run's success would have
    // the server compute it in the background while it is measured.
    let incomplete =
        count("SELECT COUNT(*) AS n FROM runs WHERE year_verdicts IS NULL OR cells_stamp IS NULL")
            .await?;
    anyhow::ensure!(
        incomplete == 0,
        "{incomplete} runs of the kept database lack what a run's success stores now (made by \
         an older bench): delete {url} and run again to populate it afresh"
    );
    pool.close().await;
    // Decided answers of a database kept from before they were stored (the server would compute
    // them at startup, while measured).
    kokushi_backend::grading::refresh_all_human(&db).await?;
    let token = auth::new_api_token();
    db.create_token(
        admin.user.id,
        &format!("bench-{}", std::process::id()),
        &auth::digest(&token),
        None,
        db.default_project().await?,
        false,
    )
    .await?;
    db.close().await;
    Ok((Populated { token, graded_run }, scale))
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
    if load.requests == 0 && out.contains("requests in") {
        bail!("no request was answered while wrk ran (each takes longer than the run)");
    }
    if load.rps == 0.0 || load.p99.is_nan() {
        bail!("could not read wrk's output:\n{out}");
    }
    Ok(load)
}

fn wrk(url: &str, token: Option<&str>, seconds: u64, connections: u64) -> Result<Load> {
    let mut cmd = Command::new("wrk");
    // A slow answer is measured, not dropped as a socket timeout.
    cmd.args([
        "-t1",
        &format!("-c{connections}"),
        &format!("-d{seconds}s"),
        "--timeout",
        "60s",
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

/// Latencies of requests sent at a fixed rate, whatever the server's pace.
#[derive(Debug)]
struct Paced {
    p50: f64,
    p90: f64,
    p99: f64,
    max: f64,
    requests: u64,
    errors: u64,
}

/// `rate` requests a second for `seconds`, each sent when it is due (not when the one before
/// was answered) and timed from when it was due: a slow answer delays no later measurement
/// (no coordinated omission), so the percentiles are what a user arriving at that rate sees.
async fn at_rate(url: &str, token: Option<&str>, rate: u64, seconds: u64) -> Result<Paced> {
    let client = reqwest::Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .pool_max_idle_per_host(1024)
        .build()?;
    let n = rate * seconds;
    let start = tokio::time::Instant::now() + std::time::Duration::from_millis(20);
    let mut tasks = tokio::task::JoinSet::new();
    for i in 0..n {
        let due = start + std::time::Duration::from_nanos(i * 1_000_000_000 / rate.max(1));
        tokio::time::sleep_until(due).await;
        let mut request = client.get(url);
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        tasks.spawn(async move {
            let ok = match request.send().await {
                Ok(r) => r.status().is_success() && r.bytes().await.is_ok(),
                Err(_) => false,
            };
            (due.elapsed().as_secs_f64() * 1000.0, ok)
        });
    }
    let mut latencies = Vec::with_capacity(usize::try_from(n)?);
    let mut errors = 0;
    while let Some(done) = tasks.join_next().await {
        let (ms, ok) = done?;
        errors += u64::from(!ok);
        latencies.push(ms);
    }
    anyhow::ensure!(!latencies.is_empty(), "no request was sent");
    latencies.sort_by(f64::total_cmp);
    let at = |q: f64| {
        let i = ((latencies.len() as f64 * q).ceil() as usize).clamp(1, latencies.len()) - 1;
        latencies[i]
    };
    Ok(Paced {
        p50: at(0.50),
        p90: at(0.90),
        p99: at(0.99),
        max: at(1.0),
        requests: n,
        errors,
    })
}

/// One endpoint: a single request timed alone; `rate` requests a second for `seconds`, whose
/// p99 is judged against the goal; then wrk for 2 s (warm-up) and `seconds` with `connections`
/// busy connections (the ceiling: requests/s when each answer is awaited by the next request). Prints the figures and a `RESULT` line. Any non-2xx response, or no answer at all,
/// is an error.
async fn measure(
    base: &str,
    (name, path, auth): (&str, &str, Option<&str>),
    (seconds, connections, rate): (u64, u64, u64),
    scale: Scale,
) -> Result<()> {
    let url = format!("{base}{path}");
    let mut single = reqwest::Client::new().get(&url);
    if let Some(token) = auth {
        single = single.bearer_auth(token);
    }
    let started = Instant::now();
    let bytes = single
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?
        .len();
    eprintln!(
        "{name:20} one request alone: {:.2} ms, {bytes} bytes",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let paced = at_rate(&url, auth, rate, seconds).await?;
    eprintln!(
        "{name:20} at {rate} req/s     p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  max {:>8.2} \
         ms  ({} requests, {} errors){}",
        paced.p50,
        paced.p90,
        paced.p99,
        paced.max,
        paced.requests,
        paced.errors,
        if auth.is_none() {
            ""
        } else if paced.p99 < GOAL_P99_MS {
            "  p99 under the 50 ms goal"
        } else {
            "  p99 OVER the 50 ms goal"
        }
    );
    anyhow::ensure!(
        paced.errors == 0,
        "{} of the requests at {rate} req/s failed or were not answered",
        paced.errors
    );
    let wrk_for = |seconds: u64| {
        let url = url.clone();
        let auth = auth.map(str::to_owned);
        tokio::task::spawn_blocking(move || wrk(&url, auth.as_deref(), seconds, connections))
    };
    let warm = wrk_for(2).await??;
    anyhow::ensure!(
        warm.errors == 0,
        "{} non-2xx responses or socket errors while warming up",
        warm.errors
    );
    let measured = wrk_for(seconds).await??;
    eprintln!(
        "{name:20} ceiling {:>8.0} req/s  p50 {:>8.2} ms  p90 {:>8.2} ms  p99 {:>8.2} ms  ({} \
         requests, {} errors, {connections} busy connections)",
        measured.rps, measured.p50, measured.p90, measured.p99, measured.requests, measured.errors,
    );
    // A figure of failing requests is no figure.
    anyhow::ensure!(
        measured.errors == 0,
        "{} non-2xx responses or socket errors",
        measured.errors
    );
    println!(
        "RESULT {}",
        serde_json::json!({
            "endpoint": name, "path": path, "bytes": bytes,
            "database": if std::env::var_os("KOKUSHI_BENCH_URL").is_some() { "postgres" } else { "sqlite" },
            "ceiling_rps": measured.rps, "ceiling_p50_ms": measured.p50,
            "ceiling_p99_ms": measured.p99, "connections": connections,
            "rate": rate, "p50_ms": paced.p50, "p90_ms": paced.p90, "p99_ms": paced.p99,
            "max_ms": paced.max, "requests": paced.requests, "seconds": seconds,
            "runs": scale.runs, "answers_per_run": scale.answers, "grades": scale.grades / 2 * 2,
            "goal_p99_ms": GOAL_P99_MS, "meets_goal": auth.is_none() || paced.p99 < GOAL_P99_MS,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    let runtime = tokio::runtime::Runtime::new()?;
    runtime.block_on(bench())
}

async fn bench() -> Result<()> {
    let seconds = env_or("KOKUSHI_BENCH_SECONDS", 10);
    let connections = env_or("KOKUSHI_BENCH_CONNECTIONS", 32);
    let rate = env_or("KOKUSHI_BENCH_RATE", 100).max(1);
    // Only the endpoints whose name holds this text (to profile one).
    let only = std::env::var("KOKUSHI_BENCH_ONLY").ok();
    let scale = Scale {
        runs: usize::try_from(env_or("KOKUSHI_BENCH_RUNS", 10_000))?.max(1),
        answers: usize::try_from(env_or("KOKUSHI_BENCH_ANSWERS", 2_000))?.clamp(1, 2_600),
        grades: usize::try_from(env_or("KOKUSHI_BENCH_GRADES", 50_000))?,
    };
    let dir = tempfile::tempdir()?;
    let started = Instant::now();
    let (url, reusable) = match std::env::var("KOKUSHI_BENCH_URL") {
        // PostgreSQL: an empty database is populated, one this bench populated is reused.
        Ok(url) => {
            anyhow::ensure!(
                url.starts_with("postgres://") || url.starts_with("postgresql://"),
                "KOKUSHI_BENCH_URL names a PostgreSQL database (postgres://…); a SQLite file is \
                 KOKUSHI_BENCH_DB"
            );
            let reusable = populated_before(&url).await?;
            (url, reusable)
        }
        // SQLite: a file kept between runs (`KOKUSHI_BENCH_DB`), populated the first time and
        // reused after, or a temporary one.
        Err(_) => {
            let kept = std::env::var_os("KOKUSHI_BENCH_DB").map(std::path::PathBuf::from);
            let reusable = kept.as_ref().is_some_and(|f| f.exists());
            let file = kept.unwrap_or_else(|| dir.path().join("bench.sqlite"));
            (format!("sqlite://{}", file.display()), reusable)
        }
    };
    let (Populated { token, graded_run }, scale) = if reusable {
        let (populated, stored) = reuse(&url).await?;
        eprintln!("reusing {}", without_credentials(&url));
        (populated, stored)
    } else {
        (populate(&url, scale).await?, scale)
    };
    eprintln!(
        "{} runs x {} answers and {} grades, ready in {:.1} s",
        scale.runs,
        scale.answers,
        scale.grades / 2 * 2,
        started.elapsed().as_secs_f64()
    );
    let mut settings = Settings::embedded(url, dir.path());
    settings.embedded_worker = false;
    let app = Application::build(settings.clone()).await?;
    let mut base = format!("http://127.0.0.1:{}", app.port());
    let mut stop = app.stop_handle();
    let mut server = tokio::spawn(app.run_until_stopped());

    // The leaderboard answers, in full, before it is loaded: its first page (500 rows).
    let board: Vec<kokushi_shared::api::RunSummary> = reqwest::Client::new()
        .get(format!("{base}/api/leaderboard"))
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    anyhow::ensure!(board.len() == scale.runs.min(500), "{} rows", board.len());
    anyhow::ensure!(
        board
            .iter()
            .all(|r| r.tally.answered as usize == scale.answers),
        "every run has its {} answers",
        scale.answers
    );
    anyhow::ensure!(
        board
            .iter()
            .all(|r| !r.years.is_empty() && r.metrics.is_some()),
        "every run has its verdicts and metrics stored (nothing left for the server to compute)"
    );

    // What the run page reads: the run without its questions, then their first page. The
    // whole run in one answer (`/api/runs/{id}`, every question: an API client's download) is
    // timed alone, not under load.
    let whole = format!("{base}/api/runs/{graded_run}");
    let started = Instant::now();
    let bytes = reqwest::Client::new()
        .get(&whole)
        .bearer_auth(&token)
        .send()
        .await?
        .error_for_status()?
        .bytes()
        .await?
        .len();
    eprintln!(
        "{:20} one request alone: {:.2} ms, {bytes} bytes (not a page's request: not loaded)",
        "whole run (API)",
        started.elapsed().as_secs_f64() * 1000.0
    );
    let run_page = format!("/api/runs/{graded_run}?questions=false");
    let run_questions = format!("/api/runs/{graded_run}/questions");
    let mut failures = Vec::new();
    for (name, path, auth) in [
        ("health (ceiling)", "/api/health", None),
        ("leaderboard", "/api/leaderboard", Some(token.as_str())),
        (
            "filtered, uncached",
            "/api/leaderboard?blocks=A&limit=100",
            Some(token.as_str()),
        ),
        ("graded run's page", run_page.as_str(), Some(token.as_str())),
        (
            "graded run's questions",
            run_questions.as_str(),
            Some(token.as_str()),
        ),
    ] {
        if only.as_deref().is_some_and(|only| !name.contains(only)) {
            continue;
        }
        // Each endpoint on a server of its own: one that fell behind leaves no backlog of
        // abandoned requests to the next.
        stop.stop().await;
        server.await??;
        let app = Application::build(settings.clone()).await?;
        base = format!("http://127.0.0.1:{}", app.port());
        stop = app.stop_handle();
        server = tokio::spawn(app.run_until_stopped());
        let outcome = measure(
            &base,
            (name, path, auth),
            (seconds, connections, rate),
            scale,
        )
        .await;
        if let Err(e) = outcome {
            eprintln!("{name:20} FAILED: {e:#}");
            failures.push(format!("{name}: {e:#}"));
        }
    }
    stop.stop().await;
    server.await??;
    anyhow::ensure!(
        failures.is_empty(),
        "{} of the endpoints failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    Ok(())
}
