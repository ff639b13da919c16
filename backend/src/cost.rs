//! A job's cost before it runs (docs/cost.md): a dry run of its prompts — built exactly as the
//! worker will build them (`kokushi_worker::answer::RunSpec::ask`), counted with the model's own
//! tokenizer (read from its file's header, no weights) — timed with the speed the same model
//! (and adapter) was measured at in its latest finished jobs (`kokushi_shared::cost`).

use std::path::{Path, PathBuf};
use std::sync::Arc;

use kokushi_shared::cost::{Estimate, Prompt};
use kokushi_shared::job::{EvalSettings, JobQuestion, ShotExample};
use kokushi_shared::prompt::ANSWER_OPENING;
use kokushi_worker::answer::{self, RunSpec};

use crate::db::Db;
use crate::error::ApiError;

/// Finished jobs a model's speed is read from.
pub const SPEED_JOBS: usize = 5;

/// What a job puts to its model: enough to rebuild every prompt.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The project whose measured jobs the speed is read from (another project's activity is
    /// not this one's to learn).
    pub project_id: i64,
    pub model: String,
    pub adapter: Option<String>,
    pub settings: EvalSettings,
    pub shot_pool: Vec<ShotExample>,
    pub questions: Vec<JobQuestion>,
    /// A judge's: one verdict letter per question.
    pub one_answer: bool,
}

/// A tokenizer kept per model file version (path, length, modification time).
type CounterKey = (PathBuf, u64, std::time::SystemTime);

/// The tokenizers kept, the latest eight.
type Counters = std::sync::Mutex<Vec<(CounterKey, Arc<kokushi_worker::TokenCounter>)>>;

fn counter_for(path: &Path) -> Result<Arc<kokushi_worker::TokenCounter>, String> {
    static COUNTERS: std::sync::OnceLock<Counters> = std::sync::OnceLock::new();
    let meta = std::fs::metadata(path).map_err(|e| e.to_string())?;
    let key = (
        path.to_path_buf(),
        meta.len(),
        meta.modified().map_err(|e| e.to_string())?,
    );
    let cache = COUNTERS.get_or_init(Default::default);
    if let Some((_, counter)) = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .iter()
        .find(|(k, _)| *k == key)
    {
        return Ok(counter.clone());
    }
    let counter = Arc::new(kokushi_worker::TokenCounter::open(path).map_err(|e| e.to_string())?);
    let mut kept = cache
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if kept.len() >= 8 {
        kept.remove(0);
    }
    kept.push((key, counter.clone()));
    Ok(counter)
}

/// Every prompt of `planned`, counted (blocking: run it off the request threads).
fn count_prompts(store: &Path, planned: &Planned) -> Result<Vec<Prompt>, String> {
    if kokushi_worker::remote::RemoteSpec::parse(&planned.model).is_some() {
        return Err(format!(
            "{} is a remote model: its tokenizer is not at hand, so its prompts cannot be counted",
            planned.model
        ));
    }
    let path = kokushi_worker::resolve_model(store, &planned.model).map_err(|e| e.to_string())?;
    // The reason stays in the server's log: it names paths of the store.
    let counter = counter_for(&path).map_err(|e| {
        tracing::warn!(model = %planned.model, error = %e, "reading a model's tokenizer failed");
        format!("{}: its tokenizer cannot be read", planned.model)
    })?;
    let spec = RunSpec {
        settings: planned.settings.clone(),
        shot_pool: planned.shot_pool.clone(),
        adapter: planned.adapter.clone(),
        one_answer: planned.one_answer,
    };
    planned
        .questions
        .iter()
        .map(|question| {
            let asked = spec.ask(question)?;
            // A chat is counted as its turns' text with the answer's opening: the model's
            // template adds a few tokens of markup a turn.
            let text = match &asked.prompt {
                answer::Prompt::Raw(text) => text.clone(),
                answer::Prompt::Chat(turns) => {
                    let mut text: String = turns.iter().map(|t| t.content.as_str()).collect();
                    text.push_str(ANSWER_OPENING);
                    text
                }
            };
            Ok(Prompt {
                tokens: counter.count(&text).map_err(|e| e.to_string())? as u64,
                generated: asked.continuations.is_none(),
            })
        })
        .collect()
}

/// Estimates counted at once: each tokenizes every prompt of a job, off the request threads.
const AT_ONCE: usize = 2;

fn counting() -> Arc<tokio::sync::Semaphore> {
    static COUNTING: std::sync::OnceLock<Arc<tokio::sync::Semaphore>> = std::sync::OnceLock::new();
    COUNTING
        .get_or_init(|| Arc::new(tokio::sync::Semaphore::new(AT_ONCE)))
        .clone()
}

/// A turn to estimate, taken before any of an estimate's work (the dry run's transaction
/// included): at most [`AT_ONCE`] at a time, another is refused as busy (429). The turn is
/// held until the counting ends, even if the request is dropped.
pub fn turn() -> Result<tokio::sync::OwnedSemaphorePermit, ApiError> {
    counting().try_acquire_owned().map_err(|_| ApiError::Busy {
        message: format!("{AT_ONCE} cost estimates are being counted"),
        retry_after_secs: 2,
    })
}

/// The estimate of `planned`: its prompts counted (holding `turn`), timed with its model's
/// measured speed in its project.
pub async fn estimate(
    db: &Db,
    store: &Path,
    planned: Planned,
    turn: tokio::sync::OwnedSemaphorePermit,
) -> Result<Estimate, ApiError> {
    let works = db
        .measured_works(
            planned.project_id,
            &planned.model,
            planned.adapter.as_deref(),
            SPEED_JOBS,
        )
        .await?;
    let speed = kokushi_shared::cost::speed_of(&works);
    let max_new_tokens = planned.settings.max_new_tokens;
    let store = store.to_path_buf();
    let prompts = tokio::task::spawn_blocking(move || {
        let _turn = turn;
        count_prompts(&store, &planned)
    })
    .await
    .map_err(|e| ApiError::Internal(format!("counting prompts: {e}")))?
    .map_err(ApiError::BadRequest)?;
    Ok(kokushi_shared::cost::estimate(
        &prompts,
        max_new_tokens,
        speed.as_ref(),
    ))
}

/// [`estimate`] for a job being queued, kept with it: a failure is logged, never the job's.
pub async fn keep_estimate(db: &Db, store: &Path, job_id: i64, planned: Planned) {
    // A job being queued waits for its turn rather than going without.
    let Ok(turn) = counting().acquire_owned().await else {
        return;
    };
    match estimate(db, store, planned, turn).await {
        Ok(estimate) => {
            if let Err(e) = db.set_job_estimate(job_id, &estimate).await {
                tracing::warn!(job_id, error = %e, "keeping the job's estimate failed");
            }
        }
        Err(e) => tracing::info!(job_id, reason = %e, "no estimate for the job"),
    }
}
