//! Full (vanilla) softmax attention, Vaswani et al. 2017.
//!
//! `softmax(q·kᵀ/√D + mask)·v`. O(N²·D) time, O(N²) memory held for the backward pass (the
//! attention probabilities, and nothing else of that size): one operation with its own backward
//! pass, [`eft_kernels::materialised_attention`], fused on the CPU. Its tests check it against an
//! independent f64 loop, forward and by central differences.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::{
    AttentionCost, AttentionInput, AttentionLayout, AttentionShape, Mechanism, MechanismConfig,
};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Parameters of `full`: it has none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullConfig {}

impl MechanismConfig for FullConfig {
    type Module = FullAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> FullAttention {
        FullAttention
    }
}

/// Full softmax attention; it has no parameters.
#[derive(Module, Debug, Default)]
pub struct FullAttention;

impl Mechanism for FullAttention {
    /// Attends every query to every unmasked key.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let padding = input.key_padding.map(|p| p.float());
        eft_kernels::materialised_attention(input.q, input.k, input.v, padding, input.causal)
    }

    /// FLOPs and saved bytes of one call.
    ///
    /// Forward: two `N×N×D` matmuls (`4·N²·D`) plus scale, mask and softmax (`6·N²`) per head.
    /// Backward: four matmuls (`8·N²·D`) plus the softmax gradient (`5·N²`). Saved: the `N×N`
    /// probabilities in f32.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let n2 = (shape.len * shape.len) as f64;
        let d = shape.head_dim as f64;
        AttentionCost {
            forward_flops: bh * (4.0 * n2 * d + 6.0 * n2),
            backward_flops: bh * (8.0 * n2 * d + 5.0 * n2),
            saved_bytes: bh * n2 * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, to_f64};
    use burn::tensor::{Bool, Device, Distribution, Tensor, TensorData};

    /// Plain f64 loops: softmax over the visible keys of each query; zeros where none is visible.
    fn naive(
        q: &[f64],
        k: &[f64],
        v: &[f64],
        [b, h, n, d]: [usize; 4],
        pad: &[bool],
        causal: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; b * h * n * d];
        for bi in 0..b {
            for hi in 0..h {
                let base = (bi * h + hi) * n * d;
                for i in 0..n {
                    let visible = |j: usize| !(pad[bi * n + j] || (causal && j > i));
                    if !(0..n).any(visible) {
                        continue; // a query that sees nothing outputs zeros
                    }
                    let scores: Vec<f64> = (0..n)
                        .map(|j| {
                            if !visible(j) {
                                f64::NEG_INFINITY
                            } else {
                                (0..d)
                                    .map(|c| q[base + i * d + c] * k[base + j * d + c])
                                    .sum::<f64>()
                                    / (d as f64).sqrt()
                            }
                        })
                        .collect();
                    let max = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let w: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let z: f64 = w.iter().sum();
                    for j in 0..n {
                        for c in 0..d {
                            out[base + i * d + c] += w[j] / z * v[base + j * d + c];
                        }
                    }
                }
            }
        }
        out
    }

    fn padding(batch: usize, len: usize, real: &[usize]) -> Vec<bool> {
        (0..batch * len).map(|p| p % len >= real[p / len]).collect()
    }

    fn check(dims: [usize; 4], real: &[usize], causal: bool, seed: u64) {
        let [b, _, n, _] = dims;
        let device = Device::flex().autodiff();
        let rand = || Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v, w) =
            crate::testing::with_seed(&device, seed, || (rand(), rand(), rand(), rand()));
        let pad = padding(b, n, real);
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, n]), &device);
        let (qf, kf, vf, wf) = (
            to_f64(q.clone()),
            to_f64(k.clone()),
            to_f64(v.clone()),
            to_f64(w.clone()),
        );

        let (q, k, v) = (q.require_grad(), k.require_grad(), v.require_grad());
        let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
            .with_key_padding(mask)
            .with_causal(causal);
        let out = FullAttention.forward(input);
        let expected = naive(&qf, &kf, &vf, dims, &pad, causal);
        assert_close("forward", &to_f64(out.clone()), &expected, 1e-5, 1e-6);

        // Gradients of loss = Σ out·w, against central differences of the f64 loops.
        let grads = (out * w).sum().backward();
        let loss = |q: &[f64], k: &[f64], v: &[f64]| -> f64 {
            let o = naive(q, k, v, dims, &pad, causal);
            o.iter().zip(&wf).map(|(a, b)| a * b).sum()
        };
        let eps = 1e-6;
        let numeric = |which: usize| -> Vec<f64> {
            let base = [&qf, &kf, &vf];
            (0..qf.len())
                .map(|i| {
                    let mut hi = [qf.clone(), kf.clone(), vf.clone()];
                    let mut lo = hi.clone();
                    hi[which][i] = base[which][i] + eps;
                    lo[which][i] = base[which][i] - eps;
                    (loss(&hi[0], &hi[1], &hi[2]) - loss(&lo[0], &lo[1], &lo[2])) / (2.0 * eps)
                })
                .collect()
        };
        for (which, (name, t)) in [("dq", &q), ("dk", &k), ("dv", &v)].into_iter().enumerate() {
            let g = to_f64(t.grad(&grads).expect("input requires grad"));
            assert_close(name, &g, &numeric(which), 1e-3, 1e-4);
        }
    }

    #[test]
    fn matches_f64_loops_without_masks() {
        check([2, 3, 5, 4], &[5, 5], false, 1);
    }

    #[test]
    fn matches_f64_loops_with_padding() {
        check([2, 2, 7, 3], &[7, 4], false, 2);
    }

    #[test]
    fn matches_f64_loops_causal_with_padding() {
        check([2, 2, 6, 3], &[3, 6], true, 3);
    }

    #[test]
    fn a_query_that_sees_nothing_outputs_zeros() {
        // Causal with the first key padded: query 0 sees no key at all.
        let device = Device::flex();
        let dims = [1, 1, 3, 2];
        let rand = || {
            crate::testing::with_seed(&device, 5, || {
                Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device)
            })
        };
        let mask = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![true, false, false], [1, 3]),
            &device,
        );
        let out = FullAttention.forward(
            AttentionInput::new(rand(), rand(), rand())
                .with_key_padding(mask)
                .with_causal(true),
        );
        let row0 = to_f64(out.slice([0..1, 0..1, 0..1, 0..2]));
        assert_eq!(row0, vec![0.0, 0.0]);
    }

    #[test]
    fn padded_keys_change_nothing() {
        let device = Device::flex();
        let dims = [1, 2, 6, 4];
        let rand = || Tensor::<4>::random(dims, Distribution::Normal(0.0, 1.0), &device);
        let (q, k, v) = crate::testing::with_seed(&device, 4, || (rand(), rand(), rand()));
        let mask =
            Tensor::<2, Bool>::from_data(TensorData::new(padding(1, 6, &[4]), [1, 6]), &device);
        let run = |k: Tensor<4>, v: Tensor<4>| {
            FullAttention
                .forward(AttentionInput::new(q.clone(), k, v).with_key_padding(mask.clone()))
        };
        let before = run(k.clone(), v.clone());
        // Scramble the padded keys and values: real outputs must not move.
        let noise = crate::testing::with_seed(&device, 6, || {
            Tensor::<4>::random([1, 2, 2, 4], Distribution::Normal(5.0, 3.0), &device)
        });
        let k2 = k.slice_assign([0..1, 0..2, 4..6, 0..4], noise.clone());
        let v2 = v.slice_assign([0..1, 0..2, 4..6, 0..4], noise);
        let after = run(k2, v2);
        assert_close(
            "padding invariance",
            &to_f64(after),
            &to_f64(before),
            0.0,
            0.0,
        );
    }

    #[test]
    fn cost_counts_quadratic_terms() {
        let c = FullAttention.cost(AttentionShape {
            batch: 2,
            heads: 3,
            len: 10,
            head_dim: 8,
        });
        assert_eq!(c.forward_flops, 6.0 * (4.0 * 100.0 * 8.0 + 600.0));
        assert_eq!(c.saved_bytes, 6.0 * 100.0 * 4.0);
    }
}
