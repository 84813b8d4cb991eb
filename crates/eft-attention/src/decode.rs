//! Causal decoding a chunk of positions at a time: each mechanism's incremental state.
//!
//! Two forms cover the mechanisms that have one. A cache of keys and values that holds only the
//! positions a later query can still see: all of them for `full` and `flash`, the last `window`
//! for `sliding` and `cascade`, what the plan shows for `local`, `strided`, `fixed` and
//! `longformer`, the memory and the current segment for `xl`. And the kernel sums
//! `Σ φ(k)ᵀv`, `Σ φ(k)` of `linear` and `performer`, whose size does not depend on the position.
//! The other mechanisms have no incremental form here ([`Attention::decode_cache`] says why);
//! the model decodes them by recomputing the causal pass.

use std::sync::Arc;

use burn::tensor::{Bool, Int, Tensor, TensorData, s};

use crate::kernel::EMPTY_ROW_GUARD;
use crate::{Attention, AttentionInput, Memory, SparsePlan, XlAttention, attend};

/// Which cached key positions a query at position `t` may see (besides `j ≤ t` and padding).
#[derive(Debug, Clone)]
enum Visibility {
    /// Every earlier position (`full`, `flash`).
    All,
    /// `t − window ≤ j` (`sliding`, `cascade`).
    Window(usize),
    /// The current segment and the `mem_len` positions before it (`xl`; segment 0: one segment).
    Segments { segment: usize, mem_len: usize },
    /// What a causal plan for `len` positions allows; `last_seen[j]` is the last query position
    /// that sees key `j`.
    Planned {
        plan: Arc<SparsePlan>,
        last_seen: Vec<usize>,
    },
}

impl Visibility {
    /// Whether head `h`'s query at `t` sees the key at `j ≤ t`.
    fn sees(&self, h: usize, t: usize, j: usize) -> bool {
        match self {
            Self::All => true,
            Self::Window(w) => j + w >= t,
            Self::Segments { segment, mem_len } => j + mem_len >= segment_start(t, *segment),
            Self::Planned { plan, .. } => plan.allows(h, t, j),
        }
    }

    /// Whether some query at position `next` or later may still see the key at `j`.
    fn keeps(&self, next: usize, j: usize) -> bool {
        match self {
            Self::All => true,
            Self::Window(w) => j + w >= next,
            Self::Segments { segment, mem_len } => j + mem_len >= segment_start(next, *segment),
            Self::Planned { last_seen, .. } => last_seen.get(j).is_some_and(|&l| l >= next),
        }
    }

    /// Whether different heads see different keys.
    fn per_head(&self) -> bool {
        matches!(self, Self::Planned { .. })
    }
}

/// The first position of the segment holding `t` (segment 0: the sequence is one segment).
fn segment_start(t: usize, segment: usize) -> usize {
    if segment == 0 { 0 } else { t - t % segment }
}

/// Keys and values of the positions a later query can still see, in slots: a key no later
/// query can see frees its slot for the next one, so a window's cache stops growing, and keys
/// are written in place (softmax attention does not depend on the keys' order).
#[derive(Debug, Clone)]
pub struct KvCache {
    /// `[B, H, S, D]` each over `S` slots; `None` before the first chunk.
    kv: Option<(Tensor<4>, Tensor<4>)>,
    /// The position each slot holds, `None` where it is free.
    slots: Vec<Option<usize>>,
    /// Whether each batch row's key in each slot is padding, `[B][S]`.
    padding: Vec<Vec<bool>>,
    visibility: Visibility,
}

impl KvCache {
    fn new(visibility: Visibility) -> Self {
        Self {
            kv: None,
            slots: Vec::new(),
            padding: Vec::new(),
            visibility,
        }
    }

    /// Positions held.
    pub fn len(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Whether nothing is cached.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Slots allocated (held or free).
    pub fn slots(&self) -> usize {
        self.slots.len()
    }

    /// Writes a chunk's keys and values at positions `start..start + n` into free slots,
    /// growing the slots (doubling) when too few are free.
    fn append(&mut self, k: Tensor<4>, v: Tensor<4>, padding: &[Vec<bool>], start: usize) {
        let [batch, heads, n, dim] = k.dims();
        let free = self.slots.iter().filter(|s| s.is_none()).count();
        if free < n || self.kv.is_none() {
            // A cache that only grows doubles (amortised O(1) copies per key); a window's stops
            // at the window plus one chunk, so it grows by what it needs.
            let needed = n - free.min(n);
            let grow = match self.visibility {
                Visibility::Window(_) => needed,
                _ => needed.max(self.slots.len()),
            };
            let zeros = || Tensor::<4>::zeros([batch, heads, grow, dim], &k.device());
            self.kv = Some(match self.kv.take() {
                None => (zeros(), zeros()),
                Some((ck, cv)) => (
                    Tensor::cat(vec![ck, zeros()], 2),
                    Tensor::cat(vec![cv, zeros()], 2),
                ),
            });
            self.slots.resize(self.slots.len() + grow, None);
            self.padding.resize(batch, Vec::new());
            for row in &mut self.padding {
                row.resize(self.slots.len(), true);
            }
        }
        let chosen: Vec<usize> = (0..self.slots.len())
            .filter(|&s| self.slots[s].is_none())
            .take(n)
            .collect();
        let (mut ck, mut cv) = self.kv.take().expect("slots were just allocated");
        // Write runs of consecutive slots at once.
        let mut r = 0;
        while r < n {
            let mut end = r + 1;
            while end < n && chosen[end] == chosen[r] + (end - r) {
                end += 1;
            }
            let slots = chosen[r]..chosen[r] + (end - r);
            ck = ck.slice_assign(
                s![.., .., slots.clone(), ..],
                k.clone().slice(s![.., .., r..end, ..]),
            );
            cv = cv.slice_assign(
                s![.., .., slots, ..],
                v.clone().slice(s![.., .., r..end, ..]),
            );
            r = end;
        }
        self.kv = Some((ck, cv));
        for (r, &slot) in chosen.iter().enumerate() {
            self.slots[slot] = Some(start + r);
            for (row, pad) in self.padding.iter_mut().zip(padding) {
                row[slot] = pad[r];
            }
        }
    }

    /// Frees the slots of keys no query at `next` or later can see.
    fn evict(&mut self, next: usize) {
        for slot in &mut self.slots {
            if slot.is_some_and(|j| !self.visibility.keeps(next, j)) {
                *slot = None;
            }
        }
    }

    /// Softmax attention of a chunk's queries at `start..` over the cache and the chunk.
    fn attend(&mut self, input: AttentionInput, start: usize) -> Tensor<4> {
        let [batch, heads, n, dim] = input.q.dims();
        let padding = host_padding(&input);
        self.append(input.k, input.v, &padding, start);
        let (k, v) = self.kv.clone().expect("a chunk was just appended");
        // Slots past the last one held are not read.
        let high = self
            .slots
            .iter()
            .rposition(Option::is_some)
            .map_or(0, |s| s + 1);
        let groups = if self.visibility.per_head() { heads } else { 1 };
        let mut blocked = Vec::with_capacity(batch * groups * n * high);
        for pad in &self.padding {
            for h in 0..groups {
                for i in 0..n {
                    let t = start + i;
                    blocked.extend(self.slots[..high].iter().zip(pad).map(|(slot, &p)| {
                        slot.is_none_or(|j| p || j > t || !self.visibility.sees(h, t, j))
                    }));
                }
            }
        }
        let device = k.device();
        let mask = blocked.iter().any(|&b| b).then(|| {
            Tensor::<4, Bool>::from_data(
                TensorData::new(blocked, [batch, groups, n, high]),
                &device,
            )
            .expand([batch, heads, n, high])
        });
        let (k, v) = if high < self.slots.len() {
            (
                k.slice(s![.., .., 0..high, ..]),
                v.slice(s![.., .., 0..high, ..]),
            )
        } else {
            (k, v)
        };
        // One query: a broadcast product and a sum, several times faster here than a
        // one-row matrix product.
        let scores = if n == 1 {
            (input.q * k).sum_dim(3).reshape([batch, heads, 1, high])
        } else {
            input.q.matmul(k.transpose())
        } / (dim as f64).sqrt();
        let out = attend(scores, v, mask);
        self.evict(start + n);
        out
    }
}

/// Transformer-XL's memory: the keys and values of the positions its queries may still see,
/// in order (its relative positions read the keys' order).
#[derive(Debug, Clone)]
pub struct SegmentMemory {
    /// `[B, H, M, D]` each, and `[B, M]` (`true` at padding); `None` before the first chunk.
    kv: Option<(Tensor<4>, Tensor<4>, Tensor<2, Bool>)>,
    /// The position of each key held, increasing.
    positions: Vec<usize>,
    visibility: Visibility,
}

impl SegmentMemory {
    /// Positions held.
    pub fn len(&self) -> usize {
        self.positions.len()
    }

    /// Whether nothing is held.
    pub fn is_empty(&self) -> bool {
        self.positions.is_empty()
    }

    /// Adds a chunk of keys and values at positions `start..start + n`.
    fn append(&mut self, k: Tensor<4>, v: Tensor<4>, padding: Tensor<2, Bool>, start: usize) {
        let n = k.dims()[2];
        self.positions.extend(start..start + n);
        self.kv = Some(match self.kv.take() {
            None => (k, v, padding),
            Some((ck, cv, cp)) => (
                Tensor::cat(vec![ck, k], 2),
                Tensor::cat(vec![cv, v], 2),
                Tensor::cat(vec![cp, padding], 1),
            ),
        });
    }

    /// Drops the keys no query at `next` or later can see (always the oldest).
    fn evict(&mut self, next: usize) {
        let from = self
            .positions
            .iter()
            .position(|&j| self.visibility.keeps(next, j))
            .unwrap_or(self.positions.len());
        if from == 0 {
            return;
        }
        let m = self.positions.len();
        self.positions.drain(..from);
        self.kv = self.kv.take().filter(|_| from < m).map(|(k, v, p)| {
            (
                k.slice(s![.., .., from..m, ..]),
                v.slice(s![.., .., from..m, ..]),
                p.slice(s![.., from..m]),
            )
        });
    }

    /// Transformer-XL over a chunk: each piece within one segment attends to the cached memory
    /// (exactly what its queries may see from before it) through the mechanism's own form.
    fn attend_xl(&mut self, xl: &XlAttention, input: AttentionInput, start: usize) -> Tensor<4> {
        let n = input.q.dims()[2];
        let padding = chunk_padding(&input);
        let mut outs = Vec::new();
        let mut from = 0;
        while from < n {
            let t = start + from;
            let to = match xl.segment {
                0 => n,
                seg => (segment_start(t, seg) + seg - start).min(n),
            };
            self.evict(t);
            let cut = |x: &Tensor<4>| x.clone().slice(s![.., .., from..to, ..]);
            let pad = padding.clone().slice(s![.., from..to]);
            let mut piece = AttentionInput::new(cut(&input.q), cut(&input.k), cut(&input.v))
                .with_causal(true)
                .with_key_padding(pad.clone());
            if let Some((k, v, p)) = self.kv.clone() {
                piece = piece.with_memory(Memory {
                    k,
                    v,
                    padding: Some(p),
                });
            }
            outs.push(xl.forward(piece));
            self.append(cut(&input.k), cut(&input.v), pad, t);
            from = to;
        }
        self.evict(start + n);
        Tensor::cat(outs, 2)
    }
}

/// The chunk's key padding per batch row, on the host.
fn host_padding(input: &AttentionInput) -> Vec<Vec<bool>> {
    let n = input.q.dims()[2];
    let flat: Vec<bool> = chunk_padding(input).into_data().iter::<bool>().collect();
    flat.chunks(n).map(<[bool]>::to_vec).collect()
}

/// The chunk's key padding, all real when it has none.
fn chunk_padding(input: &AttentionInput) -> Tensor<2, Bool> {
    let [batch, _, n, _] = input.q.dims();
    input
        .key_padding
        .clone()
        .unwrap_or_else(|| Tensor::<2, Int>::zeros([batch, n], &input.q.device()).bool())
}

/// Kernel attention's recurrent state: `Σ φ(k_j)ᵀ v_j` (`[B, H, F, D]`) and `Σ φ(k_j)`
/// (`[B, H, 1, F]`), its size fixed whatever the position.
#[derive(Debug, Clone)]
pub struct KernelState {
    sums: Option<(Tensor<4>, Tensor<4>)>,
    /// The shift every stored key feature was taken with (`exp(ℓ − shift)`); Performer's
    /// softmax kernel raises it as larger keys arrive and rescales the sums, which is exact
    /// because a common factor cancels between numerator and normaliser.
    shift: f64,
}

impl KernelState {
    fn new() -> Self {
        Self {
            sums: None,
            shift: f64::NEG_INFINITY,
        }
    }

    /// Floats held.
    pub fn floats(&self) -> usize {
        self.sums.as_ref().map_or(0, |(kv, z)| {
            kv.shape().num_elements() + z.shape().num_elements()
        })
    }

    /// Takes keys' log-features `ℓ` (`[B, H, n, F]`, padding masked to −∞): returns their
    /// features `exp(ℓ − shift)·scale` under a shift raised to cover them, rescaling the sums.
    fn shifted(&mut self, log_features: Tensor<4>, scale: f64) -> Tensor<4> {
        let top = f64::from(log_features.clone().max().into_scalar::<f32>());
        if top == f64::NEG_INFINITY {
            return log_features.zeros_like(); // padding only
        }
        if top > self.shift {
            if let Some((kv, z)) = self.sums.take() {
                let factor = (self.shift - top).exp();
                self.sums = Some((kv * factor, z * factor));
            }
            self.shift = top;
        }
        (log_features - self.shift).exp() * scale
    }

    /// Attends a chunk given its features: within the chunk by the causal quadratic form,
    /// to earlier positions through the sums; then adds the chunk to the sums.
    ///
    /// # Shapes
    /// - fq, fk: `[B, H, n, F]` (padding keys zero); v: `[B, H, n, D]` → `[B, H, n, D]`
    fn attend(&mut self, fq: Tensor<4>, fk: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let [batch, heads, n, features] = fq.dims();
        let dim = v.dims()[3];
        let device = fq.device();
        let (kv, z) = self.sums.take().unwrap_or_else(|| {
            (
                Tensor::zeros([batch, heads, features, dim], &device),
                Tensor::zeros([batch, heads, 1, features], &device),
            )
        });
        let later = Tensor::<2, Bool>::tril_mask([n, n], 0, &device).reshape([1, 1, n, n]);
        let a = fq
            .clone()
            .matmul(fk.clone().swap_dims(2, 3))
            .mask_fill(later.expand([batch, heads, n, n]), 0.0);
        let num = fq.clone().matmul(kv.clone()) + a.clone().matmul(v.clone());
        let den = (fq * z.clone()).sum_dim(3) + a.sum_dim(3);
        let out = num / den.clamp_min(EMPTY_ROW_GUARD);
        self.sums = Some((kv + fk.clone().swap_dims(2, 3).matmul(v), z + fk.sum_dim(2)));
        out
    }
}

/// One layer's decoding state.
// One value per layer: the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AttentionCache {
    /// Keys and values of the positions still visible, in slots.
    Kv(KvCache),
    /// Transformer-XL's memory and current segment, in order.
    Segments(SegmentMemory),
    /// Kernel attention's sums.
    Kernel(KernelState),
}

impl AttentionCache {
    /// Floats the state holds, free slots included (padding flags not counted).
    pub fn floats(&self) -> usize {
        let both =
            |k: &Tensor<4>, v: &Tensor<4>| k.shape().num_elements() + v.shape().num_elements();
        match self {
            Self::Kv(c) => c.kv.as_ref().map_or(0, |(k, v)| both(k, v)),
            Self::Segments(c) => c.kv.as_ref().map_or(0, |(k, v, _)| both(k, v)),
            Self::Kernel(s) => s.floats(),
        }
    }

    /// Positions a key-value cache holds; `None` for kernel sums.
    pub fn cached_positions(&self) -> Option<usize> {
        match self {
            Self::Kv(c) => Some(c.len()),
            Self::Segments(c) => Some(c.len()),
            Self::Kernel(_) => None,
        }
    }
}

impl Attention {
    /// An empty decoding state for sequences of up to `capacity` positions and `heads` heads, or
    /// why the mechanism has none (it then decodes by recomputing the causal pass).
    pub fn decode_cache(&self, heads: usize, capacity: usize) -> Result<AttentionCache, String> {
        let kv = |v| Ok(AttentionCache::Kv(KvCache::new(v)));
        match self {
            Self::Full(_) | Self::Flash(_) => kv(Visibility::All),
            Self::Sliding(m) | Self::Cascade(m) => kv(Visibility::Window(m.window)),
            Self::Xl(m) => Ok(AttentionCache::Segments(SegmentMemory {
                kv: None,
                positions: Vec::new(),
                visibility: Visibility::Segments {
                    segment: m.segment,
                    mem_len: m.mem_len,
                },
            })),
            Self::Local(_) | Self::Strided(_) | Self::Fixed(_) | Self::Longformer(_) => {
                let patterned = self.patterned().expect("a sparse mechanism has a plan");
                let plan = patterned.cached_plan(capacity, heads, true);
                let last_seen = (0..capacity)
                    .map(|j| {
                        (j..capacity)
                            .rev()
                            .find(|&t| (0..heads).any(|h| plan.allows(h, t, j)))
                            .unwrap_or(0)
                    })
                    .collect();
                kv(Visibility::Planned { plan, last_seen })
            }
            Self::Linear(_) | Self::Performer(_) => Ok(AttentionCache::Kernel(KernelState::new())),
            other => Err(format!(
                "`{}` has no incremental form ({}); it decodes by recomputing the causal pass",
                other.name(),
                match other {
                    Self::Linformer(_) => "it projects along the whole length",
                    Self::Nystrom(_) => "its landmarks average the whole sequence",
                    Self::Synthesizer(_) => "its weights are built for the whole length",
                    Self::Cosformer(_) => "its re-weighting depends on the sequence length",
                    Self::Lsh(_) | Self::Sinkhorn(_) => "it routes over the whole sequence",
                    Self::BlockBert(_) | Self::BigBird(_) => "it has no causal form",
                    _ => "none is written for it yet",
                }
            )),
        }
    }

    /// Attends a causal chunk of queries at positions `start..start + n` to everything before it
    /// (held by `cache`) and to itself, and updates `cache`. Equal to the rows `start..` of the
    /// causal pass over the whole sequence.
    ///
    /// # Shapes
    /// - input: q, k, v `[B, H, n, D]`, key padding `[B, n]` → `[B, H, n, D]`
    ///
    /// # Panics
    /// Panics if `cache` was not made by this mechanism's [`Attention::decode_cache`].
    pub fn decode(
        &self,
        cache: &mut AttentionCache,
        input: AttentionInput,
        start: usize,
    ) -> Tensor<4> {
        match (self, cache) {
            (Self::Xl(xl), AttentionCache::Segments(c)) => c.attend_xl(xl, input, start),
            (m, AttentionCache::Kv(c)) if !matches!(m, Self::Xl(_)) => c.attend(input, start),
            (Self::Linear(_), AttentionCache::Kernel(state)) => {
                let real = chunk_padding(&input).bool_not().float();
                let [batch, _, n, _] = input.q.dims();
                let fq = eft_kernels::elu_plus_one(input.q);
                let fk = eft_kernels::elu_plus_one(input.k) * real.reshape([batch, 1, n, 1]);
                state.attend(fq, fk, input.v)
            }
            (Self::Performer(p), AttentionCache::Kernel(state)) => {
                let padding = chunk_padding(&input);
                let [batch, heads, n, _] = input.q.dims();
                let fq = p.features_of(input.q, true);
                let fk = match p.key_log_features(input.k.clone()) {
                    Some(l) => {
                        let features = l.dims()[3];
                        let pad = padding.reshape([batch, 1, n, 1]);
                        let l =
                            l.mask_fill(pad.expand([batch, heads, n, features]), f64::NEG_INFINITY);
                        state.shifted(l, p.feature_scale())
                    }
                    None => {
                        let real = padding.bool_not().float().reshape([batch, 1, n, 1]);
                        p.features_of(input.k, false) * real
                    }
                };
                state.attend(fq, fk, input.v)
            }
            (m, _) => panic!(
                "a decoding state of another mechanism was given to `{}`",
                m.name()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, to_f64};
    use crate::{AttentionConfig, AttentionLayout, random_qkv};
    use burn::tensor::Device;

    const DIMS: [usize; 4] = [2, 4, 13, 4];
    /// Chunks fed in turn: a prompt, single tokens, and chunks after the cache holds keys.
    const CHUNKS: [usize; 6] = [5, 1, 3, 1, 1, 2];

    fn mechanism(name: &str, params: &[(&str, &str)], device: &Device) -> Attention {
        let params: Vec<(String, String)> = params
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let layout = AttentionLayout {
            layer: 1,
            max_len: DIMS[2],
            heads: DIMS[1],
            head_dim: DIMS[3],
        };
        AttentionConfig::from_name_and_params(name, &params)
            .unwrap()
            .init(layout, device)
    }

    /// Row 1 is padded at both ends: its first queries see nothing, its last keys are hidden.
    fn padding(device: &Device) -> Tensor<2, Bool> {
        let n = DIMS[2];
        let pad: Vec<bool> = (0..2 * n)
            .map(|x| x / n == 1 && (x % n < 2 || x % n >= n - 2))
            .collect();
        Tensor::from_data(TensorData::new(pad, [2, n]), device)
    }

    /// The causal pass over the whole sequence, and the chunked decoding of it with the size of
    /// the state after each chunk.
    fn both(attention: &Attention, seed: u64) -> (Vec<f64>, Vec<f64>, Vec<(usize, usize)>) {
        let device = Device::flex();
        let (q, k, v, _) = random_qkv(DIMS, seed, &device);
        // Keys grow along the sequence, so later keys raise Performer's running shift.
        let ramp: Vec<f32> = (0..DIMS[2]).map(|t| 0.5 + t as f32 / 4.0).collect();
        let k = k * Tensor::<1>::from_data(TensorData::new(ramp, [DIMS[2]]), &device)
            .reshape([1, 1, DIMS[2], 1]);
        let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
            .with_causal(true)
            .with_key_padding(padding(&device));
        let whole = match attention {
            Attention::Xl(xl) => xl.forward_segmented(input),
            other => other.forward(input),
        };
        let mut cache = attention.decode_cache(DIMS[1], DIMS[2]).unwrap();
        let (mut outs, mut sizes, mut start) = (Vec::new(), Vec::new(), 0);
        for n in CHUNKS {
            let cut = |x: &Tensor<4>| x.clone().slice(s![.., .., start..start + n, ..]);
            let chunk = AttentionInput::new(cut(&q), cut(&k), cut(&v))
                .with_causal(true)
                .with_key_padding(padding(&device).slice(s![.., start..start + n]));
            outs.push(attention.decode(&mut cache, chunk, start));
            start += n;
            sizes.push((cache.cached_positions().unwrap_or(0), cache.floats()));
        }
        (to_f64(whole), to_f64(Tensor::cat(outs, 2)), sizes)
    }

    /// Every incremental form equals the causal pass at every position, with padding at both
    /// ends of one sequence in a batch of two, prompts and chunks after single tokens.
    #[test]
    fn chunked_decoding_equals_the_causal_pass() {
        let device = Device::flex();
        let cases: [(&str, &[(&str, &str)]); 13] = [
            ("full", &[]),
            ("flash", &[]),
            ("sliding", &[("window", "3")]),
            ("cascade", &[("window", "2")]),
            ("local", &[("block", "4")]),
            ("strided", &[("stride", "3")]),
            ("fixed", &[("block", "4"), ("summary", "1")]),
            ("longformer", &[("window", "2"), ("global", "[0, 6]")]),
            ("xl", &[("segment", "4"), ("mem_len", "3")]),
            ("xl", &[("segment", "3"), ("mem_len", "5")]),
            ("xl", &[]),
            ("linear", &[]),
            ("performer", &[("features", "16")]),
        ];
        for (seed, (name, params)) in cases.into_iter().enumerate() {
            let attention = mechanism(name, params, &device);
            let (whole, decoded, _) = both(&attention, seed as u64);
            assert_close(&format!("{name} {params:?}"), &decoded, &whole, 1e-5, 1e-6);
        }
        let relu = mechanism(
            "performer",
            &[("features", "16"), ("kernel", "relu")],
            &device,
        );
        let (whole, decoded, _) = both(&relu, 20);
        assert_close("performer relu", &decoded, &whole, 1e-5, 1e-6);
    }

    /// A window's cache never holds more than the window; a block's, more than the block; a
    /// segment's, more than memory and segment; kernel sums keep one size at every position.
    #[test]
    fn states_hold_only_what_later_queries_can_see() {
        let device = Device::flex();
        let bound = |name, params: &[(&str, &str)], most: usize| {
            let (_, _, sizes) = both(&mechanism(name, params, &device), 3);
            assert!(sizes.iter().all(|&(m, _)| m <= most), "{name}: {sizes:?}");
            assert!(sizes.iter().any(|&(m, _)| m == most), "{name}: {sizes:?}");
        };
        bound("sliding", &[("window", "3")], 3);
        // Its slots stop at the window plus the longest chunk.
        let (_, _, sizes) = both(&mechanism("sliding", &[("window", "3")], &device), 3);
        let [b, h, _, d] = DIMS;
        assert!(
            sizes.iter().all(|s| s.1 <= 2 * b * h * d * (3 + 5)),
            "{sizes:?}"
        );
        bound("local", &[("block", "4")], 3);
        bound("xl", &[("segment", "4"), ("mem_len", "3")], 6);
        bound("full", &[], DIMS[2]);
        for name in ["linear", "performer"] {
            let (_, _, sizes) = both(&mechanism(name, &[], &device), 4);
            assert!(
                sizes.iter().all(|&s| s == sizes[0] && s.1 > 0),
                "{name}: {sizes:?}"
            );
        }
    }

    #[test]
    fn mechanisms_without_an_incremental_form_say_why() {
        let device = Device::flex();
        for name in ["cosformer", "nystrom", "linformer", "synthesizer"] {
            let err = mechanism(name, &[], &device)
                .decode_cache(DIMS[1], DIMS[2])
                .unwrap_err();
            assert!(err.contains(name) && err.contains("recomputing"), "{err}");
        }
    }
}
