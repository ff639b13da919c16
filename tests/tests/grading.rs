//! Human grading through the API, on SQLite and on PostgreSQL, against a real server and a
//! real run of the fixture model: a task with overlap k gives every item exactly k distinct
//! annotators; grades are versioned and a stale save is refused (409) with nothing
//! overwritten; disagreements are adjudicated; the run's human-adjusted accuracy, the agreement
//! figures, the exports, the audit log and the gold-answer flags follow. The database itself
//! refuses to update or delete a grade or an audit line.
//!
//! And `grading_roles`: an annotator cannot read a run's model identity, another annotator's
//! grades, or any item not assigned to them, through any endpoint.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_backend::auth::Access;
use kokushi_backend::routes::ENDPOINTS;
use kokushi_shared::api::{RunDetail, RunSummary};
use kokushi_shared::grading::{
    BlindItem, Grade, Grader, GradingTaskDetail, GradingTaskSummary, ItemState, MyQueue, MyTask,
    Verdict,
};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fixture_model_store, fresh_postgres_url, sqlite_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

struct World {
    app: TestApp,
    run: RunDetail,
    annie: (i64, reqwest::Client),
    bob: (i64, reqwest::Client),
    _store: kokushi_tests::tempfile::TempDir,
}

/// A server with the mini exam, one finished run of the fixture model, and two annotators.
async fn world(database_url: String) -> World {
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(Settings::embedded(database_url, store.path()))
        .await
        .expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let created = app.create_run(exam.id, 6).await.expect("run");
    let run = app
        .wait_for_run(created.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    assert!(
        run.run.tally.answered >= 4,
        "the run answered: {:?}",
        run.run
    );
    let annie = app.signed_in("annie", &["annotator"]).await.expect("annie");
    let bob = app.signed_in("bob", &["annotator"]).await.expect("bob");
    World {
        app,
        run,
        annie,
        bob,
        _store: store,
    }
}

async fn json_of<T: serde::de::DeserializeOwned>(res: reqwest::Response, what: &str) -> T {
    let status = res.status();
    let text = res.text().await.expect("body");
    assert!(status.is_success(), "{what}: {status} {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"))
}

async fn get<T: serde::de::DeserializeOwned>(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
) -> T {
    json_of(
        client.get(app.url(path)).send().await.expect("request"),
        path,
    )
    .await
}

async fn create_task(w: &World, body: Value) -> reqwest::Response {
    w.app
        .client
        .post(w.app.url("/api/grading/tasks"))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn grade(
    client: &reqwest::Client,
    app: &TestApp,
    assignment: i64,
    body: Value,
) -> reqwest::Response {
    client
        .post(app.url(&format!("/api/grading/assignments/{assignment}/grade")))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn error_of(res: reqwest::Response) -> (StatusCode, String, String) {
    let status = res.status();
    let body: Value = res.json().await.expect("error body");
    (
        status,
        body["code"].as_str().unwrap_or_default().to_owned(),
        body["message"].as_str().unwrap_or_default().to_owned(),
    )
}

async fn grading_flow_on(database_url: String) {
    let w = world(database_url.clone()).await;
    let app = &w.app;
    let answered = w.run.run.tally.answered;

    // Who may be asked: the two annotators, not the admin.
    let graders: Vec<Grader> = get(&app.client, app, "/api/grading/annotators").await;
    let names: Vec<&str> = graders.iter().map(|g| g.username.as_str()).collect();
    assert_eq!(names, ["annie", "bob"]);

    // Bad requests name what is wrong and create nothing.
    let (status, _, message) = error_of(
        create_task(
            &w,
            json!({"name": "t", "run_ids": [w.run.run.id], "selection": "all", "overlap": 3,
                   "annotators": [w.annie.0, w.bob.0]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("overlap 3") && message.contains('2'),
        "{message}"
    );
    let (status, _, message) = error_of(
        create_task(
            &w,
            json!({"name": "t", "run_ids": [w.run.run.id], "selection": "disagreements",
                   "overlap": 1, "annotators": [w.annie.0]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("exactly two runs"), "{message}");
    let (status, _, message) = error_of(
        create_task(
            &w,
            json!({"name": "t", "run_ids": [w.run.run.id], "selection": "all", "overlap": 1,
                   "annotators": [1]}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        message.contains("account 1") && message.contains("annotator"),
        "{message}"
    );
    let tasks: Vec<GradingTaskSummary> = get(&app.client, app, "/api/grading/tasks").await;
    assert!(tasks.is_empty(), "a refused task leaves nothing behind");

    // Overlap 1 over two annotators: every item exactly once, the load split evenly.
    let single: GradingTaskSummary = json_of(
        create_task(
            &w,
            json!({"name": "single", "run_ids": [w.run.run.id], "selection": "all",
                   "overlap": 1, "seed": 11, "annotators": [w.annie.0, w.bob.0]}),
        )
        .await,
        "creating the overlap-1 task",
    )
    .await;
    assert_eq!(single.items, answered);
    let loads: Vec<u32> = single.annotators.iter().map(|a| a.assigned).collect();
    assert_eq!(loads.iter().sum::<u32>(), answered, "{loads:?}");
    assert!(
        loads.iter().max().expect("loads") - loads.iter().min().expect("loads") <= 1,
        "{loads:?}"
    );

    // Overlap 2: both annotators grade every item.
    let task: GradingTaskSummary = json_of(
        create_task(
            &w,
            json!({"name": "double", "run_ids": [w.run.run.id], "selection": "all",
                   "overlap": 2, "seed": 7, "annotators": [w.annie.0, w.bob.0]}),
        )
        .await,
        "creating the overlap-2 task",
    )
    .await;
    assert_eq!(task.items, answered);
    assert!(task.annotators.iter().all(|a| a.assigned == answered));

    // Each annotator's order is their own (seeded), and resumable.
    let annie_q: MyQueue = get(&w.annie.1, app, &format!("/api/grading/mine/{}", task.id)).await;
    let bob_q: MyQueue = get(&w.bob.1, app, &format!("/api/grading/mine/{}", task.id)).await;
    assert_eq!(annie_q.items.len() as u32, answered);
    assert_eq!(annie_q.task.resume, Some(annie_q.items[0].assignment_id));

    // Annie: everything correct. Bob: the first item he sees incorrect, gold flagged.
    let mut bob_first_problem = String::new();
    for (who, queue) in [(&w.annie, &annie_q), (&w.bob, &bob_q)] {
        for (i, item) in queue.items.iter().enumerate() {
            let blind: BlindItem = get(
                &who.1,
                app,
                &format!("/api/grading/assignments/{}", item.assignment_id),
            )
            .await;
            assert_eq!(blind.position as usize, i + 1);
            assert!(blind.grade.is_none());
            assert!(
                !blind.credit.is_empty(),
                "the exam data's credit travels with it"
            );
            let dissent = who.0 == w.bob.0 && i == 0;
            if dissent {
                bob_first_problem = blind.problem_id.clone();
            }
            let body = if dissent {
                json!({"expected_version": 0, "verdict": "incorrect", "rationale": 2,
                       "flags": ["gold_wrong"], "comment": "bob-private-remark"})
            } else {
                json!({"expected_version": 0, "verdict": "correct"})
            };
            let saved: Grade = json_of(
                grade(&who.1, app, item.assignment_id, body).await,
                "saving a grade",
            )
            .await;
            assert_eq!(saved.version, 1);
        }
    }

    // A save from a stale form is refused and changes nothing; from the current one it appends.
    let first = annie_q.items[0].assignment_id;
    let (status, code, message) = error_of(
        grade(
            &w.annie.1,
            app,
            first,
            json!({"expected_version": 0, "verdict": "partial"}),
        )
        .await,
    )
    .await;
    assert_eq!((status, code.as_str()), (StatusCode::CONFLICT, "conflict"));
    assert!(message.contains("version 1"), "{message}");
    let again: Grade = json_of(
        grade(
            &w.annie.1,
            app,
            first,
            json!({"expected_version": 1, "verdict": "correct",
                                             "comment": "checked twice"}),
        )
        .await,
        "regrading",
    )
    .await;
    assert_eq!(again.version, 2);
    // Six saves at once from the same version: exactly one wins, the others are told so.
    let racers = (0..6).map(|i| {
        grade(
            &w.annie.1,
            app,
            first,
            json!({"expected_version": 2, "verdict": "correct", "comment": format!("racer {i}")}),
        )
    });
    let statuses: Vec<StatusCode> = futures_util::future::join_all(racers)
        .await
        .iter()
        .map(reqwest::Response::status)
        .collect();
    let won = statuses
        .iter()
        .filter(|s| **s == StatusCode::CREATED)
        .count();
    let lost = statuses
        .iter()
        .filter(|s| **s == StatusCode::CONFLICT)
        .count();
    assert_eq!((won, lost), (1, 5), "{statuses:?}");
    // Letters are read only for "unparseable", and must be the question's.
    let (status, _, message) = error_of(
        grade(
            &w.annie.1,
            app,
            first,
            json!({"expected_version": 2, "verdict": "unparseable",
                                             "letters": "z"}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("'z'"), "{message}");
    let (status, _, message) = error_of(
        grade(
            &w.annie.1,
            app,
            first,
            json!({"expected_version": 2, "verdict": "correct",
                                             "rationale": 9}),
        )
        .await,
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(message.contains("rationale 9"), "{message}");

    // The researcher's view: exactly two distinct graders per item, one dispute, agreement.
    let detail: GradingTaskDetail =
        get(&app.client, app, &format!("/api/grading/tasks/{}", task.id)).await;
    assert_eq!(detail.items.len() as u32, answered);
    for item in &detail.items {
        let by: BTreeSet<&str> = item.grades.iter().map(|g| g.by.as_str()).collect();
        assert_eq!(by.len(), 2, "item {} graded by {by:?}", item.item_id);
    }
    assert_eq!(detail.task.disputed, 1);
    assert_eq!(
        detail.items[0].state,
        ItemState::Disputed,
        "disputed items come first"
    );
    assert_eq!(detail.items[0].problem_id, bob_first_problem);
    assert_eq!(detail.agreement.items, answered);
    let pct = detail.agreement.percent.expect("percent agreement");
    assert!(
        (pct - f64::from(answered - 1) / f64::from(answered)).abs() < 1e-9,
        "{pct}"
    );
    assert_eq!(detail.agreement.pairs.len(), 1);
    assert_eq!(detail.agreement.pairs[0].items, answered);
    // One "incorrect" among otherwise unanimous "correct": agreement no better than chance.
    let fleiss = detail.agreement.fleiss.expect("Fleiss' kappa");
    assert!(fleiss.kappa <= 0.0, "{fleiss:?}");
    // The overlap-1 task: every item graded exactly once, by one of the two.
    for (who, _) in [(&w.annie, 0), (&w.bob, 1)] {
        let q: MyQueue = get(&who.1, app, &format!("/api/grading/mine/{}", single.id)).await;
        for item in q.items {
            json_of::<Grade>(
                grade(
                    &who.1,
                    app,
                    item.assignment_id,
                    json!({"expected_version": 0, "verdict": "correct"}),
                )
                .await,
                "grading the overlap-1 task",
            )
            .await;
        }
    }
    let single_detail: GradingTaskDetail = get(
        &app.client,
        app,
        &format!("/api/grading/tasks/{}", single.id),
    )
    .await;
    assert!(
        single_detail
            .items
            .iter()
            .all(|i| i.grades.len() == 1 && i.state == ItemState::Agreed)
    );

    // Before the adjudication, the disputed answer keeps the older task's decision (correct).
    // Read now, so that the run's stored decisions must be computed again after it.
    let before: RunDetail = get(&app.client, app, &format!("/api/runs/{}", w.run.run.id)).await;
    let before = before
        .run
        .human
        .expect("human-adjusted accuracy before the adjudication");
    assert_eq!((before.resolved, before.correct), (answered, answered));

    // Adjudication: the reviewer decides; a second decision from the same stale state is refused.
    let disputed = detail.items[0].item_id;
    let decided: Grade = json_of(
        app.client
            .post(app.url(&format!("/api/grading/items/{disputed}/adjudicate")))
            .json(&json!({"expected_version": 0, "verdict": "incorrect", "comment": "B is right"}))
            .send()
            .await
            .expect("request"),
        "adjudicating",
    )
    .await;
    assert_eq!((decided.version, decided.verdict), (1, Verdict::Incorrect));
    let (status, ..) = error_of(
        app.client
            .post(app.url(&format!("/api/grading/items/{disputed}/adjudicate")))
            .json(&json!({"expected_version": 0, "verdict": "correct"}))
            .send()
            .await
            .expect("request"),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    let after: GradingTaskDetail =
        get(&app.client, app, &format!("/api/grading/tasks/{}", task.id)).await;
    assert_eq!((after.task.disputed, after.task.adjudicated), (0, 1));

    // Human-adjusted accuracy: every answer decided by humans — all right but the adjudicated one.
    let run: RunDetail = get(&app.client, app, &format!("/api/runs/{}", w.run.run.id)).await;
    let human = run.run.human.expect("human-adjusted accuracy");
    assert_eq!(human.answered, answered);
    assert_eq!(human.resolved, answered);
    assert_eq!(human.correct, answered - 1);
    let changed = w
        .run
        .questions
        .iter()
        .filter(|q| q.answer.is_some())
        .filter(|q| was_correct(&w.run, &q.problem_id) != (q.problem_id != bob_first_problem))
        .count();
    assert_eq!(
        human.changed as usize, changed,
        "answers whose verdict the humans turned"
    );
    let board: Vec<RunSummary> = get(&app.client, app, "/api/leaderboard").await;
    assert_eq!(board[0].human, Some(human));
    // Under a question filter, on the questions kept only.
    let block = &bob_first_problem[3..4];
    let board: Vec<RunSummary> = get(
        &app.client,
        app,
        &format!("/api/leaderboard?blocks={block}"),
    )
    .await;
    let kept = w
        .run
        .questions
        .iter()
        .filter(|q| q.answer.is_some() && q.problem_id[3..4] == *block)
        .count() as u32;
    let filtered = board[0]
        .human
        .expect("human-adjusted accuracy under a filter");
    assert_eq!((board[0].tally.answered, filtered.answered), (kept, kept));
    assert_eq!(filtered.resolved, kept);
    assert_eq!(
        filtered.correct,
        kept - 1,
        "the adjudicated answer is in the block"
    );

    // Exports: every version of every grade, and the adjudication.
    let csv = app
        .client
        .get(app.url(&format!("/api/grading/tasks/{}/export?format=csv", task.id)))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("csv");
    let rows = csv.lines().count() - 1;
    assert_eq!(rows as u32, 2 * answered + 2 + 1, "{csv}");
    assert!(csv.contains("adjudication") && csv.contains("bob-private-remark"));
    let jsonl = app
        .client
        .get(app.url(&format!(
            "/api/grading/tasks/{}/export?format=jsonl",
            task.id
        )))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("jsonl");
    assert_eq!(jsonl.lines().count(), rows);
    let audit = app
        .client
        .get(app.url(&format!("/api/grading/audit?task={}&format=jsonl", task.id)))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("audit");
    let lines: Vec<Value> = audit
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    let actions: BTreeMap<&str, usize> = lines.iter().fold(BTreeMap::new(), |mut m, l| {
        *m.entry(l["action"].as_str().expect("action")).or_default() += 1;
        m
    });
    assert_eq!(
        actions,
        BTreeMap::from([
            ("adjudicated", 1),
            ("graded", 2 * answered as usize),
            ("regraded", 2),
            ("task_created", 1)
        ])
    );
    let regrade = lines
        .iter()
        .find(|l| l["action"] == "regraded")
        .expect("a regrade");
    assert!(
        regrade["before"]
            .as_str()
            .expect("before")
            .contains("\"version\":1")
    );
    assert!(
        regrade["after"]
            .as_str()
            .expect("after")
            .contains("checked twice")
    );
    let bad = app
        .client
        .get(app.url("/api/grading/audit?format=xml"))
        .send()
        .await
        .expect("request");
    assert_eq!(bad.status(), StatusCode::BAD_REQUEST);

    // The gold answer bob doubted is listed for the exam set's owner (the admin uploaded it).
    let flags: Vec<Value> = get(&app.client, app, "/api/grading/gold-flags").await;
    assert_eq!(flags.len(), 1, "{flags:?}");
    assert_eq!(flags[0]["problem_id"], bob_first_problem.as_str());
    assert_eq!(flags[0]["flagged_by"], 1);

    // Nothing can rewrite history, not even SQL.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&database_url)
        .await
        .expect("connect");
    for sql in [
        "UPDATE grades SET verdict = 'correct'",
        "DELETE FROM grades",
        "UPDATE audit_log SET actor_id = 1",
        "DELETE FROM adjudications",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    pool.close().await;
    app.client
        .get(app.url("/api/health"))
        .send()
        .await
        .expect("up");
    w.app.stop().await.expect("clean stop");
}

fn was_correct(run: &RunDetail, problem_id: &str) -> bool {
    run.questions
        .iter()
        .find(|q| q.problem_id == problem_id)
        .and_then(|q| q.answer.as_ref())
        .is_some_and(|a| a.correct)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grading_api_flow() {
    sqlx::any::install_default_drivers();
    let dir = kokushi_tests::tempfile::tempdir().expect("tempdir");
    grading_flow_on(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grading_api_flow_postgres() {
    sqlx::any::install_default_drivers();
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    grading_flow_on(url).await;
}

/// An annotator reaches only their own assignments: walks every endpoint with the ids of a
/// real task filled in, as the annotator, and checks that nothing answers with the model's
/// name, the run, or the other annotator's grades, and that other items are "not found".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grading_roles() {
    let dir = kokushi_tests::tempfile::tempdir().expect("tempdir");
    let w = world(sqlite_url(dir.path())).await;
    let app = &w.app;
    // Overlap 1: annie's and bob's items are disjoint.
    let task: GradingTaskSummary = json_of(
        create_task(
            &w,
            json!({"name": "blind", "run_ids": [w.run.run.id], "selection": "all", "overlap": 1,
                   "seed": 3, "annotators": [w.annie.0, w.bob.0]}),
        )
        .await,
        "creating the task",
    )
    .await;
    let annie_q: MyQueue = get(&w.annie.1, app, &format!("/api/grading/mine/{}", task.id)).await;
    let bob_q: MyQueue = get(&w.bob.1, app, &format!("/api/grading/mine/{}", task.id)).await;
    let mine = annie_q.items[0].assignment_id;
    let bobs = bob_q.items[0].assignment_id;
    for item in &bob_q.items {
        json_of::<Grade>(
            grade(&w.bob.1, app, item.assignment_id,
                  json!({"expected_version": 0, "verdict": "incorrect", "comment": "bob-private-remark"}))
            .await,
            "bob grades",
        )
        .await;
    }
    json_of::<Grade>(
        grade(
            &w.annie.1,
            app,
            mine,
            json!({"expected_version": 0, "verdict": "correct"}),
        )
        .await,
        "annie grades",
    )
    .await;
    let detail: GradingTaskDetail =
        get(&app.client, app, &format!("/api/grading/tasks/{}", task.id)).await;
    let bob_item = detail
        .items
        .iter()
        .find(|i| i.grades.iter().any(|g| g.by == "bob"))
        .expect("an item of bob's")
        .item_id;

    // What must never reach annie.
    let secrets = [
        FIXTURE_MODEL,
        "tiny-llama",
        "bob-private-remark",
        "\"run_id\"",
        "\"model\"",
    ];
    let run_id = w.run.run.id.to_string();
    let mut checked = 0;
    for endpoint in ENDPOINTS {
        // Each id filled in with what annie must not see, and with her own where it is hers.
        let fills: Vec<String> = if endpoint.path.contains("/assignments/{id}") {
            vec![mine.to_string(), bobs.to_string()]
        } else if endpoint.path.contains("/items/{id}") {
            vec![bob_item.to_string()]
        } else if endpoint.path.contains("{task_id}") || endpoint.path.contains("/tasks/{id}") {
            vec![task.id.to_string()]
        } else if endpoint.path.contains("/runs/{id}") {
            vec![run_id.clone()]
        } else {
            vec!["1".to_owned()]
        };
        for fill in fills {
            let path = endpoint
                .path
                .replace("{id}", &fill)
                .replace("{task_id}", &fill)
                .replace("{problem_id}", &bob_q_problem(&detail, bob_item));
            let url = app.url(&path);
            let req = match endpoint.method {
                "get" => w.annie.1.get(&url),
                "post" => w
                    .annie
                    .1
                    .post(&url)
                    .json(&json!({"expected_version": 1, "verdict": "correct"})),
                "patch" => w.annie.1.patch(&url).json(&json!({})),
                "delete" => w.annie.1.delete(&url),
                other => panic!("method {other}"),
            };
            if endpoint.path == "/api/auth/logout" {
                continue; // would end annie's session; it carries no data
            }
            let res = req.send().await.expect("request");
            let status = res.status();
            let body = res.text().await.expect("body");
            let what = format!("{} {path} as annie: {status} {body}", endpoint.method);
            match endpoint.access {
                Access::Researcher | Access::Admin => {
                    assert_eq!(status, StatusCode::FORBIDDEN, "{what}");
                }
                Access::Public | Access::Member => {
                    if path.ends_with(&format!("/assignments/{bobs}"))
                        || path.ends_with(&format!("/assignments/{bobs}/grade"))
                    {
                        assert_eq!(status, StatusCode::NOT_FOUND, "{what}");
                    }
                    if path != "/api/openapi.json" {
                        for secret in secrets {
                            assert!(!body.contains(secret), "{what} reveals {secret}");
                        }
                    }
                }
            }
            checked += 1;
        }
    }
    assert!(checked > ENDPOINTS.len());

    // Her task list and queue hold only her own items.
    let tasks: Vec<MyTask> = get(&w.annie.1, app, "/api/grading/mine").await;
    assert_eq!(tasks.len(), 1);
    assert_eq!(tasks[0].assigned as usize, annie_q.items.len());
    let theirs: BTreeSet<i64> = bob_q.items.iter().map(|i| i.assignment_id).collect();
    assert!(
        annie_q
            .items
            .iter()
            .all(|i| !theirs.contains(&i.assignment_id))
    );
    // Bob's grade is untouched by annie's attempt on it.
    let bob_view: BlindItem = get(&w.bob.1, app, &format!("/api/grading/assignments/{bobs}")).await;
    assert_eq!(
        bob_view.grade.map(|g| (g.version, g.verdict)),
        Some((1, Verdict::Incorrect))
    );
    w.app.stop().await.expect("clean stop");
}

fn bob_q_problem(detail: &GradingTaskDetail, item: i64) -> String {
    detail
        .items
        .iter()
        .find(|i| i.item_id == item)
        .map(|i| i.problem_id.clone())
        .unwrap_or_default()
}
