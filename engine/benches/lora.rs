//! Time of one LoRA training step on a real model, for `cargo xtask bench lora`, which times
//! PyTorch + PEFT on the same token ids beside it.
//!
//! Input: `KOKUSHI_BENCH_MODEL` (a GGUF file or model folder) and `KOKUSHI_BENCH_DIR`, where the
//! sequence's ids are written (`lora.ids.json`) for the reference run. The step: one sequence of
//! `SEQ` tokens, LoRA r 8 (alpha 16) on q_proj and v_proj, AdamW, dropout 0. Two variants: the
//! loss over the last `ANSWER` tokens only (an exam question and its answer: what tuning on
//! exam data does) and over every position (free-text instructions). Output: one
//! `RESULT {json}` line; each figure is the median of `REPEATS` steps after one warm-up step.
//! Threads come from `CANDLE_NUM_THREADS`.

mod common;

use std::path::PathBuf;
use std::time::Instant;

use kokushi_engine::{AdamWSettings, LoadOptions, LoraSpec, Model, Sequence};

const SEQ: usize = 256;
const ANSWER: usize = 8;
const REPEATS: usize = 5;

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() {
    let Some(path) = std::env::var_os("KOKUSHI_BENCH_MODEL") else {
        eprintln!("KOKUSHI_BENCH_MODEL is not set: run `cargo xtask bench lora`");
        return;
    };
    let dir = PathBuf::from(std::env::var_os("KOKUSHI_BENCH_DIR").unwrap_or_else(|| ".".into()));
    let mut model = Model::load(path.as_ref(), &LoadOptions::default()).expect("model loads");
    let (ids, _) = common::exam_prompt(&model, SEQ);
    std::fs::write(
        dir.join("lora.ids.json"),
        serde_json::to_string(&ids).expect("json"),
    )
    .expect("ids written");
    let spec = LoraSpec {
        rank: 8,
        alpha: 16.0,
        dropout: 0.0,
        targets: vec!["q_proj".to_owned(), "v_proj".to_owned()],
    };
    let mut trainer = model
        .start_lora("bench", &spec, AdamWSettings::default(), 1)
        .expect("adapter");
    let mut result = serde_json::Map::new();
    for (name, response_start) in [("answer", SEQ - ANSWER), ("all", 1)] {
        let batch = [Sequence {
            ids: ids.clone(),
            response_start,
        }];
        let mut times = Vec::new();
        let mut losses = Vec::new();
        for step in 0..=REPEATS {
            let started = Instant::now();
            let stats = trainer
                .step(&model, &batch, 1e-4, step as u64)
                .expect("step");
            if step > 0 {
                times.push(started.elapsed().as_secs_f64());
            }
            losses.push(stats.loss);
            eprintln!(
                "{name}: step {step}: {:.3} s, loss {:.4}",
                started.elapsed().as_secs_f64(),
                stats.loss
            );
        }
        result.insert(format!("{name}_step_s"), serde_json::json!(median(times)));
        result.insert(format!("{name}_losses"), serde_json::json!(losses));
    }
    result.insert("seq".into(), serde_json::json!(SEQ));
    result.insert("answer_tokens".into(), serde_json::json!(ANSWER));
    result.insert(
        "quantization".into(),
        serde_json::json!(model.info().quantization),
    );
    println!("RESULT {}", serde_json::Value::Object(result));
}
