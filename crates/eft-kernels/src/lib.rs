//! Attention kernels for eft that autodiff cannot derive efficiently, each a burn backend
//! extension with a hand-written backward pass.
//!
//! [`flash_attention`] is exact softmax attention in tiles with an online softmax: the forward
//! pass keeps only the output and one log-sum-exp per query, and the backward pass recomputes
//! each tile, so training never holds an `N × N` buffer (Dao et al. 2022; Rabe & Staats 2021).
//! On burn's Flex backend it runs a fused kernel on the raw `f32` storage (threads over heads and
//! query tiles, SIMD row operations, GEMM micro-kernels per tile); every other backend runs the
//! same algorithm from tensor ops, which is also what the fused kernel is tested against.
#![warn(missing_docs)]

mod attention_op;
mod block_pattern;
mod block_sparse;
mod cpu;
mod dense;
mod dropout;
mod elu_feature;
mod favor;
mod flash;
mod flash_reference;
mod gelu;
mod kernel_attention;
mod layer_norm;
mod materialised;
mod rank_sum;
mod routing;
mod softmax;
#[cfg(test)]
mod test_util;

pub use block_pattern::{BlockPattern, ElementRule};
pub use block_sparse::{BlockSparseBackend, block_sparse_attention};
pub use cpu::fused_cpu;
pub use dense::{DenseBackend, linear};
pub use dropout::{DropoutBackend, dropout, dropout_columns, dropout_rows};
pub use elu_feature::{EluFeatureBackend, elu_plus_one};
pub use favor::{FavorBackend, favor_features};
pub use flash::{
    BLOCKED_SCORE, FlashBackend, LOW_PRECISION_BLOCKED_SCORE, blocked_score, flash_attention,
};
pub use gelu::{GeluBackend, gelu};
pub use kernel_attention::{KernelAttentionBackend, kernel_attention};
pub use layer_norm::{LayerNormBackend, layer_norm};
pub use materialised::{MaterialisedBackend, materialised_attention};
pub use rank_sum::{
    RankGroup, RankSum, RankSumBackend, copy_to_ranks, join_rank_group, ranks_run_on,
    sum_over_ranks,
};
pub use softmax::{SoftmaxBackend, softmax};
