//! The dense reference: every score materialised, the mask applied explicitly.

use burn::tensor::{Bool, Tensor, activation::softmax};

use crate::BLOCKED_SCORE;

/// `softmax(q·kᵀ/√D, blocked → −∞)·v` with the whole `N × N` score matrix in memory.
///
/// O(N²·D) time and O(N²) memory: the oracle that every mechanism is tested against, never a fast
/// path. Rows whose keys are all blocked come out as the mean of `v` (uniform weights), not NaN.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, H, N, D]`
/// - `blocked`: broadcastable to `[B, H, N, N]`, `true` where query `i` must not see key `j`
/// - output: `[B, H, N, D]`
pub fn dense_reference(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let [batch, heads, len, head_dim] = q.dims();
    let scores = q.matmul(k.transpose()) / (head_dim as f64).sqrt(); // [B, H, N, N]
    let scores = match blocked {
        Some(mask) => scores.mask_fill(mask.expand([batch, heads, len, len]), BLOCKED_SCORE),
        None => scores,
    };
    softmax(scores, 3).matmul(v)
}
