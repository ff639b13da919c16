//! LLM judges against a real server, on SQLite and on PostgreSQL: the SmolLM2 demo model
//! grades a grading task's items blind as a queued job; its agreement with the human verdicts
//! (Cohen's κ, percent, the confusion matrix, each annotator) is checked against a count made
//! here by hand from the grades; the gate calls the tiny judge uncalibrated; and the run's
//! human-adjusted accuracy is the same before and after the judge graded. Annotators reach no
//! judge endpoint, the export labels the judge's column, and the database refuses to change a
//! judge's grade.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use kokushi_backend::Settings;
use kokushi_shared::api::{RunDetail, RunStatus};
use kokushi_shared::grading::{BlindItem, GradingTaskDetail, GradingTaskSummary, MyQueue, Verdict};
use kokushi_shared::judge::{JudgeRunDetail, JudgingSettings};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fresh_postgres_url, service, sqlite_url};
use reqwest::StatusCode;
use serde_json::{Value, json};

const JUDGE: &str = "smollm2-judge.gguf";

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

async fn post(
    client: &reqwest::Client,
    app: &TestApp,
    path: &str,
    body: Value,
) -> reqwest::Response {
    client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
}

/// Cohen's κ counted here from the pairs, independently of the portal's code.
fn hand_kappa(pairs: &[(usize, usize)], categories: usize) -> Option<f64> {
    let n = pairs.len() as f64;
    if pairs.is_empty() {
        return None;
    }
    let agree = pairs.iter().filter(|(a, b)| a == b).count() as f64 / n;
    let mut expected = 0.0;
    for c in 0..categories {
        let rows = pairs.iter().filter(|(a, _)| *a == c).count() as f64 / n;
        let cols = pairs.iter().filter(|(_, b)| *b == c).count() as f64 / n;
        expected += rows * cols;
    }
    ((1.0 - expected).abs() > 1e-12).then(|| (agree - expected) / (1.0 - expected))
}

fn category(v: Option<Verdict>) -> usize {
    v.map_or(4, Verdict::index)
}

async fn judge_flow_on(database_url: String, in_browser: bool) {
    let Some(smollm2) = service("KOKUSHI_SMOLLM2_GGUF").map(PathBuf::from) else {
        return;
    };
    // The store: the fixture model answers the exam, SmolLM2 judges (a hard link beside the
    // cache, a copy elsewhere: a symbolic link out of the store is refused).
    let store = kokushi_tests::tempfile::tempdir_in(smollm2.parent().expect("cache folder"))
        .expect("store");
    kokushi_engine::fixture::write_tiny_llama_gguf(&store.path().join(FIXTURE_MODEL), 7)
        .expect("fixture model");
    if std::fs::hard_link(&smollm2, store.path().join(JUDGE)).is_err() {
        std::fs::copy(&smollm2, store.path().join(JUDGE)).expect("copying SmolLM2");
    }
    let mut settings = Settings::embedded(database_url.clone(), store.path());
    let browser_services = if in_browser {
        match (service("KOKUSHI_STATIC_DIR"), service("CHROMEDRIVER")) {
            (Some(static_dir), Some(chromedriver)) => {
                settings.static_dir = Some(static_dir.into());
                Some(chromedriver)
            }
            _ => None,
        }
    } else {
        None
    };
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let created = app.create_run(exam.id, 6).await.expect("run");
    let run = app
        .wait_for_run(created.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    let annie = app.signed_in("annie", &["annotator"]).await.expect("annie");
    let bob = app.signed_in("bob", &["annotator"]).await.expect("bob");

    let task: GradingTaskSummary = json_of(
        post(
            &app.client,
            &app,
            "/api/grading/tasks",
            json!({"name": "calibration", "run_ids": [run.run.id], "selection": "all",
                   "overlap": 2, "seed": 5, "annotators": [annie.0, bob.0]}),
        )
        .await,
        "creating the task",
    )
    .await;
    assert!(task.items >= 4, "{task:?}");

    // Humans grade: by problem id, alternately correct and incorrect; Bob says "partial" on
    // one item, which a reviewer then decides.
    let mut dissent = None;
    for (who, name) in [(&annie, "annie"), (&bob, "bob")] {
        let queue: MyQueue = get(&who.1, &app, &format!("/api/grading/mine/{}", task.id)).await;
        for item in &queue.items {
            let blind: Value = get(
                &who.1,
                &app,
                &format!("/api/grading/assignments/{}", item.assignment_id),
            )
            .await;
            // The annotator's view carries nothing of a judge.
            assert!(
                !blind.to_string().contains("judge"),
                "an annotator's item mentions a judge: {blind}"
            );
            let blind: BlindItem = serde_json::from_value(blind).expect("blind item");
            let digit = blind
                .problem_id
                .chars()
                .rev()
                .find(char::is_ascii_digit)
                .and_then(|c| c.to_digit(10))
                .unwrap_or(0);
            let mut verdict = if digit % 2 == 0 {
                "correct"
            } else {
                "incorrect"
            };
            if name == "bob" && dissent.is_none() {
                dissent = Some(blind.problem_id.clone());
                verdict = "partial";
            }
            let res = post(
                &who.1,
                &app,
                &format!("/api/grading/assignments/{}/grade", item.assignment_id),
                json!({"expected_version": 0, "verdict": verdict}),
            )
            .await;
            assert_eq!(res.status(), StatusCode::CREATED);
        }
    }
    let detail: GradingTaskDetail = get(
        &app.client,
        &app,
        &format!("/api/grading/tasks/{}", task.id),
    )
    .await;
    let disputed: Vec<i64> = detail
        .items
        .iter()
        .filter(|i| i.human.is_none())
        .map(|i| i.item_id)
        .collect();
    assert_eq!(disputed.len(), 1, "{:?}", detail.items);
    let res = post(
        &app.client,
        &app,
        &format!("/api/grading/items/{}/adjudicate", disputed[0]),
        json!({"expected_version": 0, "verdict": "partial"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CREATED);
    let before: RunDetail = get(&app.client, &app, &format!("/api/runs/{}", run.run.id)).await;
    let human_before = before.run.human.expect("human-adjusted accuracy");
    assert_eq!(human_before.resolved, task.items);

    // The task is the project's calibration task.
    let res = post(
        &app.client,
        &app,
        "/api/judging",
        json!({"threshold": 0.6, "calibration_tasks": [task.id]}),
    )
    .await;
    let settings: JudgingSettings = json_of(res, "judging settings").await;
    assert_eq!(settings.calibration_tasks, vec![task.id]);
    // Bad settings and bad judges name what is wrong and leave nothing behind.
    let res = post(
        &app.client,
        &app,
        "/api/judging",
        json!({"threshold": 1.5, "calibration_tasks": []}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let res = post(
        &app.client,
        &app,
        "/api/judging",
        json!({"threshold": 0.5, "calibration_tasks": [task.id + 100]}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let judges_path = format!("/api/grading/tasks/{}/judges", task.id);
    for (body, words) in [
        (json!({"model": "../etc/passwd"}), "plain name"),
        (json!({"model": JUDGE, "prompt": "nope"}), "no judge prompt"),
        (
            json!({"model": JUDGE, "max_new_tokens": 0}),
            "max_new_tokens 0",
        ),
        (
            json!({"model": JUDGE, "prompt_format": "xml"}),
            "unknown prompt_format",
        ),
    ] {
        let res = post(&app.client, &app, &judges_path, body.clone()).await;
        let status = res.status();
        let text = res.text().await.expect("body");
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {text}");
        assert!(text.contains(words), "{body}: {text}");
    }
    let none: Vec<JudgeRunDetail> = get(&app.client, &app, &judges_path).await;
    assert!(none.is_empty());
    // A template with an unknown placeholder is refused; a good one is version 1, then 2.
    let res = post(
        &app.client,
        &app,
        "/api/judge-prompts",
        json!({"name": "mine", "template": "{output} {model}"}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    for version in [1, 2] {
        let prompt: Value = json_of(
            post(&app.client, &app, "/api/judge-prompts",
                 json!({"name": "mine", "template": format!("v{version}: {{question}} → {{output}}")}))
            .await,
            "a judge prompt",
        )
        .await;
        assert_eq!(prompt["version"], version);
        assert_eq!(prompt["hash"].as_str().map(str::len), Some(64));
    }

    // Annotators reach no judge endpoint.
    for path in [judges_path.as_str(), "/api/judging", "/api/judge-prompts"] {
        let res = annie.1.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status(), StatusCode::FORBIDDEN, "{path}");
    }
    let res = post(&annie.1, &app, &judges_path, json!({"model": JUDGE})).await;
    assert_eq!(res.status(), StatusCode::FORBIDDEN);

    // The judge: SmolLM2 with the built-in prompt, the verdict's letter by log-likelihood.
    let launched: JudgeRunDetail = json_of(
        post(&app.client, &app, &judges_path, json!({"model": JUDGE})).await,
        "launching the judge",
    )
    .await;
    assert_eq!(launched.run.prompt, "judge_ja");
    assert_eq!(launched.run.scoring, "loglik");
    let started = Instant::now();
    let judged = loop {
        let runs: Vec<JudgeRunDetail> = get(&app.client, &app, &judges_path).await;
        let run = runs.into_iter().next().expect("the judge run");
        match run.run.status {
            RunStatus::Succeeded => break run,
            RunStatus::Failed | RunStatus::Cancelled => {
                panic!("the judge run ended: {:?}", run.run)
            }
            _ => {}
        }
        assert!(
            started.elapsed() < Duration::from_secs(300),
            "the judge is slow: {:?}",
            run.run
        );
        tokio::time::sleep(Duration::from_millis(300)).await;
    };
    assert_eq!(judged.run.graded, task.items);
    assert_eq!(judged.grades.len() as u32, task.items);
    assert!(
        judged
            .run
            .model_info
            .as_deref()
            .is_some_and(|m| !m.is_empty())
    );
    assert!(judged.calibration_task);
    // By log-likelihood the judge always gives exactly one verdict, even on an item whose
    // question asks for two letters.
    assert!(
        judged
            .grades
            .iter()
            .all(|g| g.verdict.is_some() && g.error.is_none()),
        "{:?}",
        judged.grades
    );

    // Its cost: the estimate kept as it was queued counted exactly the tokens the judge was
    // given; a second run of the same judge is now estimated with a time.
    let estimate = judged
        .run
        .cost
        .estimate
        .as_ref()
        .expect("the estimate kept");
    let work = judged.run.cost.work.as_ref().expect("the work measured");
    assert_eq!(estimate.prompt_tokens, work.prompt_tokens);
    assert_eq!(
        (work.answers, work.generated_tokens),
        (u64::from(task.items), 0)
    );
    let again: kokushi_shared::cost::Estimate = json_of(
        post(
            &app.client,
            &app,
            &format!("{judges_path}/estimate"),
            json!({"model": JUDGE}),
        )
        .await,
        "estimating a judge run",
    )
    .await;
    assert!(again.seconds.is_some(), "{again:?}");
    assert_eq!(again.prompt_tokens, work.prompt_tokens);

    // The hand count: the judge's verdicts against the human ones, item by item.
    let detail: GradingTaskDetail = get(
        &app.client,
        &app,
        &format!("/api/grading/tasks/{}", task.id),
    )
    .await;
    let human: BTreeMap<i64, Verdict> = detail
        .items
        .iter()
        .map(|i| (i.item_id, i.human.expect("every item decided")))
        .collect();
    let mut pairs = Vec::new();
    let mut confusion = vec![vec![0u32; 5]; 4];
    for g in &judged.grades {
        assert_eq!(g.human, Some(human[&g.item_id]), "item {}", g.item_id);
        let (h, j) = (human[&g.item_id].index(), category(g.verdict));
        pairs.push((h, j));
        confusion[h][j] += 1;
    }
    let a = &judged.agreement;
    eprintln!(
        "judge: {} items, percent {:?}, κ {:?}, confusion {:?}; gate: {}",
        a.items, a.percent, a.cohen, a.confusion, judged.gate.reason
    );
    assert_eq!(a.items as usize, pairs.len());
    assert_eq!(a.confusion, confusion);
    let agree = pairs.iter().filter(|(h, j)| h == j).count();
    assert_eq!(a.percent, Some(agree as f64 / pairs.len() as f64));
    match (a.cohen, hand_kappa(&pairs, 5)) {
        (Some(k), Some(hand)) => assert!((k.kappa - hand).abs() < 1e-9, "{} vs {hand}", k.kappa),
        (None, None) => {}
        (ours, hand) => panic!("κ {ours:?} against the hand count {hand:?}"),
    }
    // Disagreements first.
    let first_agreeing = judged
        .grades
        .iter()
        .position(|g| g.verdict == g.human)
        .unwrap_or(judged.grades.len());
    assert!(
        judged.grades[first_agreeing..]
            .iter()
            .all(|g| g.verdict == g.human)
    );
    // Per annotator: each graded every item.
    assert_eq!(a.annotators.len(), 2);
    for who in &a.annotators {
        assert_eq!(who.items, task.items, "{who:?}");
    }
    assert!(a.annotator_kappa.is_some());

    // The gate: far too few items for a tiny judge to be trusted.
    assert!(!judged.gate.calibrated, "{:?}", judged.gate);
    assert_eq!(judged.gate.calibration_run, Some(judged.run.id));
    assert!(
        judged.gate.reason.starts_with("uncalibrated"),
        "{}",
        judged.gate.reason
    );

    // The human-adjusted accuracy is exactly what it was (the judge disagreed somewhere or
    // not, it changes nothing), on the run page and the leaderboard.
    let after: RunDetail = get(&app.client, &app, &format!("/api/runs/{}", run.run.id)).await;
    assert_eq!(after.run.human, Some(human_before));
    let board = app.leaderboard().await.expect("leaderboard");
    let row = board
        .iter()
        .find(|r| r.id == run.run.id)
        .expect("the run's row");
    assert_eq!(row.human, Some(human_before));

    // The export carries the judge's column, labelled.
    let csv = app
        .client
        .get(app.url(&format!("/api/grading/tasks/{}/export", task.id)))
        .send()
        .await
        .expect("export")
        .text()
        .await
        .expect("csv");
    let header = csv.lines().next().expect("header");
    assert!(header.ends_with(",judge_verdict,judge"), "{header}");
    assert!(
        csv.contains(&format!("judge run {} (uncalibrated)", judged.run.id)),
        "{csv}"
    );
    // The audit log names who launched the judge, and when it finished.
    let audit = app
        .client
        .get(app.url(&format!("/api/grading/audit?task={}", task.id)))
        .send()
        .await
        .expect("audit")
        .text()
        .await
        .expect("csv");
    assert!(
        audit.contains("judge_launched") && audit.contains("judge_finished"),
        "{audit}"
    );

    // The task page shows the judge beside the annotators: its gate, κ, the confusion matrix,
    // its disagreements.
    if let Some(chromedriver) = &browser_services {
        use kokushi_tests::ui::{sign_in, wait_text};
        let session = kokushi_tests::Browser::start(chromedriver)
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
        browser
            .goto(&app.url(&format!("/grading/tasks/{}", task.id)))
            .await
            .expect("task page");
        let section = format!(
            ".judge-run[data-judge-run-id='{}'][data-calibrated='false']",
            judged.run.id
        );
        let shown = wait_text(&browser, &section, |t| t.contains("Uncalibrated")).await;
        assert!(shown.contains(JUDGE) && shown.contains("Cohen"), "{shown}");
        let cells = wait_text(
            &browser,
            &format!("{section} .judge-confusion tbody"),
            |_| true,
        )
        .await;
        let counted: u32 = cells
            .split_whitespace()
            .filter_map(|w| w.parse::<u32>().ok())
            .sum();
        assert_eq!(counted, a.items, "{cells}");
        let disagreements = judged
            .grades
            .iter()
            .filter(|g| g.human.is_some() && g.human != g.verdict)
            .count();
        let listed = browser
            .find_all(fantoccini::Locator::Css(&format!(
                "{section} .judge-disagreement"
            )))
            .await
            .expect("list")
            .len();
        assert_eq!(listed, disagreements.min(20));
        // Its cost, estimated and measured; and the form estimates the next judge run.
        wait_text(&browser, &format!("{section} .judge-cost"), |t| {
            t.contains("took")
        })
        .await;
        kokushi_tests::ui::click(&browser, &format!("#judge-model option[value='{JUDGE}']")).await;
        kokushi_tests::ui::click(&browser, "#judge-estimate").await;
        let figures = wait_text(&browser, "#judge-estimate-figures", |t| t.contains("items")).await;
        assert!(
            figures.contains(&format!("{} items", task.items)) && !figures.contains("no time"),
            "{figures}"
        );
        // The project's settings page: the task is ticked as a calibration task; the owner
        // raises the threshold there.
        browser.goto(&app.url("/projects")).await.expect("settings");
        wait_text(&browser, "#judging-form", |t| t.contains("Threshold")).await;
        let checked = browser
            .find(fantoccini::Locator::Css(&format!(
                ".calibration-task[data-task-id='{}']",
                task.id
            )))
            .await
            .expect("the task's box")
            .prop("checked")
            .await
            .expect("checked");
        assert_eq!(checked.as_deref(), Some("true"));
        kokushi_tests::ui::type_into(&browser, "#judging-threshold", "0.7").await;
        kokushi_tests::ui::click(&browser, "#judging-save").await;
        wait_text(&browser, "#judging-saved", |_| true).await;
        let saved: JudgingSettings = get(&app.client, &app, "/api/judging").await;
        assert_eq!(
            (saved.threshold, saved.calibration_tasks),
            (0.7, vec![task.id])
        );
    }

    // A finished judge run is not cancelled, and a retry of it is refused.
    let res = post(
        &app.client,
        &app,
        &format!("{judges_path}/{}/cancel", judged.run.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);
    let res = post(
        &app.client,
        &app,
        &format!("{judges_path}/{}/retry", judged.run.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), StatusCode::CONFLICT);

    // The database keeps a judge's grades as written.
    let pool = sqlx::any::AnyPoolOptions::new()
        .max_connections(1)
        .connect(&database_url)
        .await
        .expect("connect");
    for sql in [
        "UPDATE judge_grades SET verdict = 'correct'",
        "DELETE FROM judge_grades",
    ] {
        let err = sqlx::query(sql).execute(&pool).await.expect_err(sql);
        assert!(err.to_string().contains("append-only"), "{sql}: {err}");
    }
    pool.close().await;
    app.stop().await.expect("stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_grades_a_task_and_is_measured_against_the_humans() {
    let dir = kokushi_tests::tempfile::tempdir().expect("dir");
    judge_flow_on(sqlite_url(dir.path()), true).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_judge_grades_a_task_and_is_measured_against_the_humans_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    judge_flow_on(url, false).await;
}
