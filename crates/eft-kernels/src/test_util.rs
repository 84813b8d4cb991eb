//! Helpers shared by this crate's tests.

use burn::backend::Dispatch;
use burn::backend::tensor::FloatTensor;
use burn::tensor::{Device, Distribution, Tensor, TensorData};

use crate::BLOCKED_SCORE;
use crate::materialised::generic_backward;

/// Normal values of `shape`, from `seed`, on `device`.
pub(crate) fn random<const D: usize>(shape: [usize; D], seed: u64, device: &Device) -> Tensor<D> {
    device.seed(seed);
    Tensor::random(shape, Distribution::Normal(0.0, 1.5), device)
}

/// The tensor's values.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 tensor")
}

/// Every element within `tol` of the other, relative to the larger's largest magnitude.
pub(crate) fn assert_close<const D: usize>(what: &str, got: Tensor<D>, want: Tensor<D>, tol: f32) {
    assert_eq!(got.dims(), want.dims(), "{what}: shapes");
    let (got, want) = (values(got), values(want));
    let scale = want.iter().fold(1e-6f32, |m, x| m.max(x.abs()));
    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
        assert!(
            (g - w).abs() <= tol * scale,
            "{what}[{i}]: fused {g}, reference {w}"
        );
    }
}

/// A portable attention forward pass on plain tensors: `(q, k, v, key bias) → (output,
/// probabilities [B, H, N, N])`.
pub(crate) type PortableForward<'a> = &'a dyn Fn(
    FloatTensor<Dispatch>,
    FloatTensor<Dispatch>,
    FloatTensor<Dispatch>,
    FloatTensor<Dispatch>,
) -> (FloatTensor<Dispatch>, FloatTensor<Dispatch>);

/// A fused attention op against its portable form on fresh inputs: the output and dq, dk, dv
/// (the portable ones from its saved probabilities) within 1e-5 of the largest magnitude.
/// Heads are strided (`[B, N, H, D]` storage seen as `[B, H, N, D]`, as the model passes them);
/// q has `N` rows, k and v `keys`; batch row `b` has `real[b]` real keys, the rest padding.
pub(crate) fn check_attention_op(
    what: &str,
    (dims, keys): ([usize; 4], usize),
    real: &[usize],
    seed: u64,
    fused: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>, Tensor<2>) -> Tensor<4>,
    portable: PortableForward,
) {
    let [b, h, n, d] = dims;
    let device = Device::flex().autodiff();
    let split = |s, rows| random([b, rows, h, d], s, &device).swap_dims(1, 2);
    let (q, w) = (split(seed, n), split(seed + 3, n));
    let (k, v) = (split(seed + 1, keys), split(seed + 2, keys));
    let pad: Vec<f32> = (0..b * keys)
        .map(|p| f32::from(u8::from(p % keys >= real[p / keys])))
        .collect();
    let pad = Tensor::<2>::from_data(TensorData::new(pad, [b, keys]), &device);
    let bias = (pad.clone() * BLOCKED_SCORE).reshape([b, 1, 1, keys]);

    let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
    let out = fused(q.clone(), k.clone(), v.clone(), pad);
    let grads = (out.clone() * w.clone()).sum().backward();
    let g = |t: &Tensor<4>| t.grad(&grads).expect("input requires grad");
    let fast = [out.inner(), g(&q), g(&k), g(&v)];

    let plain = |t: &Tensor<4>| t.clone().inner().into_dispatch();
    let (out, probs) = portable(plain(&q), plain(&k), plain(&v), plain(&bias));
    let (dq, dk, dv) = generic_backward::<Dispatch>(
        plain(&q),
        plain(&k),
        plain(&v),
        out.clone(),
        probs,
        plain(&w),
    );
    let slow = [out, dq, dk, dv].map(Tensor::<4>::from_dispatch);
    for (name, (f, s)) in ["out", "dq", "dk", "dv"]
        .iter()
        .zip(fast.into_iter().zip(slow))
    {
        let what = format!("{what} {name} {dims:?} keys={keys} real={real:?}");
        assert_close(&what, f, s, 1e-5);
    }
}
