//! Attention and the KV cache: [`Cache`] (each layer's keys and values in tensors grown in
//! place, shared between clones until one of them writes), the CPU attention that reads them
//! straight from its storage ([`attend_cpu`]), and attention through candle's operations where
//! that one does not apply (training, other devices, half precision, or when asked to compare),
//! with the additive mask it needs ([`mask`]).

use std::sync::Arc;

use candle_core::{D, DType, Device, Result, Tensor};

use super::{Block, Form, Pass, Transformer, fused};

/// The keys and values every layer has seen for a batch of sequences.
///
/// Each layer's are kept in tensors with room to spare (`(batch, kv_heads, capacity,
/// head_dim)`), written in place as positions come, so a decode step copies nothing but its own
/// key and value. A clone shares them until either writes: the writer then takes a copy of its
/// own first (scoring continuations from one prompt's cache relies on this).
#[derive(Debug, Clone, Default)]
pub(crate) struct Cache {
    pub(super) layers: Vec<Option<Arc<LayerKv>>>,
    /// Cache slots filled so far (padding included).
    pub(super) len: usize,
    /// Left padding of each batch row: slots before it are never attended to.
    pub(super) pad: Vec<usize>,
}

impl Cache {
    /// An empty cache for a batch whose rows carry `pad` slots of left padding each (the
    /// tests prefill padded rows together; generation stacks rows prefilled alone).
    #[cfg(test)]
    pub(crate) fn with_padding(pad: Vec<usize>) -> Self {
        Self {
            layers: Vec::new(),
            len: 0,
            pad,
        }
    }

    /// Slots filled so far.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// One batch's cache made of single-row caches (each the cache of one prompt prefilled
    /// alone): row `i`'s slots move right by `pad[i]`, so that every row ends at the same slot,
    /// and the padding before them stays zero, never attended to. Decoding the batch from it
    /// gives each row what decoding it alone from its own cache gives. `limit` caps the room
    /// reserved (the context length).
    pub(crate) fn stacked(rows: &[Cache], pad: Vec<usize>, limit: usize) -> Result<Self> {
        let width = rows
            .iter()
            .zip(&pad)
            .map(|(c, p)| c.len + p)
            .max()
            .unwrap_or(0);
        if rows.len() != pad.len() || rows.iter().zip(&pad).any(|(c, p)| c.len + p != width) {
            candle_core::bail!("stacked caches must end at one slot once padded");
        }
        let layers = rows.iter().map(|c| c.layers.len()).max().unwrap_or(0);
        let mut stacked = Vec::with_capacity(layers);
        for layer in 0..layers {
            let kvs: Vec<Option<&Arc<LayerKv>>> = rows
                .iter()
                .map(|c| c.layers.get(layer).and_then(Option::as_ref))
                .collect();
            if kvs.iter().all(Option::is_none) {
                stacked.push(None);
                continue;
            }
            let mut ks = Vec::with_capacity(rows.len());
            let mut vs = Vec::with_capacity(rows.len());
            for ((kv, cache), &p) in kvs.iter().zip(rows).zip(&pad) {
                let Some(kv) = kv else {
                    candle_core::bail!("layer {layer} has no keys in one row of the batch");
                };
                for (from, into) in [(&kv.k, &mut ks), (&kv.v, &mut vs)] {
                    let filled = from.narrow(2, 0, cache.len)?;
                    into.push(if p == 0 {
                        filled
                    } else {
                        let (_, kv_heads, _, head_dim) = from.dims4()?;
                        let zeros =
                            Tensor::zeros((1, kv_heads, p, head_dim), from.dtype(), from.device())?;
                        Tensor::cat(&[&zeros, &filled], 2)?
                    });
                }
            }
            let mut slot = None;
            LayerKv::append(
                &mut slot,
                &Tensor::cat(&ks, 0)?,
                &Tensor::cat(&vs, 0)?,
                0,
                limit,
            )?;
            stacked.push(slot);
        }
        Ok(Self {
            layers: stacked,
            len: width,
            pad,
        })
    }
}

/// One layer's keys and values, `(batch, kv_heads, capacity, head_dim)`; the cache's `len`
/// first slots are filled.
#[derive(Debug)]
pub(super) struct LayerKv {
    pub(super) k: Tensor,
    pub(super) v: Tensor,
}

/// Slots are reserved in steps of this many (and the reservation doubles when it runs out).
const CACHE_STEP: usize = 256;

impl LayerKv {
    /// Writes `k` and `v` (`(batch, kv_heads, steps, head_dim)`) at slot `start` of `slot`,
    /// making room or taking a private copy first as needed.
    pub(super) fn append(
        slot: &mut Option<Arc<LayerKv>>,
        k: &Tensor,
        v: &Tensor,
        start: usize,
        limit: usize,
    ) -> Result<Arc<LayerKv>> {
        let (batch, kv_heads, steps, head_dim) = k.dims4()?;
        let need = start + steps;
        let reserve = |capacity: usize| -> Result<LayerKv> {
            let shape = (batch, kv_heads, capacity, head_dim);
            Ok(LayerKv {
                k: Tensor::zeros(shape, k.dtype(), k.device())?,
                v: Tensor::zeros(shape, v.dtype(), v.device())?,
            })
        };
        let mut layer = match slot.take() {
            None => reserve(need.next_multiple_of(CACHE_STEP).min(limit.max(need)))?,
            Some(shared) => match Arc::try_unwrap(shared) {
                Ok(own) => own,
                Err(shared) => LayerKv {
                    k: shared.k.copy()?,
                    v: shared.v.copy()?,
                },
            },
        };
        let capacity = layer.k.dim(2)?;
        if need > capacity {
            let grown = reserve(
                (capacity * 2)
                    .max(need.next_multiple_of(CACHE_STEP))
                    .min(limit.max(need)),
            )?;
            if start > 0 {
                grown
                    .k
                    .slice_set(&layer.k.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
                grown
                    .v
                    .slice_set(&layer.v.narrow(2, 0, start)?.contiguous()?, 2, 0)?;
            }
            layer = grown;
        }
        layer.k.slice_set(&k.contiguous()?, 2, start)?;
        layer.v.slice_set(&v.contiguous()?, 2, start)?;
        let layer = Arc::new(layer);
        *slot = Some(Arc::clone(&layer));
        Ok(layer)
    }
}

/// Where one pass's attention looks: the slot its first position takes, each row's left
/// padding, the window of a sliding layer, and whether it runs on [`attend_cpu`].
pub(super) struct Attention<'a> {
    pub(super) start: usize,
    pub(super) pad: &'a [usize],
    pub(super) window: Option<usize>,
    pub(super) own_attention: bool,
}

impl Transformer {
    /// Attention with candle's operations (every pass but a CPU decode step), through the
    /// output projection: `q` is `(batch, heads, steps, head_dim)`, `k` and `v`
    /// `(batch, kv_heads, slots, head_dim)`.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn attend(
        &self,
        block: &Block,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: Option<&Tensor>,
        pass: Pass<'_>,
        o_site: u64,
    ) -> Result<Tensor> {
        let config = &self.config;
        let (batch, heads, steps, head_dim) = q.dims4()?;
        let kv_heads = config.kv_heads;
        let form = self.form(pass, q.device());
        let half = k.dtype() != DType::F32;
        if form == Form::Fused && !half && q.dtype() == DType::F32 {
            // Products, scale, mask and softmax as one autograd node.
            #[allow(clippy::cast_possible_truncation)] // a scale such as 1/√head_dim
            let scale = config.attention_scale as f32;
            let attended = fused::attention(q, k, v, scale, mask)?
                .transpose(1, 2)?
                .reshape((batch, steps, heads * head_dim))?;
            return block.o.forward(&attended, pass, o_site);
        }
        // Grouped-query attention without copying keys and values: the query heads that share
        // one key/value head are stacked along the position axis.
        let groups = heads / kv_heads;
        let q = q.reshape((batch, kv_heads, groups * steps, head_dim))?;
        let probs = self.composed_softmax(&q, k, mask, form, (batch, kv_heads, groups, steps))?;
        let attended = probs
            .to_dtype(v.dtype())?
            .matmul(v)?
            .to_dtype(config.dtype)?
            .reshape((batch, heads, steps, head_dim))?
            .transpose(1, 2)?
            .reshape((batch, steps, heads * head_dim))?;
        block.o.forward(&attended, pass, o_site)
    }

    /// Attention's probabilities from candle's operations: `q` of
    /// `(batch, kv_heads, groups · steps, head_dim)`, `k` of `(batch, kv_heads, slots, head_dim)`.
    fn composed_softmax(
        &self,
        q: &Tensor,
        k: &Tensor,
        mask: Option<&Tensor>,
        form: Form,
        (batch, kv_heads, groups, steps): (usize, usize, usize, usize),
    ) -> Result<Tensor> {
        let config = &self.config;
        let slots = k.dim(2)?;
        // In half precision (the KV cache's dtype, `Config::kv_dtype`) the query is scaled
        // before the product, so that scores stay within `f16`'s range; the scores are
        // soft-maxed in `f32` and the probabilities taken back to the values' dtype.
        let half = k.dtype() != DType::F32;
        let scores = if half {
            (q.to_dtype(k.dtype())? * config.attention_scale)?
                .matmul(&k.t()?)?
                .to_dtype(DType::F32)?
        } else {
            (q.to_dtype(DType::F32)?.matmul(&k.t()?)? * config.attention_scale)?
        };
        let scores = match mask {
            Some(mask) => scores
                .reshape((batch, kv_heads, groups, steps, slots))?
                .broadcast_add(mask)?
                .reshape((batch, kv_heads, groups * steps, slots))?,
            None => scores,
        };
        if form == Form::Inference {
            candle_nn::ops::softmax_last_dim(&scores)
        } else {
            candle_nn::ops::softmax(&scores, D::Minus1)
        }
    }
}

/// Attention on the CPU in `f32`, read straight from the cache's storage: no mask tensor, no
/// copies of keys or values, none of candle's per-call overhead, and sums that do not depend on
/// a row's left padding or on how a prompt was split into passes — each query loops over
/// exactly its own visible slots in order, so a row in a padded batch gets bit for bit what it
/// gets alone. `q` is `(batch, heads, steps, head_dim)` for the slots `start..start + steps`;
/// query slot `s` of row `r` sees the slots from `pad[r]` (and, with `window`, from
/// `s + 1 − window`) to `s`; a query inside the padding sees only itself. Returns
/// `(batch, steps, heads * head_dim)`. (Row, head) pairs are split between threads when the
/// work is large enough to pay for them.
pub(super) fn attend_cpu(
    q: &Tensor,
    layer: &LayerKv,
    start: usize,
    pad: &[usize],
    window: Option<usize>,
    scale: f64,
) -> Result<Tensor> {
    let (batch, heads, steps, head_dim) = q.dims4()?;
    let (_, kv_heads, capacity, _) = layer.k.dims4()?;
    let groups = heads / kv_heads;
    let queries = q.flatten_all()?.to_vec1::<f32>()?;
    let (k_storage, k_layout) = layer.k.storage_and_layout();
    let (v_storage, v_layout) = layer.v.storage_and_layout();
    let (candle_core::Storage::Cpu(k_cpu), candle_core::Storage::Cpu(v_cpu)) =
        (&*k_storage, &*v_storage)
    else {
        candle_core::bail!("this attention runs on the CPU");
    };
    let keys = &k_cpu.as_slice::<f32>()?[k_layout.start_offset()..];
    let values = &v_cpu.as_slice::<f32>()?[v_layout.start_offset()..];
    #[allow(clippy::cast_possible_truncation)] // a scale near 1/8
    let scale = scale as f32;
    // One (row, head) pair: its `steps × head_dim` outputs, in query order.
    let pair = |index: usize| -> Vec<f32> {
        let (row, head) = (index / heads, index % heads);
        let base = (row * kv_heads + head / groups) * capacity * head_dim;
        let row_pad = pad.get(row).copied().unwrap_or(0);
        let mut out = vec![0f32; steps * head_dim];
        let mut scores = Vec::with_capacity(start + steps);
        for t in 0..steps {
            let slot = start + t;
            let mut first = row_pad.min(slot);
            if let Some(w) = window {
                first = first.max((slot + 1).saturating_sub(w));
            }
            let query = &queries[((row * heads + head) * steps + t) * head_dim..][..head_dim];
            scores.clear();
            let mut max = f32::NEG_INFINITY;
            for key_slot in first..=slot {
                let key = &keys[base + key_slot * head_dim..][..head_dim];
                let score = crate::q8::dot_lanes(query, key) * scale;
                max = max.max(score);
                scores.push(score);
            }
            let mut total = 0f32;
            for score in &mut scores {
                *score = (*score - max).exp();
                total += *score;
            }
            let output = &mut out[t * head_dim..][..head_dim];
            for (j, &p) in scores.iter().enumerate() {
                let value = &values[base + (first + j) * head_dim..][..head_dim];
                let p = p / total;
                crate::q8::add_scaled(output, p, value);
            }
        }
        out
    };
    let pairs = batch * heads;
    let work = pairs * steps * (start + steps) * head_dim;
    let threads = attention_threads().min(pairs);
    let outputs: Vec<Vec<f32>> = if threads > 1 && work >= ATTENTION_PARALLEL_WORK {
        let per_thread = pairs.div_ceil(threads);
        std::thread::scope(|scope| {
            let pair = &pair;
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let range = (t * per_thread)..((t + 1) * per_thread).min(pairs);
                    scope.spawn(move || range.map(pair).collect::<Vec<_>>())
                })
                .collect();
            handles
                .into_iter()
                .flat_map(|h| h.join().unwrap_or_default())
                .collect()
        })
    } else {
        (0..pairs).map(pair).collect()
    };
    drop((k_storage, v_storage));
    if outputs.len() != pairs {
        candle_core::bail!("an attention thread failed");
    }
    // (row, head) → (row, step, head) order.
    let mut out = vec![0f32; batch * steps * heads * head_dim];
    for (index, values) in outputs.iter().enumerate() {
        let (row, head) = (index / heads, index % heads);
        for t in 0..steps {
            let target = ((row * steps + t) * heads + head) * head_dim;
            out[target..target + head_dim].copy_from_slice(&values[t * head_dim..][..head_dim]);
        }
    }
    Tensor::from_vec(out, (batch, steps, heads * head_dim), q.device())
}

/// Below this many multiply-adds (per side of the attention) one thread does the work.
const ATTENTION_PARALLEL_WORK: usize = 1 << 20;

/// Threads for the attention of a pass: `CANDLE_NUM_THREADS` or candle's own count, read once.
pub(crate) fn attention_threads() -> usize {
    static THREADS: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
    *THREADS.get_or_init(|| {
        std::env::var("CANDLE_NUM_THREADS")
            .ok()
            .and_then(|v| v.parse::<usize>().ok())
            .filter(|&n| n > 0)
            .unwrap_or_else(candle_core::utils::get_num_threads)
    })
}

/// The additive attention mask `(batch, 1, 1, steps, slots)`, in `f32` (scores are soft-maxed in
/// `f32`), for queries at slots
/// `start..start + steps`: `0` where a key is visible, `-inf` where it is in the future, in a
/// row's left padding, or (with `window`) `window` or more positions back. `None` when every key
/// is visible.
pub(super) fn mask(
    pad: &[usize],
    start: usize,
    steps: usize,
    window: Option<usize>,
    device: &Device,
) -> Result<Option<Tensor>> {
    let slots = start + steps;
    let visible = |row: usize, query: usize, key: usize| {
        // A query inside the padding sees only itself (its output is never used, but a row of
        // nothing but -inf would make NaNs).
        (key <= query && key >= pad[row] && window.is_none_or(|w| query - key < w))
            || (query < pad[row] && key == query)
    };
    let needed = (0..pad.len())
        .any(|row| (start..slots).any(|query| (0..slots).any(|key| !visible(row, query, key))));
    if !needed {
        return Ok(None);
    }
    let mut values = Vec::with_capacity(pad.len() * steps * slots);
    for row in 0..pad.len() {
        for query in start..slots {
            for key in 0..slots {
                values.push(if visible(row, query, key) {
                    0.0f32
                } else {
                    f32::NEG_INFINITY
                });
            }
        }
    }
    Tensor::from_vec(values, (pad.len(), 1, 1, steps, slots), device).map(Some)
}
