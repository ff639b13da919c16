//! Tests of the `generate` module, on the fixture model.

use super::*;
use crate::LoadOptions;
use crate::fixture::{self, FixtureSpec};

const PROMPT_A: &str =
    "<|im_start|>user\nWhich drug is first-line here?<|im_end|>\n<|im_start|>assistant\n";
const PROMPT_B: &str =
    "<|im_start|>user\n最も適切なのはどれか。<|im_end|>\n<|im_start|>assistant\n";

fn fixture_model(seed: u64) -> (tempfile::TempDir, Model) {
    fixture::load(&FixtureSpec::tiny_llama(seed), &LoadOptions::default())
}

fn params(max_new_tokens: usize, stop: &[&str]) -> GenerationParams {
    GenerationParams {
        max_new_tokens,
        stop: stop.iter().map(|s| (*s).to_owned()).collect(),
    }
}

/// Timings differ between runs; everything else must not.
fn without_timings(generation: Generation) -> Generation {
    Generation {
        prefill: std::time::Duration::ZERO,
        decode: std::time::Duration::ZERO,
        ..generation
    }
}

#[test]
fn generation_is_deterministic_and_the_kv_cache_resets_between_prompts() {
    // Arrange
    let (_dir, mut model) = fixture_model(11);
    let (_other_dir, mut fresh) = fixture_model(11);
    let p = params(24, &[]);

    // Act
    let first = model.generate(PROMPT_A, &p).expect("A");
    let other = model.generate(PROMPT_B, &p).expect("B");
    let again = model.generate(PROMPT_A, &p).expect("A again");
    let on_fresh_model = fresh.generate(PROMPT_A, &p).expect("A on a fresh model");

    // Assert
    assert!(!first.text.is_empty());
    assert_ne!(first.text, other.text, "different prompts should differ");
    assert_eq!(without_timings(again), without_timings(first.clone()));
    assert_eq!(without_timings(on_fresh_model), without_timings(first));
}

#[test]
fn max_new_tokens_is_respected() {
    // Arrange
    let (_dir, mut model) = fixture_model(2);

    for max_new_tokens in [1, 5, 17] {
        // Act
        let generation = model
            .generate(PROMPT_A, &params(max_new_tokens, &[]))
            .expect("generate");

        // Assert
        assert_eq!(generation.generated_tokens, max_new_tokens);
        assert_eq!(generation.stop_reason, StopReason::MaxNewTokens);
    }
}

#[test]
fn zero_max_new_tokens_returns_nothing_and_counts_the_prompt() {
    // Arrange
    let (_dir, mut model) = fixture_model(2);

    // Act
    let generation = model.generate("hello", &params(0, &[])).expect("generate");

    // Assert
    assert_eq!(generation.text, "");
    assert_eq!(generation.generated_tokens, 0);
    assert_eq!(generation.prompt_tokens, 4, "h+e merge, l, l, o");
    assert_eq!(generation.stop_reason, StopReason::MaxNewTokens);
}

#[test]
fn a_stop_string_cuts_the_text_where_it_starts() {
    // Arrange
    let (_dir, mut model) = fixture_model(4);
    let full = model.generate(PROMPT_A, &params(40, &[])).expect("full");
    let stop: String = full.text.chars().skip(12).take(3).collect();
    let cut = full
        .text
        .find(&stop)
        .expect("the stop string is in the text");

    // Act
    let stopped = model
        .generate(PROMPT_A, &params(40, &["never appears §§", &stop, ""]))
        .expect("stopped");

    // Assert
    assert_eq!(stop.chars().count(), 3);
    assert_eq!(stopped.stop_reason, StopReason::StopSequence);
    assert_eq!(stopped.text, full.text[..cut]);
    assert!(stopped.generated_tokens < full.generated_tokens);
}

#[test]
fn an_end_of_sequence_token_stops_generation_and_is_not_in_the_text() {
    // Arrange
    let (_dir, mut model) = fixture_model(6);
    let full = model.generate(PROMPT_A, &params(8, &[])).expect("full");
    let ids = model
        .tokenizer
        .encode(full.text.as_str(), false)
        .expect("encode");
    // The fixture never emits EOS by itself, so declare its third token an end of sequence.
    let third = model
        .tokenizer
        .decode(&ids.get_ids()[..2], false)
        .expect("decode");
    model.stop_ids.push(ids.get_ids()[2]);

    // Act
    let stopped = model.generate(PROMPT_A, &params(8, &[])).expect("stopped");

    // Assert
    assert_eq!(stopped.stop_reason, StopReason::EndOfSequence);
    assert_eq!(stopped.text, third);
    assert_eq!(stopped.generated_tokens, 3);
}

#[test]
fn a_prompt_longer_than_the_context_is_an_error_naming_both_lengths() {
    // Arrange
    let (_dir, mut model) = fixture_model(1);
    // Lone "q"s never merge, so the prompt is exactly this many tokens.
    let prompt = "q".repeat(fixture::CONTEXT_LENGTH + 76);

    // Act
    let err = model
        .generate(&prompt, &params(4, &[]))
        .expect_err("too long");

    // Assert
    assert!(
        matches!(
            err,
            EngineError::PromptTooLong {
                prompt_tokens: 1100,
                context_length: 1024
            }
        ),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(
        message.contains("1100") && message.contains("1024"),
        "{message}"
    );
}

#[test]
fn generation_stops_when_the_context_is_full() {
    // Arrange
    let (_dir, mut model) = fixture_model(1);
    // (prompt tokens, tokens that fit: the last position predicts one more token)
    let cases = [
        (fixture::CONTEXT_LENGTH, 1),
        (fixture::CONTEXT_LENGTH - 4, 5),
    ];

    for (prompt_tokens, expected) in cases {
        // Act
        let generation = model
            .generate(&"q".repeat(prompt_tokens), &params(50, &[]))
            .expect("generate");

        // Assert
        assert_eq!(generation.prompt_tokens, prompt_tokens);
        assert_eq!(
            generation.generated_tokens, expected,
            "prompt {prompt_tokens}"
        );
        assert_eq!(generation.stop_reason, StopReason::ContextFull);
    }
}

#[test]
fn an_empty_prompt_is_an_error() {
    // Arrange
    let (_dir, mut model) = fixture_model(1);

    // Act
    let err = model.generate("", &params(4, &[])).expect_err("empty");

    // Assert
    assert!(matches!(err, EngineError::EmptyPrompt), "{err:?}");
}

#[test]
fn a_prefill_in_chunks_matches_feeding_tokens_one_at_a_time() {
    // Arrange
    let (_dir, mut model) = fixture_model(8);
    let text = "The patient reports chest pain. ".repeat(30);
    let ids = model
        .tokenizer
        .encode(text.as_str(), false)
        .expect("encode");
    let ids = ids.get_ids();
    assert!(ids.len() > PREFILL_CHUNK, "the prompt must span two chunks");

    // Act
    let chunked = model.prefill(ids).expect("chunked prefill");
    model.weights.clear_kv_cache();
    let mut stepwise = Vec::new();
    for (position, id) in ids.iter().enumerate() {
        stepwise = model.forward(&[*id], position).expect("one token");
    }

    // Assert
    let worst = chunked
        .iter()
        .zip(&stepwise)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(worst < 1e-3, "worst |Δlogit| {worst}");
    assert_eq!(argmax(&chunked), argmax(&stepwise));
}

#[test]
fn argmax_takes_the_first_maximum_and_ignores_nan() {
    // Arrange
    let cases: [(&[f32], u32); 4] = [
        (&[0.0, 3.0, 1.0], 1),
        (&[2.0, 2.0, 1.0], 0),
        (&[f32::NAN, -1.0, -2.0], 1),
        (&[], 0),
    ];

    for (logits, expected) in cases {
        // Act
        let index = argmax(logits);

        // Assert
        assert_eq!(index, expected, "{logits:?}");
    }
}

#[test]
fn the_earliest_stop_string_wins_and_empty_ones_are_ignored() {
    // Arrange
    let stops = |list: &[&str]| list.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    let cases: [(&str, Vec<String>, Option<usize>); 4] = [
        ("answer: b\n\nnext", stops(&["\n\n"]), Some(9)),
        ("answer: b\n\nnext", stops(&["next", "b"]), Some(8)),
        ("answer: b", stops(&["", "zzz"]), None),
        ("解答は「ｂ」です。", stops(&["。"]), Some(24)),
    ];

    for (text, stop, expected) in cases {
        // Act
        let cut = earliest_stop(text, &stop);

        // Assert
        assert_eq!(cut, expected, "{text:?} with {stop:?}");
    }
}

#[test]
fn a_batch_of_prompts_gives_each_the_answer_it_gets_alone() {
    for arch in ["llama", "qwen2", "gemma3"] {
        // Arrange: prompts of different lengths, one with a stop string that ends it early.
        let (_dir, mut model) = crate::fixture::load(
            &crate::fixture::FixtureSpec::tiny(arch, 8),
            &crate::LoadOptions::default(),
        );
        let prompts: Vec<String> = [
            "the answer",
            "in the heart there are four chambers and the",
            "re",
            "is it the one on the left or the right",
        ]
        .map(str::to_owned)
        .to_vec();
        let params = GenerationParams {
            max_new_tokens: 12,
            stop: Vec::new(),
        };
        let alone: Vec<Generation> = prompts
            .iter()
            .map(|p| model.generate(p, &params).expect("alone"))
            .collect();
        // A stop string that occurs in one answer only, to make rows finish at different steps.
        let stop = alone[1].text.chars().skip(3).take(2).collect::<String>();
        let params_with_stop = GenerationParams {
            stop: vec![stop.clone()],
            ..params.clone()
        };
        let alone_with_stop: Vec<Generation> = prompts
            .iter()
            .map(|p| model.generate(p, &params_with_stop).expect("alone"))
            .collect();

        // Act
        let batch = model.generate_batch(&prompts, &params).expect("batch");
        let batch_with_stop = model
            .generate_batch(&prompts, &params_with_stop)
            .expect("batch");

        // Assert
        for (expected, got) in alone
            .iter()
            .zip(&batch)
            .chain(alone_with_stop.iter().zip(&batch_with_stop))
        {
            assert_eq!(got.text, expected.text, "{arch}");
            assert_eq!(got.generated_tokens, expected.generated_tokens, "{arch}");
            assert_eq!(got.stop_reason, expected.stop_reason, "{arch}");
            assert_eq!(got.prompt_tokens, expected.prompt_tokens, "{arch}");
        }
        assert!(
            batch_with_stop
                .iter()
                .any(|g| g.stop_reason == StopReason::StopSequence),
            "{arch}: stop string {stop:?} ends a row early"
        );
    }
}
