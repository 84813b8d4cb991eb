//! Attention kernels for eft that autodiff cannot derive efficiently, each a burn backend
//! extension with a hand-written backward pass.
//!
//! [`flash_attention`] is exact softmax attention in tiles with an online softmax: the forward
//! pass keeps only the output and one log-sum-exp per query, and the backward pass recomputes
//! each tile, so training never holds an `N × N` buffer (Dao et al. 2022; Rabe & Staats 2021).
//! The tiles are computed with the backend's own matmul, so the kernel runs at its speed.
#![warn(missing_docs)]

mod flash;

pub use flash::{BLOCKED_SCORE, FlashBackend, flash_attention};
