//! Boolean masks over the `N × N` score matrix, `true` where a query must not see a key.
//!
//! Dense masks are for the reference and for mechanisms whose cost is quadratic anyway.

use burn::tensor::{Bool, Device, Tensor};

/// Keys that are padding, broadcast over heads and queries: `[B, 1, 1, N]`.
pub fn padding_blocked(key_padding: Tensor<2, Bool>) -> Tensor<4, Bool> {
    let [batch, len] = key_padding.dims();
    key_padding.reshape([batch, 1, 1, len])
}

/// Keys after the query (`j > i`): `[1, 1, N, N]`.
pub fn causal_blocked(len: usize, device: &Device) -> Tensor<4, Bool> {
    Tensor::<2, Bool>::tril_mask([len, len], 0, device).reshape([1, 1, len, len])
}

/// The union of the padding and causal masks of an input, `[B | 1, 1, N | 1, N]`, or `None`.
pub fn blocked_positions(
    key_padding: Option<Tensor<2, Bool>>,
    causal: bool,
    len: usize,
    device: &Device,
) -> Option<Tensor<4, Bool>> {
    let causal = causal.then(|| causal_blocked(len, device));
    match (key_padding.map(padding_blocked), causal) {
        (Some(p), Some(c)) => {
            let shape = [p.dims()[0], 1, len, len];
            Some(p.expand(shape).bool_or(c.expand(shape)))
        }
        (p, c) => p.or(c),
    }
}

/// `x` with its `blocked` positions set to the blocked score of its float type (finite in f16).
pub(crate) fn block_out<const D: usize>(
    x: burn::tensor::Tensor<D>,
    blocked: burn::tensor::Tensor<D, burn::tensor::Bool>,
) -> burn::tensor::Tensor<D> {
    let score = eft_kernels::blocked_score(x.dtype());
    x.mask_fill(blocked, score)
}

/// 1 where `blocked` is false, 0 where it is true, in float type `dtype`.
pub(crate) fn visible_as<const D: usize>(
    blocked: burn::tensor::Tensor<D, burn::tensor::Bool>,
    dtype: burn::tensor::DType,
) -> burn::tensor::Tensor<D> {
    blocked.bool_not().float().cast(dtype)
}
