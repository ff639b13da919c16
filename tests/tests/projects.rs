//! Projects (docs/projects.md), against a real server with its worker, on SQLite and on
//! PostgreSQL. The default project holds an exam set, a finished run, a tuning and a grading
//! task with an assignment; a second project's owner then walks **every endpoint of the API**
//! with those real ids filled in (and named in bodies and queries) and sees nothing of them:
//! 404 worded exactly as for a missing id, or an empty list. Then: the same file uploaded by
//! both projects is two sets; a set shared read-only is read but not changed; publishing a run
//! puts it on the portal-wide leaderboard and unpublishing takes it off; API tokens act in one
//! project, and a read-only one only reads; a member removed loses the project at once.

use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_backend::routes::ENDPOINTS;
use kokushi_shared::api::{
    ExamSetSummary, ImportReport, Me, NewToken, ProjectDetail, ProjectRole, ProjectSummary,
    RunSummary, TuningSummary,
};
use kokushi_shared::grading::{GradingTaskDetail, GradingTaskSummary, MyQueue};
use kokushi_tests::{FIXTURE_MODEL, Session, TestApp, fixture_model_store, on_both_databases};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// A request as a signed-in browser session.
fn as_session(
    app: &TestApp,
    session: &Session,
    method: Method,
    path: &str,
) -> reqwest::RequestBuilder {
    let mut req = app
        .anonymous
        .request(method.clone(), app.url(path))
        .header("Cookie", &session.cookie);
    if method != Method::GET {
        req = req.header("X-CSRF-Token", &session.csrf);
    }
    req
}

async fn body_of(res: reqwest::Response) -> (StatusCode, String) {
    let status = res.status();
    (status, res.text().await.expect("body"))
}

/// The default project's objects, made by the admin.
struct Alpha {
    exam: ExamSetSummary,
    run: i64,
    tuning: i64,
    task: i64,
    item: i64,
    handle: i64,
    project: i64,
}

async fn alpha(app: &TestApp) -> Alpha {
    let exam = app
        .upload_exam(
            "alpha-secret-set",
            "mini.jsonl",
            std::fs::read(kokushi_tests::mini_exam_path()).expect("fixture"),
        )
        .await
        .expect("upload");
    let run = app.create_run(exam.id, 4).await.expect("run");
    let done = app
        .wait_for_run(run.id, Duration::from_secs(180))
        .await
        .expect("run finishes");
    assert!(done.run.tally.answered > 0, "{:?}", done.run);
    let tuning: TuningSummary = app
        .client
        .post(app.url("/api/tunings"))
        .json(
            &json!({"base_model": FIXTURE_MODEL, "adapter": "alpha-secret-adapter",
                      "data_exam_set_id": exam.id, "prompt_format": "chatml_ja_v1", "steps": 1}),
        )
        .send()
        .await
        .expect("tuning")
        .error_for_status()
        .expect("tuning queued")
        .json()
        .await
        .expect("tuning body");
    let annie = app.make_user("annie", &["annotator"]).await.expect("annie");
    let task: GradingTaskSummary = app
        .client
        .post(app.url("/api/grading/tasks"))
        .json(
            &json!({"name": "alpha-secret-task", "run_ids": [run.id], "selection": "all",
                      "overlap": 1, "annotators": [annie.id]}),
        )
        .send()
        .await
        .expect("task")
        .error_for_status()
        .expect("task made")
        .json()
        .await
        .expect("task body");
    let detail: GradingTaskDetail = app
        .get_json(&format!("/api/grading/tasks/{}", task.id))
        .await
        .expect("task detail");
    let (_, annie_session) = app
        .sign_in("annie", "annie-password")
        .await
        .expect("sign-in");
    let annie_session = annie_session.expect("annie signs in");
    let queue: MyQueue = as_session(
        app,
        &annie_session,
        Method::GET,
        &format!("/api/grading/mine/{}", task.id),
    )
    .send()
    .await
    .expect("queue")
    .json()
    .await
    .expect("queue body");
    // A judge prompt and judging settings of alpha's own.
    for (path, body) in [
        (
            "/api/judge-prompts",
            json!({"name": "alpha-secret-prompt", "template": "alpha-secret-template {output}"}),
        ),
        (
            "/api/judging",
            json!({"threshold": 0.7, "calibration_tasks": [task.id]}),
        ),
    ] {
        app.client
            .post(app.url(path))
            .json(&body)
            .send()
            .await
            .expect("request")
            .error_for_status()
            .expect(path);
    }
    let me: Me = app.get_json("/api/auth/me").await.expect("me");
    Alpha {
        exam,
        run: run.id,
        tuning: tuning.id,
        task: task.id,
        item: detail.items[0].item_id,
        handle: queue.items[0].assignment_id,
        project: me.project.expect("the admin's project").id,
    }
}

/// What the other project must never see (the base model is the portal's, not alpha's).
const SECRETS: [&str; 6] = [
    "alpha-secret-set",
    "alpha-secret-adapter",
    "alpha-secret-task",
    "alpha-secret-prompt",
    "alpha-secret-template",
    "annie",
];

async fn projects_on(database_url: String) {
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(Settings::embedded(database_url, store.path()))
        .await
        .expect("server starts");
    let a = alpha(&app).await;

    // A second project, whose owner holds no portal role.
    app.make_user("olga", &[]).await.expect("olga");
    let beta: ProjectDetail = app
        .client
        .post(app.url("/api/projects"))
        .json(&json!({"slug": "beta", "name": "Beta cardiology", "owners": ["olga"]}))
        .send()
        .await
        .expect("create")
        .error_for_status()
        .expect("project made")
        .json()
        .await
        .expect("project body");
    let (_, olga) = app.sign_in("olga", "olga-password").await.expect("sign-in");
    let olga = olga.expect("olga signs in");
    let me: Me = as_session(&app, &olga, Method::GET, "/api/auth/me")
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me body");
    let project = me.project.expect("olga acts in beta");
    assert_eq!(
        (project.id, project.role),
        (beta.project.id, ProjectRole::Owner)
    );

    // Every endpoint, as olga, with alpha's real ids in paths, bodies and queries.
    let bodies = json!({
        "exam_set_id": a.exam.id, "data_exam_set_id": a.exam.id, "run_ids": [a.run],
        "model": FIXTURE_MODEL, "prompt_format": "chatml_ja_v1", "name": "x", "selection": "all",
        "base_model": FIXTURE_MODEL, "adapter": "y", "project_id": a.project,
        "username": "olga", "role": "owner", "project": "beta", "slug": "x", "overlap": 1,
        "expected_version": 0, "verdict": "correct", "annotators": [],
        "calibration_tasks": [a.task], "threshold": 0.5, "template": "{output}",
    });
    let mut walked = 0;
    for endpoint in ENDPOINTS {
        if endpoint.path == "/api/auth/logout" {
            continue; // ends olga's session; it names nothing
        }
        // The object's id where the path's first placeholder is; the rest filled in plainly.
        let fill = |id: i64| {
            let path = endpoint.path;
            let first = match (path.find('{'), path.find('}')) {
                (Some(open), Some(close)) => {
                    format!("{}{id}{}", &path[..open], &path[close + 1..])
                }
                _ => path.to_owned(),
            };
            first
                .replace("{task_id}", &a.task.to_string())
                .replace("{problem_id}", "901A1")
                .replace("{user_id}", "1")
                .replace("{judge_id}", "1")
                .replace("{project}", "beta")
        };
        let real = match endpoint.object {
            Some(kokushi_backend::db::projects::Owned::ExamSet) => a.exam.id,
            Some(kokushi_backend::db::projects::Owned::Run) => a.run,
            Some(kokushi_backend::db::projects::Owned::Tuning) => a.tuning,
            Some(kokushi_backend::db::projects::Owned::GradingTask) => a.task,
            Some(kokushi_backend::db::projects::Owned::GradingItem) => a.item,
            Some(kokushi_backend::db::projects::Owned::Assignment) => a.handle,
            Some(kokushi_backend::db::projects::Owned::Project) => a.project,
            None if endpoint.path.contains("{id}") => 1,
            None => 0,
        };
        let mut path = fill(real);
        if endpoint.path == "/api/compare" {
            path = format!("/api/compare?first={}&second={}", a.run, a.run);
        }
        if endpoint.path == "/api/grading/audit" {
            path = format!("/api/grading/audit?task={}", a.task);
        }
        let method = Method::from_bytes(endpoint.method.to_uppercase().as_bytes()).expect("m");
        let mut req = as_session(&app, &olga, method.clone(), &path);
        if method == Method::POST || method == Method::PATCH {
            req = req.json(&bodies);
        }
        let (status, body) = body_of(req.send().await.expect("request")).await;
        let what = format!("{} {path} as olga: {status} {body}", endpoint.method);
        for secret in SECRETS {
            assert!(!body.contains(secret), "{what} reveals {secret}");
        }
        if endpoint.object.is_some() {
            // Another spelling of the same id never slips past the check: `%2B5` is `+5` to a
            // handler's path extractor, which parses it as 5.
            for spelling in [
                format!("%2B{real}"),
                format!("+{real}"),
                format!("{real}%20"),
            ] {
                let odd = fill(0).replacen('0', &spelling, 1);
                let mut again = as_session(&app, &olga, method.clone(), &odd);
                if method == Method::POST {
                    again = again.json(&bodies);
                }
                let (odd_status, odd_body) = body_of(again.send().await.expect("request")).await;
                assert!(
                    odd_status == StatusCode::BAD_REQUEST || odd_status == StatusCode::NOT_FOUND,
                    "{} {odd} as olga: {odd_status} {odd_body}",
                    endpoint.method
                );
                for secret in SECRETS {
                    assert!(!odd_body.contains(secret), "{odd} reveals {secret}");
                }
            }
            // Exactly what a missing id answers.
            let missing = fill(987_654_321);
            let mut again = as_session(&app, &olga, method.clone(), &missing);
            if method == Method::POST {
                again = again.json(&bodies);
            }
            let (missing_status, missing_body) =
                body_of(again.send().await.expect("request")).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
            assert_eq!(
                (status, body.replace(&real.to_string(), "ID")),
                (missing_status, missing_body.replace("987654321", "ID")),
                "{what}: unlike a missing id"
            );
        } else if status.is_success() && body.trim_start().starts_with('[') {
            // A list: nothing of alpha's (the project list holds beta, the models list the
            // store's base models).
            let list: Vec<Value> = serde_json::from_str(&body).expect("a list");
            if endpoint.path == "/api/judge-prompts" {
                // The built-in prompt only (or beta's own).
                assert!(
                    list.iter()
                        .all(|p| p["builtin"] == true || p["created_by"] == "olga"),
                    "{what}"
                );
            } else if !matches!(
                endpoint.path,
                "/api/projects" | "/api/models" | "/api/tokens"
            ) {
                assert!(list.is_empty(), "{what}");
            }
        }
        // Ids named in bodies and queries are refused as missing.
        match (endpoint.method, endpoint.path) {
            ("post", "/api/runs")
            | ("post", "/api/runs/estimate")
            | ("post", "/api/tunings")
            | ("get", "/api/compare") => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
            }
            ("post", "/api/grading/tasks") | ("post", "/api/judging") => {
                assert_eq!(status, StatusCode::BAD_REQUEST, "{what}");
                assert!(body.contains("does not exist"), "{what}");
            }
            ("get", "/api/judging") => {
                // Beta's own settings: the default threshold, no calibration task.
                let settings: Value = serde_json::from_str(&body).expect("settings");
                assert_eq!(settings["calibration_tasks"], json!([]), "{what}");
            }
            ("post", "/api/auth/project") => {
                assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
            }
            _ => {}
        }
        walked += 1;
    }
    assert!(walked + 1 >= ENDPOINTS.len());

    // The same file in beta is beta's own set; alpha's is untouched.
    let upload = as_session(
        &app,
        &olga,
        Method::POST,
        "/api/exam-sets?name=alpha-secret-set&file=mini.jsonl",
    )
    .body(std::fs::read(kokushi_tests::mini_exam_path()).expect("fixture"))
    .send()
    .await
    .expect("upload");
    assert_eq!(upload.status(), StatusCode::CREATED);
    let beta_set: ImportReport = upload.json().await.expect("report");
    assert!(beta_set.created);
    assert_ne!(beta_set.exam_set.id, a.exam.id);
    assert_eq!(beta_set.exam_set.version, 1);

    // Shared read-only: listed with its owner, readable, runnable, not changeable.
    let share = app
        .client
        .post(app.url(&format!("/api/exam-sets/{}/shares", a.exam.id)))
        .json(&json!({"project": "beta"}))
        .send()
        .await
        .expect("share");
    assert_eq!(share.status(), StatusCode::OK);
    let sets: Vec<ExamSetSummary> = as_session(&app, &olga, Method::GET, "/api/exam-sets")
        .send()
        .await
        .expect("sets")
        .json()
        .await
        .expect("sets body");
    let shared = sets
        .iter()
        .find(|s| s.id == a.exam.id)
        .expect("the shared set");
    assert_eq!(shared.shared_from.as_deref(), Some("Default project"));
    let rules = as_session(
        &app,
        &olga,
        Method::GET,
        &format!("/api/exam-sets/{}/rules", a.exam.id),
    )
    .send()
    .await
    .expect("rules");
    assert_eq!(rules.status(), StatusCode::OK);
    let change = as_session(
        &app,
        &olga,
        Method::POST,
        &format!("/api/exam-sets/{}/rules", a.exam.id),
    )
    .body("{}")
    .send()
    .await
    .expect("rules");
    assert_eq!(change.status(), StatusCode::FORBIDDEN);
    let beta_run = as_session(&app, &olga, Method::POST, "/api/runs")
        .json(&json!({"exam_set_id": a.exam.id, "model": FIXTURE_MODEL,
                      "prompt_format": "chatml_ja_v1", "limit": 1}))
        .send()
        .await
        .expect("run");
    assert_eq!(beta_run.status(), StatusCode::CREATED);
    let beta_run: RunSummary = beta_run.json().await.expect("run body");
    assert_eq!(beta_run.project, "Beta cardiology");
    let unshare = app
        .client
        .delete(app.url(&format!("/api/exam-sets/{}/shares/beta", a.exam.id)))
        .send()
        .await
        .expect("unshare");
    assert_eq!(unshare.status(), StatusCode::OK);
    let gone = as_session(
        &app,
        &olga,
        Method::GET,
        &format!("/api/exam-sets/{}/rules", a.exam.id),
    )
    .send()
    .await
    .expect("rules");
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);

    // Publishing: alpha's run reaches the portal-wide board, which beta reads; beta's own
    // board holds only its run.
    let portal =
        |who: &Session| as_session(&app, who, Method::GET, "/api/leaderboard?scope=portal").send();
    let board: Vec<RunSummary> = portal(&olga)
        .await
        .expect("portal")
        .json()
        .await
        .expect("board body");
    assert!(board.is_empty(), "{board:?}");
    let published: RunSummary = app
        .client
        .post(app.url(&format!("/api/runs/{}/publish", a.run)))
        .send()
        .await
        .expect("publish")
        .error_for_status()
        .expect("published")
        .json()
        .await
        .expect("run body");
    assert!(published.published);
    let board: Vec<RunSummary> = portal(&olga)
        .await
        .expect("portal")
        .json()
        .await
        .expect("board body");
    assert_eq!(board.iter().map(|r| r.id).collect::<Vec<_>>(), vec![a.run]);
    assert_eq!(board[0].project, "Default project");
    let own: Vec<RunSummary> = as_session(&app, &olga, Method::GET, "/api/leaderboard")
        .send()
        .await
        .expect("board")
        .json()
        .await
        .expect("board body");
    assert_eq!(
        own.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![beta_run.id]
    );
    // Published is not opened: the run's page stays the default project's.
    let detail = as_session(&app, &olga, Method::GET, &format!("/api/runs/{}", a.run))
        .send()
        .await
        .expect("detail");
    assert_eq!(detail.status(), StatusCode::NOT_FOUND);
    let unpublished = app
        .client
        .post(app.url(&format!("/api/runs/{}/unpublish", a.run)))
        .send()
        .await
        .expect("unpublish");
    assert_eq!(unpublished.status(), StatusCode::OK);
    let board: Vec<RunSummary> = portal(&olga)
        .await
        .expect("portal")
        .json()
        .await
        .expect("board body");
    assert!(board.is_empty(), "{board:?}");

    // Tokens act in their maker's project; a read-only one reads only.
    let made: NewToken = as_session(&app, &olga, Method::POST, "/api/tokens")
        .json(&json!({"name": "dashboard", "read_only": true}))
        .send()
        .await
        .expect("token")
        .json()
        .await
        .expect("token body");
    assert_eq!(made.summary.project.as_deref(), Some("beta"));
    assert!(made.summary.read_only);
    let with_token = |method: Method, path: &str| {
        app.anonymous
            .request(method, app.url(path))
            .bearer_auth(&made.token)
    };
    let board: Vec<RunSummary> = with_token(Method::GET, "/api/leaderboard")
        .send()
        .await
        .expect("board")
        .json()
        .await
        .expect("board body");
    assert_eq!(board.len(), 1);
    // A token reaches its own project only, even where its account is a member of more.
    let projects: Vec<ProjectSummary> = with_token(Method::GET, "/api/projects")
        .send()
        .await
        .expect("projects")
        .json()
        .await
        .expect("projects body");
    assert_eq!(
        projects.iter().map(|p| p.slug.as_str()).collect::<Vec<_>>(),
        vec!["beta"]
    );
    let elsewhere = with_token(Method::GET, &format!("/api/projects/{}", a.project))
        .send()
        .await
        .expect("project");
    assert_eq!(elsewhere.status(), StatusCode::NOT_FOUND);
    // Even an admin's token: it acts in the default project, and beta's members are not its
    // business (the admin's browser session may switch there).
    let admins = app
        .client
        .post(app.url(&format!("/api/projects/{}/members", beta.project.id)))
        .json(&json!({"username": "annie", "role": "owner"}))
        .send()
        .await
        .expect("members");
    assert_eq!(admins.status(), StatusCode::NOT_FOUND);
    let write = with_token(Method::POST, &format!("/api/runs/{}/cancel", beta_run.id))
        .send()
        .await
        .expect("cancel");
    assert_eq!(write.status(), StatusCode::FORBIDDEN);
    let switch = with_token(Method::POST, "/api/auth/project")
        .json(&json!({"project_id": a.project}))
        .send()
        .await
        .expect("switch");
    assert_eq!(switch.status(), StatusCode::FORBIDDEN);

    // An admin switches their session between projects.
    let (_, admin) = app
        .sign_in(kokushi_tests::ADMIN_USER, kokushi_tests::ADMIN_PASSWORD)
        .await
        .expect("sign-in");
    let admin = admin.expect("admin signs in");
    let switched: Me = as_session(&app, &admin, Method::POST, "/api/auth/project")
        .json(&json!({"project_id": beta.project.id}))
        .send()
        .await
        .expect("switch")
        .json()
        .await
        .expect("me");
    assert_eq!(switched.project.map(|p| p.slug), Some("beta".to_owned()));
    let board: Vec<RunSummary> = as_session(&app, &admin, Method::GET, "/api/leaderboard")
        .send()
        .await
        .expect("board")
        .json()
        .await
        .expect("board body");
    assert_eq!(
        board.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![beta_run.id]
    );

    // Members: olga adds and removes; the removed member loses the project at once.
    let (_, rex) = {
        app.make_user("rex", &[]).await.expect("rex");
        let added = as_session(
            &app,
            &olga,
            Method::POST,
            &format!("/api/projects/{}/members", beta.project.id),
        )
        .json(&json!({"username": "rex", "role": "researcher"}))
        .send()
        .await
        .expect("add");
        assert_eq!(added.status(), StatusCode::OK);
        app.sign_in("rex", "rex-password").await.expect("sign-in")
    };
    let rex = rex.expect("rex signs in");
    let rex_board = as_session(&app, &rex, Method::GET, "/api/leaderboard")
        .send()
        .await
        .expect("board");
    assert_eq!(rex_board.status(), StatusCode::OK);
    let projects: Vec<ProjectSummary> = as_session(&app, &rex, Method::GET, "/api/projects")
        .send()
        .await
        .expect("projects")
        .json()
        .await
        .expect("projects body");
    assert_eq!(
        projects.iter().map(|p| p.slug.as_str()).collect::<Vec<_>>(),
        vec!["beta"]
    );
    let rex_id = as_session(&app, &rex, Method::GET, "/api/auth/me")
        .send()
        .await
        .expect("me")
        .json::<Me>()
        .await
        .expect("me body")
        .id;
    // The last owner stays.
    let last_owner = as_session(
        &app,
        &olga,
        Method::DELETE,
        &format!("/api/projects/{}/members/{}", beta.project.id, me.id),
    )
    .send()
    .await
    .expect("remove");
    assert_eq!(last_owner.status(), StatusCode::BAD_REQUEST);
    let removed = as_session(
        &app,
        &olga,
        Method::DELETE,
        &format!("/api/projects/{}/members/{rex_id}", beta.project.id),
    )
    .send()
    .await
    .expect("remove");
    assert_eq!(removed.status(), StatusCode::NO_CONTENT);
    let after = as_session(&app, &rex, Method::GET, "/api/leaderboard")
        .send()
        .await
        .expect("board");
    assert_eq!(after.status(), StatusCode::FORBIDDEN);
    app.stop().await.expect("clean stop");
}

on_both_databases!(projects_on => projects_isolate_sqlite, projects_isolate_postgres);

/// In Chromium: the header names the project and switches between two; a run's page publishes
/// it to the portal-wide leaderboard, where the board's scope shows it with its project's name,
/// and unpublishing takes it off; project settings add a member and make a read-only token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn in_the_browser_projects_switch_and_runs_publish() {
    use kokushi_tests::service;
    use kokushi_tests::ui::{click, sign_in, text_of, type_into, wait_text};
    let (Some(static_dir), Some(chromedriver)) =
        (service("KOKUSHI_STATIC_DIR"), service("CHROMEDRIVER"))
    else {
        return;
    };
    let store = fixture_model_store().expect("fixture model");
    let dir = kokushi_tests::tempfile::tempdir().expect("tempdir");
    let mut settings = Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    settings.static_dir = Some(static_dir.into());
    settings.embedded_worker = false;
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let run = app.create_run(exam.id, 2).await.expect("run");
    app.make_user("olga", &[]).await.expect("olga");
    let other: ProjectDetail = app
        .client
        .post(app.url("/api/projects"))
        .json(&json!({"slug": "beta", "name": "Beta cardiology",
                      "owners": [kokushi_tests::ADMIN_USER]}))
        .send()
        .await
        .expect("create")
        .error_for_status()
        .expect("made")
        .json()
        .await
        .expect("body");
    let session = kokushi_tests::Browser::start(&chromedriver)
        .await
        .expect("browser");
    let browser = session.client.clone();
    sign_in(
        &browser,
        &app.base,
        kokushi_tests::ADMIN_USER,
        kokushi_tests::ADMIN_PASSWORD,
    )
    .await;

    // The header names the project: the admin is in two, so it is a switch.
    browser.goto(&app.url("/")).await.expect("board");
    wait_text(&browser, "#project-switch", |t| {
        t.contains("Default project") && t.contains("Beta cardiology")
    })
    .await;
    wait_text(
        &browser,
        &format!("tr.run-row[data-run-id='{}']", run.id),
        |_| true,
    )
    .await;

    // Publish from the run's page; the portal board shows it with its project.
    browser
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .expect("run page");
    click(&browser, "#publish-run[data-published='false']").await;
    text_of(&browser, "#publish-run[data-published='true']").await;
    browser.goto(&app.url("/")).await.expect("board");
    click(&browser, "#board-scope option[value='portal']").await;
    let row = wait_text(
        &browser,
        &format!("tr.run-row[data-run-id='{}'] .project-tag", run.id),
        |t| t.contains("Default project"),
    )
    .await;
    assert!(row.contains("Default project"));

    // Unpublish: the portal board is empty again.
    browser
        .goto(&app.url(&format!("/runs/{}", run.id)))
        .await
        .expect("run page");
    click(&browser, "#publish-run[data-published='true']").await;
    text_of(&browser, "#publish-run[data-published='false']").await;
    browser.goto(&app.url("/")).await.expect("board");
    click(&browser, "#board-scope option[value='portal']").await;
    wait_text(&browser, "#leaderboard tr.empty", |_| true).await;
    let portal: Vec<RunSummary> = app
        .get_json("/api/leaderboard?scope=portal")
        .await
        .expect("portal");
    assert!(portal.is_empty(), "{portal:?}");

    // Switch to the other project: its board holds none of the default project's runs.
    browser.goto(&app.url("/")).await.expect("board");
    click(
        &browser,
        &format!("#project-switch option[value='{}']", other.project.id),
    )
    .await;
    wait_text(&browser, "#leaderboard tr.empty", |_| true).await;
    assert!(
        browser
            .find(fantoccini::Locator::Css(&format!(
                "tr.run-row[data-run-id='{}']",
                run.id
            )))
            .await
            .is_err()
    );

    // Project settings: add olga as a researcher; make a read-only token.
    browser.goto(&app.url("/projects")).await.expect("settings");
    wait_text(&browser, "#project-title-heading", |t| {
        t.contains("Beta cardiology")
    })
    .await;
    type_into(&browser, "#member-username", "olga").await;
    click(&browser, "#member-role option[value='researcher']").await;
    click(&browser, "#add-member").await;
    wait_text(
        &browser,
        "tr.member-row[data-username='olga'] .member-role",
        |t| t.contains("researcher"),
    )
    .await;
    type_into(&browser, "#token-name", "dashboard").await;
    click(&browser, "#create-token").await;
    let token = wait_text(&browser, "#new-token", |t| !t.is_empty()).await;
    let me: Me = app
        .anonymous
        .get(app.url("/api/auth/me"))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("me")
        .json()
        .await
        .expect("me body");
    assert!(me.read_only);
    assert_eq!(me.project.map(|p| p.slug), Some("beta".to_owned()));
    // Read with the new token: the admin's test token acts in the default project.
    let detail: ProjectDetail = app
        .anonymous
        .get(app.url(&format!("/api/projects/{}", other.project.id)))
        .bearer_auth(token.trim())
        .send()
        .await
        .expect("detail")
        .json()
        .await
        .expect("detail body");
    assert!(
        detail
            .members
            .iter()
            .any(|m| m.username == "olga" && m.role == ProjectRole::Researcher)
    );
    drop(session);
    app.stop().await.expect("clean stop");
}
