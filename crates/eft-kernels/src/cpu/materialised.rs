//! Materialised softmax attention on raw f32, the fused form of `full` (and of attention over a
//! few keys, `Nk ≠ N`, as Linformer and Nyström use it; v shares q's `D`): the `N × Nk`
//! probabilities are computed once and kept for the backward pass, which reads them instead of
//! recomputing them (four products per head, flash needs five) and walks query rows in chunks,
//! so its transient memory is `chunk × N` per thread, never a second `N × N` buffer.

use std::ops::Range;

use rayon::prelude::*;

use super::heads::{Dims, FlexInputs, Heads, Inputs, Visibility};
use super::matmul::{Mat, matmul, matmul_strided};
use super::rows::{RowOps, best};
use super::tensor;
use burn::backend::flex::FlexTensor;

/// Keys that query rows `rows` can see at all: every key, or causally the first `rows.end`.
fn key_end(rows: &Range<usize>, keys: usize, causal: bool) -> usize {
    if causal { rows.end.min(keys) } else { keys }
}

/// The forward pass: output `[B, H, N, D]` and probabilities `[B, H, N, Nk]` (exactly zero where
/// a key is blocked, and along the whole row of a query that sees no key).
pub(crate) fn forward(x: &Inputs) -> (Vec<f32>, Vec<f32>) {
    forward_with(x, best())
}

pub(crate) fn forward_with(x: &Inputs, ops: RowOps) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        len: n,
        keys: nk,
        dim: d,
    } = x.dims;
    let mut out = vec![0.0f32; batch * heads * n * d];
    let mut probs = vec![0.0f32; batch * heads * n * nk];
    if n == 0 || d == 0 || nk == 0 {
        return (out, probs);
    }
    let chunk = x.tile.clamp(1, n);
    let seen = Visibility::new(x.bias, x.dims, nk);
    let scale = 1.0 / (d as f32).sqrt();
    let mut tasks = Vec::new();
    for (bh, (o, p)) in out
        .chunks_mut(n * d)
        .zip(probs.chunks_mut(n * nk))
        .enumerate()
    {
        for (t, (o, p)) in o
            .chunks_mut(chunk * d)
            .zip(p.chunks_mut(chunk * nk))
            .enumerate()
        {
            tasks.push((bh, t * chunk, o, p));
        }
    }
    tasks.into_par_iter().for_each(|(bh, r0, out, p)| {
        let (b, h) = (bh / heads, bh % heads);
        let rows = r0..r0 + out.len() / d;
        let end = key_end(&rows, nk, x.causal);
        let keys = 0..end;
        let bias = &x.bias[b * nk..b * nk + end];
        // Scores fill the first `end` columns of each probability row.
        matmul_strided(
            p,
            nk,
            x.q.rows(b, h, &rows),
            x.k.rows(b, h, &keys).t(),
            scale,
            false,
        );
        for (r, row) in p.chunks_exact_mut(nk).enumerate() {
            let i = r0 + r;
            if !seen.sees_any(b, i, x.causal) {
                row.fill(0.0);
                continue;
            }
            let visible = if x.causal { (i + 1).min(nk) } else { nk };
            let (row, future) = row[..end].split_at_mut(visible);
            future.fill(0.0);
            for (s, bias) in row.iter_mut().zip(bias) {
                *s += bias;
            }
            let m = (ops.max)(row);
            let sum = (ops.exp_sub_sum)(row, m);
            (ops.scale)(row, 1.0 / sum);
        }
        matmul(
            out,
            Mat::strided(p, rows.len(), end, nk),
            x.v.rows(b, h, &keys),
            1.0,
            false,
        );
    });
    (out, probs)
}

/// The backward pass: `(dq, dk, dv)`, each `[B, H, N, D]`, from the saved output and
/// probabilities. Threads over batch × heads; query rows in chunks within a head, so each thread
/// owns its head's `dk` and `dv` and every sum runs in a fixed order.
pub(crate) fn backward(x: &Inputs, out: &[f32], probs: &[f32], d_out: Heads) -> [Vec<f32>; 3] {
    backward_with(x, out, probs, d_out, best())
}

pub(crate) fn backward_with(
    x: &Inputs,
    out: &[f32],
    probs: &[f32],
    d_out: Heads,
    ops: RowOps,
) -> [Vec<f32>; 3] {
    let Dims {
        heads,
        len: n,
        keys: nk,
        dim: d,
        ..
    } = x.dims;
    let [mut dq, mut dk, mut dv] = x.dims.zero_grads();
    if n == 0 || d == 0 || nk == 0 {
        return [dq, dk, dv];
    }
    let chunk = x.tile.clamp(1, n);
    let scale = 1.0 / (d as f32).sqrt();
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(nk * d))
        .zip(dv.par_chunks_mut(nk * d))
        .enumerate()
        .for_each_init(
            || vec![0.0f32; chunk * nk],
            |ds, (bh, ((dq, dk), dv))| {
                let (b, h) = (bh / heads, bh % heads);
                let p_head = &probs[bh * n * nk..(bh + 1) * n * nk];
                let o_head = &out[bh * n * d..(bh + 1) * n * d];
                for r0 in (0..n).step_by(chunk) {
                    let rows = r0..(r0 + chunk).min(n);
                    let br = rows.len();
                    let end = key_end(&rows, nk, x.causal);
                    let keys = 0..end;
                    let p = Mat::strided(&p_head[r0 * nk..], br, end, nk);
                    let g = d_out.rows(b, h, &rows);
                    // dv += pᵀ·do
                    matmul(&mut dv[..end * d], p.t(), g, 1.0, true);
                    // dp = do·vᵀ, then ds = p ∘ (dp − do·o)/√D in place.
                    let ds = &mut ds[..br * end];
                    matmul(ds, g, x.v.rows(b, h, &keys).t(), 1.0, false);
                    for (r, ds_row) in ds.chunks_exact_mut(end).enumerate() {
                        let i = r0 + r;
                        let delta = (ops.dot)(d_out.row(b, h, i), &o_head[i * d..(i + 1) * d]);
                        let p_row = &p_head[i * nk..i * nk + end];
                        (ops.softmax_grad)(ds_row, p_row, delta, scale);
                    }
                    let ds = Mat::rows(ds, br, end);
                    matmul(
                        &mut dq[r0 * d..rows.end * d],
                        ds,
                        x.k.rows(b, h, &keys),
                        1.0,
                        false,
                    );
                    matmul(&mut dk[..end * d], ds.t(), x.q.rows(b, h, &rows), 1.0, true);
                }
            },
        );
    [dq, dk, dv]
}

impl FlexInputs {
    /// The output and probabilities `[B, H, N, Nk]`, rows in chunks of `chunk`.
    pub fn materialised_forward(&self, causal: bool, chunk: usize) -> (FlexTensor, FlexTensor) {
        let x = self.inputs(causal, chunk);
        let (out, probs) = forward(&x);
        let [b, h, n, _] = self.shape();
        let nk = x.dims.keys;
        (tensor(out, self.shape()), tensor(probs, [b, h, n, nk]))
    }
}
