//! The fixed-pattern mechanisms: each builds a [`SparsePlan`] for a sequence length and runs it on
//! the block-sparse engine.
//!
//! | name | pattern | causal |
//! |---|---|---|
//! | `local` | non-overlapping blocks of `block`; a query sees its own block | yes |
//! | `sliding` | `|i − j| ≤ window` | yes (`i − window ≤ j ≤ i`) |
//! | `strided` | Sparse Transformer: heads `0..⌈H/2⌉` see `|i − j| < stride`; the rest see `(i − j) mod stride = 0` | yes |
//! | `fixed` | Sparse Transformer: heads `0..⌈H/2⌉` see their own block of `block`; the rest see the summary columns `j mod block ≥ block − summary` | yes |
//! | `cascade` | sliding window `window · growth^layer`, capped at the length | yes |
//! | `blockbert` | `blocks` blocks; head `h`'s query block `i` sees key block `(i + h) mod blocks` | no |
//! | `longformer` | `|i − j| ≤ window·dilation` with `(i − j) mod dilation = 0`, plus `global` positions that see and are seen by all | yes |
//! | `bigbird` | blocks of `block`: own and neighbouring blocks, the first `global_blocks` blocks (which also see all), `random_blocks` seeded random blocks per head and block | no |
//!
//! Windows and blocks longer than the sequence are capped to it, and global positions beyond it
//! are skipped (a short batch is not an error); `eft attn` and model construction check them
//! strictly against the length they are given. Lengths that are not a multiple of a block are
//! padded internally and the padding is masked.

mod bigbird;
mod blockbert;
mod cascade;
mod fixed;
mod local;
mod longformer;
mod sliding;
mod strided;

use std::sync::Arc;

use burn::tensor::Tensor;

pub use bigbird::{BigBirdAttention, BigBirdConfig};
pub use blockbert::{BlockBertAttention, BlockBertConfig};
pub use cascade::CascadeConfig;
pub use fixed::{FixedAttention, FixedConfig};
pub use local::{LocalAttention, LocalConfig};
pub use longformer::{LongformerAttention, LongformerConfig};
pub use sliding::{SlidingAttention, SlidingConfig};
pub use strided::{StridedAttention, StridedConfig};

use crate::block_sparse::{BlockPattern, ElementRule};
use crate::sparse_plan::cached_plan;
use crate::{AttentionCost, AttentionInput, AttentionShape, Mechanism, SparsePlan};

/// A pattern over all heads: each query block gathers `neighbours` (offsets from its own block).
fn banded(len: usize, block: usize, offsets: &[isize], rule: ElementRule) -> BlockPattern {
    let block = block.clamp(1, len.max(1));
    let nb = len.div_ceil(block);
    let key_blocks = (0..nb)
        .flat_map(|i| {
            offsets.iter().map(move |&o| {
                let j = i as isize + o;
                (0..nb as isize).contains(&j).then_some(j as usize)
            })
        })
        .collect();
    BlockPattern {
        len,
        block,
        heads: 1,
        per_query: offsets.len(),
        key_blocks,
        global_keys: vec![],
        global_queries: vec![],
        rule,
    }
}

/// `|i − j| ≤ window·dilation` and `(i − j) mod dilation = 0`, in blocks of the span.
fn window_pattern(len: usize, window: usize, dilation: usize, causal: bool) -> BlockPattern {
    let span = (window * dilation).clamp(1, len.max(1));
    let offsets: &[isize] = if causal { &[-1, 0] } else { &[-1, 0, 1] };
    banded(
        len,
        span,
        offsets,
        ElementRule::Window {
            window: span,
            dilation,
        },
    )
}

/// A mechanism defined by a sparsity plan.
pub trait Patterned: std::fmt::Debug {
    /// The plan for a sequence of `len` with `heads` heads.
    fn plan(&self, len: usize, heads: usize, causal: bool) -> SparsePlan;

    /// [`Patterned::plan`], built once per (mechanism, parameters, length, heads, causal) and
    /// shared by every later call.
    fn cached_plan(&self, len: usize, heads: usize, causal: bool) -> Arc<SparsePlan> {
        let key = (
            std::any::type_name::<Self>(),
            format!("{self:?}"),
            len,
            heads,
            causal,
        );
        cached_plan(key, || self.plan(len, heads, causal))
    }

    /// Runs the plan on `input`.
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let [_, heads, len, _] = input.q.dims();
        self.cached_plan(len, heads, input.causal).forward(input)
    }

    /// The plan's analytic cost (non-causal form).
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        self.cached_plan(shape.len, shape.heads, false).cost(shape)
    }
}

impl<T: Patterned> Mechanism for T {
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        Patterned::forward(self, input)
    }

    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        Patterned::cost(self, shape)
    }

    fn patterned(&self) -> Option<&dyn Patterned> {
        Some(self)
    }
}

/// The first ⌈H/2⌉ heads and the rest.
fn halves(heads: usize) -> (std::ops::Range<usize>, std::ops::Range<usize>) {
    let a = heads.div_ceil(2);
    (0..a, a..heads)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Case, check_against_reference, check_fn_against_reference};
    use crate::{Attention, AttentionConfig};
    use burn::tensor::Device;

    fn mechanism(name: &str, params: &[(&str, &str)]) -> Attention {
        AttentionConfig::from_name_and_params(name, &crate::testing::params(params))
            .unwrap()
            .init(crate::testing::layout(1), &Device::flex())
    }

    /// The engine equals the dense reference under the plan's own mask, forward and backward,
    /// over lengths that are and are not multiples of the blocks, padding, and causal where defined.
    fn engine_matches_oracle(name: &str, params: &[(&str, &str)], causal_too: bool) {
        let m = mechanism(name, params);
        let cases: &[([usize; 4], &[usize])] = &[
            ([2, 4, 13, 4], &[13, 9]),
            ([1, 2, 24, 3], &[24]),
            ([2, 2, 37, 5], &[30, 37]),
        ];
        for (seed, &(dims, real)) in cases.iter().enumerate() {
            for causal in [false, true] {
                if causal && !causal_too {
                    continue;
                }
                let [_, h, n, _] = dims;
                let plan = m.patterned().unwrap().plan(n, h, causal);
                let blocked = plan.dense_blocked(h, n, false, &Device::flex());
                let what = format!("{name} {dims:?} causal={causal}");
                let case = Case {
                    dims,
                    real: real.to_vec(),
                    causal,
                    seed: seed as u64,
                };
                check_against_reference(&what, &m, blocked.clone(), &case, 1e-5);
                // The tensor-op engine (what other backends run) against the same oracle.
                let engine = |input| plan.forward_with(input, crate::block_sparse_tensor_ops);
                let what = format!("{what} tensor-op engine");
                check_fn_against_reference(&what, &engine, blocked, &case, 1e-5);
            }
        }
    }

    #[test]
    fn plans_are_built_once_per_shape_and_parameters() {
        let local = |block: &str| mechanism("local", &[("block", block)]);
        let (a, b) = (local("4"), local("4"));
        let plan = |m: &Attention, len| m.patterned().unwrap().cached_plan(len, 2, false);
        assert!(
            Arc::ptr_eq(&plan(&a, 16), &plan(&b, 16)),
            "same parameters and shape"
        );
        assert!(!Arc::ptr_eq(&plan(&a, 16), &plan(&a, 17)), "another length");
        assert!(
            !Arc::ptr_eq(&plan(&a, 16), &plan(&local("8"), 16)),
            "another block"
        );
        assert_eq!(*plan(&a, 16), a.patterned().unwrap().plan(16, 2, false));
    }

    /// `allows` equals the mechanism's definition for every (head, query, key).
    fn pattern_is(
        name: &str,
        params: &[(&str, &str)],
        len: usize,
        heads: usize,
        def: impl Fn(usize, usize, usize) -> bool,
    ) {
        let plan = mechanism(name, params)
            .patterned()
            .unwrap()
            .plan(len, heads, false);
        for h in 0..heads {
            for i in 0..len {
                for j in 0..len {
                    assert_eq!(
                        plan.allows(h, i, j),
                        def(h, i, j),
                        "{name}: head {h}, query {i}, key {j}"
                    );
                }
            }
        }
    }

    #[test]
    fn local_is_its_definition_and_matches_the_reference() {
        pattern_is("local", &[("block", "4")], 13, 2, |_, i, j| i / 4 == j / 4);
        engine_matches_oracle("local", &[("block", "4")], true);
    }

    #[test]
    fn sliding_is_its_definition_and_matches_the_reference() {
        pattern_is("sliding", &[("window", "3")], 13, 2, |_, i, j| {
            i.abs_diff(j) <= 3
        });
        engine_matches_oracle("sliding", &[("window", "3")], true);
    }

    #[test]
    fn strided_is_its_definition_and_matches_the_reference() {
        pattern_is("strided", &[("stride", "4")], 13, 4, |h, i, j| {
            if h < 2 {
                i.abs_diff(j) < 4
            } else {
                i.abs_diff(j) % 4 == 0
            }
        });
        engine_matches_oracle("strided", &[("stride", "4")], true);
    }

    #[test]
    fn fixed_is_its_definition_and_matches_the_reference() {
        pattern_is(
            "fixed",
            &[("block", "5"), ("summary", "2")],
            13,
            3,
            |h, i, j| {
                if h < 2 { i / 5 == j / 5 } else { j % 5 >= 3 }
            },
        );
        engine_matches_oracle("fixed", &[("block", "5"), ("summary", "2")], true);
    }

    #[test]
    fn cascade_widens_with_depth() {
        let config = AttentionConfig::from_name_and_params(
            "cascade",
            &[("window".into(), "2".into()), ("growth".into(), "3".into())],
        )
        .unwrap();
        for (layer, window) in [(0, 2), (1, 6), (2, 18)] {
            let plan = config
                .init(crate::testing::layout(layer), &Device::flex())
                .patterned()
                .unwrap()
                .plan(40, 1, false);
            for i in 0..40 {
                for j in 0..40 {
                    assert_eq!(
                        plan.allows(0, i, j),
                        i.abs_diff(j) <= window,
                        "layer {layer}"
                    );
                }
            }
        }
        engine_matches_oracle("cascade", &[("window", "2")], true);
    }

    #[test]
    fn blockbert_is_its_definition_and_matches_the_reference() {
        // 13 positions in 3 blocks of 5 (the last holds 3): head h maps block i to (i + h) mod 3.
        pattern_is("blockbert", &[("blocks", "3")], 13, 4, |h, i, j| {
            (i / 5 + h) % 3 == j / 5
        });
        engine_matches_oracle("blockbert", &[("blocks", "3")], false);
    }

    #[test]
    fn longformer_is_its_definition_and_matches_the_reference() {
        pattern_is(
            "longformer",
            &[("window", "2"), ("global", "0,7")],
            13,
            1,
            |_, i, j| i.abs_diff(j) <= 2 || [0, 7].contains(&i) || [0, 7].contains(&j),
        );
        pattern_is(
            "longformer",
            &[("window", "2"), ("dilation", "2"), ("global", "")],
            13,
            1,
            |_, i, j| i.abs_diff(j) <= 4 && i.abs_diff(j) % 2 == 0,
        );
        engine_matches_oracle("longformer", &[("window", "2"), ("global", "0,7")], true);
        engine_matches_oracle(
            "longformer",
            &[("window", "2"), ("dilation", "3"), ("global", "5")],
            true,
        );
    }

    #[test]
    fn bigbird_pattern_has_window_global_and_random_blocks() {
        let (len, block, heads) = (40, 4, 2);
        let params = [
            ("block", "4"),
            ("global_blocks", "1"),
            ("random_blocks", "2"),
            ("seed", "9"),
        ];
        let plan = mechanism("bigbird", &params)
            .patterned()
            .unwrap()
            .plan(len, heads, false);
        let nb = len / block;
        for h in 0..heads {
            for qb in 1..nb {
                let i = qb * block;
                let seen: Vec<usize> = (0..nb)
                    .filter(|&kb| plan.allows(h, i, kb * block))
                    .collect();
                for must in [0, qb - 1, qb, (qb + 1).min(nb - 1)] {
                    assert!(seen.contains(&must), "head {h} block {qb} misses {must}");
                }
                let window_and_global: usize = [0, qb - 1, qb, (qb + 1).min(nb - 1)]
                    .iter()
                    .collect::<std::collections::BTreeSet<_>>()
                    .len();
                assert_eq!(
                    seen.len(),
                    window_and_global + 2,
                    "two random blocks for head {h} block {qb}"
                );
            }
            // The global block's queries see every key.
            assert!((0..len).all(|j| plan.allows(h, 1, j)));
        }
        let again = mechanism("bigbird", &params)
            .patterned()
            .unwrap()
            .plan(len, heads, false);
        assert_eq!(plan, again, "the same seed draws the same blocks");
        let other = [
            ("block", "4"),
            ("global_blocks", "1"),
            ("random_blocks", "2"),
            ("seed", "10"),
        ];
        assert_ne!(
            plan,
            mechanism("bigbird", &other)
                .patterned()
                .unwrap()
                .plan(len, heads, false)
        );
        engine_matches_oracle(
            "bigbird",
            &[("block", "4"), ("random_blocks", "2"), ("seed", "3")],
            false,
        );
    }

    #[test]
    fn sparse_cost_grows_linearly_where_full_grows_quadratically() {
        let shape = |len| AttentionShape {
            batch: 1,
            heads: 4,
            len,
            head_dim: 64,
        };
        // blockbert, strided and fixed hold N²/blocks or N²/stride pairs by definition.
        for name in ["local", "sliding", "longformer", "bigbird", "cascade"] {
            let m = mechanism(name, &[]);
            let ratio = m.cost(shape(8192)).saved_bytes / m.cost(shape(4096)).saved_bytes;
            assert!(
                ratio < 2.3,
                "{name}: saved bytes grew {ratio}× per doubling"
            );
        }
        let full = mechanism("full", &[]);
        assert_eq!(
            full.cost(shape(8192)).saved_bytes / full.cost(shape(4096)).saved_bytes,
            4.0
        );
    }
}
