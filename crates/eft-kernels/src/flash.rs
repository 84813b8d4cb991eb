//! Tiled exact attention with an online softmax, and its recomputing backward pass.
//!
//! O(N²·D) time like full attention, but O(N·D) memory held for the backward pass (output,
//! one log-sum-exp per query) and O(tile²) transient memory per step. On burn's Flex backend
//! in f32 both passes run the fused kernel of [`crate::cpu`]; elsewhere the tensor-op version
//! of [`crate::flash_reference`].

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;

use crate::attention_op::{Saved, autodiff_attention_op, key_bias};
use crate::cpu;
use crate::flash_reference as reference;
use crate::routing::extension_runs_on;

/// Score given to blocked query–key pairs before the softmax, by every mechanism.
///
/// Finite, so a row with every key blocked stays free of NaN, and large enough that `exp` of it
/// underflows to exactly zero beside any real score.
pub const BLOCKED_SCORE: f32 = -1.0e9;

/// The blocked score in a type narrower than f32 (f16 tops out at 65504): far below any real
/// score and finite, so `0 · blocked` and `blocked − blocked` stay numbers.
pub const LOW_PRECISION_BLOCKED_SCORE: f32 = -3.0e4;

/// The score that blocks a key in tensors of `dtype`.
pub fn blocked_score(dtype: burn::tensor::DType) -> f32 {
    match dtype {
        burn::tensor::DType::F32 | burn::tensor::DType::F64 => BLOCKED_SCORE,
        _ => LOW_PRECISION_BLOCKED_SCORE,
    }
}

/// The backend operations behind [`flash_attention`].
#[backend_extension(Autodiff, Flex)]
pub trait FlashBackend: Backend {
    /// Exact attention `softmax(q·kᵀ/√D + key_bias [+ causal])·v`, computed in tiles.
    fn flash_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        tile: usize,
    ) -> FloatTensor<Self> {
        Self::flash_forward(q, k, v, key_bias, causal, tile).0
    }

    /// The forward pass alone: the output `[B, H, N, D]` and each query's log-sum-exp
    /// `[B, H, N, 1]`, which the backward pass recomputes the probabilities from.
    fn flash_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        tile: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        reference::forward::<Self>(q, k, v, key_bias, causal, tile)
    }

    /// The backward pass alone: `(dq, dk, dv)` from the forward's inputs, output, log-sum-exp
    /// and the output's gradient.
    #[allow(clippy::too_many_arguments)]
    fn flash_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
        tile: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let saved = Saved::new(q, k, v, key_bias, out, lse);
        reference::backward::<Self>(saved, grad_out, causal, tile)
    }
}

/// Exact softmax attention in `tile × tile` blocks, without an `N × N` buffer forward or backward.
///
/// A query that sees no key (all padding, or causal before the first real key) outputs zeros.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, H, N, D]`
/// - `key_padding`: `[B, N]` floats, 1 at padding and 0 at real tokens, or `None`
/// - output: `[B, H, N, D]`
pub fn flash_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2>>,
    causal: bool,
    tile: usize,
) -> Tensor<4> {
    let extension = extension_runs_on(&q.device());
    let bias = key_bias(key_padding, &k).into_dispatch();
    let (q, k, v, tile) = (
        q.into_dispatch(),
        k.into_dispatch(),
        v.into_dispatch(),
        tile.max(1),
    );
    Tensor::from_dispatch(match extension {
        true => <Dispatch as FlashBackend>::flash_attention(q, k, v, bias, causal, tile),
        false => reference::forward::<Dispatch>(q, k, v, bias, causal, tile).0,
    })
}

impl FlashBackend for Flex {
    fn flash_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        tile: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias) {
            Some(x) => x.forward(causal, tile),
            None => reference::forward::<Self>(q, k, v, key_bias, causal, tile),
        }
    }

    fn flash_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        lse: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
        tile: usize,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias).and_then(|x| {
            x.gradients(
                (&out, &lse),
                &grad_out,
                (causal, tile),
                &cpu::flash::backward,
            )
        });
        match fused {
            Some(grads) => grads,
            None => {
                let saved = Saved::new(q, k, v, key_bias, out, lse);
                reference::backward::<Self>(saved, grad_out, causal, tile)
            }
        }
    }
}

autodiff_attention_op!(Flash for FlashBackend, flash_attention => flash_forward, flash_backward, {
    causal: bool,
    tile: usize,
});
