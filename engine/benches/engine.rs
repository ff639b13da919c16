//! Prefill and decode speed of the engine on real GGUF models, for `cargo xtask bench engine`,
//! which runs llama.cpp on the same files and the same token ids beside it.
//!
//! Input: `KOKUSHI_BENCH_MODELS` = `name=path` pairs separated by `;`, and
//! `KOKUSHI_BENCH_DIR`, a folder where each model's prompt ids are written
//! (`<name>.ids.json`, and the text they encode, `<name>.txt`) for the reference run. Output: one `RESULT {json}` line per model.
//! Each figure is the best of `REPEATS` runs; threads come from `CANDLE_NUM_THREADS`.

mod common;

use std::path::PathBuf;

use kokushi_engine::{GenerationParams, LoadOptions, Model};

const PROMPT_TOKENS: usize = 256;
const DECODE_TOKENS: usize = 64;
const REPEATS: usize = 3;

fn main() {
    let Some(models) = std::env::var_os("KOKUSHI_BENCH_MODELS") else {
        eprintln!("KOKUSHI_BENCH_MODELS is not set: run `cargo xtask bench engine`");
        return;
    };
    let dir = PathBuf::from(std::env::var_os("KOKUSHI_BENCH_DIR").unwrap_or_else(|| ".".into()));
    for spec in models
        .to_string_lossy()
        .split(';')
        .filter(|s| !s.is_empty())
    {
        let (name, path) = spec.split_once('=').expect("name=path");
        let mut model = match Model::load(path.as_ref(), &LoadOptions::default()) {
            Ok(model) => model,
            Err(e) => panic!("{name}: {e}"),
        };
        let (ids, text) = common::exam_prompt(&model, PROMPT_TOKENS);
        let params = GenerationParams {
            max_new_tokens: DECODE_TOKENS + 1,
            stop: Vec::new(),
        };
        let (mut prefill, mut decode, mut steps) = (0.0_f64, 0.0_f64, 0);
        for _ in 0..REPEATS {
            let g = model.generate_tokens(&ids, &params).expect("generates");
            steps = g.generated_tokens.saturating_sub(1);
            // Timed in nanoseconds (`Duration`), not whole milliseconds.
            prefill = prefill.max(ids.len() as f64 / g.prefill.as_secs_f64().max(1e-9));
            decode = decode.max(steps as f64 / g.decode.as_secs_f64().max(1e-9));
        }
        std::fs::write(dir.join(format!("{name}.ids.json")), format!("{ids:?}"))
            .expect("write the prompt ids");
        // Fidelity: the log-probabilities of our 20 most likely next tokens, for the reference
        // to compare with its own.
        let logprobs = model.next_token_logprobs(&ids).expect("logprobs");
        let mut top: Vec<(usize, f64)> = logprobs.iter().copied().enumerate().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let top: Vec<String> = top
            .iter()
            .take(20)
            .map(|(id, lp)| format!("[{id}, {lp}]"))
            .collect();
        std::fs::write(
            dir.join(format!("{name}.top.json")),
            format!("[{}]", top.join(", ")),
        )
        .expect("write the top log-probabilities");
        // The text too, so the reference can check that it tokenizes it the same way.
        std::fs::write(dir.join(format!("{name}.txt")), &text).expect("write the prompt text");
        // With what the engine runs the file's matrices as (conversions at load, kernels, the
        // instruction set), for the table.
        let result = serde_json::json!({
            "model": name,
            "quantization": model.info().quantization,
            "arithmetic": model.info().arithmetic,
            "prompt_tokens": ids.len(),
            "prefill_tok_s": prefill,
            "decode_tokens": steps,
            "decode_tok_s": decode,
        });
        println!("RESULT {result}");
    }
}
