//! Performer's positive random features (FAVOR+) as one operation with its own backward pass:
//! from the projections `p = x̃·ωᵀ` (`[B, H, N, m]`) and the scaled inputs `x̃` (`[B, H, N, D]`),
//! `φ = exp(p − ‖x̃‖²/2 − shift)·scale`. The shift keeps the exponent at or below zero: each row's
//! largest projection for queries, the largest of all for keys (a constant of the softmax
//! kernel, so it carries no gradient). The backward pass reads the output:
//! `dp = dφ∘φ`, `dx̃ = −(Σ dφ∘φ)·x̃`.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, backend_extension};
use burn::tensor::{Scalar, Shape, Tensor};

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`favor_features`].
#[backend_extension(Autodiff, Flex)]
pub trait FavorBackend: Backend {
    /// `exp(p − ‖x̃‖²/2 − shift)·scale`; `row_shift` picks each row's max, else the global max.
    fn favor_features(
        p: FloatTensor<Self>,
        x: FloatTensor<Self>,
        row_shift: bool,
        scale: f32,
    ) -> FloatTensor<Self> {
        generic_forward::<Self>(p, x, row_shift, scale)
    }

    /// `(dp, dx̃)` from the output `y`, the inputs' `x̃` and the output's gradient.
    fn favor_features_backward(
        y: FloatTensor<Self>,
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_backward::<Self>(y, x, dy)
    }
}

/// FAVOR+ features `exp(p − ‖x̃‖²/2 − shift)·scale`, differentiable in `p` and `x̃`, fused on
/// burn's Flex backend in f32.
///
/// # Shapes
/// - `p`: `[B, H, N, m]`; `x`: `[B, H, N, D]` → `[B, H, N, m]`
pub fn favor_features(p: Tensor<4>, x: Tensor<4>, row_shift: bool, scale: f32) -> Tensor<4> {
    let extension = extension_runs_on(&p.device());
    let (p, x) = (p.into_dispatch(), x.into_dispatch());
    Tensor::from_dispatch(match extension {
        true => <Dispatch as FavorBackend>::favor_features(p, x, row_shift, scale),
        false => generic_forward::<Dispatch>(p, x, row_shift, scale),
    })
}

/// The portable forward pass from tensor ops.
fn generic_forward<B: Backend>(
    p: FloatTensor<B>,
    x: FloatTensor<B>,
    row_shift: bool,
    scale: f32,
) -> FloatTensor<B> {
    let half_sq = B::float_mul_scalar(
        B::float_sum_dim(B::float_mul(x.clone(), x), 3),
        Scalar::Float(0.5),
    ); // [B, H, N, 1]
    // Detached, so that autodiff of this form (the portable path) agrees with the op's backward.
    let shift = B::float_detach(if row_shift {
        B::float_max_dim(p.clone(), 3) // [B, H, N, 1]
    } else {
        B::float_reshape(B::float_max(p.clone()), Shape::new([1, 1, 1, 1]))
    });
    let e = B::float_exp(B::float_sub(B::float_sub(p, half_sq), shift));
    B::float_mul_scalar(e, Scalar::Float(f64::from(scale)))
}

/// The portable backward pass from tensor ops.
fn generic_backward<B: Backend>(
    y: FloatTensor<B>,
    x: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let dp = B::float_mul(dy, y);
    let row = B::float_sum_dim(dp.clone(), 3); // [B, H, N, 1]
    let dx = B::float_neg(B::float_mul(x, row));
    (dp, dx)
}

impl FavorBackend for Flex {
    fn favor_features(
        p: FloatTensor<Self>,
        x: FloatTensor<Self>,
        row_shift: bool,
        scale: f32,
    ) -> FloatTensor<Self> {
        match (cpu::contiguous_f32(&p), cpu::contiguous_f32(&x)) {
            (Some(pc), Some(xc)) => {
                let shape = pc.layout().shape().clone();
                let m = shape[3];
                let y =
                    cpu::rowwise::favor(cpu::values(&pc), cpu::values(&xc), m, row_shift, scale);
                cpu::tensor(y, shape)
            }
            _ => generic_forward::<Self>(p, x, row_shift, scale),
        }
    }

    fn favor_features_backward(
        y: FloatTensor<Self>,
        x: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match (
            cpu::contiguous_f32(&y),
            cpu::contiguous_f32(&x),
            cpu::contiguous_f32(&dy),
        ) {
            (Some(yc), Some(xc), Some(gc)) => {
                let (ys, xs) = (yc.layout().shape().clone(), xc.layout().shape().clone());
                let (dp, dx) = cpu::rowwise::favor_backward(
                    cpu::values(&yc),
                    cpu::values(&xc),
                    cpu::values(&gc),
                    ys[3],
                );
                (cpu::tensor(dp, ys), cpu::tensor(dx, xs))
            }
            _ => generic_backward::<Self>(y, x, dy),
        }
    }
}

#[derive(Debug)]
struct FavorGrad;

impl<B: Backend + FavorBackend> Backward<B, 2> for FavorGrad {
    /// The output and `x̃`.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 2>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let (y, x) = ops.state;
        let (dp, dx) = B::favor_features_backward(y, x, dy);
        for (parent, grad) in ops.parents.iter().zip([dp, dx]) {
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, grad);
            }
        }
    }
}

impl<B: Backend + FavorBackend, C: CheckpointStrategy> FavorBackend for Autodiff<B, C> {
    fn favor_features(
        p: FloatTensor<Self>,
        x: FloatTensor<Self>,
        row_shift: bool,
        scale: f32,
    ) -> FloatTensor<Self> {
        let prep = FavorGrad
            .prepare::<C>([p.node(), x.node()])
            .compute_bound()
            .stateful();
        let (p, x) = (p.into_primitive(), x.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::favor_features(p, x.clone(), row_shift, scale);
                prep.finish((y.clone(), x), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::favor_features(p, x, row_shift, scale)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{assert_close, random};

    /// The fused op against the same formula from differentiable tensor ops (the shift detached).
    #[test]
    fn fused_features_and_their_gradients_match_the_composed_form() {
        let device = Device::flex().autodiff();
        for (seed, row_shift) in [(1, true), (2, false)] {
            let x = (random([2, 3, 17, 5], seed, &device) * 0.5).require_grad();
            let omega = random([5, 11], seed + 10, &device);
            let w = random([2, 3, 17, 11], seed + 20, &device);
            // Each side builds its own graph: burn runs one backward pass per graph.
            let project = || x.clone().matmul(omega.clone().reshape([1, 1, 5, 11]));
            let y = favor_features(project(), x.clone(), row_shift, 0.25);
            let p = project();
            let half_sq = (x.clone() * x.clone()).sum_dim(3) / 2.0;
            let shift = if row_shift {
                p.clone().max_dim(3).detach()
            } else {
                p.clone().max().detach().reshape([1, 1, 1, 1])
            };
            let want = (p - half_sq - shift).exp() * 0.25;
            assert_close("features", y.clone(), want.clone(), 1e-6);
            let (g, gw) = (
                (y * w.clone()).sum().backward(),
                (want * w).sum().backward(),
            );
            assert_close("dx", x.grad(&g).unwrap(), x.grad(&gw).unwrap(), 1e-5);
        }
    }

    #[test]
    fn the_portable_passes_equal_the_fused_ones() {
        let device = Device::flex();
        let (p, x) = (
            random([2, 2, 40, 33], 3, &device),
            random([2, 2, 40, 6], 4, &device),
        );
        let dy = random([2, 2, 40, 33], 5, &device);
        let plain = |t: &Tensor<4>| t.clone().into_dispatch();
        let t = Tensor::<4>::from_dispatch;
        for row_shift in [true, false] {
            let fast =
                <Dispatch as FavorBackend>::favor_features(plain(&p), plain(&x), row_shift, 0.5);
            let slow = generic_forward::<Dispatch>(plain(&p), plain(&x), row_shift, 0.5);
            assert_close("forward", t(fast.clone()), t(slow), 1e-6);
            let (fp, fx) = <Dispatch as FavorBackend>::favor_features_backward(
                fast.clone(),
                plain(&x),
                plain(&dy),
            );
            let (sp, sx) = generic_backward::<Dispatch>(fast, plain(&x), plain(&dy));
            assert_close("dp", t(fp), t(sp), 1e-6);
            assert_close("dx", t(fx), t(sx), 1e-5);
        }
    }
}
