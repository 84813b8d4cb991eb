//! The position-wise MLP of a block: Linear → GELU → dropout → Linear.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use serde::{Deserialize, Serialize};

use crate::{GELU_FLOPS, ModelConfig, ModelCost, linear_flops};
use crate::{dense, dropout};

/// The feed-forward branch of every block. TOML: `model.feed_forward = { kind = "dense" }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum FeedForwardConfig {
    /// Linear → GELU → dropout → Linear with hidden width `model.d_ff` (LRA's MLP).
    #[default]
    Dense,
}

/// `W₂·dropout(GELU(W₁x + b₁)) + b₂`, hidden width `d_ff`.
#[derive(Module, Debug)]
pub struct FeedForward {
    up: Linear,
    down: Linear,
    dropout: Dropout,
}

impl FeedForward {
    /// Builds the feed-forward branch `config.feed_forward` names.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        match config.feed_forward {
            FeedForwardConfig::Dense => Self::dense(config, device),
        }
    }

    /// The MLP of width `config.d_ff`.
    fn dense(config: &ModelConfig, device: &Device) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            up: linear(config.d_model, config.d_ff),
            down: linear(config.d_ff, config.d_model),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// FLOPs for `rows` positions: both linear layers and GELU; the hidden layer is kept before
    /// and after GELU for the backward pass.
    pub fn cost(&self, rows: usize) -> ModelCost {
        let [d, ff] = self.up.weight.dims();
        let flops = linear_flops(rows, d, ff, true)
            + GELU_FLOPS * (rows * ff) as f64
            + linear_flops(rows, ff, d, true);
        ModelCost::layer(flops, 2.0 * (rows * ff) as f64)
    }

    /// # Shapes
    /// - x: `[B, N, d]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = eft_kernels::gelu(dense::apply(&self.up, x)); // [B, N, d_ff]
        dense::apply(&self.down, dropout::apply(&self.dropout, h))
    }
}
