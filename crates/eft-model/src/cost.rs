//! Analytic FLOPs of the classifier: every part states its own cost beside its code
//! (`Embeddings::cost`, `SelfAttention::cost`, `FeedForward::cost`, `Block::cost`, …), and the
//! model's cost is their sum, so a new part cannot be left out of a hand-written total.
//!
//! Conventions (the same as the attention mechanisms'): a multiply–add is two FLOPs; an
//! exponential, division, square root or comparison is one; table lookups and dropout are free.
//! Per element, LayerNorm costs `7` plus `4` per row (sum, centre, square, sum, scale, shift,
//! multiply; mean, variance, epsilon, square root) and GELU `8`. The backward pass of every
//! non-attention layer is counted as twice its forward (a gradient for the input and one for the
//! weights); attention mechanisms state their own backward.

use serde::{Deserialize, Serialize};

use eft_attention::AttentionCost;

/// FLOPs per element of the exact GELU, `x·Φ(x)`, by the convention above.
pub const GELU_FLOPS: f64 = 8.0;

/// What one step of the classifier costs, analytically.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize, Default)]
pub struct ModelCost {
    /// Forward FLOPs of the whole model, attention included.
    pub forward_flops: f64,
    /// Backward FLOPs (gradients of activations and parameters).
    pub backward_flops: f64,
    /// Forward FLOPs of the attention mechanisms alone (a part of `forward_flops`).
    pub attention_forward_flops: f64,
    /// Bytes the attention mechanisms hold for the backward pass.
    pub attention_saved_bytes: f64,
    /// Bytes of f32 activations the other layers hold for the backward pass, at least: per
    /// layer the LayerNorm inputs, Q, K, V, the attention output and the MLP's hidden layer
    /// before and after GELU; the embeddings and the final LayerNorm.
    #[serde(default)]
    pub activation_bytes: f64,
    /// Forward FLOPs run again in the backward pass by gradient checkpointing (`model.recompute`):
    /// the encoder blocks' forward, once more. Part of [`ModelCost::step_flops`].
    #[serde(default)]
    pub recompute_flops: f64,
}

impl ModelCost {
    /// A non-attention layer of `forward_flops` that keeps `saved_floats` f32 values for the
    /// backward pass; its backward costs twice its forward (input and weight gradients).
    pub fn layer(forward_flops: f64, saved_floats: f64) -> Self {
        Self {
            forward_flops,
            backward_flops: 2.0 * forward_flops,
            activation_bytes: 4.0 * saved_floats,
            ..Self::default()
        }
    }

    /// An attention mechanism's own cost.
    pub fn attention(cost: AttentionCost) -> Self {
        Self {
            forward_flops: cost.forward_flops,
            backward_flops: cost.backward_flops,
            attention_forward_flops: cost.forward_flops,
            attention_saved_bytes: cost.saved_bytes,
            ..Self::default()
        }
    }

    /// Forward plus backward: one training step.
    pub fn step_flops(&self) -> f64 {
        self.forward_flops + self.backward_flops + self.recompute_flops
    }

    /// A lower bound on the memory one training step needs: everything held for the backward
    /// pass (parameters, optimiser state and temporaries come on top).
    pub fn saved_bytes(&self) -> f64 {
        self.attention_saved_bytes + self.activation_bytes
    }
}

/// Forward FLOPs of a `rows × inputs → rows × outputs` linear layer.
pub fn linear_flops(rows: usize, inputs: usize, outputs: usize, bias: bool) -> f64 {
    let (r, i, o) = (rows as f64, inputs as f64, outputs as f64);
    2.0 * r * i * o + if bias { r * o } else { 0.0 }
}

/// Forward FLOPs of LayerNorm over `rows` rows of width `width`.
pub fn layer_norm_flops(rows: usize, width: usize) -> f64 {
    rows as f64 * (7.0 * width as f64 + 4.0)
}

impl std::ops::Add for ModelCost {
    type Output = Self;

    fn add(self, o: Self) -> Self {
        Self {
            forward_flops: self.forward_flops + o.forward_flops,
            backward_flops: self.backward_flops + o.backward_flops,
            attention_forward_flops: self.attention_forward_flops + o.attention_forward_flops,
            attention_saved_bytes: self.attention_saved_bytes + o.attention_saved_bytes,
            activation_bytes: self.activation_bytes + o.activation_bytes,
            recompute_flops: self.recompute_flops + o.recompute_flops,
        }
    }
}

impl std::iter::Sum for ModelCost {
    fn sum<I: Iterator<Item = Self>>(iter: I) -> Self {
        iter.fold(Self::default(), |a, b| a + b)
    }
}
