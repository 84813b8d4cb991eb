//! Block-sparse attention on raw f32 over a [`BlockPattern`]: each query block scores its key
//! blocks in place (one product per slot, no gathering) and the pattern's global keys; global
//! queries score every key. The probabilities of the scored pairs are kept for the backward
//! pass, O(N·(K·b + G)) per head, as the engine's cost states; no `N × N` buffer exists.
//!
//! Per head the saved buffer holds `[nb, b, W]` block probabilities (`W = K·b + G` columns:
//! slot `s` in columns `s·b..`, global keys after `K·b`), then `[Gq, N]` rows of the global
//! queries. A global query's block row is zeroed: its output comes from its full row alone.

use std::ops::Range;

use rayon::prelude::*;

use super::heads::{BLOCKED_BELOW, Dims, FlexInputs, Heads, Inputs};
use super::matmul::{Mat, matmul, matmul_strided};
use super::rows::{RowOps, best};
use super::tensor;
use crate::{BLOCKED_SCORE, BlockPattern};
use burn::backend::flex::FlexTensor;

/// The pattern as the kernel walks it, for one sequence length.
struct Plan<'a> {
    pattern: &'a BlockPattern,
    /// Columns of a block's scores.
    width: usize,
    /// Whether each position is a global key (scored in the global columns only).
    global_key: Vec<bool>,
    /// Global queries inside the sequence, in the pattern's order.
    global_queries: Vec<usize>,
}

impl<'a> Plan<'a> {
    fn new(pattern: &'a BlockPattern, len: usize) -> Self {
        assert_eq!(pattern.len, len, "pattern built for another length");
        assert!(
            pattern.global_keys.iter().all(|&j| j < len),
            "global keys beyond the sequence"
        );
        let mut global_key = vec![false; len];
        for &j in pattern.global_keys.iter().filter(|&&j| j < len) {
            global_key[j] = true;
        }
        Self {
            pattern,
            width: pattern.width(),
            global_key,
            global_queries: pattern
                .global_queries
                .iter()
                .copied()
                .filter(|&i| i < len)
                .collect(),
        }
    }

    /// Saved floats per head: the block probabilities, then the global queries' rows.
    fn saved_per_head(&self) -> usize {
        let p = self.pattern;
        p.n_blocks() * p.block * self.width + self.global_queries.len() * p.len
    }

    /// Query rows of block `qb`.
    fn rows(&self, qb: usize) -> Range<usize> {
        let b = self.pattern.block;
        qb * b..((qb + 1) * b).min(self.pattern.len)
    }

    /// Key positions of each slot of block `qb` for head `h` (empty where the slot is unused).
    fn slots(&self, h: usize, qb: usize) -> impl Iterator<Item = Range<usize>> + '_ {
        let p = self.pattern;
        let ph = if p.heads == 1 { 0 } else { h };
        let base = (ph * p.n_blocks() + qb) * p.per_query;
        p.key_blocks[base..base + p.per_query]
            .iter()
            .map(|slot| slot.map_or(0..0, |kb| self.rows(kb)))
    }

    /// Whether keys `keys` need a per-element check for queries `rows` (window rule, causal
    /// diagonal, or a global key among them); otherwise only the padding bias applies.
    fn needs_check(&self, rows: &Range<usize>, keys: &Range<usize>, causal: bool) -> bool {
        self.pattern.rule != crate::ElementRule::All
            || (causal && keys.end > rows.start + 1)
            || self.global_key[keys.clone()].iter().any(|&g| g)
    }
}

/// Blocks what the pattern's structure forbids in `s` (`rows × width`, a block's scores): future
/// keys when causal, keys outside the element rule, and global keys met inside a slot (they are
/// scored in the global columns). Columns of unused slots keep the blocked score they hold.
fn mask_block(
    s: &mut [f32],
    plan: &Plan,
    rows: &Range<usize>,
    slots: &[Range<usize>],
    causal: bool,
) {
    let (w, b) = (plan.width, plan.pattern.block);
    let globals = &plan.pattern.global_keys;
    for (s_idx, keys) in slots.iter().enumerate() {
        if keys.is_empty() || !plan.needs_check(rows, keys, causal) {
            continue;
        }
        for (r, row) in s.chunks_exact_mut(w).enumerate() {
            let i = rows.start + r;
            let cols = &mut row[s_idx * b..s_idx * b + keys.len()];
            for (score, j) in cols.iter_mut().zip(keys.clone()) {
                if (causal && j > i) || !plan.pattern.rule.allows(i, j) || plan.global_key[j] {
                    *score = BLOCKED_SCORE;
                }
            }
        }
    }
    if causal && !globals.is_empty() {
        for (r, row) in s.chunks_exact_mut(w).enumerate() {
            for (score, &j) in row[w - globals.len()..].iter_mut().zip(globals) {
                if j > rows.start + r {
                    *score = BLOCKED_SCORE;
                }
            }
        }
    }
}

/// Adds the key bias (padding) of batch row `b` to the columns of `slots` and the global keys.
fn add_bias(s: &mut [f32], plan: &Plan, slots: &[Range<usize>], bias: &[f32]) {
    let (w, b) = (plan.width, plan.pattern.block);
    let globals = &plan.pattern.global_keys;
    for row in s.chunks_exact_mut(w) {
        for (s_idx, keys) in slots.iter().enumerate() {
            let cols = &mut row[s_idx * b..s_idx * b + keys.len()];
            for (score, bias) in cols.iter_mut().zip(&bias[keys.clone()]) {
                *score += bias;
            }
        }
        let global_cols = &mut row[w - globals.len()..];
        for (score, &j) in global_cols.iter_mut().zip(globals) {
            *score += bias[j];
        }
    }
}

/// Softmax of each row in place; a row whose every score is blocked becomes zeros.
fn softmax_rows(s: &mut [f32], width: usize, ops: RowOps) {
    for row in s.chunks_exact_mut(width) {
        let m = (ops.max)(row);
        if m <= BLOCKED_BELOW {
            row.fill(0.0);
            continue;
        }
        let sum = (ops.exp_sub_sum)(row, m);
        (ops.scale)(row, 1.0 / sum);
    }
}

/// Rows `js` of head `h` of batch row `b` copied into one contiguous `len(js) × D` buffer.
fn gather(t: Heads, b: usize, h: usize, js: &[usize]) -> Vec<f32> {
    js.iter().flat_map(|&j| t.row(b, h, j)).copied().collect()
}

/// The forward pass: output `[B, H, N, D]` and the saved probabilities, `saved_per_head` floats
/// per head.
pub(crate) fn forward(x: &Inputs, pattern: &BlockPattern) -> (Vec<f32>, Vec<f32>) {
    forward_with(x, pattern, best())
}

pub(crate) fn forward_with(
    x: &Inputs,
    pattern: &BlockPattern,
    ops: RowOps,
) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        len: n,
        dim: d,
        ..
    } = x.dims;
    let plan = Plan::new(pattern, n);
    let per_head = plan.saved_per_head();
    let mut out = vec![0.0f32; batch * heads * n * d];
    let mut saved = vec![0.0f32; batch * heads * per_head];
    if n == 0 || d == 0 {
        return (out, saved);
    }
    let (b_len, w, g) = (pattern.block, plan.width, pattern.global_keys.len());
    let blocks_len = pattern.n_blocks() * b_len * w;
    let scale = 1.0 / (d as f32).sqrt();
    let mut tasks = Vec::new();
    for (bh, (o, p)) in out
        .chunks_mut(n * d)
        .zip(saved.chunks_mut(per_head))
        .enumerate()
    {
        let blocks = o
            .chunks_mut(b_len * d)
            .zip(p[..blocks_len].chunks_mut(b_len * w));
        for (qb, (o, p)) in blocks.enumerate() {
            tasks.push((bh, qb, o, p));
        }
    }
    tasks.into_par_iter().for_each(|(bh, qb, out, p)| {
        let (b, h) = (bh / heads, bh % heads);
        let rows = plan.rows(qb);
        let br = rows.len();
        let slots: Vec<Range<usize>> = plan.slots(h, qb).collect();
        let q_i = x.q.rows(b, h, &rows);
        let s = &mut p[..br * w];
        s.fill(BLOCKED_SCORE);
        for (s_idx, keys) in slots.iter().enumerate() {
            if !keys.is_empty() {
                let k_j = x.k.rows(b, h, keys);
                matmul_strided(&mut s[s_idx * b_len..], w, q_i, k_j.t(), scale, false);
            }
        }
        let (k_glob, v_glob) = (
            gather(x.k, b, h, &pattern.global_keys),
            gather(x.v, b, h, &pattern.global_keys),
        );
        if g > 0 {
            let k_glob = Mat::rows(&k_glob, g, d);
            matmul_strided(&mut s[w - g..], w, q_i, k_glob.t(), scale, false);
        }
        add_bias(s, &plan, &slots, &x.bias[b * n..(b + 1) * n]);
        mask_block(s, &plan, &rows, &slots, x.causal);
        softmax_rows(s, w, ops);
        for (s_idx, keys) in slots.iter().enumerate() {
            if !keys.is_empty() {
                let p_j = Mat::strided(&s[s_idx * b_len..], br, keys.len(), w);
                matmul(out, p_j, x.v.rows(b, h, keys), 1.0, true);
            }
        }
        if g > 0 {
            let p_g = Mat::strided(&s[w - g..], br, g, w);
            matmul(out, p_g, Mat::rows(&v_glob, g, d), 1.0, true);
        }
    });
    if !plan.global_queries.is_empty() {
        out.par_chunks_mut(n * d)
            .zip(saved.par_chunks_mut(per_head))
            .enumerate()
            .for_each(|(bh, (out, saved))| {
                let (b, h) = (bh / heads, bh % heads);
                let (blocks, rows) = saved.split_at_mut(blocks_len);
                for (&i, p) in plan.global_queries.iter().zip(rows.chunks_exact_mut(n)) {
                    let end = if x.causal { i + 1 } else { n };
                    let keys = 0..end;
                    let p = &mut p[..end];
                    let q_i = x.q.rows(b, h, &(i..i + 1));
                    matmul(p, q_i, x.k.rows(b, h, &keys).t(), scale, false);
                    for (score, bias) in p.iter_mut().zip(&x.bias[b * n..b * n + end]) {
                        *score += bias;
                    }
                    softmax_rows(p, end, ops);
                    let o = &mut out[i * d..(i + 1) * d];
                    matmul(o, Mat::rows(p, 1, end), x.v.rows(b, h, &keys), 1.0, false);
                    // The block row of a global query no longer contributes.
                    let at = (i / b_len * b_len + i % b_len) * w;
                    blocks[at..at + w].fill(0.0);
                }
            });
    }
    (out, saved)
}

/// The backward pass: `(dq, dk, dv)`, each `[B, H, N, D]`, from the saved output and
/// probabilities. Threads over batch × heads; each thread owns its head's gradients.
pub(crate) fn backward(
    x: &Inputs,
    pattern: &BlockPattern,
    out: &[f32],
    saved: &[f32],
    d_out: Heads,
) -> [Vec<f32>; 3] {
    backward_with(x, pattern, out, saved, d_out, best())
}

pub(crate) fn backward_with(
    x: &Inputs,
    pattern: &BlockPattern,
    out: &[f32],
    saved: &[f32],
    d_out: Heads,
    ops: RowOps,
) -> [Vec<f32>; 3] {
    let Dims {
        heads,
        len: n,
        dim: d,
        ..
    } = x.dims;
    let [mut dq, mut dk, mut dv] = x.dims.zero_grads();
    if n == 0 || d == 0 {
        return [dq, dk, dv];
    }
    let plan = Plan::new(pattern, n);
    let per_head = plan.saved_per_head();
    let (b_len, w, g) = (pattern.block, plan.width, pattern.global_keys.len());
    let blocks_len = pattern.n_blocks() * b_len * w;
    let scale = 1.0 / (d as f32).sqrt();
    dq.par_chunks_mut(n * d)
        .zip(dk.par_chunks_mut(n * d))
        .zip(dv.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(bh, ((dq, dk), dv))| {
            let (b, h) = (bh / heads, bh % heads);
            let saved = &saved[bh * per_head..(bh + 1) * per_head];
            let o_head = &out[bh * n * d..(bh + 1) * n * d];
            let delta = |i: usize| (ops.dot)(d_out.row(b, h, i), &o_head[i * d..(i + 1) * d]);
            let (k_glob, v_glob) = (
                gather(x.k, b, h, &pattern.global_keys),
                gather(x.v, b, h, &pattern.global_keys),
            );
            let (mut dk_glob, mut dv_glob) = (vec![0.0f32; g * d], vec![0.0f32; g * d]);
            let mut ds = vec![0.0f32; b_len * w];
            for qb in 0..pattern.n_blocks() {
                let rows = plan.rows(qb);
                let br = rows.len();
                let slots: Vec<Range<usize>> = plan.slots(h, qb).collect();
                let p = &saved[qb * b_len * w..qb * b_len * w + br * w];
                let (q_i, g_i) = (x.q.rows(b, h, &rows), d_out.rows(b, h, &rows));
                // dp = do·vᵀ over the scored columns, then ds = p ∘ (dp − do·o)/√D. Columns no
                // key fills keep stale finite values: their p is zero, so their ds is too.
                let ds = &mut ds[..br * w];
                for (s_idx, keys) in slots.iter().enumerate() {
                    if !keys.is_empty() {
                        let v_j = x.v.rows(b, h, keys);
                        matmul_strided(&mut ds[s_idx * b_len..], w, g_i, v_j.t(), 1.0, false);
                    }
                }
                if g > 0 {
                    let v_g = Mat::rows(&v_glob, g, d);
                    matmul_strided(&mut ds[w - g..], w, g_i, v_g.t(), 1.0, false);
                }
                for (r, (ds_row, p_row)) in
                    ds.chunks_exact_mut(w).zip(p.chunks_exact(w)).enumerate()
                {
                    (ops.softmax_grad)(ds_row, p_row, delta(rows.start + r), scale);
                }
                let dq_i = &mut dq[rows.start * d..rows.end * d];
                for (s_idx, keys) in slots.iter().enumerate() {
                    if keys.is_empty() {
                        continue;
                    }
                    let (k_j, kl) = (x.k.rows(b, h, keys), keys.len());
                    let p_j = Mat::strided(&p[s_idx * b_len..], br, kl, w);
                    let ds_j = Mat::strided(&ds[s_idx * b_len..], br, kl, w);
                    let at = keys.start * d..keys.end * d;
                    matmul(&mut dv[at.clone()], p_j.t(), g_i, 1.0, true);
                    matmul(dq_i, ds_j, k_j, 1.0, true);
                    matmul(&mut dk[at], ds_j.t(), q_i, 1.0, true);
                }
                if g > 0 {
                    let p_g = Mat::strided(&p[w - g..], br, g, w);
                    let ds_g = Mat::strided(&ds[w - g..], br, g, w);
                    matmul(&mut dv_glob, p_g.t(), g_i, 1.0, true);
                    matmul(dq_i, ds_g, Mat::rows(&k_glob, g, d), 1.0, true);
                    matmul(&mut dk_glob, ds_g.t(), q_i, 1.0, true);
                }
            }
            for (gi, &j) in pattern.global_keys.iter().enumerate() {
                let (src, dst) = (gi * d..(gi + 1) * d, j * d..(j + 1) * d);
                for (a, s) in dk[dst.clone()].iter_mut().zip(&dk_glob[src.clone()]) {
                    *a += s;
                }
                for (a, s) in dv[dst].iter_mut().zip(&dv_glob[src]) {
                    *a += s;
                }
            }
            let rows = &saved[blocks_len..];
            let mut ds_row = vec![0.0f32; n];
            for (&i, p) in plan.global_queries.iter().zip(rows.chunks_exact(n)) {
                let end = if x.causal { i + 1 } else { n };
                let keys = 0..end;
                let (p, ds) = (&p[..end], &mut ds_row[..end]);
                let (q_i, g_i) = (x.q.rows(b, h, &(i..i + 1)), d_out.rows(b, h, &(i..i + 1)));
                matmul(ds, g_i, x.v.rows(b, h, &keys).t(), 1.0, false);
                (ops.softmax_grad)(ds, p, delta(i), scale);
                let (p, ds) = (Mat::rows(p, 1, end), Mat::rows(ds, 1, end));
                matmul(&mut dv[..end * d], p.t(), g_i, 1.0, true);
                matmul(
                    &mut dq[i * d..(i + 1) * d],
                    ds,
                    x.k.rows(b, h, &keys),
                    1.0,
                    true,
                );
                matmul(&mut dk[..end * d], ds.t(), q_i, 1.0, true);
            }
        });
    [dq, dk, dv]
}

impl FlexInputs {
    /// The output and the saved probabilities `[B, H, saved_per_head]` of `pattern`.
    pub fn block_sparse_forward(
        &self,
        pattern: &BlockPattern,
        causal: bool,
    ) -> (FlexTensor, FlexTensor) {
        let (out, saved) = forward(&self.inputs(causal, 0), pattern);
        let [b, h, _, _] = self.shape();
        let per_head = saved.len() / (b * h).max(1);
        (tensor(out, self.shape()), tensor(saved, [b, h, per_head]))
    }
}
