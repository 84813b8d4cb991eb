//! Transformer-XL attention (Dai et al. 2019): relative positions and segment memory.
//!
//! The score of query `i` (at position `M + i` after `M` remembered positions) and key `j` is
//! `((q_i + u)·k_j + (q_i + v)·r_{M+i−j}) / √D`, where `r_δ = sinusoid(δ)·W_r` encodes the signed
//! distance and `u`, `v` are learned per head. Remembered keys and values come from the model
//! ([`Memory`](crate::Memory)), which detaches them so no gradient reaches earlier segments.
//! O(N·(M + N)·D) time and memory per segment.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData, s};

use crate::mechanism::at_least;
use crate::sinusoid::sinusoid;
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig, Memory, Recurrence, attend,
};
use serde::{Deserialize, Serialize};

/// Parameters of `xl`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct XlConfig {
    /// Positions remembered from earlier segments, per layer. Default 64.
    pub mem_len: usize,
    /// Segment length the model cuts each sequence into; default: the whole sequence is one
    /// segment (no memory is used then).
    pub segment: Option<usize>,
}

impl Default for XlConfig {
    fn default() -> Self {
        Self {
            mem_len: 64,
            segment: None,
        }
    }
}

impl MechanismConfig for XlConfig {
    type Module = XlAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> XlAttention {
        XlAttention::new(
            self.mem_len,
            self.segment.unwrap_or(0),
            layout.heads,
            layout.head_dim,
            device,
        )
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("segment", self.segment.unwrap_or(1), 1)
    }

    fn recurrence(&self) -> Option<Recurrence> {
        self.segment.map(|segment| Recurrence {
            segment,
            mem_len: self.mem_len,
        })
    }
}

/// Relative-position attention with learned biases `u`, `v` and distance projection `W_r`.
#[derive(Module, Debug)]
pub struct XlAttention {
    /// Positions the model remembers from earlier segments.
    pub mem_len: usize,
    /// Segment length the model cuts sequences into (0: the whole sequence is one segment).
    pub segment: usize,
    /// `u`: content bias, `[H, D]`.
    pub content_bias: Param<Tensor<2>>,
    /// `v`: position bias, `[H, D]`.
    pub position_bias: Param<Tensor<2>>,
    /// `W_r`: distance projection per head, `[H, D, D]`.
    pub position_proj: Param<Tensor<3>>,
}

impl XlAttention {
    /// Draws `W_r` (Xavier-uniform) from `device`'s generator; `u` and `v` start at zero.
    pub fn new(mem_len: usize, segment: usize, heads: usize, dim: usize, device: &Device) -> Self {
        Self {
            mem_len,
            segment,
            content_bias: Initializer::Zeros.init([heads, dim], device),
            position_bias: Initializer::Zeros.init([heads, dim], device),
            position_proj: Initializer::XavierUniform { gain: 1.0 }.init_with(
                [heads, dim, dim],
                Some(dim),
                Some(dim),
                device,
            ),
        }
    }

    /// Attends the segment's queries to memory and segment keys.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]; `memory`: `[B, H, M, D]`
    /// - output: `[B, H, N, D]`
    pub fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        let device = input.q.device();
        let (mut k, mut v, mut padding, mem) = (input.k, input.v, input.key_padding, 0);
        let mut mem = mem;
        if let Some(memory) = input.memory {
            mem = memory.k.dims()[2];
            k = Tensor::cat(vec![memory.k, k], 2);
            v = Tensor::cat(vec![memory.v, v], 2);
            let none = |n| Tensor::<2, Int>::zeros([batch, n], &device).bool();
            padding = match (memory.padding, padding) {
                (None, None) => None,
                (m, p) => Some(Tensor::cat(
                    vec![
                        m.unwrap_or_else(|| none(mem)),
                        p.unwrap_or_else(|| none(len)),
                    ],
                    1,
                )),
            };
        }
        let keys = mem + len;
        let bias = |p: &Param<Tensor<2>>| p.val().reshape([1, heads, 1, dim]);
        let content = (input.q.clone() + bias(&self.content_bias)).matmul(k.transpose());

        // Every distance M + i − j that occurs, encoded once, largest first: from M + N − 1
        // down to −(N − 1).
        let span = keys + len - 1;
        let distances: Vec<f64> = (0..span).map(|y| keys as f64 - 1.0 - y as f64).collect();
        let r = sinusoid(&distances, dim, &device)
            .cast(input.q.dtype())
            .reshape([1, span, dim])
            .expand([heads, span, dim])
            .matmul(self.position_proj.val()) // [H, span, D]
            .reshape([1, heads, span, dim])
            .expand([batch, heads, span, dim]);
        let by_distance = (input.q + bias(&self.position_bias)).matmul(r.transpose()); // [B, H, N, span]
        // Query i and key j need column (N − 1 − i) + j: row i's window starts one column
        // earlier than row i − 1's. Read flat, rows of span − 1 from offset N − 1 line the
        // windows up (Transformer-XL's relative shift), without a gather.
        let position = if len == 1 {
            by_distance
        } else {
            let rows = len * (span - 1);
            by_distance
                .reshape([batch, heads, len * span])
                .slice(s![.., .., len - 1..len - 1 + rows])
                .reshape([batch, heads, len, span - 1])
                .slice(s![.., .., .., 0..keys])
        };
        let scores = (content + position) / (dim as f64).sqrt();

        let later: Vec<bool> = (0..len * keys)
            .map(|x| input.causal && x % keys > mem + x / keys)
            .collect();
        let mut blocked =
            Tensor::<4, Bool>::from_data(TensorData::new(later, [1, 1, len, keys]), &device)
                .expand([batch, 1, len, keys]);
        if let Some(p) = padding {
            blocked = blocked.bool_or(p.reshape([batch, 1, 1, keys]).expand([batch, 1, len, keys]));
        }
        attend(scores, v, Some(blocked))
    }

    /// The whole sequence in segments of `segment`, each segment also seeing the `mem_len` keys
    /// and values before it, detached: what one layer computes when the model runs in segments
    /// (the model remembers hidden states instead, so its key and value projections still learn
    /// from the memory). With `segment = 0` it is [`XlAttention::forward`].
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`] (no memory)
    /// - output: `[B, H, N, D]`
    pub fn forward_segmented(&self, input: AttentionInput) -> Tensor<4> {
        let len = input.q.dims()[2];
        if self.segment == 0 || self.segment >= len {
            return self.forward(input);
        }
        let cut = |t: &Tensor<4>, from: usize, to: usize| t.clone().slice(s![.., .., from..to, ..]);
        let cut_pad =
            |from: usize, to: usize| input.key_padding.clone().map(|p| p.slice(s![.., from..to]));
        let outs = (0..len)
            .step_by(self.segment)
            .map(|start| {
                let end = (start + self.segment).min(len);
                let mut part = AttentionInput::new(
                    cut(&input.q, start, end),
                    cut(&input.k, start, end),
                    cut(&input.v, start, end),
                )
                .with_causal(input.causal);
                part.key_padding = cut_pad(start, end);
                let from = start.saturating_sub(self.mem_len);
                if from < start {
                    part = part.with_memory(Memory {
                        k: cut(&input.k, from, start).detach(),
                        v: cut(&input.v, from, start).detach(),
                        padding: cut_pad(from, start),
                    });
                }
                self.forward(part)
            })
            .collect();
        Tensor::cat(outs, 2)
    }
}

/// Given memory, `xl` attends one segment; without, it cuts the input into its own segments.
impl Mechanism for XlAttention {
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        if input.memory.is_some() {
            XlAttention::forward(self, input)
        } else {
            self.forward_segmented(input)
        }
    }

    fn recurrence(&self) -> Option<Recurrence> {
        (self.segment > 0).then_some(Recurrence {
            segment: self.segment,
            mem_len: self.mem_len,
        })
    }

    fn reads_memory(&self) -> bool {
        true
    }

    /// FLOPs and saved bytes of a call on `shape`: one segment of `N` queries over its own keys,
    /// or, with `segment` set and shorter than `N`, the sum over the segments, each seeing the
    /// memory available before it. Scores by content and by distance, the distance
    /// encodings, softmax and the product with values; both score matrices are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let d = shape.head_dim as f64;
        let one = |queries: usize, memory: usize| {
            let (n, keys) = (queries as f64, (queries + memory) as f64);
            let span = keys + n - 1.0;
            // Biases added to q twice; content and position scores; the distance encodings'
            // projection (once per batch); sum, scale, mask, softmax, visibility; values.
            let forward = 2.0 * n * d
                + 2.0 * n * keys * d
                + 2.0 * n * span * d
                + 2.0 * span * d * d / shape.batch as f64
                + 9.0 * n * keys
                + 2.0 * n * keys * d;
            (forward, (2.0 * n * keys + n * span) * 4.0)
        };
        // Memory exists only between segments: a single call attends to itself alone.
        let (forward, saved) = if self.segment == 0 || self.segment >= shape.len {
            one(shape.len, 0)
        } else {
            (0..shape.len)
                .step_by(self.segment)
                .map(|start| {
                    let queries = self.segment.min(shape.len - start);
                    one(queries, self.mem_len.min(start))
                })
                .fold((0.0, 0.0), |(f, s), (a, b)| (f + a, s + b))
        };
        AttentionCost {
            forward_flops: bh * forward,
            backward_flops: bh * 2.0 * forward,
            saved_bytes: bh * saved,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_param_grads, random_qkv, to_f64};

    /// Relative attention by plain loops: scores `((q+u)·k_j + (q+v)·r_{M+i−j})/√D` over the
    /// visible keys, with `r` from the same sinusoid and `W_r`.
    fn naive(
        m: &XlAttention,
        [q, k, v]: [&[f64]; 3],
        [b, h, n, d]: [usize; 4],
        keys: usize,
        causal: bool,
        pad: &[bool],
    ) -> Vec<f64> {
        let mem = keys - n;
        let (u, pv, w) = (
            to_f64(m.content_bias.val()),
            to_f64(m.position_bias.val()),
            to_f64(m.position_proj.val()),
        );
        let device = Device::flex();
        let r_of = |delta: f64, hh: usize| -> Vec<f64> {
            let s = to_f64(sinusoid(&[delta], d, &device));
            (0..d)
                .map(|c| (0..d).map(|e| s[e] * w[(hh * d + e) * d + c]).sum())
                .collect()
        };
        let mut out = vec![0.0; b * h * n * d];
        for bi in 0..b {
            for hh in 0..h {
                for i in 0..n {
                    let seen: Vec<usize> = (0..keys)
                        .filter(|&j| !(pad[bi * keys + j] || (causal && j > mem + i)))
                        .collect();
                    let qi = |c: usize| q[((bi * h + hh) * n + i) * d + c];
                    let score = |j: usize| {
                        let r = r_of((mem + i) as f64 - j as f64, hh);
                        (0..d)
                            .map(|c| {
                                (qi(c) + u[hh * d + c]) * k[((bi * h + hh) * keys + j) * d + c]
                                    + (qi(c) + pv[hh * d + c]) * r[c]
                            })
                            .sum::<f64>()
                            / (d as f64).sqrt()
                    };
                    let s: Vec<f64> = seen.iter().map(|&j| score(j)).collect();
                    let top = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let z: f64 = s.iter().map(|x| (x - top).exp()).sum();
                    for (&j, x) in seen.iter().zip(&s) {
                        for c in 0..d {
                            out[((bi * h + hh) * n + i) * d + c] +=
                                (x - top).exp() / z * v[((bi * h + hh) * keys + j) * d + c];
                        }
                    }
                }
            }
        }
        out
    }

    fn module(device: &Device) -> XlAttention {
        crate::testing::seeded(device, 4, || {
            let mut m = XlAttention::new(3, 0, 2, 4, device);
            // Non-zero biases, so the test sees them.
            let normal = || {
                Param::from_tensor(Tensor::random(
                    [2, 4],
                    burn::tensor::Distribution::Normal(0.0, 0.5),
                    device,
                ))
            };
            m.content_bias = normal();
            m.position_bias = normal();
            m
        })
    }

    /// Without memory: plain relative attention, by loops; with memory: the same loops over
    /// memory followed by the segment.
    #[test]
    fn equals_relative_attention_by_loops_with_and_without_memory() {
        let device = Device::flex();
        let m = module(&device);
        let dims = [2, 2, 5, 4];
        let (q, k, v, _) = random_qkv(dims, 1, &device);
        let (mk, mv, ..) = random_qkv([2, 2, 3, 4], 2, &device);
        let pad: Vec<bool> = (0..10).map(|p| p % 5 >= [5, 3][p / 5]).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, 5]), &device);
        for causal in [false, true] {
            let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                .with_key_padding(mask.clone())
                .with_causal(causal);
            let expected = naive(
                &m,
                [&to_f64(q.clone()), &to_f64(k.clone()), &to_f64(v.clone())],
                dims,
                5,
                causal,
                &pad,
            );
            assert_close(
                "xl, no memory",
                &to_f64(m.forward(input.clone())),
                &expected,
                1e-5,
                1e-6,
            );

            let mem_pad: Vec<bool> = (0..6).map(|p| p == 3).collect(); // row 1, position 0
            let memory = Memory {
                k: mk.clone(),
                v: mv.clone(),
                padding: Some(Tensor::<2, Bool>::from_data(
                    TensorData::new(mem_pad.clone(), [2, 3]),
                    &device,
                )),
            };
            let all =
                |a: &Tensor<4>, b: &Tensor<4>| to_f64(Tensor::cat(vec![a.clone(), b.clone()], 2));
            let all_pad: Vec<bool> = (0..2)
                .flat_map(|bi| {
                    let (m, p) = (&mem_pad, &pad);
                    m[bi * 3..bi * 3 + 3]
                        .iter()
                        .chain(&p[bi * 5..bi * 5 + 5])
                        .copied()
                        .collect::<Vec<_>>()
                })
                .collect();
            let expected = naive(
                &m,
                [&to_f64(q.clone()), &all(&mk, &k), &all(&mv, &v)],
                dims,
                8,
                causal,
                &all_pad,
            );
            assert_close(
                "xl, with memory",
                &to_f64(m.forward(input.with_memory(memory))),
                &expected,
                1e-5,
                1e-6,
            );
        }
    }

    /// In segments, each segment equals `forward` on that segment with the keys and values just
    /// before it as memory; no gradient reaches earlier keys through the memory.
    #[test]
    fn segments_see_the_previous_keys_as_detached_memory() {
        let device = Device::flex().autodiff();
        let mut m = module(&device);
        m.segment = 4;
        let (q, k, v, w) = random_qkv([1, 2, 10, 4], 6, &device);
        let part = |t: &Tensor<4>, a: usize, b: usize| t.clone().slice(s![.., .., a..b, ..]);
        let k = k.require_grad();
        let out = m.forward_segmented(AttentionInput::new(q.clone(), k.clone(), v.clone()));
        let memory = Memory {
            k: part(&k, 1, 4),
            v: part(&v, 1, 4),
            padding: None,
        };
        let second = m.forward(
            AttentionInput::new(part(&q, 4, 8), part(&k, 4, 8), part(&v, 4, 8)).with_memory(memory),
        );
        assert_close(
            "segment 2",
            &to_f64(part(&out, 4, 8)),
            &to_f64(second),
            1e-6,
            1e-6,
        );
        let first = m.forward(AttentionInput::new(
            part(&q, 0, 4),
            part(&k, 0, 4),
            part(&v, 0, 4),
        ));
        assert_close(
            "segment 1",
            &to_f64(part(&out, 0, 4)),
            &to_f64(first),
            1e-6,
            1e-6,
        );
        // The last segment's loss reaches no key of an earlier segment.
        let grads = (part(&out, 8, 10) * part(&w, 8, 10)).sum().backward();
        let dk = to_f64(k.grad(&grads).unwrap());
        assert!(
            dk.iter()
                .enumerate()
                .all(|(i, g)| (i / 4) % 10 >= 8 || *g == 0.0)
        );
    }

    #[test]
    fn bias_and_projection_gradients_match_differences() {
        let device = Device::flex().autodiff();
        let m = module(&device);
        let (q, k, v, w) = random_qkv([1, 2, 4, 4], 3, &device);
        let (mk, mv, ..) = random_qkv([1, 2, 2, 4], 5, &device);
        check_param_grads(
            "xl",
            &m,
            |m| {
                let memory = Memory {
                    k: mk.clone(),
                    v: mv.clone(),
                    padding: None,
                };
                let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                    .with_causal(true)
                    .with_memory(memory);
                (m.forward(input) * w.clone()).sum()
            },
            4,
        );
    }
}
