//! Ingestion: worker events from the queue into the database. Every write is idempotent, so an
//! event delivered twice changes nothing, and an event is acknowledged only once stored.

use std::sync::Arc;
use std::time::Duration;

use kokushi_queue::JobQueue;
use kokushi_shared::job::WorkerEvent;
use tokio::sync::watch;

use crate::db::{Db, DbError};

/// Applies one event to the database.
pub async fn apply(db: &Db, event: &WorkerEvent) -> Result<(), DbError> {
    match event {
        WorkerEvent::Started {
            run_id,
            worker,
            model_info,
            ..
        } => db.mark_running(*run_id, worker, model_info).await,
        WorkerEvent::Answer { run_id, record, .. } => {
            if !db.record_answer(*run_id, record).await? {
                tracing::warn!(run_id, problem_id = %record.problem_id, "answer to a question the run does not ask; ignored");
            }
            Ok(())
        }
        // Progress is derived from the answers stored; the event only keeps the stream lively.
        WorkerEvent::Progress { .. } => Ok(()),
        WorkerEvent::Finished { run_id, .. } => db.finish_run(*run_id, None).await,
        WorkerEvent::Failed { run_id, error, .. } => db.finish_run(*run_id, Some(error)).await,
    }
}

/// Reads and applies events until `stop` turns true.
pub async fn run(
    db: Db,
    queue: Arc<dyn JobQueue>,
    consumer: String,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        if *stop.borrow() {
            break;
        }
        let batch = tokio::select! {
            _ = stop.changed() => break,
            batch = queue.read_events(&consumer, Duration::from_secs(1), 64) => batch,
        };
        let deliveries = match batch {
            Ok(d) => d,
            Err(e) => {
                tracing::error!(error = %e, "reading worker events failed; retrying");
                tokio::time::sleep(Duration::from_secs(1)).await;
                continue;
            }
        };
        let mut done = Vec::with_capacity(deliveries.len());
        for delivery in deliveries {
            match apply(&db, &delivery.item).await {
                Ok(()) => done.push(delivery.receipt),
                Err(e) => {
                    // Left unacknowledged: the event stays pending on the stream.
                    tracing::error!(error = %e, run_id = delivery.item.run_id(), "storing a worker event failed");
                }
            }
        }
        if let Err(e) = queue.ack_events(&done).await {
            tracing::error!(error = %e, "acknowledging worker events failed");
        }
    }
}
