//! Performer's FAVOR+ attention (Choromanski et al. 2021).
//!
//! Softmax attention approximated by positive random features: with `x̃ = x / D^¼`,
//! `φ(x) = exp(ωᵀx̃ − ‖x̃‖²/2) / √m` for `m` orthogonal Gaussian directions `ω`, so that
//! `E[φ(q)·φ(k)] = exp(q·k/√D)`; then kernelised attention in O(N·m·D). The `relu` kernel
//! (`φ(x) = relu(ωᵀx̃)/√m`, LRA's choice) is an option. The features are drawn from `seed` and
//! kept as a parameter that is never trained (so checkpoints hold the draw in use); with
//! `redraw = r` the trainer replaces them every `r` steps by the draw for that step.

use burn::module::{Module, Param};
use burn::tensor::{Device, Tensor, TensorData, activation::relu};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::kernel::kernel_attention;
use crate::mechanism::at_least;
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use serde::{Deserialize, Serialize};

/// Keeps ReLU features strictly positive, so no query's normaliser vanishes by chance.
const RELU_FLOOR: f64 = 1e-3;

/// The feature map of `performer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PerformerKernel {
    /// Positive random features for the softmax kernel (FAVOR+).
    #[default]
    Softmax,
    /// ReLU random features (LRA's setting).
    Relu,
}

/// Parameters of `performer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PerformerConfig {
    /// Random features `m`. Default 256 (LRA).
    pub features: usize,
    /// `softmax` or `relu`. Default `softmax`.
    pub kernel: PerformerKernel,
    /// Seed of the random features. Default 0.
    pub seed: u64,
    /// Redraw the features every this many training steps; 0 (default) never redraws.
    pub redraw: usize,
}

impl Default for PerformerConfig {
    fn default() -> Self {
        Self {
            features: 256,
            kernel: PerformerKernel::Softmax,
            seed: 0,
            redraw: 0,
        }
    }
}

impl MechanismConfig for PerformerConfig {
    type Module = PerformerAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> PerformerAttention {
        PerformerAttention::new(
            self.features,
            self.kernel,
            self.seed,
            self.redraw,
            layout.head_dim,
            device,
        )
    }

    fn floats_at_least(&self, layout: AttentionLayout) -> u64 {
        // The random projection, features × head_dim (10^9 features aborted allocating it).
        (self.features as u64).saturating_mul(layout.head_dim as u64)
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("features", self.features, 1)
    }
}

/// FAVOR+ attention with `features` random features.
#[derive(Module, Debug)]
pub struct PerformerAttention {
    /// Number of random features `m`.
    pub features: usize,
    /// Use the ReLU kernel instead of the positive softmax kernel.
    pub relu: bool,
    /// Seed of the random features.
    pub seed: u64,
    /// Steps between redraws of the features (0: never).
    pub redraw: usize,
    /// The directions `ω` in use, `[m, D]`; not trained.
    pub omega: Param<Tensor<2>>,
}

fn normal(rng: &mut ChaCha8Rng) -> f64 {
    let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
    (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
}

/// `m × d` directions: orthonormal blocks of `d` rows (Gram–Schmidt on Gaussian rows), each row
/// rescaled to the norm of an independent Gaussian vector, as FAVOR+ prescribes.
pub fn orthogonal_features(m: usize, d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut rows: Vec<Vec<f64>> = Vec::with_capacity(m);
    while rows.len() < m {
        let mut block: Vec<Vec<f64>> = Vec::with_capacity(d);
        for _ in 0..d {
            let mut r: Vec<f64> = (0..d).map(|_| normal(&mut rng)).collect();
            for b in &block {
                let dot: f64 = r.iter().zip(b).map(|(x, y)| x * y).sum();
                r.iter_mut().zip(b).for_each(|(x, y)| *x -= dot * y);
            }
            let norm = r.iter().map(|x| x * x).sum::<f64>().sqrt().max(1e-12);
            r.iter_mut().for_each(|x| *x /= norm);
            block.push(r);
        }
        for mut r in block.into_iter().take(m - rows.len()) {
            let scale = (0..d).map(|_| normal(&mut rng).powi(2)).sum::<f64>().sqrt();
            r.iter_mut().for_each(|x| *x *= scale);
            rows.push(r);
        }
    }
    rows.into_iter().flatten().map(|x| x as f32).collect()
}

/// The seed of redraw number `draw` (0 is the first draw, `seed` itself).
fn draw_seed(seed: u64, draw: u64) -> u64 {
    seed ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl PerformerAttention {
    /// Draws the first features of `kernel` for head dimension `dim` from `seed`.
    pub fn new(
        features: usize,
        kernel: PerformerKernel,
        seed: u64,
        redraw: usize,
        dim: usize,
        device: &Device,
    ) -> Self {
        Self {
            features,
            relu: kernel == PerformerKernel::Relu,
            seed,
            redraw,
            omega: Param::from_tensor(Self::directions(features, dim, seed, device)),
        }
    }

    fn directions(m: usize, d: usize, seed: u64, device: &Device) -> Tensor<2> {
        Tensor::from_data(
            TensorData::new(orthogonal_features(m, d, seed), [m, d]),
            device,
        )
    }

    /// The feature map of queries (`query = true`) or keys, `[B, H, N, D] → [B, H, N, m]`.
    ///
    /// The softmax kernel subtracts a stabiliser before `exp` (per query row, one for all keys);
    /// it cancels in the normalisation, so it is taken without gradient.
    pub fn features_of(&self, x: Tensor<4>, query: bool) -> Tensor<4> {
        let d = x.dims()[3];
        let m = self.features;
        let omega = self.omega.val().detach();
        let x = x / (d as f64).powf(0.25);
        let proj = x.clone().matmul(omega.transpose().reshape([1, 1, d, m])); // [B, H, N, m]
        let norm = 1.0 / (m as f64).sqrt();
        if self.relu {
            return (relu(proj) + RELU_FLOOR) * norm;
        }
        // exp(proj − ‖x̃‖²/2 − shift)·norm in one pass; queries shift by their row's largest
        // projection, keys by the largest of all (a constant, so it carries no gradient).
        eft_kernels::favor_features(proj, x, query, norm as f32)
    }

    /// Keys' features before their shift and scale, `p − ‖x̃‖²/2` (`[B, H, N, m]`), for the
    /// recurrent form, which picks its own running shift; `None` for the ReLU kernel, whose
    /// features need no shift ([`PerformerAttention::features_of`] serves it).
    pub fn key_log_features(&self, k: Tensor<4>) -> Option<Tensor<4>> {
        if self.relu {
            return None;
        }
        let d = k.dims()[3];
        let x = k / (d as f64).powf(0.25);
        let proj = x.clone().matmul(
            self.omega
                .val()
                .transpose()
                .reshape([1, 1, d, self.features]),
        );
        Some(proj - (x.clone() * x).sum_dim(3) * 0.5)
    }

    /// The features' scale `1/√m`.
    pub fn feature_scale(&self) -> f64 {
        1.0 / (self.features as f64).sqrt()
    }
}

impl Mechanism for PerformerAttention {
    /// The layer as it should be at training step `step`: with `redraw = r`, steps that are
    /// positive multiples of `r` get draw `step / r`; other steps change nothing.
    fn at_step(mut self, step: usize) -> Self {
        if self.redraw > 0 && step > 0 && step.is_multiple_of(self.redraw) {
            let [m, d] = self.omega.dims();
            let seed = draw_seed(self.seed, (step / self.redraw) as u64);
            let device = self.omega.val().device();
            self.omega = Param::from_tensor(Self::directions(m, d, seed, &device));
        }
        self
    }

    /// FAVOR+ attention, causal by prefix sums.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let fq = self.features_of(input.q, true);
        let fk = self.features_of(input.k, false);
        kernel_attention(fq, fk, input.v, input.key_padding, input.causal)
    }

    /// FLOPs and saved bytes: two `N × D × m` projections and kernelised attention with `m`
    /// features; the features are kept for the backward pass.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d, m) = (
            shape.len as f64,
            shape.head_dim as f64,
            self.features as f64,
        );
        AttentionCost {
            // Per input (q, k): scaling, projection, squared norm, stabiliser, shift, exp and
            // normalisation: 3ND + 2NDm + N + 5Nm; then kernel attention: 3Nm + 4NmD + ND.
            forward_flops: bh * (8.0 * n * d * m + 13.0 * n * m + 7.0 * n * d + 2.0 * n),
            backward_flops: bh * (8.0 * n * d * m + 8.0 * n * m * d + 8.0 * n * m),
            saved_bytes: bh * (2.0 * n * m + m * d) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::testing::{random_qkv, to_f64};
    use crate::{AttentionInput, FullAttention};

    fn performer(features: usize, relu: bool, dim: usize, device: &Device) -> PerformerAttention {
        let kernel = if relu {
            PerformerKernel::Relu
        } else {
            PerformerKernel::Softmax
        };
        PerformerAttention::new(features, kernel, 5, 0, dim, device)
    }

    #[test]
    fn features_are_redrawn_every_redraw_steps_and_only_then() {
        let device = Device::flex();
        let m = PerformerAttention::new(8, PerformerKernel::Softmax, 3, 10, 4, &device);
        let first = crate::testing::to_f64(m.omega.val());
        let m = m.at_step(7);
        assert_eq!(crate::testing::to_f64(m.omega.val()), first, "step 7");
        let m = m.at_step(10);
        let second = crate::testing::to_f64(m.omega.val());
        assert_ne!(second, first, "step 10 redraws");
        let again =
            PerformerAttention::new(8, PerformerKernel::Softmax, 3, 10, 4, &device).at_step(10);
        assert_eq!(crate::testing::to_f64(again.omega.val()), second, "seeded");
        let never =
            PerformerAttention::new(8, PerformerKernel::Softmax, 3, 0, 4, &device).at_step(10);
        assert_eq!(
            crate::testing::to_f64(never.omega.val()),
            first,
            "redraw = 0"
        );
    }

    #[test]
    fn features_are_orthogonal_within_a_block() {
        let w = orthogonal_features(8, 8, 1);
        let row = |i: usize| &w[i * 8..(i + 1) * 8];
        let dot = |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| x * y).sum::<f32>();
        for i in 0..8 {
            for j in 0..i {
                assert!(dot(row(i), row(j)).abs() < 1e-4, "rows {i} and {j}");
            }
        }
        assert_eq!(w, orthogonal_features(8, 8, 1), "seeded");
    }

    #[test]
    fn linear_form_equals_the_quadratic_form_of_the_same_features() {
        let device = burn::tensor::Device::flex().autodiff();
        for relu in [false, true] {
            let m = performer(16, relu, 8, &device);
            for causal in [false, true] {
                crate::kernel::check::against_quadratic_form(
                    &format!("performer relu={relu}"),
                    |input| m.forward(input),
                    |q, k| (m.features_of(q, true), m.features_of(k, false)),
                    ([2, 2, 11, 8], &[11, 7]),
                    causal,
                    4,
                    1e-5,
                );
            }
        }
    }

    /// FAVOR+ is unbiased for the softmax kernel; its error falls roughly as 1/√m. From 64 to
    /// 4096 features (64×), the mean error over three input draws must fall at least 3×
    /// (about 8× is expected).
    #[test]
    fn error_to_softmax_attention_falls_as_features_grow() {
        let device = burn::tensor::Device::flex();
        let error = |m: usize| -> f64 {
            (0..3)
                .map(|seed| {
                    let (q, k, v, _) = random_qkv([1, 2, 16, 8], seed, &device);
                    let (q, k) = (q * 0.5, k * 0.5);
                    let input = AttentionInput::new(q, k, v);
                    let exact = to_f64(FullAttention.forward(input.clone()));
                    let approx = to_f64(performer(m, false, 8, &device).forward(input));
                    exact
                        .iter()
                        .zip(&approx)
                        .map(|(a, b)| (a - b).abs())
                        .sum::<f64>()
                        / exact.len() as f64
                })
                .sum::<f64>()
                / 3.0
        };
        let (coarse, fine) = (error(64), error(4096));
        eprintln!(
            "mean error to softmax attention: {coarse:.5} with 64 features, {fine:.5} with 4096"
        );
        assert!(
            fine < coarse / 3.0,
            "error with 64 features {coarse:.4}, with 4096 {fine:.4}"
        );
    }
}
