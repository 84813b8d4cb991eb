//! Sparse Sinkhorn attention (Tay et al. 2020): learned block sorting.
//!
//! The sequence is cut into blocks of `block`. A small sorting network (`relu(s·W₁ + b₁)·W₂ + b₂`,
//! shared by the heads) scores every pair of blocks from each block's mean key `s`; Sinkhorn
//! normalisation (alternating row and column log-normalisation of the scores over `temperature`,
//! `iters` times) turns the scores into a soft permutation `P`. Each query block attends to its own
//! block and to its *sorted* block `Σ_j P_ij·block_j` of keys and values. A sorted key slot gets the
//! score bias `ln(Σ_j P_ij·real_j)`, the share of real tokens mixed into it: zero for a hard
//! permutation of real blocks, very negative for slots made of padding. With `sortcut = k` every
//! query attends to its own block and to the first `k` sorted blocks instead (SortCut).
//!
//! Causal: `P` only moves earlier blocks (`P_ij = 0` for `j ≥ i`) and the own block is causal.
//! O(N·b·D + (N/b)²) time and memory.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Bool, Device, Tensor, TensorData, activation::relu, s};

use crate::mechanism::{at_least, fits, out_of_range};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use serde::{Deserialize, Serialize};

/// Parameters of `sinkhorn`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SinkhornConfig {
    /// Block size. Default 32.
    pub block: usize,
    /// Sinkhorn iterations. Default 8.
    pub sinkhorn_iters: usize,
    /// Temperature dividing the sorting scores, > 0. Default 0.75.
    pub temperature: f64,
    /// SortCut: every query sees the first `sortcut` sorted blocks. Default none.
    pub sortcut: Option<usize>,
}

impl Default for SinkhornConfig {
    fn default() -> Self {
        Self {
            block: 32,
            sinkhorn_iters: 8,
            temperature: 0.75,
            sortcut: None,
        }
    }
}

impl MechanismConfig for SinkhornConfig {
    type Module = SinkhornAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> SinkhornAttention {
        SinkhornAttention::new(
            self.block,
            self.sinkhorn_iters,
            self.temperature,
            self.sortcut.unwrap_or(0),
            layout.max_len.div_ceil(self.block).max(1),
            layout.head_dim,
            device,
        )
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("block", self.block, 1)?;
        at_least("sinkhorn_iters", self.sinkhorn_iters, 1)?;
        at_least("sortcut", self.sortcut.unwrap_or(1), 1)?;
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(out_of_range(
                "temperature",
                self.temperature,
                "must be a number > 0",
            ));
        }
        Ok(())
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("block", self.block, len)?;
        let blocks = len.div_ceil(self.block);
        match self.sortcut {
            Some(k) if k > blocks => Err(out_of_range(
                "sortcut",
                k,
                format!("must not exceed the {blocks} blocks of the sequence"),
            )),
            _ => Ok(()),
        }
    }

    /// SortCut's first blocks are shared by every query, later ones included.
    fn supports_causal(&self) -> bool {
        self.sortcut.is_none()
    }

    fn causal_leak(&self) -> Option<&'static str> {
        Some(
            "the sorting network reads each block's mean key, later tokens of the block \
             included, and Sinkhorn normalisation mixes every block's scores",
        )
    }
}

/// Sinkhorn attention with its sorting network.
#[derive(Module, Debug)]
pub struct SinkhornAttention {
    /// Block size `b`.
    pub block: usize,
    /// Sinkhorn iterations.
    pub iters: usize,
    /// Temperature `τ` dividing the sorting scores.
    pub temperature: f64,
    /// Number of sorted blocks every query sees (SortCut), or 0 for one sorted block per block.
    pub sortcut: usize,
    /// Most blocks a sequence may have (the network's output width).
    pub max_blocks: usize,
    /// Sorting network, first layer `[D, D]`.
    pub hidden: Param<Tensor<2>>,
    /// Its bias `[1, D]`.
    pub hidden_bias: Param<Tensor<2>>,
    /// Output layer `[D, max_blocks]`.
    pub out: Param<Tensor<2>>,
    /// Its bias `[1, max_blocks]`.
    pub out_bias: Param<Tensor<2>>,
}

/// `log Σ exp` along `dim`, stable, keeping the dimension.
fn logsumexp(x: Tensor<4>, dim: usize) -> Tensor<4> {
    let top = x.clone().max_dim(dim).detach();
    top.clone() + (x - top).exp().sum_dim(dim).log()
}

/// `[1, 1, n, n]`, true where block `i` may not draw from block `j ≥ i` (causal sorting).
fn not_earlier(n: usize, device: &Device) -> Tensor<4, Bool> {
    let v: Vec<bool> = (0..n * n).map(|p| p % n >= p / n).collect();
    Tensor::from_data(TensorData::new(v, [1, 1, n, n]), device)
}

/// Sinkhorn normalisation of `scores / temperature` in log space, `[B, H, n, n]` → soft
/// permutation `P`. Causal: entries `j ≥ i` are held at zero throughout.
pub fn sinkhorn(scores: Tensor<4>, iters: usize, temperature: f64, causal: bool) -> Tensor<4> {
    let n = scores.dims()[2];
    let device = scores.device();
    let mask = causal.then(|| not_earlier(n, &device).expand(scores.dims()));
    let hold = |x: Tensor<4>| match &mask {
        Some(m) => crate::mask::block_out(x, m.clone()),
        None => x,
    };
    let mut log_p = hold(scores / temperature);
    for _ in 0..iters {
        log_p = hold(log_p.clone() - logsumexp(log_p, 3));
        log_p = hold(log_p.clone() - logsumexp(log_p, 2));
    }
    let p = log_p.exp();
    match mask {
        Some(m) => p.mask_fill(m, 0.0),
        None => p,
    }
}

impl SinkhornAttention {
    /// Draws the sorting network for head dimension `dim` and up to `max_blocks` blocks from
    /// `device`'s generator (Xavier-uniform weights, zero biases).
    pub fn new(
        block: usize,
        iters: usize,
        temperature: f64,
        sortcut: usize,
        max_blocks: usize,
        dim: usize,
        device: &Device,
    ) -> Self {
        let xavier = Initializer::XavierUniform { gain: 1.0 };
        Self {
            block,
            iters,
            temperature,
            sortcut,
            max_blocks,
            hidden: xavier.init_with([dim, dim], Some(dim), Some(dim), device),
            hidden_bias: Initializer::Zeros.init([1, dim], device),
            out: xavier.init_with([dim, max_blocks], Some(dim), Some(max_blocks), device),
            out_bias: Initializer::Zeros.init([1, max_blocks], device),
        }
    }

    /// Blocks of `b` for a sequence of `len`: `(b, n_blocks)`; `b` is capped at `len`.
    fn blocks(&self, len: usize) -> (usize, usize) {
        let b = self.block.min(len);
        (b, len.div_ceil(b))
    }

    /// 1 for real tokens, 0 for padding and the filler that completes the last block: `[B, Np]`.
    fn real(&self, input: &AttentionInput) -> Tensor<2> {
        let [batch, _, len, _] = input.q.dims();
        let (b, nb) = self.blocks(len);
        let device = input.q.device();
        let real = match &input.key_padding {
            Some(m) => crate::mask::visible_as(m.clone(), input.q.dtype()),
            None => Tensor::ones([batch, len], (&device, input.q.dtype())),
        };
        if nb * b == len {
            return real;
        }
        Tensor::cat(vec![real, Tensor::zeros([batch, nb * b - len], &device)], 1)
    }

    /// The soft permutation `P`, `[B, H, n, n]`, from the blocks' mean real keys.
    pub fn sort_matrix(&self, input: &AttentionInput) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        let (b, nb) = self.blocks(len);
        assert!(
            nb <= self.max_blocks,
            "sinkhorn was built for up to {} blocks, got {nb}; rebuild it with a larger max_len",
            self.max_blocks
        );
        let real = self.real(input).reshape([batch, 1, nb, b, 1]);
        let keys =
            extend(input.k.clone(), nb * b).reshape([batch, heads, nb, b, dim]) * real.clone();
        let count = real.sum_dim(3).clamp_min(1.0).reshape([batch, 1, nb, 1]);
        let summary = keys.sum_dim(3).reshape([batch, heads, nb, dim]) / count;
        let w = |p: &Param<Tensor<2>>, cols: usize| {
            let t = p.val();
            let rows = t.dims()[0];
            t.slice(s![.., 0..cols]).reshape([1, 1, rows, cols])
        };
        let h = relu(
            summary.matmul(w(&self.hidden, dim).expand([batch, heads, dim, dim]))
                + w(&self.hidden_bias, dim),
        );
        let scores =
            h.matmul(w(&self.out, nb).expand([batch, heads, dim, nb])) + w(&self.out_bias, nb);
        sinkhorn(scores, self.iters, self.temperature, input.causal)
    }

    /// Attends each block to itself and to its sorted block(s) under a given `P`.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]; `p`: `[B, H, n, n]`, `n` blocks of the (padded) input
    /// - output: `[B, H, N, D]`
    pub fn attend_sorted(&self, input: AttentionInput, p: Tensor<4>) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        let (b, nb) = self.blocks(len);
        let device = input.q.device();
        let real = self.real(&input); // [B, Np]
        let blocks = |t: Tensor<4>| extend(t, nb * b).reshape([batch, heads, nb, b, dim]);
        let realb = real.clone().reshape([batch, 1, nb, b, 1]);
        let (qb, kb, vb) = (
            blocks(input.q),
            blocks(input.k) * realb.clone(),
            blocks(input.v) * realb,
        );
        let mix = |t: Tensor<5>| {
            p.clone()
                .matmul(t.reshape([batch, heads, nb, b * dim]))
                .reshape([batch, heads, nb, b, dim])
        };
        let (ks, vs) = (mix(kb.clone()), mix(vb.clone()));
        let validity = p.clone().matmul(
            real.clone()
                .reshape([batch, 1, nb, b])
                .expand([batch, heads, nb, b]),
        ); // [B, H, n, b]

        // The sorted keys each query block sees: its own sorted block, or the first k (SortCut).
        let (ks, vs, validity, width) = if self.sortcut == 0 {
            (ks, vs, validity.reshape([batch, heads, nb, 1, b]), b)
        } else {
            let k = self.sortcut.min(nb);
            let first = |t: Tensor<5>| {
                t.slice(s![.., .., 0..k, .., ..])
                    .reshape([batch, heads, 1, k * b, dim])
                    .expand([batch, heads, nb, k * b, dim])
            };
            let valid = validity
                .slice(s![.., .., 0..k, ..])
                .reshape([batch, heads, 1, 1, k * b]);
            (
                first(ks),
                first(vs),
                valid.expand([batch, heads, nb, 1, k * b]),
                k * b,
            )
        };
        let keys = Tensor::cat(vec![kb, ks], 3); // [B, H, n, b + w, D]
        let values = Tensor::cat(vec![vb, vs], 3);
        let scores = qb.matmul(keys.swap_dims(3, 4)) / (dim as f64).sqrt(); // [B, H, n, b, b + w]

        // Own block: padding and (causal) later positions blocked. Sorted slots: blocked when
        // they hold no real token at all, otherwise biased by the log of their real share.
        let shape = [batch, heads, nb, b, b + width];
        let later: Vec<bool> = (0..b * b).map(|x| input.causal && x % b > x / b).collect();
        let own_blocked =
            Tensor::<5, Bool>::from_data(TensorData::new(later, [1, 1, 1, b, b]), &device)
                .expand([batch, heads, nb, b, b])
                .bool_or(
                    real.reshape([batch, 1, nb, 1, b])
                        .lower_elem(0.5)
                        .expand([batch, heads, nb, b, b]),
                );
        let empty = validity
            .clone()
            .lower_elem(1e-12)
            .expand([batch, heads, nb, b, width]);
        let blocked = Tensor::cat(vec![own_blocked, empty], 4);
        let bias = Tensor::cat(
            vec![
                Tensor::zeros([batch, heads, nb, 1, b], (&device, validity.dtype())),
                validity.clamp_min(1e-12).log(),
            ],
            4,
        );
        let scores = crate::mask::block_out(scores + bias, blocked.clone());
        let weights =
            eft_kernels::softmax(scores.clone()) * crate::mask::visible_as(blocked, scores.dtype());
        debug_assert_eq!(weights.dims(), shape);
        weights
            .matmul(values)
            .reshape([batch, heads, nb * b, dim])
            .slice(s![.., .., 0..len, ..])
    }
}

impl Mechanism for SinkhornAttention {
    /// Sorts and attends.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let p = self.sort_matrix(&input);
        self.attend_sorted(input, p)
    }

    /// FLOPs and saved bytes of a non-causal call: block summaries, the sorting network and
    /// Sinkhorn on `n × n` blocks, the mixing `P·blocks`, and attention over `b + w` keys per
    /// query (`w` = b, or k·b with SortCut); causal adds the masking of the sorting scores.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (b, nb) = self.blocks(shape.len);
        let (n, d, bf, nbf) = ((nb * b) as f64, shape.head_dim as f64, b as f64, nb as f64);
        let width = if self.sortcut == 0 {
            bf
        } else {
            (self.sortcut.min(nb) * b) as f64
        };
        let keys = bf + width;
        let pairs = n * keys;
        // Sorting: masked key sums and means, the network, temperature, Sinkhorn iterations
        // (two log-normalisations of 5 per entry and 2 per row each), the final exponential.
        let sorting = 2.0 * n * d
            + nbf * d
            + 2.0 * nbf * d * d
            + 2.0 * nbf * d
            + 2.0 * nbf * nbf * d
            + 2.0 * nbf * nbf
            + self.iters as f64 * (10.0 * nbf * nbf + 4.0 * nbf)
            + nbf * nbf;
        // Attending: masked keys and values, mixing by P, real shares, their test and log,
        // then per scored pair: score, scale, bias, fill, softmax, visibility, values.
        let attending =
            2.0 * n * d + 4.0 * nbf * n * d + 2.0 * nbf * n + 3.0 * n + pairs * (4.0 * d + 9.0);
        // The real-token counts and their comparison are per batch row, not per head.
        let per_row = 2.0 * n + nbf;
        AttentionCost {
            forward_flops: bh * (sorting + attending) + shape.batch as f64 * per_row,
            backward_flops: bh * 2.0 * (sorting + attending),
            saved_bytes: bh
                * (n * keys + 2.0 * nbf * bf * d + (2.0 * self.iters as f64 + 1.0) * nbf * nbf)
                * 4.0,
        }
    }
}

/// `t` with zero rows appended along positions up to `to`.
fn extend(t: Tensor<4>, to: usize) -> Tensor<4> {
    let [batch, heads, len, dim] = t.dims();
    if to == len {
        return t;
    }
    let zeros = Tensor::zeros([batch, heads, to - len, dim], &t.device());
    Tensor::cat(vec![t, zeros], 2)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::attend_scores;
    use crate::testing::{
        Case, assert_close, check_fn_against_reference, check_param_grads, random_qkv, to_f64,
    };

    fn module(block: usize, sortcut: usize, device: &Device) -> SinkhornAttention {
        crate::testing::seeded(device, 3, || {
            SinkhornAttention::new(block, 8, 0.75, sortcut, 8, 4, device)
        })
    }

    fn padding(batch: usize, len: usize, real: &[usize]) -> Vec<bool> {
        (0..batch * len).map(|p| p % len >= real[p / len]).collect()
    }

    /// A hard permutation of blocks: each block attends to itself and to block π(i); this must
    /// equal the dense reference with exactly that block mask (padding and causal included).
    #[test]
    fn a_hard_permutation_equals_the_dense_block_mask() {
        let device = Device::flex().autodiff();
        let (b, n) = (4, 13); // 4 blocks, the last one part filler
        let m = module(b, 0, &device);
        for (causal, perm) in [(false, [2usize, 3, 0, 1]), (true, [0, 0, 1, 2])] {
            // Causal: block i draws from block i − 1, block 0 from nothing.
            let from = |i: usize| (!causal || i > 0).then_some(perm[i]);
            let p: Vec<f32> = (0..16)
                .map(|x| f32::from(u8::from(from(x / 4) == Some(x % 4))))
                .collect();
            let p = Tensor::<4>::from_data(TensorData::new(p, [1, 1, 4, 4]), &device);
            let blocked: Vec<bool> = (0..n * n)
                .map(|x| {
                    let (i, j) = (x / n, x % n);
                    j / b != i / b && from(i / b) != Some(j / b)
                })
                .collect();
            let blocked =
                Tensor::<4, Bool>::from_data(TensorData::new(blocked, [1, 1, n, n]), &device);
            let case = Case {
                dims: [2, 2, n, 4],
                real: vec![13, 10],
                causal,
                seed: 1,
            };
            check_fn_against_reference(
                &format!("sinkhorn hard permutation causal={causal}"),
                &|input| {
                    let [batch, heads, ..] = input.q.dims();
                    m.attend_sorted(input, p.clone().expand([batch, heads, 4, 4]))
                },
                blocked,
                &case,
                1e-5,
            );
        }
    }

    /// The dense reference built from the module's own soft `P`: keys are the real keys followed
    /// by `(P ⊗ I_b)·keys`, each query sees its own block and its sorted block (or the first
    /// `sortcut` sorted blocks), sorted slots biased by the log of their real share.
    fn dense_from_p(m: &SinkhornAttention, input: AttentionInput, pad: &[bool]) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        let device = input.q.device();
        let (b, nb) = m.blocks(len);
        let np = nb * b;
        let p = m.sort_matrix(&input);
        let real = m.real(&input).reshape([batch, 1, np, 1]);
        let (q, k, v) = (
            extend(input.q, np),
            extend(input.k, np) * real.clone(),
            extend(input.v, np) * real.clone(),
        );
        let eye = Tensor::<2>::eye(b, &device).reshape([1, 1, 1, b, 1, b]);
        let spread =
            (p.reshape([batch, heads, nb, 1, nb, 1]) * eye).reshape([batch, heads, np, np]);
        let (ks, vs) = (
            spread.clone().matmul(k.clone()),
            spread.clone().matmul(v.clone()),
        );
        let share = spread.matmul(real.expand([batch, heads, np, 1])); // [B, H, np, 1]
        let keys = Tensor::cat(vec![k, ks], 2);
        let values = Tensor::cat(vec![v, vs], 2);
        let bias = Tensor::cat(
            vec![
                Tensor::zeros([batch, heads, 1, np], &device),
                share
                    .clone()
                    .clamp_min(1e-12)
                    .log()
                    .reshape([batch, heads, 1, np]),
            ],
            3,
        );
        let scores = q.matmul(keys.transpose()) / (dim as f64).sqrt() + bias;
        let cut = m.sortcut.min(nb);
        let mut rule = Vec::with_capacity(batch * np * 2 * np);
        for bi in 0..batch {
            for i in 0..np {
                for j in 0..2 * np {
                    rule.push(if j < np {
                        let real = j < len && !pad[bi * len + j];
                        !(j / b == i / b && real && !(input.causal && j > i))
                    } else if m.sortcut == 0 {
                        (j - np) / b != i / b
                    } else {
                        (j - np) / b >= cut
                    });
                }
            }
        }
        let rule =
            Tensor::<4, Bool>::from_data(TensorData::new(rule, [batch, 1, np, 2 * np]), &device);
        let empty = Tensor::cat(
            vec![
                Tensor::<4, Bool>::from_data(
                    TensorData::new(vec![false; np], [1, 1, 1, np]),
                    &device,
                )
                .expand([batch, heads, 1, np]),
                share.lower_elem(1e-12).reshape([batch, heads, 1, np]),
            ],
            3,
        );
        let blocked = rule
            .expand([batch, heads, np, 2 * np])
            .bool_or(empty.expand([batch, heads, np, 2 * np]));
        attend_scores(scores, values, Some(blocked)).slice(s![.., .., 0..len, ..])
    }

    #[test]
    fn equals_the_dense_reference_built_from_its_soft_permutation() {
        let device = Device::flex().autodiff();
        let dims = [2, 2, 13, 4];
        let pad = padding(2, 13, &[13, 10]);
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, 13]), &device);
        for (sortcut, causal) in [(0, false), (0, true), (2, false)] {
            let m = module(4, sortcut, &device);
            let (q, k, v, w) = random_qkv(dims, 7, &device);
            let run = |fast: bool| {
                let (q, k, v) = (
                    q.clone().require_grad(),
                    k.clone().require_grad(),
                    v.clone().require_grad(),
                );
                let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                    .with_key_padding(mask.clone())
                    .with_causal(causal);
                let out = if fast {
                    m.forward(input)
                } else {
                    dense_from_p(&m, input, &pad)
                };
                let grads = (out.clone() * w.clone()).sum().backward();
                let g = |t: &Tensor<4>| to_f64(t.grad(&grads).unwrap());
                [to_f64(out), g(&q), g(&k), g(&v)]
            };
            let (fast, slow) = (run(true), run(false));
            for (name, (a, e)) in ["out", "dq", "dk", "dv"].iter().zip(fast.iter().zip(&slow)) {
                assert_close(
                    &format!("sinkhorn sortcut={sortcut} causal={causal} {name}"),
                    a,
                    e,
                    1e-4,
                    1e-5,
                );
            }
        }
    }

    #[test]
    fn sinkhorn_balances_rows_and_columns_and_respects_causality() {
        let device = Device::flex();
        let (scores, ..) = random_qkv([1, 2, 5, 5], 4, &device);
        let p = to_f64(sinkhorn(scores.clone(), 60, 1.0, false));
        for r in 0..10 {
            let row: f64 = (0..5).map(|c| p[r * 5 + c]).sum();
            let col: f64 = (0..5).map(|x| p[(r / 5 * 5 + x) * 5 + r % 5]).sum();
            assert!(
                (row - 1.0).abs() < 1e-3 && (col - 1.0).abs() < 1e-3,
                "{row} {col}"
            );
        }
        let p = to_f64(sinkhorn(scores, 10, 1.0, true));
        for (x, value) in p.iter().enumerate() {
            if x % 5 >= (x / 5) % 5 {
                assert_eq!(
                    *value,
                    0.0,
                    "block {} drew from block {}",
                    (x / 5) % 5,
                    x % 5
                );
            }
        }
    }

    #[test]
    fn sorting_network_gradients_match_differences() {
        let device = Device::flex().autodiff();
        let (q, k, v, w) = random_qkv([1, 2, 12, 4], 8, &device);
        let m = module(3, 0, &device);
        check_param_grads(
            "sinkhorn",
            &m,
            |m| (m.forward(AttentionInput::new(q.clone(), k.clone(), v.clone())) * w.clone()).sum(),
            4,
        );
    }
}
