//! What arithmetic a loaded model actually runs: each weight matrix's storage type and the
//! kernel its products go through. Two runs of the same file can differ here (a `Q5_x` →
//! `Q8_0` requantization at load when asked for, the CPU's instruction set), and so can their
//! answers: a run records this beside its results (`ModelInfo::arithmetic`).

use std::collections::BTreeMap;

use candle_core::quantized::QMatMul;

use crate::transformer::{PROJECTIONS, Transformer, Weight};

/// The kernel a matrix's products go through.
fn kernel(weight: &Weight) -> String {
    match weight {
        Weight::Q8(m) => format!(
            "{} on the engine's 8-bit kernel ({})",
            m.format(),
            crate::q8::isa()
        ),
        Weight::Q4(m) => format!(
            "{} on the engine's {}-bit kernel ({})",
            m.format(),
            if m.five() { 5 } else { 4 },
            crate::q8::isa()
        ),
        Weight::Candle(QMatMul::QTensor(q)) => {
            format!("{:?} on candle's quantized kernels", q.dtype())
        }
        Weight::Candle(QMatMul::Tensor(t)) => format!("{:?} dense", t.dtype()),
        Weight::Candle(QMatMul::TensorF16(_)) => "F16 dense".to_owned(),
    }
}

/// `"<file's quantization>; <n> × <kernel>, …"` over the block projections and the output
/// head, most used first.
pub(crate) fn describe(model: &Transformer, quantization: &str) -> String {
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for block in &model.blocks {
        for name in PROJECTIONS {
            if let Some(linear) = block.projection(name) {
                *counts.entry(kernel(&linear.weight)).or_default() += 1;
            }
        }
    }
    *counts.entry(kernel(&model.head.weight)).or_default() += 1;
    let mut used: Vec<(String, usize)> = counts.into_iter().collect();
    used.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let kernels: Vec<String> = used
        .into_iter()
        .map(|(kernel, n)| format!("{n} × {kernel}"))
        .collect();
    format!("{quantization}; {}", kernels.join(", "))
}
