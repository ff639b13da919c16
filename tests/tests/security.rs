//! The hardening an attacker's review asked for, each point against a real server
//! (docs/security.md names the test of each defence):
//! - bounded input before expensive work: JSON bodies at most 64 KiB; user names and passwords
//!   bounded before the rate limiter and argon2; sign-ins counted when they start, a cap on
//!   password checks at once, an account backing off when it fails from many addresses, and the
//!   client's address taken from a trusted proxy only;
//! - sessions and tokens: a new password ends the account's sessions and revokes its tokens,
//!   tokens expire, idle sessions end and are purged;
//! - remote models only from the operator's allow-list, never with a query or a user part;
//! - one CSV writer, defusing formulas in every download;
//! - bounded cost: leaderboard filters only over values the data holds, pages with a cap, live
//!   streams per account capped and ended with their session;
//! - only a run's or tuning's creator (or an admin) may cancel or retry it;
//! - the security headers on every answer, refusals included.

use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_backend::auth::TrustedProxies;
use kokushi_shared::api::UserUpdated;
use kokushi_tests::{FIXTURE_MODEL, TestApp, embedded_fixture, fixture_model_store, raw_request};
use reqwest::StatusCode;
use serde_json::{Value, json};

async fn login(app: &TestApp, username: &str, password: &str, from: Option<&str>) -> StatusCode {
    let mut req = app.anonymous.post(app.url("/api/auth/login"));
    if let Some(addr) = from {
        req = req.header("X-Forwarded-For", addr);
    }
    req.json(&json!({"username": username, "password": password}))
        .send()
        .await
        .expect("request")
        .status()
}

/// `n` wrong passwords for `username`, each claiming (in `X-Forwarded-For`) an address of its
/// own; each is refused as wrong, none as throttled.
async fn fail_from_addresses(app: &TestApp, username: &str, n: u8) {
    for i in 0..n {
        let from = format!("198.51.100.{i}");
        assert_eq!(
            login(app, username, "wrong-password", Some(&from)).await,
            StatusCode::UNAUTHORIZED,
            "failure {i}"
        );
    }
}

async fn message(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    let body: Value = res.json().await.unwrap_or_default();
    (
        status,
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn input_is_bounded_before_any_expensive_work() {
    let (settings, _folders) = embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");

    // A JSON body over 64 KiB is refused before it is read in full.
    let big = json!({"name": "x".repeat(70 * 1024)});
    let res = app
        .client
        .post(app.url("/api/tokens"))
        .json(&big)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);

    // Over-long names and passwords are refused (400) without touching the limiter or argon2:
    // forty of them, and the address may still sign in.
    for i in 0..40 {
        let (name, password) = if i % 2 == 0 {
            ("n".repeat(65), "p".repeat(12))
        } else {
            ("admin".to_owned(), "p".repeat(1025))
        };
        assert_eq!(
            login(&app, &name, &password, None).await,
            StatusCode::BAD_REQUEST
        );
    }
    assert_eq!(
        login(
            &app,
            kokushi_tests::ADMIN_USER,
            kokushi_tests::ADMIN_PASSWORD,
            None
        )
        .await,
        StatusCode::OK
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_attempts_count_when_they_start_and_checks_are_capped() {
    let (settings, _folders) = embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    app.make_user("rita", &["researcher"]).await.expect("rita");

    // Twelve wrong passwords at once for one account from one address: five may be checked,
    // the rest wait (429), however they interleave.
    let mut attempts = Vec::new();
    for _ in 0..12 {
        let client = app.anonymous.clone();
        let url = app.url("/api/auth/login");
        attempts.push(tokio::spawn(async move {
            client
                .post(url)
                .json(&json!({"username": "rita", "password": "wrong-password"}))
                .send()
                .await
                .map(|r| r.status())
        }));
    }
    let mut checked = 0;
    for attempt in attempts {
        match attempt.await.expect("join").expect("request") {
            StatusCode::UNAUTHORIZED => checked += 1,
            StatusCode::TOO_MANY_REQUESTS => {}
            other => panic!("unexpected {other}"),
        }
    }
    assert!(checked <= 5, "{checked} wrong passwords were checked");
    app.stop().await.expect("clean stop");

    // One password check at a time: a burst of sign-ins from many addresses finds the slot
    // taken (429 with Retry-After), and the server goes on.
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.max_concurrent_sign_ins = 1;
    settings.trusted_proxies = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let mut busy = 0;
    for round in 0..5 {
        let mut burst = Vec::new();
        for i in 0..16 {
            let client = app.anonymous.clone();
            let url = app.url("/api/auth/login");
            burst.push(tokio::spawn(async move {
                client
                    .post(url)
                    .header("X-Forwarded-For", format!("10.{round}.0.{i}"))
                    .json(&json!({"username": format!("nobody{i}"), "password": "wrong-password"}))
                    .send()
                    .await
                    .map(|r| (r.status(), r.headers().contains_key("retry-after")))
            }));
        }
        for b in burst {
            let (status, retry_after) = b.await.expect("join").expect("request");
            if status == StatusCode::TOO_MANY_REQUESTS {
                assert!(retry_after);
                busy += 1;
            }
        }
        if busy > 0 {
            break;
        }
    }
    assert!(busy > 0, "no sign-in ever found the one check slot taken");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_account_failing_from_many_addresses_backs_off_and_only_a_trusted_proxy_is_believed() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.trusted_proxies = TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
    let app = TestApp::spawn(settings).await.expect("server starts");
    app.make_user("rita", &["researcher"]).await.expect("rita");
    fail_from_addresses(&app, "rita", 10).await;
    // The eleventh, from an address never seen, waits: the account backs off.
    assert_eq!(
        login(&app, "rita", "rita-password", Some("203.0.113.7")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Another account from that address does not.
    assert_eq!(
        login(
            &app,
            kokushi_tests::ADMIN_USER,
            kokushi_tests::ADMIN_PASSWORD,
            Some("203.0.113.7")
        )
        .await,
        StatusCode::OK
    );
    app.stop().await.expect("clean stop");

    // Without a trusted proxy, X-Forwarded-For is the client's own claim and is ignored: five
    // failures "from five addresses" are five from one, and the sixth waits.
    let (settings, _folders) = embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    app.make_user("rita", &["researcher"]).await.expect("rita");
    fail_from_addresses(&app, "rita", 5).await;
    assert_eq!(
        login(&app, "rita", "rita-password", Some("192.0.2.99")).await,
        StatusCode::TOO_MANY_REQUESTS
    );
    // Nor is X-Forwarded-Proto: the cookie is not marked Secure on its say-so.
    let res = app
        .anonymous
        .post(app.url("/api/auth/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&json!({"username": kokushi_tests::ADMIN_USER,
                      "password": kokushi_tests::ADMIN_PASSWORD}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let cookie = res
        .headers()
        .get("set-cookie")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert!(!cookie.contains("Secure"), "{cookie}");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_password_ends_sessions_and_revokes_tokens_and_tokens_expire() {
    let (settings, _folders) = embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let (rita, session) = app
        .new_session("rita", &["researcher"])
        .await
        .expect("rita signs in");
    let made: Value = app
        .anonymous
        .post(app.url("/api/tokens"))
        .header("Cookie", &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .json(&json!({"name": "ci", "expires_in_days": 30}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("token");
    let token = made["token"].as_str().expect("token").to_owned();
    assert!(made["expires_at"].as_str().is_some(), "{made}");
    let me_with = |token: Option<&str>| {
        let mut req = app.anonymous.get(app.url("/api/auth/me"));
        req = match token {
            Some(t) => req.bearer_auth(t),
            None => req.header("Cookie", &session.cookie),
        };
        req.send()
    };
    assert_eq!(me_with(None).await.expect("request").status(), 200);
    assert_eq!(me_with(Some(&token)).await.expect("request").status(), 200);

    // The admin sets a new password: the reply says what it ended.
    let updated: UserUpdated = app
        .client
        .patch(app.url(&format!("/api/users/{}", rita.id)))
        .json(&json!({"password": "a brand new password"}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("reply");
    assert_eq!((updated.sessions_ended, updated.tokens_revoked), (1, 1));
    assert_eq!(me_with(None).await.expect("request").status(), 401);
    assert_eq!(me_with(Some(&token)).await.expect("request").status(), 401);

    // Rita changes her own password: the current one is checked, then her sessions (this one
    // too) end and her tokens are revoked.
    let (_, again) = app
        .sign_in("rita", "a brand new password")
        .await
        .expect("sign-in");
    let again = again.expect("signed in with the new password");
    let change = |current: &str| {
        app.anonymous
            .post(app.url("/api/auth/password"))
            .header("Cookie", &again.cookie)
            .header("X-CSRF-Token", &again.csrf)
            .json(&json!({"current_password": current, "new_password": "rita's own choice now"}))
            .send()
    };
    let (status, text) = message(change("not the password").await.expect("request")).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
    let changed: UserUpdated = change("a brand new password")
        .await
        .expect("request")
        .json()
        .await
        .expect("reply");
    assert_eq!(changed.sessions_ended, 1);
    let res = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .header("Cookie", &again.cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "the session that asked ended too"
    );
    let (status, _) = app
        .sign_in("rita", "rita's own choice now")
        .await
        .expect("sign-in");
    assert_eq!(status, StatusCode::OK);

    // Expiry: out of range is refused; a token past its expiry is refused like a revoked one.
    let (status, text) = message(
        app.client
            .post(app.url("/api/tokens"))
            .json(&json!({"name": "x", "expires_in_days": 0}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    assert!(text.contains("expires_in_days"), "{text}");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_token_and_an_idle_session_are_refused_and_idle_sessions_are_purged() {
    let data = kokushi_tests::tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("store");
    let url = kokushi_tests::sqlite_url(data.path());
    let mut settings = Settings::embedded(url.clone(), store.path());
    settings.session_idle = Duration::from_secs(2);
    settings.session_purge_interval = Duration::from_secs(1);
    let app = TestApp::spawn(settings).await.expect("server starts");
    let db = kokushi_backend::db::Db::connect(&url).await.expect("db");
    let admin = db
        .user_by_name(kokushi_tests::ADMIN_USER)
        .await
        .expect("query")
        .expect("admin");
    let token = kokushi_backend::auth::new_api_token();
    db.create_token(
        admin.user.id,
        "expired",
        &kokushi_backend::auth::digest(&token),
        Some("2020-01-01T00:00:00Z"),
        db.default_project().await.expect("default project"),
        false,
    )
    .await
    .expect("token");
    let res = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .bearer_auth(&token)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::UNAUTHORIZED);

    let (_, session) = app
        .sign_in(kokushi_tests::ADMIN_USER, kokushi_tests::ADMIN_PASSWORD)
        .await
        .expect("sign-in");
    let session = session.expect("signed in");
    tokio::time::sleep(Duration::from_secs(4)).await;
    let res = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .header("Cookie", &session.cookie)
        .send()
        .await
        .expect("request");
    assert_eq!(
        res.status(),
        StatusCode::UNAUTHORIZED,
        "an idle session ends"
    );
    let left: i64 = sqlx::Row::try_get(
        &sqlx::query("SELECT COUNT(*) AS n FROM sessions")
            .fetch_one(db.pool())
            .await
            .expect("count"),
        "n",
    )
    .expect("n");
    assert_eq!(left, 0, "the purge forgot the idle session");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_models_come_only_from_the_operators_allow_list() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.remote_model_allow = vec!["https://llm.example.org/v1".to_owned()];
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run_with = |model: &str| {
        app.client
            .post(app.url("/api/runs"))
            .json(&json!({"exam_set_id": exam.id, "model": model,
                          "prompt_format": "chatml_ja_v1", "limit": 1}))
            .send()
    };
    for (model, says) in [
        ("openai:http:127.0.0.1:8000#m", "http://"),
        ("openai:http://169.254.169.254/latest#m", "not among"),
        (
            "openai:https://llm.example.org/v1?api_key=sk-1#m",
            "no query",
        ),
        ("openai:https://sk-1@llm.example.org/v1#m", "no credentials"),
        ("openai:https://llm.example.org.evil.test/v1#m", "not among"),
        ("../etc/passwd", "plain name"),
    ] {
        let (status, text) = message(run_with(model).await.expect("request")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{model}: {text}");
        assert!(text.contains(says), "{model}: {text}");
    }
    let res = run_with("openai:https://LLM.example.org/v1/#some-model")
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::CREATED);
    let run: Value = res.json().await.expect("run");
    assert_eq!(run["model"], "openai:https://llm.example.org/v1#some-model");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_csv_download_defuses_formulas() {
    let (settings, _folders) = embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    // An exam set whose exam label, and a name, are formulas.
    let mini = std::fs::read_to_string(kokushi_tests::mini_exam_path()).expect("fixture");
    let body: String = mini
        .lines()
        .map(|line| {
            let mut q: Value = serde_json::from_str(line).expect("json");
            q["exam"] = json!("=HYPERLINK(\"http://x.test\",\"116\")");
            q["year"] = json!(2022);
            format!("{q}\n")
        })
        .collect();
    let exam = app
        .upload_exam("=cmd|' /C calc'!A0", "evil.jsonl", body.into_bytes())
        .await
        .expect("upload");
    let run = app.create_run(exam.id, 2).await.expect("run");
    app.wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("finishes");
    // (download, whether it carries the exam set's name or label)
    for (path, names_the_exam) in [
        (format!("/api/runs/{}/score?format=csv", run.id), true),
        ("/api/leaderboard/export?format=csv".to_owned(), true),
        (format!("/api/runs/{}/export?format=csv", run.id), false),
    ] {
        let text = app
            .client
            .get(app.url(&path))
            .send()
            .await
            .expect("request")
            .text()
            .await
            .expect("text");
        let records = kokushi_shared::csv::records(&text).expect("valid CSV");
        for (line, fields) in &records {
            for cell in fields {
                assert!(
                    !cell
                        .trim_start()
                        .starts_with(['=', '+', '@', '\u{FF1D}', '\u{FF0B}']),
                    "{path}:{line}: a formula cell {cell:?}"
                );
            }
        }
        assert!(
            !names_the_exam || text.contains("'=HYPERLINK") || text.contains("'=cmd"),
            "{path}: {text}"
        );
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_cost_is_bounded_filters_name_what_exists_and_pages_have_a_cap() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    for _ in 0..3 {
        app.create_run(exam.id, 1).await.expect("run");
    }
    // A specialty, year or block no exam set holds: 400, naming what they hold.
    for (query, says) in [
        ("specialty=not-a-specialty", "specialty"),
        ("years=2031", "years"),
        ("blocks=Q", "blocks"),
    ] {
        let (status, text) = message(
            app.client
                .get(app.url(&format!("/api/leaderboard?{query}")))
                .send()
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{query}: {text}");
        assert!(text.starts_with(says) && text.contains("hold"), "{text}");
    }
    // Pages: a cap, a total, a link to the next.
    let res = app
        .client
        .get(app.url("/api/leaderboard?limit=2"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::OK);
    let total = res.headers()["x-total-count"]
        .to_str()
        .expect("text")
        .to_owned();
    let link = res.headers()["link"].to_str().expect("text").to_owned();
    let rows: Vec<Value> = res.json().await.expect("rows");
    assert_eq!((rows.len(), total.as_str()), (2, "3"));
    assert!(link.contains("limit=2&offset=2"), "{link}");
    for path in [
        "/api/leaderboard?limit=100000",
        "/api/exam-sets?limit=0",
        "/api/tunings?limit=5000",
        "/api/grading/tasks?limit=100000",
        "/api/grading/audit?limit=1000000",
        "/api/users?limit=0",
    ] {
        let status = app
            .client
            .get(app.url(path))
            .send()
            .await
            .expect("request")
            .status();
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}");
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_streams_are_capped_per_account_and_end_with_the_session() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.embedded_worker = false;
    settings.max_streams_per_user = 2;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 1).await.expect("run");
    let events = app.url(&format!("/api/runs/{}/events", run.id));
    let (_, session) = app
        .sign_in(kokushi_tests::ADMIN_USER, kokushi_tests::ADMIN_PASSWORD)
        .await
        .expect("sign-in");
    let session = session.expect("signed in");
    let open = || {
        app.anonymous
            .get(&events)
            .header("Cookie", &session.cookie)
            .send()
    };
    let first = open().await.expect("request");
    let second = open().await.expect("request");
    assert_eq!(
        (first.status(), second.status()),
        (StatusCode::OK, StatusCode::OK)
    );
    let third = open().await.expect("request");
    assert_eq!(third.status(), StatusCode::TOO_MANY_REQUESTS);
    // A stream given up frees its slot.
    drop(second);
    // (The server learns the client went when its next keep-alive line finds no one.)
    let mut reopened = StatusCode::TOO_MANY_REQUESTS;
    for _ in 0..300 {
        let res = open().await.expect("request");
        reopened = res.status();
        if reopened == StatusCode::OK {
            break;
        }
        drop(res);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(reopened, StatusCode::OK);
    // Signing out ends the stream that is open.
    let res = app
        .anonymous
        .post(app.url("/api/auth/logout"))
        .header("Cookie", &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::NO_CONTENT);
    let ended = tokio::time::timeout(Duration::from_secs(30), first.bytes())
        .await
        .expect("the stream ends within the credential check's period");
    assert!(ended.is_ok());
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_its_creator_or_an_admin_may_cancel_or_retry_a_run_or_tuning() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let (_, rita) = app.signed_in("rita", &["researcher"]).await.expect("rita");
    let (_, sam) = app.signed_in("sam", &["researcher"]).await.expect("sam");
    let run: Value = rita
        .post(app.url("/api/runs"))
        .json(&json!({"exam_set_id": exam.id, "model": FIXTURE_MODEL,
                      "prompt_format": "chatml_ja_v1", "limit": 1}))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("run");
    let id = run["id"].as_i64().expect("id");
    let tuning: Value = rita
        .post(app.url("/api/tunings"))
        .json(
            &json!({"base_model": FIXTURE_MODEL, "adapter": "ritas-adapter",
                      "data_exam_set_id": exam.id, "prompt_format": "chatml_ja_v1",
                      "steps": 1}),
        )
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("tuning");
    let tuning = tuning["id"].as_i64().expect("id");
    let post = |client: &reqwest::Client, path: String| client.post(app.url(&path)).send();
    for what in ["runs", "tunings"] {
        let id = if what == "runs" { id } else { tuning };
        // Another researcher: refused, and nothing changes.
        let (status, text) = message(
            post(&sam, format!("/api/{what}/{id}/cancel"))
                .await
                .expect("request"),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{text}");
        assert!(text.contains("only the account that queued"), "{text}");
        // Its creator may.
        let status = post(&rita, format!("/api/{what}/{id}/cancel"))
            .await
            .expect("request")
            .status();
        assert_eq!(status, StatusCode::OK);
        let status = post(&sam, format!("/api/{what}/{id}/retry"))
            .await
            .expect("request")
            .status();
        assert_eq!(status, StatusCode::FORBIDDEN);
        // So may an admin.
        let status = post(&app.client, format!("/api/{what}/{id}/retry"))
            .await
            .expect("request")
            .status();
        assert_eq!(status, StatusCode::OK);
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_answer_carries_the_security_headers() {
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    if let Ok(dir) = std::env::var("KOKUSHI_STATIC_DIR") {
        settings.static_dir = Some(dir.into());
    }
    let app = TestApp::spawn(settings).await.expect("server starts");
    let mut paths = vec![
        ("GET", "/api/health"),
        ("GET", "/api/users"),
        ("GET", "/api/nowhere"),
        ("DELETE", "/api/users"),
        ("POST", "/api/runs"),
    ];
    if std::env::var("KOKUSHI_STATIC_DIR").is_ok() {
        paths.extend([
            ("GET", "/"),
            ("GET", "/runs/1"),
            ("GET", "/start-kokushi_frontend.js"),
        ]);
    }
    for (method, path) in paths {
        let (status, head) = raw_request(&app.base, method, path, &[], b"")
            .await
            .expect("answer");
        let head = head.to_ascii_lowercase();
        for header in [
            "content-security-policy: default-src 'self'; script-src 'self' 'wasm-unsafe-eval'",
            "frame-ancestors 'none'",
            "x-content-type-options: nosniff",
            "referrer-policy: no-referrer",
            "x-frame-options: deny",
        ] {
            assert!(
                head.contains(header),
                "{method} {path} ({status}) lacks {header}:\n{head}"
            );
        }
        if path.starts_with("/api") {
            assert!(
                head.contains("cache-control: no-store"),
                "{method} {path}:\n{head}"
            );
        }
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_page_is_answered_with_its_own_bundle() {
    // A built frontend of one page per bundle, each saying which it is.
    let (mut settings, _folders) = embedded_fixture().expect("folders");
    let dir = tempfile::tempdir().expect("tempdir");
    let web = dir.path().to_owned();
    for bundle in kokushi_shared::bundle::Bundle::ALL {
        std::fs::write(web.join(bundle.page()), format!("<p>{:?}</p>", bundle)).expect("page");
    }
    std::fs::write(web.join("style.css"), "p {}").expect("css");
    settings.static_dir = Some(web.clone());
    let app = TestApp::spawn(settings).await.expect("server starts");
    for (path, bundle) in [
        ("/", "Portal"),
        ("/runs/3", "Runs"),
        ("/runs/3/questions/116A1", "Question"),
        ("/compare?first=1&second=2", "Compare"),
        ("/login", "Portal"),
        ("/no/such/page", "Portal"),
        ("/jobsx", "Portal"),
        ("/jobs", "Jobs"),
        ("/jobs/", "Jobs"),
        ("/exam-sets", "Workbench"),
        ("/tunings/4", "Workbench"),
        ("/workers?x=1", "Workbench"),
        ("/grading", "Grading"),
        ("/grading/do/3?at=2", "Grading"),
        ("/grading/tasks/2", "Review"),
        ("/grading/items/9", "Review"),
    ] {
        let res = app.client.get(app.url(path)).send().await.expect("answer");
        assert_eq!(res.status(), 200, "{path}");
        let page = res.text().await.expect("page");
        assert_eq!(page, format!("<p>{bundle}</p>"), "{path}");
    }
    // A file is itself, whatever bundle its name would fall in.
    let css = app
        .client
        .get(app.url("/style.css"))
        .send()
        .await
        .expect("answer");
    assert_eq!(css.text().await.expect("css"), "p {}");

    // A bundle gzipped beforehand goes to a browser that takes gzip as it is, typed as what it
    // holds; to any other client, the plain file. A name outside the built files finds nothing.
    std::fs::write(web.join("x_bg.wasm"), b"\0asm plain").expect("wasm");
    std::fs::write(web.join("x_bg.wasm.gz"), b"gzipped!").expect("gz");
    std::fs::write(web.join(".hidden.js.gz"), b"secret").expect("hidden");
    for (accept, encoded, length) in [
        ("gzip, deflate, br, zstd", true, 8),
        ("br", false, 10),
        ("gzip;q=0", false, 10),
        ("identity", false, 10),
    ] {
        let (status, head) = raw_request(
            &app.base,
            "GET",
            "/x_bg.wasm",
            &[("Accept-Encoding", accept)],
            b"",
        )
        .await
        .expect("answer");
        let head = head.to_ascii_lowercase();
        assert_eq!(status, 200, "{accept}: {head}");
        assert!(
            head.contains("content-type: application/wasm"),
            "{accept}: {head}"
        );
        assert_eq!(
            head.contains("content-encoding: gzip"),
            encoded,
            "{accept}: {head}"
        );
        assert!(
            head.contains(&format!("content-length: {length}")),
            "{accept}: {head}"
        );
        // Not offered for download under the compressed file's name.
        assert!(!head.contains(".gz"), "{accept}: {head}");
    }
    for path in [
        "/.hidden.js",
        "/x_bg.wasm.gz.gz",
        "/%2e%2e/x_bg.wasm",
        "/../x_bg.wasm",
    ] {
        let (status, head) =
            raw_request(&app.base, "GET", path, &[("Accept-Encoding", "gzip")], b"")
                .await
                .expect("answer");
        // Sent as it is, the hidden file would show its text: anything else here is a page
        // (compressed on the fly) or a refusal.
        assert!(!head.contains("secret"), "{path} ({status}): {head}");
    }
    app.stop().await.expect("clean stop");
}
