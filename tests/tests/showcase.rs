//! The pages as a research team would show them: real IgakuQA questions answered by real
//! models, saved as PNGs (1440×900) by `cargo xtask screenshots`.
//!
//! IgakuQA 2021 (the 115th exam) is the tuning data and IgakuQA 2022 (the 116th) the exam, so
//! the tuned model is never evaluated on what it was trained on. SmolLM2-135M-Instruct and
//! Gemma 3 270M (the demo models) answer the first `KOKUSHI_SHOWCASE_LIMIT` text-only
//! questions (default 40) in their prompt formats, Gemma also by log-likelihood; a LoRA
//! tuning of SmolLM2 on 2021 (`KOKUSHI_SHOWCASE_STEPS` steps, default 40) chains the
//! evaluation of the base and the tuned model. Two annotators grade a sample of Gemma's answers
//! through the API (one of them not finished). Then the browser visits the leaderboard, a run,
//! a question (and one of the log-likelihood run), the comparison of base and tuned, an upload
//! with errors, the loss curve, and the grading pages (tasks, a task's agreement, an item with
//! its grades, an annotator's screen), in English and in Japanese.
//!
//! Ignored by `cargo test` (it needs the demo models and the IgakuQA data, and takes minutes
//! on two cores); `cargo xtask screenshots` runs it with everything it needs set.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use fantoccini::{Client, Locator};
use kokushi_backend::Settings;
use kokushi_shared::api::{ExamSetSummary, RunStatus, RunSummary, TuningDetail};
use kokushi_shared::grading::{
    BlindItem, GradingTaskDetail, GradingTaskSummary, ItemState, MyQueue,
};
use kokushi_tests::ui::{
    choose_file, click, element, shoot, sign_in, switch_user, text_of, type_into, wait_text,
};
use kokushi_tests::{ADMIN_PASSWORD, ADMIN_USER, Browser, TestApp};

const SMOL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";
const GEMMA: &str = "gemma-3-270m-q4_k_m.gguf";

fn required(var: &str) -> String {
    kokushi_tests::required(var, "cargo xtask screenshots")
}

/// One exam year's six block files as one upload.
async fn upload_year(app: &TestApp, data: &Path, year: &str, name: &str) -> Result<ExamSetSummary> {
    let dir = data.join(year);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "jsonl"))
        .collect();
    files.sort();
    let mut body = Vec::new();
    for file in &files {
        body.extend(std::fs::read(file)?);
        if !body.ends_with(b"\n") {
            body.push(b'\n');
        }
    }
    app.upload_exam(name, &format!("igakuqa-{year}.jsonl"), body)
        .await
}

async fn post<T: serde::de::DeserializeOwned>(
    app: &TestApp,
    path: &str,
    body: serde_json::Value,
) -> Result<T> {
    let res = app.client.post(app.url(path)).json(&body).send().await?;
    if !res.status().is_success() {
        bail!("POST {path}: {} {}", res.status(), res.text().await?);
    }
    Ok(res.json().await?)
}

async fn get<T: serde::de::DeserializeOwned>(app: &TestApp, path: &str) -> Result<T> {
    Ok(app
        .client
        .get(app.url(path))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?)
}

/// Waits until every run on the leaderboard and the tuning have finished, printing progress.
async fn wait_for_all(app: &TestApp, tuning: i64, runs_expected: usize) -> Result<()> {
    let started = Instant::now();
    let mut last = String::new();
    loop {
        let runs: Vec<RunSummary> = app.leaderboard().await?;
        let detail: TuningDetail = get(app, &format!("/api/tunings/{tuning}")).await?;
        let line = format!(
            "tuning {:?} step {}/{}; runs: {}",
            detail.tuning.status,
            detail.tuning.steps_done,
            detail.tuning.steps,
            runs.iter()
                .map(|r| format!("#{} {:?} {}/{}", r.id, r.status, r.tally.answered, r.total))
                .collect::<Vec<_>>()
                .join(", ")
        );
        if line != last {
            println!("[{:>4} s] {line}", started.elapsed().as_secs());
            last.clone_from(&line);
        }
        if detail.tuning.status.is_finished() && detail.tuning.status != RunStatus::Succeeded {
            bail!(
                "the tuning ended {:?}: {}",
                detail.tuning.status,
                detail.tuning.error.unwrap_or_default()
            );
        }
        if detail.tuning.status.is_finished()
            && runs.len() >= runs_expected
            && runs.iter().all(|r| r.status.is_finished())
        {
            return Ok(());
        }
        if started.elapsed() > Duration::from_secs(3 * 3600) {
            bail!("the showcase jobs did not finish in 3 hours: {line}");
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the demo models and the IgakuQA data; `cargo xtask screenshots` runs it"]
async fn showcase_screenshots() {
    showcase().await.expect("showcase");
}

async fn showcase() -> Result<()> {
    let static_dir = required("KOKUSHI_STATIC_DIR");
    let chromedriver = required("CHROMEDRIVER");
    let models = PathBuf::from(required("KOKUSHI_MODEL_STORE"));
    let data = PathBuf::from(required("KOKUSHI_DATA"));
    required("KOKUSHI_SCREENSHOTS_DIR");
    let limit: u32 = std::env::var("KOKUSHI_SHOWCASE_LIMIT")
        .ok()
        .map(|v| v.parse().context("KOKUSHI_SHOWCASE_LIMIT must be a number"))
        .transpose()?
        .unwrap_or(40);
    let steps: u64 = std::env::var("KOKUSHI_SHOWCASE_STEPS")
        .ok()
        .map(|v| v.parse().context("KOKUSHI_SHOWCASE_STEPS must be a number"))
        .transpose()?
        .unwrap_or(40);
    for model in [SMOL, GEMMA] {
        anyhow::ensure!(
            models.join(model).is_file(),
            "{model} is not in {}",
            models.display()
        );
    }

    // The server in embedded mode (its own worker), over a store of its own holding the demo
    // models (hard links beside the cache, copies elsewhere): the adapter it trains must not
    // land in the cache.
    let dir = tempfile::tempdir()?;
    let store = tempfile::tempdir_in(models.parent().unwrap_or(&models))?;
    for model in [SMOL, GEMMA] {
        let (from, to) = (models.join(model), store.path().join(model));
        if std::fs::hard_link(&from, &to).is_err() {
            std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        }
    }
    let mut settings = Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await?;
    let tuning_data = upload_year(&app, &data, "2021", "IgakuQA 2021 (115th)").await?;
    let exam = upload_year(&app, &data, "2022", "IgakuQA 2022 (116th)").await?;

    // The tuning first: its chained evaluations of base and tuned SmolLM2 follow it.
    let tuning: serde_json::Value = post(
        &app,
        "/api/tunings",
        serde_json::json!({
            "base_model": SMOL,
            "adapter": "smollm2-igakuqa2021-lora",
            "data_exam_set_id": tuning_data.id,
            "prompt_format": "chatml_ja_v1",
            "steps": steps,
            "batch": 1,
            "seed": 7,
            "validation_share": 0.05,
            "evaluate": { "exam_set_id": exam.id, "limit": limit, "max_new_tokens": 32 },
        }),
    )
    .await?;
    let tuning_id = tuning["id"].as_i64().context("the tuning's id")?;
    let (mut loglik_run, mut gemma_run) = (0, 0);
    for (model, format, scoring) in [
        (SMOL, "plain_ja_v1", "generation"),
        (GEMMA, "gemma_ja_v1", "generation"),
        (GEMMA, "gemma_ja_v1", "loglik"),
    ] {
        let run: RunSummary = post(
            &app,
            "/api/runs",
            serde_json::json!({
                "exam_set_id": exam.id, "model": model, "prompt_format": format,
                "limit": limit, "max_new_tokens": 32, "scoring": scoring,
            }),
        )
        .await?;
        if scoring == "loglik" {
            loglik_run = run.id;
        } else if model == GEMMA {
            gemma_run = run.id;
        }
    }
    wait_for_all(&app, tuning_id, 5).await?;
    let detail: TuningDetail = get(&app, &format!("/api/tunings/{tuning_id}")).await?;
    let base_run = detail.tuning.base_run_id.context("the base model's run")?;
    let tuned_run = detail
        .tuning
        .tuned_run_id
        .context("the tuned model's run")?;

    let (task, disputed) = grading_task(&app, gemma_run).await?;

    let session = Browser::start(&chromedriver).await?;
    let browser = session.client.clone();
    let base = app.base.clone();
    sign_in(&browser, &base, ADMIN_USER, ADMIN_PASSWORD).await;
    pages(&browser, &base, base_run, tuned_run, tuning_id, "").await;
    // A question of the log-likelihood run: each choice's probability beside its Gestalt bar.
    browser
        .goto(&format!("{base}/runs/{loglik_run}"))
        .await
        .expect("run page");
    click(&browser, "#questions tr.question-row a.question-link").await;
    text_of(&browser, ".choice-list.with-logprobs").await;
    shoot(&browser, "question-loglik").await;
    grading_pages(&browser, &base, task, disputed, "").await;
    // The same pages in Japanese.
    click(&browser, "#locale-switch").await;
    wait_text(&browser, "nav.site-nav", |t| t.contains("リーダーボード")).await;
    pages(&browser, &base, base_run, tuned_run, tuning_id, "-ja").await;
    grading_pages(&browser, &base, task, disputed, "-ja").await;
    browser.close().await?;
    app.stop().await
}

/// A grading task over a sample of `run`'s answers, two graders each: annie and bob grade as
/// the parser read the answers, bob dissenting on every fourth (once doubting the gold answer),
/// annie leaving her last three for the screenshot of her screen. Returns the task and one of
/// its disputed items.
async fn grading_task(app: &TestApp, run: i64) -> Result<(i64, i64)> {
    let (annie, annie_client) = app.signed_in("annie", &["annotator"]).await?;
    let (bob, bob_client) = app.signed_in("bob", &["annotator"]).await?;
    let task: GradingTaskSummary = post(
        app,
        "/api/grading/tasks",
        serde_json::json!({
            "name": "IgakuQA 2022: a sample of 12 answers", "run_ids": [run],
            "selection": "sample", "sample_size": 12, "seed": 2022, "overlap": 2,
            "annotators": [annie, bob],
        }),
    )
    .await?;
    for (who, client) in [("annie", &annie_client), ("bob", &bob_client)] {
        let queue: MyQueue = client
            .get(app.url(&format!("/api/grading/mine/{}", task.id)))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let todo = match who {
            "annie" => queue.items.len().saturating_sub(3),
            _ => queue.items.len(),
        };
        for (i, item) in queue.items.iter().take(todo).enumerate() {
            let blind: BlindItem = client
                .get(app.url(&format!("/api/grading/assignments/{}", item.assignment_id)))
                .send()
                .await?
                .error_for_status()?
                .json()
                .await?;
            let read = blind.parsed.replace(',', "");
            let gold = blind.gold.replace(',', "");
            let mut verdict = if read.is_empty() {
                "unparseable"
            } else if read == gold {
                "correct"
            } else {
                "incorrect"
            };
            let mut flags = Vec::new();
            let mut comment = String::new();
            if who == "bob" && i % 4 == 1 {
                verdict = if verdict == "correct" {
                    "partial"
                } else {
                    "correct"
                };
                if i == 1 {
                    flags.push("gold_wrong");
                    comment = "The 2022 key may have changed after the exam; please check.".into();
                }
            }
            client
                .post(app.url(&format!(
                    "/api/grading/assignments/{}/grade",
                    item.assignment_id
                )))
                .json(&serde_json::json!({
                    "expected_version": 0, "verdict": verdict, "letters": "",
                    "rationale": (verdict != "unparseable").then_some(2 + (i % 3) as u8),
                    "flags": flags, "comment": comment,
                }))
                .send()
                .await?
                .error_for_status()?;
        }
    }
    let detail: GradingTaskDetail = get(app, &format!("/api/grading/tasks/{}", task.id)).await?;
    let disputed = detail
        .items
        .iter()
        .find(|i| i.state == ItemState::Disputed)
        .or_else(|| detail.items.first())
        .context("the task has items")?
        .item_id;
    Ok((task.id, disputed))
}

/// The grading pages: the researcher's task list, a task, an item, then an annotator's
/// screen; ends signed in as the admin again, on the leaderboard.
async fn grading_pages(browser: &Client, base: &str, task: i64, item: i64, suffix: &str) {
    browser
        .goto(&format!("{base}/grading"))
        .await
        .expect("grading");
    text_of(browser, "#task-list .task-row").await;
    shoot(browser, &format!("grading-tasks{suffix}")).await;
    browser
        .goto(&format!("{base}/grading/tasks/{task}"))
        .await
        .expect("task");
    text_of(browser, "#agreement #fleiss-kappa").await;
    text_of(browser, "#items .item-row").await;
    shoot(browser, &format!("grading-task{suffix}")).await;
    browser
        .goto(&format!("{base}/grading/items/{item}"))
        .await
        .expect("item");
    element(browser, "#adjudicate-form").await;
    shoot(browser, &format!("grading-item{suffix}")).await;
    switch_user(browser, base, "annie", "annie-password").await;
    click(browser, "#my-tasks .my-task a.grade-start").await;
    text_of(browser, "#grade-output").await;
    shoot(browser, &format!("grading-screen{suffix}")).await;
    switch_user(browser, base, ADMIN_USER, ADMIN_PASSWORD).await;
    element(browser, "#leaderboard").await;
}

/// Visits and saves every page; `suffix` tells the languages apart in the file names.
async fn pages(
    browser: &Client,
    base: &str,
    base_run: i64,
    tuned_run: i64,
    tuning: i64,
    suffix: &str,
) {
    browser.goto(base).await.expect("leaderboard");
    text_of(browser, "#leaderboard tr.run-row").await;
    for id in [base_run, tuned_run] {
        click(
            browser,
            &format!("tr.run-row[data-run-id='{id}'] input.select-run"),
        )
        .await;
    }
    shoot(browser, &format!("leaderboard{suffix}")).await;
    click(browser, "#compare-selected").await;
    text_of(browser, "#paired-test").await;
    shoot(browser, &format!("compare{suffix}")).await;

    browser
        .goto(&format!("{base}/runs/{tuned_run}"))
        .await
        .expect("run page");
    text_of(browser, "#year-scores").await;
    text_of(browser, "#questions tr.question-row").await;
    shoot(browser, &format!("run{suffix}")).await;
    // A question the tuned model answered right, else the first.
    let links = browser
        .find_all(Locator::Css(
            "#questions tr.question-row:has(span.mark.correct) a.question-link",
        ))
        .await
        .unwrap_or_default();
    match links.into_iter().next() {
        Some(link) => link.click().await.expect("open the question"),
        None => click(browser, "#questions tr.question-row a.question-link").await,
    }
    text_of(browser, "#stem").await;
    shoot(browser, &format!("question{suffix}")).await;

    browser
        .goto(&format!("{base}/tunings/{tuning}"))
        .await
        .expect("tuning page");
    element(browser, "#train-curve").await;
    shoot(browser, &format!("loss-curve{suffix}")).await;

    // An upload with mistakes: every one listed with its line and field.
    browser
        .goto(&format!("{base}/exam-sets"))
        .await
        .expect("exam sets");
    let dir = tempfile::tempdir().expect("tempdir");
    let broken = dir.path().join("igakuqa-2023-draft.jsonl");
    std::fs::write(
        &broken,
        concat!(
            "{\"problem_id\": \"117A1\", \"problem_text\": \"成人の安静時呼吸数の基準範囲はどれか。\", \"choices\": [\"a 4〜8/分\", \"b 12〜20/分\", \"c 24〜30/分\", \"d 32〜40/分\", \"e 44〜50/分\"], \"answer\": [\"f\"]}\n",
            "{\"problem_id\": \"117A2\", \"problem_text\": \"\", \"choices\": [\"a 肝臓\"], \"answer\": [\"a\"]}\n",
            "{\"problem_id\": \"117A3\", \"problem_text\": \"ビタミンB1欠乏で生じるのはどれか。\", \"choices\": [\"a 脚気\", \"b 壊血病\"], \"answer\": [\"a\"], \"points\": \"1\"}\n",
            "{\"problem_id\": 117, \"problem_text\": \"…\"\n",
        ),
    )
    .expect("write the broken file");
    type_into(browser, "#upload-name", "IgakuQA 2023 (draft)").await;
    choose_file(browser, "#upload-file", &broken).await;
    click(browser, "#upload-submit").await;
    text_of(browser, "#upload-errors table.upload-errors").await;
    shoot(browser, &format!("upload-errors{suffix}")).await;
}
