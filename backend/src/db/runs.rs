//! Runs, their jobs and the answers workers send back.

use kokushi_shared::api::{QuestionResult, RunDetail, RunStatus, RunSummary, ScoredAnswer};
use kokushi_shared::extract::Extracted;
use kokushi_shared::igakuqa::credit_for;
use kokushi_shared::job::{
    AnswerRecord, EvalJob, EvalSettings, JobQuestion, Priority, Scoring, ShotExample, shot_pool_for,
};
use kokushi_shared::metric::{Tally, lenient_correct};
use kokushi_shared::prompt::PromptFormat;
use sqlx::Row;

use super::exam_sets::question_from_body;
use super::{Db, DbError, corrupt, flag, to_u32};
use crate::clock::now_rfc3339;

/// What a new run asks.
#[derive(Debug, Clone)]
pub struct NewRun {
    pub exam_set_id: i64,
    pub model: String,
    pub adapter: Option<String>,
    /// How each question is put and answered.
    pub settings: EvalSettings,
    /// Where worked examples come from (`settings.shots > 0`): this exam set, or the run's own.
    pub shot_pool_exam_set_id: Option<i64>,
    pub limit: Option<u32>,
    pub priority: Priority,
    /// The account that asked for it (`None` from the command line).
    pub created_by: Option<i64>,
    /// The project it belongs to: its exam sets (and shot pool) must be ones the project
    /// reads, or no run is made.
    pub project_id: i64,
}

/// Which runs a leaderboard lists.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Board {
    /// One project's runs.
    Project(i64),
    /// The runs every project has published (`POST /api/runs/{id}/publish`).
    Portal,
    /// Every run of every project: the command line and the server's own bookkeeping.
    All,
}

impl Board {
    /// The condition on `runs r` it adds; binds nothing.
    fn condition(self) -> String {
        match self {
            Board::Project(p) => format!("r.project_id = {p}"),
            Board::Portal => "r.id IN (SELECT run_id FROM published_runs)".to_owned(),
            Board::All => "1 = 1".to_owned(),
        }
    }
}

const RUN_COLUMNS: &str = "r.id, r.model, r.adapter, r.prompt_format, r.status, r.total, r.error, \
     r.created_at, r.scoring, e.name AS exam_set, r.tally_answered, r.tally_correct, r.tally_unparsed, \
     r.tally_points, r.tally_points_possible, r.year_verdicts, r.text_metrics, r.eval_settings, \
     r.max_new_tokens, (SELECT p.name FROM projects p WHERE p.id = r.project_id) AS project_name, \
     (SELECT COUNT(*) FROM published_runs pr WHERE pr.run_id = r.id) AS published";

/// A run's questions in order with their answers so far (none yet: NULLs); binds the run id as
/// `$1` and its exam set as `$2`.
const RUN_QUESTIONS_WITH_ANSWERS: &str = "FROM run_questions rq \
     JOIN questions q ON q.exam_set_id = $2 AND q.problem_id = rq.problem_id \
     LEFT JOIN answers a ON a.run_id = rq.run_id AND a.problem_id = rq.problem_id \
     WHERE rq.run_id = $1 ORDER BY rq.position";

impl Db {
    /// Creates a queued run over the exam set's text-only questions (the first `limit` of them)
    /// and its job, in one transaction. Returns the job to publish, or `None` when the exam set
    /// does not exist.
    pub async fn create_run(&self, new: &NewRun) -> Result<Option<EvalJob>, DbError> {
        let mut tx = self.begin_write().await?;
        let job = Self::insert_run(&mut tx, new).await?;
        if job.is_some() {
            tx.commit().await?;
        }
        Ok(job)
    }

    /// The job [`Db::create_run`] would make of `new`, with nothing written (its transaction is
    /// rolled back): what a cost estimate's dry run puts to the model.
    pub async fn preview_run(&self, new: &NewRun) -> Result<Option<EvalJob>, DbError> {
        let mut tx = self.begin_write().await?;
        let job = Self::insert_run(&mut tx, new).await?;
        tx.rollback().await?;
        Ok(job)
    }

    /// [`Db::create_run`] inside the caller's transaction.
    pub(crate) async fn insert_run(
        tx: &mut sqlx::Transaction<'static, sqlx::Any>,
        new: &NewRun,
    ) -> Result<Option<EvalJob>, DbError> {
        let pool_set = new.shot_pool_exam_set_id.unwrap_or(new.exam_set_id);
        let shots_from_own = new.settings.shots > 0 && pool_set == new.exam_set_id;
        // All of the set when its questions are also the worked examples, else the first `limit`.
        let limit = new.limit.map(|l| l as usize).filter(|_| !shots_from_own);
        let own = text_only_questions(&mut **tx, new.exam_set_id, limit).await?;
        // The project's own sets and those shared with it; any other set is as if missing.
        for set in [new.exam_set_id, pool_set] {
            let readable = sqlx::query(
                "SELECT id FROM exam_sets e WHERE e.id = $1 AND (e.project_id = $2 OR e.id IN \
                 (SELECT s.exam_set_id FROM exam_set_shares s WHERE s.project_id = $2))",
            )
            .bind(set)
            .bind(new.project_id)
            .fetch_optional(&mut **tx)
            .await?
            .is_some();
            if !readable {
                return Ok(None);
            }
        }
        let take = new.limit.map_or(own.len(), |l| own.len().min(l as usize));
        let asked: Vec<JobQuestion> = own[..take].iter().map(JobQuestion::of).collect();
        let shot_pool = if new.settings.shots == 0 {
            Vec::new()
        } else if shots_from_own {
            shot_pool(&own, pool_set, &new.settings, &asked)?
        } else {
            let pool = text_only_questions(&mut **tx, pool_set, None).await?;
            shot_pool(&pool, pool_set, &new.settings, &asked)?
        };
        let now = now_rfc3339();
        let run_id: i64 = sqlx::query(
            "INSERT INTO runs (exam_set_id, model, prompt_format, question_limit, max_new_tokens, \
                               status, total, created_at, priority, created_by, adapter, scoring, \
                               eval_settings, shot_pool_exam_set_id, project_id) \
             VALUES ($1, $2, $3, $4, $5, 'queued', $6, $7, $8, $9, $10, $11, $12, $13, $14) \
             RETURNING id",
        )
        .bind(new.exam_set_id)
        .bind(&new.model)
        .bind(prompt_column(&new.settings))
        .bind(new.limit.map(i64::from))
        .bind(i64::from(new.settings.max_new_tokens))
        .bind(i64::try_from(take).unwrap_or(i64::MAX))
        .bind(&now)
        .bind(new.priority.as_str())
        .bind(new.created_by)
        .bind(&new.adapter)
        .bind(new.settings.scoring.as_str())
        .bind(settings_column(&new.settings))
        .bind(new.shot_pool_exam_set_id)
        .bind(new.project_id)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        for (position, question) in asked.iter().enumerate() {
            sqlx::query(
                "INSERT INTO run_questions (run_id, position, problem_id) VALUES ($1, $2, $3)",
            )
            .bind(run_id)
            .bind(i64::try_from(position).unwrap_or(i64::MAX))
            .bind(&question.problem_id)
            .execute(&mut **tx)
            .await?;
        }
        let job_id: i64 = sqlx::query(
            "INSERT INTO jobs (run_id, kind, status, created_at, updated_at) \
             VALUES ($1, 'eval', 'queued', $2, $2) RETURNING id",
        )
        .bind(run_id)
        .bind(&now)
        .fetch_one(&mut **tx)
        .await?
        .try_get("id")?;
        Ok(Some(EvalJob {
            job_id,
            attempt: 1,
            run_id,
            model: new.model.clone(),
            adapter: new.adapter.clone(),
            settings: new.settings.clone(),
            questions: asked,
            shot_pool,
            priority: new.priority,
            // Filled in as the job is published (`routing::needs`).
            needs: Default::default(),
        }))
    }

    /// A run with the same exam set, model, prompt format, scoring and limit, if one exists.
    pub async fn find_run(&self, new: &NewRun) -> Result<Option<i64>, DbError> {
        let row = sqlx::query(
            "SELECT id FROM runs WHERE exam_set_id = $1 AND model = $2 AND prompt_format = $3 \
             AND COALESCE(question_limit, -1) = $4 AND scoring = $5 \
             AND COALESCE(eval_settings, '') = $6 ORDER BY id DESC LIMIT 1",
        )
        .bind(new.exam_set_id)
        .bind(&new.model)
        .bind(prompt_column(&new.settings))
        .bind(new.limit.map_or(-1, i64::from))
        .bind(new.settings.scoring.as_str())
        .bind(settings_column(&new.settings))
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(|r| r.try_get("id")).transpose()?)
    }

    /// Jobs of unfinished runs, each with only the questions not yet answered: what to
    /// publish again when the queue may have lost them (a restart of the embedded mode, a
    /// Redis flush). Answers are stored idempotently, so a repeat costs time, never a result.
    pub async fn unfinished_jobs(&self) -> Result<Vec<EvalJob>, DbError> {
        self.jobs_of_unfinished(None).await
    }

    /// The job of one unfinished run, with the questions it still lacks answers to.
    pub async fn unfinished_job(&self, run_id: i64) -> Result<Option<EvalJob>, DbError> {
        Ok(self
            .jobs_of_unfinished(Some(run_id))
            .await?
            .into_iter()
            .next())
    }

    async fn jobs_of_unfinished(&self, run_id: Option<i64>) -> Result<Vec<EvalJob>, DbError> {
        let runs = sqlx::query(
            "SELECT j.id AS job_id, j.attempt, r.id AS run_id, r.model, r.adapter, r.prompt_format, \
                    r.max_new_tokens, r.exam_set_id, r.priority, r.scoring, r.eval_settings, \
                    r.shot_pool_exam_set_id \
             FROM jobs j JOIN runs r ON r.id = j.run_id \
             WHERE r.status IN ('queued', 'running') AND ($1 < 0 OR r.id = $1) ORDER BY j.id",
        )
        .bind(run_id.unwrap_or(-1))
        .fetch_all(&self.pool)
        .await?;
        let mut jobs = Vec::new();
        for run in runs {
            let run_id: i64 = run.try_get("run_id")?;
            let settings = settings_of(&run)?;
            let rows = sqlx::query(
                "SELECT q.problem_id, q.body FROM run_questions rq \
                 JOIN questions q ON q.exam_set_id = $2 AND q.problem_id = rq.problem_id \
                 WHERE rq.run_id = $1 AND NOT EXISTS \
                   (SELECT 1 FROM answers a WHERE a.run_id = rq.run_id AND a.problem_id = rq.problem_id) \
                 ORDER BY rq.position",
            )
            .bind(run_id)
            .bind(run.try_get::<i64, _>("exam_set_id")?)
            .fetch_all(&self.pool)
            .await?;
            let mut questions = Vec::with_capacity(rows.len());
            for row in rows {
                let q = question_from_body(&row.try_get::<String, _>("body")?)?;
                questions.push(JobQuestion::of(&q));
            }
            let shot_pool = if settings.shots == 0 {
                Vec::new()
            } else {
                let pool_set = run
                    .try_get::<Option<i64>, _>("shot_pool_exam_set_id")?
                    .unwrap_or(run.try_get("exam_set_id")?);
                let pool = text_only_questions(&self.pool, pool_set, None).await?;
                // A pool that no longer gives every question its examples (the set changed
                // since the run was made) goes out empty: the worker fails the job and says so.
                shot_pool(&pool, pool_set, &settings, &questions).unwrap_or_default()
            };
            jobs.push(EvalJob {
                job_id: run.try_get("job_id")?,
                attempt: to_u32(run.try_get("attempt")?),
                run_id,
                model: run.try_get("model")?,
                adapter: run.try_get("adapter")?,
                settings,
                questions,
                shot_pool,
                priority: {
                    let p: String = run.try_get("priority")?;
                    Priority::parse(&p).ok_or_else(|| corrupt("runs", "priority", &p))?
                },
                needs: Default::default(),
            });
        }
        Ok(jobs)
    }

    /// A board's runs with their tallies, newest first.
    pub async fn leaderboard(
        &self,
        board: Board,
        page: Option<crate::page::Page>,
    ) -> Result<Vec<RunSummary>, DbError> {
        let rows = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN exam_sets e ON e.id = r.exam_set_id \
             WHERE {} ORDER BY r.id DESC {}",
            board.condition(),
            page.map(|p| p.sql()).unwrap_or_default()
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| run_from_row(row, stored_tally(row)?))
            .collect()
    }

    /// How many runs a board lists.
    pub async fn run_count(&self, board: Board) -> Result<u64, DbError> {
        let row = sqlx::query(&format!(
            "SELECT COUNT(*) AS n FROM runs r WHERE {}",
            board.condition()
        ))
        .fetch_one(&self.pool)
        .await?;
        Ok(u64::try_from(row.try_get::<i64, _>("n")?).unwrap_or(0))
    }

    /// One run with its tally, reading only that run's answers.
    pub async fn run_summary(&self, id: i64) -> Result<Option<RunSummary>, DbError> {
        let Some(row) = sqlx::query(&format!(
            "SELECT {RUN_COLUMNS} FROM runs r JOIN exam_sets e ON e.id = r.exam_set_id \
             WHERE r.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        run_from_row(&row, stored_tally(&row)?).map(Some)
    }

    /// Run `id`'s row as [`run_from_row`] reads it (`RUN_COLUMNS`), with its exam set's id.
    async fn run_row(&self, id: i64) -> Result<Option<sqlx::any::AnyRow>, DbError> {
        Ok(sqlx::query(&format!(
            "SELECT {RUN_COLUMNS}, r.exam_set_id FROM runs r \
             JOIN exam_sets e ON e.id = r.exam_set_id WHERE r.id = $1"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// A run and every question it asks, with the answers received so far.
    pub async fn run_detail(&self, id: i64) -> Result<Option<RunDetail>, DbError> {
        let Some(row) = self.run_row(id).await? else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT q.body, a.raw_output, a.extracted, a.rules_version, a.correct, a.unparsed, \
                    a.points, a.latency_ms, a.choice_logprobs {RUN_QUESTIONS_WITH_ANSWERS}"
        ))
        .bind(id)
        .bind(row.try_get::<i64, _>("exam_set_id")?)
        .fetch_all(&self.pool)
        .await?;
        let mut tally = Tally::default();
        let mut rules_version = None;
        let mut questions = Vec::with_capacity(rows.len());
        for r in &rows {
            let (question, scored) = question_result(r)?;
            if let Some((correct, unparsed, points, version)) = scored {
                tally.add(correct, unparsed, points);
                rules_version = version;
            }
            questions.push(question);
        }
        let mut specialties: Vec<String> = questions
            .iter()
            .filter_map(|q| q.specialty.clone())
            .collect();
        specialties.sort();
        specialties.dedup();
        Ok(Some(RunDetail {
            waiting: None,
            run: run_from_row(&row, tally)?,
            rules_version,
            credit: credit_for(questions.iter().map(|q| q.problem_id.as_str())),
            questions,
            specialties,
        }))
    }

    /// Run `id`'s stored summary and its exam set's id; `None` for no such run.
    pub async fn run_head(&self, id: i64) -> Result<Option<(i64, RunSummary)>, DbError> {
        let Some(row) = self.run_row(id).await? else {
            return Ok(None);
        };
        Ok(Some((
            row.try_get("exam_set_id")?,
            run_from_row(&row, stored_tally(&row)?)?,
        )))
    }

    /// Run `id`'s exam set and how many answers it has (`tally_answered`, raised in the
    /// transaction that adds each): what says whether its [`RunOutcomes`] read before are
    /// current. `None` for no such run.
    pub async fn run_set_and_answered(&self, id: i64) -> Result<Option<(i64, u32)>, DbError> {
        let Some(row) = sqlx::query("SELECT exam_set_id, tally_answered FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some((
            row.try_get("exam_set_id")?,
            to_u32(row.try_get("tally_answered")?),
        )))
    }

    /// Run `id`'s questions in order, each with its outcome once answered, and the rules
    /// version of its last answer in question order (empty for no such run).
    pub async fn run_outcomes(&self, id: i64) -> Result<RunOutcomes, DbError> {
        let questions = self.question_outcomes(id).await?;
        let rules_version: Option<String> = sqlx::query(
            "SELECT a.rules_version FROM run_questions rq JOIN answers a \
             ON a.run_id = rq.run_id AND a.problem_id = rq.problem_id \
             WHERE rq.run_id = $1 ORDER BY rq.position DESC LIMIT 1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .map(|r| r.try_get("rules_version"))
        .transpose()?;
        Ok(RunOutcomes {
            questions,
            rules_version,
        })
    }

    async fn question_outcomes(&self, id: i64) -> Result<Vec<IndexedQuestion>, DbError> {
        let rows = sqlx::query(
            "SELECT rq.problem_id, a.correct, a.unparsed FROM run_questions rq \
             LEFT JOIN answers a ON a.run_id = rq.run_id AND a.problem_id = rq.problem_id \
             WHERE rq.run_id = $1 ORDER BY rq.position",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let correct: Option<i64> = r.try_get("correct")?;
                let unparsed: Option<i64> = r.try_get("unparsed")?;
                Ok(IndexedQuestion {
                    problem_id: r.try_get("problem_id")?,
                    answer: correct.map(|c| (c != 0, unparsed.unwrap_or(0) != 0)),
                })
            })
            .collect()
    }

    /// What a page of a run's questions is filtered by, for every question of exam set
    /// `exam_set_id` (exam sets never change once stored: [`crate::state::QuestionFacts`]
    /// keeps these).
    pub async fn question_facts(
        &self,
        exam_set_id: i64,
    ) -> Result<std::collections::HashMap<String, QuestionFact>, DbError> {
        let bodies: Vec<String> = sqlx::query("SELECT body FROM questions WHERE exam_set_id = $1")
            .bind(exam_set_id)
            .fetch_all(&self.pool)
            .await?
            .iter()
            .map(|r| r.try_get("body"))
            .collect::<Result<_, _>>()?;
        // Parsing every body of a large set is a few tens of milliseconds: off the request
        // threads.
        tokio::task::spawn_blocking(move || {
            bodies
                .iter()
                .map(|body| {
                    let q = question_from_body(body)?;
                    Ok((
                        q.problem_id,
                        QuestionFact {
                            gold_letters: kokushi_shared::api::gold_letters(&q.gold),
                            specialty: q.meta.specialty,
                        },
                    ))
                })
                .collect()
        })
        .await
        .map_err(|e| corrupt("questions", "body", format!("exam set {exam_set_id}: {e}")))?
    }

    /// The questions `problem_ids` of run `id` (of exam set `exam_set_id`) with their answers,
    /// in the run's order; ids the run does not ask are left out.
    pub async fn run_questions(
        &self,
        id: i64,
        exam_set_id: i64,
        problem_ids: &[String],
    ) -> Result<Vec<QuestionResult>, DbError> {
        let mut out = Vec::with_capacity(problem_ids.len());
        for chunk in problem_ids.chunks(super::IN_CHUNK) {
            let list = super::placeholders_from(3, chunk.len());
            let sql = format!(
                "SELECT rq.position, q.body, a.raw_output, a.extracted, a.rules_version, \
                        a.correct, a.unparsed, a.points, a.latency_ms, a.choice_logprobs \
                 FROM run_questions rq \
                 JOIN questions q ON q.exam_set_id = $2 AND q.problem_id = rq.problem_id \
                 LEFT JOIN answers a ON a.run_id = rq.run_id AND a.problem_id = rq.problem_id \
                 WHERE rq.run_id = $1 AND rq.problem_id IN ({list})"
            );
            let query = chunk
                .iter()
                .fold(sqlx::query(&sql).bind(id).bind(exam_set_id), |q, p| {
                    q.bind(p.as_str())
                });
            for r in query.fetch_all(&self.pool).await? {
                let position: i64 = r.try_get("position")?;
                out.push((position, question_result(&r)?.0));
            }
        }
        out.sort_by_key(|(position, _)| *position);
        Ok(out.into_iter().map(|(_, q)| q).collect())
    }

    /// A run's questions (with everything the exam set says of them) and the raw output
    /// received for each so far, for scoring with `shared::score`; `None` for no such run.
    pub async fn run_predictions(
        &self,
        id: i64,
    ) -> Result<
        Option<(
            Vec<kokushi_shared::Question>,
            std::collections::BTreeMap<String, kokushi_shared::score::Reply>,
        )>,
        DbError,
    > {
        let Some(row) = sqlx::query("SELECT exam_set_id FROM runs WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        let rows = sqlx::query(&format!(
            "SELECT q.body, a.raw_output {RUN_QUESTIONS_WITH_ANSWERS}"
        ))
        .bind(id)
        .bind(row.try_get::<i64, _>("exam_set_id")?)
        .fetch_all(&self.pool)
        .await?;
        let mut questions = Vec::with_capacity(rows.len());
        let mut predictions = std::collections::BTreeMap::new();
        for r in rows {
            let q = question_from_body(&r.try_get::<String, _>("body")?)?;
            if let Some(raw) = r.try_get::<Option<String>, _>("raw_output")? {
                predictions.insert(q.problem_id.clone(), raw.into());
            }
            questions.push(q);
        }
        Ok(Some((questions, predictions)))
    }

    /// Scores and stores one answer; a repeat of an answer already stored changes nothing.
    /// Returns false for an answer to a question the run does not ask.
    pub async fn record_answer(&self, run_id: i64, record: &AnswerRecord) -> Result<bool, DbError> {
        let Some(row) = sqlx::query(
            "SELECT q.body FROM run_questions rq JOIN runs r ON r.id = rq.run_id \
             JOIN questions q ON q.exam_set_id = r.exam_set_id AND q.problem_id = rq.problem_id \
             WHERE rq.run_id = $1 AND rq.problem_id = $2",
        )
        .bind(run_id)
        .bind(&record.problem_id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(false);
        };
        let question = question_from_body(&row.try_get::<String, _>("body")?)?;
        let correct = lenient_correct(&question.gold, &record.raw_output, &record.extracted);
        let extracted = serde_json::to_string(&record.extracted)
            .map_err(|e| corrupt("answers", "extracted", e))?;
        let unparsed = record.extracted.is_unparsed();
        let mut tx = self.begin_write().await?;
        let inserted = sqlx::query(
            "INSERT INTO answers (run_id, problem_id, raw_output, extracted, rules_version, correct, \
                                  unparsed, points, prompt_tokens, generated_tokens, latency_ms, created_at, \
                                  choice_logprobs, choice_logprob_means, generated, error) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16) \
             ON CONFLICT (run_id, problem_id) DO NOTHING",
        )
        .bind(run_id)
        .bind(&record.problem_id)
        .bind(&record.raw_output)
        .bind(extracted)
        .bind(&record.rules_version)
        .bind(flag(correct))
        .bind(flag(unparsed))
        .bind(i64::from(question.points))
        .bind(i64::from(record.prompt_tokens))
        .bind(i64::from(record.generated_tokens))
        .bind(i64::try_from(record.latency_ms).unwrap_or(i64::MAX))
        .bind(now_rfc3339())
        .bind(logprobs_json(record, record.choice_logprobs.as_deref(), question.choices.len()))
        .bind(logprobs_json(
            record,
            record.choice_logprob_means.as_deref(),
            question.choices.len(),
        ))
        .bind(flag(record.generated))
        .bind(record.error.as_deref().map(|e| bounded(e, 2000)))
        .execute(&mut *tx)
        .await?
        .rows_affected();
        // Only a new answer counts: a second copy of the event changes nothing.
        if inserted == 1 {
            let points = i64::from(question.points);
            sqlx::query(
                "UPDATE runs SET tally_answered = tally_answered + 1, \
                 tally_correct = tally_correct + $2, tally_unparsed = tally_unparsed + $3, \
                 tally_points = tally_points + $4, tally_points_possible = tally_points_possible + $5 \
                 WHERE id = $1",
            )
            .bind(run_id)
            .bind(flag(correct))
            .bind(flag(unparsed))
            .bind(if correct { points } else { 0 })
            .bind(points)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(true)
    }

    /// How many runs there are in each status.
    pub async fn run_counts(&self) -> Result<std::collections::BTreeMap<String, i64>, DbError> {
        let rows = sqlx::query("SELECT status, COUNT(*) AS n FROM runs GROUP BY status")
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("status")?, r.try_get("n")?)))
            .collect()
    }

    /// Seconds from creation to the end of the last `limit` finished runs.
    pub async fn recent_run_durations(&self, limit: i64) -> Result<Vec<f64>, DbError> {
        let rows = sqlx::query(
            "SELECT created_at, finished_at FROM runs WHERE finished_at IS NOT NULL \
             ORDER BY id DESC LIMIT $1",
        )
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let created: String = r.try_get("created_at")?;
            let finished: String = r.try_get("finished_at")?;
            if let (Some(a), Some(b)) = (
                crate::clock::parse_unix(&created),
                crate::clock::parse_unix(&finished),
            ) {
                #[allow(clippy::cast_precision_loss)]
                out.push((b - a).max(0) as f64);
            }
        }
        Ok(out)
    }

    /// The extraction rules of a run's answers, as [`Db::run_detail`] reports them (those of
    /// the last answered question in the run's order), without reading every answer.
    pub async fn rules_version_of(&self, run_id: i64) -> Result<Option<String>, DbError> {
        let row = sqlx::query(
            "SELECT a.rules_version FROM answers a JOIN run_questions rq \
                 ON rq.run_id = a.run_id AND rq.problem_id = a.problem_id \
             WHERE a.run_id = $1 ORDER BY rq.position DESC LIMIT 1",
        )
        .bind(run_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(match row {
            Some(r) => r.try_get("rules_version")?,
            None => None,
        })
    }

    /// What a run's lineage is read from.
    pub async fn run_lineage_row(&self, id: i64) -> Result<Option<LineageRow>, DbError> {
        let Some(r) = sqlx::query(
            "SELECT exam_set_id, model, adapter, prompt_format, max_new_tokens, model_info, \
                    worker, tuning_id, scoring, eval_settings, prompt_id, shot_pool_exam_set_id \
             FROM runs WHERE id = $1",
        )
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        else {
            return Ok(None);
        };
        Ok(Some(LineageRow {
            exam_set_id: r.try_get("exam_set_id")?,
            model: r.try_get("model")?,
            adapter: r.try_get("adapter")?,
            prompt_format: r.try_get("prompt_format")?,
            model_info: r.try_get("model_info")?,
            worker: r.try_get("worker")?,
            tuning_id: r.try_get("tuning_id")?,
            settings: settings_of(&r)?,
            prompt_id: r.try_get("prompt_id")?,
            shot_pool_exam_set_id: r.try_get("shot_pool_exam_set_id")?,
        }))
    }

    /// The project's newest tuning that writes `adapter`.
    pub async fn tuning_of_adapter(
        &self,
        scope: &super::projects::Scope,
        adapter: &str,
    ) -> Result<Option<i64>, DbError> {
        let row =
            sqlx::query("SELECT MAX(id) AS id FROM tunings WHERE adapter = $1 AND project_id = $2")
                .bind(adapter)
                .bind(scope.project)
                .fetch_one(&self.pool)
                .await?;
        Ok(row.try_get("id")?)
    }

    /// Adapters in the model store that another project's tunings wrote: neither listed to
    /// `scope`'s project nor usable by its runs.
    pub async fn foreign_adapters(
        &self,
        scope: &super::projects::Scope,
    ) -> Result<std::collections::BTreeSet<String>, DbError> {
        sqlx::query(
            "SELECT DISTINCT adapter FROM tunings WHERE project_id <> $1 AND adapter NOT IN \
             (SELECT adapter FROM tunings WHERE project_id = $1)",
        )
        .bind(scope.project)
        .fetch_all(&self.pool)
        .await?
        .iter()
        .map(|r| Ok(r.try_get("adapter")?))
        .collect()
    }

    /// Stores a succeeded run's per-year verdicts and text metrics.
    pub async fn set_final_scores(
        &self,
        run_id: i64,
        years: &[kokushi_shared::api::YearVerdict],
        metrics: &kokushi_shared::api::RunMetrics,
    ) -> Result<(), DbError> {
        let encode = |column: &'static str, json: serde_json::Result<String>| {
            json.map_err(|e| DbError::Corrupt {
                table: "runs",
                column,
                message: e.to_string(),
            })
        };
        let years = encode("year_verdicts", serde_json::to_string(years))?;
        let metrics = encode("text_metrics", serde_json::to_string(metrics))?;
        sqlx::query("UPDATE runs SET year_verdicts = $2, text_metrics = $3 WHERE id = $1")
            .bind(run_id)
            .bind(years)
            .bind(metrics)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Succeeded runs whose per-year verdicts or text metrics are not stored yet (runs
    /// finished before they were kept).
    pub async fn runs_without_final_scores(&self) -> Result<Vec<i64>, DbError> {
        let rows = sqlx::query(
            "SELECT id FROM runs WHERE status = 'succeeded' \
             AND (year_verdicts IS NULL OR text_metrics IS NULL) ORDER BY id",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(|r| Ok(r.try_get("id")?)).collect()
    }

    /// How many jobs (runs and tunings) `user_id` has waiting in the queue.
    pub async fn queued_jobs_of(&self, user_id: i64) -> Result<i64, DbError> {
        let row = sqlx::query(
            "SELECT (SELECT COUNT(*) FROM runs WHERE created_by = $1 AND status = 'queued') \
                  + (SELECT COUNT(*) FROM tunings WHERE created_by = $1 AND status = 'queued') \
                  + (SELECT COUNT(*) FROM judge_runs WHERE created_by = $1 AND status = 'queued') \
                 AS n",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }
}

/// What a run's page is summed and its questions chosen from ([`Db::run_outcomes`]). It
/// changes only when an answer is added: a run's questions are fixed when it is created, and an
/// answer is never changed or removed once stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunOutcomes {
    /// In the run's order.
    pub questions: Vec<IndexedQuestion>,
    /// The rules version of its last answer in question order.
    pub rules_version: Option<String>,
}

impl RunOutcomes {
    /// How many of its questions are answered.
    pub fn answered(&self) -> usize {
        self.questions.iter().filter(|q| q.answer.is_some()).count()
    }
}

/// What a page of a run's questions is filtered by.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuestionFact {
    pub specialty: Option<String>,
    /// Letters of the gold answer (1 for a number or a ruling).
    pub gold_letters: usize,
}

/// A question of a run, without its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedQuestion {
    pub problem_id: String,
    /// Once answered: whether rightly, and whether nothing could be read of the answer.
    pub answer: Option<(bool, bool)>,
}

/// A question of a run with its answer, from a row of its body and the answer's columns; with
/// the answer, what a tally counts of it (correct, unparsed, points) and its rules version.
#[allow(clippy::type_complexity)]
fn question_result(
    r: &sqlx::any::AnyRow,
) -> Result<(QuestionResult, Option<(bool, bool, u32, Option<String>)>), DbError> {
    let q = question_from_body(&r.try_get::<String, _>("body")?)?;
    let raw: Option<String> = r.try_get("raw_output")?;
    let (answer, scored) = match raw {
        Some(raw_output) => {
            let correct = r.try_get::<Option<i64>, _>("correct")?.unwrap_or(0) != 0;
            let unparsed = r.try_get::<Option<i64>, _>("unparsed")?.unwrap_or(0) != 0;
            let points = to_u32(r.try_get::<Option<i64>, _>("points")?.unwrap_or(0));
            let version: Option<String> = r.try_get("rules_version")?;
            let extracted: String = r
                .try_get::<Option<String>, _>("extracted")?
                .unwrap_or_default();
            (
                Some(ScoredAnswer {
                    raw_output,
                    extracted: serde_json::from_str::<Extracted>(&extracted)
                        .map_err(|e| corrupt("answers", "extracted", e))?,
                    correct,
                    latency_ms: u64::try_from(
                        r.try_get::<Option<i64>, _>("latency_ms")?.unwrap_or(0),
                    )
                    .unwrap_or(0),
                    choice_logprobs: stored_numbers(r, "choice_logprobs")?,
                }),
                Some((correct, unparsed, points, version)),
            )
        }
        None => (None, None),
    };
    Ok((
        QuestionResult {
            specialty: q.meta.specialty,
            problem_id: q.problem_id,
            text: q.text,
            choices: q.choices,
            gold: q.gold,
            points: q.points,
            answer,
        },
        scored,
    ))
}

/// The columns of a run its lineage is read from.
pub struct LineageRow {
    pub exam_set_id: i64,
    pub model: String,
    pub adapter: Option<String>,
    pub prompt_format: String,
    pub model_info: Option<String>,
    pub worker: Option<String>,
    pub tuning_id: Option<i64>,
    pub settings: EvalSettings,
    /// What the worker reported (with a chat template, which one); `None` before it started.
    pub prompt_id: Option<String>,
    pub shot_pool_exam_set_id: Option<i64>,
}

/// The tally kept in a run's row (`RUN_COLUMNS`).
fn stored_tally(row: &sqlx::any::AnyRow) -> Result<Tally, DbError> {
    Ok(Tally {
        answered: to_u32(row.try_get("tally_answered")?),
        correct: to_u32(row.try_get("tally_correct")?),
        parse_failures: to_u32(row.try_get("tally_unparsed")?),
        points: to_u32(row.try_get("tally_points")?),
        points_possible: to_u32(row.try_get("tally_points_possible")?),
    })
}

/// The record's log-probabilities as stored: one finite number (or −∞) per choice, else
/// nothing (a worker's mistake must not put a half list on the question page).
fn logprobs_json(record: &AnswerRecord, values: Option<&[f64]>, choices: usize) -> Option<String> {
    let values = values?;
    let valid = values.len() == choices && values.iter().all(|v| !v.is_nan() && *v <= 0.0);
    if !valid {
        tracing::warn!(problem_id = %record.problem_id, "log-probabilities that do not fit the choices; not stored");
        return None;
    }
    // JSON has no −∞: a choice the model rules out entirely is stored as the lowest float.
    let finite: Vec<f64> = values.iter().map(|v| v.max(f64::MIN)).collect();
    serde_json::to_string(&finite).ok()
}

/// A JSON list of numbers stored in the answers' `column`, if any.
pub(super) fn stored_numbers(
    row: &sqlx::any::AnyRow,
    column: &'static str,
) -> Result<Option<Vec<f64>>, DbError> {
    row.try_get::<Option<String>, _>(column)?
        .map(|json| serde_json::from_str(&json).map_err(|e| corrupt("answers", column, e)))
        .transpose()
}

/// The text-only questions of exam set `exam_set_id` in order (the first `limit` of them).
async fn text_only_questions<'c>(
    executor: impl sqlx::Executor<'c, Database = sqlx::Any>,
    exam_set_id: i64,
    limit: Option<usize>,
) -> Result<Vec<kokushi_shared::Question>, DbError> {
    let rows = sqlx::query(
        "SELECT body FROM questions WHERE exam_set_id = $1 AND text_only = 1 ORDER BY position",
    )
    .bind(exam_set_id)
    .fetch_all(executor)
    .await?;
    rows.iter()
        .take(limit.unwrap_or(usize::MAX))
        .map(|row| question_from_body(&row.try_get::<String, _>("body")?))
        .collect()
}

/// The worked examples `questions` pick under `settings` from `pool`, the text-only questions
/// of exam set `pool_set`; refused when one gets fewer than asked.
fn shot_pool(
    pool: &[kokushi_shared::Question],
    pool_set: i64,
    settings: &EvalSettings,
    questions: &[JobQuestion],
) -> Result<Vec<ShotExample>, DbError> {
    if pool.is_empty() {
        return Err(DbError::Refused(format!(
            "shot_pool_exam_set_id {pool_set}: no such exam set, or it has no text-only questions"
        )));
    }
    let pool: Vec<ShotExample> = pool.iter().filter_map(ShotExample::from_question).collect();
    let (k, seed) = (settings.shots as usize, settings.shot_seed);
    if let Some(short) = questions
        .iter()
        .find(|q| kokushi_shared::job::pick_shots(&pool, q, k, seed).len() < k)
    {
        return Err(DbError::Refused(format!(
            "shots {k}: too few worked examples for {} among the single-answer, text-only \
             questions of other exams in exam set {pool_set}; choose a shot pool with another \
             year's questions",
            short.problem_id
        )));
    }
    Ok(shot_pool_for(&pool, questions, k, seed))
}

/// At most `max` bytes of `text`, cut at a character boundary.
fn bounded(text: &str, max: usize) -> &str {
    let mut end = text.len().min(max);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The `prompt_format` column: the format's id, or `chat_template` for the model's own.
fn prompt_column(settings: &EvalSettings) -> &'static str {
    if settings.chat_template {
        "chat_template"
    } else {
        settings.prompt_format.id()
    }
}

/// The `eval_settings` column: the settings as JSON (the same text for the same settings, so
/// that a run can be found by them).
fn settings_column(settings: &EvalSettings) -> String {
    serde_json::to_string(settings).unwrap_or_default()
}

/// A run's settings: its `eval_settings`, or for runs made before there was one, what its
/// `prompt_format`, `max_new_tokens` and `scoring` columns say.
pub(crate) fn settings_of(row: &sqlx::any::AnyRow) -> Result<EvalSettings, DbError> {
    if let Some(json) = row.try_get::<Option<String>, _>("eval_settings")? {
        return serde_json::from_str(&json).map_err(|e| corrupt("runs", "eval_settings", e));
    }
    let format: String = row.try_get("prompt_format")?;
    let prompt_format =
        PromptFormat::from_id(&format).ok_or_else(|| corrupt("runs", "prompt_format", &format))?;
    Ok(EvalSettings {
        scoring: scoring_of(row)?,
        ..EvalSettings::new(prompt_format, to_u32(row.try_get("max_new_tokens")?))
    })
}

fn scoring_of(row: &sqlx::any::AnyRow) -> Result<Scoring, DbError> {
    let text: String = row.try_get("scoring")?;
    Scoring::parse(&text).ok_or_else(|| corrupt("runs", "scoring", &text))
}

fn run_from_row(row: &sqlx::any::AnyRow, tally: Tally) -> Result<RunSummary, DbError> {
    let status: String = row.try_get("status")?;
    Ok(RunSummary {
        id: row.try_get("id")?,
        exam_set: row.try_get("exam_set")?,
        model: row.try_get("model")?,
        adapter: row.try_get("adapter")?,
        prompt_format: row.try_get("prompt_format")?,
        scoring: scoring_of(row)?,
        shots: settings_of(row)?.shots,
        status: RunStatus::parse(&status).ok_or_else(|| corrupt("runs", "status", &status))?,
        total: to_u32(row.try_get("total")?),
        accuracy_interval: kokushi_shared::stats::wilson_interval(
            u64::from(tally.correct),
            u64::from(tally.answered),
            0.95,
        ),
        tally,
        // Derived data, written again by the next backfill if it ever fails to read.
        years: row
            .try_get::<Option<String>, _>("year_verdicts")?
            .and_then(|json| serde_json::from_str(&json).ok())
            .unwrap_or_default(),
        metrics: row
            .try_get::<Option<String>, _>("text_metrics")?
            .and_then(|json| serde_json::from_str(&json).ok()),
        human: None,
        created_at: row.try_get("created_at")?,
        error: row.try_get("error")?,
        project: row
            .try_get::<Option<String>, _>("project_name")?
            .unwrap_or_default(),
        published: row.try_get::<i64, _>("published")? > 0,
    })
}
