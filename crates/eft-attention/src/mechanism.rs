//! The attention module the model holds: one variant per mechanism, one `forward` for all.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::sparse::{
    BigBirdAttention, BlockBertAttention, FixedAttention, LocalAttention, LongformerAttention,
    Patterned, SlidingAttention, StridedAttention,
};
use crate::{
    AttentionCost, AttentionInput, AttentionShape, FlashAttention, FullAttention, LinearAttention,
    PerformerAttention,
};

/// An initialised attention mechanism; built from an [`AttentionConfig`](crate::AttentionConfig).
///
/// Nothing above this type knows which mechanism runs: the model calls [`Attention::forward`]
/// and the meter calls [`Attention::cost`].
#[derive(Module, Debug)]
#[non_exhaustive]
pub enum Attention {
    /// Full softmax attention.
    Full(FullAttention),
    /// Exact attention in tiles, O(N) memory.
    Flash(FlashAttention),
    /// Non-overlapping blocks.
    Local(LocalAttention),
    /// Sliding window.
    Sliding(SlidingAttention),
    /// Sparse Transformer, strided.
    Strided(StridedAttention),
    /// Sparse Transformer, fixed.
    Fixed(FixedAttention),
    /// One layer of a cascade: a sliding window of that layer's width.
    Cascade(SlidingAttention),
    /// Per-head block permutations.
    BlockBert(BlockBertAttention),
    /// Dilated window plus global positions.
    Longformer(LongformerAttention),
    /// Window, global and random blocks.
    BigBird(BigBirdAttention),
    /// Kernel attention with `elu + 1` features.
    Linear(LinearAttention),
    /// FAVOR+ random-feature attention.
    Performer(PerformerAttention),
}

impl Attention {
    /// The sparse mechanisms' common interface; `None` for the dense ones.
    pub fn patterned(&self) -> Option<&dyn Patterned> {
        Some(match self {
            Attention::Full(_)
            | Attention::Flash(_)
            | Attention::Linear(_)
            | Attention::Performer(_) => return None,
            Attention::Local(m) => m,
            Attention::Sliding(m) | Attention::Cascade(m) => m,
            Attention::Strided(m) => m,
            Attention::Fixed(m) => m,
            Attention::BlockBert(m) => m,
            Attention::Longformer(m) => m,
            Attention::BigBird(m) => m,
        })
    }
}

impl Attention {
    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        match (self, self.patterned()) {
            (_, Some(m)) => m.forward(input),
            (Attention::Full(m), None) => m.forward(input),
            (Attention::Flash(m), None) => m.forward(input),
            (Attention::Linear(m), None) => m.forward(input),
            (Attention::Performer(m), None) => m.forward(input),
            (_, None) => unreachable!("every other mechanism is patterned"),
        }
    }

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        match (self, self.patterned()) {
            (_, Some(m)) => m.cost(shape),
            (Attention::Full(m), None) => m.cost(shape),
            (Attention::Flash(m), None) => m.cost(shape),
            (Attention::Linear(m), None) => m.cost(shape),
            (Attention::Performer(m), None) => m.cost(shape),
            (_, None) => unreachable!("every other mechanism is patterned"),
        }
    }
}
