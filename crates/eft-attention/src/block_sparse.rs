//! The block-sparse engine every fixed-pattern mechanism runs on.
//!
//! The sequence is cut into blocks of `b` (padded internally to a whole number of blocks, padding
//! masked). Each query block gathers a fixed-size list of key blocks; every query may also see a
//! short list of *global keys*, and *global queries* see every key. Scores exist only for the
//! gathered pairs: `[B, H, N/b, b, K·b + G]`, so time and memory are O(N·(K·b + G)) instead of
//! O(N²). Inside the gathered blocks an [`ElementRule`] (window, dilation) refines the pattern;
//! causal and padding masks apply everywhere. A query that sees no key outputs zeros.

use burn::tensor::{Bool, Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::{AttentionCost, AttentionInput, AttentionShape, BLOCKED_SCORE, dense_reference};

/// Which keys a query inside a gathered block may see, beyond causal and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementRule {
    /// Every key of the gathered blocks.
    All,
    /// Keys with `|i − j| ≤ window` and `(i − j) mod dilation = 0`.
    Window {
        /// Largest distance seen.
        window: usize,
        /// Only every `dilation`-th key within the window (1 = all).
        dilation: usize,
    },
}

impl ElementRule {
    fn allows(self, i: usize, j: usize) -> bool {
        match self {
            ElementRule::All => true,
            ElementRule::Window { window, dilation } => {
                let dist = i.abs_diff(j);
                dist <= window && dist.is_multiple_of(dilation)
            }
        }
    }
}

/// A sparsity pattern in block form, for one sequence length.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPattern {
    /// Sequence length `N` the pattern was built for.
    pub len: usize,
    /// Block size `b`.
    pub block: usize,
    /// Number of pattern heads: 1 (all heads share it) or `H` (one pattern per head).
    pub heads: usize,
    /// Key blocks per query block, `K`.
    pub per_query: usize,
    /// `[heads, N/b, K]` key-block indices; `None` marks an unused slot.
    pub key_blocks: Vec<Option<usize>>,
    /// Positions every query may see, besides its gathered blocks.
    pub global_keys: Vec<usize>,
    /// Positions whose queries see every key.
    pub global_queries: Vec<usize>,
    /// Refinement inside gathered blocks.
    pub rule: ElementRule,
}

impl BlockPattern {
    /// Number of blocks after padding `N` up to a multiple of `b`.
    pub fn n_blocks(&self) -> usize {
        self.len.div_ceil(self.block)
    }

    /// Whether query `i` may see key `j` for pattern head `h`, by the pattern alone (before causal
    /// and padding); the dense oracle built from this must equal what the engine computes.
    pub fn allows(&self, h: usize, i: usize, j: usize) -> bool {
        if self.global_queries.contains(&i) || self.global_keys.contains(&j) {
            return true;
        }
        let qb = i / self.block;
        let base = (h * self.n_blocks() + qb) * self.per_query;
        self.key_blocks[base..base + self.per_query]
            .iter()
            .any(|&kb| kb == Some(j / self.block))
            && self.rule.allows(i, j)
    }

    /// Query–key pairs scored per head: the engine's work and memory unit.
    pub fn scored_pairs(&self) -> f64 {
        let padded = (self.n_blocks() * self.block) as f64;
        let gathered = (self.per_query * self.block + self.global_keys.len()) as f64;
        padded * gathered + (self.global_queries.len() * self.len) as f64
    }

    /// FLOPs and saved bytes for `shape`, counting only the scored pairs.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let pairs = self.scored_pairs();
        let d = shape.head_dim as f64;
        AttentionCost {
            forward_flops: bh * (4.0 * pairs * d + 6.0 * pairs),
            backward_flops: bh * (8.0 * pairs * d + 5.0 * pairs),
            saved_bytes: bh * pairs * 4.0,
        }
    }
}

/// Runs attention over the pattern's pairs only.
///
/// # Shapes
/// - input: `[B, H, N, D]` with `N = pattern.len`; `pattern.heads` is 1 or `H`
/// - output: `[B, H, N, D]`
///
/// # Panics
/// Panics if the input's length or heads do not fit the pattern; mechanisms build the pattern
/// from the input's own shape.
pub fn block_sparse(input: AttentionInput, pattern: &BlockPattern) -> Tensor<4> {
    let [batch, heads, len, dim] = input.q.dims();
    assert_eq!(len, pattern.len, "pattern built for another length");
    assert!(
        pattern.heads == 1 || pattern.heads == heads,
        "pattern heads"
    );
    let device = input.q.device();
    let (b, nb, kq) = (pattern.block, pattern.n_blocks(), pattern.per_query);
    let padded = nb * b;
    let pad = |t: Tensor<4>| {
        if padded == len {
            return t;
        }
        let zeros = Tensor::<4>::zeros([batch, heads, padded - len, dim], &device);
        Tensor::cat(vec![t, zeros], 2)
    };
    let (q, k, v) = (pad(input.q), pad(input.k), pad(input.v)); // [B, H, Np, D]
    let scale = 1.0 / (dim as f64).sqrt();

    // Key padding over the padded length, as floats (1 = padding) so it can be gathered.
    let key_pad: Tensor<2> = {
        let real = match input.key_padding {
            Some(m) => m.float(),
            None => Tensor::zeros([batch, len], &device),
        };
        let tail = Tensor::<2>::ones([batch, padded - len], &device);
        if padded == len {
            real
        } else {
            Tensor::cat(vec![real, tail], 1)
        }
    };

    // Gathered key blocks: [B, H, nb, K·b, D].
    let kcat = kq * b;
    let slots = |h: usize| -> Tensor<1, Int> {
        let ids: Vec<i64> = pattern.key_blocks[h * nb * kq..(h + 1) * nb * kq]
            .iter()
            .map(|s| s.unwrap_or(0) as i64)
            .collect();
        Tensor::from_data(TensorData::new(ids, [nb * kq]), &device)
    };
    let gather = |t: &Tensor<4>| -> Tensor<5> {
        let blocks = t.clone().reshape([batch, heads, nb, b, dim]);
        if pattern.heads == 1 {
            return blocks
                .select(2, slots(0))
                .reshape([batch, heads, nb, kcat, dim]);
        }
        let per_head = (0..heads)
            .map(|h| {
                blocks
                    .clone()
                    .slice([0..batch, h..h + 1, 0..nb, 0..b, 0..dim])
                    .select(2, slots(h))
                    .reshape([batch, 1, nb, kcat, dim])
            })
            .collect();
        Tensor::cat(per_head, 1)
    };
    let (kg, vg) = (gather(&k), gather(&v));
    let qb = q.clone().reshape([batch, heads, nb, b, dim]);
    let local = qb.clone().matmul(kg.swap_dims(3, 4)) * scale; // [B, H, nb, b, K·b]

    // What the structure allows, per pattern head: [Hp, nb, b, K·b], built on the host (O(N·K·b)).
    let g = pattern.global_keys.len();
    let mut allowed = Vec::with_capacity(pattern.heads * padded * kcat);
    let mut key_pos = Vec::with_capacity(pattern.heads * nb * kcat);
    for h in 0..pattern.heads {
        for qblock in 0..nb {
            let slots = &pattern.key_blocks[(h * nb + qblock) * kq..(h * nb + qblock + 1) * kq];
            for i in qblock * b..(qblock + 1) * b {
                for slot in slots {
                    for off in 0..b {
                        let ok = slot.is_some_and(|kb| {
                            let j = kb * b + off;
                            j < len
                                && !pattern.global_keys.contains(&j)
                                && pattern.rule.allows(i, j)
                                && !(input.causal && j > i)
                        });
                        allowed.push(ok);
                    }
                }
            }
            for slot in slots {
                key_pos.extend((0..b).map(|off| (slot.unwrap_or(0) * b + off) as i64));
            }
        }
    }
    let hp = pattern.heads;
    let structure =
        Tensor::<5, Bool>::from_data(TensorData::new(allowed, [1, hp, nb, b, kcat]), &device);
    let key_pos = Tensor::<1, Int>::from_data(TensorData::new(key_pos, [hp * nb * kcat]), &device);
    let gathered_pad = key_pad
        .clone()
        .select(1, key_pos)
        .reshape([batch, hp, nb, 1, kcat])
        .greater_elem(0.5);
    let shape5 = [batch, heads, nb, b, kcat];
    let mut blocked = structure
        .expand(shape5)
        .bool_not()
        .bool_or(gathered_pad.expand(shape5));
    let mut scores = local;

    // Global keys: scored against every query, [B, H, nb, b, G].
    let globals = (g > 0).then(|| {
        let ids: Vec<i64> = pattern.global_keys.iter().map(|&j| j as i64).collect();
        Tensor::<1, Int>::from_data(TensorData::new(ids, [g]), &device)
    });
    if let Some(ids) = &globals {
        let kglob = k.clone().select(2, ids.clone()); // [B, H, G, D]
        let s = (q.clone().matmul(kglob.swap_dims(2, 3)) * scale).reshape([batch, heads, nb, b, g]);
        let after: Vec<bool> = (0..padded)
            .flat_map(|i| {
                pattern
                    .global_keys
                    .iter()
                    .map(move |&j| input.causal && j > i)
            })
            .collect();
        let causal_block =
            Tensor::<5, Bool>::from_data(TensorData::new(after, [1, 1, nb, b, g]), &device);
        let gpad = key_pad
            .clone()
            .select(1, ids.clone())
            .reshape([batch, 1, 1, 1, g])
            .greater_elem(0.5);
        let shape = [batch, heads, nb, b, g];
        let gblocked = causal_block.expand(shape).bool_or(gpad.expand(shape));
        scores = Tensor::cat(vec![scores, s], 4);
        blocked = Tensor::cat(vec![blocked, gblocked], 4);
    }

    let visible = blocked.clone().bool_not().float();
    let weights = eft_kernels::softmax(scores.mask_fill(blocked, BLOCKED_SCORE)) * visible;
    let local_w = weights
        .clone()
        .slice([0..batch, 0..heads, 0..nb, 0..b, 0..kcat]);
    let mut out = local_w.matmul(vg).reshape([batch, heads, padded, dim]);
    if let Some(ids) = globals {
        let w = weights
            .slice([0..batch, 0..heads, 0..nb, 0..b, kcat..kcat + g])
            .reshape([batch, heads, padded, g]);
        out = out + w.matmul(v.clone().select(2, ids));
    }
    let mut out = out.slice([0..batch, 0..heads, 0..len, 0..dim]);

    // Global queries see everything: replace their rows with full attention rows.
    if !pattern.global_queries.is_empty() {
        let n = pattern.global_queries.len();
        let ids: Vec<i64> = pattern.global_queries.iter().map(|&i| i as i64).collect();
        let ids = Tensor::<1, Int>::from_data(TensorData::new(ids, [n]), &device);
        let unpad = |t: Tensor<4>| t.slice([0..batch, 0..heads, 0..len, 0..dim]);
        let qg = unpad(q).select(2, ids.clone());
        let later: Vec<bool> = pattern
            .global_queries
            .iter()
            .flat_map(|&i| (0..len).map(move |j| input.causal && j > i))
            .collect();
        let mut mask =
            Tensor::<4, Bool>::from_data(TensorData::new(later, [1, 1, n, len]), &device)
                .expand([batch, 1, n, len]);
        let real_pad = key_pad
            .slice([0..batch, 0..len])
            .greater_elem(0.5)
            .reshape([batch, 1, 1, len]);
        mask = mask.bool_or(real_pad.expand([batch, 1, n, len]));
        let rows = dense_reference(qg, unpad(k), unpad(v), Some(mask)); // [B, H, n, D]
        let current = out.clone().select(2, ids.clone());
        out = out.select_assign(2, ids, rows - current, IndexingUpdateOp::Add);
    }
    out
}

/// The dense oracle for `pattern`: `true` where query `i` must not see key `j`, `[1, Hp, N, N]`,
/// causal included (padding is added by the caller).
pub fn dense_blocked(pattern: &BlockPattern, causal: bool, device: &Device) -> Tensor<4, Bool> {
    let n = pattern.len;
    let mut blocked = Vec::with_capacity(pattern.heads * n * n);
    for h in 0..pattern.heads {
        for i in 0..n {
            for j in 0..n {
                blocked.push(!pattern.allows(h, i, j) || (causal && j > i));
            }
        }
    }
    Tensor::from_data(TensorData::new(blocked, [1, pattern.heads, n, n]), device)
}
