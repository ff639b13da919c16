//! `cargo xtask gpu-check`: the one command that verifies the GPU path on a machine with an
//! NVIDIA GPU, and (`--device cpu`) the same script on the CPU as a dry run, which CI runs so
//! that the script cannot rot.
//!
//! In order: build `kokushi` (with `--features cuda` for a CUDA device, against NVIDIA's
//! compiler from PyPI as `cuda-check` does); run the engine's generic-path tests with the
//! generic side on the device (`KOKUSHI_TEST_DEVICE`: logits, log-likelihoods and a LoRA
//! training step against the CPU's own kernels); evaluate both demo models on the first N
//! text-only questions of IgakuQA 2022 on the device and on the CPU, and time two LoRA
//! tuning steps on each; write a report (Markdown) and print it. On a GPU the whole check must
//! finish within ten minutes.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{cache_dir, cargo, run_cmd, step, target_dir, tools};

/// What a GPU machine must do it in.
const TIME_LIMIT: Duration = Duration::from_secs(600);

struct Options {
    device: String,
    questions: usize,
    data: PathBuf,
    report: PathBuf,
}

fn options(root: &Path, args: &[String]) -> Result<Options> {
    let mut o = Options {
        device: "cuda:0".to_owned(),
        questions: 100,
        data: root.join("../shared/data/igakuqa"),
        report: cache_dir().join("gpu-check/report.md"),
    };
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let mut value = |flag: &str| {
            it.next()
                .cloned()
                .with_context(|| format!("{flag} needs a value"))
        };
        match arg.as_str() {
            "--device" => o.device = value("--device")?,
            "--questions" => {
                o.questions = value("--questions")?
                    .parse()
                    .context("--questions takes a number")?;
            }
            "--data" => o.data = PathBuf::from(value("--data")?),
            "--report" => o.report = PathBuf::from(value("--report")?),
            other => bail!(
                "unknown gpu-check option {other:?}: --device cuda:N|cpu, --questions N, \
                 --data DIR, --report FILE"
            ),
        }
    }
    anyhow::ensure!(o.questions > 0, "--questions must be at least 1");
    anyhow::ensure!(
        o.device == "cpu" || o.device.starts_with("cuda"),
        "--device is cuda, cuda:N or cpu, not {:?}",
        o.device
    );
    Ok(o)
}

/// One measured command: an evaluation or a tuning, on one side.
struct Measure {
    wall: Duration,
    questions: usize,
    generated_tokens: u64,
    answer_ms: u64,
    predictions: Vec<String>,
    tune_tokens_per_second: Option<f64>,
}

/// The GPU check (`cargo xtask gpu-check`). `clippy`: Clippy's driver when called from `cargo xtask test`, whose builds all go through it
/// (`tools::with_clippy`), so that this one finds them fresh.
pub fn gpu_check(root: &Path, args: &[String], clippy: Option<&Path>) -> Result<()> {
    let o = options(root, args)?;
    let started = Instant::now();
    let cuda = o.device != "cpu";
    let exam = o.data.join("2022");
    let tuning = o.data.join("2021");
    for dir in [&exam, &tuning] {
        anyhow::ensure!(
            dir.is_dir(),
            "no IgakuQA year at {}: pass --data with the folder that holds 2021/ and 2022/",
            dir.display()
        );
    }

    // The build: the workspace's binaries, as `cargo xtask test` builds them (one build of
    // every dependency), with CUDA for a GPU.
    let env: Vec<(&str, OsString)> = if cuda {
        tools::cuda_build_env()?
    } else {
        Vec::new()
    };
    let target = env
        .iter()
        .find_map(|(var, value)| (*var == "CARGO_TARGET_DIR").then(|| PathBuf::from(value)))
        .unwrap_or_else(|| target_dir(root));
    let features: &[&str] = if cuda {
        &["--features", "kokushi-backend/cuda,kokushi-engine/cuda"]
    } else {
        &[]
    };
    step(&format!(
        "gpu-check on {}: building kokushi{}",
        o.device,
        if cuda { " with --features cuda" } else { "" }
    ));
    run_cmd(
        tools::with_clippy(&mut cargo(), clippy)
            .args(["build", "--workspace", "--bins"])
            .args(features)
            .envs(env.iter().cloned())
            .current_dir(root),
    )?;
    let bin = target.join("debug/kokushi");

    step("the engine's generic-path tests, generic side on the device");
    let tests_started = Instant::now();
    run_cmd(
        tools::with_clippy(&mut cargo(), clippy)
            .args(["test", "--workspace", "--lib"])
            .args(features)
            .args(["--", "generic_tests"])
            .envs(env.iter().cloned())
            .env("KOKUSHI_TEST_DEVICE", &o.device)
            .current_dir(root),
    )?;
    let tests_time = tests_started.elapsed();

    let models = [
        (
            "SmolLM2-135M",
            tools::fetch_demo_model()?.join(tools::DEMO_MODEL),
        ),
        ("Gemma 3 270M", tools::fetch_gemma_model()?),
    ];
    let work = cache_dir().join("gpu-check");
    std::fs::create_dir_all(&work)?;
    // The device side, and the CPU's own kernels beside it (on the CPU dry run the device side
    // is the generic code on the CPU with a GPU's default precision, an `f16` KV cache and
    // attention: what a GPU runs, but for candle's CUDA kernels).
    let device_side: Vec<&str> = if cuda {
        vec!["--device", &o.device]
    } else {
        vec![
            "--device",
            "cpu",
            "--kernels",
            "generic",
            "--precision",
            "f16",
        ]
    };
    let cpu_side = vec!["--device", "cpu", "--kernels", "own"];
    let device_label = if cuda {
        o.device.clone()
    } else {
        "cpu, generic, f16".to_owned()
    };
    let cpu_label = if cuda { "cpu" } else { "cpu, own" };
    let sides = [(device_label.as_str(), device_side), (cpu_label, cpu_side)];
    let mut rows = Vec::new();
    for (name, model) in &models {
        let mut measured = Vec::new();
        for (side, flags) in &sides {
            step(&format!("{name}: {} questions on {side}", o.questions));
            let out = work.join(format!("{}-{}.jsonl", slug(name), slug(side)));
            let _ = std::fs::remove_file(&out);
            let mut cmd = Command::new(&bin);
            cmd.arg("eval")
                .arg("--model")
                .arg(model)
                .arg("--exam-set")
                .arg(&exam)
                .args(["--limit", &o.questions.to_string()])
                .arg("--out")
                .arg(&out)
                .args(flags);
            threads(&mut cmd);
            let began = Instant::now();
            run_cmd(&mut cmd)?;
            measured.push(eval_measure(&out, began.elapsed())?);
        }
        rows.push((*name, measured));
    }

    let mut tune_rows = Vec::new();
    for (side, flags) in &sides {
        step(&format!("SmolLM2-135M: two LoRA tuning steps on {side}"));
        let out = work.join(format!("tune-{}", slug(side)));
        let _ = std::fs::remove_dir_all(&out);
        let mut cmd = Command::new(&bin);
        cmd.arg("tune")
            .arg("--base")
            .arg(&models[0].1)
            .arg("--data")
            .arg(format!("exam:{}", tuning.display()))
            // Short sequences and small batches: a step's time, not a tuning.
            .args(["--steps", "2", "--preset", "small", "--batch", "2"])
            .args(["--max-seq-len", "256", "--validation-share", "0.01"])
            .arg("--out")
            .arg(&out)
            .args(flags);
        threads(&mut cmd);
        let began = Instant::now();
        let output = cmd
            .output()
            .with_context(|| format!("running {}", bin.display()))?;
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !output.status.success() {
            bail!("kokushi tune on {side} failed:\n{stderr}");
        }
        tune_rows.push((
            *side,
            Measure {
                wall: began.elapsed(),
                tune_tokens_per_second: last_tokens_per_second(&stderr),
                questions: 0,
                generated_tokens: 0,
                answer_ms: 0,
                predictions: Vec::new(),
            },
        ));
    }

    let total = started.elapsed();
    let labels = [device_label.as_str(), cpu_label];
    let report = render(&o, labels, &rows, &tune_rows, tests_time, total);
    if let Some(dir) = o.report.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&o.report, &report)
        .with_context(|| format!("writing {}", o.report.display()))?;
    println!("{report}");
    println!("report: {}", o.report.display());
    for (name, measured) in &rows {
        if measured.iter().any(|m| m.questions != o.questions) {
            bail!("{name}: not every question was answered on every side (see the report)");
        }
    }
    if cuda && total > TIME_LIMIT {
        bail!(
            "gpu-check took {:.0} s on {}: more than the {} s it must take",
            total.as_secs_f64(),
            o.device,
            TIME_LIMIT.as_secs()
        );
    }
    Ok(())
}

/// Two CPU threads unless the caller chose (the machines CI runs on have two cores).
fn threads(cmd: &mut Command) {
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        cmd.env("CANDLE_NUM_THREADS", "2");
    }
}

fn slug(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '-'
            }
        })
        .collect()
}

/// Questions answered, tokens generated and answering time from `kokushi eval`'s lines.
fn eval_measure(out: &Path, wall: Duration) -> Result<Measure> {
    let text =
        std::fs::read_to_string(out).with_context(|| format!("reading {}", out.display()))?;
    let mut m = Measure {
        wall,
        questions: 0,
        generated_tokens: 0,
        answer_ms: 0,
        predictions: Vec::new(),
        tune_tokens_per_second: None,
    };
    for (number, line) in text.lines().enumerate() {
        let value: serde_json::Value = serde_json::from_str(line)
            .with_context(|| format!("{} line {}", out.display(), number + 1))?;
        if value.get("error").is_some_and(|e| !e.is_null()) {
            continue;
        }
        m.questions += 1;
        m.generated_tokens += value["generated_tokens"].as_u64().unwrap_or(0);
        m.answer_ms += value["latency_ms"].as_u64().unwrap_or(0);
        m.predictions
            .push(value["prediction"].as_str().unwrap_or_default().to_owned());
    }
    Ok(m)
}

/// The tokens per second of the last step line `kokushi tune` printed (`… 1234 tok/s …`).
fn last_tokens_per_second(stderr: &str) -> Option<f64> {
    stderr
        .lines()
        .rev()
        .flat_map(|l| l.split('\r').rev())
        .find_map(|line| {
            let before = line
                .split(" tok/s")
                .next()
                .filter(|_| line.contains(" tok/s"))?;
            before.rsplit(' ').next()?.parse().ok()
        })
}

fn per_minute(m: &Measure) -> f64 {
    m.questions as f64 / m.wall.as_secs_f64().max(1e-9) * 60.0
}

fn tokens_per_second(m: &Measure) -> f64 {
    m.generated_tokens as f64 / (m.answer_ms as f64 / 1000.0).max(1e-9)
}

fn render(
    o: &Options,
    labels: [&str; 2],
    rows: &[(&str, Vec<Measure>)],
    tune: &[(&str, Measure)],
    tests: Duration,
    total: Duration,
) -> String {
    let mut r = String::new();
    r.push_str(&format!(
        "# gpu-check on {}\n\nThe engine's generic-path tests (logits, log-likelihoods, a LoRA \
         training step against the CPU's own kernels, every fixture architecture) passed on {} \
         in {:.0} s.\n\n",
        o.device,
        o.device,
        tests.as_secs_f64()
    ));
    if o.device == "cpu" {
        r.push_str(
            "A dry run: the device side is the generic code on the CPU with a GPU's default \
             precision (`--kernels generic --precision f16`), which is what a GPU runs but for \
             candle's CUDA kernels.\n\n",
        );
    }
    r.push_str(&format!(
        "## Evaluation: the first {} text-only questions of IgakuQA 2022, generation\n\n\
         | model | side | questions | questions/min | tokens/s | same answer as the CPU |\n\
         |---|---|---:|---:|---:|---:|\n",
        o.questions
    ));
    for (name, measured) in rows {
        let cpu = measured.last();
        for (m, side) in measured.iter().zip(labels) {
            let same = cpu.map_or(0, |c| {
                c.predictions
                    .iter()
                    .zip(&m.predictions)
                    .filter(|(a, b)| a == b)
                    .count()
            });
            r.push_str(&format!(
                "| {name} | {side} | {} | {:.1} | {:.1} | {same}/{} |\n",
                m.questions,
                per_minute(m),
                tokens_per_second(m),
                m.predictions.len()
            ));
        }
    }
    r.push_str(
        "\nquestions/min: answered questions over the command's wall time (model load included); \
         tokens/s: generated tokens over the time spent answering.\n\n\
         ## LoRA tuning: two steps on SmolLM2-135M (IgakuQA 2021; batch 2, at most 256 tokens)\n\n\
         | side | training tokens/s (last step) | wall time (load included) |\n|---|---:|---:|\n",
    );
    for (side, m) in tune {
        r.push_str(&format!(
            "| {side} | {} | {:.1} s |\n",
            m.tune_tokens_per_second
                .map_or_else(|| "?".to_owned(), |t| format!("{t:.0}")),
            m.wall.as_secs_f64()
        ));
    }
    r.push_str(&format!(
        "\nThe whole check took {:.0} s ({}).\n",
        total.as_secs_f64(),
        if o.device == "cpu" {
            "no limit on the dry run".to_owned()
        } else {
            format!("at most {} s on a GPU", TIME_LIMIT.as_secs())
        }
    ));
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_last_step_line_gives_the_training_speed() {
        let stderr = "loading x\n[##--] 1/2 loss 2.1 lr 1e-4 812 tok/s ETA 0:00:01\n\
                      [####] 2/2 loss 2.0 lr 1e-4 905 tok/s ETA 0:00:00\ndone: 2 steps\n";
        assert_eq!(last_tokens_per_second(stderr), Some(905.0));
        assert_eq!(
            last_tokens_per_second("\r[#] 1/2 loss 1 lr 1 10 tok/s\r[##] 2/2 loss 1 lr 1 12 tok/s"),
            Some(12.0)
        );
        assert_eq!(last_tokens_per_second("no steps\n"), None);
    }
}
