//! Nyströmformer (Xiong et al. 2021): softmax attention through `m` landmarks.
//!
//! Landmarks are segment means of the queries and keys (`q̃`, `k̃`, `m × D`), and
//! `softmax(q·k̃ᵀ)·pinv(softmax(q̃·k̃ᵀ))·softmax(q̃·kᵀ)·v` (all scaled by `1/√D`) approximates
//! `softmax(q·kᵀ)·v` in O(N·m·D + m³). The pseudo-inverse is the Newton–Schulz iteration
//! `Z ← ¼·Z·(13I − AZ·(15I − AZ·(7I − AZ)))` from `Z₀ = Aᵀ/(‖A‖₁‖A‖∞)`. Padded tokens are left out
//! of the segment means and masked as keys. An optional depthwise convolution over the values
//! (kernel along the sequence, one filter per head) is added to the output, as in the paper's
//! code. Landmarks mix the whole segment, so there is no causal form.

use burn::module::Module;
use burn::nn::PaddingConfig2d;
use burn::nn::conv::{Conv2d, Conv2dConfig};
use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::mechanism::{at_least, fits, out_of_range};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use serde::{Deserialize, Serialize};

/// Parameters of `nystrom`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NystromConfig {
    /// Landmarks `m`. Default 64.
    pub landmarks: usize,
    /// Newton–Schulz iterations of the pseudo-inverse. Default 6.
    pub pinv_iters: usize,
    /// Odd kernel size of the depthwise value convolution; none by default.
    pub conv_kernel: Option<usize>,
}

impl Default for NystromConfig {
    fn default() -> Self {
        Self {
            landmarks: 64,
            pinv_iters: 6,
            conv_kernel: None,
        }
    }
}

impl MechanismConfig for NystromConfig {
    type Module = NystromAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> NystromAttention {
        NystromAttention::new(
            self.landmarks,
            self.pinv_iters,
            self.conv_kernel,
            layout.heads,
            device,
        )
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("landmarks", self.landmarks, 1)?;
        at_least("pinv_iters", self.pinv_iters, 1)?;
        match self.conv_kernel {
            Some(k) if k.is_multiple_of(2) => Err(out_of_range(
                "conv_kernel",
                k,
                "must be odd, so the convolution is centred on each token",
            )),
            _ => Ok(()),
        }
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("landmarks", self.landmarks, len)
    }

    fn supports_causal(&self) -> bool {
        false
    }
}

/// Nyström attention with `landmarks` landmarks.
#[derive(Module, Debug)]
pub struct NystromAttention {
    /// Number of landmarks `m` (capped at `N`).
    pub landmarks: usize,
    /// Newton–Schulz iterations for the pseudo-inverse.
    pub pinv_iters: usize,
    /// The depthwise convolution over values, if any.
    pub conv: Option<Conv2d>,
}

impl NystromAttention {
    /// Builds the layer; `conv_kernel` (odd) adds the depthwise value convolution for `heads`
    /// heads, its weights drawn from `device`'s generator.
    pub fn new(
        landmarks: usize,
        pinv_iters: usize,
        conv_kernel: Option<usize>,
        heads: usize,
        device: &Device,
    ) -> Self {
        let conv = conv_kernel.map(|c| {
            Conv2dConfig::new([heads, heads], [c, 1])
                .with_groups(heads)
                .with_bias(false)
                .with_padding(PaddingConfig2d::Explicit(c / 2, 0, c / 2, 0))
                .init(device)
        });
        Self {
            landmarks,
            pinv_iters,
            conv,
        }
    }

    /// The landmarks of `x` (`[B, H, N, D]`): the mean of the real tokens of each segment,
    /// `[B, H, m, D]`. When `m` divides `N` the segments are runs of `N/m` tokens, averaged by a
    /// reshape and a sum in O(N·D); otherwise by the averaging matrix, in O(m·N·D).
    fn landmarks(&self, x: Tensor<4>, real: &Tensor<2>, m: usize) -> Tensor<4> {
        let [batch, heads, len, dim] = x.dims();
        if !len.is_multiple_of(m) {
            let means = self
                .segment_means(real.clone(), m)
                .expand([batch, heads, m, len]);
            return means.matmul(x);
        }
        let run = len / m;
        let weights = real.clone().reshape([batch, 1, len, 1]);
        let sums = (x * weights.clone())
            .reshape([batch, heads, m, run, dim])
            .sum_dim(3)
            .reshape([batch, heads, m, dim]);
        let counts = weights
            .reshape([batch, 1, m, run])
            .sum_dim(3)
            .clamp_min(1.0); // [B, 1, m, 1]
        sums / counts
    }

    /// The segment-mean matrix: `[B, 1, m, N]`, row `l` averaging the real tokens of segment `l`
    /// (token `j` is in segment `⌊j·m/N⌋`).
    fn segment_means(&self, real: Tensor<2>, m: usize) -> Tensor<4> {
        let [batch, len] = real.dims();
        let member: Vec<f32> = (0..m * len)
            .map(|p| f32::from(u8::from((p % len) * m / len == p / len)))
            .collect();
        let member =
            Tensor::<4>::from_data(TensorData::new(member, [1, 1, m, len]), &real.device())
                .cast(real.dtype());
        let weights = member * real.reshape([batch, 1, 1, len]);
        let counts = weights.clone().sum_dim(3).clamp_min(1.0);
        weights / counts
    }
}

impl Mechanism for NystromAttention {
    /// Attends through the landmarks.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`] (not causal)
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        self.attend(input, |among| pinv(among, self.pinv_iters))
    }

    /// FLOPs and saved bytes: landmarks, the three kernels, the Newton–Schulz iterations and the
    /// products; the `N × m` and `m × N` kernels and the iterates are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        let m = self.landmarks.min(shape.len) as f64;
        let iters = self.pinv_iters as f64;
        let conv = self
            .conv
            .as_ref()
            .map_or(0.0, |c| 2.0 * n * d * c.weight.dims()[2] as f64);
        // Landmarks: runs of N/m tokens weighted, summed and divided when m divides N (the
        // counts once per batch row), else the dense averaging products.
        let by_runs = shape
            .len
            .is_multiple_of(self.landmarks.min(shape.len).max(1));
        let (landmarks, weights) = if by_runs {
            (4.0 * n * d, n)
        } else {
            (4.0 * m * n * d, 3.0 * m * n)
        };
        let forward = landmarks
            + 2.0 * (2.0 * n * m * d + 6.0 * n * m) // q·k̃ᵀ and q̃·kᵀ with softmax
            + 2.0 * m * m * d + 6.0 * m * m
            + 3.0 * m * m + 2.0 * m + 1.0 // the pseudo-inverse's starting point
            + iters * (8.0 * m * m * m + 7.0 * m * m)
            + 2.0 * m * n * d + 2.0 * m * m * d + 2.0 * n * m * d
            + conv;
        let means = shape.batch as f64 * weights;
        AttentionCost {
            forward_flops: bh * forward + means,
            backward_flops: bh * 2.0 * forward,
            saved_bytes: bh * (2.0 * n * m + (3.0 * iters + 2.0) * m * m + 2.0 * m * d) * 4.0,
        }
    }
}

impl NystromAttention {
    /// The Nyström formula with the exact pseudo-inverse ([`exact_pinv`]) in place of the
    /// Newton–Schulz iterations: what the iterations approximate, for measuring how far they
    /// are from it. Not differentiable, not a fast path.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`] (not causal)
    /// - output: `[B, H, N, D]`
    pub fn forward_exact(&self, input: AttentionInput) -> Tensor<4> {
        self.attend(input, exact_pinv)
    }

    /// The landmark formula with `invert` as the pseudo-inverse of the `m × m` kernel.
    fn attend(
        &self,
        input: AttentionInput,
        invert: impl FnOnce(Tensor<4>) -> Tensor<4>,
    ) -> Tensor<4> {
        let [batch, _, len, dim] = input.q.dims();
        let device = input.q.device();
        let m = self.landmarks.min(len);
        let scale = 1.0 / (dim as f64).sqrt();
        let real = match &input.key_padding {
            Some(p) => crate::mask::visible_as(p.clone(), input.q.dtype()),
            None => Tensor::ones([batch, len], (&device, input.q.dtype())),
        };
        let q_land = self.landmarks(input.q.clone(), &real, m); // [B, H, m, D]
        let k_land = self.landmarks(input.k.clone(), &real, m);
        // softmax(q̃·k̃ᵀ/√D): the m × m kernel that is pseudo-inverted.
        let among = eft_kernels::softmax(q_land.clone().matmul(k_land.clone().transpose()) * scale);
        // softmax(q̃·kᵀ/√D)·v and softmax(q·k̃ᵀ/√D)·W are attention over N keys and over the m
        // landmarks: one materialised operation each, its probabilities kept and nothing else.
        let padding = input.key_padding.map(|p| p.float());
        let from_keys =
            eft_kernels::materialised_attention(q_land, input.k, input.v.clone(), padding, false); // [B, H, m, D]
        let values = invert(among).matmul(from_keys); // [B, H, m, D]
        let out = eft_kernels::materialised_attention(input.q, k_land, values, None, false);
        match &self.conv {
            None => out,
            Some(conv) => out + conv.forward(input.v * real.reshape([batch, 1, len, 1])),
        }
    }
}

/// Newton–Schulz iterations [`exact_pinv`] runs at most; each multiplies the smallest singular
/// values' share by about 3.25, so 120 cover condition numbers far beyond f64's precision.
const EXACT_PINV_ITERS: usize = 120;

/// The Moore–Penrose pseudo-inverse of each `[m, m]` matrix of `a`: the iteration of [`pinv`]
/// from the same start, in f64, run until no iterate changes by more than 1e-13 of its norm
/// (the iteration converges to the pseudo-inverse from that start). The reference the f32
/// iterations are measured against; one host read of the change per iteration.
pub fn exact_pinv(a: Tensor<4>) -> Tensor<4> {
    let dtype = a.dtype();
    let a = a.cast(DType::F64);
    let (mut z, eye) = newton_schulz_start(&a);
    for _ in 0..EXACT_PINV_ITERS {
        let next = newton_schulz_step(&a, z.clone(), &eye);
        let change = (next.clone() - z).square().sum_dim(3).sum_dim(2);
        let norm = next.clone().square().sum_dim(3).sum_dim(2);
        z = next;
        let worst = (change / norm.clamp_min(f64::MIN_POSITIVE))
            .max()
            .into_scalar::<f64>();
        if worst <= 1e-26 {
            break;
        }
    }
    z.cast(dtype)
}

/// The iteration's start `Aᵀ/(‖A‖₁‖A‖∞)` (zero for a zero matrix) and the identity, expanded.
fn newton_schulz_start(a: &Tensor<4>) -> (Tensor<4>, Tensor<4>) {
    let [batch, heads, m, _] = a.dims();
    let eye = Tensor::<2>::eye(m, &a.device())
        .cast(a.dtype())
        .reshape([1, 1, m, m])
        .expand([batch, heads, m, m]);
    let col = a.clone().sum_dim(2).max_dim(3); // ‖A‖₁, [B, H, 1, 1]
    let row = a.clone().sum_dim(3).max_dim(2); // ‖A‖∞
    let norms = col * row;
    // A zero matrix's pseudo-inverse is zero; dividing by 1 keeps it so instead of making NaN.
    let safe = norms.clone().equal_elem(0.0).float().cast(a.dtype()) + norms;
    (a.clone().transpose() / safe, eye)
}

/// `Z ← ¼·Z·(13I − AZ·(15I − AZ·(7I − AZ)))`.
fn newton_schulz_step(a: &Tensor<4>, z: Tensor<4>, eye: &Tensor<4>) -> Tensor<4> {
    let az = a.clone().matmul(z.clone());
    let inner = eye.clone() * 7.0 - az.clone();
    let inner = eye.clone() * 15.0 - az.clone().matmul(inner);
    let inner = eye.clone() * 13.0 - az.matmul(inner);
    z.matmul(inner) * 0.25
}

/// The Newton–Schulz pseudo-inverse of each `[m, m]` matrix of `a` (non-negative entries).
pub fn pinv(a: Tensor<4>, iters: usize) -> Tensor<4> {
    let (mut z, eye) = newton_schulz_start(&a);
    for _ in 0..iters {
        z = newton_schulz_step(&a, z, &eye);
    }
    z
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_param_grads, output_and_grads, random_qkv, to_f64};
    use crate::{FullAttention, Mechanism};
    use burn::tensor::Bool;
    use burn::tensor::activation::softmax;

    /// With one token per landmark the three kernels are the same softmax matrix `S` and
    /// `S·pinv(S)·S·v = S·v`: full attention, forward and dq, dk, dv, to the pinv's tolerance.
    #[test]
    fn one_token_per_landmark_matches_full_attention() {
        let device = Device::flex().autodiff();
        for (seed, dims) in [[2, 2, 8, 4], [1, 3, 12, 8]].into_iter().enumerate() {
            let (q, k, v, w) = random_qkv(dims, seed as u64, &device);
            let nystrom = NystromAttention::new(dims[2], 40, None, dims[1], &device);
            let run = |m: &dyn Mechanism| output_and_grads(&|i| m.forward(i), [&q, &k, &v, &w]);
            let expected = run(&FullAttention);
            for (name, (a, e)) in ["out", "dq", "dk", "dv"]
                .iter()
                .zip(run(&nystrom).iter().zip(&expected))
            {
                // The pinv is iterative: compare to its tolerance, relative to the largest entry.
                let scale = e.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                assert_close(
                    &format!("nystrom {dims:?} {name}"),
                    a,
                    e,
                    2e-3,
                    2e-3 * scale,
                );
            }
        }
    }

    /// Equal runs (a reshape and a sum) and the averaging matrix give the same landmarks and
    /// the same gradients, padding included.
    #[test]
    fn landmarks_by_runs_equal_the_averaging_matrix() {
        let device = Device::flex().autodiff();
        let m = NystromAttention::new(4, 6, None, 3, &device);
        let (x, _, _, w) = random_qkv([2, 3, 12, 5], 9, &device);
        let real = Tensor::<2>::from_data(
            TensorData::new(
                (0..24)
                    .map(|p| f32::from(u8::from(p % 12 < [12, 7][p / 12])))
                    .collect::<Vec<f32>>(),
                [2, 12],
            ),
            &device,
        );
        let run = |by_runs: bool| {
            let x = x.clone().require_grad();
            let land = if by_runs {
                m.landmarks(x.clone(), &real, 4)
            } else {
                m.segment_means(real.clone(), 4)
                    .expand([2, 3, 4, 12])
                    .matmul(x.clone())
            };
            let wl = w.clone().slice([0..2, 0..3, 0..4, 0..5]);
            let g = x.grad(&(land.clone() * wl).sum().backward()).unwrap();
            (to_f64(land), to_f64(g))
        };
        let ((a, ga), (b, gb)) = (run(true), run(false));
        assert_close("landmarks", &a, &b, 1e-6, 1e-7);
        assert_close("d landmarks", &ga, &gb, 1e-6, 1e-7);
    }

    #[test]
    fn newton_schulz_inverts_a_softmax_matrix() {
        let device = Device::flex();
        let (q, k, _, _) = random_qkv([1, 1, 6, 4], 9, &device);
        let a = softmax(q.matmul(k.transpose()) * 0.5, 3);
        let product = a.clone().matmul(pinv(a, 30));
        let eye: Vec<f64> = (0..36)
            .map(|p| f64::from(u8::from(p / 6 == p % 6)))
            .collect();
        assert_close("A·pinv(A)", &to_f64(product), &eye, 0.0, 1e-4);
    }

    /// The f64 reference meets the four Penrose conditions to 1e-9 (f32 could not), on an
    /// invertible softmax matrix and on a singular one (two equal rows), where no inverse exists.
    #[test]
    fn exact_pinv_meets_the_penrose_conditions() {
        let device = Device::flex();
        let (q, k, _, _) = random_qkv([1, 1, 6, 4], 4, &device);
        let invertible = softmax(q.clone().matmul(k.clone().transpose()), 3);
        let row = q.clone().slice([0..1, 0..1, 0..1, 0..4]);
        let twice = Tensor::cat(vec![row, q.slice([0..1, 0..1, 1..6, 0..4])], 2);
        let twice = Tensor::cat(
            vec![twice.clone().slice([0..1, 0..1, 0..1, 0..4]), twice],
            2,
        )
        .slice([0..1, 0..1, 0..6, 0..4]);
        let singular = softmax(twice.matmul(k.transpose()), 3);
        for (name, a) in [("invertible", invertible), ("singular", singular)] {
            // In f64 throughout, so the conditions can be checked far below f32's rounding.
            let a = a.cast(DType::F64);
            let z = exact_pinv(a.clone());
            assert_eq!(z.dtype(), DType::F64);
            let (az, za) = (a.clone().matmul(z.clone()), z.clone().matmul(a.clone()));
            let close = |what: &str, x: Tensor<4>, y: Tensor<4>| {
                let scale = to_f64(y.clone()).iter().fold(1.0f64, |m, v| m.max(v.abs()));
                assert_close(
                    &format!("{name}: {what}"),
                    &to_f64(x),
                    &to_f64(y),
                    0.0,
                    1e-9 * scale,
                );
            };
            close("A·Z·A = A", az.clone().matmul(a.clone()), a.clone());
            close("Z·A·Z = Z", za.clone().matmul(z.clone()), z.clone());
            close("A·Z symmetric", az.clone().transpose(), az);
            close("Z·A symmetric", za.clone().transpose(), za);
        }
    }

    /// Padded keys and values change nothing, with or without the convolution.
    #[test]
    fn padded_positions_change_nothing() {
        let device = Device::flex();
        let dims = [2, 2, 11, 4];
        let (q, k, v, noise) = random_qkv(dims, 5, &device);
        let pad: Vec<bool> = (0..22).map(|p| p % 11 >= [11, 7][p / 11]).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, 11]), &device);
        let keep = mask.clone().bool_not().float().reshape([2, 1, 11, 1]);
        let scramble = |t: Tensor<4>| t * keep.clone() + noise.clone() * (-keep.clone() + 1.0);
        for conv in [None, Some(3)] {
            let m = crate::testing::seeded(&device, 2, || {
                NystromAttention::new(4, 6, conv, 2, &device)
            });
            let run = |k: Tensor<4>, v: Tensor<4>| {
                to_f64(
                    m.forward(AttentionInput::new(q.clone(), k, v).with_key_padding(mask.clone())),
                )
            };
            assert_close(
                &format!("padding invariance conv={conv:?}"),
                &run(scramble(k.clone()), scramble(v.clone())),
                &run(k.clone(), v.clone()),
                1e-5,
                1e-6,
            );
        }
    }

    /// The convolution adds `Σ_t w[h, t]·v[i + t − c/2]` (zero outside) to every output row, and
    /// its weight gradient agrees with central differences.
    #[test]
    fn convolution_adds_a_depthwise_filter_of_the_values() {
        let device = Device::flex().autodiff();
        let dims = [1, 2, 7, 3];
        let (q, k, v, w) = random_qkv(dims, 6, &device);
        let with = crate::testing::seeded(&device, 3, || {
            NystromAttention::new(3, 8, Some(3), 2, &device)
        });
        let without = NystromAttention::new(3, 8, None, 2, &device);
        let input = AttentionInput::new(q.clone(), k.clone(), v.clone());
        let added: Vec<f64> = to_f64(with.forward(input.clone()))
            .iter()
            .zip(to_f64(without.forward(input.clone())))
            .map(|(a, b)| a - b)
            .collect();
        let filt = to_f64(with.conv.as_ref().unwrap().weight.val()); // [H, 1, 3, 1]
        let vals = to_f64(v.clone());
        let mut expected = vec![0.0; 2 * 7 * 3];
        for h in 0..2 {
            for i in 0..7i64 {
                for c in 0..3 {
                    expected[(h * 7 + i as usize) * 3 + c] = (0..3i64)
                        .filter(|t| (0..7).contains(&(i + t - 1)))
                        .map(|t| {
                            filt[h * 3 + t as usize] * vals[(h * 7 + (i + t - 1) as usize) * 3 + c]
                        })
                        .sum();
                }
            }
        }
        assert_close("conv term", &added, &expected, 1e-4, 1e-5);
        check_param_grads(
            "nystrom conv",
            &with,
            |m| (m.forward(input.clone()) * w.clone()).sum(),
            3,
        );
    }
}
