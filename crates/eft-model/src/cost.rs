//! Analytic FLOPs of the classifier: every layer's formula, summed per training step.
//!
//! Conventions (the same as the attention mechanisms'): a multiply–add is two FLOPs; an
//! exponential, division, square root or comparison is one; table lookups and dropout are free.
//! Per element, LayerNorm costs `7` plus `4` per row (sum, centre, square, sum, scale, shift,
//! multiply; mean, variance, epsilon, square root) and GELU `8`. The backward pass of every
//! non-attention layer is counted as twice its forward (a gradient for the input and one for the
//! weights); attention mechanisms state their own backward.

use serde::{Deserialize, Serialize};

use crate::Classifier;

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
}

impl ModelCost {
    /// Forward plus backward: one training step.
    pub fn step_flops(&self) -> f64 {
        self.forward_flops + self.backward_flops
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

impl Classifier {
    /// The analytic cost of one step on a batch of `batch` sequences of `len` tokens (before any
    /// CLS token).
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let [head_in, hidden] = self.head_dims();
        let d = head_in / if self.paired() { 4 } else { 1 };
        let classes = self.classes();
        let n = len + usize::from(self.cls_pooled());
        let rows = batch * n;
        let (rf, df) = (rows as f64, d as f64);
        let mut dense = rf * df; // positions added to the token vectors
        let mut attention = (0.0, 0.0, 0.0);
        let mut activations = 2.0 * rf * df; // embeddings, final LayerNorm input
        for depth in 0..self.encoder().depth() {
            let block = self.encoder().block(depth);
            let a = block.self_attention().attention_cost(batch, n, d);
            attention.0 += a.forward_flops;
            attention.1 += a.backward_flops;
            attention.2 += a.saved_bytes;
            let ff = block.feed_forward_width();
            activations += rf * (6.0 * df + 2.0 * ff as f64);
            dense += layer_norm_flops(rows, d)
                + 3.0 * linear_flops(rows, d, d, false)
                + linear_flops(rows, d, d, true)
                + rf * df // residual
                + layer_norm_flops(rows, d)
                + linear_flops(rows, d, ff, true)
                + GELU_FLOPS * rf * ff as f64
                + linear_flops(rows, ff, d, true)
                + rf * df; // residual
        }
        dense += layer_norm_flops(rows, d);
        // The head reads one pooled row per sequence, or every position; the loss is counted
        // over the same rows (for per-position tasks that bounds the graded positions from above).
        let heads = if self.per_position() {
            rows
        } else {
            if !self.cls_pooled() {
                dense += 2.0 * rf * df + batch as f64 * df; // mask, sum, divide
            }
            batch
        };
        let heads = if self.paired() {
            dense += 2.0 * (batch / 2 * d) as f64; // x₁∗x₂ and x₁−x₂; the cat is free
            batch / 2
        } else {
            heads
        };
        dense += linear_flops(heads, head_in, hidden, true)
            + (heads * hidden) as f64 // ReLU
            + linear_flops(heads, hidden, classes, true)
            + heads as f64 * (4.0 * classes as f64 + 2.0); // log-softmax and the picked loss
        ModelCost {
            forward_flops: dense + attention.0,
            backward_flops: 2.0 * dense + attention.1,
            attention_forward_flops: attention.0,
            attention_saved_bytes: attention.2,
            activation_bytes: 4.0 * activations,
        }
    }
}
