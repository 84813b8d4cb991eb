//! The stack of blocks and the final LayerNorm.

use burn::module::Module;
use burn::nn::{LayerNorm, LayerNormConfig};
use burn::tensor::{Bool, Device, Tensor};

use crate::{Block, ModelConfig};

/// `n_layers` blocks applied in order, then a LayerNorm.
///
/// [`Encoder::layer`] runs one depth at a time, so callers that stop early (per-layer exits) or
/// reuse a block at several depths (sharing) drive the same blocks without a second code path.
#[derive(Module, Debug)]
pub struct Encoder {
    blocks: Vec<Block>,
    final_norm: LayerNorm,
}

impl Encoder {
    /// Builds the blocks for `config`, for sequences of up to `max_len` positions.
    pub fn new(config: &ModelConfig, max_len: usize, device: &Device) -> Self {
        Self {
            blocks: (0..config.n_layers)
                .map(|layer| Block::new(config, layer, max_len, device))
                .collect(),
            final_norm: LayerNormConfig::new(config.d_model)
                .with_epsilon(1e-6)
                .init(device),
        }
    }

    /// Number of layers.
    pub fn depth(&self) -> usize {
        self.blocks.len()
    }

    /// The block at `depth`.
    pub fn block(&self, depth: usize) -> &Block {
        &self.blocks[depth]
    }

    /// Applies layer `depth` (counting from 0).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn layer(&self, depth: usize, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.blocks[depth].forward(x, padding)
    }

    /// The final LayerNorm.
    pub fn finish(&self, x: Tensor<3>) -> Tensor<3> {
        self.final_norm.forward(x)
    }

    /// Every layer, then the final LayerNorm.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        let x = (0..self.depth()).fold(x, |x, depth| self.layer(depth, x, padding.clone()));
        self.finish(x)
    }
}
