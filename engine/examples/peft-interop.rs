//! The PEFT interop check, our half: for each architecture, train a LoRA adapter on the tiny
//! fixture model for a few steps, write it in PEFT's form, and record the log-probabilities our
//! engine gives through it. `xtask/scripts/peft_check.py` then loads each adapter with Hugging
//! Face PEFT onto the fixture's Hugging Face folder and compares.
//!
//! `cargo run -p kokushi-engine --example peft-interop -- DIR` (`cargo xtask peft-check` runs
//! both halves). Writes `DIR/<case>/{model,adapter}` and `DIR/ours.json`. The Llama case is
//! trained on the GGUF form, whose query and key rows llama.cpp's converter permutes: its
//! adapter must come out in the Hugging Face order.

use std::path::PathBuf;
use std::process::ExitCode;

use kokushi_engine::fixture::{self, FixtureSpec};
use kokushi_engine::{AdamWSettings, LoadOptions, LoraSpec, Model, Sequence};

/// Fixture token ids (all in every fixture vocabulary), varied by `seed`.
fn tokens(len: usize, seed: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 40 + (i * 7 + seed * 13) % 60)
        .collect()
}

fn run(dir: &std::path::Path) -> Result<serde_json::Value, Box<dyn std::error::Error>> {
    let mut cases = serde_json::Map::new();
    for (case, arch, gguf) in [
        ("llama-gguf", "llama", true),
        ("llama", "llama", false),
        ("qwen2", "qwen2", false),
        ("gemma3", "gemma3", false),
    ] {
        let spec = FixtureSpec::tiny(arch, 11);
        let case_dir = dir.join(case);
        let hf = case_dir.join("model");
        fixture::write_hf_folder(&hf, &spec)?;
        let source = if gguf {
            let path = case_dir.join("model.gguf");
            fixture::write_gguf(&path, &spec)?;
            path
        } else {
            hf.clone()
        };
        let mut model = Model::load(&source, &LoadOptions::default())?;
        let lora = LoraSpec {
            rank: 4,
            alpha: 8.0,
            dropout: 0.05,
            targets: kokushi_engine::PROJECTIONS.map(str::to_owned).to_vec(),
        };
        let mut trainer = model.start_lora("t", &lora, AdamWSettings::default(), 7)?;
        let batch: Vec<Sequence> = (0..3)
            .map(|s| Sequence {
                ids: tokens(24, s),
                response_start: 16,
            })
            .collect();
        for step in 0..4 {
            trainer.step(&model, &batch, 5e-2, step)?;
        }
        trainer.save_peft(&case_dir.join("adapter"), "kokushi/tiny-fixture")?;
        model.use_adapter(Some("t"))?;
        let probe = tokens(40, 9);
        let logprobs = model.next_token_logprobs(&probe)?;
        model.use_adapter(None)?;
        let base = model.next_token_logprobs(&probe)?;
        let moved = logprobs
            .iter()
            .zip(&base)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0, f64::max);
        cases.insert(
            case.to_owned(),
            serde_json::json!({
                "tokens": probe,
                "logprobs": logprobs,
                "adapter_moved_base_by": moved,
            }),
        );
        eprintln!(
            "{case}: adapter trained and written (moves log-probabilities by up to {moved:.3})"
        );
    }
    Ok(serde_json::Value::Object(cases))
}

fn main() -> ExitCode {
    let Some(dir) = std::env::args().nth(1).map(PathBuf::from) else {
        eprintln!("usage: peft-interop DIR");
        return ExitCode::from(2);
    };
    match run(&dir).and_then(|ours| {
        std::fs::write(dir.join("ours.json"), ours.to_string())?;
        Ok(())
    }) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
