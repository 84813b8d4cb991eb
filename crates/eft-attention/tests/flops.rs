//! Mechanism FLOP formulas against independent counts: each mechanism written as plain f64 loops
//! that count every arithmetic operation as they do it (conventions of `AttentionCost`: a
//! multiply–add is two, an exponential, division, square root or comparison one). The loops must
//! also reproduce the mechanism's output, so the count is of the same computation.

use burn::tensor::{Device, Tensor};
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
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    AttentionConfig::from_name_and_params(name, &params)
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

#[test]
fn linformer_formula_counts_what_its_loops_do() {
    let device = Device::flex();
    let (q, k, v, _) = random_qkv(DIMS, 2, &device);
    let (qr, kr, vr) = (rows(&q), rows(&k), rows(&v));
    device.seed(5);
    let m = LinformerAttention::new(3, 12, 1, false, true, &device);
    let e = to_f64(m.keys.val()); // [1, 3, 12]
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
