//! Decodes many tokens after a short prompt, for profiling the one-token step, then prefills a
//! prompt of about 256 tokens (three times) for the many-token products:
//! `cargo run --release -p kokushi-engine --example decode-probe -- MODEL.gguf [TOKENS]`
//! (`perf record -g` around it shows where a step's time goes). `KOKUSHI_PROBE_REQUANTIZE=1`
//! loads with `LoadOptions::requantize_q8_0` set (the `Q5_x` matrices as `Q8_0`), for A/B runs.

use std::path::PathBuf;

use kokushi_engine::{GenerationParams, LoadOptions, Model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let path = PathBuf::from(args.next().ok_or("usage: decode-probe MODEL [TOKENS]")?);
    let tokens: usize = args.next().map_or(Ok(256), |t| t.parse())?;
    let options = LoadOptions {
        requantize_q8_0: std::env::var("KOKUSHI_PROBE_REQUANTIZE").is_ok_and(|v| v == "1"),
        ..LoadOptions::default()
    };
    let mut model = Model::load(&path, &options)?;
    println!("{}", model.info().arithmetic);
    let params = GenerationParams {
        max_new_tokens: tokens,
        stop: Vec::new(),
    };
    for _ in 0..2 {
        let run = model.generate("The history of medicine in Japan began", &params)?;
        #[allow(clippy::cast_precision_loss)]
        let rate = run.generated_tokens as f64 / (run.decode.as_secs_f64().max(1e-9));
        println!(
            "{} tokens in {} ms: {rate:.1} tokens/s",
            run.generated_tokens,
            kokushi_engine::millis(run.decode)
        );
    }
    let long = "The history of medicine in Japan began with herbal remedies and acupuncture, \
        and over the centuries absorbed ideas from China, the Netherlands and Germany. "
        .repeat(8);
    let one = GenerationParams {
        max_new_tokens: 1,
        stop: Vec::new(),
    };
    for _ in 0..3 {
        let run = model.generate(&long, &one)?;
        #[allow(clippy::cast_precision_loss)]
        let rate = run.prompt_tokens as f64 / (run.prefill.as_secs_f64().max(1e-9));
        println!(
            "prefill {} tokens in {:.1} ms: {rate:.1} tokens/s",
            run.prompt_tokens,
            run.prefill.as_secs_f64() * 1e3
        );
    }
    Ok(())
}
