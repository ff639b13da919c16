//! Blind grading stays blind, on SQLite and on PostgreSQL: nothing an annotator can read
//! orders their items by the run they come from. A task over two runs of the same model on the
//! same 30 questions gives one annotator 60 items; the test reads from the database which run
//! each assignment belongs to and checks every order the annotator can see — the handles they
//! know assignments by, their own order, the previous/next links — against it. Grouped by run,
//! any of them would switch runs once; shuffled, about 30 times.

use std::collections::HashMap;
use std::time::Duration;

use kokushi_backend::Settings;
use kokushi_backend::db::Db;
use kokushi_shared::grading::{BlindItem, GradingTaskSummary, MyQueue};
use kokushi_tests::{TestApp, fixture_model_store, long_exam, on_both_databases};
use sqlx::Row;

/// How often a sequence of runs changes from one element to the next.
fn switches(runs: &[i64]) -> usize {
    runs.windows(2).filter(|w| w[0] != w[1]).count()
}

async fn blind_on(database_url: String) {
    // Arrange: two finished runs on 30 questions, one annotator, one task over both.
    let store = fixture_model_store().expect("fixture model");
    let app = TestApp::spawn(Settings::embedded(database_url.clone(), store.path()))
        .await
        .expect("server starts");
    let exam = app
        .upload_exam("thirty", "thirty.jsonl", long_exam("903A", 30))
        .await
        .expect("upload");
    let mut runs = Vec::new();
    for _ in 0..2 {
        let run = app.create_run(exam.id, 30).await.expect("run");
        app.wait_for_run(run.id, Duration::from_secs(300))
            .await
            .expect("run finishes");
        runs.push(run.id);
    }
    let (annie, client) = app
        .signed_in("annie", &["annotator"])
        .await
        .expect("annotator");
    let task: GradingTaskSummary = app
        .client
        .post(app.url("/api/grading/tasks"))
        .json(&serde_json::json!({
            "name": "blind", "run_ids": runs, "selection": "all", "overlap": 1,
            "seed": 5, "annotators": [annie],
        }))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("task");
    assert_eq!(task.items, 60);

    // What the database knows: each handle's run, and each item's row id.
    let db = Db::connect(&database_url).await.expect("database");
    let rows = sqlx::query(
        "SELECT x.handle, i.id AS item, i.run_id, i.problem_id FROM grading_assignments x \
         JOIN grading_items i ON i.id = x.item_id WHERE x.task_id = $1",
    )
    .bind(task.id)
    .fetch_all(db.pool())
    .await
    .expect("assignments");
    let run_of: HashMap<i64, i64> = rows
        .iter()
        .map(|r| {
            (
                r.try_get("handle").expect("handle"),
                r.try_get("run_id").expect("run"),
            )
        })
        .collect();
    assert_eq!(run_of.len(), 60, "every assignment has a handle of its own");

    // Act: everything the annotator reads.
    let queue: MyQueue = client
        .get(app.url(&format!("/api/grading/mine/{}", task.id)))
        .send()
        .await
        .expect("request")
        .json()
        .await
        .expect("queue");
    let handles: Vec<i64> = queue.items.iter().map(|i| i.assignment_id).collect();
    let mut chain = Vec::new();
    let mut next = queue.task.resume;
    while let Some(handle) = next {
        let item: BlindItem = client
            .get(app.url(&format!("/api/grading/assignments/{handle}")))
            .send()
            .await
            .expect("request")
            .json()
            .await
            .expect("item");
        let text = serde_json::to_string(&item).expect("json");
        for run in &runs {
            assert!(
                !text.contains(&format!("\"run_id\":{run}")),
                "an item names its run: {text}"
            );
        }
        chain.push(handle);
        next = item.next;
    }

    // Assert: no order the annotator sees follows the runs.
    assert_eq!(
        chain, handles,
        "next links follow the annotator's own order"
    );
    let in_their_order: Vec<i64> = handles.iter().map(|h| run_of[h]).collect();
    let mut sorted = handles.clone();
    sorted.sort_unstable();
    let by_handle: Vec<i64> = sorted.iter().map(|h| run_of[h]).collect();
    for (what, order) in [
        ("the annotator's order", &in_their_order),
        ("handles sorted", &by_handle),
    ] {
        assert!(
            switches(order) >= 10,
            "{what} groups items by run: {} switches in {order:?}",
            switches(order)
        );
    }
    // Handles are random, not counters.
    assert!(
        sorted.windows(2).filter(|w| w[1] - w[0] == 1).count() < 5,
        "handles count up: {sorted:?}"
    );
    assert!(sorted.iter().all(|h| (1..(1i64 << 53)).contains(h)));
    // For each question, whether the first run's item has the lower handle: about half the
    // time, not always.
    let mut by_problem: HashMap<String, Vec<(i64, i64)>> = HashMap::new();
    let mut items_by_id: Vec<(i64, i64)> = Vec::new();
    for r in &rows {
        let problem: String = r.try_get("problem_id").expect("problem");
        let run: i64 = r.try_get("run_id").expect("run");
        let handle: i64 = r.try_get("handle").expect("handle");
        by_problem.entry(problem).or_default().push((run, handle));
        items_by_id.push((r.try_get("item").expect("item"), run));
    }
    let first_lower = by_problem
        .values()
        .filter(|pair| {
            let a = pair.iter().find(|(run, _)| *run == runs[0]);
            let b = pair.iter().find(|(run, _)| *run == runs[1]);
            matches!((a, b), (Some(a), Some(b)) if a.1 < b.1)
        })
        .count();
    assert!(
        (3..=27).contains(&first_lower),
        "the first run's item has the lower handle for {first_lower} of 30 questions"
    );
    // Even the item rows (which only researchers see) are written in no run order.
    items_by_id.sort_unstable();
    let item_runs: Vec<i64> = items_by_id.iter().map(|(_, run)| *run).collect();
    assert!(switches(&item_runs) >= 10, "{item_runs:?}");
    app.stop().await.expect("clean stop");
}

on_both_databases!(blind_on => nothing_an_annotator_reads_orders_items_by_run_sqlite, nothing_an_annotator_reads_orders_items_by_run_postgres);
