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
mod mask;
mod mechanism;
mod reference;
mod sparse;
mod sparse_plan;
pub mod testing;

pub use block_sparse::{BlockPattern, ElementRule, block_sparse, dense_blocked};
pub use config::{AttentionConfig, toml_scalar};
pub use cost::{AttentionCost, AttentionShape};
pub use error::AttentionError;
pub use flash::FlashAttention;
pub use full::FullAttention;
pub use input::AttentionInput;
pub use mask::{blocked_positions, causal_blocked, padding_blocked};
pub use mechanism::Attention;
pub use reference::dense_reference;
pub use sparse::{
    BigBirdAttention, BlockBertAttention, FixedAttention, LocalAttention, LongformerAttention,
    Patterned, SlidingAttention, StridedAttention,
};
pub use sparse_plan::{HeadGroup, SparsePlan};

/// Four `[B, H, N, D]` standard-normal tensors (q, k, v and an output weighting) from `seed`,
/// drawn on the host so concurrent tests cannot disturb each other's draws.
#[doc(hidden)]
pub fn seeding_free_inputs(
    dims: [usize; 4],
    seed: u64,
    device: &burn::tensor::Device,
) -> (
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
) {
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let mut draw = || {
        // Box–Muller: two uniforms to one standard normal.
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
    };
    (draw(), draw(), draw(), draw())
}

/// Score given to blocked query–key pairs before the softmax.
///
/// Finite, so a row with every key blocked yields a uniform (and unused) row instead of NaN,
/// and large enough that `exp` of it underflows to exactly zero beside any real score.
pub const BLOCKED_SCORE: f32 = -1.0e9;
