//! Every spelling of every endpoint's path, against a real server on SQLite and on PostgreSQL:
//! each letter percent-encoded in turn (both hex cases), a trailing slash, each slash doubled,
//! `/./` and `x/../` at each slash, `%2F` for each slash, upper case (whole, and a segment at a
//! time) — sent byte for byte (`kokushi_tests::raw_request`: no client library normalises the
//! path first). As an anonymous caller for every endpoint above `Public`, and as an annotator
//! for every endpoint above `Member`: never a 2xx, and afterwards nothing has changed (the
//! queued run is still queued, no account, token, exam set, tuning or grading task appeared).
//!
//! The spellings the access check once let through (it looked endpoints up on the raw path while
//! the router matched the decoded one) are also checked one by one with their exact statuses.

use std::collections::BTreeSet;

use kokushi_backend::Settings;
use kokushi_backend::auth::Access;
use kokushi_backend::routes::ENDPOINTS;
use kokushi_tests::{TestApp, fixture_model_store, on_both_databases, raw_request};

/// Every spelling of `path` this test tries (the path itself included).
fn spellings(path: &str) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    out.insert(path.to_owned());
    for (i, c) in path.char_indices() {
        if c == '/' || !c.is_ascii() {
            continue;
        }
        let rest = &path[i + c.len_utf8()..];
        for hex in [format!("{:02X}", c as u32), format!("{:02x}", c as u32)] {
            out.insert(format!("{}%{hex}{rest}", &path[..i]));
        }
    }
    out.insert(format!("{path}/"));
    out.insert(path.to_uppercase());
    let slashes: Vec<usize> = path.match_indices('/').map(|(i, _)| i).collect();
    for &i in &slashes {
        let (before, after) = (&path[..i], &path[i + 1..]);
        out.insert(format!("{before}//{after}"));
        out.insert(format!("{before}/./{after}"));
        out.insert(format!("{before}/x/../{after}"));
        if i > 0 {
            out.insert(format!("{before}%2F{after}"));
            out.insert(format!("{before}%2f{after}"));
        }
        // This segment in upper case.
        let end = after.find('/').map_or(path.len(), |e| i + 1 + e);
        out.insert(format!(
            "{}{}{}",
            &path[..=i],
            path[i + 1..end].to_uppercase(),
            &path[end..]
        ));
    }
    out
}

async fn every_spelling_on(database_url: String) {
    // Arrange: a queued run (no worker takes it, so a cancel that got through would show), an
    // annotator signed in, and the ids every path needs.
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url, store.path());
    settings.embedded_worker = false;
    if let Ok(dir) = std::env::var("KOKUSHI_STATIC_DIR") {
        // With the web UI served too: its fallback page must not answer for a misspelt path.
        settings.static_dir = Some(dir.into());
    }
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 2).await.expect("run");
    let (annie, session) = app
        .new_session("annie", &["annotator"])
        .await
        .expect("annie signs in");
    let tokens: Vec<serde_json::Value> = app.get_json("/api/tokens").await.expect("tokens");
    let token_id = tokens[0]["id"].as_i64().expect("the admin's token");
    let count = |path: &'static str| {
        let app = &app;
        async move {
            let rows: Vec<serde_json::Value> = app.get_json(path).await.expect(path);
            rows.len()
        }
    };
    let before = (
        count("/api/users").await,
        count("/api/tokens").await,
        count("/api/exam-sets").await,
        count("/api/tunings").await,
        count("/api/grading/tasks").await,
    );

    // Act + assert: every spelling, refused.
    let cookie = session.cookie.clone();
    let csrf = session.csrf.clone();
    let mut sent = 0usize;
    for endpoint in ENDPOINTS
        .iter()
        .filter(|e| e.access != Access::Public && e.path != "/api/auth/logout")
    {
        let path = endpoint
            .path
            .replace("/runs/{id}", &format!("/runs/{}", run.id))
            .replace("/users/{id}", &format!("/users/{}", annie.id))
            .replace("/tokens/{id}", &format!("/tokens/{token_id}"))
            .replace("{problem_id}", "901A1")
            .replace("{task_id}", "1")
            .replace("{user_id}", "1")
            .replace("{project}", "default")
            .replace("{id}", "1");
        let method = endpoint.method.to_uppercase();
        let body: &[u8] = if matches!(method.as_str(), "POST" | "PATCH") {
            b"{}"
        } else {
            b""
        };
        for spelling in spellings(&path) {
            let json = [("Content-Type", "application/json")];
            let (status, head) = raw_request(&app.base, &method, &spelling, &json, body)
                .await
                .expect("an answer");
            assert!(
                !(200..300).contains(&status),
                "{method} {spelling} answered {status} to an anonymous caller:\n{head}"
            );
            sent += 1;
            if matches!(endpoint.access, Access::Researcher | Access::Admin) {
                let headers = [
                    ("Content-Type", "application/json"),
                    ("Cookie", cookie.as_str()),
                    ("X-CSRF-Token", csrf.as_str()),
                ];
                let (status, head) = raw_request(&app.base, &method, &spelling, &headers, body)
                    .await
                    .expect("an answer");
                assert!(
                    !(200..300).contains(&status),
                    "{method} {spelling} answered {status} to an annotator:\n{head}"
                );
                sent += 1;
            }
        }
    }
    assert!(
        sent > 2000,
        "only {sent} requests: the walk lost its endpoints"
    );

    // Nothing changed.
    let detail = app.run_detail(run.id).await.expect("run");
    assert_eq!(
        detail.run.status.as_str(),
        "queued",
        "the run must not have been cancelled (or touched) by any spelling"
    );
    let after = (
        count("/api/users").await,
        count("/api/tokens").await,
        count("/api/exam-sets").await,
        count("/api/tunings").await,
        count("/api/grading/tasks").await,
    );
    assert_eq!(before, after, "(users, tokens, exam sets, tunings, tasks)");
    eprintln!("{sent} spellings refused");
    app.stop().await.expect("clean stop");
}

on_both_databases!(every_spelling_on => every_spelling_is_refused_sqlite, every_spelling_is_refused_postgres);

async fn the_reported_spellings_on(database_url: String) {
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url, store.path());
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 1).await.expect("run");
    let cancel = format!("/api/run%73/{}/cancel", run.id);
    // (method, path, status for an anonymous caller)
    let cases: [(&str, &str, u16); 13] = [
        ("GET", "/api/%75sers", 401),
        ("GET", "/m%65trics", 401),
        ("GET", "/api/%77orkers", 401),
        ("GET", "/api/leaderboar%64", 401),
        ("GET", "/api/exam-set%73", 401),
        ("GET", "/api/tuning%73", 401),
        ("GET", "/api/grading/task%73", 401),
        ("GET", "/api/grading/audi%74", 401),
        ("POST", &cancel, 401),
        ("GET", "/api/users/", 404),
        ("GET", "/API/users", 404),
        ("GET", "/api/nothing-here", 404),
        ("DELETE", "/api/users", 405),
    ];
    for (method, path, want) in cases {
        let (status, head) = raw_request(&app.base, method, path, &[], b"")
            .await
            .expect("an answer");
        assert_eq!(status, want, "{method} {path}:\n{head}");
        if status == 405 {
            assert!(
                head.to_ascii_lowercase().contains("allow: get, post"),
                "{head}"
            );
        }
    }
    assert_eq!(
        app.run_detail(run.id)
            .await
            .expect("run")
            .run
            .status
            .as_str(),
        "queued"
    );
    app.stop().await.expect("clean stop");
}

on_both_databases!(the_reported_spellings_on => the_reported_spellings_are_refused_sqlite, the_reported_spellings_are_refused_postgres);
