//! Tests of log-likelihood scoring, on the fixture model.

use super::*;
use crate::LoadOptions;
use crate::fixture::{self, FixtureSpec};

const PROMPT: &str =
    "<|im_start|>user\n最も適切なのはどれか。<|im_end|>\n<|im_start|>assistant\n答え：";

fn fixture_model(seed: u64) -> (tempfile::TempDir, Model) {
    fixture::load(&FixtureSpec::tiny_llama(seed), &LoadOptions::default())
}

/// The log-probability of `continuation` after `prompt` computed the slow way: a fresh prefill
/// of the prompt and every prefix of the continuation, reading only the last logits each time.
fn by_full_prefills(model: &mut Model, prompt: &str, continuation: &str) -> f64 {
    let prompt_ids = model.encode_prompt(prompt).unwrap();
    let ids = model
        .tokenizer
        .encode_fast(continuation, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let mut sum = 0.0;
    for (i, &id) in ids.iter().enumerate() {
        let mut context = prompt_ids.clone();
        context.extend_from_slice(&ids[..i]);
        let logits = model.prefill(&context).unwrap();
        sum += log_softmax_at(&logits, id);
    }
    sum
}

#[test]
fn reusing_the_prompts_cache_gives_the_same_log_probabilities_as_prefilling_each_prefix() {
    let (_dir, mut model) = fixture_model(5);
    let choices: Vec<String> = ["a", "b. 心筋梗塞", "e) 大動脈解離の疑い"]
        .map(str::to_owned)
        .to_vec();
    let scores = model.score_continuations(PROMPT, &choices).unwrap();
    assert_eq!(scores.continuations.len(), 3);
    for (choice, score) in choices.iter().zip(&scores.continuations) {
        let expected = by_full_prefills(&mut model, PROMPT, choice);
        assert!(
            (score.sum - expected).abs() < 1e-3,
            "{choice:?}: cached {} vs full prefills {expected}",
            score.sum
        );
        assert!(score.sum < 0.0 && score.tokens >= 1);
        #[allow(clippy::cast_precision_loss)]
        let mean = score.sum / score.tokens as f64;
        assert!((score.mean - mean).abs() < 1e-12);
    }
    // Scoring leaves nothing behind: the same call again gives the same numbers.
    let again = model.score_continuations(PROMPT, &choices).unwrap();
    assert_eq!(again.continuations, scores.continuations);
}

#[test]
fn probabilities_over_the_vocabulary_sum_to_one() {
    let logits = [0.5_f32, -1.0, 3.0, 0.0];
    let total: f64 = (0..4).map(|i| log_softmax_at(&logits, i).exp()).sum();
    assert!((total - 1.0).abs() < 1e-12);
    assert_eq!(log_softmax_at(&logits, 9), f64::NEG_INFINITY);
}

#[test]
fn an_empty_continuation_is_refused_by_name() {
    let (_dir, mut model) = fixture_model(5);
    let err = model
        .score_continuations(PROMPT, &["a".to_owned(), String::new()])
        .unwrap_err();
    assert!(err.to_string().contains("\"\""), "{err}");
}

#[test]
fn every_architecture_scores_continuations_as_full_prefills_do() {
    // Qwen2 cannot copy its state, so it runs the prompt again per continuation: same numbers.
    for arch in crate::SUPPORTED_ARCHITECTURES {
        let (_dir, mut model) = fixture::load(&FixtureSpec::tiny(arch, 6), &LoadOptions::default());
        let choices: Vec<String> = ["a", "the answer", "is"].map(str::to_owned).to_vec();
        let scores = model.score_continuations(PROMPT, &choices).unwrap();
        for (choice, score) in choices.iter().zip(&scores.continuations) {
            let expected = by_full_prefills(&mut model, PROMPT, choice);
            assert!(
                (score.sum - expected).abs() < 1e-3,
                "{arch} {choice:?}: {} vs {expected}",
                score.sum
            );
        }
    }
}

#[test]
fn token_logprobs_of_prompt_and_continuation_add_up_to_the_continuations_score() {
    let (_dir, mut model) = fixture_model(8);
    let continuation = "b. 心筋梗塞";
    let prompt_ids = model.encode_prompt(PROMPT).unwrap();
    let tail = model
        .tokenizer
        .encode_fast(continuation, false)
        .unwrap()
        .get_ids()
        .to_vec();
    let ids: Vec<u32> = prompt_ids.iter().chain(&tail).copied().collect();
    let values = model.token_logprobs(&ids).unwrap();
    assert_eq!(values.len(), ids.len());
    assert_eq!(values[0], None, "the first token has nothing before it");
    assert!(values[1..].iter().all(|v| v.is_some_and(|v| v < 0.0)));
    let summed: f64 = values[prompt_ids.len()..].iter().flatten().sum();
    let expected = by_full_prefills(&mut model, PROMPT, continuation);
    assert!(
        (summed - expected).abs() < 1e-3,
        "one pass {summed} vs full prefills {expected}"
    );
    assert!(matches!(
        model.token_logprobs(&[]),
        Err(EngineError::EmptyPrompt)
    ));
}
