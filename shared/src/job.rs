//! Jobs sent to workers (evaluations and LoRA tunings) and the events workers send back. Both travel as JSON through the
//! queue, so a worker needs only the queue and its model store, never the database.

use serde::{Deserialize, Serialize};

use crate::extract::Extracted;
use crate::prompt::PromptFormat;

/// What travels on the job stream: an evaluation or a tuning job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Job {
    Eval(EvalJob),
    Tune(TuneJob),
    Judge(JudgeJob),
}

impl Job {
    pub fn job_id(&self) -> i64 {
        match self {
            Job::Eval(j) => j.job_id,
            Job::Tune(j) => j.job_id,
            Job::Judge(j) => j.job_id,
        }
    }

    /// Which attempt of its job this is (see [`EvalJob::attempt`]).
    pub fn attempt(&self) -> u32 {
        match self {
            Job::Eval(j) => j.attempt,
            Job::Tune(j) => j.attempt,
            Job::Judge(j) => j.attempt,
        }
    }

    /// What the job needs of the worker that runs it.
    pub fn needs(&self) -> Needs {
        match self {
            Job::Eval(j) => j.needs,
            Job::Tune(j) => j.needs,
            Job::Judge(j) => j.needs,
        }
    }

    /// Sets what the job needs (the server, from the model's header, as it publishes the job).
    pub fn set_needs(&mut self, needs: Needs) {
        match self {
            Job::Eval(j) => j.needs = needs,
            Job::Tune(j) => j.needs = needs,
            Job::Judge(j) => j.needs = needs,
        }
    }

    pub fn priority(&self) -> Priority {
        match self {
            Job::Eval(j) => j.priority,
            Job::Tune(j) => j.priority,
            Job::Judge(j) => j.priority,
        }
    }
}

impl From<EvalJob> for Job {
    fn from(job: EvalJob) -> Self {
        Job::Eval(job)
    }
}

impl From<JudgeJob> for Job {
    fn from(job: JudgeJob) -> Self {
        Job::Judge(job)
    }
}

/// A judge job: a model grades the items of a grading task (`kokushi_shared::judge`). Each item
/// is one question: `problem_id` is the item's id, the text is the judge prompt filled with
/// what an annotator sees of it, the choices are the rubric's verdicts
/// ([`crate::judge::VERDICT_CHOICES`]). The one kind of job that carries gold answers to a
/// worker — inside the judge prompt, as the annotators see them — and never a model's or
/// run's name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JudgeJob {
    pub job_id: i64,
    pub judge_run_id: i64,
    /// Which attempt of the job this is (see [`EvalJob::attempt`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The judge model: a name inside the worker's model store, or a remote model.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// How each item's prompt is put and answered (no worked examples).
    #[serde(flatten)]
    pub settings: EvalSettings,
    pub questions: Vec<JobQuestion>,
    #[serde(default)]
    pub priority: Priority,
    #[serde(default)]
    pub needs: Needs,
}

impl From<TuneJob> for Job {
    fn from(job: TuneJob) -> Self {
        Job::Tune(job)
    }
}

/// A tuning job: a LoRA adapter trained on the base model with the examples it carries, and
/// written into the worker's model store under `adapter`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TuneJob {
    pub job_id: i64,
    pub tuning_id: i64,
    /// Which attempt of the job this is (see [`EvalJob::attempt`]).
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// The base model: a name inside the worker's model store.
    pub base_model: String,
    /// The new adapter's name inside the model store (a folder the job creates, or resumes
    /// from when a checkpoint of the same plan is there).
    pub adapter: String,
    /// The run plan (recipe, seed, steps, data sources), fixed by the server so that a resumed
    /// job trains exactly the same (boxed: it is most of the job's size).
    pub plan: Box<crate::tuning::plan::RunPlan>,
    pub train: Vec<crate::tuning::Example>,
    pub validation: Vec<crate::tuning::Example>,
    #[serde(default)]
    pub priority: Priority,
    /// What a worker must have to take the job.
    #[serde(default)]
    pub needs: Needs,
}

/// What a job needs of the worker that runs it: a worker claims only the jobs it can hold.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Needs {
    /// Bytes of memory on the worker's device, estimated from the model's header for the job's
    /// work (`kokushi_engine::memory_estimate`); 0 for a job that needs none worth routing on (a
    /// remote model) or was published before jobs carried it.
    #[serde(default)]
    pub memory: u64,
}

/// An evaluation job: everything a worker needs to answer the questions of one run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalJob {
    pub job_id: i64,
    pub run_id: i64,
    /// Which attempt of the job this is: 1, then one more at each retry. A retried job keeps
    /// its id, so every event carries the attempt it belongs to, and the server ignores the
    /// events of an attempt that is no longer the job's latest (a redelivered `Failed` of the
    /// first attempt must not fail the second). Deliveries of one attempt (a worker taking over
    /// from another) share it.
    #[serde(default = "first_attempt")]
    pub attempt: u32,
    /// A name inside the worker's model store (never a path): a GGUF file or a model folder.
    pub model: String,
    /// A LoRA adapter folder inside the model store, applied to `model`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// How each question is put and answered: the same settings `kokushi eval` takes.
    #[serde(flatten)]
    pub settings: EvalSettings,
    pub questions: Vec<JobQuestion>,
    /// Worked examples for k-shot prompts (`settings.shots > 0`): only those some question of
    /// the job picks ([`shot_pool_for`]), so the job stays small.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shot_pool: Vec<ShotExample>,
    /// Which lane of the queue the job waits in.
    #[serde(default)]
    pub priority: Priority,
    /// What a worker must have to take the job.
    #[serde(default)]
    pub needs: Needs,
}

/// The attempt of jobs and events written before attempts were counted.
pub fn first_attempt() -> u32 {
    1
}

/// How each question of a run is put to the model and answered: one specification for a
/// portal run and for `kokushi eval`, so that the same settings give the same predictions
/// along either path. Nothing here depends on the gold answers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EvalSettings {
    /// The prompt format (unused with `chat_template`, except that it names the run's default).
    #[cfg_attr(feature = "openapi", schema(value_type = String, example = "chatml_ja_v1"))]
    pub prompt_format: PromptFormat,
    /// Put the question through the model's own chat template instead of `prompt_format`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub chat_template: bool,
    /// How the answers are chosen (generation unless said otherwise, as older jobs were).
    #[serde(default)]
    pub scoring: Scoring,
    /// In loglik scoring: what each choice's log-probability is measured on.
    #[serde(default)]
    pub loglik_target: LoglikTarget,
    pub max_new_tokens: u32,
    /// k-shot: how many worked examples from other exams precede each question.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub shots: u32,
    /// The seed of the choice of worked examples.
    #[serde(default = "default_shot_seed")]
    pub shot_seed: u64,
    /// Keep the model file's own quantization (what new runs do unless asked otherwise);
    /// `false`: its Q5_0/Q5_1 matrices were requantized to Q8_0 at load — what settings stored
    /// without the field mean, as every run was before the engine had a 5-bit kernel.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub keep_quantization: bool,
}

/// New runs keep the model file's own quantization unless they ask otherwise.
pub fn keep_quantization_by_default() -> bool {
    true
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// The most worked examples a run may put before each question (`kokushi eval --shots`, a
/// portal run's `shots`).
pub const MAX_SHOTS: u32 = 8;

/// The seed papers' shot seed, the default of `--shot-seed`.
pub const DEFAULT_SHOT_SEED: u64 = 20_230_331;

fn default_shot_seed() -> u64 {
    DEFAULT_SHOT_SEED
}

impl EvalSettings {
    /// Generation with `prompt_format` and nothing else set.
    pub fn new(prompt_format: PromptFormat, max_new_tokens: u32) -> Self {
        Self {
            prompt_format,
            chat_template: false,
            scoring: Scoring::Generation,
            loglik_target: LoglikTarget::Letter,
            max_new_tokens,
            shots: 0,
            shot_seed: DEFAULT_SHOT_SEED,
            keep_quantization: keep_quantization_by_default(),
        }
    }

    /// The prompt id every answer line records, given how the chat template (if used) was
    /// applied: `chat_template:<hash>` for a local model's own template, `chat_api` for a
    /// remote server's; else the format's id. `+Kshot` follows when worked examples precede
    /// the question.
    pub fn prompt_id(&self, chat: Option<&str>) -> String {
        let base = if self.chat_template {
            chat.unwrap_or("chat_template").to_owned()
        } else {
            self.prompt_format.id().to_owned()
        };
        if self.shots > 0 {
            format!("{base}+{}shot", self.shots)
        } else {
            base
        }
    }
}

/// What a choice's log-likelihood is measured on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoglikTarget {
    /// The choice's letter after the prompt's 「答え：」 (ranked by its log-probability).
    #[default]
    Letter,
    /// The choice's text (ranked by the mean log-probability of its tokens).
    Text,
}

impl LoglikTarget {
    pub fn as_str(self) -> &'static str {
        match self {
            LoglikTarget::Letter => "letter",
            LoglikTarget::Text => "text",
        }
    }
}

/// A worked example of a k-shot prompt: a question of another exam with its answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShotExample {
    pub problem_id: String,
    /// The exam it belongs to (a question never gets worked examples of its own exam).
    pub exam: String,
    pub text: String,
    pub choices: Vec<String>,
    /// The answer shown after 「答え：」: one letter.
    pub answer: String,
}

impl ShotExample {
    /// `question` as a worked example, if it can be one: text only, with choices and a single
    /// gold letter.
    pub fn from_question(question: &crate::Question) -> Option<Self> {
        let crate::Gold::Letters { letters } = &question.gold else {
            return None;
        };
        (question.text_only && !question.choices.is_empty() && letters.len() == 1).then(|| {
            ShotExample {
                problem_id: question.problem_id.clone(),
                exam: exam_of(&question.problem_id, question.meta.exam.as_deref()),
                text: question.text.clone(),
                choices: question.choices.clone(),
                answer: crate::exam::join_letters(letters),
            }
        })
    }
}

/// The exam a question belongs to: its recorded exam, else the leading digits of its id
/// (`116A13` → `116`).
pub fn exam_of(problem_id: &str, exam: Option<&str>) -> String {
    exam.map_or_else(
        || {
            problem_id
                .chars()
                .take_while(char::is_ascii_digit)
                .collect()
        },
        str::to_owned,
    )
}

/// The `k` worked examples `question` gets from `pool`, reproducibly: never one of its own exam
/// (nor itself), ordered by a hash of `seed` and both ids. Fewer than `k` when the pool has
/// too few.
pub fn pick_shots<'a>(
    pool: &'a [ShotExample],
    question: &JobQuestion,
    k: usize,
    seed: u64,
) -> Vec<&'a ShotExample> {
    let own_exam = exam_of(&question.problem_id, question.exam.as_deref());
    let mut candidates: Vec<(u64, &ShotExample)> = pool
        .iter()
        .filter(|s| s.problem_id != question.problem_id && s.exam != own_exam)
        .map(|s| {
            (
                crate::prompt::shot_rank(seed, &question.problem_id, &s.problem_id),
                s,
            )
        })
        .collect();
    candidates.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| a.1.problem_id.cmp(&b.1.problem_id))
    });
    candidates.into_iter().take(k).map(|(_, s)| s).collect()
}

/// The part of `pool` that `questions` pick with `k` and `seed`: each question picks the same
/// examples from it as from the whole pool, so a job carries only these.
pub fn shot_pool_for(
    pool: &[ShotExample],
    questions: &[JobQuestion],
    k: usize,
    seed: u64,
) -> Vec<ShotExample> {
    let mut wanted = std::collections::BTreeSet::new();
    for question in questions {
        for shot in pick_shots(pool, question, k, seed) {
            wanted.insert(shot.problem_id.as_str());
        }
    }
    pool.iter()
        .filter(|s| wanted.contains(s.problem_id.as_str()))
        .cloned()
        .collect()
}

/// How a run's answers are chosen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Scoring {
    /// The model writes a reply; the extraction rules read the letters out of it (the seed
    /// studies' method).
    #[default]
    Generation,
    /// No reply: each choice letter's log-probability as the start of the reply is measured,
    /// and the most probable letters (as many as the question asks for) are the answer.
    Loglik,
}

impl Scoring {
    pub fn as_str(self) -> &'static str {
        match self {
            Scoring::Generation => "generation",
            Scoring::Loglik => "loglik",
        }
    }

    /// The mode an answer line records (`kokushi eval --mode`): `generate` or `loglik`.
    pub fn mode_id(self) -> &'static str {
        match self {
            Scoring::Generation => "generate",
            Scoring::Loglik => "loglik",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "generation" => Some(Scoring::Generation),
            "loglik" => Some(Scoring::Loglik),
            _ => None,
        }
    }
}

/// A job's lane: workers take every `high` job before any `normal` one.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    High,
    #[default]
    Normal,
}

impl Priority {
    pub fn as_str(self) -> &'static str {
        match self {
            Priority::High => "high",
            Priority::Normal => "normal",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [Priority::High, Priority::Normal]
            .into_iter()
            .find(|p| p.as_str() == s)
    }
}

/// A question as the worker needs it: no gold answer travels to the worker.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobQuestion {
    pub problem_id: String,
    pub text: String,
    pub choices: Vec<String>,
    /// The exam it belongs to, when recorded (else read from the id): worked examples never
    /// come from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exam: Option<String>,
}

impl JobQuestion {
    /// What of `question` may be put to a model: everything but its answer.
    pub fn of(question: &crate::Question) -> Self {
        Self {
            problem_id: question.problem_id.clone(),
            text: question.text.clone(),
            choices: question.choices.clone(),
            exam: question.meta.exam.clone(),
        }
    }
}

/// What a worker reports while it works on a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum WorkerEvent {
    /// The worker took the job and loaded the model.
    Started {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        worker: String,
        /// The model as loaded, with the arithmetic it runs (its quantization as stored or
        /// requantized, and the kernels).
        model_info: String,
        /// The prompt id the answers record ([`EvalSettings::prompt_id`]: with a chat
        /// template, which one).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_id: Option<String>,
    },
    /// One question answered.
    Answer {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        record: AnswerRecord,
    },
    /// `done` of `total` questions answered.
    Progress {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        done: u32,
        total: u32,
    },
    Finished {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
    },
    Failed {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        run_id: i64,
        error: String,
    },
    /// A tuning job started: the base model is loaded.
    TuneStarted {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        worker: String,
        model_info: String,
    },
    /// A point of the loss curve: a training step, or a validation (`validation: true`).
    TunePoint {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        point: TunePoint,
    },
    TuneFinished {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        train_examples: u64,
        validation_examples: u64,
        too_long: u64,
        final_validation_loss: Option<f64>,
    },
    TuneFailed {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        tuning_id: i64,
        error: String,
    },
    /// What answering the job took (sent before `Finished`/`JudgeFinished`): the figures a
    /// cost estimate is measured against, and the speed the next estimate reads.
    Measured {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        work: Work,
    },
    /// A judge job started: the judge model is loaded.
    JudgeStarted {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        judge_run_id: i64,
        worker: String,
        model_info: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        prompt_id: Option<String>,
    },
    /// The judge's answer on one item (`record.problem_id` is the item's id).
    JudgeAnswer {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        judge_run_id: i64,
        record: AnswerRecord,
    },
    JudgeFinished {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        judge_run_id: i64,
    },
    JudgeFailed {
        job_id: i64,
        #[serde(default = "first_attempt")]
        attempt: u32,
        judge_run_id: i64,
        error: String,
    },
}

/// What answering a job's questions took on its worker, from the model's load to the last
/// answer (the load itself excluded). Token counts are the model's own; times are wall
/// milliseconds. The local engine splits generation into prefill and decode; a remote model's
/// time is all in `busy_ms`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Work {
    pub answers: u64,
    /// Prompt tokens of every question asked.
    pub prompt_tokens: u64,
    /// Questions answered by generation, and their prompts' tokens.
    pub generated_answers: u64,
    pub generated_prompt_tokens: u64,
    pub generated_tokens: u64,
    /// The local engine's prompt passes and one-token passes of generation.
    pub prefill_ms: u64,
    pub decode_ms: u64,
    /// Log-likelihood scoring of choices.
    pub scoring_ms: u64,
    /// All of it: batches from start to end.
    pub busy_ms: u64,
}

impl Work {
    /// Adds `other` (a later part of the same job).
    pub fn add(&mut self, other: &Work) {
        let add = |x: &mut u64, y: u64| *x = x.saturating_add(y);
        add(&mut self.answers, other.answers);
        add(&mut self.prompt_tokens, other.prompt_tokens);
        add(&mut self.generated_answers, other.generated_answers);
        add(
            &mut self.generated_prompt_tokens,
            other.generated_prompt_tokens,
        );
        add(&mut self.generated_tokens, other.generated_tokens);
        add(&mut self.prefill_ms, other.prefill_ms);
        add(&mut self.decode_ms, other.decode_ms);
        add(&mut self.scoring_ms, other.scoring_ms);
        add(&mut self.busy_ms, other.busy_ms);
    }
}

/// One point of a tuning run's curves.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TunePoint {
    pub step: u64,
    /// A validation loss (`true`) or a training step's loss (`false`).
    pub validation: bool,
    pub loss: f64,
    pub learning_rate: Option<f64>,
    pub grad_norm: Option<f64>,
    pub tokens_per_second: Option<f64>,
}

impl WorkerEvent {
    /// The attempt of its job the event belongs to.
    pub fn attempt(&self) -> u32 {
        match self {
            WorkerEvent::Started { attempt, .. }
            | WorkerEvent::Answer { attempt, .. }
            | WorkerEvent::Progress { attempt, .. }
            | WorkerEvent::Finished { attempt, .. }
            | WorkerEvent::Failed { attempt, .. }
            | WorkerEvent::TuneStarted { attempt, .. }
            | WorkerEvent::TunePoint { attempt, .. }
            | WorkerEvent::TuneFinished { attempt, .. }
            | WorkerEvent::TuneFailed { attempt, .. }
            | WorkerEvent::Measured { attempt, .. }
            | WorkerEvent::JudgeStarted { attempt, .. }
            | WorkerEvent::JudgeAnswer { attempt, .. }
            | WorkerEvent::JudgeFinished { attempt, .. }
            | WorkerEvent::JudgeFailed { attempt, .. } => *attempt,
        }
    }

    pub fn job_id(&self) -> i64 {
        match self {
            WorkerEvent::Started { job_id, .. }
            | WorkerEvent::Answer { job_id, .. }
            | WorkerEvent::Progress { job_id, .. }
            | WorkerEvent::Finished { job_id, .. }
            | WorkerEvent::Failed { job_id, .. }
            | WorkerEvent::TuneStarted { job_id, .. }
            | WorkerEvent::TunePoint { job_id, .. }
            | WorkerEvent::TuneFinished { job_id, .. }
            | WorkerEvent::TuneFailed { job_id, .. }
            | WorkerEvent::Measured { job_id, .. }
            | WorkerEvent::JudgeStarted { job_id, .. }
            | WorkerEvent::JudgeAnswer { job_id, .. }
            | WorkerEvent::JudgeFinished { job_id, .. }
            | WorkerEvent::JudgeFailed { job_id, .. } => *job_id,
        }
    }

    /// An answer event's job and the question (or judged item) it answers: what a worker
    /// taking the job over skips.
    pub fn answered(&self) -> Option<(i64, &str)> {
        match self {
            WorkerEvent::Answer { job_id, record, .. }
            | WorkerEvent::JudgeAnswer { job_id, record, .. } => {
                Some((*job_id, record.problem_id.as_str()))
            }
            _ => None,
        }
    }
}

/// The model's answer to one question, as the worker saw it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnswerRecord {
    pub problem_id: String,
    /// The reply exactly as generated.
    pub raw_output: String,
    pub extracted: Extracted,
    /// Which extraction rules produced `extracted`.
    pub rules_version: String,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub latency_ms: u64,
    /// Log-likelihood runs: each choice's summed natural-log probability as the continuation
    /// of the prompt (its letter, or its text), in choice order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprobs: Option<Vec<f64>>,
    /// Log-likelihood runs: the same per token of the continuation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub choice_logprob_means: Option<Vec<f64>>,
    /// A question without choices in a log-likelihood run: it has nothing to rank, so it was
    /// answered by generation.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    /// Why the question could not be asked (a prompt longer than the model's context, a
    /// request the server refused); the answer is then empty and scores as wrong.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl AnswerRecord {
    /// The answer of a question that could not be asked, and why.
    pub fn failed(problem_id: &str, error: String) -> Self {
        Self {
            problem_id: problem_id.to_owned(),
            raw_output: String::new(),
            extracted: Extracted::Unparsed,
            rules_version: crate::extract::RULES_VERSION.to_owned(),
            prompt_tokens: 0,
            generated_tokens: 0,
            latency_ms: 0,
            choice_logprobs: None,
            choice_logprob_means: None,
            generated: false,
            error: Some(error),
        }
    }

    /// The answer as IgakuQA writes predictions: sorted letters joined by ",", or the number;
    /// the reply itself (trimmed) when nothing could be extracted.
    pub fn prediction(&self) -> String {
        match &self.extracted {
            Extracted::Unparsed => self.raw_output.trim().to_owned(),
            parsed => parsed.display(),
        }
    }
}

/// One line of a predictions file: IgakuQA's `baseline_results` fields (`problem_id`,
/// `prediction`) plus everything needed to audit the answer. `kokushi eval` writes these, and a
/// portal run's `predictions.jsonl` is the same lines built from the same [`AnswerRecord`]s, so
/// the two files of one model and settings are identical apart from `latency_ms`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PredictionLine {
    pub problem_id: String,
    /// [`AnswerRecord::prediction`].
    pub prediction: String,
    /// The model's whole reply (generation), or the continuations chosen (loglik).
    pub raw_output: String,
    pub parse_failed: bool,
    /// `generate` or `loglik` ([`Scoring::mode_id`]).
    pub mode: String,
    /// [`EvalSettings::prompt_id`]: `chatml_ja_v1`, `chatml_ja_v1+1shot`,
    /// `chat_template:<hash>`, `chat_api`.
    pub prompt_format: String,
    /// The LoRA adapter the model answered through, when one was loaded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    pub rules_version: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_sum: Option<Vec<f64>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub logprob_mean: Option<Vec<f64>>,
    pub prompt_tokens: u32,
    pub generated_tokens: u32,
    pub latency_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PredictionLine {
    /// The line of `record` in a run with `mode`, prompt id `prompt_format` and `adapter`.
    pub fn new(
        record: &AnswerRecord,
        mode: Scoring,
        prompt_format: &str,
        adapter: Option<&str>,
    ) -> Self {
        Self {
            problem_id: record.problem_id.clone(),
            prediction: record.prediction(),
            raw_output: record.raw_output.clone(),
            parse_failed: record.extracted.is_unparsed(),
            mode: mode.mode_id().to_owned(),
            prompt_format: prompt_format.to_owned(),
            adapter: adapter.map(str::to_owned),
            generated: record.generated,
            rules_version: record.rules_version.clone(),
            logprob_sum: record.choice_logprobs.clone(),
            logprob_mean: record.choice_logprob_means.clone(),
            prompt_tokens: record.prompt_tokens,
            generated_tokens: record.generated_tokens,
            latency_ms: record.latency_ms,
            error: record.error.clone(),
        }
    }
}
