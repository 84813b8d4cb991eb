//! The position-wise MLP of a block: Linear → GELU → dropout → Linear, and the choice between it
//! and a Switch mixture of such MLPs.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use crate::tensor_parallel::{self, TensorSplit};
use crate::{GELU_FLOPS, ModelConfig, ModelCost, SwitchConfig, linear_flops};
use crate::{dense, dropout};
use eft_attention::select_param;

/// The feed-forward branch of every block. TOML: `model.feed_forward = { kind = "dense" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FeedForwardConfig {
    /// Linear → GELU → dropout → Linear with hidden width `model.d_ff` (LRA's MLP).
    #[default]
    Dense,
    /// A Switch mixture of experts, each the dense MLP ([`SwitchConfig`]).
    Switch(SwitchConfig),
}

impl FeedForwardConfig {
    /// The Switch settings of block `layer` (counting from 0), if it is a Switch layer.
    pub fn switch_at(&self, layer: usize) -> Option<&SwitchConfig> {
        match self {
            FeedForwardConfig::Switch(s) if s.at(layer) => Some(s),
            _ => None,
        }
    }
}

/// `W₂·dropout(GELU(W₁x + b₁)) + b₂`, hidden width `d_ff`.
#[derive(Module, Debug)]
pub struct FeedForward {
    up: Linear,
    down: Linear,
    dropout: Dropout,
    /// The block of hidden columns this rank holds under tensor parallelism; `None`: all.
    #[module(skip)]
    split: Option<TensorSplit>,
}

impl FeedForward {
    /// The MLP of width `config.d_ff`.
    pub fn dense(config: &ModelConfig, device: &Device) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            up: linear(config.d_model, config.d_ff),
            down: linear(config.d_ff, config.d_model),
            dropout: DropoutConfig::new(config.dropout).init(),
            split: None,
        }
    }

    /// The MLP's part on one of `split.ranks` ranks: its block of hidden columns (`W₁` columns
    /// and `b₁`, `W₂` rows), the output summed over the ranks before `b₂`.
    pub(crate) fn split(mut self, split: TensorSplit) -> Self {
        let columns: Vec<usize> = split.block(self.up.weight.dims()[1]).collect();
        self.up.weight = select_param(self.up.weight, 1, &columns);
        self.up.bias = self.up.bias.map(|b| select_param(b, 0, &columns));
        self.down.weight = select_param(self.down.weight, 0, &columns);
        self.split = Some(split);
        self
    }

    /// The ids of its weight matrices (up, down), for tests that compare gradients.
    #[cfg(test)]
    pub(crate) fn weight_ids(&self) -> [burn::module::ParamId; 2] {
        [self.up.weight.id, self.down.weight.id]
    }

    /// Whether the layer is in training mode (dropout on); off after `valid()`.
    pub(crate) fn training(&self) -> bool {
        self.dropout.training.is_enabled()
    }

    /// FLOPs for `rows` positions: both linear layers and GELU; the hidden layer is kept before
    /// and after GELU for the backward pass. A split MLP states the whole one's.
    pub fn cost(&self, rows: usize) -> ModelCost {
        let [d, ff] = self.up.weight.dims();
        let ff = ff * self.split.map_or(1, |s| s.ranks);
        let flops = linear_flops(rows, d, ff, true)
            + GELU_FLOPS * (rows * ff) as f64
            + linear_flops(rows, ff, d, true);
        ModelCost::layer(flops, 2.0 * (rows * ff) as f64)
    }

    /// # Shapes
    /// - x: `[B, N, d]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let x = tensor_parallel::enter(self.split, x);
        let h = eft_kernels::gelu(dense::apply(&self.up, x)); // [B, N, d_ff / ranks]
        let columns = self.split.map(|s| s.columns(h.dims()[2]));
        let h = dropout::apply_columns(&self.dropout, h, columns);
        match self.split {
            None => dense::apply(&self.down, h),
            Some(_) => tensor_parallel::row_parallel(&self.down, h),
        }
    }
}
