//! `kokushi eval`: a model answers an exam set in this process, through the same evaluation
//! core as a portal run's worker (`kokushi_worker::answer`), and each question becomes one
//! predictions line (`kokushi_shared::job::PredictionLine`) that `kokushi score` reads.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use kokushi_backend::import::read_exam_set;
use kokushi_shared::job::{
    EvalSettings, JobQuestion, LoglikTarget, PredictionLine, Scoring, ShotExample, shot_pool_for,
};
use kokushi_shared::prompt::PromptFormat;
use kokushi_worker::EngineThread;
use kokushi_worker::answer::{Answerer, RunSpec, answer_batch};
use kokushi_worker::engine_thread::{LoadRequest, Loaded};

use super::flags::SetArgs;

pub const EVAL_HELP: &str =
    "Ask a model the questions of an exam set, one by one on this machine, and \
write one JSON line per question: IgakuQA's baseline_results fields (problem_id, prediction) plus \
the raw output, the log-probabilities (loglik mode), token counts and timings. Lines go to FILE.part \
as they come and FILE appears, whole, at the end; a run that was stopped resumes from FILE.part \
(same mode and prompt) when started again.

Modes: generate (greedy decoding; the answer is extracted from the text, as the seed papers \
did) and loglik (each choice's log-probability after the prompt; the most probable choices, as \
many as the question asks for: 「2つ選べ」 gives two). A portal run with the same settings answers \
through the same code and gives the same lines (docs/evaluation.md). --model is a GGUF file, a Hugging Face model folder (Llama family, \
Qwen2 or Gemma 3; safetensors in f32, f16 or bf16), or a demo model by name: smollm2-135m or \
gemma3-270m (looked up in --model-cache, which `cargo xtask fetch-models` fills). Without \
--prompt-format, Gemma models get gemma_ja_v1 and others chatml_ja_v1. --model \
openai:<base-url>#<model> asks an OpenAI-compatible server (vLLM, llama.cpp, TGI, a hosted API): \
through its chat template by default, or /v1/completions with --prompt-format (loglik needs a \
server that echoes prompt log-probabilities); see docs/remote-models.md.

Examples:
  kokushi eval --model smollm2-135m --exam-set ../shared/data/igakuqa/2022 --limit 20 --out p.jsonl
  kokushi eval --model my.gguf --exam-set exam/ --mode loglik --out p.jsonl
  kokushi eval --model base-folder/ --adapter my-lora/ --exam-set exam/ --out tuned.jsonl
  kokushi eval --model 'openai:http://127.0.0.1:8000/v1#Qwen/Qwen2.5-7B-Instruct' --exam-set exam/ --out q.jsonl
  kokushi score --exam-set ../shared/data/igakuqa/2022 --predictions p.jsonl";

#[derive(Args)]
pub struct EvalArgs {
    /// A GGUF model file, a Hugging Face model folder (config.json, tokenizer.json,
    /// *.safetensors), a demo model's name (smollm2-135m, gemma3-270m), or a model behind an
    /// OpenAI-compatible server: openai:<base-url>#<model> (docs/remote-models.md).
    #[arg(long)]
    model: String,
    /// Where named demo models are cached.
    #[arg(long, env = "KOKUSHI_MODEL_CACHE")]
    model_cache: Option<PathBuf>,
    /// The exam set: .jsonl/.csv files or folders of them (repeatable).
    #[arg(long = "exam-set", required = true, num_args = 1..)]
    exam_set: Vec<PathBuf>,
    #[command(flatten)]
    set: SetArgs,
    /// Prompt format id: chatml_ja_v1 (ChatML chat models), gemma_ja_v1 (Gemma), plain_ja_v1
    /// (base models), alpaca_ja_v1 (the Japanese Alpaca layout), medpalm_ja_v1 (Med-PaLM 2's
    /// layout), or chat_template (the model's own template, recorded with its hash); the exact
    /// text of each is in docs/prompt-formats.md. Default: chosen from the model's architecture.
    #[arg(long)]
    prompt_format: Option<String>,
    /// generate: decode and extract the answer; loglik: rank the choices by log-probability.
    #[arg(long, default_value = "generate", value_parser = ["generate", "loglik"])]
    mode: String,
    /// In loglik mode, score each choice's letter (fast: one pass a question) or its text.
    #[arg(long, default_value = "letter", value_parser = ["letter", "text"])]
    loglik_target: String,
    /// Ask only the first N questions (after leaving out image questions).
    #[arg(long)]
    limit: Option<usize>,
    /// Also ask questions whose printed version has an image the data does not include.
    #[arg(long)]
    with_images: bool,
    /// Ask only questions with exactly N choices (--choices 5: the 1,455 text-only 5-choice
    /// IgakuQA questions the 70B study evaluates).
    #[arg(long)]
    choices: Option<usize>,
    /// The most tokens to generate per answer.
    #[arg(long, default_value_t = 32)]
    max_new_tokens: usize,
    /// k-shot: put this many answered questions of other exams before each question.
    #[arg(long, default_value_t = 0)]
    shots: usize,
    /// Where worked examples come from (default: the exam set itself; only questions of an exam
    /// other than the question's are ever used).
    #[arg(long = "shot-pool", num_args = 1..)]
    shot_pool: Vec<PathBuf>,
    /// Seed of the choice of worked examples.
    #[arg(long, default_value_t = 20_230_331)]
    shot_seed: u64,
    #[command(flatten)]
    device: super::flags::DeviceArgs,
    #[command(flatten)]
    kernels: super::flags::KernelArgs,
    /// A PEFT LoRA adapter folder (adapter_config.json, adapter_model.safetensors) to answer
    /// through; its folder name is recorded in every line.
    #[arg(long)]
    adapter: Option<PathBuf>,
    /// Merge the adapter into the weights instead of applying it beside them (the same answers
    /// up to rounding; quantized matrices it touches become f32).
    #[arg(long, requires = "adapter")]
    merge_adapter: bool,
    /// The leakage gate: refuse to evaluate an adapter tuned by `kokushi tune` when more than
    /// this share of the questions have half or more of their character 13-grams in its tuning
    /// data (docs/tuning.md).
    #[arg(long, default_value_t = kokushi_shared::leakage::DEFAULT_MAX_LEAKED_SHARE, value_name = "SHARE")]
    max_leakage: f64,
    /// Evaluate past the leakage gate anyway; the reason is written with the report to
    /// FILE.leakage.json.
    #[arg(long, value_name = "REASON", requires = "adapter")]
    allow_leakage: Option<String>,
    /// Requantize the model file's Q5_0/Q5_1 matrices to Q8_0 at load, as runs did before the
    /// engine had a 5-bit kernel (by default the file's own quantization runs as stored, the
    /// values llama.cpp uses). Every run names the arithmetic it used.
    #[arg(long)]
    requantize_q8_0: bool,
    /// The file's own quantization, now the default (accepted so older scripts still run).
    #[arg(long, hide = true, conflicts_with = "requantize_q8_0")]
    keep_quantization: bool,
    /// Where to write the predictions (JSON lines).
    #[arg(long)]
    out: PathBuf,
    /// Local models: answer this many questions together, generated replies decoded in one
    /// batch left-padded to the longest prompt. Each question gets the reply it gets alone, so
    /// this changes throughput, never a prediction. Pays off when replies are long and prompts
    /// of similar length; padding makes it slower when prompts dominate.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=64))]
    batch: u16,
    #[command(flatten)]
    remote: RemoteArgs,
}

/// How a model behind an OpenAI-compatible API is called (`--model openai:URL#NAME`).
#[derive(Args)]
#[command(next_help_heading = "Remote models (--model openai:<base-url>#<model>)")]
pub struct RemoteArgs {
    /// The environment variable holding the API key, sent as a bearer token (never logged).
    /// Unset: no key is sent, as local servers need none.
    #[arg(long, default_value = "OPENAI_API_KEY", value_name = "NAME")]
    api_key_env: String,
    /// How many requests may be in flight at once.
    #[arg(long, default_value_t = 4, value_parser = clap::value_parser!(u16).range(1..=256))]
    concurrency: u16,
    /// How many times a request failing with 429, 5xx, a timeout or a dropped connection is
    /// tried again (with exponential backoff from 0.5 s, or the server's Retry-After).
    #[arg(long, default_value_t = 5)]
    retries: u32,
    /// Seconds one request may take.
    #[arg(long, default_value_t = 120.0, value_name = "SECONDS")]
    timeout: f64,
}

/// Reads the questions, settles the run's specification, and answers through the evaluation
/// core with the local engine or the remote server `--model` names.
pub async fn eval(args: &EvalArgs) -> anyhow::Result<()> {
    // At once: a device this build or machine lacks is named before any work.
    args.device.resolve()?;
    let chat_template = args.prompt_format.as_deref() == Some("chat_template");
    let chosen_format = match &args.prompt_format {
        None => None,
        Some(id) if id == "chat_template" => None,
        Some(id) => Some(PromptFormat::from_id(id).with_context(|| {
            format!(
                "unknown prompt format {id:?}; known: {}, chat_template",
                PromptFormat::ALL.map(PromptFormat::id).join(", ")
            )
        })?),
    };
    let settings = EvalSettings {
        prompt_format: chosen_format.unwrap_or(PromptFormat::ChatmlJa),
        chat_template,
        scoring: if args.mode == "loglik" {
            Scoring::Loglik
        } else {
            Scoring::Generation
        },
        loglik_target: if args.loglik_target == "text" {
            LoglikTarget::Text
        } else {
            LoglikTarget::Letter
        },
        max_new_tokens: u32::try_from(args.max_new_tokens)
            .context("--max-new-tokens is too large")?,
        shots: u32::try_from(args.shots).context("--shots is too large")?,
        shot_seed: args.shot_seed,
        keep_quantization: args.keep_quantization || !args.requantize_q8_0,
    };
    let (mut questions, _notes) = args.set.read(&args.exam_set)?;
    let all = questions.len();
    // Worked examples come from --shot-pool, or from the whole exam set before filtering.
    let pool: Vec<ShotExample> = match (args.shots, args.shot_pool.is_empty()) {
        (0, _) => Vec::new(),
        (_, true) => questions
            .iter()
            .filter_map(ShotExample::from_question)
            .collect(),
        (_, false) => read_exam_set(&args.shot_pool)?
            .iter()
            .filter_map(ShotExample::from_question)
            .collect(),
    };
    if !args.with_images {
        questions.retain(|q| q.text_only);
    }
    questions.retain(|q| q.gold != kokushi_shared::Gold::Unpublished);
    if let Some(n) = args.choices {
        questions.retain(|q| q.choices.len() == n);
    }
    if let Some(limit) = args.limit {
        questions.truncate(limit);
    }
    anyhow::ensure!(
        !questions.is_empty(),
        "no questions to ask: {all} in the set, none left after leaving out image questions \
         (--with-images), --choices and --limit"
    );
    // From here on only what may be put to a model: no gold answer.
    let asked: Vec<JobQuestion> = questions.iter().map(JobQuestion::of).collect();
    let mut spec = RunSpec {
        shot_pool: shot_pool_for(&pool, &asked, args.shots, args.shot_seed),
        settings,
        adapter: None,
        one_answer: false,
    };
    if let Some(short) = spec.short_of_shots(&asked) {
        anyhow::bail!(
            "--shots {}: too few worked examples for {} among single-answer, text-only questions \
             of other exams; give --shot-pool with another year's questions",
            args.shots,
            short.problem_id
        );
    }
    if let Some(parent) = args.out.parent().filter(|p| !p.as_os_str().is_empty()) {
        anyhow::ensure!(
            parent.is_dir(),
            "cannot write {}: {} is not a folder",
            args.out.display(),
            parent.display()
        );
    }
    if let Some(adapter) = &args.adapter {
        super::leakage::leakage_gate(
            adapter,
            &questions,
            args.max_leakage,
            args.allow_leakage.as_deref(),
            &args.out,
        )?;
    }
    match kokushi_worker::remote::RemoteSpec::parse(&args.model) {
        Some(model) => {
            let model = model.map_err(anyhow::Error::msg)?;
            anyhow::ensure!(
                args.adapter.is_none(),
                "--adapter applies to local models; a remote server loads its own adapters"
            );
            anyhow::ensure!(
                args.remote.timeout.is_finite() && args.remote.timeout > 0.0,
                "--timeout {} is not a positive number of seconds",
                args.remote.timeout
            );
            if chosen_format.is_none() && !chat_template {
                // A served model is most often a chat model: its own template, server-side.
                spec.settings.chat_template = true;
            }
            // The URL was typed by whoever runs this: that server, wherever it is, gets the key.
            let policy = kokushi_worker::remote::RemotePolicy::trusting(&model);
            let remote = kokushi_worker::remote::RemoteModel::connect(
                model,
                kokushi_worker::remote::RemoteOptions {
                    concurrency: usize::from(args.remote.concurrency),
                    retries: args.remote.retries,
                    timeout: Duration::from_secs_f64(args.remote.timeout.min(86_400.0)),
                    api_key_env: Some(args.remote.api_key_env.clone()),
                    policy,
                    ..kokushi_worker::remote::RemoteOptions::default()
                },
            )
            .await?;
            eprintln!(
                "remote model {} ({} request(s) at once, API key {})",
                remote.spec(),
                args.remote.concurrency,
                if remote.has_api_key() {
                    format!("from ${}", args.remote.api_key_env)
                } else {
                    format!("none: ${} is not set", args.remote.api_key_env)
                }
            );
            // Questions go out `concurrency` at a time.
            let batch = usize::from(args.remote.concurrency);
            answer_all(args, &remote, &spec, &questions, &asked, batch).await
        }
        None => {
            let engine = EngineThread::spawn();
            let (loaded, adapter) = load_local_model(args, &engine).await?;
            if chosen_format.is_none() && loaded.architecture == "gemma3" {
                spec.settings.prompt_format = PromptFormat::GemmaJa;
            }
            anyhow::ensure!(
                !spec.settings.chat_template || loaded.chat_template_hash.is_some(),
                "--prompt-format chat_template: the model has no chat template"
            );
            spec.adapter = adapter;
            let local = kokushi_worker::answer::local::Local {
                engine: &engine,
                loaded,
            };
            answer_all(
                args,
                &local,
                &spec,
                &questions,
                &asked,
                usize::from(args.batch),
            )
            .await
        }
    }
}

/// Loads `--model` (with `--adapter`) on the engine thread; the adapter's recorded name.
async fn load_local_model(
    args: &EvalArgs,
    engine: &EngineThread,
) -> anyhow::Result<(Loaded, Option<String>)> {
    let model_path = resolve_eval_model(&args.model, args.model_cache.as_deref())?;
    eprintln!("loading {}", model_path.display());
    let adapter = args.adapter.as_ref().map(|dir| {
        let name = dir
            .canonicalize()
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .unwrap_or_else(|| dir.display().to_string());
        (dir.clone(), name)
    });
    let name = adapter.as_ref().map(|(_, name)| name.clone());
    let request = LoadRequest {
        adapter,
        merge_adapter: args.merge_adapter,
        keep_quantization: args.keep_quantization || !args.requantize_q8_0,
        device: args.device.resolve()?,
        kernels: args.kernels.kernels,
        precision: args.kernels.precision,
        workload: Some(kokushi_worker::eval_workload(
            u32::try_from(args.max_new_tokens).unwrap_or(u32::MAX),
            usize::from(args.batch),
        )),
        ..LoadRequest::new(model_path.clone())
    };
    let loaded = engine.load(request).await.with_context(|| {
        format!(
            "cannot load {}{}",
            model_path.display(),
            args.adapter
                .as_ref()
                .map(|a| format!(" with the adapter {}", a.display()))
                .unwrap_or_default()
        )
    })?;
    eprintln!("{}", loaded.description);
    Ok((loaded, name))
}

/// Answers `asked` (the questions, without their answers) `batch` at a time, writing each line
/// to FILE.part as it comes, then the whole file in the exam set's order to FILE in one rename.
/// A run that was stopped resumes from its part file (same mode, prompt and adapter).
async fn answer_all<A: Answerer>(
    args: &EvalArgs,
    answerer: &A,
    spec: &RunSpec,
    questions: &[kokushi_shared::Question],
    asked: &[JobQuestion],
    batch: usize,
) -> anyhow::Result<()> {
    let prompt_id = spec.prompt_id(answerer);
    let mode = spec.settings.scoring;
    eprintln!(
        "{} questions, mode {}, prompt {}",
        questions.len(),
        mode.mode_id(),
        prompt_id
    );
    let partial = with_suffix(&args.out, ".part");
    let mut done = resume_lines(
        &partial,
        questions,
        mode.mode_id(),
        &prompt_id,
        spec.adapter.as_deref(),
    )?;
    if !done.is_empty() {
        eprintln!(
            "resuming: {} of {} questions already answered in {}",
            done.len(),
            questions.len(),
            partial.display()
        );
    }
    let mut file = std::fs::File::create(&partial)
        .with_context(|| format!("cannot create {}", partial.display()))?;
    for line in done.values() {
        writeln!(file, "{line}")?;
    }
    let started = std::time::Instant::now();
    let (mut parsed, mut answered) = (0usize, 0usize);
    let mut failed: Vec<String> = Vec::new();
    let pending: Vec<(usize, JobQuestion)> = asked
        .iter()
        .enumerate()
        .filter(|(_, q)| !done.contains_key(&q.problem_id))
        .map(|(n, q)| (n, q.clone()))
        .collect();
    for chunk in pending.chunks(batch.max(1)) {
        let these: Vec<JobQuestion> = chunk.iter().map(|(_, q)| q.clone()).collect();
        let records = answer_batch(answerer, spec, &these).await.map_err(|e| {
            anyhow::anyhow!(
                "{e}\nstopped at {}; the answers so far are kept in {} and a rerun of the same \
                 command resumes from them",
                these.first().map_or("", |q| q.problem_id.as_str()),
                partial.display()
            )
        })?;
        for ((n, _), record) in chunk.iter().zip(records) {
            // A question that cannot be asked (a prompt longer than the context) is recorded
            // with its reason and scores as wrong; the run goes on.
            if let Some(error) = &record.error {
                failed.push(format!("{}: {error}", record.problem_id));
            }
            let line = PredictionLine::new(&record, mode, &prompt_id, spec.adapter.as_deref());
            parsed += usize::from(!line.parse_failed);
            answered += 1;
            let elapsed = started.elapsed().as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let per_minute = answered as f64 / elapsed.max(1e-9) * 60.0;
            eprintln!(
                "[{:>4}/{}] {:<10} → {:<10} {:>6} ms  ({per_minute:.1} questions/min)",
                n + 1,
                questions.len(),
                line.problem_id,
                if line.error.is_some() {
                    "(not asked)"
                } else if line.parse_failed {
                    "(unparsed)"
                } else {
                    line.prediction.as_str()
                },
                line.latency_ms
            );
            let json = serde_json::to_string(&line)?;
            writeln!(file, "{json}")?;
            file.flush()?;
            done.insert(line.problem_id, json);
        }
    }
    drop(file);
    // The finished file, in the exam set's order, written beside FILE and renamed over it; the
    // part file goes only once FILE is complete.
    let finished = with_suffix(&args.out, ".tmp");
    let mut file = std::fs::File::create(&finished)
        .with_context(|| format!("cannot create {}", finished.display()))?;
    for question in questions {
        if let Some(line) = done.get(&question.problem_id) {
            writeln!(file, "{line}")?;
        }
    }
    file.sync_all()?;
    drop(file);
    std::fs::rename(&finished, &args.out).with_context(|| {
        format!(
            "cannot rename {} to {}",
            finished.display(),
            args.out.display()
        )
    })?;
    std::fs::remove_file(&partial)
        .with_context(|| format!("cannot remove {}", partial.display()))?;
    let elapsed = started.elapsed().as_secs_f64();
    #[allow(clippy::cast_precision_loss)]
    let per_minute = answered as f64 / elapsed.max(1e-9) * 60.0;
    eprintln!(
        "wrote {} predictions to {} ({parsed} of {answered} asked now parsed) in {elapsed:.1} s: \
         {per_minute:.1} questions/min",
        questions.len(),
        args.out.display(),
    );
    if !failed.is_empty() {
        eprintln!(
            "{} question(s) could not be asked and score as wrong (their lines carry `error`):",
            failed.len()
        );
        for reason in &failed {
            eprintln!("  {reason}");
        }
    }
    anyhow::ensure!(
        failed.len() < questions.len(),
        "no question could be asked; the first reason: {}",
        failed.first().map_or("", String::as_str)
    );
    Ok(())
}

/// The model file `--model` names: a path, or a demo model in the cache.
pub fn resolve_eval_model(name: &str, cache: Option<&std::path::Path>) -> anyhow::Result<PathBuf> {
    let path = PathBuf::from(name);
    if path.is_file() || path.join("config.json").is_file() {
        return Ok(path);
    }
    let Some((_, file, origin)) = kokushi_worker::eval::NAMED_MODELS
        .iter()
        .find(|(known, _, _)| *known == name)
    else {
        let names: Vec<&str> = kokushi_worker::eval::NAMED_MODELS
            .iter()
            .map(|(n, _, _)| *n)
            .collect();
        anyhow::bail!(
            "--model {name:?} is neither a GGUF file, a model folder (with config.json) nor a \
             known model name ({})",
            names.join(", ")
        );
    };
    let cache = match cache {
        Some(dir) => dir.to_owned(),
        None => std::env::var_os("HOME")
            .map(|home| PathBuf::from(home).join(".cache/kokushi/models"))
            .context("HOME is not set: pass --model-cache")?,
    };
    let path = cache.join(file);
    anyhow::ensure!(
        path.is_file(),
        "{name} is not in {}: {origin}; or pass --model-cache",
        cache.display()
    );
    Ok(path)
}

/// The lines of an interrupted run in `partial` worth keeping: those of questions still asked,
/// made with the same mode and prompt. A torn last line (the process was killed while writing
/// it) is dropped; lines of another mode or prompt refuse the resume, so two runs never mix.
fn resume_lines(
    partial: &std::path::Path,
    questions: &[kokushi_shared::Question],
    mode: &str,
    prompt_format: &str,
    adapter: Option<&str>,
) -> anyhow::Result<std::collections::BTreeMap<String, String>> {
    let mut kept = std::collections::BTreeMap::new();
    let Ok(text) = std::fs::read_to_string(partial) else {
        return Ok(kept);
    };
    let wanted: std::collections::HashSet<&str> =
        questions.iter().map(|q| q.problem_id.as_str()).collect();
    for (index, line) in text.lines().enumerate() {
        let Ok(value) = serde_json::from_str::<serde_json::Value>(line) else {
            eprintln!(
                "{}:{}: not a complete line (an interrupted write); it is asked again",
                partial.display(),
                index + 1
            );
            continue;
        };
        anyhow::ensure!(
            value["mode"] == mode && value["prompt_format"] == prompt_format,
            "{}:{}: left by a run with mode {} and prompt {}, not {mode} and {prompt_format}: \
             delete it or choose another --out",
            partial.display(),
            index + 1,
            value["mode"],
            value["prompt_format"]
        );
        anyhow::ensure!(
            value["adapter"].as_str() == adapter,
            "{}:{}: left by a run with adapter {}, not {}: delete it or choose another --out",
            partial.display(),
            index + 1,
            value["adapter"].as_str().unwrap_or("(none)"),
            adapter.unwrap_or("(none)")
        );
        if let Some(id) = value["problem_id"]
            .as_str()
            .filter(|id| wanted.contains(id))
        {
            kept.insert(id.to_owned(), line.to_owned());
        }
    }
    Ok(kept)
}

/// `path` with `suffix` appended to its file name (`p.jsonl` → `p.jsonl.part`).
fn with_suffix(path: &std::path::Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}
