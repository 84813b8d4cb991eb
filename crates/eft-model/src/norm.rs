//! The model's LayerNorms: burn's `LayerNorm` holds the parameters (so checkpoints keep their
//! names), eft's fused layer normalisation applies them.

use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Device, Tensor};

/// The ε of every LayerNorm in the model.
const EPSILON: f64 = 1e-6;

/// A LayerNorm of width `d` with scale 1, shift 0.
pub(crate) fn new_norm(d: usize, device: &Device) -> LayerNorm {
    LayerNormConfig::new(d).with_epsilon(EPSILON).init(device)
}

/// `norm` applied to the last dimension of `x`: the same result as `LayerNorm::forward`, in one
/// fused operation with its own backward pass.
pub(crate) fn normalise(norm: &LayerNorm, x: Tensor<3>) -> Tensor<3> {
    let gamma = norm.gamma.val();
    let beta = match &norm.beta {
        Some(beta) => beta.val(),
        None => gamma.zeros_like(),
    };
    eft_kernels::layer_norm(x, gamma, beta, EPSILON)
}
