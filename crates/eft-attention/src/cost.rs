//! The analytic cost of one attention call: FLOPs and memory held for the backward pass.

use serde::{Deserialize, Serialize};

/// The sizes a cost formula is evaluated at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AttentionShape {
    /// Batch size `B`.
    pub batch: usize,
    /// Number of heads `H`.
    pub heads: usize,
    /// Sequence length `N`.
    pub len: usize,
    /// Head dimension `D`.
    pub head_dim: usize,
}

/// What one attention call costs, counted analytically.
///
/// A multiply–add counts as two FLOPs. Exponentials, divisions and comparisons count as one each.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct AttentionCost {
    /// FLOPs of the forward pass.
    pub forward_flops: f64,
    /// FLOPs of the backward pass (gradients of q, k and v).
    pub backward_flops: f64,
    /// Bytes the mechanism keeps alive between forward and backward, beyond q, k, v and the output.
    pub saved_bytes: f64,
}
