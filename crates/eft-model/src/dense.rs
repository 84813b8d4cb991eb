//! burn's `Linear` layers applied through eft's fused dense operation: the same parameters,
//! initialisation and checkpoint names, a faster forward and backward pass on the CPU.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;

/// `layer`'s `x·W + b` over the last dimension of `x`.
pub(crate) fn apply<const D: usize>(layer: &Linear, x: Tensor<D>) -> Tensor<D> {
    eft_kernels::linear(x, layer.weight.val(), layer.bias.as_ref().map(Param::val))
}
