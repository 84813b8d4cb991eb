//! Linear attention with the `elu + 1` feature map (Katharopoulos et al. 2020).
//!
//! `out_i = φ(q_i)·Σ_j φ(k_j)ᵀv_j / φ(q_i)·Σ_j φ(k_j)` with `φ(x) = elu(x) + 1 > 0`: associativity
//! turns the `N × N` product into `D × D` sums. Non-causal: O(N·D²) time, O(D²) extra memory per
//! head. Causal: the sums become prefix sums over positions, O(N·D²) time and memory. A recurrent
//! form ([`LinearState`]) decodes one token at a time with O(D²) state per head.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::kernel::{EMPTY_ROW_GUARD, kernel_attention};
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

/// The recurrent form's state: `Σ φ(k_j)ᵀ v_j` (`[B, H, D, D]`) and `Σ φ(k_j)` (`[B, H, 1, D]`).
#[derive(Debug, Clone)]
pub struct LinearState {
    kv: Tensor<4>,
    z: Tensor<4>,
}

impl LinearState {
    /// An empty state for `[B, H]` heads of dimension `D`.
    pub fn new(batch: usize, heads: usize, dim: usize, device: &burn::tensor::Device) -> Self {
        Self {
            kv: Tensor::zeros([batch, heads, dim, dim], device),
            z: Tensor::zeros([batch, heads, 1, dim], device),
        }
    }

    /// Adds one token and returns its causal output, in O(D²) per head.
    ///
    /// # Shapes
    /// - q, k, v: `[B, H, 1, D]` → `[B, H, 1, D]`
    pub fn step(&mut self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Tensor<4> {
        let (fq, fk) = (feature_map(q), feature_map(k));
        self.kv = self.kv.clone() + fk.clone().swap_dims(2, 3).matmul(v);
        self.z = self.z.clone() + fk;
        let den = (fq.clone() * self.z.clone()).sum_dim(3);
        fq.matmul(self.kv.clone()) / den.clamp_min(EMPTY_ROW_GUARD)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random_qkv, to_f64};
    use burn::tensor::Device;

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

    #[test]
    fn recurrent_decoding_equals_the_parallel_causal_pass() {
        let dims = [2, 2, 9, 4];
        let device = Device::flex();
        let (q, k, v, _) = random_qkv(dims, 7, &device);
        let parallel = LinearAttention
            .forward(AttentionInput::new(q.clone(), k.clone(), v.clone()).with_causal(true));
        let mut state = LinearState::new(2, 2, 4, &device);
        let token = |t: &Tensor<4>, i: usize| t.clone().slice([0..2, 0..2, i..i + 1, 0..4]);
        let steps: Vec<Tensor<4>> = (0..9)
            .map(|i| state.step(token(&q, i), token(&k, i), token(&v, i)))
            .collect();
        assert_close(
            "recurrent",
            &to_f64(Tensor::cat(steps, 2)),
            &to_f64(parallel),
            1e-5,
            1e-6,
        );
    }
}
