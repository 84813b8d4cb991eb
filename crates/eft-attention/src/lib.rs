//! Attention mechanisms for eft, behind one interface.
//!
//! Every mechanism takes queries, keys and values shaped `[B, H, N, D]`, an optional key-padding
//! mask and a causal flag ([`AttentionInput`]), and returns `[B, H, N, D]`. Each also states what it
//! costs ([`AttentionCost`]): analytic FLOPs forward and backward, and the bytes it keeps for the
//! backward pass. A mechanism is chosen by name and parameters in a config ([`AttentionConfig`]),
//! checked once by [`AttentionConfig::validate`], and built with [`AttentionConfig::init`].
//!
//! Each mechanism is one file: its config (a [`MechanismConfig`], defaults through `Default`),
//! its module (a [`Mechanism`]), its cost formula and its tests. The registry lists each
//! mechanism once and generates [`AttentionConfig`], [`Attention`] and their dispatch.
//!
//! The dense reference ([`dense_reference`]) builds the full `N × N` score matrix under an explicit
//! mask; it is slow and obviously right, and every fast path is tested against it.
//!
//! ```
//! use burn::tensor::Device;
//! use eft_attention::{AttentionConfig, AttentionInput, AttentionLayout, AttentionShape};
//!
//! let device = Device::flex();
//! let shape = AttentionShape { batch: 2, heads: 4, len: 128, head_dim: 16 };
//! // Any mechanism by name and parameters, as in a config file.
//! let config = AttentionConfig::from_name_and_params("local", &[("block".into(), "32".into())])?;
//! config.check_input(shape)?;
//! let attention = config.init(AttentionLayout::for_shape(shape), &device);
//! let (q, k, v, _) = eft_attention::random_qkv([2, 4, 128, 16], 0, &device);
//! let out = attention.forward(AttentionInput::new(q, k, v));
//! assert_eq!(out.dims(), [2, 4, 128, 16]);
//! // What one call costs, before running it.
//! let cost = attention.cost(shape);
//! assert!(cost.forward_flops > 0.0 && cost.saved_bytes > 0.0);
//! # Ok::<(), eft_attention::AttentionError>(())
//! ```
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
mod cosformer;
mod cost;
mod decode;
mod error;
mod fidelity;
mod flash;
mod full;
mod heads;
mod index;
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
mod random;
mod reference;
mod registry;
mod sinkhorn;
mod sinusoid;
mod sparse;
mod sparse_plan;
mod synthesizer;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod xl;

pub use block_sparse::{
    BlockPattern, ElementRule, block_sparse, block_sparse_tensor_ops, dense_blocked, pattern_cost,
};
pub use cosformer::{CosformerAttention, CosformerConfig};
pub use cost::{AttentionCost, AttentionShape};
pub use decode::{AttentionCache, KernelState, KvCache};
pub use error::AttentionError;
pub use fidelity::{Fidelity, fidelity, relative_error};
pub use flash::{FlashAttention, FlashConfig};
pub use full::{FullAttention, FullConfig};
pub use heads::select_param;
pub use index::index_tensor;
pub use input::{AttentionInput, Memory};
pub use layout::AttentionLayout;
pub use linear::{LinearAttention, LinearConfig};
pub use linformer::{LinformerAttention, LinformerConfig, LinformerShare};
pub use lsh::{LshAttention, LshConfig, SELF_SCORE};
pub use mask::{blocked_positions, causal_blocked, padding_blocked};
pub use mechanism::{Mechanism, MechanismConfig, Recurrence};
pub use nystrom::{NystromAttention, NystromConfig, exact_pinv, pinv};
pub use performer::{PerformerAttention, PerformerConfig, PerformerKernel, orthogonal_features};
pub use random::random_qkv;
pub use reference::{attend, attend_scores, dense_attention, dense_reference};
pub use registry::{Attention, AttentionConfig, toml_scalar};
pub use sinkhorn::{SinkhornAttention, SinkhornConfig, sinkhorn};
pub use sinusoid::sinusoid;
pub use sparse::{
    BigBirdAttention, BigBirdConfig, BlockBertAttention, BlockBertConfig, CascadeConfig,
    FixedAttention, FixedConfig, LocalAttention, LocalConfig, LongformerAttention,
    LongformerConfig, Patterned, SlidingAttention, SlidingConfig, StridedAttention, StridedConfig,
};
pub use sparse_plan::{Engine, HeadGroup, SparsePlan};
pub use synthesizer::{SynthesizerAttention, SynthesizerConfig, SynthesizerMode, factor_lengths};

pub use eft_kernels::BLOCKED_SCORE;
pub use xl::{XlAttention, XlConfig};
