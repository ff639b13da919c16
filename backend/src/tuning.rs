//! LoRA tunings as queued jobs. A tuning's job is rebuilt from the database (the stored plan
//! and the data exam set) each time it is published — when it is created or retried
//! (`handlers::tunings`) and whenever the queue lost it (`ingest::reconcile`) — so a lost queue
//! loses nothing; a worker that takes a tuning over from one that stopped resumes from the
//! adapter folder's last checkpoint (when the store is shared).

use kokushi_shared::Question;
use kokushi_shared::job::{Job, TuneJob};
use kokushi_shared::prompt::PromptFormat;
use kokushi_worker::tune::RunPlan;

use crate::db::tunings::TuningJobRow;
use crate::db::{Db, DbError};

/// The training and validation examples of a plan: the data exam set's questions with
/// published answers, in the plan's prompt format, split by its seed.
pub(crate) fn examples_of(
    plan: &RunPlan,
    questions: &[Question],
) -> Result<
    (
        Vec<kokushi_shared::tuning::Example>,
        Vec<kokushi_shared::tuning::Example>,
    ),
    String,
> {
    let format = PromptFormat::from_id(&plan.prompt_format)
        .ok_or_else(|| format!("unknown prompt format {:?}", plan.prompt_format))?;
    let examples = kokushi_shared::tuning::question_examples(questions, format);
    Ok(kokushi_shared::tuning::split(
        examples,
        plan.validation_share,
        plan.seed,
    ))
}

/// The job of a tuning row, rebuilt from its plan and data.
pub async fn job_of(db: &Db, row: &TuningJobRow) -> Result<Job, DbError> {
    let plan: RunPlan =
        serde_json::from_str(&row.plan).map_err(|e| crate::db::corrupt("tunings", "plan", e))?;
    let questions = db.exam_questions(row.data_exam_set_id).await?;
    let (train, validation) =
        examples_of(&plan, &questions).map_err(|e| crate::db::corrupt("tunings", "plan", e))?;
    Ok(tune_job(row, &plan, train, validation))
}

/// The job a tuning row and its examples make.
pub(crate) fn tune_job(
    row: &TuningJobRow,
    plan: &RunPlan,
    train: Vec<kokushi_shared::tuning::Example>,
    validation: Vec<kokushi_shared::tuning::Example>,
) -> Job {
    Job::Tune(TuneJob {
        job_id: row.job_id,
        attempt: row.attempt,
        tuning_id: row.tuning_id,
        base_model: row.base_model.clone(),
        adapter: row.adapter.clone(),
        plan: Box::new(plan.clone()),
        train,
        validation,
        priority: row.priority,
        needs: Default::default(),
    })
}
