//! The portable flash attention: tiled exact attention from burn tensor ops, on any backend.
//!
//! This is what every backend without a fused kernel runs, and what the fused CPU kernel is
//! tested against.

use std::ops::Range;

use burn::backend::tensor::FloatTensor;
use burn::backend::{Backend, TensorMetadata, get_or_init_device_settings};
use burn::tensor::{FloatDType, Scalar, Shape, Slice, TensorData};

use crate::attention_op::Saved;
use crate::blocked_score;

/// Consecutive ranges of at most `tile` covering `0..len`.
fn tiles(len: usize, tile: usize) -> Vec<Range<usize>> {
    (0..len)
        .step_by(tile)
        .map(|s| s..(s + tile).min(len))
        .collect()
}

fn dims4<B: Backend>(t: &FloatTensor<B>) -> [usize; 4] {
    let s = t.shape();
    [s[0], s[1], s[2], s[3]]
}

/// Rows `r` of a `[B, H, N, X]` tensor (dimension 2).
fn rows<B: Backend>(t: &FloatTensor<B>, r: Range<usize>) -> FloatTensor<B> {
    let [b, h, _, x] = dims4::<B>(t);
    B::float_slice(
        t.clone(),
        &[
            Slice::from(0..b),
            Slice::from(0..h),
            Slice::from(r),
            Slice::from(0..x),
        ],
    )
}

/// Columns `r` of the `[B, 1, 1, N]` key bias.
fn bias_cols<B: Backend>(bias: &FloatTensor<B>, r: Range<usize>) -> FloatTensor<B> {
    let [b, _, _, _] = dims4::<B>(bias);
    B::float_slice(
        bias.clone(),
        &[
            Slice::from(0..b),
            Slice::from(0..1),
            Slice::from(0..1),
            Slice::from(r),
        ],
    )
}

fn scalar(x: f64) -> Scalar {
    Scalar::Float(x)
}

/// Scores of query rows `qr` against key rows `kr`: `q·kᵀ/√D + bias`, future keys blocked if causal.
pub(crate) fn scores<B: Backend>(
    q_i: &FloatTensor<B>,
    k_j: &FloatTensor<B>,
    bias: &FloatTensor<B>,
    qr: &Range<usize>,
    kr: &Range<usize>,
    causal: bool,
) -> FloatTensor<B> {
    let d = dims4::<B>(q_i)[3];
    let blocked = blocked_score(q_i.dtype());
    let s = B::float_matmul(q_i.clone(), B::float_transpose(k_j.clone()));
    let s = B::float_mul_scalar(s, scalar(1.0 / (d as f64).sqrt()));
    let mut s = B::float_add(s, bias_cols::<B>(bias, kr.clone()));
    if causal && kr.end > qr.start + 1 {
        // Only tiles that straddle the diagonal need an explicit mask.
        let mask: Vec<f32> = qr
            .clone()
            .flat_map(|i| kr.clone().map(move |j| if j > i { blocked } else { 0.0 }))
            .collect();
        let shape = Shape::new([1, 1, qr.len(), kr.len()]);
        let mask = B::float_from_data(TensorData::new(mask, shape), &s.device());
        let mask = B::float_cast(mask, dtype_of::<B>(&s));
        s = B::float_add(s, mask);
    }
    s
}

/// The float type of `t`: tensors a portable pass creates take its inputs' precision.
pub(crate) fn dtype_of<B: Backend>(t: &FloatTensor<B>) -> FloatDType {
    t.dtype().into()
}

/// Whether a causal query tile `qr` can see anything of key tile `kr`.
fn visible_tile(qr: &Range<usize>, kr: &Range<usize>, causal: bool) -> bool {
    !causal || kr.start < qr.end
}

/// 1 where a query sees at least one key, else 0: `[B, 1, N, 1]` when causal, else `[B, 1, 1, 1]`
/// (every query sees the same keys, however many queries there are).
pub(crate) fn has_visible<B: Backend>(bias: &FloatTensor<B>, causal: bool) -> FloatTensor<B> {
    let [b, _, _, n] = dims4::<B>(bias);
    let bools = get_or_init_device_settings::<B>(&bias.device()).bool_dtype;
    let real = B::bool_into_float(
        B::float_greater_elem(
            bias.clone(),
            scalar(f64::from(blocked_score(bias.dtype())) / 2.0),
            bools,
        ),
        dtype_of::<B>(bias),
    ); // [B, 1, 1, N]
    let (seen, rows) = if causal {
        (B::float_cumsum(real, 3), n)
    } else {
        (B::float_sum_dim(real, 3), 1) // [B, 1, 1, 1]
    };
    let seen = B::float_greater_elem(seen, scalar(0.5), bools);
    B::float_reshape(
        B::bool_into_float(seen, dtype_of::<B>(bias)),
        Shape::new([b, 1, rows, 1]),
    )
}

/// The forward pass: output `[B, H, N, D]` and per-query log-sum-exp `[B, H, N, 1]`.
pub(crate) fn forward<B: Backend>(
    q: FloatTensor<B>,
    k: FloatTensor<B>,
    v: FloatTensor<B>,
    bias: FloatTensor<B>,
    causal: bool,
    tile: usize,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let [b, h, n, d] = dims4::<B>(&q);
    let (device, dtype) = (q.device(), dtype_of::<B>(&q));
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for qr in tiles(n, tile) {
        let q_i = rows::<B>(&q, qr.clone());
        let stat = Shape::new([b, h, qr.len(), 1]);
        let mut m = B::float_full(
            stat.clone(),
            scalar(2.0 * f64::from(blocked_score(q.dtype()))),
            &device,
            dtype,
        );
        let mut l = B::float_zeros(stat, &device, dtype);
        let mut acc = B::float_zeros(Shape::new([b, h, qr.len(), d]), &device, dtype);
        for kr in tiles(n, tile)
            .into_iter()
            .filter(|kr| visible_tile(&qr, kr, causal))
        {
            let s = scores::<B>(&q_i, &rows::<B>(&k, kr.clone()), &bias, &qr, &kr, causal);
            let tile_max = B::float_max_dim(s.clone(), 3);
            // m_new = max(m, tile_max), written as m + relu(tile_max − m).
            let m_new = B::float_add(m.clone(), B::relu(B::float_sub(tile_max, m.clone())));
            let p = B::float_exp(B::float_sub(s, m_new.clone()));
            let correction = B::float_exp(B::float_sub(m, m_new.clone()));
            l = B::float_add(
                B::float_mul(l, correction.clone()),
                B::float_sum_dim(p.clone(), 3),
            );
            let pv = B::float_matmul(p, rows::<B>(&v, kr));
            acc = B::float_add(B::float_mul(acc, correction), pv);
            m = m_new;
        }
        outs.push(B::float_div(acc, l.clone()));
        lses.push(B::float_add(m, B::float_log(l)));
    }
    let out = B::float_mul(B::float_cat(outs, 2), has_visible::<B>(&bias, causal));
    (out, B::float_cat(lses, 2))
}

/// The backward pass: recomputes each tile's probabilities from the saved log-sum-exp.
/// `s.kept` is the log-sum-exp `[B, H, N, 1]`.
pub(crate) fn backward<B: Backend>(
    s: Saved<B>,
    grad_out: FloatTensor<B>,
    causal: bool,
    tile: usize,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let [b, h, n, d] = dims4::<B>(&s.q);
    let (device, dtype) = (s.q.device(), dtype_of::<B>(&s.q));
    let scale = scalar(1.0 / (d as f64).sqrt());
    let d_out = B::float_mul(grad_out, has_visible::<B>(&s.bias, causal));
    let delta = B::float_sum_dim(B::float_mul(d_out.clone(), s.out.clone()), 3); // [B, H, N, 1]
    let q_tiles = tiles(n, tile);
    let mut dq: Vec<FloatTensor<B>> = q_tiles
        .iter()
        .map(|r| B::float_zeros(Shape::new([b, h, r.len(), d]), &device, dtype))
        .collect();
    let (mut dks, mut dvs) = (Vec::new(), Vec::new());
    for kr in tiles(n, tile) {
        let (k_j, v_j) = (rows::<B>(&s.k, kr.clone()), rows::<B>(&s.v, kr.clone()));
        let shape = Shape::new([b, h, kr.len(), d]);
        let mut dk = B::float_zeros(shape.clone(), &device, dtype);
        let mut dv = B::float_zeros(shape, &device, dtype);
        for (i, qr) in q_tiles.iter().enumerate() {
            if !visible_tile(qr, &kr, causal) {
                continue;
            }
            let q_i = rows::<B>(&s.q, qr.clone());
            let do_i = rows::<B>(&d_out, qr.clone());
            let sc = scores::<B>(&q_i, &k_j, &s.bias, qr, &kr, causal);
            let p = B::float_exp(B::float_sub(sc, rows::<B>(&s.kept, qr.clone())));
            dv = B::float_add(
                dv,
                B::float_matmul(B::float_transpose(p.clone()), do_i.clone()),
            );
            let dp = B::float_matmul(do_i, B::float_transpose(v_j.clone()));
            let ds = B::float_mul(p, B::float_sub(dp, rows::<B>(&delta, qr.clone())));
            let ds = B::float_mul_scalar(ds, scale);
            dq[i] = B::float_add(dq[i].clone(), B::float_matmul(ds.clone(), k_j.clone()));
            dk = B::float_add(dk, B::float_matmul(B::float_transpose(ds), q_i));
        }
        dks.push(dk);
        dvs.push(dv);
    }
    (
        B::float_cat(dq, 2),
        B::float_cat(dks, 2),
        B::float_cat(dvs, 2),
    )
}
