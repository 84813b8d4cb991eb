//! Dense layers `y = x·W + b` on raw f32 rows, threaded over fixed blocks of rows.
//!
//! Transformer layers are tall and thin (`B·N` rows, a few hundred columns), where a library
//! GEMM threads over the output and finds little to split in `dW = xᵀ·dy` (a long inner dimension,
//! a small result). Here the forward pass and `dx` split the rows; `dW` and `db` sum partial
//! results over fixed runs of rows, in order, so the sums reproduce whatever the thread count.

use rayon::prelude::*;

use super::matmul::{Mat, matmul};

/// Rows per task of the forward pass and of `dx`.
const ROWS: usize = 256;
/// Rows per partial sum of `dW` and `db` (rounded so the runs are equal).
const PART_ROWS: usize = 1024;

/// `y = x·W + b` for `x` `[rows, d_in]`, `W` `[d_in, d_out]`, `b` `[d_out]`.
pub(crate) fn forward(x: &[f32], w: &[f32], b: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let rows = x.len().checked_div(d_in).unwrap_or(0);
    let mut y = vec![0.0f32; rows * d_out];
    if rows == 0 || d_out == 0 {
        return y;
    }
    let w = Mat::rows(w, d_in, d_out);
    y.par_chunks_mut(ROWS * d_out)
        .enumerate()
        .for_each(|(c, y)| {
            for row in y.chunks_exact_mut(d_out) {
                row.copy_from_slice(b);
            }
            let r = y.len() / d_out;
            let x = &x[c * ROWS * d_in..(c * ROWS + r) * d_in];
            matmul(y, Mat::rows(x, r, d_in), w, 1.0, true);
        });
    y
}

/// `dx = dy·Wᵀ`, `[rows, d_in]`.
pub(crate) fn input_grad(w: &[f32], dy: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let rows = dy.len().checked_div(d_out).unwrap_or(0);
    let mut dx = vec![0.0f32; rows * d_in];
    if rows == 0 || d_in == 0 {
        return dx;
    }
    let wt = Mat::rows(w, d_in, d_out).t();
    dx.par_chunks_mut(ROWS * d_in)
        .enumerate()
        .for_each(|(c, dx)| {
            let r = dx.len() / d_in;
            let dy = &dy[c * ROWS * d_out..(c * ROWS + r) * d_out];
            matmul(dx, Mat::rows(dy, r, d_out), wt, 1.0, false);
        });
    dx
}

/// Equal runs of rows covering `0..rows`, each at most about [`PART_ROWS`].
fn parts(rows: usize) -> Vec<std::ops::Range<usize>> {
    let count = rows.div_ceil(PART_ROWS).max(1);
    let size = rows.div_ceil(count).max(1);
    (0..rows)
        .step_by(size)
        .map(|s| s..(s + size).min(rows))
        .collect()
}

/// Sums the partial results of `part` over the runs of rows, in order.
fn summed(
    rows: usize,
    len: usize,
    part: impl Fn(std::ops::Range<usize>) -> Vec<f32> + Sync + Send,
) -> Vec<f32> {
    let partials: Vec<Vec<f32>> = parts(rows).into_par_iter().map(part).collect();
    let mut total = vec![0.0f32; len];
    for p in partials {
        for (t, x) in total.iter_mut().zip(p) {
            *t += x;
        }
    }
    total
}

/// `dW = xᵀ·dy`, `[d_in, d_out]`.
pub(crate) fn weight_grad(x: &[f32], dy: &[f32], d_in: usize, d_out: usize) -> Vec<f32> {
    let rows = dy.len().checked_div(d_out).unwrap_or(0);
    if rows == 0 || d_in == 0 || d_out == 0 {
        return vec![0.0f32; d_in * d_out];
    }
    summed(rows, d_in * d_out, |r| {
        let mut g = vec![0.0f32; d_in * d_out];
        let x = Mat::rows(&x[r.start * d_in..r.end * d_in], r.len(), d_in);
        let dy = Mat::rows(&dy[r.start * d_out..r.end * d_out], r.len(), d_out);
        matmul(&mut g, x.t(), dy, 1.0, false);
        g
    })
}

/// `db = Σ_rows dy`, `[d_out]`.
pub(crate) fn bias_grad(dy: &[f32], d_out: usize) -> Vec<f32> {
    let rows = dy.len().checked_div(d_out).unwrap_or(0);
    if rows == 0 || d_out == 0 {
        return vec![0.0f32; d_out];
    }
    summed(rows, d_out, |r| {
        let mut g = vec![0.0f32; d_out];
        for row in dy[r.start * d_out..r.end * d_out].chunks_exact(d_out) {
            for (g, x) in g.iter_mut().zip(row) {
                *g += x;
            }
        }
        g
    })
}
