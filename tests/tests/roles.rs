//! Accounts and access, against a real server on SQLite and on PostgreSQL: every endpoint of
//! the API × {anonymous, annotator, researcher, admin} is allowed or refused as the role matrix
//! below says (the matrix is written here, independently of the server's table, and the test
//! fails on an endpoint it does not know) — once with the annotator and researcher holding
//! portal roles, once holding only the same roles as members of the project (docs/projects.md);
//! sessions need their CSRF token; API tokens work until revoked, and a read-only token only
//! reads; a disabled account is locked out; sign-in failures are rate limited.

use kokushi_backend::Settings;
use kokushi_backend::routes::ENDPOINTS;
use kokushi_shared::api::{Me, NewToken};
use kokushi_tests::{
    ADMIN_PASSWORD, ADMIN_USER, Session, TestApp, fixture_model_store, fresh_postgres_url,
    sqlite_url,
};
use reqwest::{Method, StatusCode};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    Anonymous,
    Annotator,
    Researcher,
    Admin,
}

const EVERYONE: [Who; 4] = [Who::Anonymous, Who::Annotator, Who::Researcher, Who::Admin];

/// The role matrix: what each caller gets from each endpoint, called with the ids filled in as
/// `role_matrix_on` does and an empty JSON object as the body. Written out by hand on purpose:
/// `None` is a refusal (401 for an anonymous caller, 403 for an account), `Some(status)` the
/// status an allowed caller must get — not merely "not refused".
fn expected(method: &str, path: &str, who: Who) -> Option<u16> {
    use Who::*;
    let any_account = who != Anonymous;
    let researcher = matches!(who, Researcher | Admin);
    let only = |allowed: bool, status: u16| allowed.then_some(status);
    match (method, path) {
        ("get", "/api/health") | ("get", "/api/openapi.json") => Some(200),
        // The empty object lacks the user name and password.
        ("post", "/api/auth/login") => Some(400),
        ("post", "/api/auth/logout") => only(any_account, 204),
        ("get", "/api/auth/me") | ("get", "/api/tokens") => only(any_account, 200),
        ("post", "/api/tokens") | ("post", "/api/auth/password") => only(any_account, 400),
        ("delete", "/api/tokens/{id}") => only(any_account, 404),
        ("get", "/api/users") | ("get", "/api/workers") | ("get", "/metrics") => {
            only(who == Admin, 200)
        }
        ("post", "/api/users") => only(who == Admin, 400),
        ("patch", "/api/users/{id}") => only(who == Admin, 200),
        ("get", "/api/leaderboard")
        | ("get", "/api/leaderboard/export")
        | ("get", "/api/models")
        | ("get", "/api/exam-sets")
        | ("get", "/api/runs/{id}")
        | ("get", "/api/runs/{id}/questions")
        | ("get", "/api/runs/{id}/score")
        | ("get", "/api/runs/{id}/export")
        | ("get", "/api/runs/{id}/events")
        | ("get", "/api/runs/{id}/lineage")
        | ("get", "/api/tunings")
        | ("get", "/api/grading/annotators")
        | ("get", "/api/grading/tasks")
        | ("get", "/api/grading/audit")
        | ("get", "/api/grading/gold-flags")
        | ("get", "/api/judge-prompts")
        | ("get", "/api/judging")
        | ("get", "/api/runs/{id}/cost") => only(researcher, 200),
        // No `name` in the query, no valid body, ids that are not numbers, no runs to compare.
        ("post", "/api/exam-sets")
        | ("post", "/api/runs")
        | ("get", "/api/compare")
        | ("post", "/api/tunings")
        | ("get", "/api/tunings/{id}")
        | ("post", "/api/tunings/{id}/cancel")
        | ("post", "/api/tunings/{id}/retry")
        | ("post", "/api/grading/tasks")
        | ("get", "/api/grading/tasks/{id}")
        | ("get", "/api/grading/tasks/{id}/export")
        | ("get", "/api/grading/items/{id}")
        | ("post", "/api/grading/items/{id}/adjudicate")
        | ("post", "/api/judge-prompts")
        | ("post", "/api/judging")
        | ("get", "/api/grading/tasks/{id}/judges")
        | ("post", "/api/grading/tasks/{id}/judges")
        | ("post", "/api/grading/tasks/{id}/judges/{judge_id}/cancel")
        | ("post", "/api/grading/tasks/{id}/judges/{judge_id}/retry")
        | ("post", "/api/runs/estimate")
        | ("post", "/api/grading/tasks/{id}/judges/estimate") => only(researcher, 400),
        ("get", "/api/runs/{id}/questions/{problem_id}") => only(researcher, 404),
        ("get", "/api/exam-sets/{id}/rules") | ("get", "/api/runs/{id}/rescore") => {
            only(researcher, 200)
        }
        // The admin uploaded the set: a researcher may not change its rule packs; the admin's
        // empty body is no rule pack.
        ("post", "/api/exam-sets/{id}/rules") => match who {
            Anonymous | Annotator => None,
            Researcher => Some(403),
            Admin => Some(400),
        },
        // The admin's run, still queued: not the researcher's to rescore, and not succeeded.
        ("post", "/api/runs/{id}/rescore") => match who {
            Anonymous | Annotator => None,
            Researcher => Some(403),
            Admin => Some(409),
        },
        // The admin queued the run: a researcher may read it but not cancel or retry it (403),
        // the admin cancels it (it is still queued) and then retries it.
        ("post", "/api/runs/{id}/cancel") | ("post", "/api/runs/{id}/retry") => match who {
            Anonymous | Annotator => None,
            Researcher => Some(403),
            Admin => Some(200),
        },
        // Projects: each member reads the project; only its owners (the admin here) change its
        // members, and nobody with id 999999 is one.
        ("get", "/api/projects") | ("get", "/api/projects/{id}") => only(any_account, 200),
        ("post", "/api/projects") => only(who == Admin, 400),
        ("post", "/api/projects/{id}/members") | ("post", "/api/auth/project") => {
            only(any_account, 400)
        }
        ("delete", "/api/projects/{id}/members/{user_id}") => only(who == Admin, 404),
        // The admin's run and set: a researcher may not publish or share them; the admin's
        // empty body names no project (400).
        ("post", "/api/runs/{id}/publish") | ("post", "/api/runs/{id}/unpublish") => match who {
            Anonymous | Annotator => None,
            Researcher => Some(403),
            Admin => Some(200),
        },
        ("post", "/api/exam-sets/{id}/shares") => only(researcher, 400),
        ("delete", "/api/exam-sets/{id}/shares/{project}") => match who {
            Anonymous | Annotator => None,
            Researcher => Some(403),
            Admin => Some(400),
        },
        // Any account; each answers only about the caller's own assignments (grading.rs).
        ("get", "/api/grading/mine") => only(any_account, 200),
        ("get", "/api/grading/mine/{task_id}")
        | ("get", "/api/grading/assignments/{id}")
        | ("post", "/api/grading/assignments/{id}/grade") => only(any_account, 400),
        _ => panic!(
            "the role matrix does not know {} {path}: say who may call it in tests/tests/roles.rs",
            method.to_uppercase()
        ),
    }
}

fn request(
    app: &TestApp,
    method: &str,
    path: &str,
    session: Option<&Session>,
) -> reqwest::RequestBuilder {
    let method = Method::from_bytes(method.to_uppercase().as_bytes()).expect("method");
    let mut req = app.anonymous.request(method.clone(), app.url(path));
    if let Some(s) = session {
        req = req.header("Cookie", &s.cookie);
        if method != Method::GET {
            req = req.header("X-CSRF-Token", &s.csrf);
        }
    }
    if method != Method::GET && method != Method::DELETE {
        // An empty JSON object: refused as incomplete (400) once past the access check.
        req = req.header("Content-Type", "application/json").body("{}");
    }
    req
}

/// How the annotator and the researcher of the matrix hold their roles.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Holding {
    /// Portal roles (the users page's), which make them members of the default project.
    Portal,
    /// No portal role: members of the default project, added by its owner with that role.
    Project,
}

async fn role_matrix_on(database_url: String, holding: Holding) {
    // Arrange: an exam set, a run that stays queued (no worker), and one account per role,
    // each signed in.
    let store = fixture_model_store().expect("fixture model");
    let mut settings = Settings::embedded(database_url, store.path());
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 1).await.expect("run");
    let me: Me = app.get_json("/api/auth/me").await.expect("me");
    let project = me.project.expect("the admin acts in the default project");
    assert_eq!(project.slug, "default");
    let roles = |role: &'static str| match holding {
        Holding::Portal => vec![role],
        Holding::Project => vec![],
    };
    let annotator = app
        .make_user("annie", &roles("annotator"))
        .await
        .expect("creating a user");
    app.make_user("rita", &roles("researcher"))
        .await
        .expect("creating a user");
    if holding == Holding::Project {
        for (username, role) in [("annie", "annotator"), ("rita", "researcher")] {
            let res = app
                .client
                .post(app.url(&format!("/api/projects/{}/members", project.id)))
                .json(&serde_json::json!({"username": username, "role": role}))
                .send()
                .await
                .expect("request");
            assert_eq!(res.status(), StatusCode::OK, "adding {username}");
        }
    }
    let mut sessions = Vec::new();
    for (who, name, password) in [
        (Who::Annotator, "annie", "annie-password".to_owned()),
        (Who::Researcher, "rita", "rita-password".to_owned()),
        (Who::Admin, ADMIN_USER, ADMIN_PASSWORD.to_owned()),
    ] {
        let (status, session) = app.sign_in(name, &password).await.expect("sign-in request");
        assert_eq!(status, StatusCode::OK, "{name} signs in");
        sessions.push((who, session.expect("session")));
    }
    let session_of = |who: Who| {
        sessions
            .iter()
            .find(|(w, _)| *w == who)
            .map(|(_, s)| s.clone())
    };

    // Act + assert: every endpoint × everyone; signing out last, as it ends the session.
    let mut endpoints = ENDPOINTS.to_vec();
    endpoints.sort_by_key(|e| e.path == "/api/auth/logout");
    let mut checked = 0;
    for endpoint in &endpoints {
        let path = endpoint
            .path
            .replace("/runs/{id}", &format!("/runs/{}", run.id))
            .replace("/exam-sets/{id}", &format!("/exam-sets/{}", exam.id))
            .replace("/users/{id}", &format!("/users/{}", annotator.id))
            .replace("/projects/{id}", &format!("/projects/{}", project.id))
            .replace("{user_id}", "999999")
            .replace("/tokens/{id}", "/tokens/999999")
            .replace("{problem_id}", "999Z99");
        for who in EVERYONE {
            let session = session_of(who);
            let status = request(&app, endpoint.method, &path, session.as_ref())
                .send()
                .await
                .expect("request")
                .status();
            let expect = expected(endpoint.method, endpoint.path, who);
            let what = format!(
                "{} {path} as {who:?} ({holding:?} roles) answered {status}",
                endpoint.method
            );
            if let Some(want) = expect {
                assert_eq!(status.as_u16(), want, "{what}");
            } else if who == Who::Anonymous {
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{what}");
            } else {
                assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
            }
            checked += 1;
        }
    }
    assert_eq!(checked, ENDPOINTS.len() * 4);
    assert!(ENDPOINTS.len() >= 22, "every endpoint is in the table");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix() {
    let dir = tempfile::tempdir().expect("tempdir");
    role_matrix_on(sqlite_url(dir.path()), Holding::Portal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    role_matrix_on(url, Holding::Portal).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_of_project_roles() {
    let dir = tempfile::tempdir().expect("tempdir");
    role_matrix_on(sqlite_url(dir.path()), Holding::Project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn role_matrix_of_project_roles_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    role_matrix_on(url, Holding::Project).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sessions_need_their_csrf_token_and_end_when_the_account_is_disabled() {
    let (settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let (rita, session) = app
        .new_session("rita", &["researcher"])
        .await
        .expect("rita signs in");
    let create = |csrf: Option<&str>| {
        let mut req = app
            .anonymous
            .post(app.url("/api/tokens"))
            .header("Cookie", &session.cookie)
            .json(&serde_json::json!({"name": "ci"}));
        if let Some(csrf) = csrf {
            req = req.header("X-CSRF-Token", csrf);
        }
        req.send()
    };

    // Without the CSRF token, or with a wrong one, a state-changing request is refused.
    let missing = create(None).await.expect("request");
    assert_eq!(missing.status(), StatusCode::FORBIDDEN);
    let body: serde_json::Value = missing.json().await.expect("json");
    assert!(
        body["message"]
            .as_str()
            .unwrap_or_default()
            .contains("X-CSRF-Token"),
        "{body}"
    );
    let wrong = create(Some("0000")).await.expect("request");
    assert_eq!(wrong.status(), StatusCode::FORBIDDEN);

    // With it, a token is made; it works as a bearer token until revoked.
    let made = create(Some(&session.csrf)).await.expect("request");
    assert_eq!(made.status(), StatusCode::CREATED);
    let token: NewToken = made.json().await.expect("token");
    assert!(token.token.starts_with("kokushi_"));
    let with_token = || {
        app.anonymous
            .get(app.url("/api/leaderboard"))
            .bearer_auth(&token.token)
            .send()
    };
    assert_eq!(
        with_token().await.expect("request").status(),
        StatusCode::OK
    );
    let listed: serde_json::Value = app
        .anonymous
        .get(app.url("/api/tokens"))
        .bearer_auth(&token.token)
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(listed[0]["name"], "ci");
    assert!(
        listed[0].get("token").is_none(),
        "a token's value is never listed: {listed}"
    );
    assert!(!listed.to_string().contains(&token.token[8..]), "{listed}");
    let revoked = app
        .anonymous
        .delete(app.url(&format!("/api/tokens/{}", token.summary.id)))
        .header("Cookie", &session.cookie)
        .header("X-CSRF-Token", &session.csrf)
        .send()
        .await
        .expect("request");
    assert_eq!(revoked.status(), StatusCode::OK);
    assert_eq!(
        with_token().await.expect("request").status(),
        StatusCode::UNAUTHORIZED,
        "a revoked token is refused"
    );
    // Another account cannot revoke (or see) someone else's token.
    let admins_tokens: Vec<serde_json::Value> = app
        .client
        .get(app.url("/api/tokens"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(admins_tokens.iter().all(|t| t["name"] != "ci"));
    let foreign = app
        .client
        .delete(app.url(&format!("/api/tokens/{}", token.summary.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(foreign.status(), StatusCode::NOT_FOUND);

    // Disabling the account ends its session at once.
    let me = || {
        app.anonymous
            .get(app.url("/api/auth/me"))
            .header("Cookie", &session.cookie)
            .send()
    };
    assert_eq!(me().await.expect("request").status(), StatusCode::OK);
    let disabled = app
        .client
        .patch(app.url(&format!("/api/users/{}", rita.id)))
        .json(&serde_json::json!({"disabled": true}))
        .send()
        .await
        .expect("request");
    assert_eq!(disabled.status(), StatusCode::OK);
    assert_eq!(
        me().await.expect("request").status(),
        StatusCode::UNAUTHORIZED
    );
    let (status, _) = app
        .sign_in("rita", "rita-password")
        .await
        .expect("sign-in request");
    assert_eq!(
        status,
        StatusCode::UNAUTHORIZED,
        "a disabled account cannot sign in"
    );

    // An admin cannot lock themselves out by accident.
    let admin = app
        .client
        .get(app.url("/api/auth/me"))
        .send()
        .await
        .expect("request")
        .json::<Me>()
        .await
        .expect("me");
    let self_demote = app
        .client
        .patch(app.url(&format!("/api/users/{}", admin.id)))
        .json(&serde_json::json!({"roles": ["researcher"]}))
        .send()
        .await
        .expect("request");
    assert_eq!(self_demote.status(), StatusCode::BAD_REQUEST);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sign_in_sets_a_strict_http_only_cookie_and_failures_are_rate_limited() {
    let (mut settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    // The tests' own address is the trusted proxy: its X-Forwarded-Proto is believed.
    settings.trusted_proxies =
        kokushi_backend::auth::TrustedProxies::parse(&["127.0.0.1"]).expect("valid");
    let app = TestApp::spawn(settings).await.expect("server starts");
    app.make_user("rita", &["researcher"])
        .await
        .expect("creating a user");

    // The cookie: HttpOnly, SameSite=Strict; Secure when the request came over TLS.
    let res = app
        .anonymous
        .post(app.url("/api/auth/login"))
        .header("X-Forwarded-Proto", "https")
        .json(&serde_json::json!({"username": "rita", "password": "rita-password"}))
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
    for attribute in ["HttpOnly", "SameSite=Strict", "Secure", "Path=/"] {
        assert!(cookie.contains(attribute), "{attribute} in {cookie}");
    }

    // Unknown accounts and wrong passwords get the same answer.
    let (unknown, _) = app
        .sign_in("nobody", "whatever-password")
        .await
        .expect("sign-in request");
    assert_eq!(unknown, StatusCode::UNAUTHORIZED);

    // Five failures for one account from one address, then even the right password waits.
    for _ in 0..5 {
        let (status, _) = app
            .sign_in("rita", "wrong-password")
            .await
            .expect("sign-in request");
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let res = app
        .anonymous
        .post(app.url("/api/auth/login"))
        .json(&serde_json::json!({"username": "rita", "password": "rita-password"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = res
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
        .expect("a Retry-After header");
    assert!((1..=900).contains(&retry_after), "{retry_after}");
    // Other accounts from the same address are not locked out by it.
    let (admin, _) = app
        .sign_in(ADMIN_USER, ADMIN_PASSWORD)
        .await
        .expect("sign-in request");
    assert_eq!(admin, StatusCode::OK);
    app.stop().await.expect("clean stop");
}
