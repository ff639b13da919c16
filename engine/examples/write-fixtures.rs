//! Writes the tiny fixture models of every supported architecture into a folder, in both forms
//! (`<arch>.gguf` and the Hugging Face folder `<arch>-hf/`), with a PEFT LoRA adapter for each
//! (`<arch>-adapter/`, rank 4 on every projection).
//!
//! `cargo run -p kokushi-engine --example write-fixtures -- DIR [SEED]` (or `cargo xtask
//! fixtures DIR`). The reference logits under `engine/tests/reference/` were computed from these
//! folders by `engine/tests/reference/logits.py`.

use std::path::PathBuf;
use std::process::ExitCode;

use kokushi_engine::fixture::{self, FixtureSpec};

fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: write-fixtures DIR [SEED]");
        return ExitCode::from(2);
    };
    let seed = match args.next().map(|s| s.parse::<u64>()) {
        None => 11,
        Some(Ok(seed)) => seed,
        Some(Err(e)) => {
            eprintln!("error: SEED: {e}");
            return ExitCode::from(2);
        }
    };
    if let Err(e) = std::fs::create_dir_all(&dir) {
        eprintln!("error: {}: {e}", dir.display());
        return ExitCode::FAILURE;
    }
    for arch in kokushi_engine::SUPPORTED_ARCHITECTURES {
        let spec = FixtureSpec::tiny(arch, seed);
        let adapter = fixture::AdapterSpec::all_projections(seed);
        let written = fixture::write_gguf(&dir.join(format!("{arch}.gguf")), &spec)
            .and_then(|()| fixture::write_hf_folder(&dir.join(format!("{arch}-hf")), &spec))
            .and_then(|()| {
                fixture::write_peft_adapter(&dir.join(format!("{arch}-adapter")), arch, &adapter)
            });
        if let Err(e) = written {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
        println!("{arch}: {}", dir.join(format!("{arch}-hf")).display());
    }
    ExitCode::SUCCESS
}
