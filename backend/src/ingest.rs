//! Ingestion: worker events from the queue into the database. Every write is idempotent, so an
//! event delivered twice changes nothing, and an event is acknowledged only once stored.
//!
//! Beside it, the reconciler: when the queue says it lost its messages, every unfinished job is
//! published again with the questions the database still lacks; and a run whose worker says
//! "finished" while answers are missing (their events were lost) is published again for those.

use std::sync::Arc;
use std::time::Duration;

use kokushi_queue::JobQueue;
use kokushi_shared::job::WorkerEvent;
use tokio::sync::watch;
use tracing::Instrument;

use crate::db::{Db, DbError};

/// Errors of ingestion.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    #[error(transparent)]
    Db(#[from] DbError),
    #[error(transparent)]
    Queue(#[from] kokushi_queue::QueueError),
    #[error("scoring run {0} stopped: {1}")]
    Scoring(i64, String),
}

/// Scores a succeeded run per exam year and by question facet, and stores both for the
/// leaderboard.
pub async fn store_final_scores(db: &Db, run_id: i64) -> Result<(), IngestError> {
    let Some(mut scoring) = db.run_scoring(run_id).await? else {
        return Ok(());
    };
    // A run records the pack versions it is first scored under, and keeps them until it is
    // rescored on request.
    if scoring.rules.recorded.is_empty() {
        db.set_run_rules_versions(run_id, &scoring.rules.current)
            .await?;
        scoring.rules.recorded = scoring.rules.current.clone();
    }
    let stamp = scoring.cells_stamp();
    let scores = tokio::task::spawn_blocking(move || {
        crate::scoring::final_scores(
            &scoring.questions,
            &scoring.predictions,
            &scoring.rules.packs,
        )
    })
    .await
    .map_err(|e| IngestError::Scoring(run_id, e.to_string()))?;
    db.set_final_scores(run_id, &scores.years, &scores.metrics)
        .await?;
    Ok(db.store_cells(run_id, &stamp, &scores.cells).await?)
}

/// Scores run `run_id` by question facet and stores the cells a filtered leaderboard adds up
/// (`db::cells`), stamped with what they were computed from.
pub async fn store_cells(db: &Db, run_id: i64) -> Result<(), IngestError> {
    let Some(scoring) = db.run_scoring(run_id).await? else {
        return Ok(());
    };
    let stamp = scoring.cells_stamp();
    let cells = tokio::task::spawn_blocking(move || {
        crate::scoring::cells(
            &scoring.questions,
            &scoring.predictions,
            &scoring.rules.packs,
        )
    })
    .await
    .map_err(|e| IngestError::Scoring(run_id, e.to_string()))?;
    Ok(db.store_cells(run_id, &stamp, &cells).await?)
}

/// Stores the cells of every finished run whose cells are missing or were computed from
/// something that has changed since (a rule pack added, a run rescored, a release that scores
/// differently); returns how many. One refresher at a time: a second caller waits, then
/// finds only what changed meanwhile.
pub async fn refresh_stale_cells(db: &Db) -> Result<usize, IngestError> {
    static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    let _turn = ONE_AT_A_TIME.lock().await;
    let stale: Vec<i64> = db
        .cell_stamps(None)
        .await?
        .into_iter()
        .filter_map(|(id, fresh)| (!fresh).then_some(id))
        .collect();
    for run_id in &stale {
        store_cells(db, *run_id).await?;
    }
    Ok(stale.len())
}

/// Stores the per-year verdicts of succeeded runs that have none (they finished before the
/// verdicts were kept); returns how many.
pub async fn backfill_final_scores(db: &Db) -> Result<usize, IngestError> {
    let missing = db.runs_without_final_scores().await?;
    for run_id in &missing {
        store_final_scores(db, *run_id).await?;
    }
    Ok(missing.len())
}

/// Applies one event to the database. An event of an attempt that is no longer its job's
/// latest (the job was retried since) changes nothing; the status changes below also check the
/// attempt inside their own transaction, so a retry between this check and them cannot be
/// undone by a stale event either.
pub async fn apply(db: &Db, queue: &dyn JobQueue, event: &WorkerEvent) -> Result<(), IngestError> {
    let attempt = event.attempt();
    match db.job_attempt(event.job_id()).await? {
        Some(latest) if latest == attempt => {}
        latest => {
            tracing::info!(
                job_id = event.job_id(),
                attempt,
                latest = ?latest,
                "event of an earlier attempt (or of no job); ignored"
            );
            return Ok(());
        }
    }
    match event {
        WorkerEvent::Started {
            run_id,
            worker,
            model_info,
            prompt_id,
            ..
        } => {
            tracing::info!(run_id, worker = %worker, "run started");
            db.mark_running(*run_id, attempt, worker, model_info)
                .await?;
            if let Some(prompt_id) = prompt_id {
                db.set_prompt_id(*run_id, prompt_id).await?;
            }
            Ok(())
        }
        WorkerEvent::Answer { run_id, record, .. } => {
            if !db.record_answer(*run_id, record).await? {
                tracing::warn!(run_id, problem_id = %record.problem_id, "answer to a question the run does not ask; ignored");
            }
            Ok(())
        }
        // Progress is derived from the answers stored; the event only keeps the stream lively.
        WorkerEvent::Progress { .. } => Ok(()),
        WorkerEvent::Finished { run_id, .. } => {
            if db.complete_run(*run_id, attempt).await? {
                tracing::info!(run_id, "run succeeded");
                store_final_scores(db, *run_id).await?;
            } else if let Some(job) = db.unfinished_job(*run_id).await? {
                tracing::warn!(
                    run_id,
                    missing = job.questions.len(),
                    "the worker finished but answers are missing (lost events); publishing them again"
                );
                queue.publish_job(&job.into()).await?;
            }
            Ok(())
        }
        WorkerEvent::Failed { run_id, error, .. } => {
            tracing::info!(run_id, error = ?error, "run failed");
            Ok(db.finish_run(*run_id, attempt, Some(error)).await?)
        }
        WorkerEvent::TuneStarted {
            tuning_id,
            worker,
            model_info,
            ..
        } => Ok(db
            .mark_tuning_running(*tuning_id, attempt, worker, model_info)
            .await?),
        WorkerEvent::TunePoint {
            tuning_id, point, ..
        } => Ok(db.record_tune_point(*tuning_id, point).await?),
        WorkerEvent::TuneFinished {
            tuning_id,
            train_examples,
            validation_examples,
            too_long,
            final_validation_loss,
            ..
        } => {
            let jobs = db
                .finish_tuning(
                    *tuning_id,
                    attempt,
                    [*train_examples, *validation_examples, *too_long],
                    *final_validation_loss,
                )
                .await?;
            if let [base, tuned] = jobs.as_slice() {
                tracing::info!(
                    tuning_id,
                    base_run_id = base.run_id,
                    tuned_run_id = tuned.run_id,
                    "evaluations of the base and the tuned model queued"
                );
            }
            // Recorded as queued before they are published, like runs made through the API.
            for job in jobs {
                queue.publish_job(&job.into()).await?;
            }
            Ok(())
        }
        WorkerEvent::TuneFailed {
            tuning_id, error, ..
        } => Ok(db.fail_tuning(*tuning_id, attempt, error).await?),
        WorkerEvent::Measured { job_id, work, .. } => {
            Ok(db.record_work(*job_id, attempt, work).await?)
        }
        WorkerEvent::JudgeStarted {
            judge_run_id,
            worker,
            model_info,
            prompt_id,
            ..
        } => Ok(db
            .mark_judge_running(
                *judge_run_id,
                attempt,
                worker,
                model_info,
                prompt_id.as_deref(),
            )
            .await?),
        WorkerEvent::JudgeAnswer {
            judge_run_id,
            record,
            ..
        } => {
            if !db.record_judge_grade(*judge_run_id, record).await? {
                tracing::warn!(judge_run_id, item = %record.problem_id, "judge grade of an item the judge run's task does not have; ignored");
            }
            Ok(())
        }
        WorkerEvent::JudgeFinished { judge_run_id, .. } => {
            if db.finish_judge_run(*judge_run_id, attempt, None).await? {
                tracing::info!(judge_run_id, "judge run succeeded");
            } else if let Some(job) = crate::judging::job_of(db, *judge_run_id).await? {
                tracing::warn!(
                    judge_run_id,
                    missing = job.questions.len(),
                    "the worker finished but judge grades are missing (lost events); publishing them again"
                );
                queue.publish_job(&job.into()).await?;
            }
            Ok(())
        }
        WorkerEvent::JudgeFailed {
            judge_run_id,
            error,
            ..
        } => {
            tracing::info!(judge_run_id, error = ?error, "judge run failed");
            db.finish_judge_run(*judge_run_id, attempt, Some(error))
                .await?;
            Ok(())
        }
    }
}

/// Publishes every unfinished job again if the queue lost its messages (or is new: an
/// in-process queue at every start, a Redis never used); how many. The caller says what that
/// means: at start it is how jobs queued before a restart go on, later it is a loss.
pub async fn reconcile(db: &Db, queue: &dyn JobQueue) -> Result<usize, IngestError> {
    if !queue.lost_messages().await? {
        return Ok(0);
    }
    let mut jobs: Vec<kokushi_shared::job::Job> = db
        .unfinished_jobs()
        .await?
        .into_iter()
        .map(Into::into)
        .collect();
    for row in db.unfinished_tunings().await? {
        jobs.push(crate::tuning::job_of(db, &row).await?);
    }
    for judge_run_id in db.unfinished_judge_runs().await? {
        if let Some(job) = crate::judging::job_of(db, judge_run_id).await? {
            jobs.push(job.into());
        }
    }
    for job in &jobs {
        queue.publish_job(job).await?;
    }
    Ok(jobs.len())
}

/// Reads and applies events until `stop` turns true.
pub async fn run(
    db: Db,
    queue: Arc<dyn JobQueue>,
    consumer: String,
    mut stop: watch::Receiver<bool>,
    reconcile_every: Duration,
    leaderboard: Arc<crate::state::ResponseCache>,
) {
    let mut last_reconcile = tokio::time::Instant::now();
    loop {
        if *stop.borrow() {
            break;
        }
        if last_reconcile.elapsed() >= reconcile_every {
            last_reconcile = tokio::time::Instant::now();
            match reconcile(&db, queue.as_ref()).await {
                Ok(0) => {}
                Ok(jobs) => tracing::warn!(
                    jobs,
                    "the queue lost its messages; published every unfinished job again"
                ),
                Err(e) => {
                    tracing::error!(error = %e, "reconciling the queue with the database failed");
                }
            }
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
            let span = tracing::info_span!("event", job_id = delivery.item.job_id());
            match apply(&db, queue.as_ref(), &delivery.item)
                .instrument(span)
                .await
            {
                Ok(()) => done.push(delivery.receipt),
                Err(e) => {
                    // Left unacknowledged: the event stays pending on the stream.
                    tracing::error!(error = %e, job_id = delivery.item.job_id(), "storing a worker event failed");
                }
            }
        }
        if !done.is_empty() {
            leaderboard.expire();
        }
        if let Err(e) = queue.ack_events(&done).await {
            tracing::error!(error = %e, "acknowledging worker events failed");
        }
    }
}
