//! Human grading in headless Chromium against the real server and a real run of the fixture
//! model: a researcher creates a task with overlap 2 for two annotators; both grade every item
//! with the keyboard alone (number keys, Enter), disagreeing on one; the researcher
//! adjudicates it; the agreement figures and the run's human-adjusted accuracy appear.

use std::time::Duration;

use fantoccini::Client;
use fantoccini::key::Key;
use kokushi_tests::ui::{
    click, element, loaded_wasm, press, shoot, switch_user, text_of, type_into, wait_text,
};
use kokushi_tests::{Browser, TestApp, embedded_fixture, service};

/// Signs `user` in (password `<user>-password`) in place of whoever was signed in.
async fn sign_in_as(browser: &Client, base: &str, user: &str) {
    switch_user(browser, base, user, &format!("{user}-password")).await;
}

/// Grades every item of the first task in the list with the keyboard: `first` for the first
/// item, `1` (correct) for the others, each saved with Enter.
async fn grade_all(browser: &Client, base: &str, items: u32, first: char) {
    // An annotator lands on the grading app after signing in.
    element(browser, "#grading-home").await;
    assert_eq!(
        browser.current_url().await.expect("url").path(),
        "/grading",
        "{base}: an annotator goes to the grading app"
    );
    click(browser, "#my-tasks .my-task a.grade-start").await;
    element(browser, "#grading-screen").await;
    for i in 1..=items {
        wait_text(browser, "#grade-progress", |t| {
            t.starts_with(&format!("{i} /"))
        })
        .await;
        if i == 1 {
            shoot(browser, &format!("grading-screen-{first}")).await;
        }
        let key = if i == 1 { first } else { '1' };
        press(browser, &[key]).await;
        let verdict = if key == '1' { "correct" } else { "incorrect" };
        wait_text(browser, "#grade-verdict", |t| t.contains(verdict)).await;
        press(browser, &[Key::Enter.into()]).await;
    }
    element(browser, "#grade-done").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grading_flow() {
    let (Some(static_dir), Some(chromedriver)) =
        (service("KOKUSHI_STATIC_DIR"), service("CHROMEDRIVER"))
    else {
        return;
    };
    // Arrange: a finished run of the fixture model, a researcher and two annotators.
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 4).await.expect("run");
    let run = app
        .wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    let items = run.run.tally.answered;
    assert!(items >= 2, "{:?}", run.run);
    app.signed_in("rita", &["researcher"]).await.expect("rita");
    let (annie, _) = app.signed_in("annie", &["annotator"]).await.expect("annie");
    let (bob, _) = app.signed_in("bob", &["annotator"]).await.expect("bob");
    let browser = Browser::start(&chromedriver).await.expect("browser");
    let b = &browser.client;
    let base = &app.base;

    // The researcher creates the task: every answer, two graders each.
    sign_in_as(b, base, "rita").await;
    element(b, "#leaderboard").await;
    click(b, "#nav-grading").await;
    element(b, "#task-form").await;
    type_into(b, "#task-name", "Flow task").await;
    click(b, &format!(".task-run[value='{}']", run.run.id)).await;
    click(b, "#task-selection option[value='all']").await;
    type_into(b, "#task-overlap", "2").await;
    click(b, &format!(".task-annotator[value='{annie}']")).await;
    click(b, &format!(".task-annotator[value='{bob}']")).await;
    click(b, "#task-create").await;
    wait_text(b, "#task-list .task-row", |t| t.contains("Flow task")).await;
    shoot(b, "grading-home").await;

    // Both annotators grade with the keyboard; bob calls the first answer he sees incorrect.
    sign_in_as(b, base, "annie").await;
    grade_all(b, base, items, '1').await;
    sign_in_as(b, base, "bob").await;
    grade_all(b, base, items, '3').await;

    // The researcher sees the dispute and the agreement, and adjudicates.
    sign_in_as(b, base, "rita").await;
    element(b, "#leaderboard").await;
    b.goto(&format!("{base}/grading")).await.expect("grading");
    click(b, "#task-list .task-row a.task-open").await;
    element(b, "#agreement").await;
    // The task page is the review's bundle, loaded afresh from the grading home's link.
    let wasm = loaded_wasm(b).await;
    assert!(
        matches!(&wasm[..], [(file, bytes)] if file == "/kokushi_review_bg.wasm" && *bytes <= 250 * 1024),
        "the task page loaded {wasm:?}"
    );
    let percent = f64::from(items - 1) / f64::from(items) * 100.0;
    let shown = wait_text(b, "#percent-agreement", |t| !t.trim().is_empty()).await;
    assert!(
        shown.contains(&format!("{percent:.0}")),
        "percent agreement {shown:?}, expected {percent:.0}%"
    );
    let kappa = text_of(b, "#fleiss-kappa").await;
    assert!(
        kappa.trim().starts_with('-') || kappa.contains("0.00"),
        "Fleiss' κ {kappa:?}"
    );
    assert!(text_of(b, "#pairs").await.contains("annie"));
    shoot(b, "grading-task").await;
    click(b, "#items .item-row[data-state='disputed'] a.item-open").await;
    element(b, "#adjudicate-form").await;
    press(b, &['3']).await;
    click(b, "#adjudicate-save").await;
    wait_text(b, "#item-state", |t| t.contains("adjudicated")).await;
    shoot(b, "grading-item").await;

    // The grading app's header leads back to the portal.
    click(b, "#nav-leaderboard").await;
    element(b, "#leaderboard").await;

    // The run now shows its human-adjusted accuracy beside the automatic one.
    b.goto(&format!("{base}/runs/{}", run.run.id))
        .await
        .expect("run page");
    let human = f64::from(items - 1) / f64::from(items) * 100.0;
    let shown = wait_text(b, "#human-accuracy", |t| t.contains('%')).await;
    shoot(b, "grading-run").await;
    assert!(
        shown.contains(&format!("{human:.1}")),
        "human-adjusted accuracy {shown:?}, expected {human:.1}%"
    );
    let detail = app.run_detail(run.run.id).await.expect("run");
    let h = detail.run.human.expect("human-adjusted accuracy");
    assert_eq!((h.resolved, h.correct), (items, items - 1));
    drop(browser);
    app.stop().await.expect("clean stop");
}
