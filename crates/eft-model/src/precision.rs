//! Where a computation must run in f32 whatever the weights' type (router softmax, losses).

use burn::tensor::{FloatDType, Tensor};

/// `t` in f32: cast when it is in a low-precision type, untouched (no autodiff node) when it is
/// f32 already, so f32 runs pay nothing for it.
pub fn in_f32<const D: usize>(t: Tensor<D>) -> Tensor<D> {
    match t.dtype() {
        burn::tensor::DType::F32 => t,
        _ => t.cast(FloatDType::F32),
    }
}
