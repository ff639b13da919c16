use super::*;
use crate::LoadOptions;
use crate::fixture::{self, AdapterSpec, FixtureSpec};

const PROMPT: &str = "the answer is in the";

fn logits(model: &mut Model) -> Vec<f32> {
    let ids = model.encode_prompt(PROMPT).unwrap();
    model.prefill(&ids).unwrap()
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()))
}

/// A fixture model of `arch` (f32) and an adapter folder for it.
fn setup(arch: &str, adapter: &AdapterSpec) -> (tempfile::TempDir, Model, PathBuf) {
    let (dir, model) = fixture::load(&FixtureSpec::tiny(arch, 5), &LoadOptions::default());
    let adapter_dir = dir.path().join("adapter");
    fixture::write_peft_adapter(&adapter_dir, arch, adapter).unwrap();
    (dir, model, adapter_dir)
}

#[test]
fn an_adapter_with_b_zero_leaves_the_logits_unchanged() {
    for arch in ["llama", "qwen2", "gemma3"] {
        // Arrange
        let spec = AdapterSpec {
            zero_b: true,
            ..AdapterSpec::all_projections(1)
        };
        let (_dir, mut model, adapter) = setup(arch, &spec);
        let base = logits(&mut model);

        // Act
        model.load_adapter(&adapter, "zero").unwrap();
        model.use_adapter(Some("zero")).unwrap();
        let adapted = logits(&mut model);

        // Assert
        assert_eq!(max_abs_diff(&base, &adapted), 0.0, "{arch}");
    }
}

#[test]
fn merged_and_unmerged_agree_and_unmerging_restores_the_base_weights() {
    for arch in ["llama", "qwen2", "gemma3"] {
        // Arrange
        let (_dir, mut model, adapter) = setup(arch, &AdapterSpec::all_projections(2));
        let base = logits(&mut model);
        let base_q = model.weights.model.blocks[0].q.dense_weight().unwrap();
        let info = model.load_adapter(&adapter, "a").unwrap();

        // Act
        model.use_adapter(Some("a")).unwrap();
        let unmerged = logits(&mut model);
        model.merge_adapter("a").unwrap();
        let merged = logits(&mut model);
        model.unmerge_adapter("a").unwrap();
        model.use_adapter(None).unwrap();
        let restored = logits(&mut model);
        let restored_q = model.weights.model.blocks[0].q.dense_weight().unwrap();

        // Assert
        assert_eq!(info.pairs, 2 * 7, "{arch}");
        assert!(
            max_abs_diff(&base, &unmerged) > 1e-2,
            "{arch}: the adapter does something"
        );
        assert!(max_abs_diff(&unmerged, &merged) < 1e-4, "{arch}");
        assert!(max_abs_diff(&base, &restored) < 1e-4, "{arch}");
        let weight_diff = (base_q - restored_q)
            .unwrap()
            .abs()
            .unwrap()
            .flatten_all()
            .unwrap()
            .max(0)
            .unwrap()
            .to_scalar::<f32>()
            .unwrap();
        assert!(weight_diff < 1e-6, "{arch}: {weight_diff}");
    }
}

#[test]
fn several_adapters_share_one_base_and_are_chosen_per_pass() {
    // Arrange
    let (dir, mut model, first) = setup("llama", &AdapterSpec::all_projections(3));
    let second = dir.path().join("second");
    let spec = AdapterSpec {
        targets: vec!["q_proj".to_owned(), "v_proj".to_owned()],
        ..AdapterSpec::all_projections(4)
    };
    fixture::write_peft_adapter(&second, "llama", &spec).unwrap();
    let base = logits(&mut model);
    model.load_adapter(&first, "first").unwrap();
    model.load_adapter(&second, "second").unwrap();

    // Act
    model.use_adapter(Some("first")).unwrap();
    let with_first = logits(&mut model);
    model.use_adapter(Some("second")).unwrap();
    let with_second = logits(&mut model);
    model.use_adapter(Some("first")).unwrap();
    let first_again = logits(&mut model);
    model.use_adapter(None).unwrap();
    let base_again = logits(&mut model);

    // Assert
    assert!(max_abs_diff(&with_first, &with_second) > 1e-2);
    assert_eq!(with_first, first_again);
    assert_eq!(base, base_again);
    let names: Vec<&str> = model.adapters().iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["first", "second"]);
    assert_eq!(model.adapters()[1].targets, ["q_proj", "v_proj"]);
    let unknown = model.use_adapter(Some("third")).unwrap_err().to_string();
    assert!(
        unknown.contains("\"third\"") && unknown.contains("first, second"),
        "{unknown}"
    );
}

#[test]
fn one_adapter_gives_the_same_logits_over_the_gguf_and_the_folder_form_of_a_base() {
    for arch in ["llama", "qwen2", "gemma3"] {
        // Arrange: the same weights in both forms (a Llama GGUF's query/key rows are permuted).
        let dir = tempfile::tempdir().unwrap();
        let spec = FixtureSpec::tiny(arch, 6);
        let gguf = dir.path().join("m.gguf");
        fixture::write_gguf(&gguf, &spec).unwrap();
        fixture::write_hf_folder(&dir.path().join("hf"), &spec).unwrap();
        let adapter = dir.path().join("adapter");
        fixture::write_peft_adapter(&adapter, arch, &AdapterSpec::all_projections(7)).unwrap();

        // Act
        let mut results = Vec::new();
        for path in [gguf.clone(), dir.path().join("hf")] {
            let mut model = Model::load(&path, &LoadOptions::default()).unwrap();
            model.load_adapter(&adapter, "a").unwrap();
            model.use_adapter(Some("a")).unwrap();
            results.push(logits(&mut model));
        }

        // Assert
        assert!(max_abs_diff(&results[0], &results[1]) < 1e-4, "{arch}");
    }
}

#[test]
fn an_adapter_merges_into_a_quantized_base_too() {
    // Arrange: a Q4_1 fixture requantized to Q8_0 at load.
    let spec = FixtureSpec {
        weights: fixture::FixtureWeights::Q4_1,
        ..FixtureSpec::tiny("llama", 5)
    };
    let (dir, mut model) = fixture::load(&spec, &LoadOptions::default());
    let adapter = dir.path().join("adapter");
    fixture::write_peft_adapter(&adapter, "llama", &AdapterSpec::all_projections(8)).unwrap();
    model.load_adapter(&adapter, "a").unwrap();
    assert!(model.weights.model.blocks[0].q.is_quantized());

    // Act
    model.use_adapter(Some("a")).unwrap();
    let unmerged = logits(&mut model);
    model.merge_adapter("a").unwrap();
    let merged = logits(&mut model);

    // Assert: the merged matrices are dense; the answers agree up to the activations' 8-bit
    // rounding in the quantized kernels, which the dense path does not do.
    assert!(!model.weights.model.blocks[0].q.is_quantized());
    let scale = unmerged.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(max_abs_diff(&unmerged, &merged) < 0.02 * scale);
    assert!(model.adapters()[0].merged);
    let again = model.merge_adapter("a").unwrap_err().to_string();
    assert!(again.contains("already merged"), "{again}");
}

#[test]
fn an_adapter_that_does_not_fit_is_refused_and_changes_nothing() {
    // Arrange: the config promises rank 8, the tensors have rank 4.
    let (_dir, mut model, adapter) = setup("llama", &AdapterSpec::all_projections(9));
    let config = adapter.join("adapter_config.json");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, text.replace("\"r\":4", "\"r\":8")).unwrap();
    let base = logits(&mut model);

    // Act
    let error = model.load_adapter(&adapter, "a").unwrap_err().to_string();

    // Assert
    assert!(error.contains("lora_A.weight has shape [4, "), "{error}");
    assert!(error.contains("needs [8, "), "{error}");
    assert!(model.adapters().is_empty());
    assert_eq!(base, logits(&mut model));
}

#[test]
fn an_adapter_for_another_shape_of_model_is_refused_naming_the_tensor() {
    // Arrange: an adapter whose q_proj B has the wrong number of output rows.
    let (_dir, mut model, adapter) = setup("qwen2", &AdapterSpec::all_projections(10));
    let weights = adapter.join("adapter_model.safetensors");
    let mut tensors = candle_core::safetensors::load(&weights, &candle_core::Device::Cpu).unwrap();
    let name = "base_model.model.model.layers.1.self_attn.q_proj.lora_B.weight";
    tensors.insert(
        name.to_owned(),
        Tensor::zeros((32, 4), candle_core::DType::F32, &candle_core::Device::Cpu).unwrap(),
    );
    candle_core::safetensors::save(&tensors, &weights).unwrap();

    // Act
    let error = model.load_adapter(&adapter, "a").unwrap_err().to_string();

    // Assert
    assert!(error.contains(name) && error.contains("[32, 4]"), "{error}");
    assert!(error.contains("needs [64, 4]"), "{error}");
}

#[test]
fn what_cannot_be_applied_is_refused_with_the_reason() {
    let cases = [
        (
            "\"peft_type\":\"LORA\"",
            "\"peft_type\":\"IA3\"",
            "only LORA",
        ),
        ("\"use_dora\":false", "\"use_dora\":true", "DoRA"),
        ("\"bias\":\"none\"", "\"bias\":\"all\"", "train biases"),
        (
            "\"modules_to_save\":null",
            "\"modules_to_save\":[\"lm_head\"]",
            "replace whole modules",
        ),
    ];
    for (from, to, expected) in cases {
        let (_dir, mut model, adapter) = setup("llama", &AdapterSpec::all_projections(11));
        let config = adapter.join("adapter_config.json");
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(text.contains(from), "{text}");
        std::fs::write(&config, text.replace(from, to)).unwrap();
        let error = model.load_adapter(&adapter, "a").unwrap_err().to_string();
        assert!(error.contains(expected), "{to}: {error}");
        assert!(error.contains("adapter_config.json"), "{error}");
    }
}

#[test]
fn peft_tensor_names_are_parsed_into_layer_and_module() {
    assert_eq!(
        parse_name("base_model.model.model.layers.12.self_attn.q_proj.lora_A.weight"),
        Some((
            Site::Projection {
                layer: 12,
                module: "q_proj"
            },
            true
        ))
    );
    assert_eq!(
        parse_name("base_model.model.model.language_model.layers.0.mlp.down_proj.lora_B.weight"),
        Some((
            Site::Projection {
                layer: 0,
                module: "down_proj"
            },
            false
        ))
    );
    assert_eq!(
        parse_name("base_model.model.lm_head.lora_B.weight"),
        Some((Site::Head, false))
    );
    assert_eq!(parse_name("base_model.model.model.norm.weight"), None);
    assert!(names_agree(
        "HuggingFaceTB/SmolLM2-135M-Instruct",
        "SmolLM2 135M Instruct"
    ));
    assert!(!names_agree(
        "meta-llama/Llama-2-7b-hf",
        "Qwen2.5 0.5B Instruct"
    ));
}
