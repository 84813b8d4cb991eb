//! Materialised softmax attention as one operation with its own backward pass: what `full` runs.
//!
//! O(N²·D) time and O(N²) memory held for the backward pass: the probabilities, nothing else of
//! size N² (autodiff of the composed form keeps the scores, the exponentials and the quotient
//! besides). The backward pass reads the probabilities instead of recomputing them: four
//! products per head against flash's five. On burn's Flex backend in f32 both passes run the
//! fused kernel of [`crate::cpu`]; elsewhere the tensor-op version below, which the kernel is
//! tested against.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Scalar, Tensor};

use crate::attention_op::{autodiff_attention_op, key_bias};
use crate::cpu;
use crate::flash_reference::{has_visible, scores};
use crate::routing::extension_runs_on;
use crate::softmax::generic_softmax;

/// Query rows per chunk of the fused kernel: each thread's backward transient is `CHUNK × N`.
const CHUNK: usize = 64;

/// The backend operations behind [`materialised_attention`].
#[backend_extension(Autodiff, Flex)]
pub trait MaterialisedBackend: Backend {
    /// `softmax(q·kᵀ/√D + key_bias [+ causal])·v` with the `N × N` probabilities in memory.
    fn materialised_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        Self::materialised_forward(q, k, v, key_bias, causal).0
    }

    /// The forward pass alone: the output `[B, H, N, D]` and the probabilities `[B, H, N, N]`.
    fn materialised_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_forward::<Self>(q, k, v, key_bias, causal)
    }

    /// The backward pass alone: `(dq, dk, dv)` from the inputs, the output, the probabilities
    /// and the output's gradient.
    #[allow(clippy::too_many_arguments)]
    fn materialised_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (key_bias, causal);
        generic_backward::<Self>(q, k, v, out, probs, grad_out)
    }
}

/// Softmax attention over every unmasked key, the `N × Nk` probabilities kept for the backward
/// pass. A query that sees no key (all padding, or causal before the first real key) outputs
/// zeros. Causal means key `j` is hidden from query `i` when `j > i`.
///
/// # Shapes
/// - `q`: `[B, H, N, D]`; `k`, `v`: `[B, H, Nk, D]` (`Nk = N` for self-attention)
/// - `key_padding`: `[B, Nk]` floats, 1 at padding and 0 at real tokens, or `None`
/// - output: `[B, H, N, D]`
pub fn materialised_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2>>,
    causal: bool,
) -> Tensor<4> {
    let extension = extension_runs_on(&q.device());
    let bias = key_bias(key_padding, &k).into_dispatch();
    let (q, k, v) = (q.into_dispatch(), k.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(match extension {
        true => <Dispatch as MaterialisedBackend>::materialised_attention(q, k, v, bias, causal),
        false => generic_forward::<Dispatch>(q, k, v, bias, causal).0,
    })
}

/// The portable forward pass from tensor ops.
fn generic_forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    bias: FloatTensor<B>,
    causal: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (n, nk) = (q.shape()[2], k.shape()[2]);
    let s = scores::<B>(&q, &k, &bias, &(0..n), &(0..nk), causal); // [B, H, N, Nk]
    // Blocked keys get exactly zero from the softmax; rows that see nothing are zeroed here.
    let probs = B::float_mul(generic_softmax::<B>(s), has_visible::<B>(&bias, causal));
    (B::float_matmul(probs.clone(), v), probs)
}

/// The portable backward pass from tensor ops (for any saved `[B, H, N, N]` probabilities).
pub(crate) fn generic_backward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    out: FloatTensor<B>,
    probs: FloatTensor<B>,
    grad_out: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let d = q.shape()[3];
    let dv = B::float_matmul(B::float_transpose(probs.clone()), grad_out.clone());
    let dp = B::float_matmul(grad_out.clone(), B::float_transpose(v));
    let delta = B::float_sum_dim(B::float_mul(grad_out, out), 3); // [B, H, N, 1]
    let ds = B::float_mul(probs, B::float_sub(dp, delta));
    let ds = B::float_mul_scalar(ds, Scalar::Float(1.0 / (d as f64).sqrt()));
    let dq = B::float_matmul(ds.clone(), k);
    let dk = B::float_matmul(B::float_transpose(ds), q);
    (dq, dk, dv)
}

impl MaterialisedBackend for Flex {
    fn materialised_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias) {
            Some(x) => x.materialised_forward(causal, CHUNK),
            None => generic_forward::<Self>(q, k, v, key_bias, causal),
        }
    }

    fn materialised_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        probs: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias).and_then(|x| {
            let kernel = cpu::materialised::backward;
            x.gradients((&out, &probs), &grad_out, (causal, CHUNK), &kernel)
        });
        match fused {
            Some(grads) => grads,
            None => generic_backward::<Self>(q, k, v, out, probs, grad_out),
        }
    }
}

autodiff_attention_op!(Materialised for MaterialisedBackend,
    materialised_attention => materialised_forward, materialised_backward, {
    causal: bool,
});

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{check_attention_op, random};

    fn check(dims: [usize; 4], real: &[usize], causal: bool, seed: u64) {
        check_keys(dims, dims[2], real, causal, seed);
    }

    fn check_keys(dims: [usize; 4], keys: usize, real: &[usize], causal: bool, seed: u64) {
        check_attention_op(
            &format!("materialised causal={causal}"),
            (dims, keys),
            real,
            seed,
            &|q, k, v, pad| materialised_attention(q, k, v, Some(pad), causal),
            &|q, k, v, bias| generic_forward::<Dispatch>(q, k, v, bias, causal),
        );
    }

    #[test]
    fn fused_equals_the_tensor_op_path() {
        // Odd lengths, several row chunks (N > 64), padding, causal, a query that sees nothing.
        check([2, 3, 7, 4], &[7, 3], false, 1);
        check([2, 3, 7, 4], &[7, 3], true, 5);
        check([1, 2, 130, 16], &[130], true, 9);
        check([2, 2, 70, 8], &[70, 41], false, 13);
        check([1, 1, 1, 3], &[1], true, 17);
        // Fewer keys than queries and more (Linformer's projected keys, Nyström's landmarks).
        check_keys([2, 2, 70, 8], 9, &[9, 5], false, 21);
        check_keys([1, 3, 6, 4], 90, &[77], false, 25);
    }

    #[test]
    fn the_fused_passes_reproduce_bit_for_bit() {
        let device = Device::flex().autodiff();
        // Drawn once: tests running beside this one share the device's generator.
        let input = random([2, 2, 90, 8], 3, &device);
        let run = || {
            let x = input.clone().require_grad();
            let out = materialised_attention(x.clone(), x.clone() * 0.5, x.clone(), None, true);
            let g = x.grad(&out.clone().sum().backward()).unwrap();
            [out.inner(), g].map(crate::test_util::values)
        };
        assert_eq!(run(), run());
    }
}
