//! The dense reference: every score materialised, the mask applied explicitly.

use burn::tensor::{Bool, Tensor, activation::softmax};

/// `softmax(q·kᵀ/√D, blocked → −∞)·v` with the whole `N × N` score matrix in memory.
///
/// O(N²·D) time and O(N²) memory: the oracle that every mechanism is tested against, never a fast
/// path. A query that may see no key at all outputs zeros (not NaN, not a mean of values); every
/// mechanism follows the same convention.
///
/// # Shapes
/// - `q`: `[B, H, Nq, D]`; `k`, `v`: `[B, H, Nk, D]` (`Nq = Nk = N` for self-attention)
/// - `blocked`: broadcastable to `[B, H, Nq, Nk]`, `true` where query `i` must not see key `j`
/// - output: `[B, H, Nq, D]`
pub fn dense_reference(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    let head_dim = q.dims()[3];
    let scores = q.matmul(k.transpose()) / (head_dim as f64).sqrt(); // [B, H, Nq, Nk]
    attend_with(scores, v, blocked, reference_softmax)
}

/// [`dense_reference`] on the fused softmax of `eft-kernels`: what `full` and the mechanisms that
/// attend densely over a few keys run (the reference keeps burn's composed softmax).
pub fn dense_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    // Scaling q (N·D values) instead of the scores (N² values) saves a pass over the scores.
    let head_dim = q.dims()[3];
    let scores = (q / (head_dim as f64).sqrt()).matmul(k.transpose());
    attend_with(scores, v, blocked, eft_kernels::softmax)
}

fn reference_softmax(x: Tensor<4>) -> Tensor<4> {
    softmax(x, 3)
}

/// `softmax(scores, blocked → −∞)·v` for scores from anywhere (a learned matrix, a sum of terms),
/// with the same convention: a query that sees no key outputs zeros.
///
/// # Shapes
/// - `scores`: `[B, H, Nq, Nk]`; `v`: `[B, H, Nk, D]`
/// - `blocked`: broadcastable to `[B, H, Nq, Nk]`
/// - output: `[B, H, Nq, D]`
pub fn attend_scores(
    scores: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
) -> Tensor<4> {
    attend_with(scores, v, blocked, reference_softmax)
}

/// [`attend_scores`] on the fused softmax of `eft-kernels`.
pub fn attend(scores: Tensor<4>, v: Tensor<4>, blocked: Option<Tensor<4, Bool>>) -> Tensor<4> {
    attend_with(scores, v, blocked, eft_kernels::softmax)
}

fn attend_with(
    scores: Tensor<4>,
    v: Tensor<4>,
    blocked: Option<Tensor<4, Bool>>,
    softmax: fn(Tensor<4>) -> Tensor<4>,
) -> Tensor<4> {
    let Some(mask) = blocked else {
        return softmax(scores).matmul(v);
    };
    let mask = mask.expand(scores.dims());
    // Zeroes rows with nothing visible.
    let visible = crate::mask::visible_as(mask.clone(), scores.dtype());
    let weights = softmax(crate::mask::block_out(scores, mask)) * visible;
    weights.matmul(v)
}
