//! The generic path (`Kernels::Generic`: candle's device-generic operations only, the code a
//! CUDA device runs) against the engine's own CPU kernels, on every fixture architecture and
//! weight storage: logits, log-likelihoods and one LoRA training step. This is how CI checks
//! the GPU path without a GPU. `KOKUSHI_TEST_DEVICE=cuda:0` (what `cargo xtask gpu-check` sets
//! in a `cuda` build) runs the generic side on that device instead, so the same tests check a
//! real GPU against the CPU.
//!
//! Both sides load the file's quantization as stored (no requantization to `Q8_0`, which only
//! the own path does), so what differs is only the kernels: the own `Q8_0`/4-bit products and
//! the mask-free CPU attention against `QMatMul` and masked attention from candle ops.

use crate::fixture::{self, FixtureSpec, FixtureWeights};
use crate::train::{AdamWSettings, LoraSpec, Sequence};
use crate::{
    Device, DeviceChoice, Kernels, LoadOptions, Model, PROJECTIONS, Precision,
    SUPPORTED_ARCHITECTURES,
};

/// Logits may differ by this much, relative to the largest logit's magnitude: the two paths
/// sum in other orders and round activations to 8 bits at other places. (Measured: at most
/// 0.011, Gemma 3 on `Q4_0`; below 1e-6 on `f32` weights. A wrong mask, rotation or cache
/// moves them by the whole scale.)
const LOGIT_TOLERANCE: f32 = 0.02;
/// Logits with the KV cache and attention in half precision (what a GPU runs by default:
/// `Precision::Auto` is `f16` there) against the own kernels in `f32`, relative to the largest
/// logit. Looser than [`LOGIT_TOLERANCE`]: keys, values and attention probabilities carry 11
/// significant bits in `f16` and 8 in `bf16`. (Measured on the CPU: at most 0.0153 for `f16`
/// and 0.0148 for `bf16`, both Qwen2 on `Q8_0`, where the generic path in `f32` differs by
/// 0.0106 at most. A wrong mask, rotation or cache moves them by the whole scale.)
const HALF_LOGIT_TOLERANCE: [(Precision, f32); 2] =
    [(Precision::F16, 0.03), (Precision::Bf16, 0.04)];
/// Log-likelihoods of a continuation (a sum over its tokens), relative to their magnitude.
const LOGLIK_TOLERANCE: f64 = 0.01;
/// The training loss before and after the step, and each trained number after it, relative
/// to the largest.
const TRAIN_TOLERANCE: f64 = 0.02;

/// Where the generic side runs: `KOKUSHI_TEST_DEVICE` (`cuda:0`), else the CPU.
fn test_device() -> Device {
    match std::env::var("KOKUSHI_TEST_DEVICE") {
        Ok(name) => name
            .parse::<DeviceChoice>()
            .and_then(DeviceChoice::resolve)
            .unwrap_or_else(|e| panic!("KOKUSHI_TEST_DEVICE={name}: {e}")),
        Err(_) => Device::Cpu,
    }
}

/// The fixture of `arch` stored as `weights`: on the CPU with the engine's own kernels, or
/// (`Kernels::Generic`) on the test device with candle's; attention in `f32`.
fn load(arch: &str, weights: FixtureWeights, kernels: Kernels) -> (tempfile::TempDir, Model) {
    load_in(arch, weights, kernels, Precision::F32)
}

/// [`load`] with the KV cache and attention in `precision`.
fn load_in(
    arch: &str,
    weights: FixtureWeights,
    kernels: Kernels,
    precision: Precision,
) -> (tempfile::TempDir, Model) {
    let mut spec = FixtureSpec::tiny(arch, 11);
    spec.weights = weights;
    let opts = LoadOptions {
        requantize_q8_0: false,
        kernels,
        device: match kernels {
            Kernels::Own => Device::Cpu,
            Kernels::Generic => test_device(),
        },
        workload: None,
        precision,
    };
    fixture::load(&spec, &opts)
}

/// The logits of [`prompt`] prefilled, then of two more tokens decoded one at a time on the
/// cache: the prefill and the decoding step of both attention paths.
fn logits_of(model: &mut Model) -> Vec<f32> {
    let ids = prompt();
    let mut out = model.prefill(&ids).expect("prefill");
    for (step, next) in [7u32, 50].into_iter().enumerate() {
        out.extend(model.forward(&[next], ids.len() + step).expect("step"));
    }
    out
}

/// The largest difference between `a` and `b`, relative to `a`'s largest magnitude.
fn relative_difference(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    let scale = a.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-3);
    a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
}

fn prompt() -> Vec<u32> {
    (0..24u32).map(|i| 40 + (i * 11) % 57).collect()
}

#[test]
fn generic_logits_match_the_own_kernels_on_every_architecture_and_storage() {
    let mut worst = (0f32, String::new());
    for arch in SUPPORTED_ARCHITECTURES {
        for weights in FixtureWeights::ALL {
            let (_a, mut own) = load(arch, weights, Kernels::Own);
            let (_b, mut generic) = load(arch, weights, Kernels::Generic);
            assert!(
                !generic.info().arithmetic.contains("engine's"),
                "{arch} {weights:?}: the generic path took an own kernel: {}",
                generic.info().arithmetic
            );
            let a = logits_of(&mut own);
            let b = logits_of(&mut generic);
            let diff = relative_difference(&a, &b);
            assert!(
                diff <= LOGIT_TOLERANCE,
                "{arch} {weights:?}: logits differ by {diff} of their scale"
            );
            if diff > worst.0 {
                worst = (diff, format!("{arch} {weights:?}"));
            }
        }
    }
    eprintln!(
        "largest relative logit difference: {} ({})",
        worst.0, worst.1
    );
}

#[test]
fn half_precision_attention_matches_the_own_kernels_within_its_tolerance() {
    for (precision, tolerance) in HALF_LOGIT_TOLERANCE {
        let mut worst = (0f32, String::new());
        for arch in SUPPORTED_ARCHITECTURES {
            for weights in [
                FixtureWeights::F32,
                FixtureWeights::Q8_0,
                FixtureWeights::Q4_1,
            ] {
                let (_a, mut own) = load(arch, weights, Kernels::Own);
                let (_b, mut half) = load_in(arch, weights, Kernels::Generic, precision);
                assert!(
                    half.info()
                        .arithmetic
                        .contains(&format!("KV cache and attention in {precision}")),
                    "{}",
                    half.info().arithmetic
                );
                let diff = relative_difference(&logits_of(&mut own), &logits_of(&mut half));
                assert!(
                    diff <= tolerance,
                    "{arch} {weights:?} {precision}: logits differ by {diff} of their scale"
                );
                if diff > worst.0 {
                    worst = (diff, format!("{arch} {weights:?}"));
                }
            }
        }
        eprintln!(
            "{precision}: largest relative logit difference {} ({})",
            worst.0, worst.1
        );
    }
}

#[test]
fn generic_log_likelihoods_match_the_own_kernels_on_every_architecture() {
    for arch in SUPPORTED_ARCHITECTURES {
        for weights in [
            FixtureWeights::Q8_0,
            FixtureWeights::Q4_1,
            FixtureWeights::Q6K,
        ] {
            let (_a, mut own) = load(arch, weights, Kernels::Own);
            let (_b, mut generic) = load(arch, weights, Kernels::Generic);
            let continuations = ["the answer", " a", "in the"].map(str::to_owned);
            let a = own
                .score_continuations("the question is", &continuations)
                .expect("own scores");
            let b = generic
                .score_continuations("the question is", &continuations)
                .expect("generic scores");
            for (x, y) in a.continuations.iter().zip(&b.continuations) {
                let diff = (x.sum - y.sum).abs() / x.sum.abs().max(1.0);
                assert!(
                    diff <= LOGLIK_TOLERANCE,
                    "{arch} {weights:?}: log-likelihood {} against {} ({diff} of it)",
                    x.sum,
                    y.sum
                );
            }
        }
    }
}

#[test]
fn a_generic_training_step_matches_the_own_kernels_on_every_architecture() {
    for arch in SUPPORTED_ARCHITECTURES {
        for weights in [
            FixtureWeights::Q8_0,
            FixtureWeights::Q4_1,
            FixtureWeights::F32,
        ] {
            let step = |kernels| {
                let (_dir, mut model) = load(arch, weights, kernels);
                let spec = LoraSpec {
                    rank: 2,
                    alpha: 4.0,
                    dropout: 0.0,
                    targets: PROJECTIONS.iter().map(|p| (*p).to_owned()).collect(),
                };
                let mut trainer = model
                    .start_lora("t", &spec, AdamWSettings::default(), 3)
                    .expect("start");
                let batch = [
                    Sequence {
                        ids: prompt()[..14].to_vec(),
                        response_start: 10,
                    },
                    Sequence {
                        ids: prompt()[4..].to_vec(),
                        response_start: 15,
                    },
                ];
                let stats = trainer.step(&model, &batch, 1e-2, 0).expect("step");
                let after = trainer.step(&model, &batch, 1e-2, 0).expect("second step");
                let values: Vec<f32> = trainer
                    .values()
                    .expect("values")
                    .into_iter()
                    .flat_map(|(_, v)| v)
                    .collect();
                (stats.loss, after.loss, values)
            };
            let (own_loss, own_after, own_values) = step(Kernels::Own);
            let (gen_loss, gen_after, gen_values) = step(Kernels::Generic);
            for (what, x, y) in [
                ("loss", own_loss, gen_loss),
                ("loss after", own_after, gen_after),
            ] {
                let diff = (x - y).abs() / x.abs().max(1e-6);
                assert!(
                    diff <= TRAIN_TOLERANCE,
                    "{arch} {weights:?}: {what} {x} against {y}"
                );
            }
            let scale = own_values
                .iter()
                .fold(0f32, |m, v| m.max(v.abs()))
                .max(1e-6);
            let diff = own_values
                .iter()
                .zip(&gen_values)
                .fold(0f32, |m, (x, y)| m.max((x - y).abs()))
                / scale;
            assert!(
                f64::from(diff) <= TRAIN_TOLERANCE,
                "{arch} {weights:?}: trained values differ by {diff} of their scale"
            );
        }
    }
}
