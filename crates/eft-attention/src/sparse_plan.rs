//! Head groups for mechanisms whose heads follow different patterns (Sparse Transformer's two
//! head sets, BlockBERT's per-head permutations), optionally on a permuted sequence.

use std::collections::HashMap;
use std::ops::Range;
use std::sync::{Arc, LazyLock, Mutex, PoisonError};

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};

use crate::block_sparse::{BlockPattern, block_sparse, pattern_cost};
use crate::{AttentionCost, AttentionInput, AttentionShape};

/// What runs one pattern over its heads: [`block_sparse`] or
/// [`crate::block_sparse_tensor_ops`].
pub type Engine = fn(AttentionInput, &BlockPattern) -> Tensor<4>;

/// One set of heads and the pattern they follow.
#[derive(Debug, Clone, PartialEq)]
pub struct HeadGroup {
    /// The heads of this group.
    pub heads: Range<usize>,
    /// Their pattern, over the (possibly permuted and padded) sequence.
    pub pattern: BlockPattern,
    /// `order[p]` = the original position placed at `p`; positions `≥ N` are padding. `None`
    /// keeps the original order.
    pub order: Option<Vec<usize>>,
}

impl HeadGroup {
    /// Whether the group's head `h` (a plan-wide index) lets query `i` see key `j`, original
    /// positions; `at` is [`inverse`] of the group's order, when it has one.
    fn allows(&self, h: usize, i: usize, j: usize, at: Option<&[usize]>) -> bool {
        let ph = if self.pattern.heads == 1 {
            0
        } else {
            h - self.heads.start
        };
        let (pi, pj) = at.map_or((i, j), |at| (at[i], at[j]));
        self.pattern.allows(ph, pi, pj)
    }
}

/// `inverse[o] = p` where `order[p] = o`: where each position of `order` sits in it.
fn inverse(order: &[usize]) -> Vec<usize> {
    let mut at = vec![0; order.len()];
    for (p, &o) in order.iter().enumerate() {
        at[o] = p;
    }
    at
}

/// How each head of a mechanism attends: disjoint head groups covering `0..H`.
#[derive(Debug, Clone, PartialEq)]
pub struct SparsePlan {
    /// The groups, in head order.
    pub groups: Vec<HeadGroup>,
}

impl SparsePlan {
    /// A plan where every head follows `pattern`.
    pub fn uniform(pattern: BlockPattern, heads: usize) -> Self {
        Self {
            groups: vec![HeadGroup {
                heads: 0..heads,
                pattern,
                order: None,
            }],
        }
    }

    /// Runs every group and stacks their heads back in order.
    ///
    /// # Shapes
    /// - input: `[B, H, N, D]` → `[B, H, N, D]`
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        self.forward_with(input, block_sparse)
    }

    /// [`SparsePlan::forward`] on a chosen engine (the fused dispatch, or the tensor-op engine
    /// that tests hold it against).
    pub fn forward_with(&self, input: AttentionInput, engine: Engine) -> Tensor<4> {
        let [batch, _, len, dim] = input.q.dims();
        if let [group] = self.groups.as_slice()
            && group.order.is_none()
        {
            return engine(input, &group.pattern);
        }
        let outs = self
            .groups
            .iter()
            .map(|g| {
                let heads =
                    |t: &Tensor<4>| t.clone().slice([0..batch, g.heads.clone(), 0..len, 0..dim]);
                let part = AttentionInput {
                    q: heads(&input.q),
                    k: heads(&input.k),
                    v: heads(&input.v),
                    key_padding: input.key_padding.clone(),
                    causal: input.causal,
                    memory: None,
                };
                match &g.order {
                    None => engine(part, &g.pattern),
                    Some(order) => permuted(part, &g.pattern, order, engine),
                }
            })
            .collect();
        Tensor::cat(outs, 1)
    }

    /// Whether head `h`'s query `i` may see key `j` (original positions, before causal/padding).
    pub fn allows(&self, h: usize, i: usize, j: usize) -> bool {
        let g = self
            .groups
            .iter()
            .find(|g| g.heads.contains(&h))
            .expect("groups cover every head");
        g.allows(h, i, j, g.order.as_deref().map(inverse).as_deref())
    }

    /// The dense oracle: `true` where head `h`'s query `i` must not see key `j`, `[1, H, N, N]`.
    pub fn dense_blocked(
        &self,
        heads: usize,
        len: usize,
        causal: bool,
        device: &Device,
    ) -> Tensor<4, Bool> {
        let mut blocked = vec![true; heads * len * len];
        for g in &self.groups {
            // Computed once per group, so that the N² lookups do not each search the order.
            let at = g.order.as_deref().map(inverse);
            for h in g.heads.clone().filter(|&h| h < heads) {
                for i in 0..len {
                    for j in 0..len {
                        blocked[(h * len + i) * len + j] =
                            !g.allows(h, i, j, at.as_deref()) || (causal && j > i);
                    }
                }
            }
        }
        Tensor::from_data(TensorData::new(blocked, [1, heads, len, len]), device)
    }

    /// FLOPs and saved bytes: each group's pattern over its share of the heads.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        self.groups.iter().fold(AttentionCost::default(), |acc, g| {
            let part = pattern_cost(
                &g.pattern,
                AttentionShape {
                    heads: g.heads.len(),
                    ..shape
                },
            );
            AttentionCost {
                forward_flops: acc.forward_flops + part.forward_flops,
                backward_flops: acc.backward_flops + part.backward_flops,
                saved_bytes: acc.saved_bytes + part.saved_bytes,
            }
        })
    }
}

/// Runs `pattern` on the sequence rearranged by `order`, then puts positions back.
fn permuted(
    input: AttentionInput,
    pattern: &BlockPattern,
    order: &[usize],
    engine: Engine,
) -> Tensor<4> {
    let [batch, heads, len, dim] = input.q.dims();
    let device = input.q.device();
    let total = order.len();
    let extend = |t: Tensor<4>| {
        if total == len {
            return t;
        }
        Tensor::cat(
            vec![t, Tensor::zeros([batch, heads, total - len, dim], &device)],
            2,
        )
    };
    let ids =
        |v: Vec<i64>| Tensor::<1, Int>::from_data(TensorData::new(v.clone(), [v.len()]), &device);
    // Padding positions (≥ N) sit at the end of the extended sequence, which is index `p` itself.
    let forward = ids(order.iter().map(|&o| o as i64).collect());
    let back = ids(inverse(order).into_iter().map(|p| p as i64).collect());
    let pad = match input.key_padding {
        Some(m) => m.float(),
        None => Tensor::zeros([batch, len], &device),
    };
    let pad = if total == len {
        pad
    } else {
        Tensor::cat(vec![pad, Tensor::ones([batch, total - len], &device)], 1)
    };
    let rearranged = AttentionInput {
        q: extend(input.q).select(2, forward.clone()),
        k: extend(input.k).select(2, forward.clone()),
        v: extend(input.v).select(2, forward.clone()),
        key_padding: Some(pad.select(1, forward).greater_elem(0.5)),
        causal: input.causal,
        memory: None,
    };
    engine(rearranged, pattern)
        .select(2, back)
        .slice([0..batch, 0..heads, 0..len, 0..dim])
}

/// What identifies a plan: the mechanism's type, its parameters (as `Debug` prints them), the
/// length, the heads and whether it is causal.
pub(crate) type PlanKey = (&'static str, String, usize, usize, bool);

/// Plans are rebuilt after this many distinct ones, so a sweep over lengths cannot grow the cache
/// without bound.
const MAX_CACHED_PLANS: usize = 256;

static PLANS: LazyLock<Mutex<HashMap<PlanKey, Arc<SparsePlan>>>> = LazyLock::new(Default::default);

/// The plan for `key`, built by `build` the first time and shared by every later call.
pub(crate) fn cached_plan(key: PlanKey, build: impl FnOnce() -> SparsePlan) -> Arc<SparsePlan> {
    // A panic elsewhere while the lock was held cannot leave a half-built plan in the map.
    let mut plans = PLANS.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(plan) = plans.get(&key) {
        return plan.clone();
    }
    if plans.len() >= MAX_CACHED_PLANS {
        plans.clear();
    }
    let plan = Arc::new(build());
    plans.insert(key, plan.clone());
    plan
}
