//! Early exit (confidence-based, as in Schwartz et al. 2020 and Elbayad et al. 2020's
//! multi-exit training): a classifier head after every block, all trained together on the mean
//! of their losses; at evaluation a sequence leaves at the first layer whose head's top class
//! probability reaches the threshold, and only the sequences still in the batch run the next
//! block.

use burn::module::Module;
use burn::nn::{Initializer, LayerNorm, Linear, LinearConfig, Relu};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use serde::{Deserialize, Serialize};

use crate::norm::{new_norm, normalise};
use crate::{Classifier, EncoderReport, ModelConfig, dense, in_f32, layer_norm_flops};

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
    /// The exit threshold, if the model has exits.
    pub fn threshold(&self) -> Option<f64> {
        match self {
            ExitsConfig::None => None,
            ExitsConfig::Confidence(c) => Some(c.threshold),
        }
    }
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
        out
    }

    fn exit_logits(&self, head: &ExitHead, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let pooled = self.pool(normalise(&head.norm, x), padding);
        let h = Relu::new().forward(dense::apply(&head.hidden, pooled));
        dense::apply(&head.out, h)
    }

    /// Evaluation with early exit: after each block, the sequences whose head is confident
    /// (top probability ≥ `threshold`, and `threshold` < 1) leave with that head's logits; the
    /// rest go on, alone, to the next block. The last block's head takes whoever is left. A
    /// model without exits runs whole.
    ///
    /// # Shapes
    /// - tokens, padding: `[B, N]` → logits `[B, C]`
    pub fn forward_exiting(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        threshold: f64,
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
        let mut rows: Vec<usize> = (0..batch).collect(); // original index of each row still in
        let mut layers = vec![depth; batch];
        let mut parts: Vec<(Vec<usize>, Tensor<2>)> = Vec::new();
        for d in 0..depth {
            h = self.encoder.block(d).forward(h, Some(pad.clone()));
            executed += self.encoder.block(d).cost(rows.len(), n).forward_flops;
            let head = self.exits.get(d).filter(|_| threshold < 1.0);
            let Some(head) = head else {
                continue;
            };
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
            if leave.is_empty() {
                continue;
            }
            let pick = |ids: &[usize]| {
                Tensor::<1, Int>::from_data(
                    TensorData::new(ids.iter().map(|&i| i as i64).collect(), [ids.len()]),
                    &device,
                )
            };
            for &i in &leave {
                layers[rows[i]] = d + 1;
            }
            parts.push((
                leave.iter().map(|&i| rows[i]).collect(),
                logits.select(0, pick(&leave)),
            ));
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
        let index = Tensor::<1, Int>::from_data(
            TensorData::new(order.iter().map(|&i| i as i64).collect(), [batch]),
            &device,
        );
        Exited {
            logits: Tensor::cat(all, 0).select(0, index),
            layers,
            executed_flops: executed,
            full_flops,
        }
    }
}
