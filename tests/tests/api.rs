//! The server in this process on a free port, with the embedded queue and worker, evaluating
//! the fixture model — once against SQLite and once against PostgreSQL.

use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_shared::api::{ApiErrorBody, ErrorCode, ExamSetSummary, RunStatus, StoreEntry};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fixture_model_store, fresh_postgres_url, sqlite_url};

async fn get_plain(app: &TestApp, path: &str) -> String {
    let res = app.client.get(app.url(path)).send().await.expect("request");
    assert_eq!(res.status(), 200, "{path}");
    res.text().await.expect("text")
}

async fn evaluation_runs_end_to_end(database_url: String) {
    // Arrange
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(Settings::embedded(database_url, store.path()))
        .await
        .expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");

    // Act
    let run = app.create_run(exam.id, 3).await.expect("create run");
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("run finishes");
    let board = app.leaderboard().await.expect("leaderboard");

    // Assert
    assert_eq!((exam.question_count, exam.text_only_count), (6, 5));
    assert_eq!(run.status, RunStatus::Queued);
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    assert_eq!(detail.questions.len(), 3, "the first 3 text-only questions");
    assert_eq!(
        detail
            .questions
            .iter()
            .map(|q| q.problem_id.as_str())
            .collect::<Vec<_>>(),
        ["901A1", "901A2", "901B1"],
        "image questions are left out, order is kept"
    );
    for q in &detail.questions {
        let answer = q.answer.as_ref().expect("every question answered");
        assert!(!answer.raw_output.is_empty() || answer.extracted.is_unparsed());
    }
    assert_eq!(detail.rules_version.as_deref(), Some("letters-v1"));
    assert!(detail.credit.contains("arXiv:2303.18027"));
    let row = board
        .iter()
        .find(|r| r.id == run.id)
        .expect("run on the leaderboard");
    assert_eq!(row.tally.answered, 3);
    assert_eq!(row.tally.points_possible, 3);
    assert_eq!(row.total, 3);
    // The per-year verdicts are stored just after the run succeeds.
    let started = std::time::Instant::now();
    let years = loop {
        let board = app.leaderboard().await.expect("leaderboard");
        let years = board
            .iter()
            .find(|r| r.id == run.id)
            .map(|r| r.years.clone())
            .unwrap_or_default();
        if !years.is_empty() {
            break years;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "no per-year verdicts"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(years.len(), 1, "{years:?}");
    assert_eq!(years[0].exam.as_deref(), Some("901"));
    assert_eq!((years[0].questions, years[0].points), (3, row.tally.points));
    assert_eq!(years[0].pass, None, "no criteria are known for exam 901");

    // The run scored by shared::score on the server agrees with the tally kept at ingestion.
    let score: serde_json::Value = app
        .client
        .get(app.url(&format!("/api/runs/{}/score", run.id)))
        .query(&[("mode", "lenient")])
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert_eq!(score["overall"]["questions"], 3, "{score}");
    assert_eq!(score["overall"]["correct"], row.tally.correct, "{score}");
    assert_eq!(score["overall"]["points"], row.tally.points, "{score}");
    assert_eq!(
        score["overall"]["parse_failures"], row.tally.parse_failures,
        "{score}"
    );
    assert_eq!(score["rules_version"], "letters-v1");
    let res = app
        .client
        .get(app.url(&format!("/api/runs/{}/score?mode=generous", run.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let res = app
        .client
        .get(app.url("/api/runs/999999/score"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 404);

    // Exports: the answers as JSON lines and CSV, the metrics and the leaderboard as CSV.
    let get = |path: String| {
        let app = &app;
        async move {
            let res = app
                .client
                .get(app.url(&path))
                .send()
                .await
                .expect("request");
            assert_eq!(res.status(), 200, "{path}");
            let disposition = res
                .headers()
                .get("content-disposition")
                .and_then(|v| v.to_str().ok())
                .unwrap_or_default()
                .to_owned();
            assert!(
                disposition.starts_with("attachment"),
                "{path}: {disposition}"
            );
            res.text().await.expect("text")
        }
    };
    let jsonl = get(format!("/api/runs/{}/export?format=jsonl", run.id)).await;
    let lines: Vec<serde_json::Value> = jsonl
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect();
    assert_eq!(lines.len(), 3);
    assert_eq!(lines[0]["problem_id"], "901A1");
    assert!(lines.iter().all(|l| l["prediction"].is_string()));
    assert_eq!(
        lines.iter().filter(|l| l["correct"] == true).count() as u64,
        u64::from(row.tally.correct)
    );
    let csv = get(format!("/api/runs/{}/export?format=csv", run.id)).await;
    assert!(
        csv.starts_with("run_id,problem_id,prediction,raw_output,"),
        "{csv}"
    );
    let metrics = get(format!("/api/runs/{}/score?format=csv", run.id)).await;
    assert!(
        metrics.starts_with("year,exam,questions,correct,"),
        "{metrics}"
    );
    assert!(metrics.lines().any(|l| l.starts_with("all,")), "{metrics}");
    let board_csv = get("/api/leaderboard/export?format=csv".to_owned()).await;
    assert_eq!(board_csv.lines().count(), 1 + board.len(), "{board_csv}");
    assert!(board_csv.contains("tiny-llama.gguf"), "{board_csv}");
    let res = app
        .client
        .get(app.url(&format!("/api/runs/{}/export?format=xlsx", run.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    // Prometheus metrics (admin): requests by route pattern, runs by status, workers.
    let metrics = get_plain(&app, "/metrics").await;
    for expected in [
        "kokushi_http_requests_total{method=\"GET\",route=\"/api/leaderboard\",status=\"200\"}",
        "kokushi_http_requests_total{method=\"GET\",route=\"/api/runs/{id}/score\",status=\"400\"} 1",
        "kokushi_http_request_duration_seconds_bucket{method=\"GET\",route=\"/api/runs/{id}\",le=\"+Inf\"}",
        "kokushi_runs{status=\"succeeded\"} 1",
        "kokushi_queue_depth 0",
        "kokushi_run_duration_seconds_count 1",
        "kokushi_workers 1",
    ] {
        assert!(metrics.contains(expected), "{expected} in\n{metrics}");
    }
    // The JSON lines are a predictions file: `kokushi score` reads them and agrees.
    if let Some(bin) = kokushi_tests::service("KOKUSHI_BIN") {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("export.jsonl");
        std::fs::write(&file, &jsonl).expect("write");
        let out = std::process::Command::new(bin)
            .args([
                "score",
                "--mode",
                "lenient",
                "--format",
                "json",
                "--exam-set",
            ])
            .arg(kokushi_tests::mini_exam_path())
            .arg("--predictions")
            .arg(&file)
            .output()
            .expect("kokushi score runs");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let scored: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
        assert_eq!(
            scored["overall"]["correct"], score["overall"]["correct"],
            "{scored}"
        );
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_runs_end_to_end_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    evaluation_runs_end_to_end(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_evaluation_runs_end_to_end_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    evaluation_runs_end_to_end(url).await;
}

async fn bad_exam_files_are_refused_whole(database_url: String) {
    let store = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(database_url, store.path()))
        .await
        .expect("server starts");
    let good = r#"{"problem_id": "901A1", "problem_text": "x", "choices": ["1","2","3"], "answer": ["a"], "points": "1", "text_only": true}"#;
    let cases: &[(&str, usize, &str)] = &[
        ("{\"problem_id\": ", 2, "line"),
        (
            r#"{"problem_id": "901A2", "problem_text": "x", "choices": ["1","2","3"], "answer": ["z"], "points": "1"}"#,
            2,
            "answer",
        ),
        (good, 2, "problem_id"),
    ];
    for (bad_line, line, field) in cases {
        let body = format!("{good}\n{bad_line}\n").into_bytes();
        let res = app.upload("bad", "bad.jsonl", body).await.expect("request");
        assert_eq!(res.status(), 400, "{bad_line}");
        let err: ApiErrorBody = res.json().await.expect("error body");
        assert_eq!(err.code, ErrorCode::InvalidExamSet);
        assert_eq!(err.details.len(), 1, "{err:?}");
        assert_eq!(
            (
                err.details[0].file.as_str(),
                err.details[0].line,
                err.details[0].field.as_str()
            ),
            ("bad.jsonl", *line, *field),
            "{err:?}"
        );
    }
    let sets: Vec<ExamSetSummary> = app
        .client
        .get(app.url("/api/exam-sets"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    assert!(
        sets.is_empty(),
        "nothing of a refused file is written: {sets:?}"
    );
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_exam_file_is_refused_with_file_line_and_field_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    bad_exam_files_are_refused_whole(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_exam_file_is_refused_with_file_line_and_field_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    bad_exam_files_are_refused_whole(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_of_a_model_missing_from_the_store_fails_with_a_reason() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), store.path()))
        .await
        .expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");

    let run = app.create_run(exam.id, 2).await.expect("create run");
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(30))
        .await
        .expect("run ends");

    assert_eq!(detail.run.status, RunStatus::Failed);
    let error = detail.run.error.unwrap_or_default();
    assert!(error.contains("tiny-llama.gguf"), "{error}");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_registry_lists_the_store_with_what_each_entry_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = fixture_model_store().expect("store");
    let adapter = store.path().join("tiny-lora");
    std::fs::create_dir(&adapter).expect("mkdir");
    std::fs::write(
        adapter.join("adapter_config.json"),
        format!(r#"{{"r": 4, "lora_alpha": 8, "base_model_name_or_path": "{FIXTURE_MODEL}"}}"#),
    )
    .expect("write");
    std::fs::write(store.path().join("README.txt"), "not a model").expect("write");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), store.path()))
        .await
        .expect("server starts");

    let res = app
        .client
        .get(app.url("/api/models"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let entries: Vec<StoreEntry> = res.json().await.expect("entries");
    let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names, ["README.txt", FIXTURE_MODEL, "tiny-lora"]);
    let model = &entries[1];
    assert_eq!(model.format, "gguf");
    assert_eq!(model.architecture.as_deref(), Some("llama"));
    assert!(model.runnable && model.problem.is_none(), "{model:?}");
    let lora = &entries[2];
    assert_eq!(lora.format, "peft-lora");
    assert_eq!(lora.base_entry.as_deref(), Some(FIXTURE_MODEL));
    assert!(
        !lora.runnable,
        "an adapter without weights cannot run: {lora:?}"
    );
    assert!(entries[0].problem.is_some());
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_runs_and_bad_requests_get_json_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), dir.path()))
        .await
        .expect("server starts");
    let cases: &[(&str, u16, ErrorCode)] = &[
        ("/api/runs/999", 404, ErrorCode::NotFound),
        ("/api/runs/abc", 400, ErrorCode::BadRequest),
        ("/api/nothing-here", 404, ErrorCode::NotFound),
    ];
    for (path, status, code) in cases {
        let res = app.client.get(app.url(path)).send().await.expect("request");
        assert_eq!(res.status().as_u16(), *status, "{path}");
        let body: ApiErrorBody = res.json().await.expect("json error body");
        assert_eq!(body.code, *code, "{path}");
    }
    let res = app
        .client
        .post(app.url("/api/runs"))
        .json(&serde_json::json!({"exam_set_id": 1, "model": "../etc/passwd", "prompt_format": "chatml_ja_v1"}))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_is_served_and_requests_carry_an_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), dir.path()))
        .await
        .expect("server starts");
    // Served to anyone, and the same document as the committed one.
    let res = app
        .anonymous
        .get(app.url("/api/openapi.json"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    let served: serde_json::Value = res.json().await.expect("json");
    let committed: serde_json::Value =
        serde_json::from_str(include_str!("../../docs/openapi.json"))
            .expect("docs/openapi.json is JSON");
    assert_eq!(served, committed);
    assert!(served["paths"]["/api/tunings/{id}/retry"]["post"].is_object());
    // Every answer names its request; a proxy's sane id is kept, a wild one replaced.
    let res = app
        .client
        .get(app.url("/api/exam-sets"))
        .send()
        .await
        .expect("request");
    let id = res.headers()["x-request-id"]
        .to_str()
        .expect("ascii")
        .to_owned();
    assert!(!id.is_empty());
    let res = app
        .client
        .get(app.url("/api/exam-sets"))
        .send()
        .await
        .expect("request");
    assert_ne!(res.headers()["x-request-id"].to_str().expect("ascii"), id);
    let res = app
        .client
        .get(app.url("/api/exam-sets"))
        .header("X-Request-Id", "proxy-7f3a.1")
        .send()
        .await
        .expect("request");
    assert_eq!(res.headers()["x-request-id"], "proxy-7f3a.1");
    let res = app
        .client
        .get(app.url("/api/exam-sets"))
        .header("X-Request-Id", "a b\"c")
        .send()
        .await
        .expect("request");
    assert_ne!(res.headers()["x-request-id"], "a b\"c");
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploading_the_same_content_twice_is_recognised() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), dir.path()))
        .await
        .expect("server starts");
    let first = app.upload_mini_exam().await.expect("upload");
    let second = app.upload_mini_exam().await.expect("upload");
    assert_eq!(first.id, second.id);
    assert_eq!(first.content_hash, second.content_hash);
    assert_eq!((first.version, second.version), (1, 1));
    // Changed content under the same name is the next version, kept beside the first.
    let mut changed = std::fs::read_to_string(kokushi_tests::mini_exam_path()).expect("fixture");
    changed = changed.replacen("成人の安静時", "成人の安静時（改訂）", 1);
    let res = app
        .upload("mini", "mini-exam.jsonl", changed.into_bytes())
        .await
        .expect("upload");
    assert_eq!(res.status(), 201);
    let third: kokushi_shared::api::ImportReport = res.json().await.expect("report");
    assert_eq!(third.exam_set.version, 2);
    assert_ne!(third.exam_set.content_hash, first.content_hash);
    let listed: Vec<ExamSetSummary> = app
        .client
        .get(app.url("/api/exam-sets"))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("json");
    let versions: Vec<(u32, i64)> = listed
        .iter()
        .filter(|e| e.name == "mini")
        .map(|e| (e.version, e.id))
        .collect();
    assert_eq!(versions, [(2, third.exam_set.id), (1, first.id)]);
    assert!(listed.iter().all(|e| e.created_at.ends_with('Z')));
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_and_jmmlu_files_upload_under_a_namespace() {
    let dir = tempfile::tempdir().expect("tempdir");
    let app = TestApp::spawn(Settings::embedded(sqlite_url(dir.path()), dir.path()))
        .await
        .expect("server starts");
    let post = |query: Vec<(&'static str, &'static str)>, body: &'static str| {
        app.client
            .post(app.url("/api/exam-sets"))
            .query(&query)
            .body(body)
            .send()
    };
    let csv = "problem_id,problem_text,a,b,c,answer,section\n\
               7A1,\"どれか。\",甲,乙,丙,\"a,c\",general\n\
               7B1,どれか。,甲,乙,,b,required\n";
    let res = post(
        vec![
            ("name", "mine"),
            ("file", "mine.csv"),
            ("namespace", "mine"),
        ],
        csv,
    )
    .await
    .expect("request");
    assert_eq!(res.status(), 201);
    let report: kokushi_shared::api::ImportReport = res.json().await.expect("json");
    assert_eq!(report.exam_set.question_count, 2);

    let jmmlu = "\u{feff}問題一,甲,乙,丙,丁,B\n問題二, 甲 ,乙,丙,丁,D \n";
    let res = post(
        vec![
            ("name", "jmmlu anatomy"),
            ("file", "anatomy.csv"),
            ("namespace", "jmmlu"),
            ("format", "jmmlu"),
        ],
        jmmlu,
    )
    .await
    .expect("request");
    assert_eq!(res.status(), 201);

    // A namespace outside the documented characters, and an unknown format, are refused.
    for query in [
        vec![("name", "x"), ("file", "x.csv"), ("namespace", "a/b")],
        vec![("name", "x"), ("file", "x.csv"), ("format", "excel")],
    ] {
        let res = post(query, csv).await.expect("request");
        assert_eq!(res.status(), 400);
        let err: ApiErrorBody = res.json().await.expect("error body");
        assert_eq!(err.code, ErrorCode::BadRequest, "{err:?}");
    }
    // Without the JMMLU format, a JMMLU file is refused with the hint to use it.
    let res = post(vec![("name", "y"), ("file", "anatomy.csv")], jmmlu)
        .await
        .expect("request");
    assert_eq!(res.status(), 400);
    let err: ApiErrorBody = res.json().await.expect("error body");
    assert_eq!(err.code, ErrorCode::InvalidExamSet);
    assert!(err.details[0].message.contains("JMMLU"), "{err:?}");
    app.stop().await.expect("clean stop");
}

/// The tally kept beside each run counts an answer once, however often its event arrives, and
/// agrees with the answers stored — on both databases.
async fn the_stored_tally_counts_each_answer_once(database_url: String) {
    use kokushi_backend::db::Db;
    use kokushi_backend::db::runs::NewRun;
    use kokushi_shared::job::AnswerRecord;
    let db = Db::connect(&database_url).await.expect("db");
    let questions = kokushi_backend::import::read_exam_set(&[kokushi_tests::mini_exam_path()])
        .expect("fixture exam");
    let (set, _) = db
        .insert_exam_set("mini", &questions)
        .await
        .expect("insert");
    let job = db
        .create_run(&NewRun {
            exam_set_id: set.id,
            model: "m.gguf".to_owned(),
            adapter: None,
            settings: kokushi_shared::job::EvalSettings::new(
                kokushi_shared::prompt::PromptFormat::ChatmlJa,
                8,
            ),
            shot_pool_exam_set_id: None,
            limit: Some(3),
            priority: Default::default(),
            created_by: None,
            project_id: db.default_project().await.expect("default project"),
        })
        .await
        .expect("create")
        .expect("exam set exists");
    let answer = |problem_id: &str, text: &str| AnswerRecord {
        problem_id: problem_id.to_owned(),
        extracted: kokushi_shared::extract::extract(text, &vec!["x".to_owned(); 5]),
        raw_output: text.to_owned(),
        rules_version: "letters-v1".to_owned(),
        prompt_tokens: 1,
        generated_tokens: 1,
        latency_ms: 1,
        choice_logprobs: None,
        choice_logprob_means: None,
        generated: false,
        error: None,
    };
    // 901A1's answer is c, 901A2's is b.
    for record in [
        answer("901A1", "c"),
        answer("901A1", "c"),
        answer("901A2", "???"),
        answer("901A2", "???"),
        answer("901A1", "a"),
    ] {
        db.record_answer(job.run_id, &record).await.expect("record");
    }
    let row = db
        .leaderboard(kokushi_backend::db::runs::Board::All, None)
        .await
        .expect("leaderboard")
        .into_iter()
        .find(|r| r.id == job.run_id)
        .expect("row");
    let detail = db
        .run_detail(job.run_id)
        .await
        .expect("detail")
        .expect("run");
    assert_eq!(
        (
            row.tally.answered,
            row.tally.correct,
            row.tally.parse_failures
        ),
        (2, 1, 1)
    );
    assert_eq!((row.tally.points, row.tally.points_possible), (1, 2));
    assert_eq!(
        row.tally, detail.run.tally,
        "stored tally == tally of the rows"
    );
    db.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_tally_counts_each_answer_once_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    the_stored_tally_counts_each_answer_once(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stored_tally_counts_each_answer_once_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    the_stored_tally_counts_each_answer_once(url).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_progress_streams_as_server_sent_events_until_the_run_ends() {
    let (settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    // Twenty questions with long answers: the run takes a few seconds.
    let set: kokushi_shared::api::ImportReport = app
        .upload("sse", "sse.jsonl", kokushi_tests::long_exam("905A", 20))
        .await
        .expect("upload")
        .json()
        .await
        .expect("report");
    let run: kokushi_shared::api::RunSummary = app
        .client
        .post(app.url("/api/runs"))
        .json(&serde_json::json!({
            "exam_set_id": set.exam_set.id, "model": kokushi_tests::FIXTURE_MODEL,
            "prompt_format": "chatml_ja_v1", "limit": 20, "max_new_tokens": 256,
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("run");

    let mut res = app
        .client
        .get(app.url(&format!("/api/runs/{}/events", run.id)))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    assert_eq!(
        res.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/event-stream")
    );
    let mut text = String::new();
    let read = tokio::time::timeout(Duration::from_secs(180), async {
        while let Some(chunk) = res.chunk().await.expect("chunk") {
            text.push_str(&String::from_utf8_lossy(&chunk));
        }
    })
    .await;
    assert!(read.is_ok(), "the stream ends with the run: {text}");
    let events: Vec<kokushi_shared::api::RunSummary> = text
        .split("\n\n")
        .filter_map(|block| block.strip_prefix("event: run\ndata: "))
        .map(|data| serde_json::from_str(data).expect("a run summary"))
        .collect();
    assert!(events.len() >= 2, "progress, then the end: {text}");
    assert!(
        events
            .windows(2)
            .all(|w| w[0].tally.answered <= w[1].tally.answered),
        "answers only go up"
    );
    let last = events.last().expect("an event");
    assert_eq!(last.status, RunStatus::Succeeded);
    assert_eq!(last.tally.answered, 20);
    let missing = app
        .client
        .get(app.url("/api/runs/99999/events"))
        .send()
        .await
        .expect("request");
    assert_eq!(missing.status(), 404);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_runs_compare_question_by_question_and_a_question_shows_its_metrics() {
    let (settings, folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let mut runs = Vec::new();
    for (format, limit) in [("chatml_ja_v1", 4), ("plain_ja_v1", 4), ("chatml_ja_v1", 2)] {
        let res = app
            .client
            .post(app.url("/api/runs"))
            .json(&serde_json::json!({
                "exam_set_id": exam.id, "model": kokushi_tests::FIXTURE_MODEL,
                "prompt_format": format, "limit": limit, "max_new_tokens": 6,
            }))
            .send()
            .await
            .expect("request");
        assert_eq!(res.status(), 201);
        let run: kokushi_shared::api::RunSummary = res.json().await.expect("run");
        app.wait_for_run(run.id, std::time::Duration::from_secs(120))
            .await
            .expect("finishes");
        runs.push(run.id);
    }
    let compare = |a: i64, b: i64| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/api/compare?first={a}&second={b}")))
                .send()
                .await
                .expect("request")
        }
    };

    // Two runs of the same four questions.
    let res = compare(runs[0], runs[1]).await;
    assert_eq!(res.status(), 200);
    let c: kokushi_shared::api::RunComparison = res.json().await.expect("comparison");
    let p = &c.comparison;
    assert_eq!(p.both_correct + p.only_first + p.only_second + p.neither, 4);
    assert!((0.0..=1.0).contains(&p.mcnemar_p));
    assert_eq!((c.first.id, c.second.id), (runs[0], runs[1]));
    let verdicts_differ = c
        .differing
        .iter()
        .filter(|d| d.first_correct != d.second_correct)
        .count() as u64;
    assert_eq!(verdicts_differ, p.only_first + p.only_second);
    assert!(
        c.differing
            .iter()
            .all(|d| d.first != d.second || d.first_correct != d.second_correct)
    );
    // A run against itself differs nowhere.
    let same: kokushi_shared::api::RunComparison =
        compare(runs[0], runs[0]).await.json().await.expect("json");
    assert!(same.differing.is_empty());
    assert_eq!(
        (same.comparison.only_first, same.comparison.only_second),
        (0, 0)
    );
    assert!((same.comparison.mcnemar_p - 1.0).abs() < 1e-12);
    // Runs of different questions, a missing run and a bad id are refused with the reason.
    let res = compare(runs[0], runs[2]).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.expect("text");
    assert!(text.contains("do not ask the same questions"), "{text}");
    assert_eq!(compare(runs[0], 999).await.status(), 404);
    let res = app
        .client
        .get(app.url("/api/compare?first=1&second=x"))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 400);

    // One question of a run: the question, the answer, its metrics and its neighbours.
    let detail = app.run_detail(runs[0]).await.expect("run");
    let ids: Vec<&str> = detail
        .questions
        .iter()
        .map(|q| q.problem_id.as_str())
        .collect();
    let view = |id: &str| {
        let app = &app;
        let url = app.url(&format!("/api/runs/{}/questions/{id}", runs[0]));
        async move { app.client.get(url).send().await.expect("request") }
    };
    let res = view(ids[1]).await;
    assert_eq!(res.status(), 200);
    let q: kokushi_shared::api::QuestionView = res.json().await.expect("view");
    assert_eq!(q.question.problem_id, ids[1]);
    assert_eq!((q.position, q.total), (2, 4));
    assert_eq!(q.previous.as_deref(), Some(ids[0]));
    assert_eq!(q.next.as_deref(), Some(ids[2]));
    let answer = q.answer.expect("answered");
    let score = q.score.expect("scored");
    assert_eq!(score.gestalt.len(), q.question.choices.len());
    assert_eq!(answer.correct, score.letter_correct);
    assert!(q.rules_version.is_some());
    assert!(!q.credit.is_empty());
    let first: kokushi_shared::api::QuestionView = view(ids[0]).await.json().await.expect("view");
    assert_eq!(first.previous, None);
    assert_eq!(view("999Z99").await.status(), 404);

    // The lineage: content hashes of what the score depends on.
    let lineage = |id: i64| {
        let app = &app;
        let url = app.url(&format!("/api/runs/{id}/lineage"));
        async move { app.client.get(url).send().await.expect("request") }
    };
    let res = lineage(runs[0]).await;
    assert_eq!(res.status(), 200);
    let l: kokushi_shared::api::RunLineage = res.json().await.expect("lineage");
    assert_eq!(l.exam_set.content_hash, exam.content_hash);
    assert_eq!(l.prompt_format, "chatml_ja_v1");
    let other: kokushi_shared::api::RunLineage =
        lineage(runs[1]).await.json().await.expect("lineage");
    assert_ne!(l.prompt_template_sha256, other.prompt_template_sha256);
    assert_eq!(l.prompt_template_sha256.len(), 64);
    let model_file = folders.store().join(kokushi_tests::FIXTURE_MODEL);
    assert_eq!(
        l.model_sha256.as_deref(),
        Some(
            kokushi_backend::handlers::lineage::sha256_of_entry(&model_file)
                .expect("hash")
                .as_str()
        )
    );
    assert_eq!(l.model_sha256, other.model_sha256, "the same file");
    assert_eq!((l.adapter.as_deref(), l.tuning.as_ref()), (None, None));
    assert_eq!(l.max_new_tokens, 6);
    assert_eq!(
        l.rules_version, q.rules_version,
        "the rules the run page names"
    );
    assert!(l.model_info.is_some() && l.worker.is_some());
    assert_eq!(lineage(999).await.status(), 404);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_filtered_leaderboard_scores_every_run_again_on_the_questions_it_keeps() {
    use kokushi_shared::api::RunSummary;
    let (settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    // Every text-only question: 901A1, A2, B1, B2 and C1.
    let run = app.create_run(exam.id, 10).await.expect("run");
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("finishes");
    let board = |query: &'static str| {
        let app = &app;
        async move {
            app.client
                .get(app.url(&format!("/api/leaderboard{query}")))
                .send()
                .await
                .expect("request")
        }
    };
    let row = |query: &'static str| async move {
        let res = board(query).await;
        assert_eq!(res.status(), 200, "{query}");
        let rows: Vec<RunSummary> = res.json().await.expect("rows");
        assert_eq!(rows.len(), 1, "{query}");
        rows.into_iter().next().expect("one row")
    };

    let whole = row("").await;
    assert_eq!(whole.total, 5);
    let metrics = whole
        .metrics
        .expect("a succeeded run keeps its text metrics");
    assert_eq!(metrics.questions, 5);
    assert!(metrics.correct_strict <= whole.tally.correct);
    // Each block scored alone, from the question verdicts the run page shows.
    let mut sum = kokushi_shared::metric::Tally::default();
    for (query, block) in [
        ("?blocks=A", "901A"),
        ("?blocks=b", "901B"),
        ("?blocks=C", "901C"),
    ] {
        let part = row(query).await;
        let asked: Vec<_> = detail
            .questions
            .iter()
            .filter(|q| q.problem_id.starts_with(block))
            .collect();
        let right = asked
            .iter()
            .filter(|q| q.answer.as_ref().is_some_and(|a| a.correct))
            .count();
        assert_eq!(part.total as usize, asked.len(), "{query}");
        assert_eq!(part.tally.answered as usize, asked.len(), "{query}");
        assert_eq!(part.tally.correct as usize, right, "{query}");
        assert!(part.years.is_empty(), "no pass/fail for a block: {query}");
        sum.answered += part.tally.answered;
        sum.correct += part.tally.correct;
        sum.points += part.tally.points;
        sum.points_possible += part.tally.points_possible;
        sum.parse_failures += part.tally.parse_failures;
    }
    assert_eq!(sum, whole.tally, "the blocks add up to the whole");
    // The CSV download gives the rows of the same filter.
    let csv = app
        .client
        .get(app.url("/api/leaderboard/export?format=csv&blocks=A"))
        .send()
        .await
        .expect("request")
        .text()
        .await
        .expect("csv");
    let header: Vec<&str> = csv.lines().next().unwrap_or_default().split(',').collect();
    let cells: Vec<&str> = csv.lines().nth(1).unwrap_or_default().split(',').collect();
    let column = |name: &str| {
        header
            .iter()
            .position(|h| *h == name)
            .and_then(|i| cells.get(i).copied())
            .unwrap_or_else(|| panic!("{name} in {csv}"))
    };
    assert_eq!(
        (column("questions"), column("answered")),
        ("2", "2"),
        "{csv}"
    );
    assert_eq!(column("scoring"), "generation");
    // Filters combine; a filter nothing matches leaves the run with no questions.
    let b_text = row("?blocks=B&section=&text_only=true").await;
    assert_eq!(b_text.total, 2);
    // A value no exam set holds is refused, naming what they hold: each new filter scores every
    // run again, so a made-up one must not cost that.
    let none = board("?years=2031").await;
    assert_eq!(none.status(), 400);
    let body: serde_json::Value = none.json().await.expect("error body");
    let message = body["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("years: no exam set holds 2031"),
        "{message}"
    );
    // The run page reads the questions a page at a time: each filter keeps, in order, what it
    // keeps of the whole run; the total is in `X-Total-Count`.
    let page = |query: String| {
        let app = &app;
        async move {
            let res = app
                .client
                .get(app.url(&query))
                .send()
                .await
                .expect("request");
            let status = res.status();
            let total = res
                .headers()
                .get("x-total-count")
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<usize>().ok());
            let text = res.text().await.expect("body");
            (status, total, text)
        }
    };
    use kokushi_shared::api::{QuestionFilter, QuestionResult};
    for f in QuestionFilter::ALL {
        let (status, total, text) =
            page(format!("/api/runs/{}/questions?show={}", run.id, f.id())).await;
        assert_eq!(status, 200, "{text}");
        let rows: Vec<QuestionResult> = serde_json::from_str(&text).expect("rows");
        let expected: Vec<QuestionResult> = detail
            .questions
            .iter()
            .filter(|q| f.keeps(q))
            .cloned()
            .collect();
        assert_eq!(rows, expected, "{}", f.id());
        assert_eq!(total, Some(expected.len()), "{}", f.id());
    }
    let (_, total, text) = page(format!("/api/runs/{}/questions?limit=2&offset=1", run.id)).await;
    let rows: Vec<QuestionResult> = serde_json::from_str(&text).expect("rows");
    assert_eq!(rows, detail.questions[1..3], "the second and third");
    assert_eq!(total, Some(detail.questions.len()));
    let summary: kokushi_shared::api::RunDetail = app
        .get_json(&format!("/api/runs/{}?questions=false", run.id))
        .await
        .expect("summary");
    assert!(summary.questions.is_empty());
    assert_eq!(
        (summary.run.tally, summary.credit.as_str()),
        (detail.run.tally, detail.credit.as_str())
    );
    for (query, named) in [
        ("show=everything", "show"),
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
    ] {
        let (status, _, text) = page(format!("/api/runs/{}/questions?{query}", run.id)).await;
        assert_eq!(status, 400, "{query}: {text}");
        assert!(text.contains(named), "{query}: {text}");
    }
    let (status, _, _) = page("/api/runs/999999/questions".to_owned()).await;
    assert_eq!(status, 404);
    // Specialties, as an exam set names them: each question carries its own, and the
    // leaderboard can keep one.
    let lines = [
        ("950A1", "循環器"),
        ("950A2", "腎臓"),
        ("950A3", "循環器"),
    ]
    .map(|(id, specialty)| {
        format!(
            "{{\"problem_id\": \"{id}\", \"problem_text\": \"どれか。\", \"choices\": [\"甲\", \"乙\", \"丙\"], \"answer\": [\"a\"], \"specialty\": \"{specialty}\"}}\n"
        )
    })
    .concat();
    let set = app
        .upload_exam("specialties", "specialties.jsonl", lines.into_bytes())
        .await
        .expect("upload");
    let by_specialty = app.create_run(set.id, 10).await.expect("run");
    let detail = app
        .wait_for_run(by_specialty.id, Duration::from_secs(120))
        .await
        .expect("finishes");
    let named: Vec<Option<&str>> = detail
        .questions
        .iter()
        .map(|q| q.specialty.as_deref())
        .collect();
    assert_eq!(named, [Some("循環器"), Some("腎臓"), Some("循環器")]);
    assert_eq!(detail.specialties, ["循環器", "腎臓"]);
    let (_, total, text) = page(format!(
        "/api/runs/{}/questions?specialty=%E5%BE%AA%E7%92%B0%E5%99%A8",
        by_specialty.id
    ))
    .await;
    let rows: Vec<QuestionResult> = serde_json::from_str(&text).expect("rows");
    let ids: Vec<&str> = rows.iter().map(|q| q.problem_id.as_str()).collect();
    assert_eq!((ids, total), (vec!["950A1", "950A3"], Some(2)));
    let res = board("?specialty=%E5%BE%AA%E7%92%B0%E5%99%A8").await;
    let rows: Vec<RunSummary> = res.json().await.expect("rows");
    let totals: Vec<(i64, u32)> = rows.iter().map(|r| (r.id, r.total)).collect();
    assert_eq!(totals, [(by_specialty.id, 2), (run.id, 0)], "newest first");
    // A value that cannot be read is refused, naming the parameter and the value.
    for (query, named) in [
        ("?blocks=AB", "blocks"),
        ("?years=20x2", "years"),
        ("?section=clinical", "section"),
    ] {
        let res = board(query).await;
        assert_eq!(res.status(), 400, "{query}");
        let text = res.text().await.expect("text");
        assert!(text.contains(named), "{query}: {text}");
    }
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_log_likelihood_run_keeps_each_choices_log_probability() {
    use kokushi_shared::api::{QuestionView, RunLineage, RunSummary};
    use kokushi_shared::job::Scoring;
    let (settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let create = |scoring: &str| {
        let app = &app;
        let body = serde_json::json!({
            "exam_set_id": exam.id, "model": FIXTURE_MODEL, "prompt_format": "chatml_ja_v1",
            "scoring": scoring, "max_new_tokens": 6,
        });
        async move {
            app.client
                .post(app.url("/api/runs"))
                .json(&body)
                .send()
                .await
                .expect("request")
        }
    };
    let refused = create("guess").await;
    assert_eq!(refused.status(), 400);
    let text = refused.text().await.expect("text");
    assert!(text.contains("guess"), "{text}");
    let res = create("loglik").await;
    assert_eq!(res.status(), 201);
    let run: RunSummary = res.json().await.expect("run");
    assert_eq!(run.scoring, Scoring::Loglik);
    let detail = app
        .wait_for_run(run.id, Duration::from_secs(120))
        .await
        .expect("finishes");
    assert_eq!(
        detail.run.status,
        RunStatus::Succeeded,
        "{:?}",
        detail.run.error
    );
    for q in &detail.questions {
        let answer = q.answer.as_ref().expect("answered");
        if q.choices.is_empty() {
            // A number to write is generated in either mode.
            assert!(answer.choice_logprobs.is_none(), "{}", q.problem_id);
            continue;
        }
        let logprobs = answer.choice_logprobs.as_ref().expect("log-probabilities");
        assert_eq!(logprobs.len(), q.choices.len(), "{}", q.problem_id);
        assert!(logprobs.iter().all(|lp| *lp <= 0.0), "{logprobs:?}");
        // The answer is the most probable letters, as many as the question asks for.
        let asked = kokushi_shared::exam::asked_count(&q.text);
        let mut order: Vec<usize> = (0..logprobs.len()).collect();
        order.sort_by(|&a, &b| logprobs[b].total_cmp(&logprobs[a]));
        let mut top: Vec<char> = order[..asked]
            .iter()
            .map(|&i| kokushi_shared::exam::choice_letter(i))
            .collect();
        top.sort_unstable();
        assert_eq!(
            answer.raw_output,
            kokushi_shared::exam::join_letters(&top),
            "{}",
            q.problem_id
        );
    }
    // The question view and the lineage say so too.
    let view: QuestionView = app
        .client
        .get(app.url(&format!("/api/runs/{}/questions/901B1", run.id)))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("question");
    let answer = view.answer.expect("answered");
    assert_eq!(answer.choice_logprobs.map(|l| l.len()), Some(5));
    assert_eq!(
        answer.raw_output.len(),
        3,
        "two letters asked: {}",
        answer.raw_output
    );
    let lineage: RunLineage = app
        .client
        .get(app.url(&format!("/api/runs/{}/lineage", run.id)))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("lineage");
    assert!(
        lineage.decoding.starts_with("log-likelihood"),
        "{}",
        lineage.decoding
    );
    // Every setting the answers depend on, as the run was created.
    assert_eq!(lineage.settings.scoring, Scoring::Loglik);
    assert_eq!(lineage.settings.shots, 0);
    assert_eq!(lineage.prompt_id, "chatml_ja_v1");
    assert_eq!(lineage.shot_pool, None);
    let board = app.leaderboard().await.expect("leaderboard");
    assert_eq!(board[0].scoring, Scoring::Loglik);
    assert_eq!(board[0].shots, 0);
    app.stop().await.expect("clean stop");
}
