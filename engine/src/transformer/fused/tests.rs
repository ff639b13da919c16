//! Each fused layer against its composition from candle's operations: the values, and the
//! gradients of `Σ out ⊙ u` for a random `u` with respect to every input.

use candle_core::{D, Device, Result, Tensor, Var};

use super::{gated, rms_norm, rope};
use crate::fixture::SplitMix64;
use crate::q8::Gate;
use crate::transformer::attention::mask;

fn random(len: usize, seed: u64, scale: f32) -> Vec<f32> {
    let mut rng = SplitMix64(seed);
    (0..len).map(|_| rng.uniform(scale)).collect()
}

/// The output of `f` on variables holding `inputs` (values and shapes), and the gradients of
/// `Σ out ⊙ u` with respect to each input (`u` random, fixed by the output's size).
fn value_and_gradients(
    f: &dyn Fn(&[&Tensor]) -> Result<Tensor>,
    inputs: &[(Vec<f32>, Vec<usize>)],
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let vars: Vec<Var> = inputs
        .iter()
        .map(|(values, shape)| {
            Var::from_tensor(&Tensor::from_slice(values, shape.as_slice(), &Device::Cpu).unwrap())
                .unwrap()
        })
        .collect();
    let tensors: Vec<&Tensor> = vars.iter().map(Var::as_tensor).collect();
    let out = f(&tensors).unwrap();
    let upstream =
        Tensor::from_vec(random(out.elem_count(), 99, 1.0), out.shape(), &Device::Cpu).unwrap();
    let total = (&out * &upstream).unwrap().sum_all().unwrap();
    let grads = total.backward().unwrap();
    let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    (
        flat(&out),
        tensors
            .iter()
            .map(|t| flat(grads.get(t).expect("a gradient for every input")))
            .collect(),
    )
}

/// Asserts that `got` and `want` agree within `tolerance` relative to the largest of `want`.
fn assert_close(got: &[f32], want: &[f32], tolerance: f32, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: lengths");
    let scale = want.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tolerance * scale,
            "{what}[{i}]: {g} against {w} (scale {scale})"
        );
    }
}

/// Compares the fused and composed forms on the same inputs, values and every gradient.
fn compare(
    fused: &dyn Fn(&[&Tensor]) -> Result<Tensor>,
    composed: &dyn Fn(&[&Tensor]) -> Result<Tensor>,
    inputs: &[(Vec<f32>, Vec<usize>)],
    tolerance: f32,
    what: &str,
) {
    let (value, grads) = value_and_gradients(fused, inputs);
    let (want_value, want_grads) = value_and_gradients(composed, inputs);
    assert_close(&value, &want_value, tolerance, &format!("{what}: value"));
    for (i, (g, w)) in grads.iter().zip(&want_grads).enumerate() {
        assert!(
            w.iter().any(|v| v.abs() > 1e-4),
            "{what}: input {i}'s gradient is all zero"
        );
        assert_close(g, w, tolerance, &format!("{what}: gradient {i}"));
    }
}

#[test]
fn the_rms_norm_equals_candles_composition_in_value_and_both_gradients() {
    for (shape, eps) in [
        (vec![2, 5, 64], 1e-6f32),
        (vec![1, 3, 5, 16], 1e-5),
        (vec![3, 7], 0.5),
    ] {
        let width = *shape.last().unwrap();
        let len: usize = shape.iter().product();
        // Rows of very different sizes, so the scale matters.
        let mut x = random(len, 1, 2.0);
        for (r, row) in x.chunks_mut(width).enumerate() {
            let factor = [1.0, 30.0, 0.01][r % 3];
            row.iter_mut().for_each(|v| *v *= factor);
        }
        let inputs = [(x, shape.clone()), (random(width, 2, 1.5), vec![width])];
        compare(
            &|t| rms_norm(t[0], t[1], eps),
            &|t| candle_nn::ops::rms_norm_slow(t[0], t[1], eps),
            &inputs,
            2e-5,
            &format!("rms norm over {shape:?}"),
        );
        // The forward values are those of candle's inference kernel, bit for bit.
        let x = Tensor::from_slice(&inputs[0].0, shape.as_slice(), &Device::Cpu).unwrap();
        let w = Tensor::from_slice(&inputs[1].0, width, &Device::Cpu).unwrap();
        let fused = rms_norm(&x, &w, eps).unwrap().flatten_all().unwrap();
        let kernel = candle_nn::ops::rms_norm(&x, &w, eps)
            .unwrap()
            .flatten_all()
            .unwrap();
        assert_eq!(
            fused.to_vec1::<f32>().unwrap(),
            kernel.to_vec1::<f32>().unwrap()
        );
    }
}

#[test]
fn the_rotary_embedding_equals_candles_in_both_layouts_and_with_tables_per_row() {
    let (batch, heads, steps, head_dim) = (2, 3, 5, 8);
    let half = head_dim / 2;
    let angles = random(steps * half, 3, 3.0);
    let cos: Vec<f32> = angles.iter().map(|a| a.cos()).collect();
    let sin: Vec<f32> = angles.iter().map(|a| a.sin()).collect();
    let table = |v: &[f32]| Tensor::from_slice(v, (steps, half), &Device::Cpu).unwrap();
    let (cos_t, sin_t) = (table(&cos), table(&sin));
    let x = (
        random(batch * heads * steps * head_dim, 4, 1.0),
        vec![batch, heads, steps, head_dim],
    );
    for interleaved in [false, true] {
        let composed = |t: &[&Tensor]| {
            if interleaved {
                candle_nn::rotary_emb::rope_i_slow(t[0], &cos_t, &sin_t)
            } else {
                candle_nn::rotary_emb::rope_slow(t[0], &cos_t, &sin_t)
            }
        };
        compare(
            &|t| rope(t[0], &cos_t, &sin_t, interleaved),
            &composed,
            std::slice::from_ref(&x),
            1e-6,
            &format!("rope (interleaved {interleaved})"),
        );
        // Tables per row: row b rotated by angles shifted by b positions; the same as each row
        // alone with its own two-dimensional tables.
        let shifted: Vec<f32> = (0..batch)
            .flat_map(|b| angles.iter().map(move |a| a + b as f32))
            .collect();
        let per_row = |f: fn(f32) -> f32| {
            let values: Vec<f32> = shifted.iter().map(|&a| f(a)).collect();
            Tensor::from_vec(values, (batch, steps, half), &Device::Cpu).unwrap()
        };
        let (cos3, sin3) = (per_row(f32::cos), per_row(f32::sin));
        let whole = |t: &[&Tensor]| rope(t[0], &cos3, &sin3, interleaved);
        let by_rows = |t: &[&Tensor]| {
            let rows: Vec<Tensor> = (0..batch)
                .map(|b| {
                    let (c, s) = (cos3.get(b)?, sin3.get(b)?);
                    rope(&t[0].narrow(0, b, 1)?, &c, &s, interleaved)
                })
                .collect::<Result<_>>()?;
            Tensor::cat(&rows, 0)
        };
        compare(
            &whole,
            &by_rows,
            std::slice::from_ref(&x),
            0.0,
            "rope with tables per row",
        );
    }
}

/// Attention from candle's operations, as the composed path computes it: query heads sharing a
/// key head stacked along the positions.
fn composed_attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    scale: f32,
    mask: Option<&Tensor>,
) -> Result<Tensor> {
    let (batch, heads, steps, head_dim) = q.dims4()?;
    let (_, kv_heads, slots, _) = k.dims4()?;
    let groups = heads / kv_heads;
    let q = q.reshape((batch, kv_heads, groups * steps, head_dim))?;
    let scores = (q.matmul(&k.t()?)? * f64::from(scale))?;
    let scores = match mask {
        Some(mask) => scores
            .reshape((batch, kv_heads, groups, steps, slots))?
            .broadcast_add(mask)?
            .reshape((batch, kv_heads, groups * steps, slots))?,
        None => scores,
    };
    candle_nn::ops::softmax(&scores, D::Minus1)?
        .matmul(v)?
        .reshape((batch, heads, steps, head_dim))
}

#[test]
fn attention_equals_candles_composition_in_value_and_every_gradient() {
    // Three query heads a key head; more query rows and key slots than one block (64), neither
    // a whole number of blocks; keys before the queries (a pass after a cached prefix).
    let (batch, heads, kv_heads, steps, start, head_dim) = (2, 6, 2, 70, 9, 8);
    let slots = start + steps;
    let scale = 0.35f32;
    let q = random(batch * heads * steps * head_dim, 5, 3.0);
    // Keys large enough that an unshifted exponential would overflow in some rows.
    let mut k = random(batch * kv_heads * slots * head_dim, 6, 3.0);
    k[..head_dim * 3].iter_mut().for_each(|v| *v *= 40.0);
    let v = random(batch * kv_heads * slots * head_dim, 7, 1.0);
    let inputs = [
        (q, vec![batch, heads, steps, head_dim]),
        (k, vec![batch, kv_heads, slots, head_dim]),
        (v, vec![batch, kv_heads, slots, head_dim]),
    ];
    let pads = [vec![0, 0], vec![0, 20]];
    for (pad, window) in [(&pads[0], None), (&pads[1], Some(30)), (&pads[1], None)] {
        let mask = mask(pad, start, steps, window, &Device::Cpu).unwrap();
        let what = format!("attention (pad {pad:?}, window {window:?})");
        compare(
            &|t| super::attention(t[0], t[1], t[2], scale, mask.as_ref()),
            &|t| composed_attention(t[0], t[1], t[2], scale, mask.as_ref()),
            &inputs,
            2e-5,
            &what,
        );
    }
    // Inputs that do not fit together are refused.
    let x = |dims: &[usize]| Tensor::zeros(dims, candle_core::DType::F32, &Device::Cpu).unwrap();
    let error = super::attention(
        &x(&[1, 4, 5, 8]),
        &x(&[1, 3, 5, 8]),
        &x(&[1, 3, 5, 8]),
        1.0,
        None,
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("attention over queries"), "{error}");
    let wrong = x(&[1, 1, 1, 4, 4]);
    let error = super::attention(
        &x(&[1, 2, 4, 8]),
        &x(&[1, 1, 5, 8]),
        &x(&[1, 1, 5, 8]),
        1.0,
        Some(&wrong),
    )
    .unwrap_err()
    .to_string();
    assert!(error.contains("a mask of shape"), "{error}");
}

#[test]
fn the_gate_equals_candles_composition_in_value_and_both_gradients() {
    // More values than one thread's share, so the split is exercised.
    let shape = vec![3, 4101];
    let len = 3 * 4101;
    let inputs = [
        (random(len, 6, 6.0), shape.clone()),
        (random(len, 7, 2.0), shape),
    ];
    compare(
        &|t| gated(Gate::Silu, t[0], t[1]),
        &|t| candle_nn::ops::silu(t[0])? * t[1],
        &inputs,
        2e-6,
        "silu gate",
    );
    // candle's GELU gradient rounds its constants to six digits.
    compare(
        &|t| gated(Gate::GeluTanh, t[0], t[1]),
        &|t| t[0].gelu()? * t[1],
        &inputs,
        2e-5,
        "gelu gate",
    );
}

#[test]
fn the_projection_equals_candles_composition_with_and_without_a_pair() {
    let (batch, steps, width, out, rank) = (2, 21, 24, 30, 4);
    let scale = 2.5;
    let w = Tensor::from_vec(random(out * width, 8, 0.5), (out, width), &Device::Cpu).unwrap();
    let bias = Tensor::from_vec(random(out, 9, 1.0), out, &Device::Cpu).unwrap();
    let x = (
        random(batch * steps * width, 10, 1.0),
        vec![batch, steps, width],
    );
    let a = (random(rank * width, 11, 0.5), vec![rank, width]);
    let b = (random(out * rank, 12, 0.5), vec![out, rank]);
    let t = |x: &Tensor, w: &Tensor| crate::transformer::weight::matmul_t(x, w);
    for bias in [None, Some(&bias)] {
        let with_bias = |y: Tensor| match bias {
            Some(bias) => y.broadcast_add(bias),
            None => Ok(y),
        };
        compare(
            &|v| super::projection(v[0], &w, bias, None),
            &|v| with_bias(t(v[0], &w)?),
            std::slice::from_ref(&x),
            1e-5,
            &format!("projection (bias {})", bias.is_some()),
        );
        compare(
            &|v| super::projection(v[0], &w, bias, Some((v[1], v[2], scale))),
            &|v| with_bias((t(v[0], &w)? + (t(&t(v[0], v[1])?, v[2])? * scale)?)?),
            &[x.clone(), a.clone(), b.clone()],
            1e-5,
            &format!("adapted projection (bias {})", bias.is_some()),
        );
    }
    // A pair that does not fit is refused.
    let wrong = Tensor::zeros((rank, width + 1), candle_core::DType::F32, &Device::Cpu).unwrap();
    let xs = Tensor::zeros((3, width), candle_core::DType::F32, &Device::Cpu).unwrap();
    let bs = Tensor::zeros((out, rank), candle_core::DType::F32, &Device::Cpu).unwrap();
    let error = super::projection(&xs, &w, None, Some((&wrong, &bs, 1.0)))
        .unwrap_err()
        .to_string();
    assert!(error.contains("an adapter pair of shapes"), "{error}");
}
