//! The autodiff side every attention op of this crate shares: q, k, v and a key bias in, the
//! output out; the backward pass reads the inputs, the output and one more tensor the forward
//! pass kept (flash's log-sum-exp, the probabilities of `full` or of a sparse pattern).

use std::marker::PhantomData;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend};
use burn::tensor::Tensor;

use crate::blocked_score;

/// The key bias every attention op takes, `[B, 1, 1, N]`: the blocked score at padding (`1` in
/// `key_padding`, `[B, N]`), 0 at real keys; all zeros without padding. `keys` gives B and N.
pub(crate) fn key_bias(key_padding: Option<Tensor<2>>, keys: &Tensor<4>) -> Tensor<4> {
    let [batch, _, len, _] = keys.dims();
    // In the keys' precision: low-precision models must not meet an f32 bias.
    let dtype = keys.dtype();
    match key_padding {
        Some(p) => p.cast(dtype) * blocked_score(dtype),
        None => Tensor::zeros([batch, len], (&keys.device(), dtype)),
    }
    .reshape([batch, 1, 1, len])
}

/// What one attention op's backward pass reads.
#[derive(Debug, Clone)]
pub(crate) struct Saved<B: Backend> {
    pub q: FloatTensor<B>,
    pub k: FloatTensor<B>,
    pub v: FloatTensor<B>,
    pub bias: FloatTensor<B>,
    pub out: FloatTensor<B>,
    /// What else the forward pass kept.
    pub kept: FloatTensor<B>,
}

impl<B: Backend> Saved<B> {
    /// The inputs, the output and what else the forward pass kept.
    pub fn new(
        q: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        bias: FloatTensor<B>,
        out: FloatTensor<B>,
        kept: FloatTensor<B>,
    ) -> Self {
        Self {
            q,
            k,
            v,
            bias,
            out,
            kept,
        }
    }
}

/// An attention op on the inner backend, with its options (causal, tile, pattern) captured.
pub(crate) trait AttentionOp<B: Backend>: std::fmt::Debug + Clone + Send + 'static {
    /// The output and what the backward pass needs besides the inputs and the output.
    fn forward(
        &self,
        q: FloatTensor<B>,
        k: FloatTensor<B>,
        v: FloatTensor<B>,
        bias: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>);

    /// `(dq, dk, dv)`.
    fn backward(
        &self,
        saved: Saved<B>,
        grad_out: FloatTensor<B>,
    ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>);
}

/// The backward step of one op type.
#[derive(Debug)]
struct GradOf<Op>(PhantomData<fn() -> Op>);

impl<B: Backend, Op: AttentionOp<B>> Backward<B, 3> for GradOf<Op> {
    type State = (Op, Saved<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let grad_out = grads.consume::<B>(&ops.node);
        let (op, saved) = ops.state;
        let (dq, dk, dv) = op.backward(saved, grad_out);
        for (parent, grad) in ops.parents.iter().zip([dq, dk, dv]) {
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, grad);
            }
        }
    }
}

/// Runs `op` on autodiff tensors: tracked inputs keep what the backward pass reads, untracked
/// ones keep nothing. Gradients flow to q, k and v (the bias is a constant).
pub(crate) fn tracked<B: Backend, C: CheckpointStrategy, Op: AttentionOp<B>>(
    op: Op,
    q: FloatTensor<Autodiff<B, C>>,
    k: FloatTensor<Autodiff<B, C>>,
    v: FloatTensor<Autodiff<B, C>>,
    bias: FloatTensor<Autodiff<B, C>>,
) -> FloatTensor<Autodiff<B, C>> {
    let prep = GradOf::<Op>(PhantomData)
        .prepare::<C>([q.node(), k.node(), v.node()])
        .compute_bound()
        .stateful();
    let (q, k, v, bias) = (
        q.into_primitive(),
        k.into_primitive(),
        v.into_primitive(),
        bias.into_primitive(),
    );
    match prep {
        OpsKind::Tracked(prep) => {
            let (out, kept) = op.forward(q.clone(), k.clone(), v.clone(), bias.clone());
            let saved = Saved::new(q, k, v, bias, out.clone(), kept);
            prep.finish((op, saved), out)
        }
        OpsKind::UnTracked(prep) => prep.finish(op.forward(q, k, v, bias).0),
    }
}

/// Generates, for one attention op of a backend-extension trait, the struct of its options,
/// its [`AttentionOp`] impl (the backend's forward and backward passes given those options) and
/// the `Autodiff` impl of the trait, whose entry point runs [`tracked`]. The passes take
/// `(q, k, v, bias, options…)` and `(q, k, v, bias, out, kept, grad_out, options…)`.
macro_rules! autodiff_attention_op {
    (
        $op:ident for $backend:ident,
        $entry:ident => $forward:ident, $backward:ident,
        { $($option:ident: $ty:ty),* $(,)? }
    ) => {
        /// The op's options, for the shared autodiff plumbing of `attention_op`.
        #[derive(Debug, Clone)]
        struct $op {
            $($option: $ty),*
        }

        impl<B: $backend> $crate::attention_op::AttentionOp<B> for $op {
            fn forward(
                &self,
                q: FloatTensor<B>,
                k: FloatTensor<B>,
                v: FloatTensor<B>,
                bias: FloatTensor<B>,
            ) -> (FloatTensor<B>, FloatTensor<B>) {
                let $op { $($option),* } = self.clone();
                B::$forward(q, k, v, bias, $($option),*)
            }

            fn backward(
                &self,
                s: $crate::attention_op::Saved<B>,
                grad_out: FloatTensor<B>,
            ) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
                let $op { $($option),* } = self.clone();
                B::$backward(s.q, s.k, s.v, s.bias, s.out, s.kept, grad_out, $($option),*)
            }
        }

        impl<B: Backend + $backend, C: CheckpointStrategy> $backend for Autodiff<B, C> {
            fn $entry(
                q: FloatTensor<Self>,
                k: FloatTensor<Self>,
                v: FloatTensor<Self>,
                key_bias: FloatTensor<Self>,
                $($option: $ty),*
            ) -> FloatTensor<Self> {
                $crate::attention_op::tracked::<B, C, _>($op { $($option),* }, q, k, v, key_bias)
            }
        }
    };
}

pub(crate) use autodiff_attention_op;
