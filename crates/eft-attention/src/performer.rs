//! Performer's FAVOR+ attention (Choromanski et al. 2021).
//!
//! Softmax attention approximated by positive random features: with `x̃ = x / D^¼`,
//! `φ(x) = exp(ωᵀx̃ − ‖x̃‖²/2) / √m` for `m` orthogonal Gaussian directions `ω`, so that
//! `E[φ(q)·φ(k)] = exp(q·k/√D)`; then kernelised attention in O(N·m·D). The `relu` kernel
//! (`φ(x) = relu(ωᵀx̃)/√m`, LRA's choice) is an option. Features are drawn once from `seed`.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::kernel::kernel_attention;
use crate::{AttentionCost, AttentionInput, AttentionShape};

/// Keeps ReLU features strictly positive, so no query's normaliser vanishes by chance.
const RELU_FLOOR: f64 = 1e-3;

/// FAVOR+ attention with `features` random features.
#[derive(Module, Debug)]
pub struct PerformerAttention {
    /// Number of random features `m`.
    pub features: usize,
    /// Use the ReLU kernel instead of the positive softmax kernel.
    pub relu: bool,
    /// Seed of the random features.
    pub seed: u64,
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

impl PerformerAttention {
    /// The feature map of queries (`query = true`) or keys, `[B, H, N, D] → [B, H, N, m]`.
    ///
    /// The softmax kernel subtracts a stabiliser before `exp` (per query row, one for all keys);
    /// it cancels in the normalisation, so it is taken without gradient.
    pub fn features_of(&self, x: Tensor<4>, query: bool, device: &Device) -> Tensor<4> {
        let d = x.dims()[3];
        let m = self.features;
        let omega = Tensor::<2>::from_data(
            TensorData::new(orthogonal_features(m, d, self.seed), [m, d]),
            device,
        );
        let x = x / (d as f64).powf(0.25);
        let proj = x.clone().matmul(omega.transpose().reshape([1, 1, d, m])); // [B, H, N, m]
        let norm = 1.0 / (m as f64).sqrt();
        if self.relu {
            return (relu(proj) + RELU_FLOOR) * norm;
        }
        let half_sq = (x.clone() * x).sum_dim(3) / 2.0; // [B, H, N, 1]
        let shift = if query {
            proj.clone().max_dim(3).detach() // [B, H, N, 1]
        } else {
            proj.clone().max().detach().reshape([1, 1, 1, 1])
        };
        (proj - half_sq - shift).exp() * norm
    }

    /// FAVOR+ attention, causal by prefix sums.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let device = input.q.device();
        let fq = self.features_of(input.q, true, &device);
        let fk = self.features_of(input.k, false, &device);
        kernel_attention(fq, fk, input.v, input.key_padding, input.causal)
    }

    /// FLOPs and saved bytes: two `N × D × m` projections and kernelised attention with `m`
    /// features; the features are kept for the backward pass.
    pub fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d, m) = (
            shape.len as f64,
            shape.head_dim as f64,
            self.features as f64,
        );
        AttentionCost {
            forward_flops: bh * (4.0 * n * d * m + 4.0 * n * m * d + 8.0 * n * m),
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

    fn performer(features: usize, relu: bool) -> PerformerAttention {
        PerformerAttention {
            features,
            relu,
            seed: 5,
        }
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
            let m = performer(16, relu);
            for causal in [false, true] {
                crate::kernel::check::against_quadratic_form(
                    &format!("performer relu={relu}"),
                    |input| m.forward(input),
                    |q, k| {
                        (
                            m.features_of(q, true, &device),
                            m.features_of(k, false, &device),
                        )
                    },
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
                    let approx = to_f64(performer(m, false).forward(input));
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
