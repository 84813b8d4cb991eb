//! Linear attention with the `elu + 1` feature map (Katharopoulos et al. 2020).
//!
//! `out_i = φ(q_i)·Σ_j φ(k_j)ᵀv_j / φ(q_i)·Σ_j φ(k_j)` with `φ(x) = elu(x) + 1 > 0`: associativity
//! turns the `N × N` product into `D × D` sums. Non-causal: O(N·D²) time, O(D²) extra memory per
//! head. Causal: the sums become prefix sums over positions, O(N·D²) time and memory. A recurrent
//! form ([`crate::KernelState`]) decodes one token at a time with O(D²) state per head.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::kernel::kernel_attention;
use crate::{
    AttentionCost, AttentionInput, AttentionLayout, AttentionShape, Mechanism, MechanismConfig,
};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// `φ(x) = elu(x) + 1` (one fused operation that keeps only its output for the backward pass).
fn feature_map<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    eft_kernels::elu_plus_one(x)
}

/// Parameters of `linear`: it has none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {}

impl MechanismConfig for LinearConfig {
    type Module = LinearAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> LinearAttention {
        LinearAttention
    }
}

/// Linear attention; no parameters.
#[derive(Module, Debug, Default)]
pub struct LinearAttention;

impl Mechanism for LinearAttention {
    /// The parallel form, causal by prefix sums.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let fq = feature_map(input.q);
        let fk = feature_map(input.k);
        kernel_attention(fq, fk, input.v, input.key_padding, input.causal)
    }

    /// FLOPs and saved bytes of the non-causal form: the feature maps (3 per element: compare,
    /// exponential, add), two `N × D × D` products, the key sum, the normaliser and the division;
    /// the feature maps and the `D × D` state are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        AttentionCost {
            forward_flops: bh * (4.0 * n * d * d + 10.0 * n * d),
            backward_flops: bh * (8.0 * n * d * d + 8.0 * n * d),
            saved_bytes: bh * (2.0 * n * d + d * d) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn equals_its_quadratic_form_forward_and_backward() {
        let cases: [([usize; 4], &[usize]); 2] =
            [([2, 3, 11, 4], &[11, 7]), ([2, 2, 16, 8], &[16, 16])];
        for (seed, case) in cases.into_iter().enumerate() {
            for causal in [false, true] {
                crate::kernel::check::against_quadratic_form(
                    "linear",
                    |input| LinearAttention.forward(input),
                    |q, k| (feature_map(q), feature_map(k)),
                    case,
                    causal,
                    seed as u64,
                    1e-6,
                );
            }
        }
    }
}
