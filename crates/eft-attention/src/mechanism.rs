//! The attention module the model holds: one variant per mechanism, one `forward` for all.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::sparse::{
    BigBirdAttention, BlockBertAttention, FixedAttention, LocalAttention, LongformerAttention,
    Patterned, SlidingAttention, StridedAttention,
};
use crate::{
    AttentionCost, AttentionInput, AttentionShape, FlashAttention, FullAttention, LinearAttention,
    LinformerAttention, LshAttention, NystromAttention, PerformerAttention, SinkhornAttention,
    SynthesizerAttention, XlAttention,
};

/// An initialised attention mechanism; built from an [`AttentionConfig`](crate::AttentionConfig).
///
/// Nothing above this type knows which mechanism runs: the model calls [`Attention::forward`]
/// and the meter calls [`Attention::cost`].
// One value per layer, built once: the size gap between variants costs nothing worth boxing for.
#[allow(clippy::large_enum_variant)]
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
    /// Length-projected keys and values.
    Linformer(LinformerAttention),
    /// Synthesised attention weights.
    Synthesizer(SynthesizerAttention),
    /// Landmark (Nyström) approximation of softmax attention.
    Nystrom(NystromAttention),
    /// Reformer's locality-sensitive-hashing attention.
    Lsh(LshAttention),
    /// Learned block sorting.
    Sinkhorn(SinkhornAttention),
    /// Relative attention with segment memory.
    Xl(XlAttention),
}

impl Attention {
    /// The sparse mechanisms' common interface; `None` for the dense ones.
    pub fn patterned(&self) -> Option<&dyn Patterned> {
        Some(match self {
            Attention::Full(_)
            | Attention::Flash(_)
            | Attention::Linear(_)
            | Attention::Performer(_)
            | Attention::Linformer(_)
            | Attention::Synthesizer(_)
            | Attention::Nystrom(_)
            | Attention::Lsh(_)
            | Attention::Sinkhorn(_)
            | Attention::Xl(_) => return None,
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

/// What every mechanism does: attend, and say what that costs.
pub trait Mechanism {
    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4>;

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    fn cost(&self, shape: AttentionShape) -> AttentionCost;
}

impl<T: Patterned> Mechanism for T {
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        Patterned::forward(self, input)
    }

    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        Patterned::cost(self, shape)
    }
}

/// Mechanisms that are not sparsity patterns forward to their own `forward` and `cost`.
macro_rules! dense_mechanism {
    ($($t:ty),*) => {$(
        impl Mechanism for $t {
            fn forward(&self, input: AttentionInput) -> Tensor<4> {
                <$t>::forward(self, input)
            }

            fn cost(&self, shape: AttentionShape) -> AttentionCost {
                <$t>::cost(self, shape)
            }
        }
    )*};
}

dense_mechanism!(
    FullAttention,
    FlashAttention,
    LinearAttention,
    PerformerAttention,
    LinformerAttention,
    SynthesizerAttention,
    NystromAttention,
    LshAttention,
    SinkhornAttention
);

/// Given memory, `xl` attends one segment; without, it cuts the input into its own segments.
impl Mechanism for XlAttention {
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        if input.memory.is_some() {
            XlAttention::forward(self, input)
        } else {
            self.forward_segmented(input)
        }
    }

    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        XlAttention::cost(self, shape)
    }
}

impl Attention {
    /// The running mechanism, whichever it is.
    pub fn mechanism(&self) -> &dyn Mechanism {
        match self {
            Attention::Full(m) => m,
            Attention::Flash(m) => m,
            Attention::Linear(m) => m,
            Attention::Performer(m) => m,
            Attention::Linformer(m) => m,
            Attention::Synthesizer(m) => m,
            Attention::Nystrom(m) => m,
            Attention::Lsh(m) => m,
            Attention::Sinkhorn(m) => m,
            Attention::Xl(m) => m,
            Attention::Local(m) => m,
            Attention::Sliding(m) | Attention::Cascade(m) => m,
            Attention::Strided(m) => m,
            Attention::Fixed(m) => m,
            Attention::BlockBert(m) => m,
            Attention::Longformer(m) => m,
            Attention::BigBird(m) => m,
        }
    }

    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    ///
    /// # Panics
    /// Panics when `input` carries memory and the mechanism is not `xl`: the model only builds
    /// memory for `xl` layers, so anything else is a caller's bug.
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        assert!(
            input.memory.is_none() || matches!(self, Attention::Xl(_)),
            "only xl attention reads memory; do not pass memory to other mechanisms"
        );
        self.mechanism().forward(input)
    }

    /// The mechanism as it should be at training step `step` (Performer redraws its features).
    pub fn at_step(self, step: usize) -> Self {
        match self {
            Attention::Performer(m) => Attention::Performer(m.at_step(step)),
            other => other,
        }
    }

    /// Segment length and memory length when this is `xl` cutting sequences into segments.
    pub fn segments(&self) -> Option<(usize, usize)> {
        match self {
            Attention::Xl(m) if m.segment > 0 => Some((m.segment, m.mem_len)),
            _ => None,
        }
    }

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        self.mechanism().cost(shape)
    }
}
