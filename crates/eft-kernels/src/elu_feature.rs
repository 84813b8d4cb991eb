//! `φ(x) = elu(x) + 1`, linear attention's feature map, as one operation with its own backward
//! pass: `x + 1` above zero, `exp(x)` at or below, so `φ > 0`. The backward pass reads only the
//! output (`φ′ = min(φ, 1)`), which the attention op keeps anyway; burn's composed `elu` keeps
//! its masks and exponentials besides, and evaluates them one element at a time.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Scalar, Tensor};

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`elu_plus_one`].
#[backend_extension(Autodiff, Flex)]
pub trait EluFeatureBackend: Backend {
    /// `elu(x) + 1`, element-wise.
    fn elu_plus_one(x: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_forward::<Self>(x)
    }

    /// `dy · min(y, 1)` from the output `y`.
    fn elu_plus_one_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_backward::<Self>(y, dy)
    }
}

/// The portable map: `relu(x) + exp(min(x, 0))`, i.e. `x + 1` above zero, `exp(x)` at or below.
fn generic_forward<B: Backend>(x: FloatTensor<B>) -> FloatTensor<B> {
    let below = B::float_exp(B::float_clamp_max(x.clone(), Scalar::Float(0.0)));
    B::float_add(B::relu(x), below)
}

/// The portable gradient `dy · min(y, 1)`.
fn generic_backward<B: Backend>(y: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    B::float_mul(dy, B::float_clamp_max(y, Scalar::Float(1.0)))
}

/// `elu(x) + 1` element-wise, differentiable, fused on burn's Flex backend in f32.
pub fn elu_plus_one<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let extension = extension_runs_on(&x.device());
    let x = x.into_dispatch();
    Tensor::from_dispatch(match extension {
        true => <Dispatch as EluFeatureBackend>::elu_plus_one(x),
        false => generic_forward::<Dispatch>(x),
    })
}

impl EluFeatureBackend for Flex {
    fn elu_plus_one(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match cpu::contiguous_f32(&x) {
            Some(c) => cpu::tensor(
                cpu::rowwise::elu_plus_one(cpu::values(&c)),
                c.layout().shape().clone(),
            ),
            None => generic_forward::<Self>(x),
        }
    }

    fn elu_plus_one_backward(y: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        match (cpu::contiguous_f32(&y), cpu::contiguous_f32(&dy)) {
            (Some(yc), Some(gc)) => cpu::tensor(
                cpu::rowwise::elu_plus_one_backward(cpu::values(&yc), cpu::values(&gc)),
                yc.layout().shape().clone(),
            ),
            _ => generic_backward::<Self>(y, dy),
        }
    }
}

#[derive(Debug)]
struct EluFeatureGrad;

impl<B: Backend + EluFeatureBackend> Backward<B, 1> for EluFeatureGrad {
    type State = FloatTensor<B>;

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        if let Some(parent) = &ops.parents[0] {
            grads.register::<B>(parent.id, B::elu_plus_one_backward(ops.state, dy));
        }
    }
}

impl<B: Backend + EluFeatureBackend, C: CheckpointStrategy> EluFeatureBackend for Autodiff<B, C> {
    fn elu_plus_one(x: FloatTensor<Self>) -> FloatTensor<Self> {
        match EluFeatureGrad
            .prepare::<C>([x.node()])
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let y = B::elu_plus_one(x.into_primitive());
                prep.finish(y.clone(), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::elu_plus_one(x.into_primitive())),
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
    fn fused_feature_map_and_its_gradient_match_burns_elu() {
        let device = Device::flex().autodiff();
        for (seed, shape) in [[1, 1, 1], [3, 9, 17], [2, 100, 300]]
            .into_iter()
            .enumerate()
        {
            let x = (random(shape, seed as u64, &device) * 3.0).require_grad();
            let w = random(shape, 10 + seed as u64, &device);
            let (y, want) = (
                elu_plus_one(x.clone()),
                activation::elu(x.clone(), 1.0) + 1.0,
            );
            assert_close("elu + 1", y.clone(), want.clone(), 1e-6);
            let (g, gw) = (
                (y * w.clone()).sum().backward(),
                (want * w).sum().backward(),
            );
            assert_close("dx", x.grad(&g).unwrap(), x.grad(&gw).unwrap(), 1e-6);
        }
    }

    #[test]
    fn the_portable_form_equals_the_fused_one() {
        let device = Device::flex();
        let x = random([4, 33, 65], 7, &device) * 3.0;
        let dy = random([4, 33, 65], 8, &device);
        let plain = |t: &Tensor<3>| t.clone().into_dispatch();
        let t = Tensor::<3>::from_dispatch;
        let slow = generic_forward::<Dispatch>(plain(&x));
        let fast = <Dispatch as EluFeatureBackend>::elu_plus_one(plain(&x));
        assert_close("forward", t(fast.clone()), t(slow.clone()), 1e-6);
        let slow_g = generic_backward::<Dispatch>(slow, plain(&dy));
        let fast_g = <Dispatch as EluFeatureBackend>::elu_plus_one_backward(fast, plain(&dy));
        assert_close("backward", t(fast_g), t(slow_g), 1e-6);
    }
}
