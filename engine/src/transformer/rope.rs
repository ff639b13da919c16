//! Rotary position embeddings: the `cos` and `sin` tables of one rotation base (the global
//! layers', or the sliding layers' own base in Gemma 3), computed once for every position of the
//! context and looked up for the positions of each pass.

use candle_core::{Device, Result, Tensor};

use super::Config;

/// Rotary-embedding tables: `cos` and `sin` of `(positions, head_dim / 2)`.
#[derive(Debug, Clone)]
pub(crate) struct Rope {
    cos: Tensor,
    sin: Tensor,
}

impl Rope {
    pub(super) fn new(
        config: &Config,
        theta: f64,
        linear_factor: f64,
        factors: Option<&[f32]>,
        device: &Device,
    ) -> Result<Self> {
        let half = config.head_dim / 2;
        #[allow(clippy::cast_precision_loss)] // dimensions and positions are small
        let inv_freq: Vec<f32> = (0..half)
            .map(|i| {
                let base = 1.0 / theta.powf(2.0 * i as f64 / config.head_dim as f64);
                let factor = factors
                    .and_then(|f| f.get(i))
                    .map_or(1.0, |&f| f64::from(f));
                (base / factor / linear_factor) as f32
            })
            .collect();
        #[allow(clippy::cast_precision_loss)]
        let positions: Vec<f32> = (0..config.context_length).map(|p| p as f32).collect();
        let inv_freq = Tensor::from_vec(inv_freq, (1, half), device)?;
        let positions = Tensor::from_vec(positions, (config.context_length, 1), device)?;
        let angles = positions.matmul(&inv_freq)?;
        Ok(Self {
            cos: angles.cos()?.to_dtype(config.dtype)?,
            sin: angles.sin()?.to_dtype(config.dtype)?,
        })
    }

    /// The tables for `positions` (one row per batch entry): `(t, half)` when every row uses
    /// the same positions, else `(b, t, half)`.
    pub(super) fn tables(&self, positions: &[Vec<u32>]) -> Result<(Tensor, Tensor)> {
        let first = &positions[0];
        let contiguous = first.windows(2).all(|w| w[1] == w[0] + 1);
        if positions.iter().all(|p| p == first) && contiguous {
            let start = first[0] as usize;
            return Ok((
                self.cos.narrow(0, start, first.len())?,
                self.sin.narrow(0, start, first.len())?,
            ));
        }
        let flat: Vec<u32> = positions.iter().flatten().copied().collect();
        let index = Tensor::from_vec(flat, positions.len() * first.len(), self.cos.device())?;
        let shape = (positions.len(), first.len(), ());
        Ok((
            self.cos.index_select(&index, 0)?.reshape(shape)?,
            self.sin.index_select(&index, 0)?.reshape(shape)?,
        ))
    }
}
