//! A dense layer `y = x·W + b` as one operation with its own backward pass, for the weights of
//! burn's `Linear` modules. On burn's Flex backend in f32 it runs [`crate::cpu`]'s kernel
//! (row blocks in parallel, the bias written with the product, `dW` and `db` from partial sums
//! over fixed runs of rows); elsewhere burn's own matmul and add.

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::{Shape, Tensor};

use crate::cpu;
use crate::routing::extension_runs_on;

/// The backend operations behind [`linear`].
#[backend_extension(Autodiff, Flex)]
pub trait DenseBackend: Backend {
    /// `x·W + b` for `x` `[rows, d_in]`, `W` `[d_in, d_out]`, `b` `[d_out]`.
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        generic_forward::<Self>(x, w, b)
    }

    /// `dx = dy·Wᵀ`.
    fn dense_input_grad(w: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_input_grad::<Self>(w, dy)
    }

    /// `dW = xᵀ·dy`.
    fn dense_weight_grad(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_weight_grad::<Self>(x, dy)
    }

    /// `db`: `dy` summed over its rows.
    fn dense_bias_grad(dy: FloatTensor<Self>) -> FloatTensor<Self> {
        generic_bias_grad::<Self>(dy)
    }
}

/// `x·W + b` over the last dimension of `x`, differentiable in all three, fused on burn's Flex
/// backend in f32: what burn's `Linear::forward` computes, for its `weight` and `bias`.
///
/// # Shapes
/// - `x`: `[..., d_in]`; `weight`: `[d_in, d_out]`; `bias`: `[d_out]` → `[..., d_out]`
pub fn linear<const D: usize>(
    x: Tensor<D>,
    weight: Tensor<2>,
    bias: Option<Tensor<1>>,
) -> Tensor<D> {
    let dims = x.dims();
    let [d_in, d_out] = weight.dims();
    let rows = dims[..D - 1].iter().product();
    let bias = bias.unwrap_or_else(|| Tensor::zeros([d_out], (&weight.device(), weight.dtype())));
    let extension = extension_runs_on(&x.device());
    let (x, w, b) = (
        x.reshape([rows, d_in]).into_dispatch(),
        weight.into_dispatch(),
        bias.into_dispatch(),
    );
    let y = Tensor::<2>::from_dispatch(match extension {
        true => <Dispatch as DenseBackend>::dense(x, w, b),
        false => generic_forward::<Dispatch>(x, w, b),
    });
    let mut out = dims;
    out[D - 1] = d_out;
    y.reshape(out)
}

/// The portable forward pass: burn's matmul, then the bias broadcast over the rows.
fn generic_forward<B: Backend>(
    x: FloatTensor<B>,
    w: FloatTensor<B>,
    b: FloatTensor<B>,
) -> FloatTensor<B> {
    let d_out = b.shape()[0];
    B::float_add(
        B::float_matmul(x, w),
        B::float_reshape(b, Shape::new([1, d_out])),
    )
}

/// The portable `dx = dy·Wᵀ`.
fn generic_input_grad<B: Backend>(w: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    B::float_matmul(dy, B::float_transpose(w))
}

/// The portable `dW = xᵀ·dy`.
fn generic_weight_grad<B: Backend>(x: FloatTensor<B>, dy: FloatTensor<B>) -> FloatTensor<B> {
    B::float_matmul(B::float_transpose(x), dy)
}

/// The portable `db`.
fn generic_bias_grad<B: Backend>(dy: FloatTensor<B>) -> FloatTensor<B> {
    let d_out = dy.shape()[1];
    B::float_reshape(B::float_sum_dim(dy, 0), Shape::new([d_out]))
}

/// `(x, W, b)` as contiguous f32 with `(d_in, d_out)`; `None` unless all are f32.
fn flex_parts(
    x: &FloatTensor<Flex>,
    w: &FloatTensor<Flex>,
) -> Option<(
    burn::backend::flex::FlexTensor,
    burn::backend::flex::FlexTensor,
    usize,
    usize,
)> {
    let s = w.shape();
    Some((cpu::contiguous_f32(x)?, cpu::contiguous_f32(w)?, s[0], s[1]))
}

impl DenseBackend for Flex {
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let (Some((xc, wc, d_in, d_out)), Some(bc)) = (flex_parts(&x, &w), cpu::contiguous_f32(&b))
        else {
            return generic_forward::<Self>(x, w, b);
        };
        let rows = x.shape()[0];
        let y = cpu::dense::forward(
            cpu::values(&xc),
            cpu::values(&wc),
            cpu::values(&bc),
            d_in,
            d_out,
        );
        cpu::tensor(y, [rows, d_out])
    }

    fn dense_input_grad(w: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        match (cpu::contiguous_f32(&w), cpu::contiguous_f32(&dy)) {
            (Some(wc), Some(gc)) => {
                let [d_in, d_out] = [w.shape()[0], w.shape()[1]];
                let rows = dy.shape()[0];
                let dx = cpu::dense::input_grad(cpu::values(&wc), cpu::values(&gc), d_in, d_out);
                cpu::tensor(dx, [rows, d_in])
            }
            _ => generic_input_grad::<Self>(w, dy),
        }
    }

    fn dense_weight_grad(x: FloatTensor<Self>, dy: FloatTensor<Self>) -> FloatTensor<Self> {
        match (cpu::contiguous_f32(&x), cpu::contiguous_f32(&dy)) {
            (Some(xc), Some(gc)) => {
                let [d_in, d_out] = [x.shape()[1], dy.shape()[1]];
                let dw = cpu::dense::weight_grad(cpu::values(&xc), cpu::values(&gc), d_in, d_out);
                cpu::tensor(dw, [d_in, d_out])
            }
            _ => generic_weight_grad::<Self>(x, dy),
        }
    }

    fn dense_bias_grad(dy: FloatTensor<Self>) -> FloatTensor<Self> {
        let d_out = dy.shape()[1];
        match cpu::contiguous_f32(&dy) {
            Some(gc) => cpu::tensor(cpu::dense::bias_grad(cpu::values(&gc), d_out), [d_out]),
            None => generic_bias_grad::<Self>(dy),
        }
    }
}

#[derive(Debug)]
struct DenseGrad;

impl<B: Backend + DenseBackend> Backward<B, 3> for DenseGrad {
    /// The input and the weight.
    type State = (FloatTensor<B>, FloatTensor<B>);

    fn backward(self, ops: Ops<Self::State, 3>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        let (x, w) = ops.state;
        let [px, pw, pb] = ops.parents;
        if let Some(p) = pb {
            grads.register::<B>(p.id, B::dense_bias_grad(dy.clone()));
        }
        if let Some(p) = pw {
            grads.register::<B>(p.id, B::dense_weight_grad(x, dy.clone()));
        }
        if let Some(p) = px {
            grads.register::<B>(p.id, B::dense_input_grad(w, dy));
        }
    }
}

impl<B: Backend + DenseBackend, C: CheckpointStrategy> DenseBackend for Autodiff<B, C> {
    fn dense(
        x: FloatTensor<Self>,
        w: FloatTensor<Self>,
        b: FloatTensor<Self>,
    ) -> FloatTensor<Self> {
        let prep = DenseGrad
            .prepare::<C>([x.node(), w.node(), b.node()])
            .compute_bound()
            .stateful();
        let (x, w, b) = (x.into_primitive(), w.into_primitive(), b.into_primitive());
        match prep {
            OpsKind::Tracked(prep) => {
                let y = B::dense(x.clone(), w.clone(), b);
                prep.finish((x, w), y)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::dense(x, w, b)),
        }
    }
}

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::nn::LinearConfig;
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{assert_close, random};

    /// The fused layer against burn's `Linear`: output and the gradients of x, W and b, over row
    /// counts below one block, across several blocks and several partial sums.
    #[test]
    fn fused_dense_layer_equals_burns_linear() {
        let device = Device::flex().autodiff();
        for (seed, (rows, d_in, d_out, bias)) in [
            (1, 1, 1, true),
            (7, 5, 3, false),
            (300, 16, 33, true),
            (2600, 9, 12, true),
        ]
        .into_iter()
        .enumerate()
        {
            let seed = seed as u64;
            let layer = LinearConfig::new(d_in, d_out).with_bias(bias).init(&device);
            let run = |fused: bool| {
                let layer = layer.clone();
                let x = random([2, rows, d_in], seed, &device).require_grad();
                let w = random([2, rows, d_out], seed + 10, &device);
                let y = if fused {
                    linear(
                        x.clone(),
                        layer.weight.val(),
                        layer.bias.as_ref().map(Param::val),
                    )
                } else {
                    layer.forward(x.clone())
                };
                let grads = (y.clone() * w).sum().backward();
                let dw = layer.weight.grad(&grads).unwrap();
                let db = layer.bias.as_ref().map(|b| b.grad(&grads).unwrap());
                (y.inner(), x.grad(&grads).unwrap(), dw, db)
            };
            let (fast, slow) = (run(true), run(false));
            let what = format!("rows={rows} {d_in}->{d_out}");
            assert_close(&format!("y {what}"), fast.0, slow.0, 1e-5);
            assert_close(&format!("dx {what}"), fast.1, slow.1, 1e-5);
            assert_close(&format!("dW {what}"), fast.2, slow.2, 1e-5);
            if let (Some(a), Some(b)) = (fast.3, slow.3) {
                assert_close(&format!("db {what}"), a, b, 1e-5);
            }
        }
    }

    #[test]
    fn the_portable_passes_equal_the_fused_ones() {
        let device = Device::flex();
        let (x, w, b) = (
            random([1300, 7], 1, &device),
            random([7, 5], 2, &device),
            random([5], 3, &device),
        );
        let dy = random([1300, 5], 4, &device);
        let plain2 = |t: &Tensor<2>| t.clone().into_dispatch();
        let t2 = Tensor::<2>::from_dispatch;
        let fused =
            <Dispatch as DenseBackend>::dense(plain2(&x), plain2(&w), b.clone().into_dispatch());
        let slow = generic_forward::<Dispatch>(plain2(&x), plain2(&w), b.clone().into_dispatch());
        assert_close("y", t2(fused), t2(slow), 1e-5);
        let dx = <Dispatch as DenseBackend>::dense_input_grad(plain2(&w), plain2(&dy));
        assert_close("dx", t2(dx), dy.clone().matmul(w.clone().transpose()), 1e-5);
        let dw = <Dispatch as DenseBackend>::dense_weight_grad(plain2(&x), plain2(&dy));
        assert_close("dW", t2(dw), x.transpose().matmul(dy.clone()), 1e-5);
        let db = <Dispatch as DenseBackend>::dense_bias_grad(plain2(&dy));
        assert_close(
            "db",
            Tensor::<1>::from_dispatch(db),
            dy.sum_dim(0).reshape([5]),
            1e-5,
        );
    }
}
