//! The web UI in headless Chromium, driven through chromedriver: an anonymous visitor is sent to
//! the sign-in page, a wrong password is refused on the page, the admin signs in, the
//! leaderboard shows a run the fixture model finished, its row opens the run page with every
//! question, and signing out ends the session.

use std::time::Duration;

use fantoccini::Locator;
use kokushi_backend::Settings;
use kokushi_tests::ui::{click, wait_text};
use kokushi_tests::{ADMIN_PASSWORD, ADMIN_USER, Browser, TestApp, fixture_model_store, service};

kokushi_tests::on_both_databases!(
    sign_in_and_open_a_run => the_leaderboard_shows_a_finished_run_and_opens_its_page_on_sqlite,
    the_leaderboard_shows_a_finished_run_and_opens_its_page_on_postgres
);

/// One browser at a time.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

async fn sign_in_and_open_a_run(database_url: String) {
    let (Some(static_dir), Some(chromedriver)) =
        (service("KOKUSHI_STATIC_DIR"), service("CHROMEDRIVER"))
    else {
        return;
    };
    let _turn = SERIAL.lock().await;
    // Arrange: a finished run of the fixture model.
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url, store.path());
    settings.static_dir = Some(static_dir.into());
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 2).await.expect("create run");
    app.wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    // And one of an exam set that names each question's specialty.
    let named: String = [
        ("903A1", "循環器"),
        ("903A2", "呼吸器"),
        ("903A3", "循環器"),
    ]
    .iter()
    .map(|(id, specialty)| {
        format!(
            "{{\"problem_id\": \"{id}\", \"problem_text\": \"どれか。\", \"choices\": \
                 [\"甲\", \"乙\", \"丙\"], \"answer\": [\"a\"], \"specialty\": \"{specialty}\"}}\n"
        )
    })
    .collect();
    let named = app
        .upload_exam("specialties", "specialties.jsonl", named.into_bytes())
        .await
        .expect("upload");
    let by_specialty = app.create_run(named.id, 3).await.expect("create run");
    app.wait_for_run(by_specialty.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    let session = Browser::start(&chromedriver)
        .await
        .expect("chromedriver accepts a session");
    let browser = session.client.clone();

    // Act: an anonymous visit lands on the sign-in page; a wrong password is refused there.
    browser.goto(&app.url("/")).await.expect("open the portal");
    let sign_in = |password: &'static str| {
        let browser = browser.clone();
        async move {
            let form = browser
                .wait()
                .at_most(Duration::from_secs(20))
                .for_element(Locator::Css("#login-form"))
                .await
                .expect("the sign-in form appears");
            let name = form
                .find(Locator::Css("#login-username"))
                .await
                .expect("name");
            name.clear().await.expect("clear");
            name.send_keys(ADMIN_USER).await.expect("type name");
            let secret = form
                .find(Locator::Css("#login-password"))
                .await
                .expect("pw");
            secret.clear().await.expect("clear");
            secret.send_keys(password).await.expect("type password");
            form.find(Locator::Css("#login-submit"))
                .await
                .expect("button")
                .click()
                .await
                .expect("submit");
        }
    };
    sign_in("not-the-password").await;
    let refusal = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-form .error"))
        .await
        .expect("the refusal is shown")
        .text()
        .await
        .expect("text");
    let login_url = browser.current_url().await.expect("url");
    sign_in(ADMIN_PASSWORD).await;

    // Act: the leaderboard, then the run's link.
    let row = browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(&format!(
            "tr.run-row[data-run-id='{}']",
            run.id
        )))
        .await
        .expect("the run's row appears");
    let row_text = row.text().await.expect("row text");
    row.find(Locator::Css("a.run-link"))
        .await
        .expect("the row links to the run")
        .click()
        .await
        .expect("click");
    // The title shows at once; the questions arrive with the run's data, so wait for them.
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#questions tr.question-row"))
        .await
        .expect("the run page shows its questions");
    let title_text = browser
        .find(Locator::Css("#run-title"))
        .await
        .expect("the run page has a title")
        .text()
        .await
        .expect("title text");
    let question_rows = browser
        .find_all(Locator::Css("#questions tr.question-row"))
        .await
        .expect("question rows");
    let page_url = browser.current_url().await.expect("url");
    let page_text = browser
        .find(Locator::Css("body"))
        .await
        .expect("body")
        .text()
        .await
        .expect("text");
    let account = browser
        .find(Locator::Css("#account-name"))
        .await
        .expect("the header names the account")
        .text()
        .await
        .expect("text");
    // The pages ran under the server's Content-Security-Policy without tripping it: Chromium
    // keeps the reports of every violation since the page loaded (sign-in, leaderboard and run
    // page are one page load). Then one made on purpose, to show the reports do come.
    const VIOLATIONS: &str = "const o = new ReportingObserver(() => {}, \
         {types: ['csp-violation'], buffered: true}); o.observe(); \
         return o.takeRecords().map(r => r.body.effectiveDirective + ' ' + \
         (r.body.blockedURL || r.body.sample || ''));";
    let violations = browser
        .execute(VIOLATIONS, vec![])
        .await
        .expect("read the CSP reports");
    browser
        .execute(
            "const d = document.createElement('div'); d.setAttribute('style', 'color: red'); \
             document.body.appendChild(d); return 0;",
            vec![],
        )
        .await
        .expect("break the policy once");
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = browser
        .execute(VIOLATIONS, vec![])
        .await
        .expect("read the CSP reports");
    // The run page narrows its questions to a specialty.
    browser
        .goto(&app.url(&format!("/runs/{}", by_specialty.id)))
        .await
        .expect("run page");
    let all_count = wait_text(&browser, "#question-count", |t| t.contains('3')).await;
    click(&browser, "#filter-specialty option[value='循環器']").await;
    let narrowed = wait_text(&browser, "#question-count", |t| t.contains('2')).await;
    let narrowed_rows = browser
        .find_all(Locator::Css("#questions tr.question-row"))
        .await
        .expect("rows")
        .len();
    browser
        .find(Locator::Css("#sign-out"))
        .await
        .expect("a sign-out button")
        .click()
        .await
        .expect("sign out");
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-form"))
        .await
        .expect("signing out shows the sign-in form");
    // The session is over on the server too: the leaderboard is refused now.
    browser.goto(&app.url("/")).await.expect("open again");
    browser
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css("#login-form"))
        .await
        .expect("signed out, the portal asks to sign in again");
    browser.close().await.expect("close browser");

    // Assert
    assert_eq!(
        violations,
        serde_json::json!([]),
        "the web UI broke its Content-Security-Policy"
    );
    assert!(
        after.as_array().is_some_and(|a| a.len() == 1),
        "a violation made on purpose is reported: {after}"
    );
    assert_eq!(login_url.path(), "/login");
    assert!(all_count.contains("3 "), "{all_count}");
    assert!(narrowed.contains("2 "), "{narrowed}");
    assert_eq!(narrowed_rows, 2);
    assert!(refusal.contains("wrong user name or password"), "{refusal}");
    assert_eq!(account, ADMIN_USER);
    assert!(row_text.contains("tiny-llama.gguf"), "{row_text}");
    assert!(row_text.contains("succeeded"), "{row_text}");
    assert!(title_text.contains(&run.id.to_string()), "{title_text}");
    assert!(title_text.contains("tiny-llama.gguf"), "{title_text}");
    assert_eq!(page_url.path(), format!("/runs/{}", run.id));
    assert_eq!(question_rows.len(), 2);
    assert!(page_text.contains("901A1"), "{page_text}");
    assert!(
        page_text.contains("インスリン"),
        "Japanese text renders: {page_text}"
    );
    app.stop().await.expect("clean stop");
}
