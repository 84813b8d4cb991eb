//! Fused row-wise kernels on contiguous `[rows, d]` f32 slices: softmax, exact GELU and layer
//! normalisation, forward and backward, threaded over fixed chunks of rows so that every sum is
//! taken in the same order whatever the thread count.

use rayon::prelude::*;

use super::rows::best;

/// Rows per parallel task; fixed, so the layer-norm parameter gradients reproduce bit for bit.
const CHUNK_ROWS: usize = 64;
/// Elements per parallel task of the element-wise kernels.
const CHUNK_ELEMS: usize = 16 * 1024;

/// `softmax` of each row of length `d`.
pub(crate) fn softmax(x: &[f32], d: usize) -> Vec<f32> {
    let ops = best();
    let mut y = x.to_vec();
    y.par_chunks_mut(d * CHUNK_ROWS).for_each(|rows| {
        for row in rows.chunks_exact_mut(d) {
            let m = (ops.max)(row);
            let sum = (ops.exp_sub_sum)(row, m);
            (ops.scale)(row, 1.0 / sum);
        }
    });
    y
}

/// `dx = y ∘ (dy − Σ dy∘y)` per row, from the softmax's output `y`.
pub(crate) fn softmax_backward(y: &[f32], dy: &[f32], d: usize) -> Vec<f32> {
    let ops = best();
    let mut dx = dy.to_vec();
    dx.par_chunks_mut(d * CHUNK_ROWS)
        .zip(y.par_chunks(d * CHUNK_ROWS))
        .for_each(|(dx, y)| {
            for (g, y) in dx.chunks_exact_mut(d).zip(y.chunks_exact(d)) {
                let delta = (ops.dot)(g, y);
                (ops.softmax_grad)(g, y, delta, 1.0);
            }
        });
    dx
}

/// Exact GELU, element-wise.
pub(crate) fn gelu(x: &[f32]) -> Vec<f32> {
    let ops = best();
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(CHUNK_ELEMS)
        .zip(x.par_chunks(CHUNK_ELEMS))
        .for_each(|(y, x)| (ops.gelu)(x, y));
    y
}

/// `dy · gelu′(x)`, element-wise.
pub(crate) fn gelu_backward(x: &[f32], dy: &[f32]) -> Vec<f32> {
    let ops = best();
    let mut dx = vec![0.0; x.len()];
    dx.par_chunks_mut(CHUNK_ELEMS)
        .zip(x.par_chunks(CHUNK_ELEMS).zip(dy.par_chunks(CHUNK_ELEMS)))
        .for_each(|(dx, (x, dy))| (ops.gelu_grad)(x, dy, dx));
    dx
}

/// Layer normalisation of each row: the output and, per row, `(μ, 1/σ)` interleaved.
pub(crate) fn layer_norm(x: &[f32], gamma: &[f32], beta: &[f32], eps: f32) -> (Vec<f32>, Vec<f32>) {
    let ops = best();
    let d = gamma.len();
    let mut y = vec![0.0; x.len()];
    let mut stats = vec![0.0; 2 * (x.len() / d.max(1))];
    y.par_chunks_mut(d * CHUNK_ROWS)
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .zip(stats.par_chunks_mut(2 * CHUNK_ROWS))
        .for_each(|((y, x), stats)| {
            for ((y, x), s) in y
                .chunks_exact_mut(d)
                .zip(x.chunks_exact(d))
                .zip(stats.chunks_exact_mut(2))
            {
                let (mean, rstd) = (ops.layer_norm)(x, gamma, beta, eps, y);
                s[0] = mean;
                s[1] = rstd;
            }
        });
    (y, stats)
}

/// Layer normalisation's backward pass: `(dx, dγ, dβ)`.
pub(crate) fn layer_norm_backward(
    x: &[f32],
    gamma: &[f32],
    stats: &[f32],
    dy: &[f32],
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let ops = best();
    let d = gamma.len();
    let mut dx = vec![0.0; x.len()];
    let partials: Vec<(Vec<f32>, Vec<f32>)> = dx
        .par_chunks_mut(d * CHUNK_ROWS)
        .zip(x.par_chunks(d * CHUNK_ROWS))
        .zip(
            dy.par_chunks(d * CHUNK_ROWS)
                .zip(stats.par_chunks(2 * CHUNK_ROWS)),
        )
        .map(|((dx, x), (dy, stats))| {
            let (mut dg, mut db) = (vec![0.0; d], vec![0.0; d]);
            let rows = dx.chunks_exact_mut(d).zip(x.chunks_exact(d));
            for ((dx, x), (dy, s)) in rows.zip(dy.chunks_exact(d).zip(stats.chunks_exact(2))) {
                (ops.layer_norm_grad)(x, gamma, dy, (s[0], s[1]), dx, &mut dg, &mut db);
            }
            (dg, db)
        })
        .collect();
    // Chunk partials are added in chunk order: the same sum on any number of threads.
    let (mut dg, mut db) = (vec![0.0; d], vec![0.0; d]);
    for (pg, pb) in partials {
        for ((g, b), (x, y)) in dg.iter_mut().zip(db.iter_mut()).zip(pg.iter().zip(&pb)) {
            *g += x;
            *b += y;
        }
    }
    (dx, dg, db)
}

/// `elu(x) + 1`, element-wise.
pub(crate) fn elu_plus_one(x: &[f32]) -> Vec<f32> {
    let ops = best();
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(CHUNK_ELEMS)
        .zip(x.par_chunks(CHUNK_ELEMS))
        .for_each(|(y, x)| (ops.elu_plus_one)(x, y));
    y
}

/// `dy · min(y, 1)` from the output `y` of `elu + 1`, element-wise.
pub(crate) fn elu_plus_one_backward(y: &[f32], dy: &[f32]) -> Vec<f32> {
    let ops = best();
    let mut dx = vec![0.0; y.len()];
    dx.par_chunks_mut(CHUNK_ELEMS)
        .zip(y.par_chunks(CHUNK_ELEMS).zip(dy.par_chunks(CHUNK_ELEMS)))
        .for_each(|(dx, (y, dy))| (ops.elu_plus_one_grad)(y, dy, dx));
    dx
}

/// FAVOR+ features of rows of `m` projections `p` with their inputs `x`:
/// `exp(p − ‖x‖²/2 − shift)·scale`, the shift each row's max (`row_shift`) or the global max.
pub(crate) fn favor(p: &[f32], x: &[f32], m: usize, row_shift: bool, scale: f32) -> Vec<f32> {
    let ops = best();
    let rows = p.len().checked_div(m).unwrap_or(0);
    let d = x.len().checked_div(rows).unwrap_or(0);
    // A maximum is exact in any order, so the parallel reduction reproduces.
    let global = if row_shift {
        0.0
    } else {
        p.par_chunks(CHUNK_ELEMS)
            .map(|c| (ops.max)(c))
            .reduce(|| f32::NEG_INFINITY, f32::max)
    };
    let mut y = p.to_vec();
    if m == 0 {
        return y;
    }
    y.par_chunks_mut(m * CHUNK_ROWS)
        .zip(x.par_chunks(d.max(1) * CHUNK_ROWS))
        .for_each(|(y, x)| {
            for (row, x) in y.chunks_exact_mut(m).zip(x.chunks(d.max(1))) {
                let half_sq = if d == 0 { 0.0 } else { (ops.dot)(x, x) / 2.0 };
                let shift = if row_shift { (ops.max)(row) } else { global };
                (ops.exp_sub_sum)(row, half_sq + shift);
                (ops.scale)(row, scale);
            }
        });
    y
}

/// `(dp, dx)` of [`favor`] from its output `y`: `dp = dy∘y`, `dx = −(Σ dy∘y)·x` per row.
pub(crate) fn favor_backward(y: &[f32], x: &[f32], dy: &[f32], m: usize) -> (Vec<f32>, Vec<f32>) {
    let ops = best();
    let rows = y.len().checked_div(m).unwrap_or(0);
    let d = x.len().checked_div(rows).unwrap_or(0);
    let mut dp = vec![0.0f32; y.len()];
    let mut dx = vec![0.0f32; x.len()];
    if m == 0 || d == 0 {
        return (dp, dx);
    }
    dp.par_chunks_mut(m * CHUNK_ROWS)
        .zip(dx.par_chunks_mut(d * CHUNK_ROWS))
        .enumerate()
        .for_each(|(c, (dp, dx))| {
            let first = c * CHUNK_ROWS;
            for (r, (dp, dx)) in dp
                .chunks_exact_mut(m)
                .zip(dx.chunks_exact_mut(d))
                .enumerate()
            {
                let row = first + r;
                let (y, g) = (&y[row * m..(row + 1) * m], &dy[row * m..(row + 1) * m]);
                for ((o, y), g) in dp.iter_mut().zip(y).zip(g) {
                    *o = y * g;
                }
                let total = (ops.dot)(y, g);
                for (o, x) in dx.iter_mut().zip(&x[row * d..(row + 1) * d]) {
                    *o = -total * x;
                }
            }
        });
    (dp, dx)
}

/// Dropout by the hashed mask of [`crate::dropout`], element-wise.
pub(crate) fn dropout(x: &[f32], prob: f32, seed: u64) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    y.par_chunks_mut(CHUNK_ELEMS)
        .zip(x.par_chunks(CHUNK_ELEMS))
        .enumerate()
        .for_each(|(c, (y, x))| {
            let start = c * CHUNK_ELEMS;
            for (i, (y, x)) in y.iter_mut().zip(x).enumerate() {
                *y = x * crate::dropout::mask_value(seed, start + i, prob);
            }
        });
    y
}
