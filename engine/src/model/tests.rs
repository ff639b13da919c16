//! Tests of the `model` module: loading, refusing, and requantizing.

use super::*;
use crate::fixture::{self, FixtureSpec, FixtureWeights};

fn write(dir: &tempfile::TempDir, spec: &FixtureSpec) -> std::path::PathBuf {
    let path = dir.path().join("model.gguf");
    fixture::write_gguf(&path, spec).expect("fixture is written");
    path
}

#[test]
fn the_fixture_loads_and_reports_its_metadata() {
    // Arrange
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = write(&dir, &FixtureSpec::tiny_llama(1));

    // Act
    let model = Model::load(&path, &LoadOptions::default()).expect("fixture loads");

    // Assert
    let info = model.info();
    assert_eq!(info.architecture, "llama");
    assert_eq!(info.name.as_deref(), Some("Kokushi tiny llama fixture"));
    assert_eq!(info.context_length, fixture::CONTEXT_LENGTH);
    assert_eq!(info.vocab_size, 256 + 10 + 3);
    let gemma = tempfile::tempdir().expect("temporary directory");
    let model = Model::load(
        &write(&gemma, &FixtureSpec::tiny("gemma3", 1)),
        &LoadOptions::default(),
    )
    .expect("the Gemma 3 fixture loads");
    assert_eq!(model.info().architecture, "gemma3");
    assert_eq!(model.info().vocab_size, 6 + 256 + 1 + 94 + 12);
    assert_eq!(info.quantization, "F32");
    assert_eq!(
        info.file_size,
        std::fs::metadata(&path).expect("stat").len()
    );
}

#[test]
fn an_unsupported_architecture_is_refused_with_a_message_naming_it_and_the_supported_list() {
    // Arrange
    let dir = tempfile::tempdir().expect("temporary directory");
    let spec = FixtureSpec {
        architecture: "falcon".to_owned(),
        ..FixtureSpec::tiny_llama(1)
    };
    let path = write(&dir, &spec);

    // Act
    let err = Model::load(&path, &LoadOptions::default()).expect_err("falcon is refused");

    // Assert
    assert!(
        matches!(&err, EngineError::UnsupportedArchitecture { found, .. } if found == "falcon"),
        "{err:?}"
    );
    let message = err.to_string();
    assert!(message.contains("`falcon`"), "{message}");
    assert!(
        message.contains("supported architectures: llama, qwen2, gemma3"),
        "{message}"
    );
    assert!(message.contains("model.gguf"), "{message}");
}

#[test]
fn every_supported_architecture_loads_from_its_fixture_and_generates_reproducibly() {
    for arch in crate::SUPPORTED_ARCHITECTURES {
        let (_dir0, mut reference) =
            fixture::load(&FixtureSpec::tiny(arch, 4), &LoadOptions::default());
        let probe = reference
            .encode_prompt("the answer is in the")
            .expect("encode");
        let exact = reference.prefill(&probe).expect("f32 forward");
        let scale = exact.iter().fold(0f32, |m, v| m.max(v.abs()));
        for weights in FixtureWeights::ALL {
            // Arrange
            let spec = FixtureSpec {
                weights,
                ..FixtureSpec::tiny(arch, 4)
            };
            let (_dir, mut model) = fixture::load(&spec, &LoadOptions::default());
            let (_dir2, mut again) = fixture::load(&spec, &LoadOptions::default());
            let params = crate::GenerationParams {
                max_new_tokens: 6,
                stop: Vec::new(),
            };
            let prompt = if arch == "gemma3" {
                "<start_of_turn>user\nthe answer is<end_of_turn>\n<start_of_turn>model\n"
            } else {
                "<|im_start|>user\nthe answer is<|im_end|>\n<|im_start|>assistant\n"
            };

            // Act
            let first = model.generate(prompt, &params).expect("generates");
            let second = again.generate(prompt, &params).expect("generates");

            // Assert
            let at = format!("{arch} {weights:?}");
            assert_eq!(model.info().architecture, arch, "{at}");
            assert!(first.generated_tokens >= 1, "{at}");
            assert_eq!(first.text, second.text, "{at}");
            assert!(
                first.prompt_tokens > 5,
                "{at}: special tokens and words encode"
            );
            // The stored type is what the file says, and it is dequantized right: the logits
            // stay within the type's rounding of the f32 model's.
            let logits = model.prefill(&probe).expect("forward");
            let worst = exact
                .iter()
                .zip(&logits)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            let tolerance = match weights {
                FixtureWeights::F32 => 0.0,
                FixtureWeights::Q8_0 => 0.03,
                FixtureWeights::Q5_0 | FixtureWeights::Q5K | FixtureWeights::Q6K => 0.2,
                _ => 0.4,
            };
            assert!(
                worst <= tolerance * scale,
                "{at}: |Δlogit| {worst} of {scale}"
            );
            if weights != FixtureWeights::F32 {
                assert!(worst > 0.0, "{at}: the weights are really quantized");
            }
        }
    }
}

#[test]
fn an_unknown_vocabulary_kind_is_refused_naming_the_supported_ones() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let spec = FixtureSpec {
        tokenizer_model: "rwkv".to_owned(),
        ..FixtureSpec::tiny_llama(1)
    };
    let err = Model::load(&write(&dir, &spec), &LoadOptions::default()).expect_err("refused");
    let message = err.to_string();
    assert!(
        matches!(err, EngineError::UnsupportedTokenizer { .. }),
        "{message}"
    );
    assert!(message.contains("tokenizer model `rwkv`"), "{message}");
    assert!(
        message.contains("gpt2") && message.contains("llama"),
        "{message}"
    );
}

#[test]
fn files_that_cannot_be_read_as_gguf_name_the_file() {
    // Arrange
    let dir = tempfile::tempdir().expect("temporary directory");
    let not_gguf = dir.path().join("notes.txt");
    std::fs::write(&not_gguf, "this is not a model").expect("write");
    let missing = dir.path().join("missing.gguf");
    let cases = [(not_gguf, "notes.txt"), (missing, "missing.gguf")];

    for (path, name) in cases {
        // Act
        let err = Model::load(&path, &LoadOptions::default()).expect_err("refused");

        // Assert
        let message = err.to_string();
        assert!(message.contains(name), "{message}");
        assert!(
            matches!(err, EngineError::Gguf { .. } | EngineError::Io { .. }),
            "{message}"
        );
    }
}

#[test]
fn requantization_leaves_f32_models_alone() {
    // Arrange
    let spec = FixtureSpec::tiny_llama(3);

    // Act
    let (_dir, model) = fixture::load(&spec, &LoadOptions::default());

    // Assert
    assert_eq!(model.info().quantization, "F32");
}

fn requantizing_to_q8_0_keeps_the_logits_and_the_top_token(weights: FixtureWeights, name: &str) {
    // Arrange
    let spec = FixtureSpec {
        weights,
        // A seed whose top token leads the runner-up by more than twice the tolerance, so the
        // comparison of top tokens means something.
        ..FixtureSpec::tiny_llama(5)
    };
    let stored = LoadOptions {
        requantize_q8_0: false,
        ..LoadOptions::default()
    };
    let requantized = LoadOptions {
        requantize_q8_0: true,
        ..LoadOptions::default()
    };
    let (_dir_a, mut q4_1) = fixture::load(&spec, &stored);
    let (_dir_b, mut q8_0) = fixture::load(&spec, &requantized);
    let prompt = q4_1
        .tokenizer()
        .encode(
            "<|im_start|>user\nWhich nerve is injured?<|im_end|>\n",
            false,
        )
        .expect("encode")
        .get_ids()
        .to_vec();

    // Act
    let reference = q4_1.prefill(&prompt).expect("Q4_1 forward");
    let requantized = q8_0.prefill(&prompt).expect("Q8_0 forward");

    // Assert
    assert_eq!(q4_1.info().quantization, name);
    assert_eq!(
        q8_0.info().quantization,
        format!("{name} (requantized to Q8_0)")
    );
    let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
    let worst = reference
        .iter()
        .zip(&requantized)
        .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    // Q8_0 stores each Q4_1 value to within 1/254 of its block's range, and both kernels round
    // the activations to 8 bits, so the logits agree to a small fraction of their range.
    assert!(
        worst <= 0.02 * scale,
        "worst |Δlogit| {worst} of max |logit| {scale}"
    );
    let top = |logits: &[f32]| {
        let mut sorted: Vec<(usize, f32)> = logits.iter().copied().enumerate().collect();
        sorted.sort_by(|a, b| b.1.total_cmp(&a.1));
        sorted
    };
    let (reference_top, requantized_top) = (top(&reference), top(&requantized));
    assert!(
        reference_top[0].1 - reference_top[1].1 > 2.0 * worst,
        "the fixture's top token must win by more than the tolerance"
    );
    assert_eq!(reference_top[0].0, requantized_top[0].0);
}

#[test]
fn four_and_five_bit_files_run_on_the_engines_own_kernel_unconverted() {
    for (weights, name) in [
        (FixtureWeights::Q4_1, "Q4_1"),
        (FixtureWeights::Q4_0, "Q4_0"),
        (FixtureWeights::Q5_0, "Q5_0"),
    ] {
        let spec = FixtureSpec {
            weights,
            ..FixtureSpec::tiny_llama(5)
        };
        let (_dir, model) = fixture::load(&spec, &LoadOptions::default());
        assert_eq!(model.info().quantization, name);
        assert!(matches!(
            model.weights.model.blocks[0].q.weight,
            crate::transformer::Weight::Q4(_)
        ));
    }
}

#[test]
fn requantizing_q5_0_to_q8_0_keeps_the_logits_and_the_top_token() {
    requantizing_to_q8_0_keeps_the_logits_and_the_top_token(FixtureWeights::Q5_0, "Q5_0");
}

#[test]
fn quantization_names_come_from_the_file_type_or_the_dominant_tensor_type() {
    // Arrange
    let cases = [
        (0, Some("F32")),
        (3, Some("Q4_1")),
        (15, Some("Q4_K_M")),
        (99, None),
    ];

    for (file_type, expected) in cases {
        // Act
        let name = file_type_name(file_type);

        // Assert
        assert_eq!(name, expected, "general.file_type {file_type}");
    }
    assert_eq!(dtype_name(GgmlDType::Q4K), "Q4_K");
}

#[test]
fn a_model_can_be_moved_to_a_dedicated_inference_thread() {
    // Arrange
    fn assert_send<T: Send>() {}

    // Act and Assert: this compiles only if `Model` is `Send`.
    assert_send::<Model>();
}

#[test]
fn a_hugging_face_folder_gives_the_same_logits_as_the_gguf_file_of_the_same_weights() {
    for arch in ["llama", "qwen2"] {
        // Arrange
        let spec = FixtureSpec::tiny(arch, 12);
        let dir = tempfile::tempdir().expect("temporary directory");
        let gguf = write(&dir, &spec);
        let folder = dir.path().join("hf");
        fixture::write_hf_folder(&folder, &spec).expect("folder is written");
        let mut from_gguf = Model::load(&gguf, &LoadOptions::default()).expect("GGUF loads");
        let mut from_folder = Model::load(&folder, &LoadOptions::default()).expect("folder loads");
        let prompt = "<|im_start|>user\nthe answer is<|im_end|>\n<|im_start|>assistant\n";
        let ids = from_gguf.encode_prompt(prompt).expect("encodes");

        // Act
        let a = from_gguf.prefill(&ids).expect("GGUF forward");
        let b = from_folder.prefill(&ids).expect("folder forward");
        let params = crate::GenerationParams {
            max_new_tokens: 8,
            stop: Vec::new(),
        };
        let text_a = from_gguf.generate(prompt, &params).expect("generates").text;
        let text_b = from_folder
            .generate(prompt, &params)
            .expect("generates")
            .text;

        // Assert
        assert_eq!(
            from_folder.encode_prompt(prompt).expect("encodes"),
            ids,
            "{arch}"
        );
        assert_eq!(from_folder.info().architecture, arch);
        let scale = a.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = a
            .iter()
            .zip(&b)
            .fold(0f32, |m, (x, y)| m.max((x - y).abs()));
        assert!(
            worst <= 1e-4 * scale.max(1.0),
            "{arch}: worst |Δlogit| {worst} of {scale}"
        );
        assert_eq!(text_a, text_b, "{arch}");
    }
}

#[test]
fn a_folder_that_cannot_be_run_is_refused_with_what_is_wrong() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let folder = dir.path().join("hf");
    fixture::write_hf_folder(&folder, &FixtureSpec::tiny("llama", 1)).expect("written");
    // An architecture the folder loader does not run.
    let config = folder.join("config.json");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("\"llama\"", "\"falcon\"")).expect("write");
    let err = Model::load(&folder, &LoadOptions::default()).expect_err("refused");
    let message = err.to_string();
    assert!(
        message.contains("falcon")
            && message.contains("llama, mistral, qwen2, gemma3_text, gemma3"),
        "{message}"
    );
    assert!(message.contains("config.json"), "{message}");
    // No weights.
    std::fs::write(&config, text).expect("write");
    std::fs::remove_file(folder.join("model.safetensors")).expect("remove");
    let message = Model::load(&folder, &LoadOptions::default())
        .expect_err("refused")
        .to_string();
    assert!(message.contains("no *.safetensors"), "{message}");
}

#[test]
fn half_precision_folders_load_and_agree_with_their_f32_weights() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let folder = dir.path().join("hf");
    let spec = FixtureSpec::tiny("llama", 12);
    fixture::write_hf_folder(&folder, &spec).expect("written");
    let mut full = Model::load(&folder, &LoadOptions::default()).expect("f32 folder loads");
    let weights = folder.join("model.safetensors");
    let prompt = "<|im_start|>user\nthe answer is<|im_end|>\n";
    let ids = full.encode_prompt(prompt).expect("encodes");
    let reference = full.prefill(&ids).expect("forward");
    for dtype in [candle_core::DType::BF16, candle_core::DType::F16] {
        let tensors: std::collections::HashMap<String, candle_core::Tensor> =
            candle_core::safetensors::load(&weights, &candle_core::Device::Cpu)
                .expect("read")
                .into_iter()
                .map(|(name, t)| (name, t.to_dtype(dtype).expect("convert")))
                .collect();
        let half = dir.path().join(format!("{dtype:?}"));
        std::fs::create_dir_all(&half).expect("mkdir");
        for file in ["config.json", "tokenizer.json"] {
            std::fs::copy(folder.join(file), half.join(file)).expect("copy");
        }
        candle_core::safetensors::save(&tensors, half.join("model.safetensors")).expect("save");
        let mut model = Model::load(&half, &LoadOptions::default()).expect("half folder loads");
        let logits = model.prefill(&ids).expect("forward");
        let scale = reference.iter().fold(0f32, |m, v| m.max(v.abs()));
        let worst = reference
            .iter()
            .zip(&logits)
            .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(
            worst <= 0.05 * scale,
            "{dtype:?}: worst |Δlogit| {worst} of {scale}"
        );
        assert!(
            model.info().quantization.contains("computed in f32"),
            "{:?}",
            model.info()
        );
    }
}

#[test]
fn a_sharded_folder_loads_only_the_shards_its_index_names() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let folder = dir.path().join("hf");
    fixture::write_hf_folder(&folder, &FixtureSpec::tiny("llama", 2)).expect("written");
    let shard = "model-00001-of-00001.safetensors";
    std::fs::rename(folder.join("model.safetensors"), folder.join(shard)).expect("rename");
    // The same weights again under another name, as some repositories ship them.
    std::fs::copy(folder.join(shard), folder.join("consolidated.safetensors")).expect("copy");
    let index = format!(r#"{{"weight_map": {{"lm_head.weight": "{shard}"}}}}"#);
    std::fs::write(folder.join("model.safetensors.index.json"), index).expect("index");
    Model::load(&folder, &LoadOptions::default()).expect("loads from the named shard");

    let index = r#"{"weight_map": {"lm_head.weight": "model-00002-of-00002.safetensors"}}"#;
    std::fs::write(folder.join("model.safetensors.index.json"), index).expect("index");
    let message = Model::load(&folder, &LoadOptions::default())
        .expect_err("a named shard is missing")
        .to_string();
    assert!(
        message.contains("names 1 shard(s); 0 are in the folder"),
        "{message}"
    );
}
