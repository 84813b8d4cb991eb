//! Softmax over the last dimension as one operation with its own backward pass, which keeps only
//! the output (autodiff of the composed form keeps the exponentials, the sums and the quotient).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`softmax`].
#[backend_extension(Autodiff, Flex)]
pub trait SoftmaxBackend: Backend {
    /// `softmax` over the last dimension.
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_softmax::<Self>(x)
    }

    /// The gradient of [`SoftmaxBackend::softmax_last`] from its output `y`:
    /// `y ∘ (dy − Σ dy∘y)`.
    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_softmax_backward::<Self>(y, dy)
    }
}

/// `softmax` over the last dimension, differentiable, fused on burn's Flex backend in f32.
pub fn softmax<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let extension = extension_runs_on(&x.device());
    let x = x.into_dispatch();
    Tensor::from_dispatch(match extension {
        true => <Dispatch as SoftmaxBackend>::softmax_last(x),
        false => generic_softmax::<Dispatch>(x),
    })
}

impl SoftmaxBackend for Flex {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let Some(c) = cpu::contiguous_f32(&x) else {
            return generic_softmax::<Self>(x);
        };
        let shape = c.layout().shape().clone();
        let y = cpu::rowwise::softmax(cpu::values(&c), shape[shape.num_dims() - 1].max(1));
        cpu::tensor(y, shape)
    }

    fn softmax_last_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        let (Some(yc), Some(gc)) = (cpu::contiguous_f32(&y), cpu::contiguous_f32(&dy)) else {
            return generic_softmax_backward::<Self>(y, dy);
        };
        let shape = yc.layout().shape().clone();
        let d = shape[shape.num_dims() - 1].max(1);
        let dx = cpu::rowwise::softmax_backward(cpu::values(&yc), cpu::values(&gc), d);
        cpu::tensor(dx, shape)
    }
}

/// The portable softmax from tensor ops (what the fused kernel is tested against).
pub(crate) fn generic_softmax<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let last = x.shape().num_dims() - 1;
    let m = B::float_max_dim(x.clone(), last);
    let e = B::float_exp(B::float_sub(x, m));
    let sum = B::float_sum_dim(e.clone(), last);
    B::float_div(e, sum)
}

/// The portable softmax gradient.
pub(crate) fn generic_softmax_backward<B: Backend>(
    y: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> FloatTensor<B> {
    let last = y.shape().num_dims() - 1;
    let delta = B::float_sum_dim(B::float_mul(dy.clone(), y.clone()), last);
    B::float_mul(y, B::float_sub(dy, delta))
}

#[derive(Debug)]
struct SoftmaxBackward;

impl<B: Backend + SoftmaxBackend> Backward<B, 1> for SoftmaxBackward {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        if let Some(parent) = &ops.parents[0] {
            grads.register::<B>(parent.id, B::softmax_last_backward(ops.state, dy));
        }
    }
}

impl<B: Backend + SoftmaxBackend, C: CheckpointStrategy> SoftmaxBackend for Autodiff<B, C> {
    fn softmax_last(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = SoftmaxBackward
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful();
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::softmax_last(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::softmax_last(x.into_primitive())),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;
    use burn::tensor::activation;

    use super::*;
    use crate::test_util::{assert_close, random};

    #[test]
    fn fused_softmax_and_its_gradient_match_the_composed_form() {
        let device = Device::flex().autodiff();
        for (seed, shape) in [[3, 5, 1], [2, 7, 33], [1, 4, 130]].into_iter().enumerate() {
            let x = random(shape, seed as u64, &device).require_grad();
            let w = random(shape, 100 + seed as u64, &device);
            let (y, want) = (softmax(x.clone()), activation::softmax(x.clone(), 2));
            assert_close("softmax", y.clone(), want.clone(), 1e-6);
            let (g, gw) = (
                (y * w.clone()).sum().backward(),
                (want * w).sum().backward(),
            );
            assert_close("dx", x.grad(&g).unwrap(), x.grad(&gw).unwrap(), 1e-5);
        }
    }
}
