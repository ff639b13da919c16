//! Flag groups that more than one command flattens into its own: the database URL (`DbArgs`),
//! how exam-set files are read (`SetArgs`), the queue's visibility timeout and a worker's batch
//! (`ReliabilityArgs`, `WorkerBatchArgs`: `serve`'s embedded worker and `worker`), and
//! [`base_urls`], an allow-list of base URLs as a flag gave it.

use clap::Args;
use kokushi_backend::import::SetFormat;

#[derive(Args, Clone)]
pub struct DbArgs {
    /// sqlite://FILE or postgres://USER@HOST/DB.
    #[arg(
        long,
        env = "KOKUSHI_DATABASE_URL",
        default_value = "sqlite://kokushi.sqlite"
    )]
    pub database_url: String,
}

/// Where models run (`worker`, `eval`, `tune`, and `serve`'s embedded worker).
#[derive(Args, Clone)]
pub struct DeviceArgs {
    /// Where models run: cpu; cuda or cuda:N, the N-th NVIDIA GPU (a build with `--features
    /// cuda` and the NVIDIA driver: docs/gpu.md); auto, the first GPU when this build and this
    /// machine have one, else the CPU. Checked before anything else starts.
    #[arg(long, env = "KOKUSHI_DEVICE", default_value = "auto", value_name = "DEVICE",
          value_parser = parse_device)]
    pub device: kokushi_worker::DeviceChoice,
}

/// What a worker takes (`worker`, and `serve`'s embedded worker).
#[derive(Args, Clone)]
pub struct CapacityArgs {
    /// The most memory, in GiB, a job may need (estimated from its model's header) for this
    /// worker to take it; larger jobs wait for a worker that can hold them. Default: the
    /// device's memory (a GPU's, less its context; for the CPU, what is available at start).
    #[arg(long = "memory", env = "KOKUSHI_WORKER_MEMORY", value_name = "GIB")]
    pub memory_gib: Option<f64>,
}

impl CapacityArgs {
    /// The limit in bytes, when one was given; an error names a value that is no size.
    pub fn bytes(&self) -> anyhow::Result<Option<u64>> {
        match self.memory_gib {
            None => Ok(None),
            Some(gib) if gib.is_finite() && gib > 0.0 && gib < 1e9 =>
            {
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                Ok(Some((gib * f64::from(1u32 << 30)) as u64))
            }
            Some(gib) => anyhow::bail!("--memory {gib}: a number of GiB above 0"),
        }
    }
}

/// Which kernels run a model on the CPU (`eval`, `tune`).
#[derive(Args, Clone)]
pub struct KernelArgs {
    /// On the CPU: own, the engine's fast kernels; generic, candle's device-generic
    /// operations only, exactly the code a GPU runs (slower; for checking that path on a
    /// machine without a GPU, as `cargo xtask gpu-check --device cpu` does). A GPU always runs
    /// the generic code.
    #[arg(long, default_value = "own", value_name = "own|generic")]
    pub kernels: kokushi_worker::eval::Kernels,
    /// The precision of the KV cache and of attention's products: auto (f16 on a GPU, as
    /// llama.cpp keeps its cache: half the memory; f32 on the CPU), f32, f16, or bf16 (GPUs of
    /// compute capability 8.0 or newer). Scores are soft-maxed in f32 and the quantized weight
    /// products take f32 activations whatever this says; training attends in f32.
    #[arg(long, default_value = "auto", value_name = "auto|f32|f16|bf16")]
    pub precision: kokushi_worker::eval::Precision,
}

impl DeviceArgs {
    /// The device, checked on this machine; an error names what is missing.
    pub fn resolve(&self) -> anyhow::Result<kokushi_worker::Device> {
        let device = self
            .device
            .resolve()
            .map_err(|e| anyhow::anyhow!("--device {}: {}", self.device, error_chain(&e)))?;
        Ok(device)
    }
}

fn parse_device(text: &str) -> Result<kokushi_worker::DeviceChoice, String> {
    text.parse()
        .map_err(|e: kokushi_worker::eval::EngineError| e.to_string())
}

/// An error and its causes, on one line.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// How many questions a worker answers at once (`serve`'s embedded worker, `worker`).
#[derive(Args, Clone)]
pub struct WorkerBatchArgs {
    /// Questions a worker answers together: decoded in one batch by the local engine, sent at
    /// once to a remote server. Throughput only: a batch changes no answer.
    #[arg(long = "worker-batch", env = "KOKUSHI_WORKER_BATCH", default_value_t = 1,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub worker_batch: u16,
}

#[derive(Args, Clone)]
pub struct ReliabilityArgs {
    /// Seconds a claimed job may go without its worker's heartbeat (or a delivered event
    /// without its server's acknowledgement) before another worker (server) takes it over.
    #[arg(
        long,
        env = "KOKUSHI_VISIBILITY_TIMEOUT",
        default_value_t = 60,
        value_name = "SECS"
    )]
    pub visibility_timeout: u64,
}

#[derive(Args, Clone)]
pub struct SetArgs {
    /// Prefix every problem id with NAMESPACE: (e.g. `denqa`, `jmmlu`) for an exam other than
    /// the medical exam, whose ids would otherwise collide with it. No medical rulings,
    /// sections or years are derived for a namespaced set.
    #[arg(long)]
    pub namespace: Option<String>,
    /// How the exam-set files are written: `auto` reads IgakuQA JSONL and Kokushi CSV (by
    /// extension); `jmmlu` reads JMMLU CSV (no header, 4 choices, answer A-D).
    #[arg(long = "set-format", value_enum, default_value_t = SetFormat::Auto)]
    pub set_format: SetFormat,
    /// Apply the repairs the import proposes for records it would refuse: `all`, or
    /// ID:KIND[,ID:KIND…] (kinds: choices_in_stem, letter_form, numbering), e.g.
    /// --repair 119E45:choices_in_stem. `kokushi import --preview` lists what is proposed.
    #[arg(long, value_name = "all|ID:KIND,...")]
    pub repair: Option<String>,
    /// Leave out the record ID, saying why (repeatable): --exclude "119C18:the stem is empty".
    #[arg(long, value_name = "ID:REASON")]
    pub exclude: Vec<String>,
}

impl SetArgs {
    /// Everything an import of `paths` finds, with these repairs and exclusions.
    pub fn report(
        &self,
        paths: &[std::path::PathBuf],
    ) -> anyhow::Result<kokushi_shared::igakuqa::ImportPreview> {
        use kokushi_shared::repair::RepairPolicy;
        let policy = match &self.repair {
            Some(spec) => RepairPolicy::parse(spec).map_err(|e| anyhow::anyhow!("--repair {e}"))?,
            None => RepairPolicy::None,
        };
        let exclude =
            kokushi_shared::repair::parse_exclusions(self.exclude.iter().map(String::as_str))
                .map_err(|e| anyhow::anyhow!("--exclude {e}"))?;
        Ok(kokushi_backend::import::read_exam_set_report(
            paths,
            self.namespace.as_deref(),
            self.set_format,
            policy,
            exclude,
        )?)
    }

    /// The questions of `paths`, or an error listing every problem and the `--repair` that
    /// would mend each record a repair is proposed for.
    pub fn read(
        &self,
        paths: &[std::path::PathBuf],
    ) -> anyhow::Result<(
        Vec<kokushi_shared::Question>,
        kokushi_shared::igakuqa::ImportNotes,
    )> {
        let report = self.report(paths)?;
        if !report.errors.is_empty() {
            let mut message =
                kokushi_backend::import::ImportError::Invalid(report.errors.clone()).to_string();
            if !report.proposed.is_empty() {
                message.push_str("\nrepairs proposed (kokushi import --preview shows them):");
                for r in &report.proposed {
                    message.push_str(&format!("\n  --repair {}:{}", r.problem_id, r.kind.id()));
                }
            }
            anyhow::bail!(message);
        }
        let notes = report.notes();
        Ok((report.questions, notes))
    }
}

/// An allow-list of base URLs as a flag gave them, each in its one normal form.
pub fn base_urls(flag: &str, given: &[String]) -> anyhow::Result<Vec<String>> {
    given
        .iter()
        .filter(|u| !u.trim().is_empty())
        .map(|u| {
            kokushi_worker::remote::allowed_base_url(u).map_err(|e| anyhow::anyhow!("{flag}: {e}"))
        })
        .collect()
}
