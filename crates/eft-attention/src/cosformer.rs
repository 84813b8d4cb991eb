//! cosFormer (Qin et al. 2022): linear attention with ReLU features and a cosine re-weighting
//! that favours nearby positions.
//!
//! `s_ij = relu(q_i)·relu(k_j) · cos(π/2 · (i − j)/M)` for positions below `M`, and
//! `out_i = Σ_j s_ij v_j / Σ_j s_ij`. Since `cos(a_i − a_j) = cos a_i cos a_j + sin a_i sin a_j`
//! with `a_i = π i / 2M`, the weights are the dot products of `2D` non-negative features
//! `[relu(x) cos a, relu(x) sin a]`, so the kernel path computes them in O(N·D²) time and
//! O(D²) state per head, causal by prefix sums. `M` must cover every position (the weights
//! stay non-negative only for `|i − j| < M`), so it is fixed per model: padding changes nothing.

use burn::module::Module;
use burn::tensor::{Device, Tensor, TensorData, activation::relu};
use serde::{Deserialize, Serialize};

use crate::kernel::kernel_attention;
use crate::layout::assert_fits;
use crate::mechanism::{at_least, spans};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};

/// Parameters of `cosformer`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CosformerConfig {
    /// The re-weighting's horizon `M`, the longest sequence it takes. Default: the model's
    /// (task's) longest input.
    pub max_len: Option<usize>,
}

impl MechanismConfig for CosformerConfig {
    type Module = CosformerAttention;

    fn init(&self, layout: AttentionLayout, _: &Device) -> CosformerAttention {
        CosformerAttention {
            horizon: self.max_len.unwrap_or(layout.max_len),
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("max_len", self.max_len.unwrap_or(1), 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        spans("cosformer", self.max_len, len)
    }
}

/// cosFormer attention with horizon `M`; no learned parameters.
#[derive(Module, Debug)]
pub struct CosformerAttention {
    /// The horizon `M`: positions `0..M` are re-weighted.
    pub horizon: usize,
}

impl CosformerAttention {
    /// `cos a_i` and `sin a_i`, `a_i = π i / 2M`, each `[1, 1, N, 1]`: drawn once per call and
    /// shared by queries and keys.
    fn angles(&self, len: usize, device: &Device) -> [Tensor<4>; 2] {
        assert_fits("cosformer", len, self.horizon);
        let angle = |i: usize| std::f64::consts::FRAC_PI_2 * i as f64 / self.horizon as f64;
        [f64::cos, f64::sin].map(|f| {
            let values: Vec<f32> = (0..len).map(|i| f(angle(i)) as f32).collect();
            Tensor::<4>::from_data(TensorData::new(values, [1, 1, len, 1]), device)
        })
    }

    /// `[relu(x)·cos a_i, relu(x)·sin a_i]`.
    ///
    /// # Shapes
    /// - x: `[B, H, N, D]` → `[B, H, N, 2D]`
    fn features(x: Tensor<4>, [cos, sin]: &[Tensor<4>; 2]) -> Tensor<4> {
        let r = relu(x);
        Tensor::cat(vec![r.clone() * cos.clone(), r * sin.clone()], 3)
    }
}

impl Mechanism for CosformerAttention {
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let dtype = input.q.dtype();
        let angles = self
            .angles(input.q.dims()[2], &input.q.device())
            .map(|a| a.cast(dtype));
        let (fq, fk) = (
            Self::features(input.q, &angles),
            Self::features(input.k, &angles),
        );
        kernel_attention(fq, fk, input.v, input.key_padding, input.causal)
    }

    /// FLOPs and saved bytes of the non-causal form with `F = 2D` features: ReLU (1) and the two
    /// re-weightings (2) per query and key element, two `N × F × D` products, the key sum, the
    /// normaliser and the division (the angle table is drawn once per length on the host, not
    /// counted); the features and the `F × D` state are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        let f = 2.0 * d;
        let forward = 4.0 * n * f * d + 3.0 * n * f + n * d + 6.0 * n * d;
        AttentionCost {
            forward_flops: bh * forward,
            backward_flops: bh * 2.0 * forward,
            saved_bytes: bh * (2.0 * n * f + f * d) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::EMPTY_ROW_GUARD;
    use crate::testing::{assert_close, random_qkv, to_f64};
    use burn::tensor::Bool;

    /// The paper's quadratic form, built position by position: `relu(q)relu(k)ᵀ` times the
    /// cosine matrix, masked, row-normalised, times `v`.
    fn quadratic(
        q: Tensor<4>,
        k: Tensor<4>,
        v: Tensor<4>,
        pad: &[bool],
        causal: bool,
        m: usize,
    ) -> Tensor<4> {
        let [b, _, n, _] = q.dims();
        let device = q.device();
        let a = relu(q).matmul(relu(k).swap_dims(2, 3)); // [B, H, N, N]
        let weights: Vec<f32> = (0..b * n * n)
            .map(|p| {
                let (bi, i, j) = (p / (n * n), (p / n) % n, p % n);
                let seen = !(pad[bi * n + j] || (causal && j > i));
                let cos = (std::f64::consts::FRAC_PI_2 * (i as f64 - j as f64) / m as f64).cos();
                if seen { cos as f32 } else { 0.0 }
            })
            .collect();
        let a = a * Tensor::<4>::from_data(TensorData::new(weights, [b, 1, n, n]), &device);
        let den = a.clone().sum_dim(3).clamp_min(EMPTY_ROW_GUARD);
        a.matmul(v) / den
    }

    /// The kernel path equals the cosine-weighted quadratic form, forward and dq, dk, dv, with
    /// padding, causal or not, at a length that is not a power of two and a horizon beyond it.
    #[test]
    fn equals_the_cosine_weighted_quadratic_form() {
        let device = Device::flex().autodiff();
        for (seed, (dims, real, horizon)) in
            [([2, 3, 11, 4], [11, 6], 11), ([1, 2, 16, 8], [16, 16], 40)]
                .into_iter()
                .enumerate()
        {
            let [b, _, n, _] = dims;
            let (q, k, v, w) = random_qkv(dims, seed as u64, &device);
            let pad: Vec<bool> = (0..b * n).map(|p| p % n >= real[p / n]).collect();
            let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, n]), &device);
            let m = CosformerAttention { horizon };
            for causal in [false, true] {
                let run = |fast: bool| {
                    let (q, k, v) = (
                        q.clone().require_grad(),
                        k.clone().require_grad(),
                        v.clone().require_grad(),
                    );
                    let out = if fast {
                        let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                            .with_key_padding(mask.clone())
                            .with_causal(causal);
                        m.forward(input)
                    } else {
                        quadratic(q.clone(), k.clone(), v.clone(), &pad, causal, horizon)
                    };
                    let grads = (out.clone() * w.clone()).sum().backward();
                    let g = |t: &Tensor<4>| to_f64(t.grad(&grads).expect("inputs require grad"));
                    [to_f64(out), g(&q), g(&k), g(&v)]
                };
                let (fast, slow) = (run(true), run(false));
                for (name, (a, e)) in ["out", "dq", "dk", "dv"].iter().zip(fast.iter().zip(&slow)) {
                    // f32 sums in another order: tolerance relative to the tensor's largest entry,
                    // as the shared tester has it.
                    let scale = e.iter().fold(0.0f64, |m, x| m.max(x.abs()));
                    let what = format!("cosformer {dims:?} causal={causal} {name}");
                    assert_close(&what, a, e, 1e-4, 1e-5 * scale);
                }
            }
        }
    }

    #[test]
    fn a_horizon_shorter_than_the_input_is_refused() {
        let c = CosformerConfig { max_len: Some(8) };
        c.check_shape(8, 2).unwrap();
        let e = c.check_shape(9, 2).unwrap_err().to_string();
        assert!(e.contains("max_len") && e.contains('9'), "{e}");
    }
}
