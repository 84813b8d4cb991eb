//! Exact GELU, `x·Φ(x)`, as one operation with its own backward pass; on Flex in f32 both run a
//! vectorised kernel (burn Flex evaluates `erf` one element at a time).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::ops::ActivationOps;
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::Tensor;

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`gelu`].
#[backend_extension(Autodiff, Flex)]
pub trait GeluBackend: Backend {
    /// Exact GELU, element-wise.
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu(x)
    }

    /// `dy · gelu′(x)`.
    fn gelu_exact_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        Self::gelu_backward(x, dy)
    }
}

/// Exact GELU `x·Φ(x)`, differentiable, fused on burn's Flex backend in f32.
pub fn gelu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let extension = extension_runs_on(&x.device());
    let x = x.into_dispatch();
    Tensor::from_dispatch(match extension {
        true => <Dispatch as GeluBackend>::gelu_exact(x),
        false => Dispatch::gelu(x),
    })
}

impl GeluBackend for Flex {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match cpu::contiguous_f32(&x) {
            Some(c) => cpu::tensor(
                cpu::rowwise::gelu(cpu::values(&c)),
                c.layout().shape().clone(),
            ),
            None => Self::gelu(x),
        }
    }

    fn gelu_exact_backward(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        match (cpu::contiguous_f32(&x), cpu::contiguous_f32(&dy)) {
            (Some(xc), Some(gc)) => cpu::tensor(
                cpu::rowwise::gelu_backward(cpu::values(&xc), cpu::values(&gc)),
                xc.layout().shape().clone(),
            ),
            _ => Self::gelu_backward(x, dy),
        }
    }
}

#[derive(Debug)]
struct GeluGrad;

impl<B: Backend + GeluBackend> Backward<B, 1> for GeluGrad {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        if let Some(parent) = &ops.parents[0] {
            grads.register::<B>(parent.id, B::gelu_exact_backward(ops.state, dy));
        }
    }
}

impl<B: Backend + GeluBackend, C: CheckpointStrategy> GeluBackend for Autodiff<B, C> {
    fn gelu_exact(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match GeluGrad.prepare::<C>([x.node()]).compute_bound().stateful() {
            OpsKind::Tracked(prep) => {
                let x = x.into_primitive();
                prep.finish(x.clone(), B::gelu_exact(x))
            }
            OpsKind::UnTracked(prep) => prep.finish(B::gelu_exact(x.into_primitive())),
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
    fn fused_gelu_and_its_gradient_match_burns() {
        let device = Device::flex().autodiff();
        for (seed, shape) in [[1, 1, 1], [3, 9, 17], [2, 100, 300]]
            .into_iter()
            .enumerate()
        {
            let x = (random(shape, seed as u64, &device) * 3.0).require_grad();
            let w = random(shape, 10 + seed as u64, &device);
            let (y, want) = (gelu(x.clone()), activation::gelu(x.clone()));
            assert_close("gelu", y.clone(), want.clone(), 1e-6);
            let (g, gw) = (
                (y * w.clone()).sum().backward(),
                (want * w).sum().backward(),
            );
            assert_close("dx", x.grad(&g).unwrap(), x.grad(&gw).unwrap(), 1e-5);
        }
    }
}
