//! The engine's one error type, [`EngineError`].
//!
//! Error policy: every variant names what is at fault — the model file, the metadata key, the
//! tensor, or the lengths that did not fit — so that a message shown in the portal is enough to
//! act on. Underlying errors (I/O, candle, tokenizers) travel as `#[source]` and are never
//! flattened into strings; callers that want the whole story walk the `source()` chain.

use std::path::PathBuf;

/// Anything that can go wrong while loading a model or generating text.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The model file could not be opened or read.
    #[error("cannot read model file {path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    /// The file is not a GGUF file candle can parse (bad magic, truncated header, ...).
    #[error("{path} is not a readable GGUF file")]
    Gguf {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A metadata key the engine needs is absent.
    #[error("{path}: GGUF metadata key `{key}` is missing")]
    MissingMetadata { path: PathBuf, key: String },

    /// A metadata key is present but holds a value of the wrong type or range.
    #[error("{path}: GGUF metadata key `{key}` should be {expected}, found {found}")]
    InvalidMetadata {
        path: PathBuf,
        key: String,
        expected: &'static str,
        found: String,
    },

    /// The prompt for a question cannot be built.
    #[error("{message}")]
    Prompt { message: String },

    /// The model has no chat template to apply.
    #[error("the model has no chat template (tokenizer.chat_template): choose a prompt format")]
    NoChatTemplate,

    /// The model's chat template failed to render.
    #[error("the model's chat template cannot be applied: {message}")]
    ChatTemplate { message: String },

    /// A Hugging Face model folder is missing a file or holds one that cannot be used.
    #[error("{path}: {problem}")]
    Folder { path: PathBuf, problem: String },

    /// `general.architecture` names a model family this engine cannot run.
    #[error(
        "{path}: model architecture `{found}` (general.architecture) is not supported; \
         supported architectures: {supported}"
    )]
    UnsupportedArchitecture {
        path: PathBuf,
        found: String,
        supported: String,
    },

    /// `tokenizer.ggml.model` names a vocabulary type this engine cannot build yet.
    #[error(
        "{path}: tokenizer model `{found}` (tokenizer.ggml.model) is not supported; \
         supported tokenizer models: {supported}"
    )]
    UnsupportedTokenizer {
        path: PathBuf,
        found: String,
        supported: String,
    },

    /// The vocabulary in the metadata could not be turned into a tokenizer.
    #[error("{path}: cannot build the tokenizer from GGUF metadata ({what})")]
    TokenizerBuild {
        path: PathBuf,
        what: String,
        #[source]
        source: tokenizers::Error,
    },

    /// A tensor could not be read or requantized at load time.
    #[error("{path}: cannot prepare tensor `{tensor}`")]
    Tensor {
        path: PathBuf,
        tensor: String,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// candle refused to assemble the model from the (possibly requantized) tensors.
    #[error("{path}: cannot build the model weights")]
    Weights {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// The model would not fit in what the device has free.
    #[error(
        "{} needs about {} on {device} (weights, KV cache and working memory, estimated from \
         its header), and {device} has {} free of {}",
        path.display(),
        gib(*needed),
        gib(*free),
        gib(*total)
    )]
    DoesNotFit {
        path: PathBuf,
        device: String,
        needed: u64,
        free: u64,
        total: u64,
    },

    /// A device name that is not one the engine knows.
    #[error("no such device {given:?}: name one of {forms}")]
    NoSuchDevice { given: String, forms: &'static str },

    /// A CUDA device asked of a build without CUDA support.
    #[error(
        "device {device} needs CUDA support, which this build does not have: build with \
         `cargo build --release --features cuda` on a machine with the CUDA toolkit \
         (docs/gpu.md), or use --device cpu"
    )]
    CudaNotBuilt { device: String },

    /// The requested compute device is not available on this machine (no driver, no such
    /// device).
    #[error(
        "device {device} is not available (is the NVIDIA driver installed and the GPU visible?)"
    )]
    Device {
        device: String,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// The prompt could not be tokenized, or generated ids could not be decoded.
    #[error("tokenizer failed while {what}")]
    Tokenize {
        what: &'static str,
        #[source]
        source: tokenizers::Error,
    },

    /// The prompt encodes to zero tokens, so there is nothing to condition on.
    #[error("the prompt is empty: it encodes to zero tokens")]
    EmptyPrompt,

    /// A LoRA adapter that cannot be put onto this model.
    #[error("adapter {path}: {problem}")]
    Adapter { path: PathBuf, problem: String },

    /// An adapter name that is not loaded.
    #[error("no adapter named {name:?} is loaded (loaded: {loaded})")]
    UnknownAdapter { name: String, loaded: String },

    /// A continuation to score encodes to zero tokens.
    #[error("the continuation {text:?} encodes to zero tokens: there is nothing to score")]
    EmptyContinuation { text: String },

    /// The prompt alone does not fit into the model's context window.
    #[error(
        "the prompt is {prompt_tokens} tokens long but the model's context holds only \
         {context_length} tokens"
    )]
    PromptTooLong {
        prompt_tokens: usize,
        context_length: usize,
    },

    /// A forward pass of the model failed.
    #[error("the model's forward pass failed at position {position}")]
    Forward {
        position: usize,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// LoRA training was asked for something it cannot do.
    #[error("training: {problem}")]
    Training { problem: String },

    /// A training step's arithmetic failed.
    #[error("training: {what} failed")]
    TrainingStep {
        what: String,
        #[source]
        source: Box<candle_core::Error>,
    },

    /// A training checkpoint or adapter could not be written or read.
    #[error("training: {path}: {problem}")]
    TrainingFile { path: PathBuf, problem: String },

    /// The test fixture could not be built or written.
    #[error("cannot write the fixture model {path}")]
    Fixture {
        path: PathBuf,
        #[source]
        source: Box<candle_core::Error>,
    },
}

/// Bytes as GiB with one decimal (`23.4 GiB`), or MiB below one GiB.
pub fn gib(bytes: u64) -> String {
    const GIB: f64 = (1u64 << 30) as f64;
    #[allow(clippy::cast_precision_loss)]
    let value = bytes as f64;
    if value >= GIB {
        format!("{:.1} GiB", value / GIB)
    } else {
        format!("{:.0} MiB", value / (1u64 << 20) as f64)
    }
}
