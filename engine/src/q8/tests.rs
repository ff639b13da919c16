use candle_core::quantized::{GgmlDType, QTensor};
use candle_core::{Device, Tensor};

use super::q4::q4_portable_tile;
use super::*;

/// Deterministic values in [-1, 1).
pub(crate) fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            #[allow(clippy::cast_precision_loss)]
            let unit = (state >> 40) as f32 / (1u64 << 24) as f32;
            2.0 * unit - 1.0
        })
        .collect()
}

/// The value of an f16 by its definition.
fn half_reference(bits: u16) -> f32 {
    let exponent = i32::from((bits >> 10) & 0x1f);
    let mantissa = f32::from(bits & 0x3ff);
    if exponent == 0 {
        mantissa * 2f32.powi(-24)
    } else {
        (1.0 + mantissa / 1024.0) * 2f32.powi(exponent - 15)
    }
}

#[test]
fn half_precision_scales_convert_exactly() {
    assert_eq!(f16_to_f32(0x3C00), 1.0);
    assert_eq!(f16_to_f32(0xC000), -2.0);
    assert_eq!(f16_to_f32(0x3800), 0.5);
    assert_eq!(f16_to_f32(0x0000), 0.0);
    assert_eq!(f16_to_f32(0x0001), 2f32.powi(-24));
    assert_eq!(f16_to_f32(0x7BFF), 65504.0);
    assert!(f16_to_f32(0x7C00).is_infinite());
    for bits in (0u16..0x7C00).step_by(97) {
        assert_eq!(f16_to_f32(bits), half_reference(bits), "{bits:#x}");
        assert_eq!(
            f16_to_f32(bits | 0x8000),
            -half_reference(bits),
            "{bits:#x}"
        );
    }
}

#[test]
fn repacked_gguf_blocks_dequantize_as_candle_does() {
    // Arrange
    let (rows, cols) = (5, 96);
    let dense = Tensor::from_vec(values(rows * cols, 1), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&dense, GgmlDType::Q8_0).unwrap();

    // Act
    let ours = Q8Matrix::from_q8_0_bytes(rows, cols, &q.data().unwrap()).unwrap();

    // Assert
    let candle = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
    assert_eq!(ours.dequantize(), candle.to_vec1::<f32>().unwrap());
    assert!(Q8Matrix::from_q8_0_bytes(rows, cols + 1, &q.data().unwrap()).is_none());
}

#[test]
fn the_product_matches_the_portable_loop_and_the_dense_product_for_every_tile_edge() {
    for (m, rows, cols) in [
        (1, 7, 64),
        (5, 64, 96),
        (9, 10, 32),
        (4, 3, 256),
        (13, 31, 128),
    ] {
        // Arrange
        let w = values(rows * cols, 2);
        let x = values(m * cols, 3);
        let matrix = Q8Matrix::quantize(rows, cols, &w).unwrap();

        // Act
        let mut out = vec![0f32; m * rows];
        matrix.matmul(&x, m, &mut out);

        // Assert: the SIMD path (if this CPU takes it) gives the portable sums up to rounding,
        // and both are the dense product up to 8-bit quantization of weights and inputs.
        let acts = quantize_rows(&x, m, cols);
        for t in 0..m {
            for r in 0..rows {
                let portable = portable_tile(&matrix, &acts, t, 1, r, 1)[0][0];
                let got = out[t * rows + r];
                assert!(
                    (got - portable).abs() <= 1e-4 * (1.0 + portable.abs()),
                    "{m}×{rows}×{cols} [{t},{r}]: {got} vs {portable}"
                );
                let dense: f32 = (0..cols).map(|k| x[t * cols + k] * w[r * cols + k]).sum();
                #[allow(clippy::cast_precision_loss)]
                let bound = 0.02 * (cols as f32).sqrt();
                assert!((got - dense).abs() < bound, "{got} vs {dense}");
            }
        }
    }
}

#[test]
fn a_large_product_split_over_threads_equals_the_one_thread_result() {
    // Arrange: big enough to be split between the pool's threads.
    let (m, rows, cols) = (37, 301, 256);
    let matrix = Q8Matrix::quantize(rows, cols, &values(rows * cols, 4)).unwrap();
    let x = values(m * cols, 5);
    assert!(m * rows * cols >= PARALLEL_THRESHOLD);

    // Act
    let mut parallel = vec![0f32; m * rows];
    matrix.matmul(&x, m, &mut parallel);
    let acts = quantize_rows(&x, m, cols);
    let mut serial = vec![0f32; m * rows];
    for t in 0..m {
        for r in 0..rows {
            serial[t * rows + r] = dot_tile(chosen(), &matrix, &acts, t, 1, r, 1)[0][0];
        }
    }

    // Assert
    for (a, b) in parallel.iter().zip(&serial) {
        assert!((a - b).abs() <= 1e-4 * (1.0 + b.abs()), "{a} vs {b}");
    }
}

fn q4(kind: GgmlDType, rows: usize, cols: usize, seed: u64) -> (QTensor, Q4Matrix) {
    let dense = Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&dense, kind).unwrap();
    let ours_kind = match kind {
        GgmlDType::Q4_0 => Q4Kind::Q4_0,
        GgmlDType::Q4_1 => Q4Kind::Q4_1,
        GgmlDType::Q5_0 => Q4Kind::Q5_0,
        GgmlDType::Q5_1 => Q4Kind::Q5_1,
        other => panic!("{other:?} is not a 4- or 5-bit legacy type"),
    };
    let ours = Q4Matrix::from_gguf_bytes(ours_kind, rows, cols, &q.data().unwrap()).unwrap();
    (q, ours)
}

/// The legacy block types [`Q4Matrix`] reads.
const LEGACY: [GgmlDType; 4] = [
    GgmlDType::Q4_0,
    GgmlDType::Q4_1,
    GgmlDType::Q5_0,
    GgmlDType::Q5_1,
];

#[test]
fn four_and_five_bit_gguf_blocks_dequantize_as_candle_does() {
    for kind in LEGACY {
        // Arrange, Act
        let (q, ours) = q4(kind, 5, 96, 6);

        // Assert
        let candle = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
        let candle = candle.to_vec1::<f32>().unwrap();
        for (a, b) in ours.dequantize().iter().zip(&candle) {
            assert!(
                (a - b).abs() <= 1e-6 * (1.0 + b.abs()),
                "{kind:?}: {a} vs {b}"
            );
        }
        assert!(
            Q4Matrix::from_gguf_bytes(Q4Kind::Q4_1, 5, 97, &q.data().unwrap()).is_none(),
            "a shape that does not match the bytes is refused"
        );
        assert_eq!(ours.format(), format!("{kind:?}"));
    }
}

#[test]
fn q4_k_super_blocks_repack_exactly_as_candle_dequantizes_them() {
    // Arrange: values spread enough that every sub-block has its own scale and min.
    let (rows, cols) = (3, 512);
    let mut data = values(rows * cols, 9);
    for (i, v) in data.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let ramp = (i % 97) as f32 / 20.0;
        *v = *v * (1.0 + ramp) + ramp;
    }
    let dense = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&dense, GgmlDType::Q4K).unwrap();

    // Act
    let ours = Q4Matrix::from_q4_k_bytes(rows, cols, &q.data().unwrap()).unwrap();

    // Assert
    let candle = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
    let candle = candle.to_vec1::<f32>().unwrap();
    for (i, (a, b)) in ours.dequantize().iter().zip(&candle).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "value {i}: {a} vs {b}"
        );
    }
    assert!(Q4Matrix::from_q4_k_bytes(rows, cols - 32, &q.data().unwrap()).is_none());
}

#[test]
fn q6_k_super_blocks_repack_exactly_and_multiply_like_their_dequantized_values() {
    // Arrange
    let (rows, cols, m) = (7, 512, 5);
    let mut data = values(rows * cols, 10);
    for (i, v) in data.iter_mut().enumerate() {
        #[allow(clippy::cast_precision_loss)]
        let ramp = (i % 89) as f32 / 30.0;
        *v *= 1.0 + ramp;
    }
    let dense = Tensor::from_vec(data, (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&dense, GgmlDType::Q6K).unwrap();
    let x = values(m * cols, 11);

    // Act
    let ours = Q8Matrix::from_q6_k_bytes(rows, cols, &q.data().unwrap()).unwrap();
    let mut out = vec![0f32; m * rows];
    ours.matmul(&x, m, &mut out);

    // Assert: the same values as candle's dequantization; the product (SIMD or portable) is
    // the portable sums and the dequantized product up to the inputs' 8-bit rounding.
    let candle = q.dequantize(&Device::Cpu).unwrap().flatten_all().unwrap();
    let w = candle.to_vec1::<f32>().unwrap();
    for (i, (a, b)) in ours.dequantize().iter().zip(&w).enumerate() {
        assert!(
            (a - b).abs() <= 1e-5 * (1.0 + b.abs()),
            "value {i}: {a} vs {b}"
        );
    }
    let acts = quantize_rows(&x, m, cols);
    for t in 0..m {
        for r in 0..rows {
            let portable = portable_tile(&ours, &acts, t, 1, r, 1)[0][0];
            let got = out[t * rows + r];
            assert!(
                (got - portable).abs() <= 1e-4 * (1.0 + portable.abs()),
                "{got} vs {portable}"
            );
            let exact: f32 = (0..cols).map(|k| x[t * cols + k] * w[r * cols + k]).sum();
            assert!(
                (got - exact).abs() < 0.05 * (1.0 + exact.abs()),
                "{got} vs {exact}"
            );
        }
    }
    assert!(Q8Matrix::from_q6_k_bytes(rows, cols - 32, &q.data().unwrap()).is_none());
}

#[test]
fn the_four_and_five_bit_products_match_the_portable_loop_and_the_dequantized_product() {
    for kind in LEGACY {
        for (m, rows, cols) in [
            (1, 7, 64),
            (5, 64, 96),
            (9, 10, 32),
            (13, 31, 128),
            (37, 301, 256),
        ] {
            // Arrange
            let (_, matrix) = q4(kind, rows, cols, 7);
            let w = matrix.dequantize();
            let x = values(m * cols, 8);

            // Act (the last shape is large enough to be split between threads)
            let mut out = vec![0f32; m * rows];
            matrix.matmul(&x, m, &mut out);

            // Assert: the SIMD path (if this CPU takes it) gives the portable sums up to
            // rounding, and both are the product with the dequantized weights up to the 8-bit
            // rounding of the inputs.
            let acts = quantize_rows(&x, m, cols);
            for t in 0..m {
                for r in 0..rows {
                    let portable = q4_portable_tile(&matrix, &acts, t, 1, r, 1)[0][0];
                    let got = out[t * rows + r];
                    assert!(
                        (got - portable).abs() <= 1e-4 * (1.0 + portable.abs()),
                        "{kind:?} {m}×{rows}×{cols} [{t},{r}]: {got} vs {portable}"
                    );
                    let dense: f32 = (0..cols).map(|k| x[t * cols + k] * w[r * cols + k]).sum();
                    #[allow(clippy::cast_precision_loss)]
                    let bound = 0.02 * (cols as f32).sqrt();
                    assert!((got - dense).abs() < bound, "{kind:?}: {got} vs {dense}");
                }
            }
        }
    }
}

#[test]
#[ignore = "a timing probe, run by hand with --release"]
fn probe_head_timing() {
    let (rows, cols) = (262_144, 640);
    let matrix = Q8Matrix::quantize(rows, cols, &values(rows * cols, 6)).unwrap();
    let x = values(cols, 7);
    let mut out = vec![0f32; rows];
    matrix.matmul(&x, 1, &mut out);
    let started = std::time::Instant::now();
    for _ in 0..20 {
        matrix.matmul(&x, 1, &mut out);
    }
    eprintln!(
        "head m=1: {:.2} ms",
        started.elapsed().as_secs_f64() * 1000.0 / 20.0
    );
    let x = values(cols * 64, 8);
    let mut out = vec![0f32; rows * 64];
    let started = std::time::Instant::now();
    matrix.matmul(&x, 64, &mut out);
    eprintln!(
        "head m=64: {:.2} ms",
        started.elapsed().as_secs_f64() * 1000.0
    );
}

/// A `Q6_K` matrix repacked to 8 bits with a scale per 16 values (`cols` a multiple of 256).
fn q6_k(rows: usize, cols: usize, seed: u64) -> Q8Matrix {
    let dense = Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
    let q = QTensor::quantize(&dense, GgmlDType::Q6K).unwrap();
    Q8Matrix::from_q6_k_bytes(rows, cols, &q.data().unwrap()).unwrap()
}

/// One matrix's product with fixed inputs, on a chosen path.
type Product = Box<dyn Fn(Isa, &mut [f32])>;

#[test]
fn every_kernel_path_gives_the_same_bits() {
    // Arrange: every path this CPU has (the portable one always; AVX2 and AVX-512 VNNI where
    // present), shapes with every tile edge, odd and even block counts, and products large
    // enough to be split between threads; 8-bit, 4-bit and 16-value-scale matrices.
    let paths: Vec<Isa> = Isa::ALL.into_iter().filter(|isa| isa.supported()).collect();
    eprintln!(
        "kernel paths compared on this CPU: {}",
        paths
            .iter()
            .map(|isa| isa.name())
            .collect::<Vec<_>>()
            .join(", ")
    );
    assert_eq!(paths[0], Isa::Portable);
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
        assert!(
            paths.contains(&Isa::Avx2),
            "an AVX2 CPU must take the AVX2 path"
        );
    }
    for (m, rows, cols) in [
        (1, 7, 64),
        (5, 13, 96),
        (9, 10, 32),
        (4, 3, 256),
        (13, 31, 160),
        (37, 301, 576),
        (2, 5, 512),
    ] {
        let x = values(m * cols, 21);
        let mut matrices: Vec<(&str, Product)> = Vec::new();
        let q8 = Q8Matrix::quantize(rows, cols, &values(rows * cols, 22)).unwrap();
        let x8 = x.clone();
        matrices.push((
            "Q8_0",
            Box::new(move |isa, out| q8.matmul_on(isa, &x8, m, out)),
        ));
        for kind in LEGACY {
            let (_, q4m) = q4(kind, rows, cols, 23);
            let x4 = x.clone();
            matrices.push((
                q4m.format(),
                Box::new(move |isa, out| q4m.matmul_on(isa, &x4, m, out)),
            ));
        }
        if cols.is_multiple_of(256) {
            let q6 = q6_k(rows, cols, 24);
            let x6 = x.clone();
            matrices.push((
                "Q6_K",
                Box::new(move |isa, out| q6.matmul_on(isa, &x6, m, out)),
            ));
        }
        for (name, product) in &matrices {
            // Act
            let mut reference = vec![0f32; m * rows];
            product(Isa::Portable, &mut reference);
            for &isa in &paths[1..] {
                let mut out = vec![f32::NAN; m * rows];
                product(isa, &mut out);

                // Assert
                for (k, (a, b)) in out.iter().zip(&reference).enumerate() {
                    assert_eq!(
                        a.to_bits(),
                        b.to_bits(),
                        "{name} {m}×{rows}×{cols} output {k}: {} gives {a}, portable {b}",
                        isa.name()
                    );
                }
            }
        }
    }
}

#[test]
fn kokushi_kernel_picks_a_slower_path_never_a_missing_one() {
    assert_eq!(pick(None, Isa::Avx512), Isa::Avx512);
    assert_eq!(pick(Some("avx2"), Isa::Avx512), Isa::Avx2);
    assert_eq!(pick(Some(" Portable "), Isa::Avx2), Isa::Portable);
    assert_eq!(pick(Some("avx512"), Isa::Avx2), Isa::Avx2);
    assert_eq!(pick(Some("neon"), Isa::Avx2), Isa::Avx2);
    assert_eq!(pick(Some(""), Isa::Portable), Isa::Portable);
}

#[test]
fn activations_quantize_alike_on_every_path_and_round_halves_away_from_zero() {
    // Arrange: blocks whose scale is exactly 1 (largest magnitude 127), so values land on
    // halves, the cases where rounding rules differ; a block of zeros; a block with -0, an
    // infinity-free spread of magnitudes; random blocks.
    let mut x = vec![0f32; 32 * 6];
    let ties = [
        0.5,
        -0.5,
        1.5,
        -1.5,
        2.5,
        -2.5,
        126.5,
        -126.5,
        0.499_999_97,
        -0.499_999_97,
        3.5,
        64.5,
    ];
    for (i, v) in x[..32].iter_mut().enumerate() {
        *v = ties.get(i).copied().unwrap_or(0.25);
    }
    x[31] = 127.0;
    x[64] = -0.0;
    x[65] = 1e-30;
    x[66] = -3.0;
    x[96..].copy_from_slice(&values(96, 11));
    // The reference: the definition, with the standard library's rounding.
    let reference = |v: &[f32]| -> (Vec<f32>, Vec<i8>, Vec<f32>) {
        let (mut scales, mut quants, mut sums) = (Vec::new(), Vec::new(), Vec::new());
        for chunk in v.chunks_exact(BLOCK) {
            let amax = chunk.iter().fold(0f32, |a, v| a.max(v.abs()));
            let scale = amax / 127.0;
            let inverse = if scale > 0.0 { 1.0 / scale } else { 0.0 };
            #[allow(clippy::cast_possible_truncation)]
            let q: Vec<i8> = chunk.iter().map(|v| (v * inverse).round() as i8).collect();
            #[allow(clippy::cast_precision_loss)]
            sums.push(scale * q.iter().map(|&q| i32::from(q)).sum::<i32>() as f32);
            scales.push(scale);
            quants.extend(q);
        }
        (scales, quants, sums)
    };
    let (scales, quants, sums) = reference(&x);
    assert_eq!(
        &quants[..12],
        &[1, -1, 2, -2, 3, -3, 127, -127, 0, 0, 4, 65]
    );

    for isa in Isa::ALL.into_iter().filter(|isa| isa.supported()) {
        // Act
        let acts = quantize_rows_on(isa, &x, 2, 96);

        // Assert: the same bits as the definition.
        assert_eq!(acts.quants, quants, "{}", isa.name());
        let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
        assert_eq!(bits(&acts.scales), bits(&scales), "{}", isa.name());
        assert_eq!(bits(&acts.sums), bits(&sums), "{}", isa.name());
    }
}

#[test]
fn products_of_one_input_taken_together_give_each_products_own_bits() {
    // Arrange: a query/key/value-like trio of mixed layouts and sizes (tile edges, a part
    // smaller than a tile), and inputs of one token and of many, the latter split between
    // threads; every path this CPU has.
    let cols = 256;
    let q8 = Q8Matrix::quantize(301, cols, &values(301 * cols, 31)).unwrap();
    let (_, q4_0) = q4(GgmlDType::Q4_0, 64, cols, 32);
    let (_, q4_1) = q4(GgmlDType::Q4_1, 2, cols, 33);
    let (_, q5_0) = q4(GgmlDType::Q5_0, 7, cols, 36);
    let q6 = q6_k(10, cols, 34);
    let parts = [
        OwnMatrix::Q8(&q8),
        OwnMatrix::Q4(&q4_0),
        OwnMatrix::Q4(&q4_1),
        OwnMatrix::Q4(&q5_0),
        OwnMatrix::Q8(&q6),
    ];
    for isa in Isa::ALL.into_iter().filter(|isa| isa.supported()) {
        for m in [1, 5, 37] {
            let x = values(m * cols, 35 + m as u64);
            // Act
            let mut outs: Vec<Vec<f32>> = parts.iter().map(|w| vec![0f32; m * w.rows()]).collect();
            let mut products: Vec<(OwnMatrix<'_>, &mut [f32])> = parts
                .iter()
                .zip(outs.iter_mut())
                .map(|(&w, out)| (w, out.as_mut_slice()))
                .collect();
            matmul_many_on(isa, &x, m, &mut products);

            // Assert
            for (w, joint) in parts.iter().zip(&outs) {
                let mut alone = vec![0f32; m * w.rows()];
                match w {
                    OwnMatrix::Q8(w) => w.matmul_on(isa, &x, m, &mut alone),
                    OwnMatrix::Q4(w) => w.matmul_on(isa, &x, m, &mut alone),
                }
                let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(joint), bits(&alone), "{} m={m}", isa.name());
                assert!(alone.iter().any(|&v| v != 0.0));
            }
        }
    }
}
