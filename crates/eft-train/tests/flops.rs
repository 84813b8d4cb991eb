//! The model's analytic FLOP count against an independent one: the classifier's forward pass
//! written as plain loops over f64 that count every arithmetic operation as they do it. The loops
//! must also reproduce the model's logits, so they really are the same computation.

use std::collections::BTreeMap;

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_model::{FeedForwardConfig, ModelConfig, SwitchConfig, TaskShape};
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

/// The embeddings of one row: CLS, then each token, plus its learned position.
fn embed(k: &mut Counter, row: &[i64], d: usize) -> Vec<Vec<f64>> {
    let (tok, pos, cls) = (
        k.w("embeddings.tokens.weight"),
        k.w("embeddings.positions.weight"),
        k.w("embeddings.cls"),
    );
    std::iter::once(cls.clone())
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
        .collect()
}

/// The attention half of block `b` on one row: `x += attention(LN(x))`.
fn attention_half(k: &mut Counter, x: &mut [Vec<f64>], b: &str, heads: usize) {
    let h = k.layer_norm(x, &format!("{b}.attention_norm"));
    let q = k.linear(&h, &format!("{b}.attention.query.weight"), None);
    let kk = k.linear(&h, &format!("{b}.attention.key.weight"), None);
    let v = k.linear(&h, &format!("{b}.attention.value.weight"), None);
    let a = k.attention(&q, &kk, &v, heads);
    let o = k.linear(
        &a,
        &format!("{b}.attention.output.weight"),
        Some(&format!("{b}.attention.output.bias")),
    );
    add(k, x, &o);
}

/// The MLP named `m` (`…feed_forward` or `…switch.experts.e`) on rows already normalised.
fn mlp(k: &mut Counter, h: &[Vec<f64>], m: &str) -> Vec<Vec<f64>> {
    let up = k.linear(h, &format!("{m}.up.weight"), Some(&format!("{m}.up.bias")));
    let act: Vec<Vec<f64>> = up
        .iter()
        .map(|r| r.iter().map(|&v| k.gelu(v)).collect())
        .collect();
    k.linear(
        &act,
        &format!("{m}.down.weight"),
        Some(&format!("{m}.down.bias")),
    )
}

/// The final LayerNorm, CLS pooling, the head and the loss on one row; returns its logits.
fn head(k: &mut Counter, x: &[Vec<f64>], classes: usize) -> Vec<f64> {
    let x = k.layer_norm(x, "encoder.final_norm");
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
    // Log-softmax (max, shift, exp, sum per class; log) and the pick.
    k.flops += 4.0 * classes as f64 + 2.0;
    out[0].clone()
}

const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 6,
    n_classes: 3,
    paired: false,
};
const ROWS: [[i64; 6]; 2] = [[3, 1, 4, 1, 5, 9], [2, 6, 5, 3, 5, 8]];

/// The model's logits and output on [`ROWS`], without padding.
fn run(model: &eft_model::Classifier, device: &Device) -> (Vec<f64>, eft_model::ModelOutput) {
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new(ROWS.iter().flatten().copied().collect::<Vec<_>>(), [2, 6]),
        device,
    );
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 12], [2, 6]), device);
    let output = model.forward(tokens, padding);
    let logits = output
        .logits
        .clone()
        .into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .unwrap();
    (logits, output)
}

/// A 2-layer, 8-wide model with `feed_forward`, its logits and output on [`ROWS`], and a counter
/// over its parameters.
fn tiny(
    feed_forward: FeedForwardConfig,
    seed: u64,
) -> (
    eft_model::Classifier,
    Vec<f64>,
    eft_model::ModelOutput,
    Counter,
) {
    let config = ModelConfig {
        d_model: 8,
        n_heads: 2,
        n_layers: 2,
        d_ff: 16,
        dropout: 0.0,
        feed_forward,
        ..ModelConfig::default()
    };
    let device = Device::flex();
    device.seed(seed);
    let model = config.init(DIMS, &device).unwrap();
    let (logits, output) = run(&model, &device);
    let k = Counter {
        flops: 0.0,
        p: export_params(&model),
    };
    (model, logits, output, k)
}

fn assert_same_logits(logits: &[f64], expected: &[f64]) {
    for (a, e) in logits.iter().zip(expected) {
        assert!(
            (a - e).abs() < 1e-4,
            "logits {logits:?} vs loops {expected:?}"
        );
    }
}

#[test]
fn loops_count_the_same_flops_as_the_formulas_and_compute_the_same_logits() {
    let (model, logits, _, mut k) = tiny(FeedForwardConfig::Dense, 3);
    let mut expected = Vec::new();
    for row in ROWS {
        let mut x = embed(&mut k, &row, 8);
        for layer in 0..2 {
            let b = format!("encoder.blocks.{layer}");
            attention_half(&mut k, &mut x, &b, 2);
            let h = k.layer_norm(&x, &format!("{b}.feed_forward_norm"));
            let down = mlp(&mut k, &h, &format!("{b}.feed_forward"));
            add(&mut k, &mut x, &down);
        }
        expected.extend(head(&mut k, &x, 3));
    }
    assert_same_logits(&logits, &expected);
    let cost = model.cost(2, 6);
    assert_eq!(
        cost.forward_flops, k.flops,
        "formula vs counted forward FLOPs"
    );
    assert!(cost.attention_forward_flops > 0.0 && cost.backward_flops > cost.forward_flops);
}

/// A Switch model's executed FLOPs, counted as the loops route: per token the router and its
/// softmax, then one expert and the gate's scaling for each token its expert has room for. The
/// model's analytic cost less what its output says it skipped must equal the count, and the
/// analytic cost must be the same loops with every token kept.
#[test]
fn switch_layers_execute_one_expert_per_kept_token() {
    let experts = 3;
    let switch = SwitchConfig {
        capacity_factor: 0.8,
        ..SwitchConfig::with_experts(experts)
    };
    let (model, logits, output, mut k) = tiny(FeedForwardConfig::Switch(switch), 5);
    let mut xs: Vec<Vec<Vec<f64>>> = ROWS.iter().map(|r| embed(&mut k, r, 8)).collect();
    let (mut kept_flops, mut dropped_total) = (0.0, 0);
    for layer in 0..2 {
        let b = format!("encoder.blocks.{layer}");
        for x in &mut xs {
            attention_half(&mut k, x, &b, 2);
        }
        // The batch's tokens in order, for capacity.
        let tokens: Vec<Vec<f64>> = xs
            .iter()
            .flat_map(|x| k.layer_norm(x, &format!("{b}.feed_forward_norm")))
            .collect();
        let capacity = (0.8 * tokens.len() as f64 / experts as f64).ceil() as usize;
        let scores = k.linear(&tokens, &format!("{b}.switch.router.weight"), None);
        let mut load = vec![0; experts];
        let mut outs = vec![vec![0.0; 8]; tokens.len()];
        for (t, z) in scores.iter().enumerate() {
            let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let e: Vec<f64> = z.iter().map(|v| (v - max).exp()).collect();
            let sum: f64 = e.iter().sum();
            k.flops += eft_model::SOFTMAX_FLOPS * experts as f64;
            let best = (0..experts).fold(0, |b, i| if z[i] > z[b] { i } else { b });
            load[best] += 1;
            if load[best] > capacity {
                dropped_total += 1;
                continue;
            }
            let before = k.flops;
            let y = mlp(
                &mut k,
                std::slice::from_ref(&tokens[t]),
                &format!("{b}.switch.experts.{best}"),
            );
            k.flops += 8.0; // the gate's scaling
            kept_flops = k.flops - before;
            outs[t] = y[0].iter().map(|v| v * e[best] / sum).collect();
        }
        for (r, x) in xs.iter_mut().enumerate() {
            add(&mut k, x, &outs[r * 7..(r + 1) * 7]);
        }
    }
    let expected: Vec<f64> = xs.iter().flat_map(|x| head(&mut k, x, 3)).collect();
    assert_same_logits(&logits, &expected);
    assert!(
        dropped_total > 0,
        "capacity ⌈0.8·14/3⌉ = 4 must drop some of 14 tokens"
    );
    let dropped = output
        .layer_stats
        .iter()
        .find(|(n, _)| n == "dropped_fraction");
    let recorded: f64 = dropped.unwrap().1.iter().map(|f| f * 14.0).sum();
    assert!((recorded - dropped_total as f64).abs() < 1e-9);
    let cost = model.cost(2, 6);
    assert_eq!(
        cost.forward_flops - output.skipped_flops,
        k.flops,
        "executed forward FLOPs"
    );
    assert_eq!(
        cost.forward_flops,
        k.flops + dropped_total as f64 * kept_flops,
        "analytic FLOPs: every token kept"
    );
}

fn add(k: &mut Counter, x: &mut [Vec<f64>], y: &[Vec<f64>]) {
    for (a, b) in x.iter_mut().zip(y) {
        for (p, q) in a.iter_mut().zip(b) {
            *p += q;
            k.flops += 1.0;
        }
    }
}
