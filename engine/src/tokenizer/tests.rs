//! Tests of the `tokenizer` module, on the fixture's vocabulary.

use std::collections::HashMap;
use std::path::Path;

use candle_core::quantized::gguf_file::Value;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

use super::*;
use crate::fixture;

/// The fixture's metadata, for tests that edit it before building a tokenizer.
fn fixture_metadata() -> HashMap<String, Value> {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fixture.gguf");
    fixture::write_tiny_llama_gguf(&path, 1).expect("fixture is written");
    let (content, _) = crate::gguf::read_content(&path).expect("fixture parses");
    content.metadata
}

fn build(metadata: &HashMap<String, Value>) -> Result<GgufTokenizer, EngineError> {
    from_metadata(Metadata::new(Path::new("fixture.gguf"), metadata))
}

fn fixture_tokenizer() -> GgufTokenizer {
    build(&fixture_metadata()).expect("fixture tokenizer builds")
}

#[test]
fn text_round_trips_through_encode_and_decode() {
    // Arrange
    let tokenizer = fixture_tokenizer().tokenizer;
    let cases = [
        "患者は58歳の男性。主訴は胸痛である。",
        "急性心筋梗塞を疑う所見はどれか。\na 心電図のST上昇\nb 血清CK-MBの上昇",
        "The answer is (c).",
        "  leading spaces, tabs\tand trailing newline\n",
        "絵文字 🩺 も壊れない",
    ];

    for text in cases {
        // Act
        let ids = tokenizer
            .encode(text, false)
            .expect("encode")
            .get_ids()
            .to_vec();
        let decoded = tokenizer.decode(&ids, false).expect("decode");

        // Assert
        assert_eq!(decoded, text);
    }
}

#[test]
fn a_chat_marker_in_a_prompt_encodes_to_one_special_id() {
    // Arrange
    let tokenizer = fixture_tokenizer().tokenizer;
    let im_start = tokenizer.token_to_id(fixture::IM_START).expect("in vocab");

    // Act
    let encoding = tokenizer
        .encode("<|im_start|>user\n", false)
        .expect("encode");

    // Assert
    let ids = encoding.get_ids();
    assert_eq!(ids[0], im_start);
    assert_eq!(encoding.get_tokens()[1..], ["u", "s", "er", "Ċ"]);
    assert_eq!(
        tokenizer.decode(ids, false).expect("decode"),
        "<|im_start|>user\n"
    );
}

#[test]
fn merges_are_applied_in_rank_order() {
    // Arrange
    let tokenizer = fixture_tokenizer().tokenizer;

    // Act
    let encoding = tokenizer.encode(" the inner", false).expect("encode");

    // Assert
    assert_eq!(encoding.get_tokens(), ["Ġthe", "Ġ", "in", "n", "er"]);
}

#[test]
fn an_unfinished_multibyte_character_decodes_to_a_replacement_character() {
    // Arrange
    let tokenizer = fixture_tokenizer().tokenizer;
    let ids = tokenizer
        .encode("胸", false)
        .expect("encode")
        .get_ids()
        .to_vec();

    // Act
    let partial = tokenizer
        .decode(&ids[..1], false)
        .expect("decode never fails");

    // Assert
    assert_eq!(ids.len(), 3);
    assert_eq!(partial, "\u{FFFD}");
}

#[test]
fn end_of_sequence_and_end_of_turn_ids_stop_generation() {
    // Arrange
    let built = fixture_tokenizer();

    // Act
    let stop_ids = built.stop_ids;

    // Assert
    let id = |token| built.tokenizer.token_to_id(token).expect("in vocab");
    assert_eq!(stop_ids, [id(fixture::END_OF_TEXT), id(fixture::IM_END)]);
}

#[test]
fn add_bos_token_puts_bos_in_front_of_encoded_prompts_only() {
    // Arrange
    let mut metadata = fixture_metadata();
    metadata.insert("tokenizer.ggml.add_bos_token".to_owned(), Value::Bool(true));
    let tokenizer = build(&metadata).expect("builds").tokenizer;
    let bos = tokenizer
        .token_to_id(fixture::END_OF_TEXT)
        .expect("in vocab");

    // Act
    let with_specials = tokenizer.encode("hi", true).expect("encode");
    let without = tokenizer.encode("hi", false).expect("encode");

    // Assert
    assert_eq!(with_specials.get_ids()[0], bos);
    assert_eq!(with_specials.len(), without.len() + 1);
}

#[test]
fn inconsistent_vocabulary_metadata_is_refused_naming_the_key() {
    // Arrange
    let edits: [(&str, Value); 3] = [
        (
            "tokenizer.ggml.token_type",
            Value::Array(vec![Value::I32(1)]),
        ),
        ("tokenizer.ggml.eos_token_id", Value::U32(100_000)),
        (
            "tokenizer.ggml.merges",
            Value::Array(vec![Value::String("nospace".to_owned())]),
        ),
    ];

    for (key, value) in edits {
        let mut metadata = fixture_metadata();
        metadata.insert(key.to_owned(), value);

        // Act
        let err = build(&metadata).expect_err("refused");

        // Assert
        let message = err.to_string();
        assert!(message.contains(key), "{message}");
        assert!(message.contains("fixture.gguf"), "{message}");
    }
}

/// The pieces a pre-tokenizer splits `text` into.
fn splits(pre: &str, text: &str) -> Vec<String> {
    let pre_tokenizer = pre_tokenizer(pre).expect("known pre-tokenizer");
    let mut pretokenized = PreTokenizedString::from(text);
    pre_tokenizer
        .pre_tokenize(&mut pretokenized)
        .expect("pre-tokenize");
    pretokenized
        .get_splits(OffsetReferential::Original, OffsetType::Char)
        .into_iter()
        .map(|(piece, _, _)| piece.to_owned())
        .collect()
}

#[test]
fn pre_tokenizers_split_numbers_as_their_models_expect() {
    // Arrange
    let cases: [(&str, &[&str]); 3] = [
        ("gpt2", &["Ġ12345"]),
        ("smollm", &["Ġ", "1", "2", "3", "4", "5"]),
        ("llama-bpe", &["Ġ", "123", "45"]),
    ];

    for (pre, expected) in cases {
        // Act
        let pieces = splits(pre, " 12345");

        // Assert
        assert_eq!(pieces, expected, "tokenizer.ggml.pre = {pre}");
    }
}

/// The Gemma-style SentencePiece fixture's tokenizer.
fn sentencepiece_tokenizer() -> GgufTokenizer {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("gemma.gguf");
    fixture::write_gguf(&path, &fixture::FixtureSpec::tiny("gemma3", 1)).expect("written");
    let (content, _) = crate::gguf::read_content(&path).expect("fixture parses");
    build(&content.metadata).expect("SentencePiece tokenizer builds")
}

#[test]
fn sentencepiece_merges_the_best_scored_pieces_and_falls_back_to_bytes() {
    let tok = sentencepiece_tokenizer();
    let t = &tok.tokenizer;
    let pieces = |text: &str| -> Vec<String> {
        let ids = t
            .encode_fast(text, false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        ids.iter()
            .map(|&id| t.id_to_token(id).expect("known id"))
            .collect()
    };
    // "▁the" outranks "▁t" + "he"; "is" and "in" are pieces; a space is "▁".
    assert_eq!(
        pieces("the is"),
        ["t", "he", "\u{2581}", "is"].map(String::from)
    );
    assert_eq!(pieces(" the"), ["\u{2581}the"].map(String::from));
    // "の" is a piece; "胸" is not, so it falls back to its three UTF-8 bytes.
    assert_eq!(
        pieces("胸の"),
        ["<0xE8>", "<0x83>", "<0xB8>", "の"].map(String::from)
    );
    // Special tokens written in a prompt are single ids; BOS is added when asked for.
    let with_bos = t.encode_fast("<start_of_turn>user", true).expect("encodes");
    assert_eq!(with_bos.get_ids()[0], 2, "BOS first");
    assert_eq!(
        t.id_to_token(with_bos.get_ids()[1]).as_deref(),
        Some("<start_of_turn>")
    );
    // Text round-trips, whatever the script.
    for text in [
        "患者は58歳の男性。 主訴は胸痛",
        "the answer is (c).\n",
        "絵文字 🩺",
    ] {
        let ids = t
            .encode_fast(text, false)
            .expect("encodes")
            .get_ids()
            .to_vec();
        assert_eq!(t.decode(&ids, false).expect("decodes"), text);
    }
    // End of turn stops generation.
    let end_of_turn = t.token_to_id("<end_of_turn>").expect("in the vocabulary");
    assert!(tok.stop_ids.contains(&end_of_turn) && tok.stop_ids.contains(&1));
}
