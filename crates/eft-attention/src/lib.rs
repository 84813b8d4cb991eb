//! Attention mechanisms for eft, behind one interface.
//!
//! Every mechanism takes queries, keys and values shaped `[B, H, N, D]`, an optional key-padding
//! mask and a causal flag ([`AttentionInput`]), and returns `[B, H, N, D]`. Each also states what it
//! costs ([`AttentionCost`]): analytic FLOPs forward and backward, and the bytes it keeps for the
//! backward pass. A mechanism is chosen by name and parameters in a config ([`AttentionConfig`]),
//! checked once by [`AttentionConfig::validate`], and built with [`AttentionConfig::init`].
//!
//! The dense reference ([`dense_reference`]) builds the full `N × N` score matrix under an explicit
//! mask; it is slow and obviously right, and every fast path is tested against it.
//!
//! # Index letters
//! | letter | meaning |
//! |---|---|
//! | `B` | batch |
//! | `H` | heads |
//! | `N` | sequence length |
//! | `D` | head dimension |
#![warn(missing_docs)]

mod block_sparse;
mod config;
mod cost;
mod error;
mod flash;
mod full;
mod input;
pub mod kernel;
mod layout;
mod linear;
mod linformer;
mod lsh;
mod mask;
mod mechanism;
mod nystrom;
mod performer;
mod reference;
mod sinkhorn;
mod sinusoid;
mod sparse;
mod sparse_plan;
mod synthesizer;
pub mod testing;
mod xl;

pub use block_sparse::{BlockPattern, ElementRule, block_sparse, dense_blocked};
pub use config::{
    AttentionConfig, LinformerConfig, LinformerShare, LshConfig, NystromConfig, PerformerKernel,
    SinkhornConfig, SynthesizerConfig, XlConfig, toml_scalar,
};
pub use cost::{AttentionCost, AttentionShape};
pub use error::AttentionError;
pub use flash::FlashAttention;
pub use full::FullAttention;
pub use input::{AttentionInput, Memory};
pub use layout::AttentionLayout;
pub use linear::{LinearAttention, LinearState};
pub use linformer::LinformerAttention;
pub use lsh::{LshAttention, SELF_SCORE};
pub use mask::{blocked_positions, causal_blocked, padding_blocked};
pub use mechanism::{Attention, Mechanism};
pub use nystrom::{NystromAttention, pinv};
pub use performer::{PerformerAttention, orthogonal_features};
pub use reference::{attend_scores, dense_reference};
pub use sinkhorn::{SinkhornAttention, sinkhorn};
pub use sinusoid::sinusoid;
pub use sparse::{
    BigBirdAttention, BlockBertAttention, FixedAttention, LocalAttention, LongformerAttention,
    Patterned, SlidingAttention, StridedAttention,
};
pub use sparse_plan::{HeadGroup, SparsePlan};
pub use synthesizer::{SynthesizerAttention, SynthesizerMode, factor_lengths};

pub use eft_kernels::BLOCKED_SCORE;
pub use xl::XlAttention;
