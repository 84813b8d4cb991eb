//! Early exit: a classifier head after every block, all trained together on the mean of their
//! losses (Elbayad et al. 2020's multi-exit training). At evaluation a sequence leaves at the
//! first layer whose head's top class probability reaches a threshold (confidence exits), or at
//! the depth a small classifier on its embeddings chose (the depth-adaptive Transformer's
//! sequence-level "multinomial" halting, trained on oracle depths: the head whose loss plus
//! `penalty · depth` is least). Only the sequences still in the batch run the next block.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, Linear, LinearConfig, Relu};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::norm::{new_norm, normalise};
use crate::{Classifier, EncoderReport, ModelConfig, dense, in_f32, layer_norm_flops};

/// The depth classifier of learned exits: pooled embeddings to one score per depth.
pub(crate) fn depth_head(config: &ModelConfig, device: &Device) -> Linear {
    LinearConfig::new(config.d_model, config.n_layers)
        .with_initializer(Initializer::XavierUniform { gain: 1.0 })
        .init(device)
}

/// Per-layer exits. TOML `model.exits = { kind = "none" }` (default) or
/// `{ kind = "confidence", threshold = p }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ExitsConfig {
    /// One head, after the last block.
    #[default]
    None,
    /// A head after every block; at evaluation a sequence exits at the first confident one.
    Confidence(ConfidenceExits),
    /// A head after every block and a classifier that picks each sequence's depth.
    Learned(LearnedExits),
}

/// Learned depth's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LearnedExits {
    /// The price of a layer in the oracle depth: the depth whose head's loss plus
    /// `penalty · depth` is least. Default 0.01 (nats per layer).
    #[serde(default = "default_penalty")]
    pub penalty: f64,
}

fn default_penalty() -> f64 {
    0.01
}

/// How a sequence picks its exit at evaluation.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ExitRule {
    /// At the first head whose top class probability is at least this (1: never early).
    Confidence(f64),
    /// At the depth the depth classifier picks.
    Learned,
}

/// Confidence-based exits' settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfidenceExits {
    /// A sequence exits at the first layer whose top class probability is at least this; in
    /// (0, 1], where 1 never exits early (the full model). `eft eval --exit-threshold` sweeps it.
    pub threshold: f64,
}

impl ExitsConfig {
    /// The exit threshold of confidence exits.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            ExitsConfig::Confidence(c) => Some(c.threshold),
            _ => None,
        }
    }

    /// How the model exits at evaluation, if it has exits.
    pub fn rule(&self) -> Option<ExitRule> {
        match self {
            ExitsConfig::None => None,
            ExitsConfig::Confidence(c) => Some(ExitRule::Confidence(c.threshold)),
            ExitsConfig::Learned(_) => Some(ExitRule::Learned),
        }
    }
}

/// Each sequence's oracle depth (counting from 1): the head `n` whose loss plus `penalty · n`
/// is least, the shallowest on ties. `losses[n][b]` is head `n`'s loss on sequence `b`.
pub fn oracle_depths(losses: &[Vec<f64>], penalty: f64) -> Vec<usize> {
    let rows = losses.first().map_or(0, Vec::len);
    (0..rows)
        .map(|b| {
            let cost = |n: usize| losses[n][b] + penalty * (n + 1) as f64;
            (0..losses.len()).fold(0, |best, n| if cost(n) < cost(best) { n } else { best }) + 1
        })
        .collect()
}

/// The classifier head of one earlier layer: LayerNorm, pooling, Dense→ReLU→Dense.
#[derive(Module, Debug)]
pub struct ExitHead {
    norm: LayerNorm,
    hidden: Linear,
    out: Linear,
}

impl ExitHead {
    /// A head reading width `d_model` into `classes` logits through `d_ff` hidden units.
    pub fn new(config: &ModelConfig, classes: usize, device: &Device) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            norm: new_norm(config.d_model, device),
            hidden: linear(config.d_model, config.d_ff),
            out: linear(config.d_ff, classes),
        }
    }
}

/// Where each sequence of a batch exited and what the pass executed.
#[derive(Debug, Clone)]
pub struct Exited {
    /// Logits of each sequence's exit, `[B, C]`, in the batch's order.
    pub logits: Tensor<2>,
    /// The layer each sequence exited after, counting from 1.
    pub layers: Vec<usize>,
    /// Forward FLOPs executed: every sequence's blocks up to its exit and the heads it passed.
    pub executed_flops: f64,
    /// Forward FLOPs of the same batch through every block and the last head only (the model
    /// without exits).
    pub full_flops: f64,
}

impl Classifier {
    /// The forward pass with every exit's logits kept for training (the last layer's are the
    /// output's `logits`, the earlier ones its `exit_logits`).
    pub(crate) fn forward_with_exits(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
    ) -> crate::ModelOutput {
        let depth_logits = self
            .depth_head
            .as_ref()
            .map(|head| dense::apply(head, self.pool(x.clone(), padding.clone())));
        let depth = self.encoder.depth();
        let mut switch = Vec::with_capacity(depth);
        let mut exit_logits = Vec::with_capacity(depth - 1);
        let mut h = x;
        for d in 0..depth {
            let (y, report) = self
                .encoder
                .block(d)
                .forward_reporting(h, Some(padding.clone()));
            switch.push(report);
            h = y;
            if let Some(head) = self.exits.get(d) {
                exit_logits.push(self.exit_logits(head, h.clone(), padding.clone()));
            }
        }
        let report = EncoderReport { switch, act: None };
        let mut out = self
            .head(self.encoder.finish(h), padding)
            .with_report(report);
        out.exit_logits = exit_logits;
        out.depth_logits = depth_logits.map(|l| (l, self.depth_penalty));
        out
    }

    fn exit_logits(&self, head: &ExitHead, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let pooled = self.pool(normalise(&head.norm, x), padding);
        let h = Relu::new().forward(dense::apply(&head.hidden, pooled));
        dense::apply(&head.out, h)
    }

    /// Evaluation with early exit: after each block, the sequences that leave by `rule` (their
    /// head confident: top probability ≥ the threshold, when it is below 1; or the depth the
    /// depth classifier picked reached) leave with that head's logits; the rest go on, alone,
    /// to the next block. The last block's head takes whoever is left. A model without exits
    /// runs whole.
    ///
    /// # Shapes
    /// - tokens, padding: `[B, N]` → logits `[B, C]`
    pub fn forward_exiting(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        rule: ExitRule,
    ) -> Exited {
        let batch = tokens.dims()[0];
        let device = tokens.device();
        let (mut h, mut pad) = self.embeddings.forward(tokens, padding);
        let n = h.dims()[1];
        let depth = self.encoder.depth();
        let embed = self.embeddings.cost(batch, n).forward_flops;
        let last_head = |rows| {
            layer_norm_flops(rows * n, self.encoder.width()) + self.head_cost(rows, n).forward_flops
        };
        let blocks = |rows| -> f64 {
            (0..depth)
                .map(|d| self.encoder.block(d).cost(rows, n).forward_flops)
                .sum()
        };
        let full_flops = embed + blocks(batch) + last_head(batch);
        let mut executed = embed;
        // The depth classifier reads the pooled embeddings once, before any block.
        let chosen: Vec<usize> = match (rule, &self.depth_head) {
            (ExitRule::Learned, Some(head)) => {
                let [d, layers] = head.weight.dims();
                executed += crate::linear_flops(batch, d, layers, true);
                dense::apply(head, self.pool(h.clone(), pad.clone()))
                    .argmax(1)
                    .into_data()
                    .iter::<i64>()
                    .map(|n| n as usize + 1)
                    .collect()
            }
            _ => vec![depth; batch],
        };
        let mut rows: Vec<usize> = (0..batch).collect(); // original index of each row still in
        let mut layers = vec![depth; batch];
        let mut parts: Vec<(Vec<usize>, Tensor<2>)> = Vec::new();
        for d in 0..depth {
            h = self.encoder.block(d).forward(h, Some(pad.clone()));
            executed += self.encoder.block(d).cost(rows.len(), n).forward_flops;
            let Some(head) = self.exits.get(d) else {
                continue;
            };
            let pick = |ids: &[usize]| eft_attention::index_tensor(ids, &device);
            let (leave, stay, logits) = match rule {
                ExitRule::Confidence(threshold) if threshold < 1.0 => {
                    let logits = self.exit_logits(head, h.clone(), pad.clone());
                    executed += last_head(rows.len());
                    let top = softmax(in_f32(logits.clone()), 1).max_dim(1);
                    let confident: Vec<bool> = top
                        .into_data()
                        .iter::<f32>()
                        .map(|p| f64::from(p) >= threshold)
                        .collect();
                    let (leave, stay): (Vec<usize>, Vec<usize>) =
                        (0..rows.len()).partition(|&i| confident[i]);
                    let logits = (!leave.is_empty()).then(|| logits.select(0, pick(&leave)));
                    (leave, stay, logits)
                }
                ExitRule::Confidence(_) => continue,
                ExitRule::Learned => {
                    let (leave, stay): (Vec<usize>, Vec<usize>) =
                        (0..rows.len()).partition(|&i| chosen[rows[i]] == d + 1);
                    // Only the leaving sequences run this head.
                    let logits = (!leave.is_empty()).then(|| {
                        executed += last_head(leave.len());
                        let ids = pick(&leave);
                        let x = h.clone().select(0, ids.clone());
                        self.exit_logits(head, x, pad.clone().select(0, ids))
                    });
                    (leave, stay, logits)
                }
            };
            let Some(logits) = logits else {
                continue;
            };
            for &i in &leave {
                layers[rows[i]] = d + 1;
            }
            parts.push((leave.iter().map(|&i| rows[i]).collect(), logits));
            if stay.is_empty() {
                rows.clear();
                break;
            }
            h = h.select(0, pick(&stay));
            pad = pad.select(0, pick(&stay));
            rows = stay.iter().map(|&i| rows[i]).collect();
        }
        if !rows.is_empty() {
            executed += last_head(rows.len());
            let logits = self.head(self.encoder.finish(h), pad).logits;
            parts.push((rows, logits));
        }
        // Back into the batch's order.
        let mut order = vec![0; batch];
        let mut next = 0;
        let mut all = Vec::with_capacity(parts.len());
        for (ids, logits) in parts {
            for id in ids {
                order[id] = next;
                next += 1;
            }
            all.push(logits);
        }
        let index = eft_attention::index_tensor(&order, &device);
        Exited {
            logits: Tensor::cat(all, 0).select(0, index),
            layers,
            executed_flops: executed,
            full_flops,
        }
    }
}
