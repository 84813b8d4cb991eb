//! The model's analytic FLOP count against an independent one: the classifier's forward pass
//! written as plain loops over f64 that count every arithmetic operation as they do it. The loops
//! must also reproduce the model's logits, so they really are the same computation.

use std::collections::BTreeMap;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_model::{ModelConfig, TaskShape};
use eft_train::params::{NamedArray, export_params};

/// Plain-loop arithmetic that counts FLOPs by the model's conventions.
struct Counter {
    flops: f64,
    p: BTreeMap<String, NamedArray>,
}

impl Counter {
    fn w(&self, name: &str) -> Vec<f64> {
        self.p[name].values.iter().map(|&x| x as f64).collect()
    }

    /// `x·W (+ b)` for rows of width `i` into width `o`; W is `[i, o]`.
    fn linear(&mut self, x: &[Vec<f64>], w: &str, b: Option<&str>) -> Vec<Vec<f64>> {
        let (wv, shape) = (self.w(w), self.p[w].shape.clone());
        let (i, o) = (shape[0], shape[1]);
        let bias = b.map(|b| self.w(b));
        x.iter()
            .map(|row| {
                (0..o)
                    .map(|c| {
                        let mut s = 0.0;
                        for r in 0..i {
                            s += row[r] * wv[r * o + c];
                            self.flops += 2.0;
                        }
                        if let Some(b) = &bias {
                            s += b[c];
                            self.flops += 1.0;
                        }
                        s
                    })
                    .collect()
            })
            .collect()
    }

    fn layer_norm(&mut self, x: &[Vec<f64>], name: &str) -> Vec<Vec<f64>> {
        let (g, b) = (
            self.w(&format!("{name}.gamma")),
            self.w(&format!("{name}.beta")),
        );
        x.iter()
            .map(|row| {
                let d = row.len() as f64;
                let mean = row.iter().sum::<f64>() / d; // d adds, 1 division
                let centred: Vec<f64> = row.iter().map(|v| v - mean).collect(); // d
                let var = centred.iter().map(|c| c * c).sum::<f64>() / d; // 2d, 1
                let std = (var + 1e-6).sqrt(); // 2
                self.flops += 7.0 * d + 4.0; // + divide, scale, shift: 3d
                centred
                    .iter()
                    .enumerate()
                    .map(|(c, v)| v / std * g[c] + b[c])
                    .collect()
            })
            .collect()
    }

    fn gelu(&mut self, x: f64) -> f64 {
        self.flops += 8.0; // x/√2, erf (4 by convention), 1 +, ·x, ·½
        0.5 * x * (1.0 + erf(x / std::f64::consts::SQRT_2))
    }

    /// Full softmax attention of one sequence, `heads` heads of `[n, d/heads]`.
    fn attention(
        &mut self,
        q: &[Vec<f64>],
        k: &[Vec<f64>],
        v: &[Vec<f64>],
        heads: usize,
    ) -> Vec<Vec<f64>> {
        let (n, d) = (q.len(), q[0].len());
        let hd = d / heads;
        let mut out = vec![vec![0.0; d]; n];
        for h in 0..heads {
            let cols = h * hd..(h + 1) * hd;
            for i in 0..n {
                let mut s: Vec<f64> = (0..n)
                    .map(|j| {
                        self.flops += 2.0 * hd as f64 + 1.0; // dot product, scale
                        cols.clone().map(|c| q[i][c] * k[j][c]).sum::<f64>() / (hd as f64).sqrt()
                    })
                    .collect();
                let max = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max); // n
                s.iter_mut().for_each(|x| *x = (*x - max).exp()); // 2n
                let z: f64 = s.iter().sum(); // n
                self.flops += 5.0 * n as f64; // + n divisions
                for j in 0..n {
                    let p = s[j] / z;
                    for c in cols.clone() {
                        out[i][c] += p * v[j][c];
                        self.flops += 2.0;
                    }
                }
            }
        }
        out
    }
}

/// Abramowitz & Stegun 7.1.26, |error| < 1.5e-7.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736
                + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    (1.0 - poly * (-x * x).exp()).copysign(x)
}

#[test]
fn loops_count_the_same_flops_as_the_formulas_and_compute_the_same_logits() {
    let config = ModelConfig {
        d_model: 8,
        n_heads: 2,
        n_layers: 2,
        d_ff: 16,
        dropout: 0.0,
        ..ModelConfig::default()
    };
    let dims = TaskShape {
        vocab_size: 12,
        max_len: 6,
        n_classes: 3,
        paired: false,
    };
    let device = Device::flex();
    device.seed(3);
    let model = config.init(dims, &device).unwrap();
    let rows: [[i64; 6]; 2] = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]];
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(rows.iter().flatten().copied().collect::<Vec<_>>(), [2, 6]),
        &device,
    );
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 12], [2, 6]), &device);
    let logits: Vec<f64> = model
        .forward(tokens, padding)
        .logits
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();

    let mut k = Counter {
        flops: 0.0,
        p: export_params(&model),
    };
    let mut expected = Vec::new();
    for row in rows {
        let (tok, pos, cls) = (
            k.w("embeddings.tokens.weight"),
            k.w("embeddings.positions.weight"),
            k.w("embeddings.cls"),
        );
        let d = 8;
        let mut x: Vec<Vec<f64>> = std::iter::once(cls.clone())
            .chain(
                row.iter()
                    .map(|&t| tok[t as usize * d..(t as usize + 1) * d].to_vec()),
            )
            .enumerate()
            .map(|(i, e)| {
                k.flops += d as f64;
                e.iter()
                    .zip(&pos[i * d..(i + 1) * d])
                    .map(|(a, b)| a + b)
                    .collect()
            })
            .collect();
        for layer in 0..2 {
            let b = format!("encoder.blocks.{layer}");
            let h = k.layer_norm(&x, &format!("{b}.attention_norm"));
            let q = k.linear(&h, &format!("{b}.attention.query.weight"), None);
            let kk = k.linear(&h, &format!("{b}.attention.key.weight"), None);
            let v = k.linear(&h, &format!("{b}.attention.value.weight"), None);
            let a = k.attention(&q, &kk, &v, 2);
            let o = k.linear(
                &a,
                &format!("{b}.attention.output.weight"),
                Some(&format!("{b}.attention.output.bias")),
            );
            add(&mut k, &mut x, &o);
            let h = k.layer_norm(&x, &format!("{b}.feed_forward_norm"));
            let up = k.linear(
                &h,
                &format!("{b}.feed_forward.up.weight"),
                Some(&format!("{b}.feed_forward.up.bias")),
            );
            let act: Vec<Vec<f64>> = up
                .iter()
                .map(|r| r.iter().map(|&v| k.gelu(v)).collect())
                .collect();
            let down = k.linear(
                &act,
                &format!("{b}.feed_forward.down.weight"),
                Some(&format!("{b}.feed_forward.down.bias")),
            );
            add(&mut k, &mut x, &down);
        }
        let x = k.layer_norm(&x, "encoder.final_norm");
        let pooled = vec![x[0].clone()];
        let hidden = k.linear(&pooled, "head_hidden.weight", Some("head_hidden.bias"));
        let hidden: Vec<Vec<f64>> = hidden
            .iter()
            .map(|r| {
                k.flops += r.len() as f64;
                r.iter().map(|v| v.max(0.0)).collect()
            })
            .collect();
        let out = k.linear(&hidden, "head_out.weight", Some("head_out.bias"));
        k.flops += 4.0 * 3.0 + 2.0; // log-softmax (max, shift, exp, sum per class; log) and the pick
        expected.extend(out[0].clone());
    }
    for (a, e) in logits.iter().zip(&expected) {
        assert!(
            (a - e).abs() < 1e-4,
            "logits {logits:?} vs loops {expected:?}"
        );
    }
    let cost = model.cost(2, 6);
    assert_eq!(
        cost.forward_flops, k.flops,
        "formula vs counted forward FLOPs"
    );
    assert!(cost.attention_forward_flops > 0.0 && cost.backward_flops > cost.forward_flops);
}

fn add(k: &mut Counter, x: &mut [Vec<f64>], y: &[Vec<f64>]) {
    for (a, b) in x.iter_mut().zip(y) {
        for (p, q) in a.iter_mut().zip(b) {
            *p += q;
            k.flops += 1.0;
        }
    }
}
