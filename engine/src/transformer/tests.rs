use std::sync::Arc;

use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::*;
use crate::LoadOptions;
use crate::fixture::{self, FixtureSpec};

const ARCHITECTURES: [&str; 3] = ["llama", "qwen2", "gemma3"];

fn transformer(arch: &str) -> (tempfile::TempDir, Arc<Transformer>) {
    let (dir, model) = fixture::load(&FixtureSpec::tiny(arch, 11), &LoadOptions::default());
    (dir, Arc::clone(&model.weights.model))
}

/// Token ids that are all in every fixture vocabulary, varied by `seed`.
fn tokens(len: usize, seed: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 40 + (i * 7 + seed * 13) % 60)
        .collect()
}

fn ids(rows: &[Vec<u32>]) -> Tensor {
    let width = rows[0].len();
    let flat: Vec<u32> = rows.iter().flatten().copied().collect();
    Tensor::from_vec(flat, (rows.len(), width), &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    (a - b)
        .unwrap()
        .abs()
        .unwrap()
        .flatten_all()
        .unwrap()
        .max(0)
        .unwrap()
        .to_scalar::<f32>()
        .unwrap()
}

#[test]
fn the_mask_hides_the_future_the_padding_and_what_falls_out_of_the_window() {
    // Arrange: row 0 has 2 slots of left padding; 4 slots, queries at slots 2 and 3.
    let built = mask(&[2, 0], 2, 2, Some(2), &Device::Cpu)
        .unwrap()
        .expect("a mask is needed");

    // Act
    let values = built.flatten_all().unwrap().to_vec1::<f32>().unwrap();

    // Assert: 0 where visible, -inf elsewhere, rows (batch, query), columns (key).
    let seen: Vec<bool> = values.iter().map(|v| v.is_finite()).collect();
    #[rustfmt::skip]
    let expected = [
        false, false, true, false, // row 0, slot 2: padding before it
        false, false, true, true,  // row 0, slot 3
        false, true, true, false,  // row 1, slot 2: window 2 hides slot 0
        false, false, true, true,  // row 1, slot 3
    ];
    assert_eq!(seen, expected);
    assert!(
        mask(&[0], 0, 1, None, &Device::Cpu).unwrap().is_none(),
        "one token with nothing before it needs no mask"
    );
}

#[test]
fn a_left_padded_batch_gives_each_row_the_logits_it_gets_alone() {
    for arch in ARCHITECTURES {
        // Arrange: two prompts of different lengths, the shorter padded on the left.
        let (_dir, model) = transformer(arch);
        let short = tokens(5, 1);
        let long = tokens(9, 2);
        let mut padded = vec![0u32; long.len() - short.len()];
        padded.extend(&short);
        let alone = |prompt: &[u32], next: u32| {
            let mut cache = Cache::default();
            let first = model
                .forward(&ids(&[prompt.to_vec()]), &mut cache, None, Logits::Last)
                .unwrap();
            let second = model
                .forward(&ids(&[vec![next]]), &mut cache, None, Logits::Last)
                .unwrap();
            (first, second)
        };

        // Act: the prompts, then one more token each.
        let mut cache = Cache::with_padding(vec![long.len() - short.len(), 0]);
        let batch_first = model
            .forward(
                &ids(&[padded.clone(), long.clone()]),
                &mut cache,
                None,
                Logits::Last,
            )
            .unwrap();
        let batch_second = model
            .forward(&ids(&[vec![50], vec![60]]), &mut cache, None, Logits::Last)
            .unwrap();
        let (short_first, short_second) = alone(&short, 50);
        let (long_first, long_second) = alone(&long, 60);

        // Assert
        for (row, (first, second)) in [(short_first, short_second), (long_first, long_second)]
            .iter()
            .enumerate()
        {
            let b1 = batch_first.get(row).unwrap().unsqueeze(0).unwrap();
            let b2 = batch_second.get(row).unwrap().unsqueeze(0).unwrap();
            assert!(max_abs_diff(&b1, first) < 1e-4, "{arch} row {row} prompt");
            assert!(max_abs_diff(&b2, second) < 1e-4, "{arch} row {row} next");
        }
    }
}

#[test]
fn one_pass_and_token_by_token_agree_past_the_sliding_window() {
    // Arrange: a sequence longer than the Gemma fixture's window.
    let (_dir, model) = transformer("gemma3");
    let window = fixture::GEMMA3_SLIDING_WINDOW;
    let sequence = tokens(window + 40, 3);

    // Act: all at once; then in a prefix pass and one token at a time.
    let mut cache = Cache::default();
    let whole = model
        .forward(
            &ids(std::slice::from_ref(&sequence)),
            &mut cache,
            None,
            Logits::All,
        )
        .unwrap();
    let mut cache = Cache::default();
    let split = window - 10;
    model
        .forward(
            &ids(&[sequence[..split].to_vec()]),
            &mut cache,
            None,
            Logits::Last,
        )
        .unwrap();
    let mut last = None;
    for &token in &sequence[split..] {
        last = Some(
            model
                .forward(&ids(&[vec![token]]), &mut cache, None, Logits::Last)
                .unwrap(),
        );
    }

    // Assert
    let whole_last = whole
        .get(0)
        .unwrap()
        .get(sequence.len() - 1)
        .unwrap()
        .unsqueeze(0)
        .unwrap();
    assert!(max_abs_diff(&whole_last, &last.unwrap()) < 1e-4);
}

#[test]
fn the_sliding_window_changes_what_the_last_position_sees() {
    // Arrange: the same weights with the window and with a window wider than the sequence.
    let (_dir, model) = transformer("gemma3");
    let mut wide = (*model).clone();
    if let Some(s) = wide.config.sliding.as_mut() {
        s.window = 10_000;
    }
    let sequence = tokens(fixture::GEMMA3_SLIDING_WINDOW + 40, 4);
    let run = |m: &Transformer, len: usize| {
        m.forward(
            &ids(&[sequence[..len].to_vec()]),
            &mut Cache::default(),
            None,
            Logits::Last,
        )
        .unwrap()
    };

    // Act / Assert: within the window both agree; past it they differ.
    let inside = fixture::GEMMA3_SLIDING_WINDOW;
    assert!(max_abs_diff(&run(&model, inside), &run(&wide, inside)) < 1e-5);
    let past = sequence.len();
    assert!(max_abs_diff(&run(&model, past), &run(&wide, past)) > 1e-3);
}

#[test]
fn a_pass_past_the_context_length_is_an_error_not_a_panic() {
    let (_dir, model) = transformer("llama");
    let too_long = tokens(fixture::CONTEXT_LENGTH + 1, 5);
    let error = model
        .forward(&ids(&[too_long]), &mut Cache::default(), None, Logits::Last)
        .unwrap_err()
        .to_string();
    assert!(error.contains("exceed the context length"), "{error}");
}

/// `engine/tests/reference/logits.json`: logits of the seed-11 fixtures computed by Hugging Face
/// transformers from their folder form (the command is in `engine/tests/reference/logits.py`).
#[derive(serde::Deserialize)]
struct Reference {
    tokens: Vec<u32>,
    positions: Vec<usize>,
    models: std::collections::HashMap<String, Vec<Vec<f32>>>,
    /// With the fixture's PEFT adapter, as PEFT applies it.
    adapted: std::collections::HashMap<String, Vec<Vec<f32>>>,
}

#[test]
fn the_fixtures_match_the_reference_implementation_in_both_forms() {
    let reference: Reference =
        serde_json::from_str(include_str!("../../tests/reference/logits.json")).unwrap();
    for arch in ARCHITECTURES {
        // Arrange: the fixture the reference was computed from, as GGUF and as a folder.
        let spec = FixtureSpec::tiny(arch, 11);
        let dir = tempfile::tempdir().unwrap();
        let gguf = dir.path().join("model.gguf");
        fixture::write_gguf(&gguf, &spec).unwrap();
        fixture::write_hf_folder(&dir.path().join("hf"), &spec).unwrap();
        let expected = &reference.models[arch];

        let adapter = dir.path().join("adapter");
        let adapter_spec = fixture::AdapterSpec::all_projections(11);
        fixture::write_peft_adapter(&adapter, arch, &adapter_spec).unwrap();

        for (path, adapted) in [
            (gguf.clone(), false),
            (dir.path().join("hf"), false),
            (gguf.clone(), true),
            (dir.path().join("hf"), true),
        ] {
            let mut model = crate::Model::load(&path, &LoadOptions::default()).unwrap();
            let expected = if adapted {
                model.load_adapter(&adapter, "reference").unwrap();
                model.use_adapter(Some("reference")).unwrap();
                &reference.adapted[arch]
            } else {
                expected
            };

            // Act
            let logits = model
                .weights
                .model
                .forward(
                    &ids(std::slice::from_ref(&reference.tokens)),
                    &mut Cache::default(),
                    model.weights.adapter,
                    Logits::All,
                )
                .unwrap()
                .get(0)
                .unwrap();

            // Assert
            for (row, &position) in expected.iter().zip(&reference.positions) {
                let ours = logits.get(position).unwrap().to_vec1::<f32>().unwrap();
                let worst = ours
                    .iter()
                    .zip(row)
                    .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
                assert!(
                    worst < 2e-3,
                    "{arch} from {} (adapter: {adapted}): position {position} is off by {worst}",
                    path.display()
                );
            }
        }
    }
}

#[test]
fn a_cloned_cache_and_its_original_go_on_independently() {
    // Arrange: one prompt's cache and a clone of it.
    let (_dir, model) = transformer("llama");
    let prompt = tokens(7, 5);
    let step = |cache: &mut Cache, token: u32| {
        model
            .forward(&ids(&[vec![token]]), cache, None, Logits::Last)
            .unwrap()
    };
    let mut original = Cache::default();
    model
        .forward(
            &ids(std::slice::from_ref(&prompt)),
            &mut original,
            None,
            Logits::Last,
        )
        .unwrap();
    let mut copy = original.clone();

    // Act: each takes its own tokens, in turns.
    step(&mut original, 11);
    step(&mut copy, 22);
    let original_last = step(&mut original, 33);
    let copy_last = step(&mut copy, 44);

    // Assert: each equals a fresh pass over its own sequence.
    for (tail, last) in [([11, 33], original_last), ([22, 44], copy_last)] {
        let mut sequence = prompt.clone();
        sequence.extend(tail);
        let fresh = model
            .forward(&ids(&[sequence]), &mut Cache::default(), None, Logits::Last)
            .unwrap();
        assert!(max_abs_diff(&fresh, &last) < 1e-4, "{tail:?}");
    }
}

#[test]
fn a_long_left_padding_changes_no_rows_logits() {
    for (arch, weights) in ARCHITECTURES
        .iter()
        .flat_map(|arch| fixture::FixtureWeights::ALL.map(|w| (*arch, w)))
    {
        let spec = FixtureSpec {
            weights,
            ..FixtureSpec::tiny(arch, 11)
        };
        let (_dir, loaded) = fixture::load(&spec, &LoadOptions::default());
        let model = Arc::clone(&loaded.weights.model);
        let short = tokens(6, 1);
        let long = tokens(90, 2);
        let mut padded = vec![0u32; long.len() - short.len()];
        padded.extend(&short);
        let mut cache = Cache::with_padding(vec![long.len() - short.len(), 0]);
        model
            .forward(&ids(&[padded, long]), &mut cache, None, Logits::Last)
            .unwrap();
        let mut own = Cache::default();
        model
            .forward(&ids(&[short]), &mut own, None, Logits::Last)
            .unwrap();
        // And two decode steps, where the rows' positions differ.
        let mut diff = 0f32;
        for (a, b) in [(50, 60), (51, 61)] {
            let batch = model
                .forward(&ids(&[vec![a], vec![b]]), &mut cache, None, Logits::Last)
                .unwrap();
            let alone = model
                .forward(&ids(&[vec![a]]), &mut own, None, Logits::Last)
                .unwrap();
            let row = batch.get(0).unwrap().unsqueeze(0).unwrap();
            diff = diff.max(max_abs_diff(&row, &alone));
        }
        // With the engine's own kernels every sum a row needs is taken in the same order
        // padded or not, so the logits are the same bits; candle's dense products block the
        // rows differently and round a little differently.
        let own_kernels = matches!(
            weights,
            fixture::FixtureWeights::Q8_0
                | fixture::FixtureWeights::Q4_0
                | fixture::FixtureWeights::Q4_1
                | fixture::FixtureWeights::Q5_0
                | fixture::FixtureWeights::Q4K
                | fixture::FixtureWeights::Q5K
                | fixture::FixtureWeights::Q6K
        );
        let tolerance = if own_kernels { 0.0 } else { 1e-4 };
        assert!(diff <= tolerance, "{arch} {weights:?}: {diff}");
    }
}

/// The real demo models (when `KOKUSHI_SMOLLM2_GGUF` and `KOKUSHI_GEMMA3_GGUF` name them): a prompt in a left-padded
/// batch gets the same logits, bit for bit, as alone. (Candle's attention did not: its sums
/// blocked differently with padding, and the 8-bit rounding of activations before each matrix
/// product turned those last-bit differences into logits half a unit apart.)
#[test]
fn a_real_model_gives_a_padded_row_the_same_bits_as_the_prompt_alone() {
    for var in ["KOKUSHI_SMOLLM2_GGUF", "KOKUSHI_GEMMA3_GGUF"] {
        if let Some(path) = std::env::var_os(var) {
            padded_rows_are_bitwise_alone(std::path::Path::new(&path));
        }
    }
}

fn padded_rows_are_bitwise_alone(path: &std::path::Path) {
    let model = crate::Model::load(path, &LoadOptions::default()).unwrap();
    let encode = |text: &str| {
        model
            .tokenizer()
            .encode(text, false)
            .unwrap()
            .get_ids()
            .to_vec()
    };
    let short = encode("user\n最も考えられるのはどれか。\nassistant\n答え：");
    let long =
        encode(&"user\n78歳の男性。糖尿病で通院中である。夜間に冷汗と動悸を自覚する。".repeat(8));
    assert!(long.len() > short.len() + 100);
    let transformer = Arc::clone(&model.weights.model);
    let mut padded = vec![0u32; long.len() - short.len()];
    padded.extend(&short);
    let mut cache = Cache::with_padding(vec![long.len() - short.len(), 0]);
    let batch = transformer
        .forward(
            &ids(&[padded, long.clone()]),
            &mut cache,
            None,
            Logits::Last,
        )
        .unwrap();
    let mut alone_caches = Vec::new();
    for (row, prompt) in [(0, &short), (1, &long)] {
        let mut own = Cache::default();
        let alone = transformer
            .forward(
                &ids(std::slice::from_ref(prompt)),
                &mut own,
                None,
                Logits::Last,
            )
            .unwrap();
        let diff = max_abs_diff(&batch.get(row).unwrap().unsqueeze(0).unwrap(), &alone);
        assert_eq!(diff, 0.0, "{}: row {row}, prompt", path.display());
        alone_caches.push(own);
    }
    // Decode steps, where the rows sit at different positions (for Gemma 3 this checks the
    // one-row `Q6_K` product too: see `Weight::forward`).
    for step in 0..3u32 {
        let tokens = [vec![100 + step], vec![200 + step]];
        let batch = transformer
            .forward(&ids(&tokens), &mut cache, None, Logits::Last)
            .unwrap();
        for (row, own) in alone_caches.iter_mut().enumerate() {
            let alone = transformer
                .forward(&ids(&[tokens[row].clone()]), own, None, Logits::Last)
                .unwrap();
            let diff = max_abs_diff(&batch.get(row).unwrap().unsqueeze(0).unwrap(), &alone);
            assert_eq!(diff, 0.0, "{}: row {row}, step {step}", path.display());
        }
    }
}

#[test]
fn the_cpu_attention_equals_softmax_of_scaled_products_with_grouped_heads() {
    let (heads, kv_heads, head_dim, steps) = (9, 3, 64, 40);
    let device = Device::Cpu;
    let random = |shape: (usize, usize, usize, usize), seed: u64| {
        let n = shape.0 * shape.1 * shape.2 * shape.3;
        let values: Vec<f32> = crate::q8::tests::values(n, seed)
            .iter()
            .map(|v| 2.0 * v)
            .collect();
        Tensor::from_vec(values, shape, &device).unwrap()
    };
    let q = random((1, heads, steps, head_dim), 1);
    let k = random((1, kv_heads, steps, head_dim), 2);
    let v = random((1, kv_heads, steps, head_dim), 3);
    let mut slot = None;
    let layer = LayerKv::append(&mut slot, &k, &v, 0, 4096).unwrap();
    let scale = 0.125;
    let ours = attend_cpu(&q, &layer, 0, &[0], None, scale).unwrap();
    // The same with candle: each query head against its group's key/value head.
    let groups = heads / kv_heads;
    let mut rows = Vec::new();
    for h in 0..heads {
        let qh = q.get(0).unwrap().get(h).unwrap();
        let kh = k.get(0).unwrap().get(h / groups).unwrap();
        let vh = v.get(0).unwrap().get(h / groups).unwrap();
        let scores = (qh.matmul(&kh.t().unwrap()).unwrap() * scale).unwrap();
        let mask: Vec<f32> = (0..steps)
            .flat_map(|i| (0..steps).map(move |j| if j <= i { 0.0 } else { f32::NEG_INFINITY }))
            .collect();
        let mask = Tensor::from_vec(mask, (steps, steps), &device).unwrap();
        let probs = candle_nn::ops::softmax_last_dim(&(scores + mask).unwrap()).unwrap();
        rows.push(probs.matmul(&vh).unwrap());
    }
    let expected = Tensor::stack(&rows, 1)
        .unwrap()
        .reshape((1, steps, heads * head_dim))
        .unwrap();
    let diff = max_abs_diff(&ours, &expected);
    assert!(diff < 1e-4, "{diff}");
}

/// Candle's CPU kernels for `Q4_K` and `Q6_K` pick their method by the number of input rows (a
/// one-row product of `Q6_K` is a vector dot product, more rows go through repacked tiles; 32 or
/// more rows of `Q4_K` go through AMX where the CPU has it). A row's product must not depend on
/// how many rows came with it, or a batch of questions answers differently from one at a time.
#[test]
fn a_candle_kernel_product_gives_each_row_the_same_bits_at_any_row_count() {
    let (out, width) = (96, 512);
    let values = crate::q8::tests::values(out * width, 7);
    let matrix = Tensor::from_vec(values, (out, width), &Device::Cpu).unwrap();
    let input = Tensor::from_vec(
        crate::q8::tests::values(70 * width, 8),
        (70, width),
        &Device::Cpu,
    )
    .unwrap();
    let mut failures = Vec::new();
    for dtype in [
        GgmlDType::Q4K,
        GgmlDType::Q6K,
        GgmlDType::Q5K,
        GgmlDType::Q8_0,
    ] {
        let q = QTensor::quantize(&matrix, dtype).unwrap();
        let weight = Weight::Candle(QMatMul::from_arc(Arc::new(q)).unwrap());
        let alone: Vec<Vec<f32>> = (0..70)
            .map(|r| {
                weight
                    .forward(&input.narrow(0, r, 1).unwrap())
                    .unwrap()
                    .flatten_all()
                    .unwrap()
                    .to_vec1::<f32>()
                    .unwrap()
            })
            .collect();
        for rows in [2, 3, 4, 8, 31, 32, 33, 64, 70] {
            let together = weight
                .forward(&input.narrow(0, 0, rows).unwrap())
                .unwrap()
                .to_vec2::<f32>()
                .unwrap();
            if let Some(r) = (0..rows).find(|&r| together[r] != alone[r]) {
                failures.push(format!("{dtype:?}: row {r} of {rows}"));
            }
        }
    }
    assert!(failures.is_empty(), "{failures:?}");
}
