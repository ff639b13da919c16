//! Rule packs per exam set through the API: the set's owner uploads a new version of the
//! 120th exam's pack (one question excluded); anyone else is refused, as is a pack that is
//! malformed or for an exam the set does not hold. A run keeps scoring under the version it was
//! first scored under until it is rescored on request, and the rescoring shows what changed.

#![allow(clippy::unwrap_used)] // a test's panic is its failure report

use std::time::Duration;

use kokushi_shared::api::{ExamSetRules, RescoreDiff, StoredRulePack};
use kokushi_shared::score::ScoreReport;
use kokushi_tests::{TestApp, fixture_model_store};
use reqwest::StatusCode;
use serde_json::Value;

/// Ten questions of a made-up 120th exam's block B.
fn block_b() -> Vec<u8> {
    kokushi_tests::lettered_block("120B", 10, None).into_bytes()
}

/// The built-in 120th pack with 120B1 excluded.
fn pack_excluding_b1() -> String {
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/rules/medical-120.json"),
    )
    .unwrap();
    let mut pack: Value = serde_json::from_str(&text).unwrap();
    pack["excluded"] = serde_json::json!([{
        "problem_id": "120B1",
        "reason": "a test's exclusion",
        "provenance": {"kind": "annotated", "source": "this test", "by": "the test suite"}
    }]);
    pack.to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_run_keeps_its_rule_pack_version_until_rescored_and_the_rescoring_shows_what_changed() {
    let store = fixture_model_store().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let settings =
        kokushi_backend::Settings::embedded(kokushi_tests::sqlite_url(dir.path()), store.path());
    let app = TestApp::spawn(settings).await.unwrap();
    let set = app
        .upload_exam("120 block B", "120-B.jsonl", block_b())
        .await
        .unwrap();
    let run = app.create_run(set.id, 10).await.unwrap();
    app.wait_for_run(run.id, Duration::from_secs(300))
        .await
        .unwrap();
    let rules_path = format!("/api/exam-sets/{}/rules", set.id);

    // Before any upload: the built-in pack is in effect.
    let rules: ExamSetRules = app.get_json(&rules_path).await.unwrap();
    assert_eq!(rules.in_effect.len(), 1);
    assert_eq!(
        (rules.in_effect[0].exam.as_str(), rules.in_effect[0].version),
        ("120", 1)
    );
    assert!(rules.in_effect[0].built_in && rules.versions.is_empty());

    // Refused: another researcher (not the owner), a malformed pack, another exam's pack.
    let (_, stranger) = app.signed_in("stranger", &["researcher"]).await.unwrap();
    let refused = stranger
        .post(app.url(&rules_path))
        .body(pack_excluding_b1())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let post = |body: String| {
        app.client
            .post(app.url(&rules_path))
            .header("Content-Type", "application/json")
            .body(body)
            .send()
    };
    let malformed = post(pack_excluding_b1().replace("\"share\"", "\"shares\""))
        .await
        .unwrap();
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    let said = malformed.text().await.unwrap();
    assert!(said.contains("shares"), "{said}");
    let other_exam = post(
        pack_excluding_b1()
            .replace("\"exam\":\"120\"", "\"exam\":\"119\"")
            .replace("120B1", "119B1"),
    )
    .await
    .unwrap();
    assert_eq!(other_exam.status(), StatusCode::BAD_REQUEST);
    let said = other_exam.text().await.unwrap();
    assert!(said.contains("holds 120"), "{said}");
    let huge = post(" ".repeat(2 << 20)).await.unwrap();
    assert_eq!(huge.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let rules: ExamSetRules = app.get_json(&rules_path).await.unwrap();
    assert!(rules.versions.is_empty(), "nothing refused was stored");

    // The owner's pack: stored as version 2, in effect for the set.
    let stored = post(pack_excluding_b1()).await.unwrap();
    assert_eq!(stored.status(), StatusCode::CREATED);
    let stored: StoredRulePack = stored.json().await.unwrap();
    assert_eq!((stored.exam.as_str(), stored.version), ("120", 2));
    let rules: ExamSetRules = app.get_json(&rules_path).await.unwrap();
    assert_eq!(rules.in_effect[0].version, 2);
    assert!(!rules.in_effect[0].built_in);

    // The run still scores under version 1: 120B1 is worth its point, on a filtered
    // leaderboard too (its stored cells are stale once a pack is added: computed again under
    // the versions the run recorded).
    let filtered = || async {
        let rows: Vec<kokushi_shared::api::RunSummary> =
            app.get_json("/api/leaderboard?blocks=B").await.unwrap();
        rows.into_iter().find(|r| r.id == run.id).unwrap()
    };
    let row = filtered().await;
    assert_eq!((row.total, row.tally.points_possible), (10, 10));
    let score_path = format!("/api/runs/{}/score", run.id);
    let report: ScoreReport = app.get_json(&score_path).await.unwrap();
    assert_eq!(report.years[0].points_max, 10, "ten 1-point questions");
    let rescore_path = format!("/api/runs/{}/rescore", run.id);
    let preview: RescoreDiff = app.get_json(&rescore_path).await.unwrap();
    assert!(!preview.applied);
    assert_eq!(preview.from.get("120"), Some(&1));
    assert_eq!(preview.to.get("120"), Some(&2));
    assert_eq!(preview.questions.len(), 1, "{:?}", preview.questions);
    let b1 = &preview.questions[0];
    assert_eq!(
        (b1.problem_id.as_str(), b1.points_before, b1.points_after),
        ("120B1", 1, 0)
    );
    assert_eq!(
        (
            preview.years[0].before.points_max,
            preview.years[0].after.points_max
        ),
        (10, 9)
    );
    let unchanged: ScoreReport = app.get_json(&score_path).await.unwrap();
    assert_eq!(
        unchanged.years[0].points_max, 10,
        "a preview stores nothing"
    );

    // Rescored: version 2 from now on, on the run's score and the leaderboard.
    let applied: RescoreDiff = app
        .client
        .post(app.url(&rescore_path))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(applied.applied);
    let report: ScoreReport = app.get_json(&score_path).await.unwrap();
    assert_eq!(report.years[0].points_max, 9);
    let board = app.leaderboard().await.unwrap();
    let row = board.iter().find(|r| r.id == run.id).unwrap();
    assert_eq!(row.years[0].rules_version, Some(2));
    assert_eq!(row.years[0].points_max, 9);
    let row = filtered().await;
    assert_eq!(
        (row.total, row.tally.points_possible),
        (10, 9),
        "the filtered board scores under version 2 as well"
    );
    let again: RescoreDiff = app.get_json(&rescore_path).await.unwrap();
    assert!(again.questions.is_empty() && again.from == again.to);

    // `kokushi score --rules` scores the run's export under the same pack file; a malformed
    // pack is refused naming the file and the field.
    let Some(bin) = kokushi_tests::service("KOKUSHI_BIN") else {
        return;
    };
    let export = app.run_export(run.id).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let (set_file, predictions, pack, broken) = (
        files.path().join("120-B.jsonl"),
        files.path().join("run.json"),
        files.path().join("medical-120-b1.json"),
        files.path().join("broken.json"),
    );
    std::fs::write(&set_file, block_b()).unwrap();
    std::fs::write(&predictions, &export).unwrap();
    std::fs::write(&pack, pack_excluding_b1()).unwrap();
    std::fs::write(
        &broken,
        pack_excluding_b1().replace("\"share\"", "\"shares\""),
    )
    .unwrap();
    let cli = |pack: &std::path::Path| {
        std::process::Command::new(&bin)
            .args(["score", "--format", "json", "--exam-set"])
            .arg(&set_file)
            .arg("--predictions")
            .arg(&predictions)
            .arg("--rules")
            .arg(pack)
            .output()
            .unwrap()
    };
    let out = cli(&pack);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let json: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(json["years"][0]["points_max"], 9);
    assert_eq!(json["years"][0]["points"], report.years[0].points);
    let out = cli(&broken);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("broken.json") && said.contains("shares"),
        "{said}"
    );
}
