//! Helpers shared by this crate's tests.

use burn::tensor::{Device, Distribution, Tensor};

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
