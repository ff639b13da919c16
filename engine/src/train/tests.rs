use super::*;
use crate::LoadOptions;
use crate::fixture::{self, FixtureSpec, FixtureWeights};

fn spec(targets: &[&str], dropout: f64) -> LoraSpec {
    LoraSpec {
        rank: 2,
        alpha: 4.0,
        dropout,
        targets: targets.iter().map(|t| (*t).to_owned()).collect(),
    }
}

/// A prompt of fixture tokens and a short response.
fn sequence(seed: u32, len: usize, response: usize) -> Sequence {
    Sequence {
        ids: (0..len as u32)
            .map(|i| 40 + (i * 7 + seed * 13) % 60)
            .collect(),
        response_start: len - response,
    }
}

fn load(arch: &str, weights: FixtureWeights) -> (tempfile::TempDir, Model) {
    let mut spec = FixtureSpec::tiny(arch, 5);
    spec.weights = weights;
    fixture::load(&spec, &LoadOptions::default())
}

/// Fills every trained matrix with small values from `seed` (so `B` is not zero and every
/// gradient is alive).
fn randomise(trainer: &mut LoraTrainer, seed: u64) {
    let mut rng = SplitMix64(seed);
    let sizes: Vec<usize> = trainer
        .values()
        .unwrap()
        .iter()
        .map(|(_, v)| v.len())
        .collect();
    for (index, len) in sizes.into_iter().enumerate() {
        let values = (0..len).map(|_| rng.uniform(0.3)).collect();
        trainer.set_values(index, values).unwrap();
    }
}

#[test]
fn lora_gradients_match_finite_differences_for_every_architecture_and_a_quantized_base() {
    let cases = [
        ("llama", FixtureWeights::F32),
        ("qwen2", FixtureWeights::F32),
        ("gemma3", FixtureWeights::F32),
        ("llama", FixtureWeights::Q8_0),
        ("llama", FixtureWeights::Q4K),
        ("gemma3", FixtureWeights::Q4_1),
    ];
    for (arch, weights) in cases {
        let (_dir, mut model) = load(arch, weights);
        let mut trainer = model
            .start_lora("t", &spec(&PROJECTIONS, 0.0), AdamWSettings::default(), 1)
            .unwrap();
        randomise(&mut trainer, 9);
        let batch = [sequence(1, 12, 4), sequence(2, 9, 3)];
        let (_, _, grads) = trainer.gradients(&model, &batch, 0).unwrap();
        let values = trainer.values().unwrap();
        // Entries of the first layer's query pair, the last layer's down pair and a middle one.
        let picks = [0, 1, values.len() / 2, values.len() - 2, values.len() - 1];
        let mut checked = 0;
        for &index in &picks {
            let (name, base) = &values[index];
            for element in [0, base.len() / 2, base.len() - 1] {
                let loss_at = |trainer: &mut LoraTrainer, value: f32| {
                    let mut moved = base.clone();
                    moved[element] = value;
                    trainer.set_values(index, moved).unwrap();
                    trainer.gradients(&model, &batch, 0).unwrap().0
                };
                // Central differences at three steps: a large step suffers the curvature, a
                // small one the f32 rounding of a loss summed through the model; the gradient
                // must agree with the best of them (a wrong gradient misses them all).
                let analytic = f64::from(grads[index][element]);
                let numeric = [2e-2f32, 1e-2, 5e-3]
                    .map(|h| {
                        let up = loss_at(&mut trainer, base[element] + h);
                        let down = loss_at(&mut trainer, base[element] - h);
                        (up - down) / (2.0 * f64::from(h))
                    })
                    .into_iter()
                    .min_by(|a, b| (a - analytic).abs().total_cmp(&(b - analytic).abs()))
                    .unwrap();
                trainer.set_values(index, base.clone()).unwrap();
                let tolerance = 2e-3 + 2e-2 * analytic.abs().max(numeric.abs());
                assert!(
                    (numeric - analytic).abs() <= tolerance,
                    "{arch} {weights:?} {name}[{element}]: finite differences {numeric}, \
                     autograd {analytic}"
                );
                checked += usize::from(analytic.abs() > 1e-4);
            }
        }
        assert!(
            checked >= 8,
            "{arch} {weights:?}: too few live gradients ({checked}) to test anything"
        );
    }
}

/// Every projection matrix of the first block, in `f32`.
fn first_block_weights(model: &Model) -> Vec<Vec<f32>> {
    PROJECTIONS
        .iter()
        .map(|name| {
            model.weights.model.blocks[0]
                .projection(name)
                .unwrap()
                .dense_weight()
                .unwrap()
                .flatten_all()
                .unwrap()
                .to_vec1()
                .unwrap()
        })
        .collect()
}

#[test]
fn training_moves_only_the_adapter_and_the_loss_of_a_memorised_sequence_falls() {
    let (_dir, mut model) = load("llama", FixtureWeights::Q8_0);
    let probe: Vec<u32> = sequence(3, 10, 1).ids;
    let before = model.token_logprobs(&probe).unwrap();
    let dense_before = first_block_weights(&model);
    let settings = AdamWSettings {
        weight_decay: 0.01,
        ..AdamWSettings::default()
    };
    let mut trainer = model
        .start_lora("t", &spec(&["q_proj", "v_proj"], 0.0), settings, 3)
        .unwrap();
    let batch = [sequence(4, 14, 5)];
    let first = trainer.loss(&model, &batch).unwrap();
    let mut last = first;
    for step in 0..40 {
        last = trainer.step(&model, &batch, 2e-2, step).unwrap().loss;
    }
    let after = trainer.loss(&model, &batch).unwrap();
    assert!(
        after < first * 0.3,
        "loss went from {first} to {after} (last step {last})"
    );
    assert_eq!(trainer.steps(), 40);
    // The base: the same weights, and the same log-probabilities without the adapter.
    model.use_adapter(None).unwrap();
    assert_eq!(model.token_logprobs(&probe).unwrap(), before);
    assert_eq!(dense_before, first_block_weights(&model));
    // With it, they moved.
    model.use_adapter(Some("t")).unwrap();
    assert_ne!(model.token_logprobs(&probe).unwrap(), before);
}

#[test]
fn a_saved_adapter_loads_back_with_the_logits_it_was_trained_to_give() {
    for arch in ["llama", "qwen2", "gemma3"] {
        let (_dir, mut model) = load(arch, FixtureWeights::F32);
        let mut trainer = model
            .start_lora(
                "trained",
                &spec(&["q_proj", "k_proj", "v_proj", "down_proj"], 0.1),
                AdamWSettings::default(),
                4,
            )
            .unwrap();
        let batch = [sequence(5, 12, 4), sequence(6, 10, 2)];
        for step in 0..5 {
            trainer.step(&model, &batch, 1e-2, step).unwrap();
        }
        let out = tempfile::tempdir().unwrap();
        trainer.save_peft(out.path(), "tiny").unwrap();
        model.load_adapter(out.path(), "loaded").unwrap();
        let probe = sequence(7, 12, 1).ids;
        model.use_adapter(Some("trained")).unwrap();
        let trained = model.token_logprobs(&probe).unwrap();
        model.use_adapter(Some("loaded")).unwrap();
        let loaded = model.token_logprobs(&probe).unwrap();
        for (a, b) in trained.iter().zip(&loaded) {
            let (a, b) = (a.unwrap_or(0.0), b.unwrap_or(0.0));
            assert!((a - b).abs() < 1e-5, "{arch}: {a} trained, {b} loaded");
        }
        model.use_adapter(None).unwrap();
        assert_ne!(model.token_logprobs(&probe).unwrap(), trained);
    }
}

#[test]
fn a_run_resumed_from_its_state_ends_with_the_uninterrupted_runs_adapter() {
    let run = |stop_after: Option<u64>, state: &Path| -> Vec<(String, Vec<f32>)> {
        let (_dir, mut model) = load("gemma3", FixtureWeights::Q8_0);
        let mut trainer = model
            .start_lora(
                "t",
                &spec(&["q_proj", "v_proj", "gate_proj"], 0.2),
                AdamWSettings {
                    weight_decay: 0.1,
                    ..AdamWSettings::default()
                },
                8,
            )
            .unwrap();
        let batches = [
            vec![sequence(1, 12, 3), sequence(2, 8, 2)],
            vec![sequence(3, 11, 4)],
        ];
        let mut first = 0;
        if stop_after.is_none() && state.exists() {
            trainer.load_state(state).unwrap();
            first = trainer.steps();
        }
        for step in first..6 {
            let batch = &batches[usize::try_from(step).unwrap() % 2];
            trainer.step(&model, batch, 5e-3, 100 + step).unwrap();
            if stop_after == Some(step + 1) {
                trainer.save_state(state).unwrap();
                break;
            }
        }
        trainer.values().unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state.safetensors");
    let unbroken = run(None, &dir.path().join("absent"));
    run(Some(3), &state);
    let resumed = run(None, &state);
    assert_eq!(unbroken, resumed);
}

#[test]
fn impossible_adapters_and_sequences_are_refused_with_a_reason() {
    let (_dir, mut model) = load("llama", FixtureWeights::F32);
    let settings = AdamWSettings::default();
    let err = model
        .start_lora("x", &spec(&["qkv"], 0.0), settings, 0)
        .unwrap_err();
    assert!(err.to_string().contains("\"qkv\" is not one of"), "{err}");
    let err = model
        .start_lora("x", &spec(&["q_proj"], 1.0), settings, 0)
        .unwrap_err();
    assert!(err.to_string().contains("dropout"), "{err}");
    let trainer = model
        .start_lora("x", &spec(&["q_proj"], 0.0), settings, 0)
        .unwrap();
    let err = model
        .start_lora("x", &spec(&["q_proj"], 0.0), settings, 0)
        .unwrap_err();
    assert!(err.to_string().contains("already loaded"), "{err}");
    let no_response = Sequence {
        ids: vec![40, 41, 42],
        response_start: 3,
    };
    let err = trainer.loss(&model, &[no_response]).unwrap_err();
    assert!(
        err.to_string().contains("needs a prompt and a response"),
        "{err}"
    );
}

#[test]
fn kept_base_matrices_give_the_gradients_of_matrices_dequantized_per_product() {
    // Arrange: sequences longer than the rows a product streams (16), so every base product
    // takes the dense path; 8-bit, 4-bit and candle-quantized bases.
    for weights in [
        FixtureWeights::Q8_0,
        FixtureWeights::Q4_1,
        FixtureWeights::Q4K,
    ] {
        let (_dir, mut model) = load("llama", weights);
        let mut start = |name: &str| {
            let mut trainer = model
                .start_lora(name, &spec(&PROJECTIONS, 0.0), AdamWSettings::default(), 1)
                .unwrap();
            randomise(&mut trainer, 3);
            trainer
        };
        let kept = start("kept");
        let mut fresh = start("fresh");
        fresh.dense = Arc::new(DenseCache::with_budget(0));
        let batch = [sequence(1, 30, 20)];

        // Act: twice with the cache (filled by the first call), once without.
        let first = kept.gradients(&model, &batch, 0).unwrap();
        let held = kept.dense.bytes();
        let second = kept.gradients(&model, &batch, 0).unwrap();
        let reference = fresh.gradients(&model, &batch, 0).unwrap();

        // Assert: the same bits every time; the cache holds matrices, the disabled one none.
        assert!(held > 0, "{weights:?}: nothing kept");
        assert_eq!(kept.dense.bytes(), held, "{weights:?}: kept twice");
        assert_eq!(fresh.dense.bytes(), 0);
        for run in [&second, &reference] {
            assert_eq!(first.0.to_bits(), run.0.to_bits(), "{weights:?}: loss");
            for (a, b) in first.2.iter().zip(&run.2) {
                let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(a), bits(b), "{weights:?}: gradients");
            }
        }
    }
}

#[test]
fn the_kept_matrices_stay_within_their_budget() {
    let (_dir, mut model) = load("llama", FixtureWeights::Q8_0);
    let mut trainer = model
        .start_lora("t", &spec(&PROJECTIONS, 0.0), AdamWSettings::default(), 1)
        .unwrap();
    trainer.dense = Arc::new(DenseCache::with_budget(10_000));
    trainer
        .gradients(&model, &[sequence(1, 30, 20)], 0)
        .unwrap();
    let held = trainer.dense.bytes();
    assert!(held > 0 && held <= 10_000, "{held} bytes kept");
}

/// The engine's fused training layers (`transformer::fused`: RMS norm, rotary embedding, masked
/// softmax, gate, one autograd node each) give the loss and gradients of candle's composed
/// forms, which `Kernels::Generic` (the GPU's code) runs: every architecture, with a sequence
/// longer than Gemma 3's sliding window (256), so that its mask hides slots.
#[test]
fn fused_training_layers_give_the_gradients_of_the_composed_ones() {
    for arch in ["llama", "qwen2", "gemma3"] {
        let gradients = |kernels: crate::Kernels| {
            let mut fixture_spec = FixtureSpec::tiny(arch, 5);
            fixture_spec.weights = FixtureWeights::F32;
            let opts = LoadOptions {
                kernels,
                ..LoadOptions::default()
            };
            let (_dir, mut model) = fixture::load(&fixture_spec, &opts);
            let mut trainer = model
                .start_lora("t", &spec(&PROJECTIONS, 0.0), AdamWSettings::default(), 1)
                .unwrap();
            randomise(&mut trainer, 5);
            let batch = [sequence(1, 300, 60), sequence(2, 12, 4)];
            trainer.gradients(&model, &batch, 0).unwrap()
        };
        let (fused_loss, _, fused) = gradients(crate::Kernels::Own);
        let (composed_loss, _, composed) = gradients(crate::Kernels::Generic);
        assert!(
            (fused_loss - composed_loss).abs() <= 1e-5 * composed_loss.abs(),
            "{arch}: loss {fused_loss} against {composed_loss}"
        );
        let mut live = 0;
        for (index, (f, c)) in fused.iter().zip(&composed).enumerate() {
            let scale = c.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let worst = f
                .iter()
                .zip(c)
                .map(|(a, b)| (a - b).abs())
                .fold(0f32, f32::max);
            assert!(
                worst <= 1e-3 * scale,
                "{arch}: matrix {index}'s gradients differ by {worst} (largest {scale})"
            );
            live += usize::from(scale > 1e-4);
        }
        assert!(live * 2 > fused.len(), "{arch}: too few live gradients");
    }
}
