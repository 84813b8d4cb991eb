//! The attention module the model holds: one variant per mechanism, one `forward` for all.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::{AttentionCost, AttentionInput, AttentionShape, FullAttention};

/// An initialised attention mechanism; built from an [`AttentionConfig`](crate::AttentionConfig).
///
/// Nothing above this type knows which mechanism runs: the model calls [`Attention::forward`]
/// and the meter calls [`Attention::cost`].
#[derive(Module, Debug)]
#[non_exhaustive]
pub enum Attention {
    /// Full softmax attention.
    Full(FullAttention),
}

impl Attention {
    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        match self {
            Attention::Full(m) => m.forward(input),
        }
    }

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        match self {
            Attention::Full(m) => m.cost(shape),
        }
    }
}
