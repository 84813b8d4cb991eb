//! The fused CPU flash-attention kernel on `f32` slices: forward with an online
//! softmax, backward recomputing probabilities from the saved log-sum-exp (FlashAttention-2
//! order), threads over batch × heads (× query tiles forward), scratch allocated once per task.

use std::ops::Range;

use rayon::prelude::*;

use burn::backend::flex::FlexTensor;

use super::heads::{Dims, FlexInputs, Heads, Inputs, Visibility};
use super::matmul::{Mat, matmul};
use super::rows::{RowOps, best};
use super::tensor;
use crate::BLOCKED_SCORE;

/// Scores `s = q_i·k_jᵀ/√D + bias_j`, future keys blocked when causal; `s` is `rows × cols`.
#[allow(clippy::too_many_arguments)]
fn scores(
    s: &mut [f32],
    q_i: Mat,
    k_j: Mat,
    bias_j: &[f32],
    rows: &Range<usize>,
    cols: &Range<usize>,
    d: usize,
    causal: bool,
) {
    let (br, bc) = (rows.len(), cols.len());
    let s = &mut s[..br * bc];
    let scale = 1.0 / (d as f32).sqrt();
    matmul(s, q_i, k_j.t(), scale, false);
    for (r, row) in s.chunks_exact_mut(bc).enumerate() {
        for (x, b) in row.iter_mut().zip(bias_j) {
            *x += b;
        }
        let i = rows.start + r;
        if causal && cols.end > i + 1 {
            for x in &mut row[(i + 1).saturating_sub(cols.start)..] {
                *x = BLOCKED_SCORE;
            }
        }
    }
}

/// The forward pass: output `[B, H, N, D]` and log-sum-exp `[B, H, N]` (0 for rows that see no key).
pub(crate) fn forward(x: &Inputs) -> (Vec<f32>, Vec<f32>) {
    forward_with(x, best())
}

pub(crate) fn forward_with(x: &Inputs, ops: RowOps) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        len: n,
        dim: d,
        ..
    } = x.dims;
    let tile = x.tile.clamp(1, n.max(1));
    let seen = Visibility::new(x.bias, x.dims, tile);
    let mut out = vec![0.0f32; batch * heads * n * d];
    let mut lse = vec![0.0f32; batch * heads * n];
    let mut tasks = Vec::new();
    for (bh, (o, l)) in out.chunks_mut(n * d).zip(lse.chunks_mut(n)).enumerate() {
        for (t, (o, l)) in o.chunks_mut(tile * d).zip(l.chunks_mut(tile)).enumerate() {
            tasks.push((bh, t * tile, o, l));
        }
    }
    tasks.into_par_iter().for_each_init(
        || (vec![0.0f32; tile * tile], vec![0.0f32; tile * d]),
        |(s, acc), (bh, r0, out, lse)| {
            let (b, h) = (bh / heads, bh % heads);
            let rows = r0..r0 + lse.len();
            let br = rows.len();
            let q_i = x.q.rows(b, h, &rows);
            let (mut m, mut l) = (vec![f32::NEG_INFINITY; br], vec![0.0f32; br]);
            acc[..br * d].fill(0.0);
            for (t, c0) in (0..n).step_by(tile).enumerate() {
                if !seen.needs(b, t, c0, &rows, x.causal) {
                    continue;
                }
                let cols = c0..(c0 + tile).min(n);
                let bc = cols.len();
                let (k_j, v_j) = (x.k.rows(b, h, &cols), x.v.rows(b, h, &cols));
                scores(
                    s,
                    q_i,
                    k_j,
                    &x.bias[b * n + c0..b * n + cols.end],
                    &rows,
                    &cols,
                    d,
                    x.causal,
                );
                for r in 0..br {
                    let row = &mut s[r * bc..(r + 1) * bc];
                    let m_new = m[r].max((ops.max)(row));
                    let sum = (ops.exp_sub_sum)(row, m_new);
                    let correction = (m[r] - m_new).exp();
                    l[r] = l[r] * correction + sum;
                    m[r] = m_new;
                    if correction != 1.0 {
                        for a in &mut acc[r * d..(r + 1) * d] {
                            *a *= correction;
                        }
                    }
                }
                matmul(
                    &mut acc[..br * d],
                    Mat::rows(&s[..br * bc], br, bc),
                    v_j,
                    1.0,
                    true,
                );
            }
            for r in 0..br {
                if seen.sees_any(b, rows.start + r, x.causal) {
                    let inv = 1.0 / l[r];
                    for (o, a) in out[r * d..(r + 1) * d]
                        .iter_mut()
                        .zip(&acc[r * d..(r + 1) * d])
                    {
                        *o = a * inv;
                    }
                    lse[r] = m[r] + l[r].ln();
                }
            }
        },
    );
    (out, lse)
}

/// The backward pass: `(dq, dk, dv)`, each `[B, H, N, D]`, from the saved output and log-sum-exp.
pub(crate) fn backward(x: &Inputs, out: &[f32], lse: &[f32], d_out: Heads) -> [Vec<f32>; 3] {
    backward_with(x, out, lse, d_out, best())
}

pub(crate) fn backward_with(
    x: &Inputs,
    out: &[f32],
    lse: &[f32],
    d_out: Heads,
    ops: RowOps,
) -> [Vec<f32>; 3] {
    let Dims {
        heads,
        len: n,
        dim: d,
        ..
    } = x.dims;
    let tile = x.tile.clamp(1, n.max(1));
    let seen = Visibility::new(x.bias, x.dims, tile);
    let [mut dq, mut dk, mut dv] = x.dims.zero_grads();
    let scale = 1.0 / (d as f32).sqrt();
    let head_size = n * d;
    dq.par_chunks_mut(head_size)
        .zip(dk.par_chunks_mut(head_size))
        .zip(dv.par_chunks_mut(head_size))
        .enumerate()
        .for_each(|(bh, ((dq, dk), dv))| {
            let (b, h) = (bh / heads, bh % heads);
            let head = bh * head_size;
            // Rows that see no key output zeros, so their gradient is dropped here.
            let mut g = d_out.copy_rows(b, h, &(0..n));
            for (i, row) in g.chunks_exact_mut(d).enumerate() {
                if !seen.sees_any(b, i, x.causal) {
                    row.fill(0.0);
                }
            }
            let o = &out[head..head + head_size];
            let delta: Vec<f32> = g
                .chunks_exact(d)
                .zip(o.chunks_exact(d))
                .map(|(g, o)| (ops.dot)(g, o))
                .collect();
            let lse = &lse[bh * n..(bh + 1) * n];
            let (q, k, v) = (x.q, x.k, x.v);
            let mut p = vec![0.0f32; tile * tile];
            let mut ds = vec![0.0f32; tile * tile];
            for (t, c0) in (0..n).step_by(tile).enumerate() {
                let cols = c0..(c0 + tile).min(n);
                let bc = cols.len();
                let (k_j, v_j) = (k.rows(b, h, &cols), v.rows(b, h, &cols));
                let bias_j = &x.bias[b * n + c0..b * n + cols.end];
                for r0 in (0..n).step_by(tile) {
                    let rows = r0..(r0 + tile).min(n);
                    if !seen.needs(b, t, c0, &rows, x.causal) {
                        continue;
                    }
                    let br = rows.len();
                    let (q_i, g_i) = (q.rows(b, h, &rows), &g[r0 * d..rows.end * d]);
                    scores(&mut p, q_i, k_j, bias_j, &rows, &cols, d, x.causal);
                    let p = &mut p[..br * bc];
                    for (r, row) in p.chunks_exact_mut(bc).enumerate() {
                        (ops.exp_sub_sum)(row, lse[r0 + r]);
                    }
                    let ds = &mut ds[..br * bc];
                    matmul(
                        &mut dv[c0 * d..cols.end * d],
                        Mat::rows(p, br, bc).t(),
                        Mat::rows(g_i, br, d),
                        1.0,
                        true,
                    );
                    matmul(ds, Mat::rows(g_i, br, d), v_j.t(), 1.0, false);
                    for (r, (ds_row, p_row)) in
                        ds.chunks_exact_mut(bc).zip(p.chunks_exact(bc)).enumerate()
                    {
                        (ops.softmax_grad)(ds_row, p_row, delta[r0 + r], scale);
                    }
                    matmul(
                        &mut dq[r0 * d..rows.end * d],
                        Mat::rows(ds, br, bc),
                        k_j,
                        1.0,
                        true,
                    );
                    matmul(
                        &mut dk[c0 * d..cols.end * d],
                        Mat::rows(ds, br, bc).t(),
                        q_i,
                        1.0,
                        true,
                    );
                }
            }
        });
    [dq, dk, dv]
}
impl FlexInputs {
    /// The output and log-sum-exp `[B, H, N, 1]`.
    pub fn forward(&self, causal: bool, tile: usize) -> (FlexTensor, FlexTensor) {
        let (out, lse) = forward(&self.inputs(causal, tile));
        let [b, h, n, _] = self.shape();
        (tensor(out, self.shape()), tensor(lse, [b, h, n, 1]))
    }
}

#[cfg(test)]
mod tests {
    use burn::backend::Flex;

    use super::super::rows::portable;
    use super::super::{contiguous_f32, values};
    use super::*;
    use crate::attention_op::Saved;
    use crate::flash_reference as reference;

    /// Uniform values in [-2, 2) from a fixed seed (splitmix64).
    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
        (0..len)
            .map(|_| {
                state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                ((z ^ (z >> 31)) >> 40) as f32 / (1u64 << 24) as f32 * 4.0 - 2.0
            })
            .collect()
    }

    fn values_of(t: FlexTensor) -> Vec<f32> {
        values(&contiguous_f32(&t).unwrap()).to_vec()
    }

    fn assert_close(what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: lengths");
        let scale = want.iter().fold(1e-3f32, |m, x| m.max(x.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= 1e-5 * scale,
                "{what}[{i}]: fused {g}, reference {w}"
            );
        }
    }

    /// Fused against portable, forward and backward, at one shape; `real[b]` keys are real.
    fn check(dims: Dims, real: &[usize], causal: bool, tile: usize, seed: u64) {
        let shape = [dims.batch, dims.heads, dims.len, dims.dim];
        let size = shape.iter().product();
        let [q, k, v, g] = [0, 1, 2, 3].map(|i| random(size, seed * 4 + i));
        let bias: Vec<f32> = real
            .iter()
            .flat_map(|&r| (0..dims.len).map(move |j| if j < r { 0.0 } else { BLOCKED_SCORE }))
            .collect();
        let t = |x: &[f32]| tensor(x.to_vec(), shape);
        let bias_t = tensor(bias.clone(), [dims.batch, 1, 1, dims.len]);
        let what = format!("{dims:?} real={real:?} causal={causal} tile={tile}");

        let (want_out, want_lse) =
            reference::forward::<Flex>(t(&q), t(&k), t(&v), bias_t.clone(), causal, tile);
        let inputs = Inputs {
            q: Heads::contiguous(&q, dims),
            k: Heads::contiguous(&k, dims),
            v: Heads::contiguous(&v, dims),
            bias: &bias,
            dims,
            causal,
            tile,
        };
        let (out, lse) = forward(&inputs);
        assert_close(&format!("out {what}"), &out, &values_of(want_out.clone()));
        let saved = Saved::new(t(&q), t(&k), t(&v), bias_t, want_out, want_lse);
        let (dq, dk, dv) = reference::backward::<Flex>(saved, t(&g), causal, tile);
        let want = [dq, dk, dv];
        let got = backward(&inputs, &out, &lse, Heads::contiguous(&g, dims));
        for ((name, got), want) in ["dq", "dk", "dv"].iter().zip(&got).zip(want) {
            assert_close(&format!("{name} {what}"), got, &values_of(want));
        }
        // The portable row kernels give the same answers as the dispatched ones.
        let (slow_out, _) = forward_with(&inputs, portable());
        assert_close(&format!("portable out {what}"), &slow_out, &out);
        let slow = backward_with(&inputs, &out, &lse, Heads::contiguous(&g, dims), portable());
        for ((name, s), f) in ["dq", "dk", "dv"].iter().zip(&slow).zip(&got) {
            assert_close(&format!("portable {name} {what}"), s, f);
        }
        // Heads read where they lie: `[B, N, H, D]` storage seen as `[B, H, N, D]`.
        let split = |x: &[f32]| {
            let Dims {
                heads, len, dim, ..
            } = dims;
            let mut y = vec![0.0; x.len()];
            for (i, v) in x.iter().enumerate() {
                let (b, h, n, e) = (
                    i / (heads * len * dim),
                    i / (len * dim) % heads,
                    i / dim % len,
                    i % dim,
                );
                y[((b * len + n) * heads + h) * dim + e] = *v;
            }
            tensor(y, [dims.batch, dims.len, dims.heads, dims.dim]).transpose(1, 2)
        };
        let flex = FlexInputs::new(
            &split(&q),
            &split(&k),
            &split(&v),
            &tensor(bias, [dims.batch, 1, 1, dims.len]),
        )
        .unwrap();
        let (s_out, s_lse) = flex.forward(causal, tile);
        assert_close(
            &format!("strided out {what}"),
            &values_of(s_out.clone()),
            &out,
        );
        let s_grads = flex
            .gradients((&s_out, &s_lse), &split(&g), (causal, tile), &backward)
            .unwrap();
        let s_grads = [s_grads.0, s_grads.1, s_grads.2];
        for ((name, s), f) in ["dq", "dk", "dv"].iter().zip(s_grads).zip(&got) {
            assert_close(&format!("strided {name} {what}"), &values_of(s), f);
        }
    }

    #[test]
    fn fused_matches_the_tensor_op_reference_forward_and_backward() {
        let d = |batch, heads, len, dim| Dims {
            batch,
            heads,
            len,
            keys: len,
            dim,
        };
        let cases: &[(Dims, &[usize], usize)] = &[
            (d(1, 1, 1, 4), &[1], 4),
            (d(2, 3, 37, 16), &[37, 20], 8),
            (d(1, 2, 64, 32), &[64], 16),
            (d(2, 2, 100, 8), &[3, 100], 32),
            (d(1, 1, 29, 5), &[29], 128),
            // Every key of the first sequence is padding: its rows output zeros.
            (d(2, 1, 19, 8), &[0, 11], 4),
        ];
        for (seed, (dims, real, tile)) in cases.iter().enumerate() {
            for causal in [false, true] {
                check(*dims, real, causal, *tile, seed as u64);
            }
        }
    }

    #[test]
    fn the_fused_kernel_reproduces_bit_for_bit() {
        let dims = Dims {
            batch: 2,
            heads: 3,
            len: 70,
            keys: 70,
            dim: 16,
        };
        let size = 2 * 3 * 70 * 16;
        let [q, k, v, g] = [0, 1, 2, 3].map(|i| random(size, 50 + i));
        let bias = vec![0.0; 2 * 70];
        let x = Inputs {
            q: Heads::contiguous(&q, dims),
            k: Heads::contiguous(&k, dims),
            v: Heads::contiguous(&v, dims),
            bias: &bias,
            dims,
            causal: true,
            tile: 16,
        };
        let (a, b) = (forward(&x), forward(&x));
        assert!(
            a.0.iter()
                .zip(&b.0)
                .all(|(x, y)| x.to_bits() == y.to_bits())
        );
        let g = Heads::contiguous(&g, dims);
        let (ga, gb) = (backward(&x, &a.0, &a.1, g), backward(&x, &a.0, &a.1, g));
        for (x, y) in ga.iter().zip(&gb) {
            assert!(x.iter().zip(y).all(|(x, y)| x.to_bits() == y.to_bits()));
        }
    }
}
