//! Layer normalisation over the last dimension as one operation with its own backward pass,
//! which keeps the input and two numbers per row (mean, reciprocal deviation) instead of every
//! intermediate of the composed form.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Scalar, Shape, Tensor};

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`layer_norm`].
#[backend_extension(Autodiff, Flex)]
pub trait LayerNormBackend: Backend {
    /// `(x − μ)/√(σ² + ε) · γ + β` over the last dimension (σ² the biased variance).
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        Self::layer_norm_forward(x, gamma, beta, epsilon).0
    }

    /// The output and, per row, `[μ, 1/√(σ² + ε)]` (shape of `x` with a last dimension of 2).
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_forward::<Self>(x, gamma, beta, epsilon)
    }

    /// `(dx, dγ, dβ)` from the input, `γ`, the per-row statistics and the output's gradient.
    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        generic_backward::<Self>(x, gamma, stats, dy)
    }
}

/// Layer normalisation of the last dimension with scale `gamma` and shift `beta` (`[d]` each),
/// differentiable in all three, fused on burn's Flex backend in f32.
pub fn layer_norm<const D: usize>(
    x: Tensor<D>,
    gamma: Tensor<1>,
    beta: Tensor<1>,
    epsilon: f64,
) -> Tensor<D> {
    let extension = extension_runs_on(&x.device());
    let (x, gamma, beta) = (
        x.into_dispatch(),
        gamma.into_dispatch(),
        beta.into_dispatch(),
    );
    Tensor::from_dispatch(match extension {
        true => <Dispatch as LayerNormBackend>::layer_norm_last(x, gamma, beta, epsilon as f32),
        false => generic_forward::<Dispatch>(x, gamma, beta, epsilon as f32).0,
    })
}

/// `x` viewed as `[rows, d]`.
fn rows_of<B: Backend>(x: FloatTensor<B>) -> (FloatTensor<B>, Shape) {
    let shape = x.shape();
    let d = shape[shape.num_dims() - 1];
    let rows = shape.num_elements() / d.max(1);
    (B::float_reshape(x, Shape::new([rows, d])), shape)
}

/// The portable forward pass from tensor ops (what the fused kernel is tested against).
pub(crate) fn generic_forward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    beta: FloatTensor<B>,
    epsilon: f32,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let (x, shape) = rows_of::<B>(x);
    let mean = B::float_mean_dim(x.clone(), 1); // [rows, 1]
    let centred = B::float_sub(x, mean.clone());
    let var = B::float_mean_dim(B::float_mul(centred.clone(), centred.clone()), 1);
    let rstd = B::float_recip(B::float_sqrt(B::float_add_scalar(
        var,
        Scalar::Float(f64::from(epsilon)),
    )));
    let d = shape[shape.num_dims() - 1];
    let y = B::float_add(
        B::float_mul(
            B::float_mul(centred, rstd.clone()),
            B::float_reshape(gamma, Shape::new([1, d])),
        ),
        B::float_reshape(beta, Shape::new([1, d])),
    );
    let mut stats_shape = shape.clone();
    stats_shape[shape.num_dims() - 1] = 2;
    let stats = B::float_reshape(B::float_cat(vec![mean, rstd], 1), stats_shape);
    (B::float_reshape(y, shape), stats)
}

/// The portable backward pass.
pub(crate) fn generic_backward<B: Backend>(
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    stats: FloatTensor<B>,
    dy: FloatTensor<B>,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let (x, shape) = rows_of::<B>(x);
    let (dy, _) = rows_of::<B>(dy);
    let (stats, _) = rows_of::<B>(stats);
    let [rows, d] = [x.shape()[0], x.shape()[1]];
    let col = |s, i| B::float_slice(s, &[(0..rows).into(), (i..i + 1).into()]);
    let (mean, rstd) = (col(stats.clone(), 0), col(stats, 1));
    let xhat = B::float_mul(B::float_sub(x, mean), rstd.clone());
    let d_beta = B::float_reshape(B::float_sum_dim(dy.clone(), 0), Shape::new([d]));
    let d_gamma = B::float_reshape(
        B::float_sum_dim(B::float_mul(dy.clone(), xhat.clone()), 0),
        Shape::new([d]),
    );
    let g = B::float_mul(dy, B::float_reshape(gamma, Shape::new([1, d])));
    let mean_g = B::float_mean_dim(g.clone(), 1);
    let mean_gh = B::float_mean_dim(B::float_mul(g.clone(), xhat.clone()), 1);
    let dx = B::float_mul(
        rstd,
        B::float_sub(B::float_sub(g, mean_g), B::float_mul(xhat, mean_gh)),
    );
    (B::float_reshape(dx, shape), d_gamma, d_beta)
}

impl LayerNormBackend for Flex {
    fn layer_norm_forward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        let all = (
            cpu::contiguous_f32(&x),
            cpu::contiguous_f32(&gamma),
            cpu::contiguous_f32(&beta),
        );
        let (Some(xc), Some(gc), Some(bc)) = all else {
            return generic_forward::<Self>(x, gamma, beta, epsilon);
        };
        let shape = xc.layout().shape().clone();
        let (y, stats) = cpu::rowwise::layer_norm(
            cpu::values(&xc),
            cpu::values(&gc),
            cpu::values(&bc),
            epsilon,
        );
        let mut stats_shape = shape.clone();
        stats_shape[shape.num_dims() - 1] = 2;
        (cpu::tensor(y, shape), cpu::tensor(stats, stats_shape))
    }

    fn layer_norm_backward(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        stats: FloatTensor<Self>,
        dy: FloatTensor<Self>,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let all = (
            cpu::contiguous_f32(&x),
            cpu::contiguous_f32(&gamma),
            cpu::contiguous_f32(&stats),
            cpu::contiguous_f32(&dy),
        );
        let (Some(xc), Some(gc), Some(sc), Some(dc)) = all else {
            return generic_backward::<Self>(x, gamma, stats, dy);
        };
        let (dx, dg, db) = cpu::rowwise::layer_norm_backward(
            cpu::values(&xc),
            cpu::values(&gc),
            cpu::values(&sc),
            cpu::values(&dc),
        );
        let d = Shape::new([dg.len()]);
        (
            cpu::tensor(dx, xc.layout().shape().clone()),
            cpu::tensor(dg, d.clone()),
            cpu::tensor(db, d),
        )
    }
}

/// What the backward pass reads.
#[derive(Debug, Clone)]
struct Saved<B: Backend> {
    x: FloatTensor<B>,
    gamma: FloatTensor<B>,
    stats: FloatTensor<B>,
}

#[derive(Debug)]
struct LayerNormGrad;

impl<B: Backend + LayerNormBackend> Backward<B, 3> for LayerNormGrad {
    type State = Saved<B>;

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let Saved { x, gamma, stats } = ops.state;
        let (dx, dg, db) = B::layer_norm_backward(x, gamma, stats, dy);
        for (parent, grad) in ops.parents.iter().zip([dx, dg, db]) {
            if let Some(parent) = parent {
                grads.register::<B>(parent.id, grad);
            }
        }
    }
}

impl<B: Backend + LayerNormBackend, C: CheckpointStrategy> LayerNormBackend for Autodiff<B, C> {
    fn layer_norm_last(
        x: FloatTensor<Self>,
        gamma: FloatTensor<Self>,
        beta: FloatTensor<Self>,
        epsilon: f32,
    ) -> FloatTensor<Self> {
        let prep = LayerNormGrad
            .prepare::<C>([x.node(), gamma.node(), beta.node()])
            .compute_bound()
            .stateful();
        let (x, gamma, beta) = (
            x.into_primitive(),
            gamma.into_primitive(),
            beta.into_primitive(),
        );
        match prep {
            OpsKind::Tracked(prep) => {
                let (y, stats) = B::layer_norm_forward(x.clone(), gamma.clone(), beta, epsilon);
                prep.finish(Saved { x, gamma, stats }, y)
            }
            OpsKind::UnTracked(prep) => {
                prep.finish(B::layer_norm_forward(x, gamma, beta, epsilon).0)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;
    use burn::tensor::Device;
    use burn::tensor::module::layer_norm as burn_layer_norm;

    use super::*;
    use crate::test_util::{assert_close, random, values};

    #[test]
    fn fused_layer_norm_and_its_gradients_match_burns() {
        let device = Device::flex().autodiff();
        for (seed, [b, n, d]) in [[1, 1, 3], [2, 7, 64], [3, 50, 33]].into_iter().enumerate() {
            let s = seed as u64 * 5;
            let x = (random([b, n, d], s, &device) + 0.7).require_grad();
            let gamma = (random([d], s + 1, &device) + 1.0).require_grad();
            let beta = random([d], s + 2, &device).require_grad();
            let w = random([b, n, d], s + 3, &device);
            let y = layer_norm(x.clone(), gamma.clone(), beta.clone(), 1e-6);
            let want = burn_layer_norm(x.clone(), gamma.clone(), Some(beta.clone()), 1e-6);
            assert_close("layer norm", y.clone(), want.clone(), 1e-5);
            let (g, gw) = (
                (y * w.clone()).sum().backward(),
                (want * w).sum().backward(),
            );
            assert_close("dx", x.grad(&g).unwrap(), x.grad(&gw).unwrap(), 1e-5);
            assert_close(
                "dγ",
                gamma.grad(&g).unwrap(),
                gamma.grad(&gw).unwrap(),
                1e-5,
            );
            assert_close("dβ", beta.grad(&g).unwrap(), beta.grad(&gw).unwrap(), 1e-5);
        }
    }

    /// The tensor-op version, which other backends run, equals the fused one.
    #[test]
    fn the_portable_passes_equal_the_fused_ones() {
        let device = Device::flex();
        let raw = |shape: Vec<usize>, seed| {
            let n = shape.iter().product();
            cpu::tensor(values(random([n], seed, &device)), shape)
        };
        let (x, dy) = (raw(vec![4, 70, 24], 7), raw(vec![4, 70, 24], 10));
        let (gamma, beta) = (raw(vec![24], 8), raw(vec![24], 9));
        let v = |t: FloatTensor<Flex>| cpu::values(&cpu::contiguous_f32(&t).unwrap()).to_vec();
        let close = |a, b| {
            let (a, b): (Vec<f32>, Vec<f32>) = (v(a), v(b));
            let scale = b.iter().fold(1.0f32, |m, x| m.max(x.abs()));
            a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| (x - y).abs() <= 1e-5 * scale)
        };
        let fused = Flex::layer_norm_forward(x.clone(), gamma.clone(), beta.clone(), 1e-6);
        let portable = generic_forward::<Flex>(x.clone(), gamma.clone(), beta, 1e-6);
        assert!(close(fused.0, portable.0));
        assert!(close(fused.1.clone(), portable.1.clone()));
        let a = Flex::layer_norm_backward(x.clone(), gamma.clone(), fused.1, dy.clone());
        let b = generic_backward::<Flex>(x, gamma, portable.1, dy);
        assert!(close(a.0, b.0) && close(a.1, b.1) && close(a.2, b.2));
    }
}
