//! The whole researcher's flow in headless Chromium against the real server, Redis and a worker
//! with the fixture model: sign in → upload a broken exam file and read its errors → upload the
//! exam → launch two evaluations from the Jobs page and watch each finish → find them on the
//! leaderboard → compare them → open a question and step to the next with the keyboard →
//! launch a LoRA tuning and watch its loss curve grow.
//!
//! Runs on SQLite and on PostgreSQL. With `KOKUSHI_SCREENSHOTS_DIR` set, each page is also
//! saved there as a PNG (1440×900): `cargo xtask screenshots` does that (SQLite run only).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fantoccini::{Client, Locator};
use kokushi_backend::Settings;
use kokushi_queue::RedisQueue;
use kokushi_tests::{
    ADMIN_PASSWORD, ADMIN_USER, Browser, TestApp, fixture_model_store, mini_exam_path, service,
};
use kokushi_worker::{Worker, WorkerConfig};

const WAIT: Duration = Duration::from_secs(60);

/// Waits for `css` to match an element.
async fn element(browser: &Client, css: &str) -> fantoccini::elements::Element {
    browser
        .wait()
        .at_most(WAIT)
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("{css} did not appear: {e}"))
}

/// Waits for `css` to match an element and returns its text.
async fn text_of(browser: &Client, css: &str) -> String {
    element(browser, css).await.text().await.expect("text")
}

/// Waits until `css` matches an element whose text satisfies `ok`.
async fn wait_text(browser: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        if let Ok(element) = browser.find(Locator::Css(css)).await
            && let Ok(text) = element.text().await
            && ok(&text)
        {
            return text;
        }
        assert!(
            started.elapsed() < WAIT,
            "{css} never showed the expected text"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn click(browser: &Client, css: &str) {
    element(browser, css)
        .await
        .click()
        .await
        .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
}

async fn type_into(browser: &Client, css: &str, text: &str) {
    let input = element(browser, css).await;
    input.clear().await.expect("clear");
    input.send_keys(text).await.expect("type");
}

/// Saves the page as `NAME.png` when screenshots are asked for.
async fn shoot(browser: &Client, name: &str) {
    // Optional, so not `service` (which insists in CI).
    let Some(dir) = std::env::var_os("KOKUSHI_SCREENSHOTS_DIR").filter(|d| !d.is_empty()) else {
        return;
    };
    // Let transitions and late images settle.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let png = browser.screenshot().await.expect("screenshot");
    let path = PathBuf::from(dir).join(format!("{name}.png"));
    std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

/// Queues an evaluation from the Jobs page form and returns the run id it navigated to.
async fn launch_evaluation(browser: &Client, base: &str, format: &str, limit: &str) -> i64 {
    browser.goto(&format!("{base}/jobs")).await.expect("jobs");
    // The lists arrive from the API; the form picks the first exam set and model itself.
    text_of(browser, "#eval-model option").await;
    text_of(browser, "#eval-exam-set option").await;
    click(browser, &format!("#eval-format option[value='{format}']")).await;
    type_into(browser, "#eval-limit", limit).await;
    type_into(browser, "#eval-tokens", "6").await;
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
        },
    );
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let working = tokio::spawn(worker.run_until_stopped(async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let session = Browser::start(&chromedriver).await.expect("browser");
    let browser = session.client.clone();
    let base = app.base.clone();

    // Sign in.
    browser.goto(&base).await.expect("open");
    type_into(&browser, "#login-username", ADMIN_USER).await;
    type_into(&browser, "#login-password", ADMIN_PASSWORD).await;
    click(&browser, "#login-submit").await;
    text_of(&browser, "#leaderboard").await;

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
    browser
        .find(Locator::Css("#upload-file"))
        .await
        .expect("file input")
        .send_keys(&broken.display().to_string())
        .await
        .expect("choose file");
    click(&browser, "#upload-submit").await;
    let errors = text_of(&browser, "#upload-errors table.upload-errors").await;
    shoot(&browser, "upload-errors").await;
    let sets_after_broken = browser
        .find_all(Locator::Css("#exam-sets tr.exam-set-row"))
        .await
        .expect("rows")
        .len();

    // The real file.
    type_into(&browser, "#upload-name", "mini").await;
    browser
        .find(Locator::Css("#upload-file"))
        .await
        .expect("file input")
        .send_keys(&mini_exam_path().display().to_string())
        .await
        .expect("choose file");
    click(&browser, "#upload-submit").await;
    let stored = text_of(&browser, "#upload-result").await;
    text_of(&browser, "#exam-sets tr.exam-set-row").await;

    // Two evaluations from the Jobs page; each run page follows its run to the end.
    let first = launch_evaluation(&browser, &base, "chatml_ja_v1", "4").await;
    wait_text(&browser, ".progress-label", |t| t.contains("succeeded")).await;
    text_of(&browser, "#year-scores").await;
    let lineage = text_of(&browser, "#lineage").await;
    let first_rows = browser
        .find_all(Locator::Css("#questions tr.question-row"))
        .await
        .expect("rows")
        .len();
    shoot(&browser, "run").await;
    let second = launch_evaluation(&browser, &base, "plain_ja_v1", "4").await;
    wait_text(&browser, ".progress-label", |t| t.contains("succeeded")).await;

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
    shoot(&browser, "leaderboard").await;
    click(&browser, "#compare-selected").await;
    let contingency = text_of(&browser, "#contingency").await;
    let paired = text_of(&browser, "#paired-test").await;
    shoot(&browser, "compare").await;

    // A question of the first run, then the next one with the keyboard.
    browser
        .goto(&format!("{base}/runs/{first}"))
        .await
        .expect("run page");
    click(&browser, "#questions tr.question-row a.question-link").await;
    let title = text_of(&browser, "#question-title").await;
    let stem = text_of(&browser, "#stem").await;
    let gold = text_of(&browser, "#gold").await;
    shoot(&browser, "question").await;
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
    let points = browser
        .find(Locator::Css("#train-curve"))
        .await
        .expect("the training curve")
        .attr("points")
        .await
        .expect("attr")
        .unwrap_or_default();
    let summary = text_of(&browser, "#tuning-summary").await;
    shoot(&browser, "loss-curve").await;

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
    assert!(
        lineage.contains("chatml_ja_v1") && lineage.contains("tiny-llama.gguf"),
        "{lineage}"
    );
    assert!(leaderboard.contains("chatml_ja_v1") && leaderboard.contains("plain_ja_v1"));
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
    app.stop().await.expect("clean stop");
}
