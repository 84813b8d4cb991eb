//! Kernelised attention on raw f32 from mapped queries and keys `φ(q)`, `φ(k)` (`F` features):
//! `out_i = φ(q_i)·S / φ(q_i)·z` with `S = Σ_j φ(k_j)ᵀv_j` (`F × D`) and `z = Σ_j φ(k_j)` over
//! the keys query `i` sees. Threads over batch × heads.
//!
//! Non-causal: one `S` per head. Causal: a chunked scan; within a chunk of `C` positions the
//! masked `C × C` form `tril(φ(q)φ(k)ᵀ)·v`, across chunks the running `S` and `z`: O(N·F·D)
//! time, O(F·D) state, never the `[N, F, D]` prefix sums of the composed form. The backward pass
//! recomputes the chunk states forward, then walks the chunks in reverse carrying the gradient of
//! the state. The forward pass keeps only the output and each row's normaliser.

use std::ops::Range;

use rayon::prelude::*;

use super::heads::{BLOCKED_BELOW, Dims, FlexInputs, Heads, Inputs};
use super::matmul::{Mat, matmul};
use super::rows::{RowOps, best};
use super::tensor;
use burn::backend::flex::FlexTensor;

/// Positions per chunk of the causal scan.
pub(crate) const CHUNK: usize = 64;

/// Keeps the normaliser of a query that sees no key away from zero (its numerator is zero too).
pub(crate) const EMPTY_ROW_GUARD: f32 = 1e-30;

/// One head's view of the inputs.
struct Head<'a> {
    fq: Heads<'a>,
    fk: Heads<'a>,
    v: Heads<'a>,
    /// Whether each key of this batch row is real (not padding).
    real: Vec<bool>,
    b: usize,
    h: usize,
    f: usize,
}

impl Head<'_> {
    /// `φ(k)` rows `r` with padded keys zeroed, contiguous `len(r) × F`.
    fn keys(&self, r: &Range<usize>) -> Vec<f32> {
        let mut out = self.fk.copy_rows(self.b, self.h, r);
        for (row, &real) in out.chunks_exact_mut(self.f).zip(&self.real[r.clone()]) {
            if !real {
                row.fill(0.0);
            }
        }
        out
    }
}

fn heads_of<'a>(x: &'a Inputs, bh: usize) -> Head<'a> {
    let Dims { heads, len: n, .. } = x.dims;
    let b = bh / heads;
    Head {
        fq: x.q,
        fk: x.k,
        v: x.v,
        real: x.bias[b * n..(b + 1) * n]
            .iter()
            .map(|&bias| bias > BLOCKED_BELOW)
            .collect(),
        b,
        h: bh % heads,
        f: x.dims.dim,
    }
}

/// `S = φ(k)ᵀv` (`F × D`, accumulated into `s`) and `z += colsum φ(k)` for contiguous keys `fk`.
fn add_state(s: &mut [f32], z: &mut [f32], fk: &[f32], v: Mat, f: usize) {
    let rows = fk.len() / f.max(1);
    matmul(s, Mat::rows(fk, rows, f).t(), v, 1.0, true);
    for row in fk.chunks_exact(f) {
        for (z, x) in z.iter_mut().zip(row) {
            *z += x;
        }
    }
}

/// `out ← out / max(den, guard)` row by row; returns the divisors.
fn normalise(out: &mut [f32], den: &mut [f32], d: usize) {
    for (row, den) in out.chunks_exact_mut(d).zip(den.iter_mut()) {
        *den = den.max(EMPTY_ROW_GUARD);
        let inv = 1.0 / *den;
        for x in row {
            *x *= inv;
        }
    }
}

/// The causal mask of a chunk's `C × C` block: zero where key `j` comes after query `i`.
fn lower_triangle(a: &mut [f32], c: usize) {
    for (i, row) in a.chunks_exact_mut(c).enumerate() {
        row[i + 1..].fill(0.0);
    }
}

/// The forward pass: output `[B, H, N, D]` and normalisers `[B, H, N]` (clamped to the guard).
pub(crate) fn forward(x: &Inputs) -> (Vec<f32>, Vec<f32>) {
    forward_with(x, best())
}

pub(crate) fn forward_with(x: &Inputs, ops: RowOps) -> (Vec<f32>, Vec<f32>) {
    let Dims {
        batch,
        heads,
        len: n,
        dim: f,
        ..
    } = x.dims;
    let d = x.v.dim();
    let mut out = vec![0.0f32; batch * heads * n * d];
    let mut den = vec![0.0f32; batch * heads * n];
    if n == 0 || d == 0 {
        return (out, den);
    }
    out.par_chunks_mut(n * d)
        .zip(den.par_chunks_mut(n))
        .enumerate()
        .for_each(|(bh, (out, den))| {
            let hd = heads_of(x, bh);
            let (mut s, mut z) = (vec![0.0f32; f * d], vec![0.0f32; f]);
            if !x.causal {
                let all = 0..n;
                add_state(
                    &mut s,
                    &mut z,
                    &hd.keys(&all),
                    hd.v.rows(hd.b, hd.h, &all),
                    f,
                );
                let fq = hd.fq.rows(hd.b, hd.h, &all);
                matmul(out, fq, Mat::rows(&s, f, d), 1.0, false);
                for (i, den) in den.iter_mut().enumerate() {
                    *den = (ops.dot)(hd.fq.row(hd.b, hd.h, i), &z);
                }
                normalise(out, den, d);
                return;
            }
            let mut a = vec![0.0f32; CHUNK * CHUNK];
            for c0 in (0..n).step_by(CHUNK) {
                let r = c0..(c0 + CHUNK).min(n);
                let c = r.len();
                let (fq, v) = (hd.fq.rows(hd.b, hd.h, &r), hd.v.rows(hd.b, hd.h, &r));
                let fk = hd.keys(&r);
                let a = &mut a[..c * c];
                matmul(a, fq, Mat::rows(&fk, c, f).t(), 1.0, false);
                lower_triangle(a, c);
                let (out, den) = (&mut out[c0 * d..r.end * d], &mut den[r.clone()]);
                matmul(out, fq, Mat::rows(&s, f, d), 1.0, false);
                matmul(out, Mat::rows(a, c, c), v, 1.0, true);
                for (k, (den, a_row)) in den.iter_mut().zip(a.chunks_exact(c)).enumerate() {
                    let row_sum: f32 = a_row.iter().sum();
                    *den = (ops.dot)(hd.fq.row(hd.b, hd.h, c0 + k), &z) + row_sum;
                }
                normalise(out, den, d);
                add_state(&mut s, &mut z, &fk, v, f);
            }
        });
    (out, den)
}

/// `dnum = dO/den` and `dden = −(dO·out)/den` for rows `r`; both zero for a row that sees no key
/// (its output is the constant zero).
fn output_grads(
    d_out: Heads,
    (b, h): (usize, usize),
    r: &Range<usize>,
    out: &[f32],
    den: &[f32],
    ops: RowOps,
) -> (Vec<f32>, Vec<f32>) {
    let d = d_out.dim();
    let mut dnum = d_out.copy_rows(b, h, r);
    let mut dden = vec![0.0f32; r.len()];
    for (k, (g, dd)) in dnum.chunks_exact_mut(d).zip(dden.iter_mut()).enumerate() {
        let i = r.start + k;
        let den = den[i];
        if den <= EMPTY_ROW_GUARD {
            g.fill(0.0);
            continue;
        }
        *dd = -(ops.dot)(g, &out[i * d..(i + 1) * d]) / den;
        for x in g.iter_mut() {
            *x /= den;
        }
    }
    (dnum, dden)
}

/// `dst[i] += a[i]·w` for each row `i` of `dst` (`len(a) × len(w)`): the rank-one terms.
fn add_outer(dst: &mut [f32], a: &[f32], w: &[f32]) {
    for (row, &a) in dst.chunks_exact_mut(w.len()).zip(a) {
        for (x, w) in row.iter_mut().zip(w) {
            *x += a * w;
        }
    }
}

/// The backward pass: `(dφq, dφk, dv)` from the saved output and normalisers.
pub(crate) fn backward(x: &Inputs, out: &[f32], den: &[f32], d_out: Heads) -> [Vec<f32>; 3] {
    backward_with(x, out, den, d_out, best())
}

pub(crate) fn backward_with(
    x: &Inputs,
    out: &[f32],
    den: &[f32],
    d_out: Heads,
    ops: RowOps,
) -> [Vec<f32>; 3] {
    let Dims {
        batch,
        heads,
        len: n,
        dim: f,
        ..
    } = x.dims;
    let d = x.v.dim();
    let (mut dfq, mut dfk) = (
        vec![0.0f32; batch * heads * n * f],
        vec![0.0f32; batch * heads * n * f],
    );
    let mut dv = vec![0.0f32; batch * heads * n * d];
    if n == 0 || d == 0 || f == 0 {
        return [dfq, dfk, dv];
    }
    dfq.par_chunks_mut(n * f)
        .zip(dfk.par_chunks_mut(n * f))
        .zip(dv.par_chunks_mut(n * d))
        .enumerate()
        .for_each(|(bh, ((dfq, dfk), dv))| {
            let hd = heads_of(x, bh);
            let (b, h) = (hd.b, hd.h);
            let (out, den) = (
                &out[bh * n * d..(bh + 1) * n * d],
                &den[bh * n..(bh + 1) * n],
            );
            let chunk = if x.causal { CHUNK } else { n };
            let chunks: Vec<Range<usize>> = (0..n)
                .step_by(chunk)
                .map(|c0| c0..(c0 + chunk).min(n))
                .collect();
            // The state entering each chunk (all keys when not causal), recomputed forward.
            let mut states = Vec::with_capacity(chunks.len());
            let (mut s, mut z) = (vec![0.0f32; f * d], vec![0.0f32; f]);
            for r in &chunks {
                if x.causal {
                    states.push((s.clone(), z.clone()));
                }
                add_state(&mut s, &mut z, &hd.keys(r), hd.v.rows(b, h, r), f);
            }
            if !x.causal {
                states.push((s, z));
            }
            // Gradients of the state carried back from later chunks.
            let (mut gs, mut gz) = (vec![0.0f32; f * d], vec![0.0f32; f]);
            // The chunk's C × C blocks exist only in the causal scan.
            let side = if x.causal { chunk } else { 0 };
            let (mut a, mut da) = (vec![0.0f32; side * side], vec![0.0f32; side * side]);
            for (r, (s, z)) in chunks.iter().zip(&states).rev() {
                let c = r.len();
                let (fq, v) = (hd.fq.rows(b, h, r), hd.v.rows(b, h, r));
                let fk = hd.keys(r);
                let fk_m = Mat::rows(&fk, c, f);
                let (dnum, dden) = output_grads(d_out, (b, h), r, out, den, ops);
                let dnum_m = Mat::rows(&dnum, c, d);
                let (dfq, dfk, dv) = (
                    &mut dfq[r.start * f..r.end * f],
                    &mut dfk[r.start * f..r.end * f],
                    &mut dv[r.start * d..r.end * d],
                );
                // Through the state: out = φq·S/den, den = φq·z.
                matmul(dfq, dnum_m, Mat::rows(s, f, d).t(), 1.0, false);
                add_outer(dfq, &dden, z);
                if x.causal {
                    // Through the chunk's own masked block A = tril(φq·φkᵀ).
                    let (a, da) = (&mut a[..c * c], &mut da[..c * c]);
                    matmul(a, fq, fk_m.t(), 1.0, false);
                    lower_triangle(a, c);
                    matmul(da, dnum_m, v.t(), 1.0, false);
                    for (row, &g) in da.chunks_exact_mut(c).zip(&dden) {
                        for x in row.iter_mut() {
                            *x += g;
                        }
                    }
                    lower_triangle(da, c);
                    let (a_m, da_m) = (Mat::rows(a, c, c), Mat::rows(da, c, c));
                    matmul(dfq, da_m, fk_m, 1.0, true);
                    matmul(dfk, da_m.t(), fq, 1.0, false);
                    matmul(dv, a_m.t(), dnum_m, 1.0, false);
                } else {
                    // Not causal: the state holds every key, so its gradient is this chunk's.
                    matmul(&mut gs, fq.t(), dnum_m, 1.0, true);
                    matmul(&mut gz, fq.t(), Mat::rows(&dden, c, 1), 1.0, true);
                }
                // Keys feed the state seen by later queries (all queries when not causal).
                matmul(dfk, v, Mat::rows(&gs, f, d).t(), 1.0, true);
                for (row, &real) in dfk.chunks_exact_mut(f).zip(&hd.real[r.clone()]) {
                    if real {
                        for (x, g) in row.iter_mut().zip(&gz) {
                            *x += g;
                        }
                    } else {
                        row.fill(0.0);
                    }
                }
                matmul(dv, fk_m, Mat::rows(&gs, f, d), 1.0, true);
                if x.causal {
                    matmul(&mut gs, fq.t(), dnum_m, 1.0, true);
                    matmul(&mut gz, fq.t(), Mat::rows(&dden, c, 1), 1.0, true);
                }
            }
        });
    [dfq, dfk, dv]
}

impl FlexInputs {
    /// The output and normalisers `[B, H, N, 1]` of kernelised attention on these mapped queries
    /// and keys.
    pub fn kernel_attention_forward(&self, causal: bool) -> (FlexTensor, FlexTensor) {
        let x = self.inputs(causal, CHUNK);
        let (out, den) = forward(&x);
        let [b, h, n, _] = self.shape();
        (tensor(out, [b, h, n, x.v.dim()]), tensor(den, [b, h, n, 1]))
    }
}
