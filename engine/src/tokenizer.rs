//! Building a [`tokenizers::Tokenizer`] from the vocabulary stored in GGUF metadata.
//!
//! A GGUF file carries no `tokenizer.json`; llama.cpp keeps the vocabulary in `tokenizer.ggml.*`
//! keys instead. This module owns that translation for byte-level BPE vocabularies
//! (`tokenizer.ggml.model = "gpt2"`: GPT-2, SmolLM, Llama 3, Qwen2, ...) and SentencePiece BPE
//! vocabularies (`"llama"`: Llama 2, Mistral, Gemma, ...). Control and user-defined tokens
//! become added special tokens so that `<|im_start|>` or `<start_of_turn>` in a prompt encodes to
//! one id.
//!
//! SentencePiece BPE: llama.cpp merges the adjacent pair whose concatenation is in the vocabulary
//! with the highest score, repeatedly, and falls back to `<0xNN>` byte tokens for characters the
//! vocabulary lacks. A BPE whose merges are every split of every token into two tokens, ranked by
//! the merged token's score (how Hugging Face converts SentencePiece models), does the same; spaces
//! are `▁` in the vocabulary.

use tokenizers::decoders::DecoderWrapper;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::digits::Digits;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::Split;
use tokenizers::processors::PostProcessorWrapper;
use tokenizers::processors::template::TemplateProcessing;
use tokenizers::{AddedToken, SplitDelimiterBehavior, Tokenizer};

use crate::EngineError;
use crate::gguf::Metadata;

/// Tokenizer models (`tokenizer.ggml.model`) this module can build.
const SUPPORTED_MODELS: &str = "gpt2 (byte-level BPE), llama (SentencePiece BPE)";

/// llama.cpp's token type for byte-fallback tokens (`<0x0A>`).
const TOKEN_TYPE_BYTE: i64 = 6;

/// llama.cpp's token types (`tokenizer.ggml.token_type`) that mark special tokens.
const TOKEN_TYPE_CONTROL: i64 = 3;
const TOKEN_TYPE_USER_DEFINED: i64 = 4;

/// End-of-turn markers of common chat templates; generation stops at any that is in the vocab.
pub(crate) const END_OF_TURN_TOKENS: [&str; 4] = [
    "<|im_end|>",
    "<|eot_id|>",
    "<|end_of_text|>",
    "<end_of_turn>",
];

/// Llama 3's pre-tokenizer split pattern (`tokenizer.ggml.pre = "llama-bpe"`), as in its
/// `tokenizer.json`.
const LLAMA3_SPLIT: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

/// A tokenizer together with the special ids generation needs.
#[derive(Debug)]
pub(crate) struct GgufTokenizer {
    pub(crate) tokenizer: Tokenizer,
    /// The number of entries in `tokenizer.ggml.tokens`.
    pub(crate) vocab_size: usize,
    /// Ids at which generation stops: EOS, EOT and known end-of-turn markers.
    pub(crate) stop_ids: Vec<u32>,
}

/// Builds the tokenizer described by a GGUF file's `tokenizer.ggml.*` metadata.
pub(crate) fn from_metadata(md: Metadata<'_>) -> Result<GgufTokenizer, EngineError> {
    let model = md.string("tokenizer.ggml.model")?;
    if model != "gpt2" && model != "llama" {
        return Err(EngineError::UnsupportedTokenizer {
            path: md.path().to_path_buf(),
            found: model.to_owned(),
            supported: SUPPORTED_MODELS.to_owned(),
        });
    }
    let tokens = md.string_array("tokenizer.ggml.tokens")?;
    let token_types = md.opt_int_array("tokenizer.ggml.token_type")?;
    if let Some(types) = &token_types
        && types.len() != tokens.len()
    {
        return Err(EngineError::InvalidMetadata {
            path: md.path().to_path_buf(),
            key: "tokenizer.ggml.token_type".to_owned(),
            expected: "one entry per token in tokenizer.ggml.tokens",
            found: format!("{} entries for {} tokens", types.len(), tokens.len()),
        });
    }
    let bos = token_id(md, "tokenizer.ggml.bos_token_id", tokens.len())?;
    let eos = token_id(md, "tokenizer.ggml.eos_token_id", tokens.len())?;
    let eot = token_id(md, "tokenizer.ggml.eot_token_id", tokens.len())?;
    let add_bos = md
        .opt_bool("tokenizer.ggml.add_bos_token")?
        .unwrap_or(false);
    let pre = md.opt_string("tokenizer.ggml.pre")?.unwrap_or("default");

    let build_error = |what: &str, source: tokenizers::Error| EngineError::TokenizerBuild {
        path: md.path().to_path_buf(),
        what: what.to_owned(),
        source,
    };

    let mut tokenizer = if model == "gpt2" {
        let merges = md.string_array("tokenizer.ggml.merges")?;
        let bpe = byte_level_bpe(md, &tokens, &merges, pre == "llama-bpe")?;
        let mut tokenizer = Tokenizer::new(bpe);
        let pre_tokenizer =
            pre_tokenizer(pre).map_err(|e| build_error("pre-tokenizer split pattern", e))?;
        tokenizer.with_pre_tokenizer(Some(pre_tokenizer));
        tokenizer.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));
        tokenizer
    } else {
        sentencepiece_bpe(md, &tokens, token_types.as_deref())?
    };

    let specials: Vec<AddedToken> = match &token_types {
        Some(types) => tokens
            .iter()
            .zip(types)
            .filter(|(_, t)| matches!(**t, TOKEN_TYPE_CONTROL | TOKEN_TYPE_USER_DEFINED))
            .map(|(token, _)| AddedToken::from(*token, true))
            .collect(),
        None => Vec::new(),
    };
    tokenizer
        .add_special_tokens(specials)
        .map_err(|e| build_error("special tokens", e))?;

    if add_bos && let Some(bos) = bos {
        let processor = bos_processor(tokens[bos as usize], bos)
            .map_err(|e| build_error("BOS post-processor", e))?;
        tokenizer.with_post_processor(Some(PostProcessorWrapper::Template(processor)));
    }

    let mut stop_ids: Vec<u32> = eos.into_iter().chain(eot).collect();
    for marker in END_OF_TURN_TOKENS {
        if let Some(id) = tokenizer.token_to_id(marker) {
            stop_ids.push(id);
        }
    }
    stop_ids.sort_unstable();
    stop_ids.dedup();

    Ok(GgufTokenizer {
        tokenizer,
        vocab_size: tokens.len(),
        stop_ids,
    })
}

/// A SentencePiece BPE vocabulary (`tokenizer.ggml.model = "llama"`) as a `tokenizers` BPE;
/// see the module docs.
fn sentencepiece_bpe(
    md: Metadata<'_>,
    tokens: &[&str],
    token_types: Option<&[i64]>,
) -> Result<Tokenizer, EngineError> {
    use tokenizers::decoders::byte_fallback::ByteFallback;
    use tokenizers::decoders::fuse::Fuse;
    use tokenizers::decoders::sequence::Sequence as DecoderSequence;
    use tokenizers::normalizers::{NormalizerWrapper, Prepend, Replace};

    let path = md.path().to_path_buf();
    let build_error = |what: &str, source: tokenizers::Error| EngineError::TokenizerBuild {
        path: path.clone(),
        what: what.to_owned(),
        source,
    };
    let scores =
        md.opt_f32_array("tokenizer.ggml.scores")?
            .ok_or_else(|| EngineError::InvalidMetadata {
                path: path.clone(),
                key: "tokenizer.ggml.scores".to_owned(),
                expected: "a score per token for a SentencePiece vocabulary",
                found: "nothing".to_owned(),
            })?;
    if scores.len() != tokens.len() {
        return Err(EngineError::InvalidMetadata {
            path,
            key: "tokenizer.ggml.scores".to_owned(),
            expected: "one score per token in tokenizer.ggml.tokens",
            found: format!("{} scores for {} tokens", scores.len(), tokens.len()),
        });
    }
    let kind = |id: usize| token_types.map_or(1, |t| t[id]);
    let mut vocab = Vocab::with_capacity(tokens.len());
    for (id, token) in tokens.iter().enumerate() {
        let id32 = u32::try_from(id).unwrap_or(u32::MAX);
        vocab.entry((*token).to_owned()).or_insert(id32);
    }
    // Every way to write a normal token as two tokens is a merge, ranked by the merged token's
    // score (higher first), ties by the pieces' ids.
    let mut merges: Vec<(f32, u32, u32, &str, &str)> = Vec::new();
    for (id, token) in tokens.iter().enumerate() {
        if kind(id) != 1 || token.chars().nth(1).is_none() {
            continue;
        }
        for (split, _) in token.char_indices().skip(1) {
            let (left, right) = token.split_at(split);
            if let (Some(&l), Some(&r)) = (vocab.get(left), vocab.get(right)) {
                merges.push((scores[id], l, r, left, right));
            }
        }
    }
    merges.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let merges: Vec<(String, String)> = merges
        .into_iter()
        .map(|(_, _, _, l, r)| (l.to_owned(), r.to_owned()))
        .collect();
    let has_bytes =
        (0..tokens.len()).any(|id| kind(id) == TOKEN_TYPE_BYTE) || vocab.contains_key("<0x0A>");
    let mut builder = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .byte_fallback(has_bytes);
    if let Some(unk) = md.opt_usize("tokenizer.ggml.unknown_token_id")?
        && let Some(token) = tokens.get(unk)
    {
        builder = builder.unk_token((*token).to_owned());
    }
    let bpe = builder
        .build()
        .map_err(|e| build_error("SentencePiece vocabulary and merges", e))?;
    let mut tokenizer = Tokenizer::new(bpe);
    let space = Replace::new(" ", "\u{2581}").map_err(|e| build_error("space normalizer", e))?;
    let add_space_prefix = md
        .opt_bool("tokenizer.ggml.add_space_prefix")?
        .unwrap_or(true);
    let normalizer = if add_space_prefix {
        NormalizerWrapper::Sequence(tokenizers::normalizers::Sequence::new(vec![
            NormalizerWrapper::Prepend(Prepend::new("\u{2581}".to_owned())),
            NormalizerWrapper::Replace(space),
        ]))
    } else {
        NormalizerWrapper::Replace(space)
    };
    tokenizer
        .with_normalizer(Some(normalizer))
        .map_err(|e| build_error("normalizer", e))?;
    let mut decoders = vec![
        DecoderWrapper::Replace(
            Replace::new("\u{2581}", " ").map_err(|e| build_error("space decoder", e))?,
        ),
        DecoderWrapper::ByteFallback(ByteFallback::new()),
        DecoderWrapper::Fuse(Fuse::new()),
    ];
    if add_space_prefix {
        decoders.push(DecoderWrapper::Strip(
            tokenizers::decoders::strip::Strip::new(' ', 1, 0),
        ));
    }
    tokenizer.with_decoder(Some(DecoderWrapper::Sequence(DecoderSequence::new(
        decoders,
    ))));
    Ok(tokenizer)
}

/// Reads an optional token id and checks it points into the vocabulary.
fn token_id(md: Metadata<'_>, key: &str, vocab_len: usize) -> Result<Option<u32>, EngineError> {
    let Some(id) = md.opt_usize(key)? else {
        return Ok(None);
    };
    match u32::try_from(id) {
        Ok(id32) if id < vocab_len => Ok(Some(id32)),
        _ => Err(EngineError::InvalidMetadata {
            path: md.path().to_path_buf(),
            key: key.to_owned(),
            expected: "an id inside tokenizer.ggml.tokens",
            found: format!("{id} with a vocabulary of {vocab_len} tokens"),
        }),
    }
}

/// The BPE model proper: vocabulary in id order and merges in rank order.
fn byte_level_bpe(
    md: Metadata<'_>,
    tokens: &[&str],
    merges: &[&str],
    ignore_merges: bool,
) -> Result<BPE, EngineError> {
    let mut vocab = Vocab::with_capacity(tokens.len());
    let mut duplicates = 0usize;
    for (id, token) in tokens.iter().enumerate() {
        let id = u32::try_from(id).map_err(|_| EngineError::InvalidMetadata {
            path: md.path().to_path_buf(),
            key: "tokenizer.ggml.tokens".to_owned(),
            expected: "at most 2^32 tokens",
            found: format!("{} tokens", tokens.len()),
        })?;
        // Some converted vocabularies repeat a string; the first id wins, as in llama.cpp.
        if vocab.contains_key(*token) {
            duplicates += 1;
        } else {
            vocab.insert((*token).to_owned(), id);
        }
    }
    if duplicates > 0 {
        tracing::warn!(
            path = %md.path().display(),
            duplicates,
            "tokenizer.ggml.tokens repeats some strings; keeping the first id of each"
        );
    }
    let merges = merges
        .iter()
        .enumerate()
        .map(|(rank, merge)| {
            merge
                .split_once(' ')
                .map(|(a, b)| (a.to_owned(), b.to_owned()))
                .ok_or_else(|| EngineError::InvalidMetadata {
                    path: md.path().to_path_buf(),
                    key: "tokenizer.ggml.merges".to_owned(),
                    expected: "merges of the form \"left right\"",
                    found: format!("{merge:?} at index {rank}"),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(ignore_merges)
        .build()
        .map_err(|source| EngineError::TokenizerBuild {
            path: md.path().to_path_buf(),
            what: "BPE vocabulary and merges".to_owned(),
            source,
        })
}

/// The pre-tokenizer llama.cpp uses for `tokenizer.ggml.pre`. Byte-level BPE round-trips any
/// text whichever split is used; the split only decides which merges can apply.
fn pre_tokenizer(pre: &str) -> Result<PreTokenizerWrapper, tokenizers::Error> {
    let byte_level =
        |use_regex| PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, use_regex));
    Ok(match pre {
        // StarCoder-style vocabularies split every digit before the GPT-2 pattern.
        "smollm" | "starcoder" | "refact" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Digits(Digits::new(true)),
            byte_level(true),
        ])),
        "llama-bpe" | "llama3" => PreTokenizerWrapper::Sequence(Sequence::new(vec![
            PreTokenizerWrapper::Split(Split::new(
                tokenizers::pre_tokenizers::split::SplitPattern::Regex(LLAMA3_SPLIT.to_owned()),
                SplitDelimiterBehavior::Isolated,
                false,
            )?),
            byte_level(false),
        ])),
        "gpt2" | "default" => byte_level(true),
        other => {
            tracing::warn!(
                pre = other,
                "unknown tokenizer.ggml.pre; using the GPT-2 split (text still round-trips)"
            );
            byte_level(true)
        }
    })
}

/// A post-processor that puts the BOS token in front of every encoded prompt.
fn bos_processor(bos_token: &str, bos_id: u32) -> Result<TemplateProcessing, tokenizers::Error> {
    let processor = TemplateProcessing::builder()
        .try_single(vec![bos_token, "$A"])?
        .try_pair(vec![bos_token, "$A", "$B"])?
        .special_tokens(vec![(bos_token, bos_id)])
        .build()?;
    Ok(processor)
}

#[cfg(test)]
mod tests;

/// A model's tokenizer alone, to count a prompt's tokens as the model would encode them without
/// loading its weights: from a GGUF file's header, or a model folder's `tokenizer.json`.
pub struct TokenCounter {
    tokenizer: Tokenizer,
}

impl std::fmt::Debug for TokenCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenCounter").finish_non_exhaustive()
    }
}

impl TokenCounter {
    /// The tokenizer of the model at `path` (a GGUF file or a model folder).
    pub fn open(path: &std::path::Path) -> Result<Self, EngineError> {
        if path.is_dir() {
            let file = path.join("tokenizer.json");
            let tokenizer =
                Tokenizer::from_file(&file).map_err(|e| EngineError::InvalidMetadata {
                    path: file.clone(),
                    key: "tokenizer.json".to_owned(),
                    expected: "a Hugging Face tokenizer",
                    found: e.to_string(),
                })?;
            return Ok(Self { tokenizer });
        }
        let (content, _) = crate::gguf::read_content(path)?;
        let md = Metadata::new(path, &content.metadata);
        Ok(Self {
            tokenizer: from_metadata(md)?.tokenizer,
        })
    }

    /// Tokens of `text` as a prompt (with BOS when the model adds one).
    pub fn count(&self, text: &str) -> Result<usize, EngineError> {
        self.tokenizer
            .encode_fast(text, true)
            .map(|e| e.get_ids().len())
            .map_err(|source| EngineError::Tokenize {
                what: "counting a prompt's tokens",
                source,
            })
    }
}
