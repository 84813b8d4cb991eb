//! Reformer's LSH attention (Kitaev et al. 2020).
//!
//! Queries and keys are shared: the key of token `j` is its query, unit-normalised. Each of
//! `hashes` rounds hashes tokens with a random rotation `R` (`D × buckets/2`, seeded) as
//! `h(x) = argmax([x·R; −x·R])`, sorts them by (bucket, position), cuts the sorted sequence into
//! chunks of `chunk` and lets each chunk attend to itself and the chunk before it, within the
//! same bucket. A token does not attend to itself unless nothing else is visible (its self score
//! is replaced by [`SELF_SCORE`]). The rounds are combined with weights `softmax_r(lse_r)`, where
//! `lse_r` is the log-sum-exp of a query's scores in round `r`. O(hashes·N·chunk·D) time and
//! memory. Padded tokens are hashed like the others and masked as keys; the tail that fills the
//! last chunk goes to an extra bucket after all others. Causal: a key after the query is masked as well.

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor, TensorData, s};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::mechanism::{at_least, fits, out_of_range};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// The score a token gives itself: far below any real score, far above a blocked one, so
/// self-attention wins only when nothing else is visible.
pub const SELF_SCORE: f64 = -1e5;

/// [`SELF_SCORE`] in a float type narrower than f32: between its finite blocked score
/// ([`eft_kernels::LOW_PRECISION_BLOCKED_SCORE`]) and any real score.
fn self_score(dtype: burn::tensor::DType) -> f64 {
    match dtype {
        burn::tensor::DType::F32 | burn::tensor::DType::F64 => SELF_SCORE,
        _ => f64::from(eft_kernels::LOW_PRECISION_BLOCKED_SCORE) / 3.0,
    }
}

/// Parameters of `lsh`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LshConfig {
    /// Buckets per round: 1 or an even number. Default 8.
    pub buckets: usize,
    /// Hashing rounds. Default 2.
    pub hashes: usize,
    /// Tokens per chunk of the sorted sequence. Default 32.
    pub chunk: usize,
    /// Seed of the random rotations. Default 0.
    pub seed: u64,
}

impl Default for LshConfig {
    fn default() -> Self {
        Self {
            buckets: 8,
            hashes: 2,
            chunk: 32,
            seed: 0,
        }
    }
}

impl MechanismConfig for LshConfig {
    type Module = LshAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> LshAttention {
        LshAttention {
            buckets: self.buckets,
            hashes: self.hashes,
            chunk: self.chunk,
            seed: self.seed,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("buckets", self.buckets, 1)?;
        at_least("hashes", self.hashes, 1)?;
        at_least("chunk", self.chunk, 1)?;
        if self.buckets > 1 && !self.buckets.is_multiple_of(2) {
            return Err(out_of_range(
                "buckets",
                self.buckets,
                "must be 1 or even: the hash picks the largest of x·R and −x·R",
            ));
        }
        Ok(())
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("chunk", self.chunk, len).and(fits("buckets", self.buckets, len))
    }

    fn causal_leak(&self) -> Option<&'static str> {
        Some(
            "tokens are sorted by bucket and chunked over the whole sequence, so a later token's \
             hash moves the chunk boundaries an earlier query sees",
        )
    }
}

/// LSH attention with `hashes` rounds of `buckets` buckets and chunks of `chunk`.
#[derive(Module, Debug)]
pub struct LshAttention {
    /// Buckets per round: 1, or an even number.
    pub buckets: usize,
    /// Hashing rounds.
    pub hashes: usize,
    /// Tokens per chunk of the sorted sequence.
    pub chunk: usize,
    /// Seed of the random rotations.
    pub seed: u64,
}

impl LshAttention {
    /// The random rotations, `[hashes, H, D, buckets/2]` row-major (standard normal, seeded).
    pub fn rotations(&self, heads: usize, dim: usize) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let half = (self.buckets / 2).max(1);
        (0..self.hashes * heads * dim * half)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-300), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect()
    }

    /// Bucket of every token in every round, `[hashes, B, H, N]` (padding not yet assigned).
    pub fn buckets_of(&self, q: &Tensor<4>) -> Vec<Tensor<3, Int>> {
        let [batch, heads, len, dim] = q.dims();
        if self.buckets == 1 {
            let zeros = Tensor::<3, Int>::zeros([batch, heads, len], &q.device());
            return vec![zeros; self.hashes];
        }
        let half = self.buckets / 2;
        let all = Tensor::<4>::from_data(
            TensorData::new(
                self.rotations(heads, dim),
                [self.hashes * heads, 1, dim, half],
            ),
            &q.device(),
        )
        .cast(q.dtype());
        let q = q.clone().detach();
        (0..self.hashes)
            .map(|r| {
                let rot = all
                    .clone()
                    .slice(s![r * heads..(r + 1) * heads, .., .., ..])
                    .reshape([1, heads, dim, half])
                    .expand([batch, heads, dim, half]);
                let proj = q.clone().matmul(rot); // [B, H, N, b/2]
                Tensor::cat(vec![proj.clone(), -proj], 3)
                    .argmax(3)
                    .reshape([batch, heads, len])
            })
            .collect()
    }

    /// One round: sort by (bucket, position), attend in chunks, unsort. Returns the output
    /// `[B, H, Np, D]` and the log-sum-exp of each query's scores `[B, H, Np, 1]`.
    fn round(
        &self,
        [q, keys, v]: [Tensor<4>; 3],
        buckets: Tensor<3, Int>,
        positions: Tensor<3, Int>,
        hidden: Tensor<3, Bool>,
        causal: bool,
        chunk: usize,
    ) -> (Tensor<4>, Tensor<4>) {
        let [batch, heads, padded, dim] = q.dims();
        let device = q.device();
        let chunks = padded / chunk;
        let order = (buckets.clone() * padded as i64 + positions.clone()).argsort(2); // [B, H, Np]
        let undo = order.clone().argsort(2);
        let rows = |t: Tensor<4>, idx: &Tensor<3, Int>| {
            let idx = idx
                .clone()
                .reshape([batch, heads, padded, 1])
                .expand([batch, heads, padded, dim]);
            t.gather(2, idx)
        };
        let sorted = |t: Tensor<3, Int>| t.gather(2, order.clone());
        let (qs, ks, vs) = (rows(q, &order), rows(keys, &order), rows(v, &order));
        let (bs, ps, hs) = (sorted(buckets), sorted(positions), sorted(hidden.int()));

        // The keys of chunk i are chunk i followed by chunk i − 1 (chunk 0's copy of itself in
        // the second half is masked out below).
        let previous = |t: Tensor<5>| {
            let prev = if chunks == 1 {
                t.clone()
            } else {
                let earlier = t.clone().slice(s![.., .., 0..chunks - 1, .., ..]);
                Tensor::cat(vec![t.clone().slice(s![.., .., 0..1, .., ..]), earlier], 2)
            };
            Tensor::cat(vec![t, prev], 3)
        };
        let previous_int = |t: Tensor<3, Int>| {
            let t = t.reshape([batch, heads, chunks, chunk]);
            let prev = if chunks == 1 {
                t.clone()
            } else {
                let earlier = t.clone().slice(s![.., .., 0..chunks - 1, ..]);
                Tensor::cat(vec![t.clone().slice(s![.., .., 0..1, ..]), earlier], 2)
            };
            Tensor::cat(vec![t, prev], 3) // [B, H, C, 2c]
        };
        let qc = qs.reshape([batch, heads, chunks, chunk, dim]);
        let kc = previous(ks.reshape([batch, heads, chunks, chunk, dim]));
        let vc = previous(vs.reshape([batch, heads, chunks, chunk, dim]));
        let scores = qc.matmul(kc.swap_dims(3, 4)) / (dim as f64).sqrt(); // [B, H, C, c, 2c]

        let shape = [batch, heads, chunks, chunk, 2 * chunk];
        let as_query =
            |t: Tensor<3, Int>| t.reshape([batch, heads, chunks, chunk, 1]).expand(shape);
        let as_key = |t: Tensor<3, Int>| {
            previous_int(t)
                .reshape([batch, heads, chunks, 1, 2 * chunk])
                .expand(shape)
        };
        let no_previous: Vec<bool> = (0..chunks * 2 * chunk)
            .map(|p| p < 2 * chunk && p >= chunk)
            .collect();
        let mut blocked = Tensor::<5, Bool>::from_data(
            TensorData::new(no_previous, [1, 1, chunks, 1, 2 * chunk]),
            &device,
        )
        .expand(shape)
        .bool_or(as_query(bs.clone()).not_equal(as_key(bs)))
        .bool_or(as_key(hs).bool());
        let (pq, pk) = (as_query(ps.clone()), as_key(ps));
        if causal {
            blocked = blocked.bool_or(pk.clone().greater(pq.clone()));
        }
        let itself = pk.equal(pq).bool_and(blocked.clone().bool_not());
        let scores = crate::mask::block_out(
            scores.clone().mask_fill(itself, self_score(scores.dtype())),
            blocked.clone(),
        );
        let visible = crate::mask::visible_as(blocked, scores.dtype());
        let top = scores.clone().max_dim(4).detach();
        let mass = ((scores.clone() - top.clone()).exp() * visible.clone()).sum_dim(4);
        let lse = top + mass.clamp_min(1e-30).log(); // [B, H, C, c, 1]
        let weights = (scores - lse.clone()).exp() * visible;
        let out = weights.matmul(vc).reshape([batch, heads, padded, dim]);
        let lse = lse.reshape([batch, heads, padded, 1]);
        let undo_rows = |t: Tensor<4>, width: usize| {
            let idx = undo
                .clone()
                .reshape([batch, heads, padded, 1])
                .expand([batch, heads, padded, width]);
            t.gather(2, idx)
        };
        (undo_rows(out, dim), undo_rows(lse, 1))
    }
}

impl Mechanism for LshAttention {
    /// Hashes, sorts, attends in chunks and combines the rounds.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]; `k` is not read (keys are the normalised queries)
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        let device = input.q.device();
        let chunk = self.chunk.min(len);
        let padded = len.div_ceil(chunk) * chunk;
        let extend = |t: Tensor<4>| {
            if padded == len {
                return t;
            }
            let zeros = Tensor::<4>::zeros([batch, heads, padded - len, dim], &device);
            Tensor::cat(vec![t, zeros], 2)
        };
        let norm = (input.q.clone() * input.q.clone())
            .sum_dim(3)
            .sqrt()
            .clamp_min(1e-6);
        let keys = extend(input.q.clone() / norm);
        let (q, v) = (extend(input.q.clone()), extend(input.v));
        // Tokens never seen as keys: padding and the filler tail.
        let hidden: Tensor<2, Bool> = {
            let pad = match input.key_padding {
                Some(m) => m,
                None => Tensor::<2, Int>::zeros([batch, len], &device).bool(),
            };
            if padded == len {
                pad
            } else {
                let tail = Tensor::<2, Int>::ones([batch, padded - len], &device).bool();
                Tensor::cat(vec![pad, tail], 1)
            }
        };
        let hidden = hidden
            .reshape([batch, 1, padded])
            .expand([batch, heads, padded]);
        let positions = Tensor::<1, Int>::arange(0..padded as i64, &device)
            .reshape([1, 1, padded])
            .expand([batch, heads, padded]);

        let mut outs = Vec::with_capacity(self.hashes);
        let mut lses = Vec::with_capacity(self.hashes);
        for buckets in self.buckets_of(&input.q) {
            // The filler tail sorts after every real bucket; padding keeps its hash (it is only
            // masked as a key, so padded queries attend like everyone else).
            let buckets = if padded == len {
                buckets
            } else {
                let tail = Tensor::<3, Int>::full(
                    [batch, heads, padded - len],
                    self.buckets as i64,
                    &device,
                );
                Tensor::cat(vec![buckets, tail], 2)
            };
            let (out, lse) = self.round(
                [q.clone(), keys.clone(), v.clone()],
                buckets,
                positions.clone(),
                hidden.clone(),
                input.causal,
                chunk,
            );
            outs.push(out.slice(s![.., .., 0..len, ..]));
            lses.push(lse.slice(s![.., .., 0..len, ..]));
        }
        if self.hashes == 1 {
            return outs.pop().expect("one round");
        }
        let weights = burn::tensor::activation::softmax(Tensor::cat(lses, 3), 3); // [B, H, N, R]
        outs.into_iter()
            .enumerate()
            .map(|(r, out)| out * weights.clone().slice(s![.., .., .., r..r + 1]))
            .reduce(|a, b| a + b)
            .expect("at least one round")
    }

    /// FLOPs and saved bytes of a non-causal call (causal adds one comparison per scored pair
    /// and round). Once: the key normalisation. Per round: hashing (projection, negation,
    /// argmax), and over the `2·chunk` keys of each padded position: scores and scale, two
    /// comparisons and two fills, the log-sum-exp and weights (8 per pair), the values; sorting
    /// moves integers and is not counted. Rounds are then combined by a softmax over rounds.
    /// The chunked probabilities and sorted copies are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        let c = self.chunk.min(shape.len);
        let padded = shape.len.div_ceil(c) * c;
        let (np, r) = (padded as f64, self.hashes as f64);
        let pairs = 2.0 * np * c as f64;
        let hash = if self.buckets > 1 {
            let b = self.buckets as f64;
            n * d * b + 1.5 * n * b
        } else {
            0.0
        };
        let round = hash + pairs * (4.0 * d + 13.0) + 3.0 * np;
        let combine = if self.hashes > 1 {
            5.0 * r * n + (2.0 * r - 1.0) * n * d
        } else {
            0.0
        };
        AttentionCost {
            forward_flops: bh * (3.0 * n * d + 2.0 * n + r * round + combine),
            backward_flops: bh * r * (8.0 * pairs * d + 5.0 * pairs),
            saved_bytes: bh * r * (pairs + 6.0 * np * d) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, random_qkv, to_f64};
    use crate::{attend_scores, dense_reference};
    use burn::tensor::Device;

    fn padding(batch: usize, len: usize, real: &[usize]) -> Vec<bool> {
        (0..batch * len).map(|p| p % len >= real[p / len]).collect()
    }

    fn unit(q: &Tensor<4>) -> Tensor<4> {
        q.clone() / (q.clone() * q.clone()).sum_dim(3).sqrt().clamp_min(1e-6)
    }

    /// Output and dq, dv of `Σ out·w` for a forward that takes (q, v); k is not read by LSH.
    fn run(
        forward: &dyn Fn(Tensor<4>, Tensor<4>) -> Tensor<4>,
        q: &Tensor<4>,
        v: &Tensor<4>,
        w: &Tensor<4>,
    ) -> [Vec<f64>; 3] {
        let (q, v) = (q.clone().require_grad(), v.clone().require_grad());
        let out = forward(q.clone(), v.clone());
        let grads = (out.clone() * w.clone()).sum().backward();
        [
            to_f64(out),
            to_f64(q.grad(&grads).unwrap()),
            to_f64(v.grad(&grads).unwrap()),
        ]
    }

    fn compare(what: &str, fast: [Vec<f64>; 3], slow: [Vec<f64>; 3]) {
        for (name, (a, e)) in ["out", "dq", "dv"].iter().zip(fast.iter().zip(&slow)) {
            let scale = e.iter().fold(0.0f64, |m, x| m.max(x.abs()));
            assert_close(&format!("{what} {name}"), a, e, 1e-4, 1e-5 * scale.max(1.0));
        }
    }

    /// One bucket and one chunk: every token sees every other, so LSH attention is full
    /// shared-QK attention where a token sees itself only when nothing else is visible.
    #[test]
    fn one_bucket_one_chunk_is_full_shared_qk_attention_with_the_self_mask() {
        let device = Device::flex().autodiff();
        let dims = [2, 2, 9, 4];
        let [b, _, n, _] = dims;
        let (q, _, v, w) = random_qkv(dims, 1, &device);
        let lsh = LshAttention {
            buckets: 1,
            hashes: 1,
            chunk: n,
            seed: 0,
        };
        for (real, causal) in [([9, 9], false), ([9, 6], false), ([9, 6], true)] {
            let pad = padding(b, n, &real);
            let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, n]), &device);
            let fast = run(
                &|q, v| {
                    lsh.forward(
                        AttentionInput::new(q.clone(), q, v)
                            .with_key_padding(mask.clone())
                            .with_causal(causal),
                    )
                },
                &q,
                &v,
                &w,
            );
            let mut blocked = Vec::with_capacity(b * n * n);
            for bi in 0..b {
                for i in 0..n {
                    let sees = |j: usize| !(pad[bi * n + j] || (causal && j > i));
                    let others = (0..n).any(|j| j != i && sees(j));
                    blocked.extend((0..n).map(|j| !sees(j) || (j == i && others)));
                }
            }
            let blocked =
                Tensor::<4, Bool>::from_data(TensorData::new(blocked, [b, 1, n, n]), &device);
            let slow = run(
                &|q, v| dense_reference(q.clone(), unit(&q), v, Some(blocked.clone())),
                &q,
                &v,
                &w,
            );
            compare(&format!("real={real:?} causal={causal}"), fast, slow);
        }
    }

    /// The hash is `argmax([x·R; −x·R])`, checked in f64 (ties within 1e-4 skipped).
    #[test]
    fn hashes_are_the_argmax_of_the_rotated_vector_and_its_negation() {
        let device = Device::flex();
        let dims = [1, 2, 12, 4];
        let (q, ..) = random_qkv(dims, 2, &device);
        let lsh = LshAttention {
            buckets: 6,
            hashes: 2,
            chunk: 4,
            seed: 9,
        };
        let rot = lsh.rotations(2, 4);
        let qv = to_f64(q.clone());
        for (r, buckets) in lsh.buckets_of(&q).into_iter().enumerate() {
            let got: Vec<i64> = buckets
                .into_data()
                .convert::<i64>()
                .try_to_vec::<i64>()
                .unwrap();
            for h in 0..2 {
                for i in 0..12 {
                    let proj: Vec<f64> = (0..3)
                        .map(|c| {
                            (0..4)
                                .map(|e| {
                                    qv[(h * 12 + i) * 4 + e]
                                        * rot[((r * 2 + h) * 4 + e) * 3 + c] as f64
                                })
                                .sum()
                        })
                        .collect();
                    let all: Vec<f64> = proj
                        .iter()
                        .copied()
                        .chain(proj.iter().map(|x| -x))
                        .collect();
                    let mut ranked: Vec<usize> = (0..6).collect();
                    ranked.sort_by(|&a, &b| all[b].total_cmp(&all[a]));
                    if all[ranked[0]] - all[ranked[1]] > 1e-4 {
                        assert_eq!(
                            got[h * 12 + i],
                            ranked[0] as i64,
                            "round {r} head {h} token {i}"
                        );
                    }
                }
            }
        }
    }

    /// Several buckets, chunks and rounds: equals, forward and backward, the dense reference
    /// whose mask says "same bucket, same or previous chunk of the sorted order", with the self
    /// rule, rounds combined by their log-sum-exp.
    #[test]
    fn equals_the_dense_reference_with_the_bucket_mask() {
        let device = Device::flex().autodiff();
        let dims = [2, 2, 13, 4];
        let [b, h, n, _] = dims;
        let (q, _, v, w) = random_qkv(dims, 3, &device);
        let lsh = LshAttention {
            buckets: 4,
            hashes: 3,
            chunk: 3,
            seed: 5,
        };
        let padded = n.div_ceil(lsh.chunk) * lsh.chunk;
        for causal in [false, true] {
            let pad = padding(b, n, &[13, 9]);
            let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, n]), &device);
            let fast = run(
                &|q, v| {
                    lsh.forward(
                        AttentionInput::new(q.clone(), q, v)
                            .with_key_padding(mask.clone())
                            .with_causal(causal),
                    )
                },
                &q,
                &v,
                &w,
            );
            // Masks per round from the module's hashes, built by plain loops.
            let rounds: Vec<(Vec<bool>, Vec<bool>)> = lsh
                .buckets_of(&q)
                .into_iter()
                .map(|buckets| {
                    let raw: Vec<i64> = buckets
                        .into_data()
                        .convert::<i64>()
                        .try_to_vec::<i64>()
                        .unwrap();
                    let (mut blocked, mut self_only) = (Vec::new(), Vec::new());
                    for bh in 0..b * h {
                        let bi = bh / h;
                        let hidden = |j: usize| j >= n || pad[bi * n + j];
                        let bucket = |j: usize| {
                            if j >= n {
                                lsh.buckets as i64
                            } else {
                                raw[bh * n + j]
                            }
                        };
                        let mut order: Vec<usize> = (0..padded).collect();
                        order.sort_by_key(|&j| (bucket(j), j));
                        let mut chunk_of = vec![0; padded];
                        for (rank, &j) in order.iter().enumerate() {
                            chunk_of[j] = rank / lsh.chunk;
                        }
                        for i in 0..n {
                            let allowed = |j: usize| {
                                bucket(i) == bucket(j)
                                    && (chunk_of[j] == chunk_of[i]
                                        || chunk_of[j] + 1 == chunk_of[i])
                                    && !hidden(j)
                                    && !(causal && j > i)
                            };
                            let others = (0..n).any(|j| j != i && allowed(j));
                            for j in 0..n {
                                blocked.push(!allowed(j) || (j == i && others));
                                self_only.push(j == i && !others && allowed(i));
                            }
                        }
                    }
                    (blocked, self_only)
                })
                .collect();
            let slow = run(
                &|q, v| {
                    let scores = q.clone().matmul(unit(&q).transpose()) / 2.0; // √D = 2
                    let (outs, lses): (Vec<_>, Vec<_>) = rounds
                        .iter()
                        .map(|(blocked, self_only)| {
                            let bool4 = |x: &Vec<bool>| {
                                Tensor::<4, Bool>::from_data(
                                    TensorData::new(x.clone(), [b, h, n, n]),
                                    &device,
                                )
                            };
                            let blocked = bool4(blocked);
                            let s = scores
                                .clone()
                                .mask_fill(bool4(self_only), self_score(scores.dtype()));
                            let out = attend_scores(s.clone(), v.clone(), Some(blocked.clone()));
                            let masked = crate::mask::block_out(s, blocked.clone());
                            let top = masked.clone().max_dim(3).detach();
                            let visible = crate::mask::visible_as(blocked, masked.dtype());
                            let mass = ((masked - top.clone()).exp() * visible).sum_dim(3);
                            (out, top + mass.clamp_min(1e-30).log())
                        })
                        .unzip();
                    let weights = burn::tensor::activation::softmax(Tensor::cat(lses, 3), 3);
                    outs.into_iter()
                        .enumerate()
                        .map(|(r, o)| o * weights.clone().slice(s![.., .., .., r..r + 1]))
                        .reduce(|a, b| a + b)
                        .unwrap()
                },
                &q,
                &v,
                &w,
            );
            compare(&format!("lsh causal={causal}"), fast, slow);
        }
    }
}
