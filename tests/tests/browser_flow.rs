//! The whole researcher's flow in headless Chromium against the real server, Redis and a worker
//! with the fixture model: sign in → upload a broken exam file and read its errors → upload the
//! exam → launch two evaluations from the Jobs page and watch each finish → find them on the
//! leaderboard, score them on one block, then compare them → open a question and step to the
//! next with the keyboard → launch a LoRA tuning and watch its loss curve grow.
//!
//! Ends by switching the pages to Japanese and back. Runs on SQLite and on PostgreSQL. The
//! screenshots of the same pages with real data and models are `tests/showcase.rs`'s.

use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use kokushi_backend::Settings;
use kokushi_queue::RedisQueue;
use kokushi_shared::api::ExamSetSummary;
use kokushi_shared::bundle::Bundle;
use kokushi_tests::ui::{
    WAIT, choose_file, click, element, layout_faults, loaded_wasm, set_viewport, sign_in, text_of,
    type_into, wait_text,
};
use kokushi_tests::{
    ADMIN_PASSWORD, ADMIN_USER, Browser, TestApp, fixture_model_store, mini_exam_path, service,
};
use kokushi_worker::{Worker, WorkerConfig};

/// Worked examples for an evaluation launched from the form: the exam set asked, the one the
/// examples come from, how many and their seed.
struct Shots {
    exam_set: i64,
    pool: i64,
    shots: &'static str,
    seed: &'static str,
}

/// Queues an evaluation from the Jobs page form and returns the run id it navigated to.
async fn launch_evaluation(
    browser: &Client,
    base: &str,
    format: &str,
    limit: &str,
    shots: Option<Shots>,
) -> i64 {
    browser.goto(&format!("{base}/jobs")).await.expect("jobs");
    // The lists arrive from the API; the form picks the first exam set and model itself.
    text_of(browser, "#eval-model option").await;
    text_of(browser, "#eval-exam-set option").await;
    click(browser, &format!("#eval-format option[value='{format}']")).await;
    type_into(browser, "#eval-limit", limit).await;
    type_into(browser, "#eval-tokens", "6").await;
    if let Some(s) = shots {
        let set = format!("#eval-exam-set option[value='{}']", s.exam_set);
        click(browser, &set).await;
        type_into(browser, "#eval-shots", s.shots).await;
        click(
            browser,
            &format!("#eval-shot-pool option[value='{}']", s.pool),
        )
        .await;
        type_into(browser, "#eval-shot-seed", s.seed).await;
    }
    click(browser, "#eval-submit").await;
    let started = Instant::now();
    loop {
        let url = browser.current_url().await.expect("url");
        if let Some(id) = url.path().strip_prefix("/runs/")
            && let Ok(id) = id.parse::<i64>()
        {
            return id;
        }
        assert!(
            started.elapsed() < WAIT,
            "the form did not open the new run: {url}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// One browser at a time: two at once on a small machine make every wait a gamble.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

kokushi_tests::on_both_databases!(
    researcher_flow => a_researcher_uploads_evaluates_compares_and_tunes_in_the_browser_on_sqlite,
    a_researcher_uploads_evaluates_compares_and_tunes_in_the_browser_on_postgres
);

async fn researcher_flow(database_url: String) {
    let (Some(static_dir), Some(chromedriver), Some(redis)) = (
        service("KOKUSHI_STATIC_DIR"),
        service("CHROMEDRIVER"),
        service("KOKUSHI_TEST_REDIS_URL"),
    ) else {
        return;
    };
    let _turn = SERIAL.lock().await;
    // Arrange: the server with Redis, and a worker of its own on the fixture model.
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("fixture model");
    let prefix = format!(
        "kokushi-browser-flow-{}-{}",
        std::process::id(),
        kokushi_tests::database_kind(&database_url)
    );
    let mut settings = Settings::embedded(database_url, store.path());
    settings.static_dir = Some(static_dir.into());
    settings.redis_url = Some(redis.clone());
    settings.queue_prefix = prefix.clone();
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let queue = Arc::new(RedisQueue::connect(&redis, &prefix).await.expect("redis"));
    let worker = Worker::new(
        queue,
        WorkerConfig {
            name: "browser-flow".to_owned(),
            model_store: store.path().to_owned(),
            poll: Duration::from_millis(200),
            remote: None,
            visibility_timeout: Duration::from_secs(30),
            max_attempts: 3,
            batch: 1,
            device: kokushi_worker::Device::Cpu,
            memory: None,
        },
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let session = Browser::start(&chromedriver).await.expect("browser");
    let browser = session.client.clone();
    let base = app.base.clone();

    // Sign in; the pages speak English (the browser's language) until switched.
    sign_in(&browser, &base, ADMIN_USER, ADMIN_PASSWORD).await;
    let english_nav = text_of(&browser, "nav.site-nav").await;

    // A broken file: every problem listed with its line and field, nothing stored.
    click(&browser, "nav.site-nav a[href='/exam-sets']").await;
    let broken = dir.path().join("broken-2022.jsonl");
    std::fs::write(
        &broken,
        concat!(
            "{\"problem_id\": \"116A1\", \"problem_text\": \"正常な呼吸数はどれか。\", \"choices\": [\"4\", \"8\", \"16\", \"32\", \"48\"], \"answer\": [\"z\"], \"points\": \"1\"}\n",
            "{\"problem_id\": \"116A2\", \"problem_text\": \"\", \"choices\": [\"a\"], \"answer\": [\"a\"]}\n",
            "not json at all\n",
        ),
    )
    .expect("write broken file");
    type_into(&browser, "#upload-name", "IgakuQA 2022 (draft)").await;
    choose_file(&browser, "#upload-file", &broken).await;
    click(&browser, "#upload-submit").await;
    let errors = text_of(&browser, "#upload-errors table.upload-errors").await;
    let sets_after_broken = browser
        .find_all(Locator::Css("#exam-sets tr.exam-set-row"))
        .await
        .expect("rows")
        .len();

    // The real file.
    type_into(&browser, "#upload-name", "mini").await;
    choose_file(&browser, "#upload-file", &mini_exam_path()).await;
    click(&browser, "#upload-submit").await;
    let stored = text_of(&browser, "#upload-result").await;
    text_of(&browser, "#exam-sets tr.exam-set-row").await;

    // Two evaluations from the Jobs page; each run page follows its run to the end.
    let first = launch_evaluation(&browser, &base, "chatml_ja_v1", "4", None).await;
    wait_text(&browser, ".progress-label", |t| t.contains("succeeded")).await;
    text_of(&browser, "#year-scores").await;
    let lineage = text_of(&browser, "#lineage").await;
    let first_rows = browser
        .find_all(Locator::Css("#questions tr.question-row"))
        .await
        .expect("rows")
        .len();
    // One page of four questions: the pager offers no next page, and says so in words.
    let next_page = element(&browser, "#page-next").await;
    let pager = (
        next_page.text().await.expect("text"),
        next_page.attr("disabled").await.expect("attr").is_some(),
    );
    // The second with a worked example from another exam's set, chosen on the form.
    let sets: Vec<ExamSetSummary> = app.get_json("/api/exam-sets").await.expect("exam sets");
    let mini = sets
        .iter()
        .find(|s| s.name == "mini")
        .expect("mini stored")
        .id;
    let pool = app
        .upload_exam(
            "pool 2023",
            "pool.jsonl",
            kokushi_tests::long_exam("902A", 3),
        )
        .await
        .expect("pool stored")
        .id;
    let shots = Shots {
        exam_set: mini,
        pool,
        shots: "1",
        seed: "7",
    };
    let second = launch_evaluation(&browser, &base, "plain_ja_v1", "4", Some(shots)).await;
    wait_text(&browser, ".progress-label", |t| t.contains("succeeded")).await;
    let second_prompt_id = text_of(&browser, "#lineage-prompt-id").await;
    let second_settings = text_of(&browser, "#lineage-settings").await;

    // The leaderboard: both rows; tick them and compare.
    click(&browser, "nav.site-nav a[href='/']").await;
    for id in [first, second] {
        click(
            &browser,
            &format!("tr.run-row[data-run-id='{id}'] input.select-run"),
        )
        .await;
    }
    let leaderboard = text_of(&browser, "#leaderboard").await;
    let shots_cells = (
        text_of(
            &browser,
            &format!("tr.run-row[data-run-id='{first}'] td.shots"),
        )
        .await,
        text_of(
            &browser,
            &format!("tr.run-row[data-run-id='{second}'] td.shots"),
        )
        .await,
    );
    // Scored again on block A alone (901A1 and 901A2 of the four asked), then on everything.
    click(&browser, "input.filter-block[value='A']").await;
    text_of(&browser, ".filter-note").await;
    let progress = format!("tr.run-row[data-run-id='{first}'] td.progress");
    let block_a = wait_text(&browser, &progress, |t| t == "2/2").await;
    click(&browser, "#filter-clear").await;
    let everything = wait_text(&browser, &progress, |t| t == "4/4").await;
    click(&browser, "#compare-selected").await;
    let contingency = text_of(&browser, "#contingency").await;
    let compare_url = browser.current_url().await.expect("url").to_string();
    let paired = text_of(&browser, "#paired-test").await;

    // A question of the first run, then the next one with the keyboard.
    browser
        .goto(&format!("{base}/runs/{first}"))
        .await
        .expect("run page");
    click(&browser, "#questions tr.question-row a.question-link").await;
    let title = text_of(&browser, "#question-title").await;
    let stem = text_of(&browser, "#stem").await;
    let gold = text_of(&browser, "#gold").await;
    browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .send_keys("j")
        .await
        .expect("press j");
    let next_title = wait_text(&browser, "#question-title", |t| t != title).await;

    // A LoRA tuning from the Jobs page; its curve grows on its page until it ends.
    browser.goto(&format!("{base}/jobs")).await.expect("jobs");
    text_of(&browser, "#tune-base option").await;
    text_of(&browser, "#tune-data option").await;
    type_into(&browser, "#tune-adapter", "flow-lora").await;
    type_into(&browser, "#tune-steps", "24").await;
    type_into(&browser, "#tune-validation", "0.2").await;
    click(&browser, "#tune-submit").await;
    wait_text(&browser, ".progress-label", |t| t.contains("succeeded")).await;
    let tuning_url = browser.current_url().await.expect("url").to_string();
    let points = browser
        .find(Locator::Css("#train-curve"))
        .await
        .expect("the training curve")
        .attr("points")
        .await
        .expect("attr")
        .unwrap_or_default();
    let summary = text_of(&browser, "#tuning-summary").await;

    // Every page fits the window of a desktop and of a small laptop; on the Jobs page no label
    // or field sits on another.
    let question_url = format!("{base}/runs/{first}/questions/901A1");
    let pages = [
        (base.clone(), "#leaderboard tbody tr.run-row"),
        (format!("{base}/runs/{first}"), "#questions tr.question-row"),
        (question_url, "#question-title"),
        (compare_url, "#contingency"),
        (format!("{base}/jobs"), "#tune-form"),
        (format!("{base}/exam-sets"), "#exam-sets tr.exam-set-row"),
        (tuning_url, "#tuning-summary"),
        (format!("{base}/workers"), "#workers"),
        (format!("{base}/grading"), "#grading-home"),
    ];
    // Each page also loads its own group's bundle and nothing else, at most 250 KB on the wire.
    let mut layout = Vec::new();
    let mut bundles = Vec::new();
    for (width, height) in [(1440, 900), (1366, 768)] {
        set_viewport(&browser, width, height).await;
        for (url, ready) in &pages {
            browser.goto(url).await.expect("page");
            element(&browser, ready).await;
            let path = url
                .strip_prefix(base.as_str())
                .expect("a page of the portal");
            let path = path.split('?').next().unwrap_or_default();
            let wanted = format!("/{}_bg.wasm", Bundle::of(path).name());
            let wasm = loaded_wasm(&browser).await;
            if !matches!(&wasm[..], [(file, bytes)] if *file == wanted && (1..=250 * 1024).contains(bytes))
            {
                bundles.push(format!(
                    "{url} loaded {wasm:?}, not {wanted} (at most 250 KB)"
                ));
            }
            let separate = "label.field > span:first-child, label.field input, label.field select";
            for fault in layout_faults(&browser, separate).await {
                layout.push(format!("{url} at {width}×{height}: {fault}"));
            }
        }
    }
    set_viewport(&browser, 1440, 900).await;

    // 日本語: the switch reloads the page in Japanese and the choice survives a new page.
    click(&browser, "#locale-switch").await;
    let japanese_nav = wait_text(&browser, "nav.site-nav", |t| t.contains("リーダーボード")).await;
    browser.goto(&base).await.expect("leaderboard");
    let japanese_header = wait_text(&browser, "#leaderboard thead", |t| !t.is_empty()).await;
    let html_lang = browser
        .find(Locator::Css("html"))
        .await
        .expect("html")
        .attr("lang")
        .await
        .expect("lang");
    click(&browser, "#locale-switch").await;
    let english_again = wait_text(&browser, "nav.site-nav", |t| t.contains("Leaderboard")).await;

    let _ = stop_tx.send(true);
    working.await.expect("worker task");
    browser.close().await.expect("close browser");

    // Assert
    assert!(
        errors.contains("116A1") || errors.contains("answer"),
        "{errors}"
    );
    assert!(errors.contains("3"), "line 3 is named: {errors}");
    assert_eq!(sets_after_broken, 0, "a refused file stores nothing");
    assert!(
        stored.contains("Stored") && stored.contains("mini"),
        "{stored}"
    );
    assert_eq!(first_rows, 4);
    assert_eq!(pager, ("Next →".to_owned(), true));
    assert!(
        lineage.contains("chatml_ja_v1") && lineage.contains("tiny-llama.gguf"),
        "{lineage}"
    );
    assert!(layout.is_empty(), "layout faults:\n{}", layout.join("\n"));
    assert!(bundles.is_empty(), "bundles:\n{}", bundles.join("\n"));
    assert!(leaderboard.contains("chatml_ja_v1") && leaderboard.contains("plain_ja_v1"));
    // The form's worked examples reached the run: its lineage and the leaderboard say so.
    assert_eq!(second_prompt_id, "plain_ja_v1+1shot");
    assert!(
        second_settings.contains("1-shot (seed 7, examples from pool 2023 v1)"),
        "{second_settings}"
    );
    assert!(lineage.contains("zero-shot"), "{lineage}");
    assert_eq!((shots_cells.0.as_str(), shots_cells.1.as_str()), ("0", "1"));
    assert_eq!((block_a.as_str(), everything.as_str()), ("2/2", "4/4"));
    let cells: Vec<u64> = contingency
        .split_whitespace()
        .filter_map(|w| w.parse().ok())
        .collect();
    assert_eq!(cells.iter().sum::<u64>(), 4, "{contingency}");
    assert!(
        paired.contains("McNemar") || paired.contains("same questions"),
        "{paired}"
    );
    assert!(title.contains("901A1"), "{title}");
    assert!(!stem.is_empty() && !gold.is_empty());
    assert!(next_title.contains("901A2"), "{next_title}");
    assert_eq!(points.split_whitespace().count(), 24, "{points}");
    assert!(summary.contains("flow-lora"), "{summary}");
    assert!(english_nav.contains("Leaderboard"), "{english_nav}");
    assert!(japanese_nav.contains("試験セット"), "{japanese_nav}");
    assert!(japanese_header.contains("正答率"), "{japanese_header}");
    assert_eq!(html_lang.as_deref(), Some("ja"));
    assert!(english_again.contains("Exam sets"), "{english_again}");
    app.stop().await.expect("clean stop");
}
