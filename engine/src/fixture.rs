//! Tiny, seeded, random models of every supported architecture (Llama, Qwen2, Gemma 3) written
//! as real GGUF files, for tests.
//!
//! Tests in this crate and the end-to-end tests of other crates load these instead of
//! downloading anything. The file has everything a real llama.cpp GGUF has that the engine reads:
//! `<arch>.*` hyper-parameters, a vocabulary (byte-level BPE: the 256 GPT-2 byte tokens, a few
//! merges, and `<|endoftext|>`, `<|im_start|>`, `<|im_end|>` as control tokens; or SentencePiece,
//! as Gemma's: `<0xNN>` byte tokens, scored pieces, `<bos>`, `<eos>`, `<start_of_turn>`,
//! `<end_of_turn>`), a chat template, and tensors named as llama.cpp names them, with each
//! architecture's extras (Qwen2's attention biases, Gemma 3's query/key and post-norms).
//!
//! The weights are random, but shaped so greedy decoding is never degenerate: channel 0 of the
//! residual stream is a constant that no layer writes to, and the output head uses it to push
//! control tokens and non-printable bytes far down. A fixture model therefore writes printable
//! ASCII and never stops at EOS on its own; tests of stopping use `max_new_tokens` or stop strings.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;

use candle_core::quantized::gguf_file::{self, Value};
use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use crate::EngineError;

/// Hyper-parameters of the fixture model.
pub const EMBEDDING_LENGTH: usize = 64;
pub const BLOCK_COUNT: usize = 2;
pub const HEAD_COUNT: usize = 4;
pub const HEAD_COUNT_KV: usize = 2;
/// 256, so that K-quant blocks tile the down-projection's rows.
pub const FEED_FORWARD_LENGTH: usize = 256;
pub const CONTEXT_LENGTH: usize = 1024;
/// Gemma 3 fixtures attend through a window this wide on every layer (both are local).
pub const GEMMA3_SLIDING_WINDOW: usize = 256;

/// The control tokens, in vocabulary order after the bytes and merges.
pub const END_OF_TEXT: &str = "<|endoftext|>";
pub const IM_START: &str = "<|im_start|>";
pub const IM_END: &str = "<|im_end|>";

/// SentencePiece pieces of the fixture vocabulary beyond single characters, best first (`▁` is a
/// space).
const PIECES: [&str; 12] = [
    "\u{2581}t",
    "he",
    "\u{2581}the",
    "in",
    "er",
    "an",
    "on",
    "\u{2581}a",
    "re",
    "is",
    "の",
    "\u{2581}は",
];

/// The BPE merges of the fixture vocabulary, in rank order (GPT-2 byte spelling: `Ġ` is a space).
const MERGES: [(&str, &str); 10] = [
    ("Ġ", "t"),
    ("h", "e"),
    ("Ġt", "he"),
    ("i", "n"),
    ("e", "r"),
    ("a", "n"),
    ("o", "n"),
    ("Ġ", "a"),
    ("r", "e"),
    ("i", "s"),
];

/// How the fixture's 2-D weight matrices are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixtureWeights {
    /// Plain `f32`, as a converted but unquantized model.
    F32,
    /// `Q4_1`, run by the engine's own 4-bit kernel as stored.
    Q4_1,
    /// `Q5_0`, as llama.cpp stores matrices whose rows K-quant blocks cannot tile; run by the
    /// engine's own 5-bit kernel as stored (or requantized to `Q8_0` when a load asks).
    Q5_0,
    /// `Q4_0`, run by the engine's own 4-bit kernel as stored.
    Q4_0,
    /// `Q8_0`, run by the engine's own kernel as stored.
    Q8_0,
    /// K-quants, as llama.cpp's `Q4_K_M`/`Q5_K_M`/`Q6_K` files hold them: the matrices whose
    /// rows 256-value blocks tile (the feed-forward down-projection, 256 wide) in that type,
    /// the others in `Q8_0`, as llama.cpp falls back.
    Q4K,
    Q5K,
    Q6K,
}

impl FixtureWeights {
    /// Every storage type of the fixture.
    pub const ALL: [FixtureWeights; 8] = [
        Self::F32,
        Self::Q4_0,
        Self::Q4_1,
        Self::Q5_0,
        Self::Q8_0,
        Self::Q4K,
        Self::Q5K,
        Self::Q6K,
    ];

    /// The storage type of a 2-D tensor with rows `cols` long.
    fn dtype(self, cols: usize) -> GgmlDType {
        let k_quant = |dtype| {
            if cols.is_multiple_of(256) {
                dtype
            } else {
                GgmlDType::Q8_0
            }
        };
        match self {
            Self::F32 => GgmlDType::F32,
            Self::Q4_0 => GgmlDType::Q4_0,
            Self::Q4_1 => GgmlDType::Q4_1,
            Self::Q5_0 => GgmlDType::Q5_0,
            Self::Q8_0 => GgmlDType::Q8_0,
            Self::Q4K => k_quant(GgmlDType::Q4K),
            Self::Q5K => k_quant(GgmlDType::Q5K),
            Self::Q6K => k_quant(GgmlDType::Q6K),
        }
    }

    /// llama.cpp's `general.file_type` for the type.
    fn file_type(self) -> u32 {
        match self {
            Self::F32 => 0,
            Self::Q4_0 => 2,
            Self::Q4_1 => 3,
            Self::Q8_0 => 7,
            Self::Q5_0 => 8,
            Self::Q4K => 15,
            Self::Q5K => 17,
            Self::Q6K => 18,
        }
    }
}

/// What to write; [`FixtureSpec::tiny_llama`] is the normal fixture, the other fields let tests
/// write files the engine must refuse.
#[derive(Debug, Clone)]
pub struct FixtureSpec {
    /// Seed of the weights; the same seed always gives the same bytes.
    pub seed: u64,
    /// Written as `general.architecture`.
    pub architecture: String,
    /// Written as `tokenizer.ggml.model`.
    pub tokenizer_model: String,
    pub weights: FixtureWeights,
}

impl FixtureSpec {
    /// The standard tiny Llama with `f32` weights.
    pub fn tiny_llama(seed: u64) -> Self {
        Self::tiny("llama", seed)
    }

    /// A tiny model of `architecture` (`llama`, `qwen2` or `gemma3`) with `f32` weights and the
    /// vocabulary that family uses (SentencePiece for Gemma, byte-level BPE otherwise).
    pub fn tiny(architecture: &str, seed: u64) -> Self {
        Self {
            seed,
            architecture: architecture.to_owned(),
            tokenizer_model: if architecture == "gemma3" {
                "llama"
            } else {
                "gpt2"
            }
            .to_owned(),
            weights: FixtureWeights::F32,
        }
    }
}

/// Writes the standard tiny Llama (`f32` weights) for `seed` to `path`.
pub fn write_tiny_llama_gguf(path: &Path, seed: u64) -> Result<(), EngineError> {
    write_gguf(path, &FixtureSpec::tiny_llama(seed))
}

/// Writes the fixture described by `spec` to `path`.
pub fn write_gguf(path: &Path, spec: &FixtureSpec) -> Result<(), EngineError> {
    let fixture_error = |source: candle_core::Error| EngineError::Fixture {
        path: path.to_path_buf(),
        source: Box::new(source),
    };
    let vocab = if spec.tokenizer_model == "llama" {
        sentencepiece_vocabulary()
    } else {
        vocabulary()
    };
    let tensors = tensors(spec, &vocab).map_err(fixture_error)?;
    let metadata = metadata(spec, &vocab);

    let file = File::create(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut writer = BufWriter::new(file);
    let metadata_refs: Vec<(&str, &Value)> =
        metadata.iter().map(|(k, v)| (k.as_str(), v)).collect();
    let tensor_refs: Vec<(&str, &QTensor)> = tensors.iter().map(|(k, t)| (k.as_str(), t)).collect();
    gguf_file::write(&mut writer, &metadata_refs, &tensor_refs).map_err(fixture_error)?;
    writer.flush().map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The fixture vocabulary: token strings and whether each must be kept out of the output.
struct Vocabulary {
    tokens: Vec<String>,
    /// llama.cpp token types: 1 = normal, 3 = control, 6 = byte.
    types: Vec<i32>,
    /// Tokens the output head pushes down: control tokens and non-printable bytes.
    suppressed: Vec<bool>,
    /// Byte-level BPE: merges; SentencePiece: a score per token.
    merges: Vec<String>,
    scores: Vec<f32>,
    bos: u32,
    end_of_text: u32,
    add_bos: bool,
    chat_template: &'static str,
}

const CHATML_TEMPLATE: &str = "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + \
     message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}\
     {% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";

/// Gemma's turns, with the assistant's role written `model` as in Gemma 3's own template.
const GEMMA_TEMPLATE: &str = "{{ bos_token }}{% for message in messages %}\
     {% if message['role'] == 'assistant' %}{% set role = 'model' %}\
     {% else %}{% set role = message['role'] %}{% endif %}\
     {{ '<start_of_turn>' + role + '\\n' + message['content'] + '<end_of_turn>\\n' }}\
     {% endfor %}{% if add_generation_prompt %}{{ '<start_of_turn>model\\n' }}{% endif %}";

/// A SentencePiece vocabulary as Gemma's GGUF files hold it: control tokens first, the 256
/// `<0xNN>` byte tokens, then printable ASCII and the pieces, scored best first.
fn sentencepiece_vocabulary() -> Vocabulary {
    let mut tokens: Vec<String> = [
        "<pad>",
        "<eos>",
        "<bos>",
        "<unk>",
        "<start_of_turn>",
        "<end_of_turn>",
    ]
    .map(str::to_owned)
    .to_vec();
    let mut types = vec![3, 3, 3, 2, 3, 3];
    let mut suppressed = vec![true; tokens.len()];
    for byte in 0..=255u8 {
        tokens.push(format!("<0x{byte:02X}>"));
        types.push(6);
        suppressed.push(byte != b'\n');
    }
    tokens.push("\u{2581}".to_owned());
    types.push(1);
    suppressed.push(false);
    for c in (b'!'..=b'~').map(char::from) {
        tokens.push(c.to_string());
        types.push(1);
        suppressed.push(false);
    }
    for piece in PIECES {
        tokens.push(piece.to_owned());
        types.push(1);
        suppressed.push(false);
    }
    // Scores: special and byte tokens at the bottom, pieces by rank, characters below pieces.
    let first_piece = tokens.len() - PIECES.len();
    let scores = (0..tokens.len())
        .map(|id| match types[id] {
            1 if id >= first_piece => -((id - first_piece) as f32),
            1 => -100.0 - id as f32,
            _ => -1000.0,
        })
        .collect();
    Vocabulary {
        tokens,
        types,
        suppressed,
        merges: Vec::new(),
        scores,
        bos: 2,
        end_of_text: 1,
        add_bos: true,
        chat_template: GEMMA_TEMPLATE,
    }
}

fn vocabulary() -> Vocabulary {
    let byte_chars = gpt2_byte_chars();
    let mut tokens: Vec<String> = byte_chars.iter().map(char::to_string).collect();
    let mut suppressed: Vec<bool> = (0..=255u8)
        .map(|b| !(b == b'\n' || (0x20..0x7f).contains(&b)))
        .collect();
    for (left, right) in MERGES {
        tokens.push(format!("{left}{right}"));
        suppressed.push(false);
    }
    let mut types = vec![1; tokens.len()];
    let end_of_text = tokens.len() as u32;
    for special in [END_OF_TEXT, IM_START, IM_END] {
        tokens.push(special.to_owned());
        types.push(3);
        suppressed.push(true);
    }
    Vocabulary {
        tokens,
        types,
        suppressed,
        merges: MERGES.iter().map(|(l, r)| format!("{l} {r}")).collect(),
        scores: Vec::new(),
        bos: end_of_text,
        end_of_text,
        add_bos: false,
        chat_template: CHATML_TEMPLATE,
    }
}

/// GPT-2's reversible byte → printable character table (`bytes_to_unicode` in its encoder):
/// printable Latin-1 bytes stand for themselves, the rest are shifted past U+0100.
pub(crate) fn gpt2_byte_chars() -> [char; 256] {
    let mut table = ['\0'; 256];
    let mut shifted = 0u32;
    for byte in 0..=255u8 {
        let printable = matches!(byte, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
        let code = if printable {
            u32::from(byte)
        } else {
            shifted += 1;
            255 + shifted
        };
        table[usize::from(byte)] = char::from_u32(code).unwrap_or('\u{FFFD}');
    }
    table
}

fn metadata(spec: &FixtureSpec, vocab: &Vocabulary) -> Vec<(String, Value)> {
    let u32_value = |v: usize| Value::U32(v as u32);
    let file_type = spec.weights.file_type();
    let arch = spec.architecture.as_str();
    let head_dim = EMBEDDING_LENGTH / HEAD_COUNT;
    let mut out: Vec<(String, Value)> = vec![
        (
            "general.architecture".into(),
            Value::String(arch.to_owned()),
        ),
        (
            "general.name".into(),
            Value::String(format!("Kokushi tiny {arch} fixture")),
        ),
        ("general.file_type".into(), Value::U32(file_type)),
        ("general.quantization_version".into(), Value::U32(2)),
    ];
    let mut hyper = |key: &str, value: Value| out.push((format!("{arch}.{key}"), value));
    hyper("context_length", u32_value(CONTEXT_LENGTH));
    hyper("embedding_length", u32_value(EMBEDDING_LENGTH));
    hyper("block_count", u32_value(BLOCK_COUNT));
    hyper("feed_forward_length", u32_value(FEED_FORWARD_LENGTH));
    hyper("attention.head_count", u32_value(HEAD_COUNT));
    hyper("attention.head_count_kv", u32_value(HEAD_COUNT_KV));
    hyper("rope.dimension_count", u32_value(head_dim));
    hyper("rope.freq_base", Value::F32(10_000.0));
    hyper("attention.layer_norm_rms_epsilon", Value::F32(1e-5));
    hyper("vocab_size", u32_value(vocab.tokens.len()));
    if arch == "gemma3" {
        hyper("attention.key_length", u32_value(head_dim));
        hyper("attention.value_length", u32_value(head_dim));
        hyper("attention.sliding_window", u32_value(GEMMA3_SLIDING_WINDOW));
    }
    out.extend([
        (
            "tokenizer.ggml.model".into(),
            Value::String(spec.tokenizer_model.clone()),
        ),
        (
            "tokenizer.ggml.pre".into(),
            Value::String("default".to_owned()),
        ),
        (
            "tokenizer.ggml.tokens".into(),
            Value::Array(vocab.tokens.iter().cloned().map(Value::String).collect()),
        ),
        (
            "tokenizer.ggml.token_type".into(),
            Value::Array(vocab.types.iter().copied().map(Value::I32).collect()),
        ),
        ("tokenizer.ggml.bos_token_id".into(), Value::U32(vocab.bos)),
        (
            "tokenizer.ggml.eos_token_id".into(),
            Value::U32(vocab.end_of_text),
        ),
        (
            "tokenizer.ggml.add_bos_token".into(),
            Value::Bool(vocab.add_bos),
        ),
        (
            "tokenizer.chat_template".into(),
            Value::String(vocab.chat_template.to_owned()),
        ),
    ]);
    if vocab.merges.is_empty() {
        out.push((
            "tokenizer.ggml.scores".into(),
            Value::Array(vocab.scores.iter().copied().map(Value::F32).collect()),
        ));
        out.push(("tokenizer.ggml.unknown_token_id".into(), Value::U32(3)));
        out.push(("tokenizer.ggml.add_space_prefix".into(), Value::Bool(false)));
    } else {
        out.push((
            "tokenizer.ggml.merges".into(),
            Value::Array(vocab.merges.iter().cloned().map(Value::String).collect()),
        ));
    }
    out
}

/// All tensors, named as llama.cpp names them.
fn tensors(spec: &FixtureSpec, vocab: &Vocabulary) -> candle_core::Result<Vec<(String, QTensor)>> {
    let mut rng = SplitMix64(spec.seed);
    let n_vocab = vocab.tokens.len();
    let e = EMBEDDING_LENGTH;
    let kv = EMBEDDING_LENGTH / HEAD_COUNT * HEAD_COUNT_KV;
    let f = FEED_FORWARD_LENGTH;
    // Norm weights near 1 (channel 0, the constant, kept at exactly 1), so a loader that
    // mistakes one norm convention for another is caught.
    let norm = |rng: &mut SplitMix64, n: usize| {
        let mut w: Vec<f32> = (0..n).map(|_| 1.0 + rng.uniform(0.25)).collect();
        w[0] = 1.0;
        Tensor::from_vec(w, n, &Device::Cpu)
    };
    // Weights of about unit gain; queries and keys 4× larger so attention is peaked and the
    // output depends on the prompt rather than being an average of it.
    let gain = |fan_in: usize| 1.0 / (fan_in as f32).sqrt();

    let mut out: Vec<(String, Tensor)> = Vec::new();
    // Channel 0 of every embedding is the constant the output head reads (see the module doc).
    let mut embedding = rng.matrix(n_vocab, e, 1.0);
    embedding.iter_mut().step_by(e).for_each(|v| *v = 1.0);
    out.push((
        "token_embd.weight".to_owned(),
        matrix(embedding, n_vocab, e)?,
    ));
    for layer in 0..BLOCK_COUNT {
        let mut add = |part: &str, tensor| out.push((format!("blk.{layer}.{part}.weight"), tensor));
        add("attn_norm", norm(&mut rng, e)?);
        if spec.architecture == "gemma3" {
            let head_dim = EMBEDDING_LENGTH / HEAD_COUNT;
            add("attn_q_norm", norm(&mut rng, head_dim)?);
            add("attn_k_norm", norm(&mut rng, head_dim)?);
            add("post_attention_norm", norm(&mut rng, e)?);
            add("post_ffw_norm", norm(&mut rng, e)?);
        }
        add("attn_q", matrix(rng.matrix(e, e, 4.0 * gain(e)), e, e)?);
        add("attn_k", matrix(rng.matrix(kv, e, 4.0 * gain(e)), kv, e)?);
        add("attn_v", matrix(rng.matrix(kv, e, gain(e)), kv, e)?);
        add(
            "attn_output",
            matrix(zero_row0(rng.matrix(e, e, gain(e)), e), e, e)?,
        );
        add("ffn_norm", norm(&mut rng, e)?);
        add("ffn_gate", matrix(rng.matrix(f, e, gain(e)), f, e)?);
        add("ffn_up", matrix(rng.matrix(f, e, gain(e)), f, e)?);
        add(
            "ffn_down",
            matrix(zero_row0(rng.matrix(e, f, gain(f)), f), e, f)?,
        );
        if spec.architecture == "qwen2" {
            let bias = |rng: &mut SplitMix64, n: usize| {
                Tensor::from_vec(rng.matrix(1, n, 0.1), n, &Device::Cpu)
            };
            out.push((format!("blk.{layer}.attn_q.bias"), bias(&mut rng, e)?));
            out.push((format!("blk.{layer}.attn_k.bias"), bias(&mut rng, kv)?));
            out.push((format!("blk.{layer}.attn_v.bias"), bias(&mut rng, kv)?));
        }
    }
    out.push(("output_norm.weight".to_owned(), norm(&mut rng, e)?));
    let mut head = rng.matrix(n_vocab, e, 1.0);
    for (row, suppressed) in vocab.suppressed.iter().enumerate() {
        head[row * e] = if *suppressed { -16.0 } else { 0.0 };
    }
    out.push(("output.weight".to_owned(), matrix(head, n_vocab, e)?));

    out.into_iter()
        .map(|(name, tensor)| {
            let dtype = match tensor.dims() {
                [_, cols] => spec.weights.dtype(*cols),
                _ => GgmlDType::F32,
            };
            QTensor::quantize(&tensor, dtype).map(|q| (name, q))
        })
        .collect()
}

/// Zeroes output channel 0 of a `(rows, cols)` projection so no layer writes to it.
fn zero_row0(mut values: Vec<f32>, cols: usize) -> Vec<f32> {
    values[..cols].fill(0.0);
    values
}

fn matrix(values: Vec<f32>, rows: usize, cols: usize) -> candle_core::Result<Tensor> {
    Tensor::from_vec(values, (rows, cols), &Device::Cpu)
}

/// splitmix64: a tiny, well-mixed PRNG, enough for reproducible test weights.
/// A small, fast, seedable generator (SplitMix64): fixtures' weights and training's
/// initialisation and dropout masks.
#[derive(Debug, Clone)]
pub(crate) struct SplitMix64(pub(crate) u64);

impl SplitMix64 {
    pub(crate) fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[-scale, scale)`.
    pub(crate) fn uniform(&mut self, scale: f32) -> f32 {
        // The top 24 bits give every representable step of an f32 in [0, 1).
        let unit = (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32;
        (2.0 * unit - 1.0) * scale
    }

    pub(crate) fn matrix(&mut self, rows: usize, cols: usize, scale: f32) -> Vec<f32> {
        (0..rows * cols).map(|_| self.uniform(scale)).collect()
    }
}

/// Writes the fixture `spec` as a Hugging Face model folder: `config.json`, `tokenizer.json`,
/// `tokenizer_config.json` (with the chat template) and `model.safetensors` holding exactly the
/// weights of the GGUF fixture with the same spec, renamed as Hugging Face names them, with the
/// query and key rows of a Llama put back in the order llama.cpp's converter permutes, and
/// Gemma's norms stored as `w` for `1 + w`. The two forms of one spec must therefore give the
/// same logits.
pub fn write_hf_folder(dir: &Path, spec: &FixtureSpec) -> Result<(), EngineError> {
    let io = |path: &Path, source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tensor_error = |source: candle_core::Error| EngineError::Fixture {
        path: dir.to_path_buf(),
        source: Box::new(source),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let gguf = dir.join(".fixture.gguf");
    write_gguf(&gguf, spec)?;
    let (content, mut reader) = crate::gguf::read_content(&gguf)?;
    let md = crate::gguf::Metadata::new(&gguf, &content.metadata);
    let vocab = crate::tokenizer::from_metadata(md)?;
    let bos_id = md
        .opt_usize("tokenizer.ggml.bos_token_id")?
        .and_then(|id| u32::try_from(id).ok())
        .unwrap_or(0);
    let head_dim = EMBEDDING_LENGTH / HEAD_COUNT;
    let mut tensors = std::collections::HashMap::new();
    for (name, _) in content.tensor_infos.iter() {
        let tensor = content
            .tensor(&mut reader, name, &Device::Cpu)
            .and_then(|q| q.dequantize(&Device::Cpu))
            .map_err(tensor_error)?;
        let family = crate::transformer::Family::from_gguf(&spec.architecture)
            .unwrap_or(crate::transformer::Family::Llama);
        let hf = if name == "output.weight" {
            "lm_head.weight".to_owned()
        } else {
            let Some(hf) = crate::transformer::load::hf_name(family, name) else {
                continue;
            };
            format!("model.{hf}")
        };
        let q_or_k = [".attn_q.weight", ".attn_k.weight"]
            .iter()
            .position(|suffix| name.ends_with(suffix));
        let tensor = match q_or_k {
            Some(which) if spec.architecture == "llama" => {
                let heads = if which == 0 {
                    HEAD_COUNT
                } else {
                    HEAD_COUNT_KV
                };
                let cols = tensor.dim(1).map_err(tensor_error)?;
                tensor
                    .reshape((heads, head_dim / 2, 2, cols))
                    .and_then(|t| t.transpose(1, 2))
                    .and_then(|t| t.reshape((heads * head_dim, cols)))
                    .and_then(|t| t.contiguous())
                    .map_err(tensor_error)?
            }
            _ if spec.architecture == "gemma3" && name.ends_with("norm.weight") => {
                (tensor - 1.0).map_err(tensor_error)?
            }
            _ => tensor,
        };
        tensors.insert(hf, tensor);
    }
    drop(reader);
    std::fs::remove_file(&gguf).map_err(|e| io(&gguf, e))?;
    candle_core::safetensors::save(&tensors, dir.join("model.safetensors"))
        .map_err(tensor_error)?;
    vocab
        .tokenizer
        .save(dir.join("tokenizer.json"), false)
        .map_err(|source| EngineError::TokenizerBuild {
            path: dir.join("tokenizer.json"),
            what: "saving tokenizer.json".to_owned(),
            source,
        })?;
    let eos = vocab.stop_ids.first().copied().unwrap_or(0);
    let mut config = serde_json::json!({
        "model_type": spec.architecture,
        "hidden_size": EMBEDDING_LENGTH,
        "intermediate_size": FEED_FORWARD_LENGTH,
        "vocab_size": vocab.vocab_size,
        "num_hidden_layers": BLOCK_COUNT,
        "num_attention_heads": HEAD_COUNT,
        "num_key_value_heads": HEAD_COUNT_KV,
        "rms_norm_eps": 1e-5,
        "rope_theta": 10_000.0,
        "max_position_embeddings": CONTEXT_LENGTH,
        "tie_word_embeddings": false,
        "eos_token_id": eos,
        "torch_dtype": "float32",
    });
    match spec.architecture.as_str() {
        "qwen2" => {
            config["sliding_window"] = CONTEXT_LENGTH.into();
            config["max_window_layers"] = BLOCK_COUNT.into();
            config["use_sliding_window"] = false.into();
            config["hidden_act"] = "silu".into();
        }
        "gemma3" => {
            config["model_type"] = "gemma3_text".into();
            config["architectures"] = serde_json::json!(["Gemma3ForCausalLM"]);
            config["head_dim"] = head_dim.into();
            config["query_pre_attn_scalar"] = head_dim.into();
            config["sliding_window"] = GEMMA3_SLIDING_WINDOW.into();
            config["sliding_window_pattern"] = 6.into();
            config["layer_types"] = serde_json::json!(vec!["sliding_attention"; BLOCK_COUNT]);
            config["rope_local_base_freq"] = 10_000.0.into();
            config["hidden_activation"] = "gelu_pytorch_tanh".into();
            config["rms_norm_eps"] = 1e-5.into();
            config["bos_token_id"] = bos_id.into();
            config["pad_token_id"] = 0.into();
            config["attention_bias"] = false.into();
            config["final_logit_softcapping"] = serde_json::Value::Null;
            config["attn_logit_softcapping"] = serde_json::Value::Null;
            config["rope_scaling"] = serde_json::Value::Null;
        }
        _ => {
            config["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
            config["hidden_act"] = "silu".into();
        }
    }
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| io(&path, e))?;
    let template = if spec.architecture == "gemma3" {
        GEMMA_TEMPLATE
    } else {
        CHATML_TEMPLATE
    };
    let tokenizer_config = serde_json::json!({
        "chat_template": template,
        "bos_token": vocab.tokenizer.id_to_token(bos_id).unwrap_or_default(),
        "eos_token": vocab.tokenizer.id_to_token(eos).unwrap_or_default(),
    });
    let path = dir.join("tokenizer_config.json");
    std::fs::write(&path, tokenizer_config.to_string()).map_err(|e| io(&path, e))
}

/// A PEFT LoRA adapter for a fixture model.
#[derive(Debug, Clone)]
pub struct AdapterSpec {
    pub seed: u64,
    pub rank: usize,
    pub alpha: f64,
    /// Hugging Face module names, e.g. `["q_proj", "v_proj"]`.
    pub targets: Vec<String>,
    /// Write `B = 0`, as PEFT initialises an adapter before training.
    pub zero_b: bool,
}

impl AdapterSpec {
    /// Rank 4, alpha 8, on every attention and feed-forward projection.
    pub fn all_projections(seed: u64) -> Self {
        Self {
            seed,
            rank: 4,
            alpha: 8.0,
            targets: crate::transformer::PROJECTIONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            zero_b: false,
        }
    }
}

/// Writes a PEFT LoRA adapter for the fixture model of architecture `architecture` into `dir`:
/// `adapter_config.json` and `adapter_model.safetensors` with PEFT's tensor names, as
/// `PeftModel.save_pretrained` writes them. Rows of `B` that would write to the residual
/// stream's constant channel are zero, so the fixture keeps its output head's behaviour.
pub fn write_peft_adapter(
    dir: &Path,
    architecture: &str,
    adapter: &AdapterSpec,
) -> Result<(), EngineError> {
    let io = |path: &Path, source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    };
    let tensor_error = |source: candle_core::Error| EngineError::Fixture {
        path: dir.to_path_buf(),
        source: Box::new(source),
    };
    std::fs::create_dir_all(dir).map_err(|e| io(dir, e))?;
    let e = EMBEDDING_LENGTH;
    let kv = EMBEDDING_LENGTH / HEAD_COUNT * HEAD_COUNT_KV;
    let f = FEED_FORWARD_LENGTH;
    let mut rng = SplitMix64(adapter.seed ^ 0x5EED_AD4B_7E55_0001);
    let mut tensors = std::collections::HashMap::new();
    for layer in 0..BLOCK_COUNT {
        for module in &adapter.targets {
            let (group, out, input) = match module.as_str() {
                "q_proj" => ("self_attn", e, e),
                "k_proj" | "v_proj" => ("self_attn", kv, e),
                "o_proj" => ("self_attn", e, e),
                "gate_proj" | "up_proj" => ("mlp", f, e),
                "down_proj" => ("mlp", e, f),
                _ => continue,
            };
            #[allow(clippy::cast_precision_loss)]
            let a = rng.matrix(adapter.rank, input, 1.0 / (input as f32).sqrt());
            let mut b = if adapter.zero_b {
                vec![0.0; out * adapter.rank]
            } else {
                rng.matrix(out, adapter.rank, 0.5)
            };
            if matches!(module.as_str(), "o_proj" | "down_proj") {
                b[..adapter.rank].fill(0.0);
            }
            let base = format!("base_model.model.model.layers.{layer}.{group}.{module}");
            tensors.insert(
                format!("{base}.lora_A.weight"),
                matrix(a, adapter.rank, input).map_err(tensor_error)?,
            );
            tensors.insert(
                format!("{base}.lora_B.weight"),
                matrix(b, out, adapter.rank).map_err(tensor_error)?,
            );
        }
    }
    candle_core::safetensors::save(&tensors, dir.join("adapter_model.safetensors"))
        .map_err(tensor_error)?;
    let config = serde_json::json!({
        "peft_type": "LORA",
        "task_type": "CAUSAL_LM",
        "base_model_name_or_path": format!("kokushi/tiny-{architecture}-fixture"),
        "r": adapter.rank,
        "lora_alpha": adapter.alpha,
        "lora_dropout": 0.0,
        "target_modules": adapter.targets,
        "fan_in_fan_out": false,
        "bias": "none",
        "use_rslora": false,
        "use_dora": false,
        "modules_to_save": null,
        "inference_mode": true,
    });
    let path = dir.join("adapter_config.json");
    std::fs::write(&path, config.to_string()).map_err(|e| io(&path, e))
}

/// Writes the fixture `spec` into a fresh temporary directory and loads it; the directory must
/// outlive the model's use in the test.
#[cfg(test)]
pub(crate) fn load(
    spec: &FixtureSpec,
    opts: &crate::LoadOptions,
) -> (tempfile::TempDir, crate::Model) {
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("fixture.gguf");
    write_gguf(&path, spec).expect("fixture is written");
    let model = crate::Model::load(&path, opts).expect("fixture loads");
    (dir, model)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_byte_table_is_a_bijection_that_keeps_printable_ascii() {
        // Arrange
        let table = gpt2_byte_chars();

        // Act
        let mut distinct = table.to_vec();
        distinct.sort_unstable();
        distinct.dedup();

        // Assert
        assert_eq!(distinct.len(), 256);
        assert_eq!(table[usize::from(b'A')], 'A');
        assert_eq!(table[usize::from(b' ')], 'Ġ');
        assert_eq!(table[usize::from(b'\n')], 'Ċ');
    }

    #[test]
    fn the_same_seed_writes_identical_files_and_another_seed_does_not() {
        // Arrange
        let dir = tempfile::tempdir().expect("temp dir");
        let paths = ["a.gguf", "b.gguf", "c.gguf"].map(|n| dir.path().join(n));

        // Act
        write_tiny_llama_gguf(&paths[0], 7).expect("write a");
        write_tiny_llama_gguf(&paths[1], 7).expect("write b");
        write_tiny_llama_gguf(&paths[2], 8).expect("write c");

        // Assert
        let bytes = paths.map(|p| std::fs::read(p).expect("read back"));
        assert_eq!(bytes[0], bytes[1]);
        assert_ne!(bytes[0], bytes[2]);
    }

    #[test]
    fn the_q4_1_fixture_stores_matrices_as_q4_1_and_norms_as_f32() {
        // Arrange
        let dir = tempfile::tempdir().expect("temp dir");
        let path = dir.path().join("q.gguf");
        let spec = FixtureSpec {
            weights: FixtureWeights::Q4_1,
            ..FixtureSpec::tiny_llama(1)
        };

        // Act
        write_gguf(&path, &spec).expect("write");

        // Assert
        let (content, _) = crate::gguf::read_content(&path).expect("read back");
        let dtype = |name: &str| content.tensor_infos[name].ggml_dtype;
        assert_eq!(dtype("blk.0.attn_q.weight"), GgmlDType::Q4_1);
        assert_eq!(dtype("output.weight"), GgmlDType::Q4_1);
        assert_eq!(dtype("blk.1.ffn_norm.weight"), GgmlDType::F32);
    }
}
