//! The evaluation core: one way to answer a question, for a portal run (`Worker::execute`) and
//! for `kokushi eval` alike.
//!
//! A [`RunSpec`] (the shared [`EvalSettings`], the worked examples, the adapter's name) and a
//! batch of [`JobQuestion`]s go in; one [`AnswerRecord`] per question comes out. Everything
//! between is here: the prompt (a format, or the model's own chat template, with k worked
//! examples of other exams), the scoring mode (generation with the versioned extraction rules,
//! or log-likelihood of each choice's letter or text), and what happens to a question that
//! cannot be asked (its record carries the reason and scores as wrong; the run goes on).
//!
//! The model is behind [`Answerer`]: the local engine ([`local::Local`], the engine thread) or
//! an OpenAI-compatible server ([`crate::remote::RemoteModel`]). Questions carry no gold answer
//! ([`JobQuestion`] has none), so nothing here can read it: a log-likelihood answer has as many
//! letters as the question asks for (「2つ選べ」).
//!
//! Batching is for throughput only: the generated questions of a batch are decoded together,
//! and the engine gives each the reply it gets alone, so batch size never changes a record
//! (apart from `latency_ms`, the batch's wall time).

pub mod local;
mod remote;

use std::future::Future;
use std::time::Instant;

use kokushi_shared::exam::{asked_count, choice_letter, letter_index};
use kokushi_shared::extract::{Extracted, RULES_VERSION, extract};
use kokushi_shared::job::{
    AnswerRecord, EvalSettings, JobQuestion, LoglikTarget, Scoring, ShotExample, Work, pick_shots,
};
use kokushi_shared::metric::top_k_letters;
use kokushi_shared::prompt::{ANSWER_OPENING, Shot, user_turn};

/// Everything that decides how a run's questions are answered.
#[derive(Debug, Clone, PartialEq)]
pub struct RunSpec {
    pub settings: EvalSettings,
    /// Where the worked examples of k-shot prompts come from.
    pub shot_pool: Vec<ShotExample>,
    /// The LoRA adapter the model answers through (recorded in every line), if any.
    pub adapter: Option<String>,
    /// Every question takes exactly one letter, whatever its text says (a judge's: its prompt
    /// quotes an exam question that may ask for two).
    pub one_answer: bool,
}

/// A prompt as text, or as the turns of a chat that the answerer renders (a local model with
/// its own template, a remote server with its own).
#[derive(Debug, Clone, PartialEq)]
pub enum Prompt {
    Raw(String),
    Chat(Vec<Turn>),
}

/// One turn of a chat: `role` is `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: &'static str,
    pub content: String,
}

/// What one question puts to a model.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub prompt: Prompt,
    /// Where generation stops (the prompt format's stop strings; none with a chat template,
    /// whose end-of-turn token stops it).
    pub stop: Vec<String>,
    /// Log-likelihood scoring of a question with choices: the continuations to score (letters
    /// or choice texts). `None`: the answer is generated.
    pub continuations: Option<Vec<String>>,
}

/// A generated reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub text: String,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    /// The local engine's prompt and one-token passes that produced it: a batch's are carried
    /// by its first reply only (0 on the others and for a remote model), so that summing over
    /// replies counts each pass once.
    pub prefill_ms: u64,
    pub decode_ms: u64,
}

/// Log-probabilities of continuations after one prompt, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Scored {
    pub sums: Vec<f64>,
    pub means: Vec<f64>,
    pub prompt_tokens: usize,
}

/// Why an answerer gave no result.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AskError {
    /// This question cannot be asked (a prompt longer than the context, a request the server
    /// refused); it is recorded with the reason and the run goes on.
    #[error("{0}")]
    Question(String),
    /// Nothing more can be asked (the engine stopped, the server is unreachable or refuses the
    /// key, loglik asked of a chat API): the run stops.
    #[error("{0}")]
    Fatal(String),
}

/// A model that answers: the local engine or a remote server.
pub trait Answerer: Sync {
    /// The prompt id of a chat put through this answerer's chat template: `chat_template:<hash>`
    /// for a local model's own, `chat_api` for a server's.
    fn chat_id(&self) -> String;

    /// A reply to each prompt (in order), each as the model gives it alone: batching, where the
    /// answerer does it, changes no reply.
    fn generate(
        &self,
        prompts: Vec<Prompt>,
        max_new_tokens: usize,
        stop: &[String],
    ) -> impl Future<Output = Vec<Result<Reply, AskError>>> + Send;

    /// The log-probability of each continuation after `prompt`.
    fn score(
        &self,
        prompt: Prompt,
        continuations: Vec<String>,
    ) -> impl Future<Output = Result<Scored, AskError>> + Send;
}

impl RunSpec {
    /// The prompt id every record of this run carries ([`EvalSettings::prompt_id`]).
    pub fn prompt_id(&self, answerer: &impl Answerer) -> String {
        let chat = self.settings.chat_template.then(|| answerer.chat_id());
        self.settings.prompt_id(chat.as_deref())
    }

    /// The first question that gets fewer worked examples than asked, if any.
    pub fn short_of_shots<'a>(&self, questions: &'a [JobQuestion]) -> Option<&'a JobQuestion> {
        let k = self.settings.shots as usize;
        questions
            .iter()
            .find(|q| pick_shots(&self.shot_pool, q, k, self.settings.shot_seed).len() < k)
    }

    /// What `question` puts to the model. With the model's own chat template each worked
    /// example is a user turn answered by an assistant turn 「答え：b」, then the question.
    pub fn ask(&self, question: &JobQuestion) -> Result<Asked, String> {
        let settings = &self.settings;
        let k = settings.shots as usize;
        let picked = pick_shots(&self.shot_pool, question, k, settings.shot_seed);
        if picked.len() < k {
            return Err(format!(
                "only {} worked example(s) from other exams for {}; {k} asked: give a shot \
                 pool with more single-answer questions of other years",
                picked.len(),
                question.problem_id,
            ));
        }
        let (prompt, stop) = if settings.chat_template {
            let mut turns = Vec::with_capacity(2 * picked.len() + 1);
            for shot in &picked {
                turns.push(Turn {
                    role: "user",
                    content: user_turn(&shot.text, &shot.choices),
                });
                turns.push(Turn {
                    role: "assistant",
                    content: format!("{ANSWER_OPENING}{}", shot.answer),
                });
            }
            turns.push(Turn {
                role: "user",
                content: user_turn(&question.text, &question.choices),
            });
            (Prompt::Chat(turns), Vec::new())
        } else {
            let shots: Vec<Shot<'_>> = picked
                .iter()
                .map(|s| Shot {
                    text: &s.text,
                    choices: &s.choices,
                    answer: &s.answer,
                })
                .collect();
            (
                Prompt::Raw(settings.prompt_format.render_with_shots(
                    &shots,
                    &question.text,
                    &question.choices,
                )),
                settings.prompt_format.stop_sequences(),
            )
        };
        let continuations = (settings.scoring == Scoring::Loglik && !question.choices.is_empty())
            .then(|| match settings.loglik_target {
                LoglikTarget::Letter => (0..question.choices.len())
                    .map(|i| choice_letter(i).to_string())
                    .collect(),
                LoglikTarget::Text => question.choices.clone(),
            });
        Ok(Asked {
            prompt,
            stop,
            continuations,
        })
    }
}

/// Answers `questions` with `answerer` under `spec`: the generated ones in one batch, the
/// scored ones one by one. A question that cannot be asked gets a record with its reason
/// ([`AnswerRecord::failed`]); only a fatal error stops the batch. Records come back in the
/// questions' order.
pub async fn answer_batch<A: Answerer>(
    answerer: &A,
    spec: &RunSpec,
    questions: &[JobQuestion],
) -> Result<Vec<AnswerRecord>, AskError> {
    Ok(answer_batch_measured(answerer, spec, questions).await?.0)
}

/// [`answer_batch`], with what the batch took ([`Work`]; `busy_ms` is the caller's to set).
pub async fn answer_batch_measured<A: Answerer>(
    answerer: &A,
    spec: &RunSpec,
    questions: &[JobQuestion],
) -> Result<(Vec<AnswerRecord>, Work), AskError> {
    let mut work = Work::default();
    let mut records: Vec<Option<AnswerRecord>> = vec![None; questions.len()];
    let mut generated: Vec<(usize, Prompt)> = Vec::new();
    let mut stop = Vec::new();
    for (index, question) in questions.iter().enumerate() {
        let started = Instant::now();
        let asked = match spec.ask(question) {
            Ok(asked) => asked,
            Err(reason) => {
                records[index] = Some(AnswerRecord::failed(&question.problem_id, reason));
                continue;
            }
        };
        match asked.continuations {
            Some(continuations) => {
                let scoring = Instant::now();
                let scored = answerer.score(asked.prompt, continuations.clone()).await;
                work.scoring_ms += millis(scoring.elapsed());
                let asked = if spec.one_answer {
                    1
                } else {
                    asked_count(&question.text)
                };
                let record = record_of(question, scored, |scored| {
                    from_scores(question, &spec.settings, &continuations, scored, asked)
                })?;
                records[index] = Some(took(record, started));
            }
            None => {
                stop = asked.stop;
                generated.push((index, asked.prompt));
            }
        }
    }
    if !generated.is_empty() {
        let started = Instant::now();
        let (indices, prompts): (Vec<usize>, Vec<Prompt>) = generated.into_iter().unzip();
        let max_new_tokens = spec.settings.max_new_tokens as usize;
        let replies = answerer.generate(prompts, max_new_tokens, &stop).await;
        for (index, reply) in indices.into_iter().zip(replies) {
            if let Ok(reply) = &reply {
                work.generated_answers += 1;
                work.generated_prompt_tokens += reply.prompt_tokens as u64;
                work.prefill_ms += reply.prefill_ms;
                work.decode_ms += reply.decode_ms;
            }
            let question = &questions[index];
            let record = record_of(question, reply, |reply| {
                from_reply(question, &spec.settings, reply)
            })?;
            records[index] = Some(took(record, started));
        }
    }
    let records: Vec<AnswerRecord> = records
        .into_iter()
        .zip(questions)
        .map(|(record, question)| {
            record.unwrap_or_else(|| {
                AnswerRecord::failed(&question.problem_id, "no reply".to_owned())
            })
        })
        .collect();
    work.answers = records.len() as u64;
    for r in &records {
        work.prompt_tokens += u64::from(r.prompt_tokens);
        work.generated_tokens += u64::from(r.generated_tokens);
    }
    Ok((records, work))
}

fn millis(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// The record of `question` from an answerer's result: `answered` builds it, or it records
/// why the question could not be asked; a fatal error passes up.
fn record_of<T>(
    question: &JobQuestion,
    result: Result<T, AskError>,
    answered: impl FnOnce(T) -> AnswerRecord,
) -> Result<AnswerRecord, AskError> {
    match result {
        Ok(value) => Ok(answered(value)),
        Err(AskError::Question(reason)) => Ok(AnswerRecord::failed(&question.problem_id, reason)),
        Err(fatal) => Err(fatal),
    }
}

fn took(record: AnswerRecord, started: Instant) -> AnswerRecord {
    AnswerRecord {
        latency_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
        ..record
    }
}

fn tokens(n: usize) -> u32 {
    u32::try_from(n).unwrap_or(u32::MAX)
}

/// The answer ranked from the continuations' log-probabilities: the letter target by the sum,
/// the text target by the mean per token; `asked` letters (as many as the question asks for).
fn from_scores(
    question: &JobQuestion,
    settings: &EvalSettings,
    continuations: &[String],
    scored: Scored,
    asked: usize,
) -> AnswerRecord {
    let ranking = match settings.loglik_target {
        LoglikTarget::Letter => &scored.sums,
        LoglikTarget::Text => &scored.means,
    };
    let letters = top_k_letters(ranking, asked);
    let raw_output = letters
        .iter()
        .filter_map(|l| letter_index(*l))
        .filter_map(|i| continuations.get(i).map(String::as_str))
        .collect::<Vec<_>>()
        .join(",");
    let extracted = if letters.is_empty() {
        Extracted::Unparsed
    } else {
        Extracted::Letters { letters }
    };
    AnswerRecord {
        problem_id: question.problem_id.clone(),
        raw_output,
        extracted,
        rules_version: RULES_VERSION.to_owned(),
        prompt_tokens: tokens(scored.prompt_tokens),
        generated_tokens: 0,
        latency_ms: 0,
        choice_logprobs: Some(scored.sums),
        choice_logprob_means: Some(scored.means),
        generated: false,
        error: None,
    }
}

/// The answer the extraction rules read out of a generated reply.
fn from_reply(question: &JobQuestion, settings: &EvalSettings, reply: Reply) -> AnswerRecord {
    AnswerRecord {
        problem_id: question.problem_id.clone(),
        extracted: extract(&reply.text, &question.choices),
        raw_output: reply.text,
        rules_version: RULES_VERSION.to_owned(),
        prompt_tokens: tokens(reply.prompt_tokens),
        generated_tokens: tokens(reply.generated_tokens),
        latency_ms: 0,
        choice_logprobs: None,
        choice_logprob_means: None,
        generated: settings.scoring == Scoring::Loglik,
        error: None,
    }
}
