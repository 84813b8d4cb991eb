//! Block-sparse attention over a [`BlockPattern`] as one operation with its own backward pass.
//!
//! O(N·(K·b + G)·D) time and O(N·(K·b + G)) memory held for the backward pass (the probabilities
//! of the scored pairs). On burn's Flex backend in f32 both passes run the fused kernel of
//! [`crate::cpu`]; the portable body below is the dense form with the pattern as a mask (O(N²),
//! a reference, not a fast path): `eft-attention` runs its own tensor-op engine wherever
//! [`fused_cpu`](crate::fused_cpu) says no.

use std::sync::Arc;

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Scalar, Shape, Tensor, TensorData};

use crate::attention_op::{autodiff_attention_op, key_bias};
use crate::materialised::generic_backward;
use crate::routing::extension_runs_on;
use crate::softmax::generic_softmax;
use crate::{BLOCKED_SCORE, BlockPattern, cpu};

/// The backend operations behind [`block_sparse_attention`].
#[backend_extension(Autodiff, Flex)]
pub trait BlockSparseBackend: Backend {
    /// Softmax attention over the pairs `pattern` allows (and the key bias and causal mask).
    fn block_sparse_attention(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        pattern: Arc<BlockPattern>,
    ) -> FloatTensor<Self> {
        Self::block_sparse_forward(q, k, v, key_bias, causal, pattern).0
    }

    /// The forward pass alone: the output `[B, H, N, D]` and the probabilities the backward
    /// pass reads, in a layout of the implementation's choosing.
    fn block_sparse_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        pattern: Arc<BlockPattern>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_forward::<Self>(q, k, v, key_bias, causal, &pattern)
    }

    /// The backward pass alone: `(dq, dk, dv)`.
    #[allow(clippy::too_many_arguments)]
    fn block_sparse_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
        pattern: Arc<BlockPattern>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let _ = (key_bias, causal, pattern);
        generic_backward::<Self>(q, k, v, out, saved, grad_out)
    }
}

/// Softmax attention restricted to `pattern`'s pairs, with the key padding and causal masks.
/// A query that sees no key outputs zeros.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, H, N, D]` with `N = pattern.len`; `pattern.heads` is 1 or `H`
/// - `key_padding`: `[B, N]` floats, 1 at padding and 0 at real tokens, or `None`
/// - output: `[B, H, N, D]`
///
/// # Panics
/// Panics if the length or heads do not fit the pattern; mechanisms build the pattern from the
/// input's own shape.
pub fn block_sparse_attention(
    q: Tensor<4>,
    k: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2>>,
    causal: bool,
    pattern: Arc<BlockPattern>,
) -> Tensor<4> {
    let [_, heads, len, _] = q.dims();
    assert_eq!(len, pattern.len, "pattern built for another length");
    assert!(
        pattern.heads == 1 || pattern.heads == heads,
        "pattern heads"
    );
    let extension = extension_runs_on(&q.device());
    let bias = key_bias(key_padding, &k).into_dispatch();
    let (q, k, v) = (q.into_dispatch(), k.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(match extension {
        true => {
            <Dispatch as BlockSparseBackend>::block_sparse_attention(q, k, v, bias, causal, pattern)
        }
        false => generic_forward::<Dispatch>(q, k, v, bias, causal, &pattern).0,
    })
}

/// The portable forward pass: the dense form with the pattern as a mask. Saves the `N × N`
/// probabilities, which [`generic_backward`] reads.
fn generic_forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    key_bias: FloatTensor<B>,
    causal: bool,
    pattern: &BlockPattern,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let n = pattern.len;
    let d = q.shape()[3];
    let blocked: Vec<f32> = (0..pattern.heads)
        .flat_map(|h| (0..n * n).map(move |p| (h, p / n, p % n)))
        .map(|(h, i, j)| {
            let visible = pattern.allows(h, i, j) && !(causal && j > i);
            if visible { 0.0 } else { BLOCKED_SCORE }
        })
        .collect();
    let shape = Shape::new([1, pattern.heads, n, n]);
    let bias = B::float_add(
        B::float_from_data(TensorData::new(blocked, shape), &q.device()),
        key_bias,
    ); // [B, Hp, N, N]
    let bools = burn::backend::get_or_init_device_settings::<B>(&q.device()).bool_dtype;
    let visible = B::bool_into_float(
        B::float_greater_elem(
            bias.clone(),
            Scalar::Float(f64::from(BLOCKED_SCORE) / 2.0),
            bools,
        ),
        crate::flash_reference::dtype_of::<B>(&bias),
    );
    let scores = B::float_matmul(
        B::float_mul_scalar(q, Scalar::Float(1.0 / (d as f64).sqrt())),
        B::float_transpose(k),
    );
    let probs = B::float_mul(generic_softmax::<B>(B::float_add(scores, bias)), visible);
    (B::float_matmul(probs.clone(), v), probs)
}

impl BlockSparseBackend for Flex {
    fn block_sparse_forward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
        pattern: Arc<BlockPattern>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias) {
            Some(x) => x.block_sparse_forward(&pattern, causal),
            None => generic_forward::<Self>(q, k, v, key_bias, causal, &pattern),
        }
    }

    fn block_sparse_backward(
        q: FloatTensor<Self>,
        k: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        saved: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
        pattern: Arc<BlockPattern>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = cpu::heads::FlexInputs::new(&q, &k, &v, &key_bias).and_then(|x| {
            let kernel = |x: &cpu::heads::Inputs<'_>,
                          out: &[f32],
                          saved: &[f32],
                          g: cpu::heads::Heads<'_>| {
                cpu::block_sparse::backward(x, &pattern, out, saved, g)
            };
            x.gradients((&out, &saved), &grad_out, (causal, 0), &kernel)
        });
        match fused {
            Some(grads) => grads,
            None => generic_backward::<Self>(q, k, v, out, saved, grad_out),
        }
    }
}

autodiff_attention_op!(BlockSparse for BlockSparseBackend,
    block_sparse_attention => block_sparse_forward, block_sparse_backward, {
    causal: bool,
    pattern: Arc<BlockPattern>,
});

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ElementRule;
    use crate::test_util::check_attention_op;

    /// A pattern of `block`s over `len` where query block `i` gathers blocks `i + o` for each
    /// offset (per head when `per_head`: head `h` shifts them by `h`), plus globals.
    fn pattern(
        len: usize,
        block: usize,
        offsets: &[isize],
        per_head: Option<usize>,
        globals: (&[usize], &[usize]),
        rule: ElementRule,
    ) -> BlockPattern {
        let nb = len.div_ceil(block);
        let heads = per_head.unwrap_or(1);
        let key_blocks = (0..heads)
            .flat_map(|h| (0..nb).map(move |i| (h, i)))
            .flat_map(|(h, i)| {
                offsets.iter().map(move |&o| {
                    let j = i as isize + o + h as isize;
                    (0..nb as isize).contains(&j).then_some(j as usize)
                })
            })
            .collect();
        BlockPattern {
            len,
            block,
            heads,
            per_query: offsets.len(),
            key_blocks,
            global_keys: globals.0.to_vec(),
            global_queries: globals.1.to_vec(),
            rule,
        }
    }

    fn check(dims: [usize; 4], real: &[usize], causal: bool, pattern: BlockPattern, seed: u64) {
        let pattern = Arc::new(pattern);
        check_attention_op(
            &format!("block-sparse causal={causal}"),
            (dims, dims[2]),
            real,
            seed,
            &|q, k, v, pad| block_sparse_attention(q, k, v, Some(pad), causal, pattern.clone()),
            &|q, k, v, bias| generic_forward::<Dispatch>(q, k, v, bias, causal, &pattern),
        );
    }

    #[test]
    fn fused_equals_the_dense_masked_form() {
        let window = ElementRule::Window {
            window: 5,
            dilation: 2,
        };
        // Local blocks; a length that is not a multiple of the block; padding; causal.
        let local = |n| pattern(n, 8, &[0], None, (&[], &[]), ElementRule::All);
        check([2, 2, 29, 4], &[29, 17], false, local(29), 1);
        check([2, 2, 29, 4], &[29, 17], true, local(29), 2);
        // A dilated window over three neighbouring blocks, causal.
        let sliding = pattern(40, 6, &[-1, 0, 1], None, (&[], &[]), window);
        check([1, 3, 40, 8], &[40], true, sliding, 3);
        // Per-head key blocks, global keys inside the gathered blocks, global queries.
        let global = pattern(
            37,
            5,
            &[0, 1],
            Some(2),
            (&[0, 12, 36], &[0, 12]),
            ElementRule::All,
        );
        check([2, 2, 37, 4], &[37, 30], false, global.clone(), 4);
        check([2, 2, 37, 4], &[37, 30], true, global, 5);
        // A query block that sees only padding: its rows output zeros.
        check([1, 2, 20, 4], &[4], false, local(20), 6);
    }
}
