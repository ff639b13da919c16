//! `cargo xtask bench ui`: how fast the run page shows and pages through a run of 2,000
//! questions in headless Chromium, with the frontend's release build against a real server.
//!
//! Ignored by `cargo test` (a measurement, not a check); the numbers are printed as
//! `RESULT name ms` lines. What is timed, in the page's own clock (`performance.now()`):
//! - open: navigation to the first 100 question rows drawn (the run without its questions,
//!   then their first page from the server: the 2,000 are never sent whole);
//! - next page / previous page: a click to the new page's rows drawn, each page read from the
//!   server (median of 20);
//! - filter: a click on "Parse failed" to its first page drawn (median of 10).

use std::time::Duration;

use fantoccini::Client;
use kokushi_tests::ui::{click, sign_in, text_of, wait_text};
use kokushi_tests::{ADMIN_PASSWORD, ADMIN_USER, Browser, FIXTURE_MODEL, TestApp, long_exam};

const QUESTIONS: usize = 2_000;

fn required(var: &str) -> String {
    kokushi_tests::required(var, "cargo xtask bench ui")
}

/// Milliseconds from the click on `css` until the first question row names `first_id` and
/// the question count reads `count` (and the frame after is drawn).
async fn timed_click(browser: &Client, css: &str, first_id: &str, count: usize) -> f64 {
    let script = r#"
        const [css, expected, count, done] = arguments;
        const started = performance.now();
        document.querySelector(css).click();
        const check = () => {
            const row = document.querySelector('#questions tr.question-row');
            const shown = document.querySelector('#question-count').textContent;
            if (row && row.dataset.problemId === expected && shown.startsWith(count + ' ')) {
                requestAnimationFrame(() => done(performance.now() - started));
            } else if (performance.now() - started > 10000) {
                done('the first row stayed ' + (row ? row.dataset.problemId : 'missing'));
            } else {
                setTimeout(check, 0);
            }
        };
        check();
    "#;
    let answer = browser
        .execute_async(script, vec![css.into(), first_id.into(), count.into()])
        .await
        .expect("timed click");
    answer
        .as_f64()
        .unwrap_or_else(|| panic!("{css}, waiting for {first_id}: {answer}"))
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: `cargo xtask bench ui` runs it"]
async fn run_page_with_2000_questions() {
    let static_dir = required("KOKUSHI_STATIC_DIR");
    let chromedriver = required("CHROMEDRIVER");
    let (mut settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app
        .upload_exam("long", "long.jsonl", long_exam("900A", QUESTIONS))
        .await
        .expect("upload");
    let res = app
        .client
        .post(app.url("/api/runs"))
        .json(&serde_json::json!({
            "exam_set_id": exam.id, "model": FIXTURE_MODEL,
            "prompt_format": "chatml_ja_v1", "max_new_tokens": 1,
        }))
        .send()
        .await
        .expect("create run");
    let run: kokushi_shared::api::RunSummary = res.json().await.expect("run");
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(1800))
        .await
        .expect("the run finishes");
    assert_eq!(detail.questions.len(), QUESTIONS);

    let session = Browser::start(&chromedriver).await.expect("browser");
    let browser = session.client.clone();
    sign_in(&browser, &app.base, ADMIN_USER, ADMIN_PASSWORD).await;
    // Open: from navigation start to the first page of rows drawn.
    browser
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .expect("run page");
    text_of(&browser, "#questions tr.question-row").await;
    let open = browser
        .execute_async(
            "const done = arguments[0]; requestAnimationFrame(() => done(performance.now()));",
            vec![],
        )
        .await
        .expect("clock")
        .as_f64()
        .expect("ms");
    let rows = browser
        .execute(
            "return document.querySelectorAll('#questions tr.question-row').length;",
            vec![],
        )
        .await
        .expect("rows");
    // The rows come in the run's order: the first of page 1 and of page 2.
    let first = detail.questions[0].problem_id.as_str();
    let second_page = detail.questions[100].problem_id.as_str();
    let (mut next, mut previous) = (Vec::new(), Vec::new());
    for _ in 0..20 {
        next.push(timed_click(&browser, "#page-next", second_page, QUESTIONS).await);
        previous.push(timed_click(&browser, "#page-previous", first, QUESTIONS).await);
    }
    // A filter: "Parse failed" keeps the answers the rules could not read.
    let unparsed: Vec<&str> = detail
        .questions
        .iter()
        .filter(|q| q.answer.as_ref().is_some_and(|a| a.extracted.is_unparsed()))
        .map(|q| q.problem_id.as_str())
        .collect();
    let mut filter = Vec::new();
    if let Some(first_unparsed) = unparsed.first() {
        for _ in 0..10 {
            let css = "button[data-filter='parse-failed']";
            filter.push(timed_click(&browser, css, first_unparsed, unparsed.len()).await);
            timed_click(&browser, "button[data-filter='all']", first, QUESTIONS).await;
        }
    }
    let label = wait_text(&browser, "#page-label", |t| !t.is_empty()).await;
    click(&browser, "#page-next").await;
    browser.close().await.expect("close");
    app.stop().await.expect("stop");

    println!("run page, {QUESTIONS} questions, {rows} rows a page ({label})");
    println!("RESULT open_ms {open:.1}");
    println!("RESULT next_page_ms {:.1}", median(next));
    println!("RESULT previous_page_ms {:.1}", median(previous));
    if !filter.is_empty() {
        println!(
            "RESULT filter_parse_failed_ms {:.1} ({} of {QUESTIONS} rows kept)",
            median(filter),
            unparsed.len()
        );
    }
}
