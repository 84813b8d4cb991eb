//! Synthesizer (Tay et al. 2021): attention weights synthesised without query–key dot products.
//!
//! - `dense`: each query's row of logits comes from its own token, `relu(x·W₁ + b₁)·W₂ + b₂ ∈ R^N`.
//!   The head's query vector stands in for the token `x` (it is a linear map of it, so nothing is
//!   lost and the heads stay independent).
//! - `random`: one learned (or `frozen`) `N × N` logit matrix per head, the same for every input.
//! - `factorized-dense`: two short rows `A ∈ R^a`, `B ∈ R^b` (`a·b ≥ N`) per token, logits
//!   `A[j mod a]·B[j div a]`.
//! - `factorized-random`: a rank-`r` product `R₁R₂ᵀ` per head.
//!
//! With `mix`, the usual `q·kᵀ/√D` is added to the synthesised logits. Padding and causal masks
//! apply to the logits, so every mode has a causal form. O(N²) like full attention: the point is
//! what the weights depend on, not speed. Rows and columns beyond `N` of the parameters sized for
//! the longest sequence are unused.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor, activation::relu};
use serde::{Deserialize, Serialize};

use crate::mechanism::{at_least, out_of_range, spans};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig, attend_scores, blocked_positions,
};

/// How Synthesizer makes its logits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "kebab-case")]
pub enum SynthesizerMode {
    /// Per-token logits from a two-layer network.
    #[default]
    Dense,
    /// A learned logit matrix per head.
    Random,
    /// Per-token logits as the outer product of two short rows.
    FactorizedDense,
    /// A learned low-rank logit matrix per head.
    FactorizedRandom,
}

/// Parameters of `synthesizer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SynthesizerConfig {
    /// `dense`, `random`, `factorized-dense` or `factorized-random`. Default `dense`.
    pub mode: SynthesizerMode,
    /// Add dot-product scores to the synthesised logits. Default false.
    pub mix: bool,
    /// Keep the random matrices fixed (random modes). Default false.
    pub frozen: bool,
    /// Rank of factorized-random. Default 8.
    pub rank: usize,
    /// Longest sequence the parameters span. Default: the model's (task's) longest input.
    pub max_len: Option<usize>,
}

impl Default for SynthesizerConfig {
    fn default() -> Self {
        Self {
            mode: SynthesizerMode::Dense,
            mix: false,
            frozen: false,
            rank: 8,
            max_len: None,
        }
    }
}

impl MechanismConfig for SynthesizerConfig {
    type Module = SynthesizerAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> SynthesizerAttention {
        SynthesizerAttention::new(self, layout, device)
    }

    fn floats_at_least(&self, layout: AttentionLayout) -> u64 {
        // Every mode learns at least max_len weights per row it synthesises: rank × max_len.
        let max_len = self.max_len.unwrap_or(layout.max_len) as u64;
        (self.rank as u64).min(max_len).saturating_mul(max_len)
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("rank", self.rank, 1)?;
        at_least("max_len", self.max_len.unwrap_or(1), 1)?;
        let random = matches!(
            self.mode,
            SynthesizerMode::Random | SynthesizerMode::FactorizedRandom
        );
        if self.frozen && !random {
            return Err(out_of_range(
                "frozen",
                true,
                "only the random modes have a matrix to freeze; use mode = random or \
                 factorized-random",
            ));
        }
        Ok(())
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        spans("synthesizer", self.max_len, len)
    }
}

/// Synthesizer attention: learned logits, optionally plus dot-product scores.
#[derive(Module, Debug)]
pub struct SynthesizerAttention {
    /// Longest sequence the parameters span.
    pub max_len: usize,
    /// Add `q·kᵀ/√D` to the synthesised logits.
    pub mix: bool,
    /// Keep the random matrices at their initial values.
    pub frozen: bool,
    /// First layer of the per-token network (`dense`, `factorized-dense`): `[H, D, D]`.
    pub hidden: Option<Param<Tensor<3>>>,
    /// Its bias, `[H, 1, D]`.
    pub hidden_bias: Option<Param<Tensor<3>>>,
    /// The network's output layer, or the random matrix or first factor: `[H, ·, ·]`.
    pub first: Param<Tensor<3>>,
    /// The output layer's bias, `[H, 1, ·]` (network modes).
    pub first_bias: Option<Param<Tensor<3>>>,
    /// The second output layer or factor, where the mode has one.
    pub second: Option<Param<Tensor<3>>>,
    /// The second output layer's bias (factorized-dense).
    pub second_bias: Option<Param<Tensor<3>>>,
}

/// The two factor lengths `a ≥ b` with `a·b ≥ n` that factorized-dense uses.
pub fn factor_lengths(n: usize) -> (usize, usize) {
    let a = (n as f64).sqrt().ceil() as usize;
    (a, n.div_ceil(a))
}

impl SynthesizerAttention {
    /// Draws the parameters of `config.mode` for `layout`'s heads and head dimension and sequences
    /// up to `config.max_len` (default `layout.max_len`), from `device`'s generator
    /// (Xavier-uniform weights, zero biases).
    pub fn new(config: &SynthesizerConfig, layout: AttentionLayout, device: &Device) -> Self {
        let (mode, rank, mix, frozen) = (config.mode, config.rank, config.mix, config.frozen);
        let max_len = config.max_len.unwrap_or(layout.max_len);
        let (heads, dim) = (layout.heads, layout.head_dim);
        let weight = |rows: usize, cols: usize| {
            Initializer::XavierUniform { gain: 1.0 }.init_with(
                [heads, rows, cols],
                Some(rows),
                Some(cols),
                device,
            )
        };
        let bias = |cols: usize| Initializer::Zeros.init([heads, 1, cols], device);
        let (a, b) = factor_lengths(max_len);
        let network = matches!(
            mode,
            SynthesizerMode::Dense | SynthesizerMode::FactorizedDense
        );
        let (first, second) = match mode {
            SynthesizerMode::Dense => (weight(dim, max_len), None),
            SynthesizerMode::FactorizedDense => (weight(dim, a), Some(weight(dim, b))),
            SynthesizerMode::Random => (weight(max_len, max_len), None),
            SynthesizerMode::FactorizedRandom => {
                (weight(max_len, rank), Some(weight(max_len, rank)))
            }
        };
        Self {
            max_len,
            mix,
            frozen,
            hidden: network.then(|| weight(dim, dim)),
            hidden_bias: network.then(|| bias(dim)),
            first_bias: network.then(|| bias(first.dims()[2])),
            second_bias: second
                .as_ref()
                .filter(|_| network)
                .map(|s| bias(s.dims()[2])),
            first,
            second,
        }
    }

    /// The mode these parameters belong to.
    pub fn mode(&self) -> SynthesizerMode {
        match (self.hidden.is_some(), self.second.is_some()) {
            (true, false) => SynthesizerMode::Dense,
            (true, true) => SynthesizerMode::FactorizedDense,
            (false, false) => SynthesizerMode::Random,
            (false, true) => SynthesizerMode::FactorizedRandom,
        }
    }

    /// The synthesised logits, without masks or the dot-product term: `[B | 1, H, N, N]`.
    pub fn logits(&self, q: &Tensor<4>) -> Tensor<4> {
        let [batch, heads, len, dim] = q.dims();
        let per_head = |p: &Param<Tensor<3>>, rows: usize, cols: usize| {
            let t = p.val();
            let t = if self.frozen && self.hidden.is_none() {
                t.detach()
            } else {
                t
            };
            t.slice([0..heads, 0..rows, 0..cols])
                .reshape([1, heads, rows, cols])
        };
        let widths = |p: &Param<Tensor<3>>| p.dims()[2];
        let network = |cols: usize, w: &Param<Tensor<3>>, b: &Option<Param<Tensor<3>>>| {
            let w1 = self
                .hidden
                .as_ref()
                .expect("dense modes have a hidden layer");
            let b1 = self.hidden_bias.as_ref().expect("and its bias");
            let b = b.as_ref().expect("network layers have biases");
            let h = relu(
                q.clone()
                    .matmul(per_head(w1, dim, dim).expand([batch, heads, dim, dim]))
                    + per_head(b1, 1, dim),
            );
            h.matmul(per_head(w, dim, cols).expand([batch, heads, dim, cols]))
                + per_head(b, 1, cols)
        };
        match self.mode() {
            SynthesizerMode::Dense => network(len, &self.first, &self.first_bias),
            SynthesizerMode::FactorizedDense => {
                let second = self.second.as_ref().expect("two factors");
                let (a, b) = (widths(&self.first), widths(second));
                let fa =
                    network(a, &self.first, &self.first_bias).reshape([batch, heads, len, 1, a]);
                let fb = network(b, second, &self.second_bias).reshape([batch, heads, len, b, 1]);
                // Entry j = (j div a, j mod a) of the b × a outer product.
                (fa * fb).reshape([batch, heads, len, a * b]).slice([
                    0..batch,
                    0..heads,
                    0..len,
                    0..len,
                ])
            }
            SynthesizerMode::Random => per_head(&self.first, len, len),
            SynthesizerMode::FactorizedRandom => {
                let second = self.second.as_ref().expect("two factors");
                let rank = widths(&self.first);
                per_head(&self.first, len, rank).matmul(per_head(second, len, rank).transpose())
            }
        }
    }
}

impl Mechanism for SynthesizerAttention {
    /// Attends with the synthesised (and, with `mix`, dot-product) logits.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`], `N ≤ max_len`
    /// - output: `[B, H, N, D]`
    ///
    /// # Panics
    /// Panics when `N` exceeds `max_len`; configs check this before a model is built.
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        crate::layout::assert_fits("synthesizer", len, self.max_len);
        let mut scores = self.logits(&input.q).expand([batch, heads, len, len]);
        if self.mix {
            scores = scores + input.q.matmul(input.k.transpose()) / (dim as f64).sqrt();
        }
        let blocked = blocked_positions(input.key_padding, input.causal, len, &input.v.device());
        attend_scores(scores, input.v, blocked)
    }

    /// FLOPs and saved bytes: the logits (network or matrix), the optional dot product, softmax
    /// and the product with `v`; the `N × N` probabilities are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        let logits = match self.mode() {
            SynthesizerMode::Dense => 2.0 * n * d * d + 2.0 * n * d * n,
            SynthesizerMode::FactorizedDense => {
                let (a, b) = factor_lengths(shape.len);
                2.0 * n * d * d + 2.0 * n * d * (a + b) as f64 + n * n
            }
            SynthesizerMode::Random => 0.0,
            SynthesizerMode::FactorizedRandom => 2.0 * n * n * self.first.dims()[2] as f64,
        };
        let dot = if self.mix {
            2.0 * n * n * d + n * n
        } else {
            0.0
        };
        AttentionCost {
            // Softmax: max, shift, exp, sum, divide; the dot product adds its scaling.
            forward_flops: bh * (logits + dot + 2.0 * n * n * d + 5.0 * n * n),
            backward_flops: bh * (2.0 * (logits + dot) + 4.0 * n * n * d + 5.0 * n * n),
            saved_bytes: bh * n * n * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, check_param_grads, random_qkv, to_f64};
    use burn::tensor::{Bool, TensorData};

    /// Sequences of up to 6 tokens, 2 heads of 3.
    const SIX_BY_TWO_HEADS: AttentionLayout = AttentionLayout {
        layer: 0,
        max_len: 6,
        heads: 2,
        head_dim: 3,
    };

    /// softmax over the visible logits of each row, times v; zeros where nothing is visible.
    fn naive(
        logits: &[f64],
        v: &[f64],
        [b, h, n, d]: [usize; 4],
        pad: &[bool],
        causal: bool,
    ) -> Vec<f64> {
        let mut out = vec![0.0; b * h * n * d];
        for bh in 0..b * h {
            let bi = bh / h;
            for i in 0..n {
                let seen: Vec<usize> = (0..n)
                    .filter(|&j| !(pad[bi * n + j] || (causal && j > i)))
                    .collect();
                let row = |j: usize| logits[(bh * n + i) * n + j];
                let max = seen
                    .iter()
                    .map(|&j| row(j))
                    .fold(f64::NEG_INFINITY, f64::max);
                let z: f64 = seen.iter().map(|&j| (row(j) - max).exp()).sum();
                for &j in &seen {
                    let w = (row(j) - max).exp() / z;
                    for c in 0..d {
                        out[(bh * n + i) * d + c] += w * v[(bh * n + j) * d + c];
                    }
                }
            }
        }
        out
    }

    /// Logits by plain loops from the parameters, per batch row and head: `[B·H·N·N]`.
    fn naive_logits(
        m: &SynthesizerAttention,
        q: &[f64],
        k: &[f64],
        [b, h, n, d]: [usize; 4],
    ) -> Vec<f64> {
        let p = |t: &Param<Tensor<3>>| (to_f64(t.val()), t.dims());
        let at = |(v, s): &(Vec<f64>, [usize; 3]), hh: usize, r: usize, c: usize| {
            v[(hh * s[1] + r) * s[2] + c]
        };
        let mut out = vec![0.0; b * h * n * n];
        for bi in 0..b {
            for hh in 0..h {
                let qrow = |i: usize, c: usize| q[((bi * h + hh) * n + i) * d + c];
                let net = |i: usize,
                           w: &(Vec<f64>, [usize; 3]),
                           bias: &Option<Param<Tensor<3>>>,
                           j: usize| {
                    let (w1, b1) = (
                        p(m.hidden.as_ref().unwrap()),
                        p(m.hidden_bias.as_ref().unwrap()),
                    );
                    let bias = p(bias.as_ref().unwrap());
                    (0..d)
                        .map(|e| {
                            let hid = (0..d).map(|c| qrow(i, c) * at(&w1, hh, c, e)).sum::<f64>()
                                + at(&b1, hh, 0, e);
                            hid.max(0.0) * at(w, hh, e, j)
                        })
                        .sum::<f64>()
                        + at(&bias, hh, 0, j)
                };
                for i in 0..n {
                    for j in 0..n {
                        let mut l = match m.mode() {
                            SynthesizerMode::Dense => net(i, &p(&m.first), &m.first_bias, j),
                            SynthesizerMode::FactorizedDense => {
                                let a = m.first.dims()[2];
                                net(i, &p(&m.first), &m.first_bias, j % a)
                                    * net(i, &p(m.second.as_ref().unwrap()), &m.second_bias, j / a)
                            }
                            SynthesizerMode::Random => at(&p(&m.first), hh, i, j),
                            SynthesizerMode::FactorizedRandom => {
                                let (r1, r2) = (p(&m.first), p(m.second.as_ref().unwrap()));
                                (0..r1.1[2])
                                    .map(|c| at(&r1, hh, i, c) * at(&r2, hh, j, c))
                                    .sum()
                            }
                        };
                        if m.mix {
                            let kk = |c: usize| k[((bi * h + hh) * n + j) * d + c];
                            l +=
                                (0..d).map(|c| qrow(i, c) * kk(c)).sum::<f64>() / (d as f64).sqrt();
                        }
                        out[((bi * h + hh) * n + i) * n + j] = l;
                    }
                }
            }
        }
        out
    }

    const MODES: [SynthesizerMode; 4] = [
        SynthesizerMode::Dense,
        SynthesizerMode::Random,
        SynthesizerMode::FactorizedDense,
        SynthesizerMode::FactorizedRandom,
    ];

    /// Every mode, mixed or not, causal or not, with padding and `N < max_len`, equals softmax of
    /// its logits built by loops from the parameters, times v (random: softmax(R)·V exactly).
    #[test]
    fn every_mode_equals_softmax_of_its_logits_times_v() {
        let device = Device::flex();
        let dims = [2, 2, 7, 4];
        let (q, k, v, _) = random_qkv(dims, 11, &device);
        let pad: Vec<bool> = (0..14).map(|p| p % 7 >= [7, 5][p / 7]).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, 7]), &device);
        for (i, mode) in MODES.into_iter().enumerate() {
            for mix in [false, true] {
                for causal in [false, true] {
                    let m = crate::testing::seeded(&device, i as u64, || {
                        SynthesizerAttention::new(
                            &SynthesizerConfig {
                                mode,
                                rank: 3,
                                mix,
                                frozen: false,
                                max_len: Some(9),
                            },
                            AttentionLayout {
                                layer: 0,
                                max_len: 9,
                                heads: 2,
                                head_dim: 4,
                            },
                            &device,
                        )
                    });
                    let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                        .with_key_padding(mask.clone())
                        .with_causal(causal);
                    let logits = naive_logits(&m, &to_f64(q.clone()), &to_f64(k.clone()), dims);
                    let expected = naive(&logits, &to_f64(v.clone()), dims, &pad, causal);
                    assert_close(
                        &format!("{mode:?} mix={mix} causal={causal}"),
                        &to_f64(m.forward(input)),
                        &expected,
                        1e-5,
                        1e-6,
                    );
                }
            }
        }
    }

    /// Parameter gradients agree with central differences; frozen random matrices get none.
    #[test]
    fn parameter_gradients_match_differences() {
        let device = Device::flex().autodiff();
        let dims = [1, 2, 5, 3];
        let (q, k, v, w) = random_qkv(dims, 2, &device);
        for (i, mode) in MODES.into_iter().enumerate() {
            let m = crate::testing::seeded(&device, 20 + i as u64, || {
                SynthesizerAttention::new(
                    &SynthesizerConfig {
                        mode,
                        rank: 2,
                        mix: true,
                        frozen: false,
                        max_len: Some(6),
                    },
                    SIX_BY_TWO_HEADS,
                    &device,
                )
            });
            check_param_grads(
                &format!("synthesizer {mode:?}"),
                &m,
                |m| {
                    (m.forward(
                        AttentionInput::new(q.clone(), k.clone(), v.clone()).with_causal(true),
                    ) * w.clone())
                    .sum()
                },
                4,
            );
        }
        let frozen = SynthesizerAttention::new(
            &SynthesizerConfig {
                mode: SynthesizerMode::Random,
                rank: 2,
                mix: false,
                frozen: true,
                max_len: Some(6),
            },
            SIX_BY_TWO_HEADS,
            &device,
        );
        let loss = (frozen.forward(AttentionInput::new(q.clone(), k, v)) * w).sum();
        let grads = loss.backward();
        assert!(
            frozen.first.val().grad(&grads).is_none(),
            "frozen R has no gradient"
        );
    }

    #[test]
    fn factor_lengths_cover_the_sequence() {
        for n in 1..200 {
            let (a, b) = factor_lengths(n);
            assert!(a * b >= n && a * (b - 1) < n + a, "n={n}: {a}×{b}");
        }
    }
}
