//! `cargo xtask bench eval`: questions per minute of `kokushi eval` on IgakuQA 2022's text-only
//! questions, both demo models, both modes, one question at a time and in batches, beside
//! llama.cpp's own OpenAI-compatible server (PyPI `llama-cpp-python[server]`) on the same GGUF
//! file and threads, asked through our remote path with the same prompt text. The reference
//! must have answered every question: a crashed server or an empty reply is an error, never a
//! ratio.

use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

use crate::{cache_dir, cargo, run_cmd, step, target_dir, tools};

/// What `cargo xtask bench eval` was asked for.
struct Options {
    /// How many of the 301 questions: spread over the year's six blocks (every k-th).
    questions: Option<usize>,
    /// Batch sizes to try for generation (ours) and parallel requests (the reference).
    batches: Vec<usize>,
    /// How many of them llama-cpp-python's server scores in loglik mode (see [`bench_eval`]).
    reference_loglik: usize,
    data: PathBuf,
}

impl Options {
    fn parse(root: &Path, args: &[String]) -> Result<Self> {
        let mut options = Self {
            questions: Some(60),
            batches: vec![1, 4],
            reference_loglik: 3,
            data: root.join("../shared/data/igakuqa"),
        };
        let mut args = args.iter();
        while let Some(arg) = args.next() {
            let mut value = || {
                args.next()
                    .with_context(|| format!("{arg} needs a value (cargo xtask help)"))
            };
            match arg.as_str() {
                "--questions" => {
                    let v = value()?;
                    options.questions = if v == "all" {
                        None
                    } else {
                        let n: usize = v
                            .parse()
                            .with_context(|| format!("--questions {v}: a number or `all`"))?;
                        ensure!(n > 0, "--questions must be at least 1");
                        Some(n)
                    };
                }
                "--batches" => {
                    let v = value()?;
                    options.batches = v
                        .split(',')
                        .map(|b| {
                            b.trim()
                                .parse::<usize>()
                                .ok()
                                .filter(|b| (1..=64).contains(b))
                                .with_context(|| {
                                    format!("--batches {v}: sizes from 1 to 64, e.g. 1,4,8")
                                })
                        })
                        .collect::<Result<_>>()?;
                    if !options.batches.contains(&1) {
                        options.batches.insert(0, 1);
                    }
                }
                "--reference-loglik-questions" => {
                    let v = value()?;
                    options.reference_loglik =
                        v.parse().ok().filter(|n| *n > 0).with_context(|| {
                            format!("--reference-loglik-questions {v}: 1 or more")
                        })?;
                }
                "--data" => options.data = PathBuf::from(value()?),
                other => bail!(
                    "bench eval: unknown option {other} (--questions N|all, --batches 1,4,8, \
                     --reference-loglik-questions K, --data DIR)"
                ),
            }
        }
        Ok(options)
    }
}

/// The year's text-only questions (exam order), `n` of them spread over the blocks, and how
/// many there are in all.
fn questions(data: &Path, n: Option<usize>) -> Result<(Vec<String>, usize)> {
    let year = data.join("2022");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&year)
        .with_context(|| format!("cannot read {} (--data DIR)", year.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "jsonl"))
        .collect();
    files.sort();
    let mut all = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file)
            .with_context(|| format!("cannot read {}", file.display()))?;
        for (number, line) in text.lines().enumerate() {
            let q: Value = serde_json::from_str(line)
                .with_context(|| format!("{}:{}: not JSON", file.display(), number + 1))?;
            if q["text_only"] == true {
                all.push(line.to_owned());
            }
        }
    }
    ensure!(
        !all.is_empty(),
        "no text-only questions in {}",
        year.display()
    );
    let total = all.len();
    Ok(match n {
        Some(n) if n < total => {
            let picked = (0..n).map(|i| all[i * total / n].clone()).collect();
            (picked, total)
        }
        _ => (all, total),
    })
}

/// One measured configuration: questions per minute and the predictions it wrote.
struct Measured {
    per_minute: f64,
    predictions: Vec<String>,
}

/// Runs `kokushi eval` and checks that every question got a real answer: a line per question,
/// none carrying `error`, generated text or choice scores in each.
fn eval(
    bin: &Path,
    (model, mode, format): (&str, &str, &str),
    exam: &Path,
    out: &Path,
    extra: &[String],
    expected: usize,
) -> Result<Measured> {
    let _ = std::fs::remove_file(out);
    let _ = std::fs::remove_file(out.with_extension("jsonl.part"));
    let output = Command::new(bin)
        .args(["eval", "--model", model, "--exam-set"])
        .arg(exam)
        .args(["--mode", mode, "--prompt-format", format, "--out"])
        .arg(out)
        .args(extra)
        .env("CANDLE_NUM_THREADS", "2")
        .env_remove("OPENAI_API_KEY")
        .output()
        .context("running kokushi eval")?;
    let log = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.success(),
        "kokushi eval --model {model} --mode {mode} failed:\n{}",
        tail(&log, 20)
    );
    let per_minute = log
        .lines()
        .rev()
        .find(|l| l.starts_with("wrote "))
        .and_then(|l| l.strip_suffix(" questions/min"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<f64>().ok())
        .with_context(|| format!("kokushi eval printed no speed:\n{}", tail(&log, 20)))?;
    let text = std::fs::read_to_string(out)
        .with_context(|| format!("kokushi eval wrote no {}", out.display()))?;
    let lines: Vec<Value> = text
        .lines()
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()
        .with_context(|| format!("{}: not JSON lines", out.display()))?;
    ensure!(
        lines.len() == expected,
        "{model} {mode}: {} answers for {expected} questions",
        lines.len()
    );
    for line in &lines {
        let id = line["problem_id"].as_str().unwrap_or("?");
        if let Some(error) = line.get("error") {
            bail!("{model} {mode}: {id} was not answered: {error}");
        }
        let answered = match mode {
            "loglik" => line["logprob_sum"]
                .as_array()
                .is_some_and(|v| !v.is_empty()),
            _ => line["generated_tokens"].as_u64().unwrap_or(0) > 0,
        };
        ensure!(answered, "{model} {mode}: {id} got an empty answer: {line}");
    }
    Ok(Measured {
        per_minute,
        predictions: lines
            .iter()
            .map(|l| l["prediction"].as_str().unwrap_or_default().to_owned())
            .collect(),
    })
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// llama.cpp's server on a free loopback port, stopped when dropped.
struct Reference {
    child: Child,
    base: String,
    log: PathBuf,
}

impl Reference {
    fn start(python: &Path, model: &Path, logits_all: bool, log: PathBuf) -> Result<Self> {
        let port = crate::services::free_port()?;
        let file = std::fs::File::create(&log)?;
        let child = Command::new(python)
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(model)
            .args(["--model_alias", "bench", "--host", "127.0.0.1"])
            .args(["--port", &port.to_string()])
            .args([
                "--n_threads",
                "2",
                "--n_threads_batch",
                "2",
                "--n_ctx",
                "4096",
            ])
            .args(["--logits_all", if logits_all { "true" } else { "false" }])
            .stdout(Stdio::from(file.try_clone()?))
            .stderr(Stdio::from(file))
            .spawn()
            .context("starting llama_cpp.server")?;
        let mut reference = Self {
            child,
            base: format!("http://127.0.0.1:{port}/v1"),
            log,
        };
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = reference.child.try_wait()? {
                bail!(
                    "llama.cpp's server exited ({status}) before answering:\n{}",
                    reference.log_tail()
                );
            }
            if models_answer(port) {
                return Ok(reference);
            }
            ensure!(
                Instant::now() < deadline,
                "llama.cpp's server did not answer on port {port} within 3 minutes:\n{}",
                reference.log_tail()
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }

    /// Fails when the server died during a measurement (a crash mid-run is never a figure).
    fn alive(&mut self) -> Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!("llama.cpp's server died ({status}):\n{}", self.log_tail());
        }
        Ok(())
    }

    fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 15)
    }
}

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Whether `GET /v1/models` answers 200 on `port`.
fn models_answer(port: u16) -> bool {
    let Ok(mut stream) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_secs(5)));
    if stream
        .write_all(b"GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut first = String::new();
    std::io::BufReader::new(stream)
        .read_line(&mut first)
        .is_ok_and(|_| first.contains(" 200 "))
}

/// One table row: a model and mode, ours and the reference's.
struct Row {
    model: &'static str,
    mode: &'static str,
    ours: Vec<(usize, f64)>,
    theirs: Vec<(usize, f64)>,
    agreement: (usize, usize),
}

fn best(figures: &[(usize, f64)]) -> (usize, f64) {
    figures
        .iter()
        .copied()
        .fold((0, f64::MIN), |a, b| if b.1 > a.1 { b } else { a })
}

pub fn bench_eval(root: &Path, args: &[String]) -> Result<()> {
    let options = Options::parse(root, args)?;
    let store = tools::fetch_demo_model()?;
    let gemma = tools::fetch_gemma_model()?;
    let python = tools::llama_cpp_python()?;
    step("building the kokushi binary (the test build: the engine is compiled at opt-level 3)");
    run_cmd(
        cargo()
            .args(["build", "--workspace", "--bins"])
            .current_dir(root),
    )?;
    let bin = target_dir(root).join("debug/kokushi");
    let dir = cache_dir().join("bench-eval");
    std::fs::create_dir_all(&dir)?;
    let (asked, total) = questions(&options.data, options.questions)?;
    let exam = dir.join("igakuqa-2022-text-only.jsonl");
    std::fs::write(&exam, asked.join("\n") + "\n")?;
    let n = asked.len();
    let (build, _) = tools::llama_cpp_build();

    let models: [(&'static str, PathBuf, &str); 2] = [
        (
            "smollm2-135m",
            store.join(tools::DEMO_MODEL),
            "chatml_ja_v1",
        ),
        ("gemma3-270m", gemma, "gemma_ja_v1"),
    ];
    let mut rows = Vec::new();
    for (name, path, format) in &models {
        for mode in ["generate", "loglik"] {
            // Log-likelihood scores one question at a time (its choices in one pass): batches
            // apply to generation only.
            let batches: &[usize] = if mode == "generate" {
                &options.batches
            } else {
                &[1]
            };
            let model = path.to_string_lossy().into_owned();
            let mut ours = Vec::new();
            let mut ours_predictions = Vec::new();
            for &batch in batches {
                step(&format!(
                    "{name} {mode}: ours, batch {batch}, {n} questions"
                ));
                let out = dir.join(format!("{name}-{mode}-ours-{batch}.jsonl"));
                let extra = vec!["--batch".to_owned(), batch.to_string()];
                let measured = eval(&bin, (&model, mode, format), &exam, &out, &extra, n)?;
                eprintln!("  {:.1} questions/min", measured.per_minute);
                ours.push((batch, measured.per_minute));
                ours_predictions = measured.predictions;
            }
            // llama-cpp-python's server scores an echoed prompt in Python, sorting the whole
            // vocabulary at every prompt position (minutes a question for Gemma's 262,144
            // tokens): in loglik mode it answers only the first few questions.
            let (their_exam, their_n) = if mode == "loglik" && options.reference_loglik < n {
                let k = options.reference_loglik;
                let file = dir.join(format!("first-{k}.jsonl"));
                std::fs::write(&file, asked[..k].join("\n") + "\n")?;
                (file, k)
            } else {
                (exam.clone(), n)
            };
            let log = dir.join(format!("{name}-{mode}-llama-server.log"));
            let mut server = Reference::start(&python, path, mode == "loglik", log)?;
            let remote = format!("openai:{}#bench", server.base);
            let mut theirs = Vec::new();
            let mut their_predictions = Vec::new();
            for &parallel in batches {
                step(&format!(
                    "{name} {mode}: llama.cpp server ({build} build), {parallel} at a time, \
                     {their_n} questions"
                ));
                let out = dir.join(format!("{name}-{mode}-llama-{parallel}.jsonl"));
                // A long question's loglik request takes minutes there: no timeout cuts it.
                let extra = vec![
                    "--concurrency".to_owned(),
                    parallel.to_string(),
                    "--timeout".to_owned(),
                    "1800".to_owned(),
                ];
                let measured = eval(
                    &bin,
                    (&remote, mode, format),
                    &their_exam,
                    &out,
                    &extra,
                    their_n,
                )
                .with_context(|| format!("the reference failed:\n{}", server.log_tail()))?;
                server.alive()?;
                eprintln!("  {:.1} questions/min", measured.per_minute);
                theirs.push((parallel, measured.per_minute));
                their_predictions = measured.predictions;
            }
            drop(server);
            let same = ours_predictions
                .iter()
                .zip(&their_predictions)
                .filter(|(a, b)| a == b)
                .count();
            rows.push(Row {
                model: name,
                mode,
                ours,
                theirs,
                agreement: (same, their_predictions.len()),
            });
        }
    }

    println!(
        "\n{:<14} {:<9} {:>12} {:>17} {:>12} {:>17} {:>7} {:>11}",
        "model",
        "mode",
        "ours b1",
        "ours best",
        "llama.cpp 1",
        "llama.cpp best",
        "ratio",
        "same pred."
    );
    for row in &rows {
        let (b, ours_best) = best(&row.ours);
        let (p, their_best) = best(&row.theirs);
        ensure!(
            their_best > 0.0 && ours_best > 0.0,
            "{} {}: a figure is missing",
            row.model,
            row.mode
        );
        println!(
            "{:<14} {:<9} {:>8.1} q/m {:>8.1} q/m (b{b:<2}) {:>8.1} q/m {:>8.1} q/m (p{p:<2}) {:>6.2}x {:>5}/{:<5}",
            row.model,
            row.mode,
            row.ours[0].1,
            ours_best,
            row.theirs[0].1,
            their_best,
            ours_best / their_best,
            row.agreement.0,
            row.agreement.1,
        );
    }
    println!(
        "({n} of the {total} text-only questions of IgakuQA 2022, spread over its blocks; \
         2 threads each; q/m = questions per minute as kokushi eval reports them, model \
         loading excluded; bN = questions answered together, pN = requests in flight to \
         llama-cpp-python's server ({build} build); same pred. = questions where the last \
         runs of both gave the same prediction; the server's loglik figures are of the first \
         {} questions only: it scores an echoed prompt in Python, a sort of the whole \
         vocabulary at every position)",
        options.reference_loglik.min(n)
    );
    Ok(())
}
