//! The position-wise MLP of a block: Linear → GELU → dropout → Linear.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Gelu, Initializer, Linear, LinearConfig};
use burn::tensor::{Device, Tensor};

use crate::ModelConfig;

/// `W₂·dropout(GELU(W₁x + b₁)) + b₂`, hidden width `d_ff`.
#[derive(Module, Debug)]
pub struct FeedForward {
    up: Linear,
    down: Linear,
    activation: Gelu,
    dropout: Dropout,
}

impl FeedForward {
    /// Builds the MLP for `config`.
    pub fn new(config: &ModelConfig, device: &Device) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            up: linear(config.d_model, config.d_ff),
            down: linear(config.d_ff, config.d_model),
            activation: Gelu::new(),
            dropout: DropoutConfig::new(config.dropout).init(),
        }
    }

    /// Hidden width.
    pub fn width(&self) -> usize {
        self.up.weight.dims()[1]
    }

    /// # Shapes
    /// - x: `[B, N, d]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let h = self.activation.forward(self.up.forward(x)); // [B, N, d_ff]
        self.down.forward(self.dropout.forward(h))
    }
}
