//! `kokushi tune`: LoRA instruction tuning on this machine (`kokushi_worker::tune::run`). The
//! `--data` arguments are read into examples (exam questions, JMMLU, Alpaca-style instructions;
//! [`read_tuning_data`], which `kokushi leakage` reads too), the preset and flags make the
//! recipe, and the run writes a PEFT adapter with its record and checkpoints, showing its
//! progress as it goes.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use kokushi_backend::import::{SetFormat, exam_files, read_exam_set_as};
use kokushi_shared::prompt::PromptFormat;
use kokushi_shared::tuning::{self, Example};
use kokushi_worker::tune::{DataSource, Recipe, RunPlan, Schedule, TuneEvent};
use sha2::Digest;

pub const TUNE_HELP: &str = "Instruction-tune a base model with LoRA on Japanese medical QA, as \
the seed studies did, and write a PEFT adapter that `kokushi eval --adapter` and Hugging Face PEFT \
load.

Data (--data, repeatable) is read as [KIND:]PATH, KIND one of exam (IgakuQA-format .jsonl/.csv, \
e.g. DenQA), jmmlu (JMMLU subject CSVs) or instructions (JSON lines {\"instruction\", \"input\", \
\"output\"}); without KIND it is guessed from the files. Every example is rendered with an \
evaluation prompt format (--prompt-format, default alpaca_ja_v1) and the loss counts only the \
answer's tokens. A seeded share is held out for validation.

The base stays as it was loaded (a GGUF file stays quantized; each matrix is dequantized for one \
product at a time); only the adapter is trained, in f32, with AdamW, warm-up and cosine or linear \
decay, gradient accumulation over --batch examples and clipping at norm 1. Presets: jmedlora-7b \
(r 8, alpha 32, dropout 0.05, q/k/v, lr 5e-5), jmedlora-70b (r 64, alpha 16, dropout 0.1, every \
linear layer, lr 2e-4), small (r 8, alpha 16, every linear layer, lr 1e-3, for the demo models); \
any flag below overrides the preset.

--out gets tuning.json (what was trained on, for the leakage gate), events.jsonl (loss a step), \
checkpoint/ (every --checkpoint-every steps) and, at the end, adapter_config.json and \
adapter_model.safetensors. A run that was stopped resumes from its checkpoint when started again \
with the same arguments, continuing the same loss curve. See docs/tuning.md.

Examples:
  kokushi tune --base smollm2-135m --data ../shared/data/denqa --data jmmlu:../shared/data/jmmlu-medical --preset small --steps 200 --out runs/smol-lora
  kokushi eval --model smollm2-135m --adapter runs/smol-lora --exam-set ../shared/data/igakuqa/2022 --prompt-format alpaca_ja_v1 --out tuned.jsonl
  kokushi leakage --adapter runs/smol-lora --exam-set ../shared/data/igakuqa/2022";

#[derive(Args)]
pub struct TuneArgs {
    /// The base model: a GGUF file, a Hugging Face model folder, or a demo model's name
    /// (smollm2-135m, gemma3-270m).
    #[arg(long)]
    pub base: String,
    /// Where named demo models are cached.
    #[arg(long, env = "KOKUSHI_MODEL_CACHE")]
    pub model_cache: Option<PathBuf>,
    #[command(flatten)]
    pub device: super::flags::DeviceArgs,
    #[command(flatten)]
    pub kernels: super::flags::KernelArgs,
    /// Tuning data, [exam:|jmmlu:|instructions:]PATH (repeatable).
    #[arg(long = "data", required = true, num_args = 1..)]
    pub data: Vec<String>,
    /// The recipe: jmedlora-7b, jmedlora-70b or small.
    #[arg(long, default_value = "jmedlora-7b")]
    pub preset: String,
    /// The prompt format examples are rendered in (evaluate the tuned model with the same), or
    /// several, comma-separated: each example is then rendered in each.
    #[arg(long, default_value = "alpaca_ja_v1")]
    pub prompt_format: String,
    /// Optimizer steps (default: one epoch).
    #[arg(long, conflicts_with = "epochs")]
    pub steps: Option<u64>,
    /// Passes over the training examples (steps = epochs × examples / batch, rounded up).
    #[arg(long)]
    pub epochs: Option<f64>,
    /// LoRA rank r.
    #[arg(long)]
    pub rank: Option<usize>,
    /// LoRA alpha (the pair is scaled by alpha / r).
    #[arg(long)]
    pub alpha: Option<f64>,
    /// Dropout on each adapted projection's input.
    #[arg(long)]
    pub dropout: Option<f64>,
    /// Modules to adapt, comma-separated (q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,
    /// down_proj), or all-linear.
    #[arg(long)]
    pub targets: Option<String>,
    /// Peak learning rate.
    #[arg(long)]
    pub lr: Option<f64>,
    /// AdamW's decoupled weight decay.
    #[arg(long)]
    pub weight_decay: Option<f64>,
    /// Warm-up as a share of the steps.
    #[arg(long)]
    pub warmup_ratio: Option<f64>,
    /// After warm-up: cosine, linear or constant.
    #[arg(long, value_parser = ["cosine", "linear", "constant"])]
    pub schedule: Option<String>,
    /// Examples a step (gradients accumulated over them).
    #[arg(long)]
    pub batch: Option<usize>,
    /// Examples longer than this many tokens are left out (and counted).
    #[arg(long)]
    pub max_seq_len: Option<usize>,
    /// Seed of the split, the data order, the initial adapter and dropout.
    #[arg(long, default_value_t = 20_230_331)]
    pub seed: u64,
    /// The share of examples held out for validation.
    #[arg(long, default_value_t = 0.05)]
    pub validation_share: f64,
    /// Validation loss every N steps (and at the end).
    #[arg(long, default_value_t = 50)]
    pub eval_every: u64,
    /// A checkpoint every N steps (and at the end).
    #[arg(long, default_value_t = 25)]
    pub checkpoint_every: u64,
    /// The run folder.
    #[arg(long)]
    pub out: PathBuf,
}

/// How one `--data` argument is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DataKind {
    Exam,
    Jmmlu,
    Instructions,
}

impl DataKind {
    fn id(self) -> &'static str {
        match self {
            DataKind::Exam => "exam",
            DataKind::Jmmlu => "jmmlu",
            DataKind::Instructions => "instructions",
        }
    }
}

/// The first non-empty line of the first file under `path` with extension `ext`.
fn first_line(path: &Path, ext: &str) -> Option<String> {
    let files = exam_files(path).ok()?;
    let file = files
        .iter()
        .find(|f| f.extension().is_some_and(|e| e == ext))?;
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .map(|l| l.trim_start_matches('\u{feff}'))
        .find(|l| !l.trim().is_empty())
        .map(str::to_owned)
}

/// `KIND:PATH` or a bare path whose kind is guessed: JSON lines with an `instruction` field are
/// instructions, CSV files without a `problem_id` header are JMMLU, the rest exam questions.
fn parse_data(spec: &str) -> anyhow::Result<(DataKind, PathBuf)> {
    for (prefix, kind) in [
        ("exam:", DataKind::Exam),
        ("jmmlu:", DataKind::Jmmlu),
        ("instructions:", DataKind::Instructions),
    ] {
        if let Some(path) = spec.strip_prefix(prefix) {
            return Ok((kind, PathBuf::from(path)));
        }
    }
    let path = PathBuf::from(spec);
    anyhow::ensure!(
        path.exists(),
        "--data {spec}: no such file or folder (write KIND:PATH with KIND exam, jmmlu or \
         instructions)"
    );
    if let Some(line) = first_line(&path, "jsonl") {
        if serde_json::from_str::<serde_json::Value>(&line)
            .ok()
            .is_some_and(|v| v.get("instruction").is_some())
        {
            return Ok((DataKind::Instructions, path));
        }
        return Ok((DataKind::Exam, path));
    }
    if let Some(line) = first_line(&path, "csv") {
        let kind = if line.contains("problem_id") {
            DataKind::Exam
        } else {
            DataKind::Jmmlu
        };
        return Ok((kind, path));
    }
    anyhow::bail!("--data {spec}: holds no .jsonl or .csv files")
}

/// A namespace for an exam set's ids from its path (`../shared/data/denqa` → `denqa`).
fn namespace_of(path: &Path) -> String {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let clean: String = stem
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    if clean.trim_matches('-').is_empty() {
        "data".to_owned()
    } else {
        clean
    }
}

/// Reads every `--data` argument into examples rendered in `format`, with a record of each
/// source (kind, path, SHA-256 of its files, example count).
pub fn read_tuning_data(
    specs: &[String],
    format: PromptFormat,
) -> anyhow::Result<(Vec<Example>, Vec<DataSource>)> {
    let mut examples = Vec::new();
    let mut sources = Vec::new();
    for spec in specs {
        let (kind, path) = parse_data(spec)?;
        let files = exam_files(&path).with_context(|| format!("--data {spec}"))?;
        let mut hasher = sha2::Sha256::new();
        for file in &files {
            let bytes =
                std::fs::read(file).with_context(|| format!("cannot read {}", file.display()))?;
            hasher.update(&bytes);
        }
        let found = match kind {
            DataKind::Exam | DataKind::Jmmlu => {
                let (namespace, set_format) = if kind == DataKind::Jmmlu {
                    ("jmmlu".to_owned(), SetFormat::Jmmlu)
                } else {
                    (namespace_of(&path), SetFormat::Auto)
                };
                let questions =
                    read_exam_set_as(std::slice::from_ref(&path), Some(&namespace), set_format)
                        .with_context(|| format!("--data {spec}"))?;
                tuning::question_examples(&questions, format)
            }
            DataKind::Instructions => {
                let mut found = Vec::new();
                for file in files
                    .iter()
                    .filter(|f| f.extension().is_some_and(|e| e == "jsonl"))
                {
                    let text = std::fs::read_to_string(file)
                        .with_context(|| format!("cannot read {}", file.display()))?;
                    let name = file.display().to_string();
                    found.extend(tuning::instruction_examples(&name, &text, format).map_err(
                        |errors| {
                            anyhow::anyhow!("{}", kokushi_backend::import::problems(&name, &errors))
                        },
                    )?);
                }
                found
            }
        };
        anyhow::ensure!(
            !found.is_empty(),
            "--data {spec}: no usable examples (questions need a published answer and no image)"
        );
        sources.push(DataSource {
            kind: kind.id().to_owned(),
            path: path.display().to_string(),
            sha256: format!("{:x}", hasher.finalize()),
            examples: found.len(),
        });
        examples.extend(found);
    }
    Ok((examples, sources))
}

/// The data rendered in each of `formats`, split once: a question's renderings all go to
/// training or all to validation (the split is drawn on the first format's examples), and with
/// several formats each id gets `@format`.
fn read_in_formats(
    specs: &[String],
    formats: &[PromptFormat],
    validation_share: f64,
    seed: u64,
) -> anyhow::Result<(Vec<Example>, Vec<Example>, Vec<DataSource>)> {
    let mut sources = Vec::new();
    let mut held_ids = std::collections::HashSet::new();
    let (mut train, mut validation) = (Vec::new(), Vec::new());
    for (index, &format) in formats.iter().enumerate() {
        let (examples, found) = read_tuning_data(specs, format)?;
        if index == 0 {
            sources = found;
            let (_, held) = tuning::split(examples.clone(), validation_share, seed);
            held_ids = held.into_iter().map(|e| e.id).collect();
        }
        for mut example in examples {
            let held = held_ids.contains(&example.id);
            if formats.len() > 1 {
                example.id = format!("{}@{}", example.id, format.id());
            }
            if held {
                validation.push(example);
            } else {
                train.push(example);
            }
        }
    }
    Ok((train, validation, sources))
}

/// The recipe the preset and the flags make.
fn recipe(args: &TuneArgs) -> anyhow::Result<Recipe> {
    let mut recipe = Recipe::preset(&args.preset).with_context(|| {
        format!(
            "unknown preset {:?}; known: {}",
            args.preset,
            kokushi_worker::tune::PRESETS.join(", ")
        )
    })?;
    if let Some(r) = args.rank {
        anyhow::ensure!(r > 0, "--rank must be at least 1");
        recipe.rank = r;
    }
    if let Some(a) = args.alpha {
        recipe.alpha = a;
    }
    if let Some(d) = args.dropout {
        anyhow::ensure!((0.0..1.0).contains(&d), "--dropout {d} is outside [0, 1)");
        recipe.dropout = d;
    }
    if let Some(targets) = &args.targets {
        recipe.targets = if targets == "all-linear" {
            kokushi_worker::tune::PROJECTIONS
                .map(str::to_owned)
                .to_vec()
        } else {
            targets.split(',').map(|t| t.trim().to_owned()).collect()
        };
    }
    if let Some(lr) = args.lr {
        anyhow::ensure!(
            lr > 0.0 && lr.is_finite(),
            "--lr {lr} is not a positive number"
        );
        recipe.learning_rate = lr;
    }
    if let Some(wd) = args.weight_decay {
        recipe.weight_decay = wd;
    }
    if let Some(w) = args.warmup_ratio {
        anyhow::ensure!(
            (0.0..=1.0).contains(&w),
            "--warmup-ratio {w} is outside [0, 1]"
        );
        recipe.warmup_ratio = w;
    }
    if let Some(s) = &args.schedule {
        recipe.schedule = match s.as_str() {
            "linear" => Schedule::Linear,
            "constant" => Schedule::Constant,
            _ => Schedule::Cosine,
        };
    }
    if let Some(b) = args.batch {
        anyhow::ensure!(b > 0, "--batch must be at least 1");
        recipe.batch = b;
    }
    if let Some(m) = args.max_seq_len {
        recipe.max_seq_len = m;
    }
    Ok(recipe)
}

/// `kokushi tune`.
pub fn tune(args: &TuneArgs) -> anyhow::Result<()> {
    // At once: a device this build or machine lacks is named before any work.
    let device = args.device.resolve()?;
    let formats = args
        .prompt_format
        .split(',')
        .map(|id| {
            PromptFormat::from_id(id.trim()).with_context(|| {
                format!(
                    "unknown prompt format {:?}; known: {}",
                    id.trim(),
                    PromptFormat::ALL.map(PromptFormat::id).join(", ")
                )
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    anyhow::ensure!(
        (0.0..1.0).contains(&args.validation_share),
        "--validation-share {} is outside [0, 1)",
        args.validation_share
    );
    let recipe = recipe(args)?;
    let (train, validation, sources) =
        read_in_formats(&args.data, &formats, args.validation_share, args.seed)?;
    #[allow(
        clippy::cast_precision_loss,
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss
    )]
    let steps = match (args.steps, args.epochs) {
        (Some(steps), _) => steps,
        (None, epochs) => {
            let epochs = epochs.unwrap_or(1.0);
            anyhow::ensure!(epochs > 0.0, "--epochs must be positive");
            (epochs * train.len() as f64 / recipe.batch as f64).ceil() as u64
        }
    };
    anyhow::ensure!(steps > 0, "--steps must be at least 1");
    for source in &sources {
        eprintln!(
            "data: {} {} — {} examples (sha256 {}…)",
            source.kind,
            source.path,
            source.examples,
            &source.sha256[..12]
        );
    }
    eprintln!(
        "{} training and {} validation examples, prompt format {}",
        train.len(),
        validation.len(),
        args.prompt_format
    );
    let plan = RunPlan {
        base_model: args.base.clone(),
        preset: args.preset.clone(),
        recipe,
        prompt_format: formats.iter().map(|f| f.id()).collect::<Vec<_>>().join(","),
        sources,
        seed: args.seed,
        validation_share: args.validation_share,
        steps,
        eval_every: args.eval_every,
        checkpoint_every: args.checkpoint_every,
    };
    let model_path = super::eval::resolve_eval_model(&args.base, args.model_cache.as_deref())?;
    eprintln!("loading {} on {device}", model_path.display());
    let mut model = kokushi_worker::eval::Model::load(
        &model_path,
        &kokushi_worker::eval::LoadOptions {
            device,
            kernels: args.kernels.kernels,
            precision: args.kernels.precision,
            // Sequences are trained one at a time (gradients accumulate over a batch).
            workload: Some(kokushi_worker::eval::Workload {
                positions: plan.recipe.max_seq_len,
                batch: 1,
                training: true,
            }),
            ..kokushi_worker::eval::LoadOptions::default()
        },
    )
    .with_context(|| format!("cannot load {}", model_path.display()))?;
    let r = &plan.recipe;
    eprintln!(
        "LoRA r={} alpha={} dropout={} on {}; lr {:e} ({:?}, warm-up {:.0} %), batch {}, {} steps",
        r.rank,
        r.alpha,
        r.dropout,
        r.targets.join(","),
        r.learning_rate,
        r.schedule,
        100.0 * r.warmup_ratio,
        r.batch,
        plan.steps
    );
    if args.out.join("checkpoint/progress.json").is_file() {
        eprintln!("resuming from the checkpoint in {}", args.out.display());
    }
    let mut progress = Progress::new(plan.steps);
    let manifest =
        kokushi_worker::tune::run(&mut model, &plan, &train, &validation, &args.out, |event| {
            progress.show(event);
            std::ops::ControlFlow::Continue(())
        })?;
    progress.finish();
    eprintln!(
        "done: {} steps; {} training examples used ({} longer than {} tokens left out); \
         final validation loss {}",
        manifest.steps_done,
        manifest.train_examples,
        manifest.too_long,
        plan.recipe.max_seq_len,
        manifest
            .final_validation_loss
            .map_or("-".to_owned(), |l| format!("{l:.4}"))
    );
    println!("{}", args.out.display());
    eprintln!(
        "evaluate it with: kokushi eval --model {} --adapter {} --prompt-format {} --exam-set …",
        args.base,
        args.out.display(),
        plan.prompt_format
    );
    Ok(())
}

/// The progress line: redrawn in place on a terminal, a line every few seconds otherwise.
struct Progress {
    steps: u64,
    started: std::time::Instant,
    last_line: Option<std::time::Instant>,
    terminal: bool,
    first_step: Option<u64>,
}

impl Progress {
    fn new(steps: u64) -> Self {
        Self {
            steps,
            started: std::time::Instant::now(),
            last_line: None,
            terminal: std::io::stderr().is_terminal(),
            first_step: None,
        }
    }

    fn show(&mut self, event: &TuneEvent) {
        let mut err = std::io::stderr();
        match event {
            TuneEvent::Step {
                step,
                steps,
                loss,
                learning_rate,
                tokens_per_second,
                ..
            } => {
                let first = *self.first_step.get_or_insert(*step - 1);
                let done = step - first;
                #[allow(clippy::cast_precision_loss)]
                let eta =
                    self.started.elapsed().as_secs_f64() / done as f64 * (steps - step) as f64;
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let eta = eta as u64;
                let width = 24;
                #[allow(clippy::cast_possible_truncation)]
                let filled = (step * width / self.steps.max(1)) as usize;
                let line = format!(
                    "[{}{}] {step}/{steps} loss {loss:.4} lr {learning_rate:.2e} \
                     {tokens_per_second:.0} tok/s ETA {}:{:02}:{:02}",
                    "#".repeat(filled),
                    "-".repeat(width as usize - filled),
                    eta / 3600,
                    eta / 60 % 60,
                    eta % 60
                );
                if self.terminal {
                    let _ = write!(err, "\r{line}\x1b[K");
                } else if self
                    .last_line
                    .is_none_or(|t| t.elapsed().as_secs_f64() >= 5.0)
                    || step == steps
                {
                    let _ = writeln!(err, "{line}");
                    self.last_line = Some(std::time::Instant::now());
                }
            }
            TuneEvent::Validation { step, loss } => {
                let prefix = if self.terminal { "\n" } else { "" };
                let _ = writeln!(err, "{prefix}step {step}: validation loss {loss:.4}");
            }
            TuneEvent::Checkpoint { .. } => {}
        }
    }

    fn finish(&self) {
        if self.terminal {
            let _ = writeln!(std::io::stderr());
        }
    }
}
