//! The 119th exam (2025) from IgakuQA119's public files (`KOKUSHI_DATA/igakuqa119`), end to
//! end through `kokushi`: the files import natively; the five records they hold that Kokushi
//! refuses are named, two of them repaired and three left out on request; and the set is
//! scored under the built-in rule pack — its required section, its points, its ruling on
//! 119E28 (a or c) and its cut-off (221 of 300). In the browser, the upload's preview turns the
//! refused records into an importable set with the repairs the user accepts.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kokushi_tests::service;
use serde_json::Value;

fn kokushi(args: &[&str]) -> Option<Output> {
    let bin = PathBuf::from(service("KOKUSHI_BIN")?);
    Some(
        Command::new(bin)
            .args(args)
            .env_remove("RUST_BACKTRACE")
            .output()
            .expect("kokushi runs"),
    )
}

fn data() -> Option<PathBuf> {
    service("KOKUSHI_DATA").map(|d| PathBuf::from(d).join("igakuqa119"))
}

const REPAIR: &str = "119E45:choices_in_stem,119E48:choices_in_stem";
const EXCLUDE: [&str; 3] = [
    "119C18:the stem was not extracted",
    "119A22:choices c and d run together",
    "119C19:choices b and c run together",
];

/// The repair and exclusion flags.
fn mends() -> Vec<String> {
    let mut flags = vec!["--repair".to_owned(), REPAIR.to_owned()];
    for e in EXCLUDE {
        flags.push("--exclude".to_owned());
        flags.push(e.to_owned());
    }
    flags
}

/// The published answers, `id → answer` (`ac` run together).
fn answers(data: &Path) -> Vec<(String, String)> {
    std::fs::read_to_string(data.join("correct_answers.csv"))
        .unwrap()
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(','))
        .map(|(id, a)| (id.to_owned(), a.trim().to_owned()))
        .collect()
}

fn score(data: &Path, predictions: &[(String, String)]) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("p.jsonl");
    let body: String = predictions
        .iter()
        .map(|(id, p)| serde_json::json!({"problem_id": id, "prediction": p}).to_string() + "\n")
        .collect();
    std::fs::write(&path, body).unwrap();
    let mut args = vec![
        "score".to_owned(),
        "--exam-set".to_owned(),
        data.display().to_string(),
        "--predictions".to_owned(),
        path.display().to_string(),
        "--format".to_owned(),
        "json".to_owned(),
    ];
    args.extend(mends());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = kokushi(&args).unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn the_published_files_are_refused_naming_each_record_and_the_repairs_proposed() {
    let Some(data) = data() else { return };
    let dir = tempfile::tempdir().unwrap();
    let db = format!("sqlite://{}", dir.path().join("k.sqlite").display());
    let path = data.display().to_string();
    let refused = kokushi(&["import", "--database-url", &db, "--name", "119", &path]).unwrap();
    assert!(!refused.status.success());
    let said = String::from_utf8_lossy(&refused.stderr);
    for expected in [
        "119C_json.json:206: field `problem_text`",
        "119E_json.json:531: field `answer`",
        "119E_json.json:561: field `answer`",
        "choice 3 of 119A22 should start with its letter \"c. \"",
        "choice 3 of 119C19 should start with its letter \"c. \"",
        "--repair 119E45:choices_in_stem",
        "--repair 119E48:choices_in_stem",
    ] {
        assert!(said.contains(expected), "{expected:?} not in {said}");
    }

    let preview = kokushi(&[
        "import",
        "--database-url",
        &db,
        "--name",
        "119",
        &path,
        "--preview",
    ])
    .unwrap();
    assert!(preview.status.success());
    let shown = String::from_utf8_lossy(&preview.stdout);
    assert!(
        shown.starts_with("395 question(s) would be imported; 7 problem(s); 2 repair(s) proposed"),
        "{shown}"
    );
    // Neither a refused import nor a preview touched the database.
    assert!(!dir.path().join("k.sqlite").exists());

    let mut args = vec!["import", "--database-url", &db, "--name", "119", &path];
    let mends = mends();
    args.extend(mends.iter().map(String::as_str));
    let stored = kokushi(&args).unwrap();
    assert!(
        stored.status.success(),
        "{}",
        String::from_utf8_lossy(&stored.stderr)
    );
    let said = String::from_utf8_lossy(&stored.stdout);
    assert!(said.contains("397 questions"), "{said}");
    let log = String::from_utf8_lossy(&stored.stderr);
    assert!(
        log.contains("repaired 119E45") && log.contains("left out 119C18"),
        "{log}"
    );
}

#[test]
fn the_119th_exam_is_scored_under_its_rule_pack() {
    let Some(data) = data() else { return };
    // The published answers, but 119E28 answered "c" alone: right by the ruling (a or c).
    let gold: Vec<(String, String)> = answers(&data)
        .into_iter()
        .map(|(id, a)| {
            let a = if id == "119E28" {
                "c".to_owned()
            } else if a.chars().any(|c| c.is_ascii_digit()) {
                a
            } else {
                a.chars().map(String::from).collect::<Vec<_>>().join(",")
            };
            (id, a)
        })
        .collect();
    let report = score(&data, &gold);
    let year = &report["years"][0];
    assert_eq!(year["exam"], "119");
    assert_eq!(year["year"], 2025);
    // Required: blocks B and E, 1 point for questions 1–25 and 3 for 26–50: 200 points.
    assert_eq!(year["required_max"], 200);
    assert_eq!(year["required_points"], 200);
    // General: 300 points less the three records left out (1 point each).
    assert_eq!(year["general_max"], 297);
    assert_eq!(year["general_points"], 297);
    assert_eq!(year["pass"], true, "{year}");
    assert_eq!(
        year["provisional"], false,
        "no prohibited choices: the limit is not applied"
    );
    assert_eq!(year["criteria"]["general_min"], 221);
    assert_eq!(year["criteria"]["pack_version"], 1);
    let notes = year["notes"].to_string();
    assert!(
        notes.contains("stands whatever the 3 missing points are"),
        "{notes}"
    );
    let ruled = report["rules_applied"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["problem_id"] == "119E28")
        .expect("the ruling on 119E28 applied");
    assert_eq!(ruled["provenance"]["kind"], "annotated");

    // Answering "a" everywhere fails, whatever the three missing points would have been.
    let all_a: Vec<(String, String)> = answers(&data)
        .into_iter()
        .map(|(id, _)| (id, "a".to_owned()))
        .collect();
    let report = score(&data, &all_a);
    let year = &report["years"][0];
    assert_eq!(year["pass"], false, "{year}");
    assert_eq!(year["verdict"]["required_pass"], false);
}

/// Every file of IgakuQA119 as one multipart form of `file` fields.
fn multipart_of(data: &Path) -> (String, Vec<u8>) {
    let boundary = "kokushi-119-boundary";
    let mut out = Vec::new();
    for file in every_file(data) {
        let name = file.file_name().unwrap().to_string_lossy().into_owned();
        out.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; \
                 filename=\"{name}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
            )
            .as_bytes(),
        );
        out.extend_from_slice(&std::fs::read(&file).unwrap());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), out)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_previews_the_refused_records_and_stores_them_mended() {
    let Some(data) = data() else { return };
    let store = kokushi_tests::fixture_model_store().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings =
        kokushi_backend::Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    let app = kokushi_tests::TestApp::spawn(settings).await.unwrap();
    let (content_type, body) = multipart_of(&data);
    let post = |query: Vec<(&'static str, String)>| {
        app.client
            .post(app.url("/api/exam-sets"))
            .query(&query)
            .header("Content-Type", content_type.clone())
            .body(body.clone())
            .send()
    };
    let name = || ("name", "IgakuQA119".to_owned());

    // As published: refused, every record named.
    let refused = post(vec![name()]).await.unwrap();
    assert_eq!(refused.status(), reqwest::StatusCode::BAD_REQUEST);
    let said = refused.text().await.unwrap();
    assert!(
        said.contains("119C_json.json") && said.contains("problem_text"),
        "{said}"
    );

    // The preview: what would be stored, the repairs proposed; nothing stored.
    let preview: kokushi_shared::api::UploadPreview =
        post(vec![name(), ("preview", "true".into())])
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(preview.questions, 395);
    assert_eq!(preview.errors.len(), 7);
    let proposed: Vec<String> = preview
        .proposed
        .iter()
        .map(|r| format!("{}:{}", r.problem_id, r.kind.id()))
        .collect();
    assert_eq!(
        proposed,
        vec!["119E45:choices_in_stem", "119E48:choices_in_stem"]
    );
    let listed: Vec<kokushi_shared::api::ExamSetSummary> =
        app.get_json("/api/exam-sets").await.unwrap();
    assert!(
        listed.is_empty(),
        "neither a refusal nor a preview stores anything"
    );

    // The repairs accepted and the rest left out: stored, with what was done kept beside it.
    let mut query = vec![name(), ("repair", REPAIR.to_owned())];
    query.extend(EXCLUDE.map(|e| ("exclude", e.to_owned())));
    let stored = post(query).await.unwrap();
    assert_eq!(
        stored.status(),
        reqwest::StatusCode::CREATED,
        "{}",
        stored.text().await.unwrap_or_default()
    );
    let report: kokushi_shared::api::ImportReport = stored.json().await.unwrap();
    assert_eq!(report.exam_set.question_count, 397);
    let notes = &report.exam_set.import_notes;
    assert_eq!(notes.repairs.len(), 2);
    let left_out: Vec<&str> = notes
        .excluded
        .iter()
        .map(|e| e.problem_id.as_str())
        .collect();
    assert_eq!(left_out, vec!["119A22", "119C18", "119C19"]);

    // Bad mends are refused by name.
    for (query, says) in [
        (
            vec![name(), ("repair", "119E45:guess".to_owned())],
            "choices_in_stem",
        ),
        (vec![name(), ("exclude", "119C18".to_owned())], "ID:REASON"),
        (
            vec![
                name(),
                ("exclude", "119Z99:typo".to_owned()),
                ("repair", "all".to_owned()),
            ],
            "119Z99",
        ),
    ] {
        let res = post(query).await.unwrap();
        assert_eq!(res.status(), reqwest::StatusCode::BAD_REQUEST);
        let text = res.text().await.unwrap();
        assert!(text.contains(says), "{says:?} not in {text}");
    }
    app.stop().await.unwrap();
}

/// IgakuQA119's files as a user picks them: the question files and the answers file.
fn every_file(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("questions"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.push(data.join("correct_answers.csv"));
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_browser_preview_turns_the_refused_records_into_an_importable_set() {
    use kokushi_tests::ui::{choose_files, click, sign_in, text_of, type_into, wait_text};
    let (Some(data), Some(static_dir), Some(chromedriver)) = (
        data(),
        service("KOKUSHI_STATIC_DIR"),
        service("CHROMEDRIVER"),
    ) else {
        return;
    };
    let store = kokushi_tests::fixture_model_store().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut settings =
        kokushi_backend::Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    settings.static_dir = Some(static_dir.into());
    let app = kokushi_tests::TestApp::spawn(settings).await.unwrap();
    let session = kokushi_tests::Browser::start(&chromedriver).await.unwrap();
    let browser = session.client.clone();
    sign_in(
        &browser,
        &app.base,
        kokushi_tests::ADMIN_USER,
        kokushi_tests::ADMIN_PASSWORD,
    )
    .await;
    browser.goto(&app.url("/exam-sets")).await.unwrap();
    let files = every_file(&data);
    let paths: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();

    // All six files at once, as published: refused, every problem listed.
    type_into(&browser, "#upload-name", "IgakuQA119").await;
    choose_files(&browser, "#upload-file", &paths).await;
    click(&browser, "#upload-submit").await;
    let refusal = text_of(&browser, "#upload-errors table.upload-errors").await;
    assert!(
        refusal.contains("119C_json.json") && refusal.contains("problem_text"),
        "{refusal}"
    );

    // The preview: 395 questions as they stand, the five refused records each on a row.
    click(&browser, "#upload-preview").await;
    let summary = wait_text(&browser, "#mend-summary", |t| t.contains("395")).await;
    assert!(summary.contains("7 problems in 5 records"), "{summary}");
    let mut records = Vec::new();
    for row in browser
        .find_all(fantoccini::Locator::Css("#mend-records tr.mend-record"))
        .await
        .unwrap()
    {
        records.push(row.attr("data-problem-id").await.unwrap().unwrap());
    }
    records.sort();
    assert_eq!(
        records,
        ["119A22", "119C18", "119C19", "119E45", "119E48"],
        "one row per refused record"
    );
    let e45 = text_of(&browser, "tr.mend-record[data-problem-id='119E45']").await;
    assert!(
        e45.contains("choices_in_stem") && e45.contains("夜は眠れますか"),
        "the repair shows what moves where: {e45}"
    );

    // Every repair accepted; the three records a repair cannot mend left out, one with a
    // reason of the user's own; checked again, nothing is refused.
    click(&browser, "#accept-all-repairs").await;
    for id in ["119A22", "119C18", "119C19"] {
        click(
            &browser,
            &format!("tr.mend-record[data-problem-id='{id}'] input.leave-out"),
        )
        .await;
    }
    type_into(
        &browser,
        "tr.mend-record[data-problem-id='119C18'] input.leave-out-reason",
        "the stem was not extracted",
    )
    .await;
    text_of(&browser, "#mend-stale").await;
    kokushi_tests::ui::shoot(&browser, "exam-set-preview").await;
    let faults = kokushi_tests::ui::layout_faults(&browser, "#mend-records tr.mend-record").await;
    assert!(faults.is_empty(), "the preview's layout: {faults:?}");
    click(&browser, "#upload-preview").await;
    let ready = wait_text(&browser, "#mend-summary", |t| t.contains("397")).await;
    assert!(
        ready.contains("2 records repaired and 3 left out"),
        "{ready}"
    );

    // Uploaded: stored with the repairs and exclusions kept beside it.
    click(&browser, "#upload-submit").await;
    let stored = text_of(&browser, "#upload-result").await;
    assert!(stored.contains("397 questions"), "{stored}");
    let notes = wait_text(&browser, "#exam-sets tr.exam-set-row .import-notes", |t| {
        !t.is_empty()
    })
    .await;
    assert_eq!(notes, "2 repaired, 3 left out");
    let sets: Vec<kokushi_shared::api::ExamSetSummary> =
        app.get_json("/api/exam-sets").await.unwrap();
    assert_eq!(
        sets.len(),
        1,
        "neither the refusal nor the previews stored anything"
    );
    let set = &sets[0];
    assert_eq!((set.name.as_str(), set.question_count), ("IgakuQA119", 397));
    let repaired: Vec<String> = set
        .import_notes
        .repairs
        .iter()
        .map(|r| format!("{}:{}", r.problem_id, r.kind.id()))
        .collect();
    assert_eq!(
        repaired,
        ["119E45:choices_in_stem", "119E48:choices_in_stem"]
    );
    let left_out: BTreeMap<&str, &str> = set
        .import_notes
        .excluded
        .iter()
        .map(|e| (e.problem_id.as_str(), e.reason.as_str()))
        .collect();
    assert_eq!(left_out.len(), 3);
    assert_eq!(left_out["119C18"], "the stem was not extracted");
    assert!(
        left_out["119A22"].contains("should start with its letter"),
        "a record left out without a typed reason keeps its first problem as the reason: {}",
        left_out["119A22"]
    );

    // Its rule packs: the built-in 119th pack in effect; its uploader adds a version of
    // their own (here, a title of their own), which is stored as version 2 and takes effect.
    click(&browser, "#exam-sets tr.exam-set-row button.rules-button").await;
    let built_in = text_of(&browser, "#rules-in-effect tr.rules-row[data-exam='119']").await;
    assert!(built_in.contains("built in"), "{built_in}");
    let pack_file = dir.path().join("medical-119-local.json");
    let pack = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/medical-119.json"),
    )
    .unwrap()
    .replace("第119回医師国家試験 (2025)", "第119回 (local rulings)");
    std::fs::write(&pack_file, pack).unwrap();
    kokushi_tests::ui::choose_file(&browser, "#rules-file", &pack_file).await;
    click(&browser, "#rules-upload").await;
    let stored = text_of(&browser, "#rules-result").await;
    assert!(stored.contains("version 2"), "{stored}");
    let in_effect = wait_text(
        &browser,
        "#rules-in-effect tr.rules-row[data-exam='119']",
        |t| t.contains("local rulings"),
    )
    .await;
    assert!(in_effect.contains("uploaded"), "{in_effect}");
    let versions = text_of(&browser, "#rules-versions").await;
    assert!(versions.contains("119: version 2, by admin"), "{versions}");
}
