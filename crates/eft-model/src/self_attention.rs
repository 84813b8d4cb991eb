//! Multi-head self-attention: projections around a pluggable mechanism.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor};
use eft_attention::{
    Attention, AttentionCache, AttentionCost, AttentionInput, AttentionShape, Memory,
};

use crate::{ModelCost, dense, linear_flops};

use crate::ModelConfig;

/// Remembered hidden states `[B, M, d]` and their padding `[B, M]` (Transformer-XL memory).
pub type StateMemory = (Tensor<3>, Option<Tensor<2, Bool>>);

/// Projects to heads, runs the configured mechanism, merges heads and projects back.
///
/// Q/K/V projections have no bias (as in LRA); the output projection has one.
#[derive(Module, Debug)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    mechanism: Attention,
    n_heads: usize,
    causal: bool,
}

impl SelfAttention {
    /// Builds the layer at depth `layer` (counting from 0) for up to `max_len` positions.
    pub fn new(config: &ModelConfig, layer: usize, max_len: usize, device: &Device) -> Self {
        let d = config.d_model;
        let linear = |bias| {
            LinearConfig::new(d, d)
                .with_bias(bias)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            query: linear(false),
            key: linear(false),
            value: linear(false),
            output: linear(true),
            mechanism: config
                .attention_at(layer)
                .init(config.layout(layer, max_len), device),
            n_heads: config.n_heads,
            causal: config.causal,
        }
    }

    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]`, `true` at padding
    /// - output: `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_with_memory(x, padding, None)
    }

    /// Like [`SelfAttention::forward`], with remembered (already normalised) states whose keys
    /// and values the queries also see; only `xl` layers take memory.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]`; memory: `[B, M, d]` and its padding `[B, M]`
    /// - output: `[B, N, d]`
    pub fn forward_with_memory(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        memory: Option<StateMemory>,
    ) -> Tensor<3> {
        let mut input = self.project(&x, padding);
        if let Some((states, padding)) = memory {
            input = input.with_memory(Memory {
                k: self.heads(&self.key, &states),
                v: self.heads(&self.value, &states),
                padding,
            });
        }
        self.merge(self.mechanism.forward(input))
    }

    /// Attends a causal chunk of positions `start..` to the earlier positions that `cache`
    /// holds (see [`Attention::decode`]), updating it.
    ///
    /// # Shapes
    /// - x: `[B, n, d]`; padding: `[B, n]` → `[B, n, d]`
    pub fn decode(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
        cache: &mut AttentionCache,
        start: usize,
    ) -> Tensor<3> {
        let input = self.project(&x, Some(padding));
        self.merge(self.mechanism.decode(cache, input, start))
    }

    /// Queries, keys and values of `x` (`[B, N, d]`) by head, with the layer's masks.
    fn project(&self, x: &Tensor<3>, padding: Option<Tensor<2, Bool>>) -> AttentionInput {
        let mut input = AttentionInput::new(
            self.heads(&self.query, x),
            self.heads(&self.key, x),
            self.heads(&self.value, x),
        )
        .with_causal(self.causal);
        input.key_padding = padding;
        input
    }

    /// `proj(x)` split into heads: `[B, N, d]` → `[B, H, N, D]`.
    fn heads(&self, proj: &Linear, x: &Tensor<3>) -> Tensor<4> {
        let [batch, n, d_model] = x.dims();
        dense::apply(proj, x.clone())
            .reshape([batch, n, self.n_heads, d_model / self.n_heads])
            .swap_dims(1, 2)
    }

    /// Heads merged and projected back: `[B, H, N, D]` → `[B, N, d]`.
    fn merge(&self, out: Tensor<4>) -> Tensor<3> {
        let [batch, heads, len, dim] = out.dims();
        let out = out.swap_dims(1, 2).reshape([batch, len, heads * dim]);
        dense::apply(&self.output, out)
    }

    /// Number of heads.
    pub fn heads_count(&self) -> usize {
        self.n_heads
    }

    /// Whether queries only see earlier keys.
    pub fn causal(&self) -> bool {
        self.causal
    }

    /// The layer as it should be at training step `step` (see [`Attention::at_step`]).
    pub fn at_step(mut self, step: usize) -> Self {
        self.mechanism = self.mechanism.at_step(step);
        self
    }

    /// The layer running on the parameter its encoder shares across layers (Linformer's
    /// layerwise projection).
    pub fn with_layer_shared(mut self, shared: burn::module::Param<Tensor<3>>) -> Self {
        self.mechanism = self.mechanism.with_layer_shared(shared);
        self
    }

    /// The mechanism this layer runs.
    pub fn mechanism(&self) -> &Attention {
        &self.mechanism
    }

    /// The layer's cost for a `[batch, len]` input: the Q/K/V and output projections (Q, K, V and
    /// the merged heads kept for the backward pass) plus the mechanism's own cost.
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let d = self.query.weight.dims()[0];
        let rows = batch * len;
        let projections = 3.0 * linear_flops(rows, d, d, false) + linear_flops(rows, d, d, true);
        ModelCost::layer(projections, 4.0 * (rows * d) as f64)
            + ModelCost::attention(self.attention_cost(batch, len, d))
    }

    /// The mechanism's analytic cost for a `[batch, len]` input.
    pub fn attention_cost(&self, batch: usize, len: usize, d_model: usize) -> AttentionCost {
        self.mechanism.cost(AttentionShape {
            batch,
            heads: self.n_heads,
            len,
            head_dim: d_model / self.n_heads,
        })
    }
}
