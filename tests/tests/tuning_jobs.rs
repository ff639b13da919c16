//! LoRA tuning as a queued job, against a real server (embedded queue and worker) on SQLite and
//! on PostgreSQL: a tuning trains an adapter on an uploaded exam set with the engine's fixture
//! model, its loss curve arrives point by point (each step once), the adapter appears in the
//! model registry linked to its base, and the chained evaluations of the base and the tuned
//! model run to the end. Bad requests are refused before anything is queued.

use std::time::{Duration, Instant};

use kokushi_backend::Settings;
use kokushi_shared::api::{
    ApiErrorBody, ErrorCode, RunStatus, StoreEntry, TuningDetail, TuningSummary,
};
use kokushi_tests::{FIXTURE_MODEL, TestApp, fixture_model_store, fresh_postgres_url, sqlite_url};
use serde_json::json;

async fn post(app: &TestApp, path: &str, body: serde_json::Value) -> reqwest::Response {
    app.client
        .post(app.url(path))
        .json(&body)
        .send()
        .await
        .expect("request")
}

async fn tuning(app: &TestApp, id: i64) -> TuningDetail {
    let res = app
        .client
        .get(app.url(&format!("/api/tunings/{id}")))
        .send()
        .await
        .expect("request");
    assert_eq!(res.status(), 200);
    res.json().await.expect("tuning")
}

async fn tuning_ends(app: &TestApp, id: i64) -> TuningDetail {
    let started = Instant::now();
    loop {
        let detail = tuning(app, id).await;
        if detail.tuning.status.is_finished() {
            return detail;
        }
        assert!(
            started.elapsed() < Duration::from_secs(240),
            "tuning {id} did not end: {:?}",
            detail.tuning
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn tuning_runs_as_a_job(database_url: String) {
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(Settings::embedded(database_url, store.path()))
        .await
        .expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let request = json!({
        "base_model": FIXTURE_MODEL,
        "adapter": "mini-lora",
        "data_exam_set_id": exam.id,
        "prompt_format": "chatml_ja_v1",
        "steps": 4,
        "batch": 2,
        "validation_share": 0.25,
        "seed": 7,
        "evaluate": {"exam_set_id": exam.id, "limit": 2, "max_new_tokens": 4},
    });

    // Refused before anything is queued.
    for (bad, code, says) in [
        (json!({"base_model": "absent.gguf"}), 400, "absent.gguf"),
        (json!({"adapter": "../escape"}), 400, "plain name"),
        (json!({"adapter": FIXTURE_MODEL}), 409, "already exists"),
        (json!({"prompt_format": "nope"}), 400, "prompt_format"),
        (json!({"preset": "huge"}), 400, "preset"),
        (json!({"steps": 0}), 400, "steps"),
        (json!({"data_exam_set_id": 999_999}), 404, "999999"),
        (json!({"evaluate": {"exam_set_id": 424_242}}), 404, "424242"),
    ] {
        let mut body = request.clone();
        for (k, v) in bad.as_object().expect("object") {
            body[k] = v.clone();
        }
        let res = post(&app, "/api/tunings", body).await;
        assert_eq!(res.status().as_u16(), code, "{bad}");
        let err: ApiErrorBody = res.json().await.expect("error body");
        assert!(err.message.contains(says), "{bad}: {}", err.message);
    }
    let listed: Vec<TuningSummary> = app
        .client
        .get(app.url("/api/tunings"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("tunings");
    assert!(listed.is_empty(), "a refused request queued {listed:?}");

    // Act: queue the tuning and wait for it.
    let res = post(&app, "/api/tunings", request.clone()).await;
    assert_eq!(res.status(), 201);
    let created: TuningSummary = res.json().await.expect("summary");
    assert_eq!(created.status, RunStatus::Queued);
    assert_eq!((created.steps, created.adapter.as_str()), (4, "mini-lora"));
    let detail = tuning_ends(&app, created.id).await;

    // Assert: succeeded, every step's point once, a validation at the end.
    let t = &detail.tuning;
    assert_eq!(t.status, RunStatus::Succeeded, "{t:?}");
    assert_eq!(t.steps_done, 4);
    let steps: Vec<u64> = detail
        .points
        .iter()
        .filter(|p| !p.validation)
        .map(|p| p.step)
        .collect();
    assert_eq!(steps, [1, 2, 3, 4]);
    assert!(detail.points.iter().all(|p| p.loss.is_finite()));
    assert!(detail.points.iter().any(|p| p.validation && p.step == 4));
    assert!(t.final_validation_loss.is_some_and(f64::is_finite), "{t:?}");
    assert!(t.train_examples.is_some_and(|n| n > 0), "{t:?}");
    assert!(t.model_info.as_deref().is_some_and(|m| m.contains("llama")));

    // The adapter is in the registry, linked to its base.
    let entries: Vec<StoreEntry> = app
        .client
        .get(app.url("/api/models"))
        .send()
        .await
        .expect("models")
        .json()
        .await
        .expect("entries");
    let lora = entries
        .iter()
        .find(|e| e.name == "mini-lora")
        .expect("the adapter is listed");
    assert_eq!(lora.format, "peft-lora");
    assert!(lora.runnable, "{lora:?}");
    assert_eq!(lora.base_entry.as_deref(), Some(FIXTURE_MODEL));

    // The chained evaluations ran: base, then base + adapter.
    let (Some(base_run), Some(tuned_run)) = (t.base_run_id, t.tuned_run_id) else {
        panic!("no chained evaluations: {t:?}");
    };
    let base = app
        .wait_for_run(base_run, Duration::from_secs(120))
        .await
        .expect("base run ends");
    let tuned = app
        .wait_for_run(tuned_run, Duration::from_secs(120))
        .await
        .expect("tuned run ends");
    assert_eq!(base.run.status, RunStatus::Succeeded, "{:?}", base.run);
    assert_eq!(tuned.run.status, RunStatus::Succeeded, "{:?}", tuned.run);
    assert_eq!(base.run.adapter, None);
    assert_eq!(tuned.run.adapter.as_deref(), Some("mini-lora"));
    assert_eq!((base.run.total, tuned.run.tally.answered), (2, 2));

    // A second tuning may not write the same adapter; a finished one cannot be cancelled.
    let res = post(&app, "/api/tunings", request.clone()).await;
    assert_eq!(res.status(), 409);
    // Without validation examples there is no final validation loss (stored as such).
    let mut plain = request;
    plain["adapter"] = json!("mini-lora-plain");
    plain["validation_share"] = json!(0.0);
    plain["steps"] = json!(1);
    plain.as_object_mut().expect("object").remove("evaluate");
    let res = post(&app, "/api/tunings", plain).await;
    assert_eq!(res.status(), 201);
    let second: TuningSummary = res.json().await.expect("summary");
    let second = tuning_ends(&app, second.id).await;
    assert_eq!(
        second.tuning.status,
        RunStatus::Succeeded,
        "{:?}",
        second.tuning
    );
    assert_eq!(second.tuning.final_validation_loss, None);
    assert_eq!(second.tuning.validation_examples, Some(0));
    assert_eq!(
        (second.tuning.base_run_id, second.tuning.tuned_run_id),
        (None, None)
    );
    assert!(second.points.iter().all(|p| !p.validation));
    let res = post(
        &app,
        &format!("/api/tunings/{}/cancel", created.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 409);
    let err: ApiErrorBody = res.json().await.expect("error");
    assert_eq!(err.code, ErrorCode::Conflict);
    app.stop().await.expect("clean stop");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuning_job_trains_an_adapter_and_chains_evaluations_on_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    tuning_runs_as_a_job(sqlite_url(dir.path())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tuning_job_trains_an_adapter_and_chains_evaluations_on_postgres() {
    let Some(url) = fresh_postgres_url().await.expect("postgres") else {
        return;
    };
    tuning_runs_as_a_job(url).await;
}

/// A running tuning stops on cancel, keeps its status, and frees nothing it should not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_tuning_stops_when_cancelled() {
    let (settings, _folders) = kokushi_tests::embedded_fixture().expect("folders");
    let app = TestApp::spawn(settings).await.expect("server starts");
    let exam = app.upload_mini_exam().await.expect("upload");
    let res = post(
        &app,
        "/api/tunings",
        json!({
            "base_model": FIXTURE_MODEL,
            "adapter": "long-lora",
            "data_exam_set_id": exam.id,
            "prompt_format": "chatml_ja_v1",
            "steps": 100_000,
            "batch": 1,
            "validation_share": 0.0,
        }),
    )
    .await;
    assert_eq!(res.status(), 201);
    let created: TuningSummary = res.json().await.expect("summary");
    let started = Instant::now();
    while tuning(&app, created.id).await.tuning.steps_done < 2 {
        assert!(started.elapsed() < Duration::from_secs(120), "no steps");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = post(
        &app,
        &format!("/api/tunings/{}/cancel", created.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 200);
    // The worker stops within a second or so; the curve stops growing.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let a = tuning(&app, created.id).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let b = tuning(&app, created.id).await;
    assert_eq!(a.tuning.status, RunStatus::Cancelled);
    assert_eq!(b.tuning.status, RunStatus::Cancelled);
    assert_eq!(a.points.len(), b.points.len(), "the worker kept training");
    assert!(b.tuning.steps_done < 100_000);

    // Retried: queued again with its curve kept, and it trains on past where it stopped.
    let res = post(
        &app,
        &format!("/api/tunings/{}/retry", created.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let retried: TuningSummary = res.json().await.expect("summary");
    assert!(
        matches!(retried.status, RunStatus::Queued | RunStatus::Running),
        "{:?}",
        retried.status
    );
    assert!(retried.error.is_none() && retried.finished_at.is_none());
    let started = Instant::now();
    while tuning(&app, created.id).await.tuning.steps_done <= b.tuning.steps_done + 2 {
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "the retry did not train"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let res = post(
        &app,
        &format!("/api/tunings/{}/retry", created.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 409, "a running tuning cannot be retried");
    let res = post(
        &app,
        &format!("/api/tunings/{}/cancel", created.id),
        json!({}),
    )
    .await;
    assert_eq!(res.status(), 200);
    let ended = tuning_ends(&app, created.id).await;
    assert_eq!(ended.tuning.status, RunStatus::Cancelled);
    let mut steps: Vec<u64> = ended
        .points
        .iter()
        .filter(|p| !p.validation)
        .map(|p| p.step)
        .collect();
    let len = steps.len();
    steps.dedup();
    assert_eq!(steps.len(), len, "a step stored twice");
    assert_eq!(
        post(&app, "/api/tunings/9999/retry", json!({}))
            .await
            .status(),
        404
    );
    app.stop().await.expect("clean stop");
}
