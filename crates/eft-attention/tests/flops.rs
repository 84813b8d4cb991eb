//! Mechanism FLOP formulas against independent counts: each mechanism written as plain f64 loops
//! that count every arithmetic operation as they do it (conventions of `AttentionCost`: a
//! multiply–add is two, an exponential, division, square root or comparison one). The loops must
//! also reproduce the mechanism's output, so the count is of the same computation.

use burn::tensor::{Device, Tensor};
use eft_attention::Mechanism;
use eft_attention::testing::{assert_close, random_qkv, to_f64};
use eft_attention::{
    AttentionConfig, AttentionInput, AttentionLayout, AttentionShape, LinformerAttention,
};

/// One head's `[N, D]` matrix from a `[1, 1, N, D]` tensor.
fn rows(t: &Tensor<4>) -> Vec<Vec<f64>> {
    let [_, _, n, d] = t.dims();
    let v = to_f64(t.clone());
    (0..n).map(|i| v[i * d..(i + 1) * d].to_vec()).collect()
}

#[derive(Default)]
struct Count(f64);

impl Count {
    fn dot(&mut self, a: &[f64], b: &[f64]) -> f64 {
        self.0 += 2.0 * a.len() as f64;
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// Scaled softmax attention of one query over `keys`: scores, scale, max, shift, exp, sum,
    /// divide (6 per key beyond the dot product), then the weighted values.
    fn softmax_attend(&mut self, q: &[f64], keys: &[Vec<f64>], values: &[Vec<f64>]) -> Vec<f64> {
        let scale = 1.0 / (q.len() as f64).sqrt();
        let s: Vec<f64> = keys.iter().map(|k| self.dot(q, k) * scale).collect();
        let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
        let z: f64 = e.iter().sum();
        self.0 += 6.0 * keys.len() as f64;
        let mut out = vec![0.0; values[0].len()];
        for (w, v) in e.iter().zip(values) {
            for (o, x) in out.iter_mut().zip(v) {
                *o += w / z * x;
                self.0 += 2.0;
            }
        }
        out
    }

    /// Kernel attention with features `fq`, `fk` already applied: `φ(q)·Σφ(k)ᵀv / φ(q)·Σφ(k)`.
    fn kernel_attend(&mut self, fq: &[Vec<f64>], fk: &[Vec<f64>], v: &[Vec<f64>]) -> Vec<Vec<f64>> {
        let (f, d) = (fk[0].len(), v[0].len());
        let mut kv = vec![vec![0.0; d]; f];
        let mut z = vec![0.0; f];
        for (k, vv) in fk.iter().zip(v) {
            for a in 0..f {
                z[a] += k[a];
                for c in 0..d {
                    kv[a][c] += k[a] * vv[c];
                }
            }
        }
        self.0 += fk.len() as f64 * (f as f64 + 2.0 * (f * d) as f64);
        fq.iter()
            .map(|q| {
                let den = self.dot(q, &z);
                (0..d)
                    .map(|c| {
                        let col: Vec<f64> = kv.iter().map(|r| r[c]).collect();
                        let num = self.dot(q, &col);
                        self.0 += 1.0; // divide
                        num / den
                    })
                    .collect()
            })
            .collect()
    }
}

fn check(what: &str, flops: f64, count: &Count, out: Tensor<4>, expected: &[Vec<f64>]) {
    let flat: Vec<f64> = expected.iter().flatten().copied().collect();
    assert_close(what, &to_f64(out), &flat, 1e-4, 1e-5);
    assert_eq!(flops, count.0, "{what}: formula vs counted forward FLOPs");
}

const DIMS: [usize; 4] = [1, 1, 12, 4];

fn shape() -> AttentionShape {
    AttentionShape {
        batch: 1,
        heads: 1,
        len: 12,
        head_dim: 4,
    }
}

fn build(name: &str, params: &[(&str, &str)]) -> eft_attention::Attention {
    AttentionConfig::from_name_and_params(name, &eft_attention::testing::params(params))
        .unwrap()
        .init(AttentionLayout::for_shape(shape()), &Device::flex())
}

#[test]
fn full_local_and_linear_formulas_count_what_their_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 1, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let input = || AttentionInput::new(q.clone(), k.clone(), v.clone());

    let full = build("full", &[]);
    let mut c = Count::default();
    let out: Vec<Vec<f64>> = qr.iter().map(|q| c.softmax_attend(q, &kr, &vr)).collect();
    check(
        "full",
        full.cost(shape()).forward_flops,
        &c,
        full.forward(input()),
        &out,
    );

    // Blocks of 4 (12 = 3 blocks): each query attends to its own block.
    let local = build("local", &[("block", "4")]);
    let mut c = Count::default();
    let out: Vec<Vec<f64>> = (0..12)
        .map(|i| {
            let b = i / 4 * 4..i / 4 * 4 + 4;
            c.softmax_attend(&qr[i], &kr[b.clone()], &vr[b])
        })
        .collect();
    check(
        "local",
        local.cost(shape()).forward_flops,
        &c,
        local.forward(input()),
        &out,
    );

    // φ(x) = elu(x) + 1: a comparison, an exponential (or the identity) and an addition.
    let linear = build("linear", &[]);
    let mut c = Count::default();
    let mut phi = |m: &[Vec<f64>]| -> Vec<Vec<f64>> {
        c.0 += 3.0 * (m.len() * m[0].len()) as f64;
        m.iter()
            .map(|r| {
                r.iter()
                    .map(|&x| if x > 0.0 { x + 1.0 } else { x.exp() })
                    .collect()
            })
            .collect()
    };
    let (fq, fk) = (phi(&qr), phi(&kr));
    let out = c.kernel_attend(&fq, &fk, &vr);
    check(
        "linear",
        linear.cost(shape()).forward_flops,
        &c,
        linear.forward(input()),
        &out,
    );
}

/// cosFormer: ReLU (1 per element), then each feature times cos a_i and sin a_i (2 per element);
/// the angle table is drawn once per length on the host and not counted.
#[test]
fn cosformer_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 4, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let m = build("cosformer", &[("max_len", "20")]);
    let mut c = Count::default();
    let mut phi = |rows: &[Vec<f64>]| -> Vec<Vec<f64>> {
        rows.iter()
            .enumerate()
            .map(|(i, r)| {
                let a = std::f64::consts::FRAC_PI_2 * i as f64 / 20.0;
                let relu: Vec<f64> = r.iter().map(|x| x.max(0.0)).collect();
                c.0 += 3.0 * r.len() as f64;
                let cos = relu.iter().map(|x| x * a.cos());
                cos.chain(relu.iter().map(|x| x * a.sin())).collect()
            })
            .collect()
    };
    let (fq, fk) = (phi(&qr), phi(&kr));
    let out = c.kernel_attend(&fq, &fk, &vr);
    let input = AttentionInput::new(q.clone(), k.clone(), v.clone());
    check(
        "cosformer",
        m.cost(shape()).forward_flops,
        &c,
        m.forward(input),
        &out,
    );
}

#[test]
fn linformer_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 2, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    device.seed(5);
    let m = LinformerAttention::new(3, 12, 1, eft_attention::LinformerShare::Kv, &device);
    let e = to_f64(m.keys.as_ref().unwrap().val()); // [1, 3, 12]
    let mut c = Count::default();
    let project = |c: &mut Count, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
        (0..3)
            .map(|r| {
                (0..4)
                    .map(|col| {
                        let row = &e[r * 12..(r + 1) * 12];
                        let column: Vec<f64> = x.iter().map(|xi| xi[col]).collect();
                        c.dot(row, &column)
                    })
                    .collect()
            })
            .collect()
    };
    let (kp, vp) = (project(&mut c, &kr), project(&mut c, &vr));
    let out: Vec<Vec<f64>> = qr.iter().map(|q| c.softmax_attend(q, &kp, &vp)).collect();
    let got = m.forward(AttentionInput::new(q, k, v));
    check("linformer", m.cost(shape()).forward_flops, &c, got, &out);
}

#[test]
fn flash_performer_and_synthesizer_formulas_count_what_their_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 3, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let input = || AttentionInput::new(q.clone(), k.clone(), v.clone());

    // flash computes exactly what full computes, tile by tile.
    let flash = build("flash", &[("tile", "4")]);
    let mut c = Count::default();
    let out: Vec<Vec<f64>> = qr.iter().map(|q| c.softmax_attend(q, &kr, &vr)).collect();
    check(
        "flash",
        flash.cost(shape()).forward_flops,
        &c,
        flash.forward(input()),
        &out,
    );

    // FAVOR+ with 6 features: φ(x) = exp(ω·x̃ − |x̃|²/2 − shift)/√m, x̃ = x/D^¼; the shift is the
    // row maximum for queries and the overall maximum for keys.
    let performer = build("performer", &[("features", "6")]);
    let eft_attention::Attention::Performer(p) = &performer else {
        unreachable!()
    };
    let omega = to_f64(p.omega.val()); // [6, 4]
    let mut c = Count::default();
    let features = |c: &mut Count, x: &[Vec<f64>], query: bool| -> Vec<Vec<f64>> {
        let (n, d, m) = (x.len(), 4usize, 6usize);
        let scaled: Vec<Vec<f64>> = x
            .iter()
            .map(|r| r.iter().map(|v| v / (d as f64).powf(0.25)).collect())
            .collect();
        c.0 += (n * d) as f64;
        let proj: Vec<Vec<f64>> = scaled
            .iter()
            .map(|r| {
                (0..m)
                    .map(|f| c.dot(r, &omega[f * d..(f + 1) * d]))
                    .collect()
            })
            .collect();
        let half: Vec<f64> = scaled.iter().map(|r| c.dot(r, r) / 2.0).collect();
        c.0 += n as f64; // halving
        let all = proj
            .iter()
            .flatten()
            .cloned()
            .fold(f64::NEG_INFINITY, f64::max);
        c.0 += (n * m) as f64; // maxima
        c.0 += 4.0 * (n * m) as f64; // subtract twice, exp, normalise
        (0..n)
            .map(|i| {
                let shift = if query {
                    proj[i].iter().cloned().fold(f64::NEG_INFINITY, f64::max)
                } else {
                    all
                };
                proj[i]
                    .iter()
                    .map(|p| (p - half[i] - shift).exp() / (m as f64).sqrt())
                    .collect()
            })
            .collect()
    };
    let (fq, fk) = (features(&mut c, &qr, true), features(&mut c, &kr, false));
    let out = c.kernel_attend(&fq, &fk, &vr);
    check(
        "performer",
        performer.cost(shape()).forward_flops,
        &c,
        performer.forward(input()),
        &out,
    );

    // synthesizer-random: the learned logits R, softmax (no scaling), weighted values.
    let synth = build("synthesizer", &[("mode", "random")]);
    let eft_attention::Attention::Synthesizer(s) = &synth else {
        unreachable!()
    };
    let r = to_f64(s.first.val()); // [1, 12, 12]
    let mut c = Count::default();
    let out: Vec<Vec<f64>> = (0..12)
        .map(|i| {
            let row = &r[i * 12..(i + 1) * 12];
            let max = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = row.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            c.0 += 5.0 * 12.0;
            (0..4)
                .map(|col| {
                    c.0 += 2.0 * 12.0;
                    (0..12).map(|j| e[j] / z * vr[j][col]).sum()
                })
                .collect()
        })
        .collect();
    check(
        "synthesizer",
        synth.cost(shape()).forward_flops,
        &c,
        synth.forward(input()),
        &out,
    );
}

/// `a·b` for row-major matrices, counted.
fn matmul(c: &mut Count, a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    a.iter()
        .map(|r| {
            (0..b[0].len())
                .map(|j| {
                    let col: Vec<f64> = b.iter().map(|x| x[j]).collect();
                    c.dot(r, &col)
                })
                .collect()
        })
        .collect()
}

/// Row-wise softmax of `a·bᵀ/√D`, counted: dot products, scale, then 5 per entry.
fn kernel(c: &mut Count, a: &[Vec<f64>], b: &[Vec<f64>]) -> Vec<Vec<f64>> {
    let scale = 1.0 / (a[0].len() as f64).sqrt();
    a.iter()
        .map(|r| {
            let s: Vec<f64> = b.iter().map(|k| c.dot(r, k) * scale).collect();
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            c.0 += 6.0 * s.len() as f64;
            e.iter().map(|x| x / z).collect()
        })
        .collect()
}

#[test]
fn nystrom_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 4, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let (n, m, iters) = (12usize, 4usize, 3usize);
    let nystrom = build("nystrom", &[("landmarks", "4"), ("pinv_iters", "3")]);
    let mut c = Count::default();
    // Landmarks by runs of n/m rows (m divides n): weight each row, sum each run, divide by
    // its count; the counts (each run's weights summed, then clamped) once per batch row.
    let runs = |c: &mut Count, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
        let (r, d) = (n / m, x[0].len());
        c.0 += (n * d) as f64;
        (0..m)
            .map(|l| {
                let mut acc = x[l * r].clone();
                for row in &x[l * r + 1..(l + 1) * r] {
                    acc.iter_mut().zip(row).for_each(|(a, v)| *a += v);
                }
                c.0 += (r * d) as f64; // r − 1 sums and one division per column
                acc.iter().map(|a| a / r as f64).collect()
            })
            .collect()
    };
    c.0 += n as f64;
    let (ql, kl) = (runs(&mut c, &qr), runs(&mut c, &kr));
    let f = kernel(&mut c, &qr, &kl);
    let a = kernel(&mut c, &ql, &kl);
    let b = kernel(&mut c, &ql, &kr);
    let bv = matmul(&mut c, &b, &vr);
    // Newton–Schulz from Aᵀ / (‖A‖₁·‖A‖∞).
    let col = (0..m)
        .map(|j| (0..m).map(|i| a[i][j]).sum::<f64>())
        .fold(0.0, f64::max);
    let row = a.iter().map(|r| r.iter().sum::<f64>()).fold(0.0, f64::max);
    c.0 += 3.0 * (m * m) as f64 + 2.0 * m as f64 + 1.0;
    let mut z: Vec<Vec<f64>> = (0..m)
        .map(|i| (0..m).map(|j| a[j][i] / (col * row)).collect())
        .collect();
    let less = |c: &mut Count, s: f64, x: &[Vec<f64>]| -> Vec<Vec<f64>> {
        c.0 += 2.0 * (m * m) as f64; // s·I, then the difference
        (0..m)
            .map(|i| {
                (0..m)
                    .map(|j| if i == j { s } else { 0.0 } - x[i][j])
                    .collect()
            })
            .collect()
    };
    for _ in 0..iters {
        let az = matmul(&mut c, &a, &z);
        let inner = less(&mut c, 7.0, &az);
        let t = matmul(&mut c, &az, &inner);
        let inner = less(&mut c, 15.0, &t);
        let t = matmul(&mut c, &az, &inner);
        let inner = less(&mut c, 13.0, &t);
        z = matmul(&mut c, &z, &inner);
        c.0 += (m * m) as f64;
        z.iter_mut().flatten().for_each(|x| *x *= 0.25);
    }
    let zbv = matmul(&mut c, &z, &bv);
    let out = matmul(&mut c, &f, &zbv);
    let got = nystrom.forward(AttentionInput::new(q, k, v));
    check(
        "nystrom",
        nystrom.cost(shape()).forward_flops,
        &c,
        got,
        &out,
    );
}

#[test]
fn xl_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 6, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let xl = build("xl", &[]);
    let eft_attention::Attention::Xl(m) = &xl else {
        unreachable!()
    };
    let (n, d) = (12usize, 4usize);
    let (u, pv, w) = (
        to_f64(m.content_bias.val()),
        to_f64(m.position_bias.val()),
        to_f64(m.position_proj.val()),
    );
    let mut c = Count::default();
    // Every distance i − j from −(N−1) to N−1, encoded (free: a table) and projected by W_r.
    let span = 2 * n - 1;
    let distances: Vec<f64> = (0..span).map(|x| x as f64 - (n as f64 - 1.0)).collect();
    let enc = rows(&eft_attention::sinusoid(&distances, d, &device).reshape([1, 1, span, d]));
    let wr: Vec<Vec<f64>> = (0..d).map(|e| w[e * d..(e + 1) * d].to_vec()).collect();
    let r = matmul(&mut c, &enc, &wr);
    c.0 += 2.0 * (n * d) as f64; // q + u, q + v
    let qu: Vec<Vec<f64>> = qr
        .iter()
        .map(|x| x.iter().zip(&u).map(|(a, b)| a + b).collect())
        .collect();
    let qv: Vec<Vec<f64>> = qr
        .iter()
        .map(|x| x.iter().zip(&pv).map(|(a, b)| a + b).collect())
        .collect();
    let by_distance: Vec<Vec<f64>> = qv
        .iter()
        .map(|x| r.iter().map(|rr| c.dot(x, rr)).collect())
        .collect();
    let out: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let s: Vec<f64> = (0..n)
                .map(|j| {
                    (c.dot(&qu[i], &kr[j]) + by_distance[i][i + n - 1 - j]) / (d as f64).sqrt()
                })
                .collect();
            // Sum and scale, mask, softmax (max, shift, exp, sum, divide), visibility.
            c.0 += 9.0 * n as f64;
            let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = s.iter().map(|x| (x - max).exp()).collect();
            let z: f64 = e.iter().sum();
            (0..d)
                .map(|col| {
                    c.0 += 2.0 * n as f64;
                    (0..n).map(|j| e[j] / z * vr[j][col]).sum()
                })
                .collect()
        })
        .collect();
    let got = xl.forward(AttentionInput::new(q, k, v));
    check("xl", xl.cost(shape()).forward_flops, &c, got, &out);
}

#[test]
fn lsh_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, _, v, _) = random_qkv(DIMS, 7, &device);
    let (qr, vr) = (rows(&q), rows(&v));
    let (n, d, chunk, buckets, hashes) = (12usize, 4usize, 4usize, 4usize, 2usize);
    let lsh = build("lsh", &[("buckets", "4"), ("chunk", "4"), ("hashes", "2")]);
    let eft_attention::Attention::Lsh(m) = &lsh else {
        unreachable!()
    };
    let rot = m.rotations(1, d); // [hashes, 1, D, buckets/2]
    let mut c = Count::default();
    // Keys: unit-normalised queries (square, sum, sqrt, clamp, divide).
    c.0 += 3.0 * (n * d) as f64 + 2.0 * n as f64;
    let keys: Vec<Vec<f64>> = qr
        .iter()
        .map(|x| {
            let norm = x.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-6);
            x.iter().map(|v| v / norm).collect()
        })
        .collect();
    let (mut outs, mut lses) = (Vec::new(), Vec::new());
    for r in 0..hashes {
        // Hash: x·R (N·D·b/2 multiply-adds), its negation, argmax over b.
        c.0 += (n * d * buckets) as f64 + 1.5 * (n * buckets) as f64;
        let bucket: Vec<usize> = qr
            .iter()
            .map(|x| {
                let half = buckets / 2;
                let p: Vec<f64> = (0..half)
                    .map(|h| {
                        (0..d)
                            .map(|e| x[e] * rot[(r * d + e) * half + h] as f64)
                            .sum()
                    })
                    .collect();
                let all: Vec<f64> = p.iter().copied().chain(p.iter().map(|x| -x)).collect();
                (0..buckets)
                    .max_by(|&a, &b| all[a].total_cmp(&all[b]))
                    .unwrap()
            })
            .collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by_key(|&j| (bucket[j], j));
        let mut out = vec![vec![0.0; d]; n];
        let mut lse = vec![0.0; n];
        for (rank, &i) in order.iter().enumerate() {
            let ch = rank / chunk;
            // Scored slots: own chunk, then the previous one (chunk 0's is a masked copy).
            let slots: Vec<Option<usize>> = (0..2 * chunk)
                .map(|s| {
                    let from = if s < chunk {
                        ch
                    } else if ch == 0 {
                        usize::MAX
                    } else {
                        ch - 1
                    };
                    (from != usize::MAX).then(|| order[from * chunk + s % chunk])
                })
                .collect();
            // Per slot: score (2D) and scale, two comparisons, two fills, max, shift, exp,
            // visibility, sum, and for the weights shift, exp, visibility; then the values.
            c.0 += (2 * chunk) as f64 * (4.0 * d as f64 + 13.0) + 3.0;
            let visible: Vec<(usize, f64)> = slots
                .iter()
                .flatten()
                .filter(|&&j| bucket[j] == bucket[i] && j != i)
                .map(|&j| {
                    (
                        j,
                        keys[j].iter().zip(&qr[i]).map(|(a, b)| a * b).sum::<f64>() / 2.0,
                    )
                })
                .collect();
            let visible = if visible.is_empty() {
                vec![(i, -1e5)]
            } else {
                visible
            };
            let top = visible
                .iter()
                .map(|x| x.1)
                .fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = visible.iter().map(|x| (x.1 - top).exp()).sum();
            lse[i] = top + z.ln();
            for (j, s) in visible {
                for col in 0..d {
                    out[i][col] += (s - lse[i]).exp() * vr[j][col];
                }
            }
        }
        outs.push(out);
        lses.push(lse);
    }
    // Rounds by softmax of their log-sum-exp: 5 per round and query, then the weighted sum.
    c.0 += 5.0 * (hashes * n) as f64 + ((2 * hashes - 1) * n * d) as f64;
    let out: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let top = lses.iter().map(|l| l[i]).fold(f64::NEG_INFINITY, f64::max);
            let w: Vec<f64> = lses.iter().map(|l| (l[i] - top).exp()).collect();
            let z: f64 = w.iter().sum();
            (0..d)
                .map(|col| (0..hashes).map(|r| w[r] / z * outs[r][i][col]).sum())
                .collect()
        })
        .collect();
    let got = lsh.forward(AttentionInput::new(q.clone(), q, v));
    check("lsh", lsh.cost(shape()).forward_flops, &c, got, &out);
}

#[test]
fn sinkhorn_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 8, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    let (n, d, b, iters, tau) = (12usize, 4usize, 4usize, 3usize, 0.75);
    let nb = n / b;
    let sink = build("sinkhorn", &[("block", "4"), ("sinkhorn_iters", "3")]);
    let eft_attention::Attention::Sinkhorn(m) = &sink else {
        unreachable!()
    };
    let p = |t: &burn::module::Param<Tensor<2>>| {
        let [r, cols] = t.dims();
        let v = to_f64(t.val());
        (0..r)
            .map(|i| v[i * cols..(i + 1) * cols].to_vec())
            .collect::<Vec<_>>()
    };
    let (w1, b1, w2, b2) = (p(&m.hidden), p(&m.hidden_bias), p(&m.out), p(&m.out_bias));
    let mut c = Count::default();
    // Per batch row: real counts (sum, clamp) and the own-block padding test.
    c.0 += (2 * n + nb) as f64;
    // Block means of the (real) keys: mask, sum, divide.
    c.0 += (2 * n * d + nb * d) as f64;
    let means: Vec<Vec<f64>> = (0..nb)
        .map(|j| {
            (0..d)
                .map(|e| (0..b).map(|t| kr[j * b + t][e]).sum::<f64>() / b as f64)
                .collect()
        })
        .collect();
    let hidden = matmul(&mut c, &means, &w1);
    c.0 += (2 * nb * d) as f64; // bias, ReLU
    let hidden: Vec<Vec<f64>> = hidden
        .iter()
        .map(|r| {
            r.iter()
                .zip(&b1[0])
                .map(|(x, y)| (x + y).max(0.0))
                .collect()
        })
        .collect();
    let scores = matmul(&mut c, &hidden, &w2);
    c.0 += 2.0 * (nb * nb) as f64; // bias, temperature
    let mut lp: Vec<Vec<f64>> = scores
        .iter()
        .map(|r| r.iter().zip(&b2[0]).map(|(x, y)| (x + y) / tau).collect())
        .collect();
    let lse = |xs: &[f64]| {
        let top = xs.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        top + xs.iter().map(|x| (x - top).exp()).sum::<f64>().ln()
    };
    for _ in 0..iters {
        // Rows, then columns: max, shift, exp, sum per entry, log and add per row, subtract.
        c.0 += 2.0 * (5.0 * (nb * nb) as f64 + 2.0 * nb as f64);
        for r in lp.iter_mut() {
            let l = lse(r);
            r.iter_mut().for_each(|x| *x -= l);
        }
        for j in 0..nb {
            let col: Vec<f64> = lp.iter().map(|r| r[j]).collect();
            let l = lse(&col);
            lp.iter_mut().for_each(|r| r[j] -= l);
        }
    }
    c.0 += (nb * nb) as f64;
    let pm: Vec<Vec<f64>> = lp
        .iter()
        .map(|r| r.iter().map(|x| x.exp()).collect())
        .collect();
    // Attending: masked keys and values, P·blocks for both, real shares, test, clamp and log.
    c.0 += (2 * n * d) as f64;
    let block_rows = |x: &[Vec<f64>]| -> Vec<Vec<f64>> {
        (0..nb)
            .map(|j| x[j * b..(j + 1) * b].iter().flatten().copied().collect())
            .collect()
    };
    let ks = matmul(&mut c, &pm, &block_rows(&kr));
    let vs = matmul(&mut c, &pm, &block_rows(&vr));
    let share = matmul(&mut c, &pm, &vec![vec![1.0; b]; nb]);
    c.0 += 3.0 * n as f64;
    let out: Vec<Vec<f64>> = (0..n)
        .map(|i| {
            let j = i / b;
            let mut keys: Vec<(Vec<f64>, Vec<f64>, f64)> = (0..b)
                .map(|t| (kr[j * b + t].clone(), vr[j * b + t].clone(), 0.0))
                .collect();
            keys.extend((0..b).map(|t| {
                (
                    ks[j][t * d..(t + 1) * d].to_vec(),
                    vs[j][t * d..(t + 1) * d].to_vec(),
                    share[j][t].ln(),
                )
            }));
            // Score, scale, bias, fill, softmax (5), visibility, values.
            c.0 += keys.len() as f64 * (4.0 * d as f64 + 9.0);
            let s: Vec<f64> = keys
                .iter()
                .map(|(k, _, bias)| {
                    k.iter().zip(&qr[i]).map(|(a, b)| a * b).sum::<f64>() / 2.0 + bias
                })
                .collect();
            let top = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = s.iter().map(|x| (x - top).exp()).sum();
            (0..d)
                .map(|col| {
                    keys.iter()
                        .zip(&s)
                        .map(|((_, v, _), x)| (x - top).exp() / z * v[col])
                        .sum()
                })
                .collect()
        })
        .collect();
    let got = sink.forward(AttentionInput::new(q, k, v));
    check("sinkhorn", sink.cost(shape()).forward_flops, &c, got, &out);
}
