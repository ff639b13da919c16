//! A verdict resting on a figure not yet announced shows as provisional everywhere it appears.
//! The 120th exam's rule pack is provisional (its cut-off and totals are not announced yet): a
//! run of the fixture model on the 120th's block B (50 required questions, 100 of the
//! section's 200 points) fails the required section whatever the other 100 points would be,
//! so it gets a verdict — and that verdict is provisional in the score API, its CSV, the
//! leaderboard API, the run page, the leaderboard page and `kokushi score` (table and CSV).

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_shared::score::ScoreReport;
use kokushi_tests::ui::{sign_in, wait_text};
use kokushi_tests::{ADMIN_PASSWORD, ADMIN_USER, Browser, TestApp, fixture_model_store, service};

/// Block B of a made-up 120th exam: 50 five-choice questions, each answered right by 60% to
/// 98% of examinees.
fn block_b() -> String {
    kokushi_tests::lettered_block("120B", 50, Some(|i| 0.6 + f64::from(i % 8) * 0.054))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_provisional_verdict_is_shown_as_provisional_everywhere() {
    let (Some(bin), Some(static_dir), Some(chromedriver)) = (
        service("KOKUSHI_BIN"),
        service("KOKUSHI_STATIC_DIR"),
        service("CHROMEDRIVER"),
    ) else {
        return;
    };
    let store = fixture_model_store().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings = Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await.unwrap();
    let set = app
        .upload_exam("120 block B", "120-B.jsonl", block_b().into_bytes())
        .await
        .unwrap();
    let run = app.create_run(set.id, 50).await.unwrap();
    app.wait_for_run(run.id, Duration::from_secs(600))
        .await
        .unwrap();

    // The score API: the year fails, provisionally; the notes name what stands in.
    let report: ScoreReport = app
        .get_json(&format!("/api/runs/{}/score", run.id))
        .await
        .unwrap();
    let year = &report.years[0];
    assert_eq!(year.exam.as_deref(), Some("120"));
    assert!(
        year.required_points < 60,
        "the fixture model earned {} of block B's 100 points: the section could still pass",
        year.required_points
    );
    assert_eq!(year.pass, Some(false), "{:?}", year.notes);
    assert!(year.provisional, "{:?}", year.notes);
    assert!(
        year.notes.iter().any(|n| n.contains("provisional")),
        "{:?}",
        year.notes
    );

    // Its CSV.
    let csv = app
        .client
        .get(app.url(&format!("/api/runs/{}/score?format=csv", run.id)))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let column = |csv: &str, name: &str| -> Vec<String> {
        let mut lines = csv.lines();
        let header: Vec<&str> = lines.next().unwrap().split(',').collect();
        let at = header.iter().position(|h| *h == name).unwrap();
        lines
            .map(|l| l.split(',').nth(at).unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(column(&csv, "pass"), ["false", ""], "{csv}");
    assert_eq!(column(&csv, "pass_provisional"), ["true", ""], "{csv}");

    // The leaderboard API.
    let board = app.leaderboard().await.unwrap();
    let row = board.iter().find(|r| r.id == run.id).unwrap();
    let verdict = &row.years[0];
    assert_eq!((verdict.pass, verdict.provisional), (Some(false), true));

    // `kokushi score` on the run's export: `fail?` in the table, true in the CSV.
    let export = app.run_export(run.id).await.unwrap();
    let predictions = dir.path().join("run.json");
    std::fs::write(&predictions, &export).unwrap();
    let set_file = dir.path().join("120-B.jsonl");
    std::fs::write(&set_file, block_b()).unwrap();
    let cli = |format: &str| {
        let out = Command::new(PathBuf::from(&bin))
            .args(["score", "--exam-set"])
            .arg(&set_file)
            .arg("--predictions")
            .arg(&predictions)
            .args(["--format", format])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let table = cli("table");
    assert!(table.contains("fail?"), "{table}");
    assert_eq!(column(&cli("csv"), "pass_provisional"), ["true", ""]);

    // The run page and the leaderboard page.
    let session = Browser::start(&chromedriver).await.unwrap();
    let browser = session.client.clone();
    sign_in(&browser, &app.base, ADMIN_USER, ADMIN_PASSWORD).await;
    let chip = wait_text(&browser, ".year-chip.fail", |t| !t.is_empty()).await;
    assert_eq!(chip, "120✗?");
    browser
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .unwrap();
    let verdict = wait_text(&browser, "#year-scores tbody tr", |t| t.contains("Fail")).await;
    assert!(verdict.contains("Fail (provisional)"), "{verdict}");

    // The same page compares the run with the examinees: the year whole and its required
    // section, with the percentile the API gives.
    let examinees = report.examinees.as_ref().unwrap();
    let rows = browser
        .find_all(fantoccini::Locator::Css(
            "#examinee-percentiles tr.examinee-row",
        ))
        .await
        .unwrap();
    assert_eq!(rows.len(), examinees.groups.len());
    let first = rows[0].text().await.unwrap();
    let percentile = format!("{:.1}", examinees.groups[0].percentile.unwrap());
    assert!(first.contains(&percentile), "{first} lacks {percentile}");
    let missed = kokushi_tests::ui::text_of(&browser, "#missed-where-right").await;
    assert!(
        missed.contains(&format!("({})", examinees.missed_where_right.len())),
        "{missed}"
    );
}
