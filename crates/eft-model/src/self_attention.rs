//! Multi-head self-attention: projections around a pluggable mechanism.

use burn::module::{Module, Param, ParamId};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Tensor, TensorData};
use eft_attention::{
    Attention, AttentionCache, AttentionCost, AttentionInput, AttentionShape, Memory, select_param,
};

use crate::tensor_parallel::{self, TensorSplit};
use crate::{ModelCost, dense, linear_flops};

use crate::ModelConfig;

/// Remembered hidden states `[B, M, d]` and their padding `[B, M]` (Transformer-XL memory).
pub type StateMemory = (Tensor<3>, Option<Tensor<2, Bool>>);

/// Projects to heads, runs the configured mechanism, merges heads and projects back.
///
/// Q/K/V projections have no bias (as in LRA); the output projection has one. A head-pruned
/// layer (`model.kept_heads`) has fewer heads of the same dimension, so its projections are
/// narrower than the residual stream.
#[derive(Module, Debug)]
pub struct SelfAttention {
    query: Linear,
    key: Linear,
    value: Linear,
    output: Linear,
    mechanism: Attention,
    n_heads: usize,
    head_dim: usize,
    causal: bool,
    /// Multipliers of the heads' outputs (Michel et al. 2019's gates `ξ_h`), present only while
    /// head importance is measured: `|∂L/∂ξ_h|` at `ξ = 1` ranks the heads.
    gate: Option<Param<Tensor<1>>>,
    /// The block of heads this rank holds under tensor parallelism; `None`: all of them.
    #[module(skip)]
    split: Option<TensorSplit>,
    /// The mechanism's parameters all heads share, whose gradients the ranks sum when split.
    #[module(skip)]
    head_shared: Vec<ParamId>,
}

impl SelfAttention {
    /// Builds the layer at depth `layer` (counting from 0) for up to `max_len` positions.
    pub fn new(config: &ModelConfig, layer: usize, max_len: usize, device: &Device) -> Self {
        let d = config.d_model;
        let (n_heads, head_dim) = (config.heads_at(layer), d / config.n_heads);
        let inner = n_heads * head_dim;
        let linear = |(from, to), bias| {
            LinearConfig::new(from, to)
                .with_bias(bias)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            query: linear((d, inner), false),
            key: linear((d, inner), false),
            value: linear((d, inner), false),
            output: linear((inner, d), true),
            mechanism: config
                .attention_at(layer)
                .init(config.layout(layer, max_len), device),
            n_heads,
            head_dim,
            causal: config.causal,
            gate: None,
            split: None,
            head_shared: Vec::new(),
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
            let states = tensor_parallel::enter(self.split, states);
            input = input.with_memory(Memory {
                k: self.heads(&self.key, &states),
                v: self.heads(&self.value, &states),
                padding,
            });
        }
        self.merge(self.mechanism.forward(input))
    }

    /// [`SelfAttention::forward`], also returning what the mechanism was given (from the one
    /// projection the forward makes), for measuring the mechanism on real activations.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward_capturing(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, AttentionInput) {
        let input = self.project(&x, padding);
        (self.merge(self.mechanism.forward(input.clone())), input)
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

    /// Queries, keys and values of `x` (`[B, N, d]`, already normalised) by head, with the
    /// layer's masks: what the mechanism is given.
    pub fn project(&self, x: &Tensor<3>, padding: Option<Tensor<2, Bool>>) -> AttentionInput {
        let x = &tensor_parallel::enter(self.split, x.clone());
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
        let [batch, n, _] = x.dims();
        dense::apply(proj, x.clone())
            .reshape([batch, n, self.n_heads, self.head_dim])
            .swap_dims(1, 2)
    }

    /// Heads merged and projected back: `[B, H, N, D]` → `[B, N, d]`.
    fn merge(&self, out: Tensor<4>) -> Tensor<3> {
        let [batch, heads, len, dim] = out.dims();
        let out = match &self.gate {
            Some(gate) => out * gate.val().reshape([1, heads, 1, 1]),
            None => out,
        };
        let out = out.swap_dims(1, 2).reshape([batch, len, heads * dim]);
        match self.split {
            None => dense::apply(&self.output, out),
            Some(_) => tensor_parallel::row_parallel(&self.output, out),
        }
    }

    /// The layer's part on one of `split.ranks` ranks: its block of heads, as [`Self::keep_heads`]
    /// cuts them, the output summed over the ranks before the bias.
    pub(crate) fn split(self, split: TensorSplit) -> Self {
        let kept: Vec<usize> = split.block(self.n_heads).collect();
        let whole = tensor_parallel::param_shapes(&self.mechanism);
        let mut layer = self.keep_heads(&kept);
        // What keeping heads did not shrink is shared by every head.
        layer.head_shared = tensor_parallel::param_shapes(&layer.mechanism)
            .into_iter()
            .filter(|(id, shape)| whole.get(id) == Some(shape))
            .map(|(id, _)| id)
            .collect();
        layer.split = Some(split);
        layer
    }

    /// The block of heads this rank holds, if the layer is split.
    pub fn tensor_split(&self) -> Option<TensorSplit> {
        self.split
    }

    /// The mechanism's parameters shared by all heads, if the layer is split (see
    /// [`crate::Classifier::rank_partial_params`]).
    pub(crate) fn head_shared(&self) -> &[ParamId] {
        &self.head_shared
    }

    /// Number of heads (on this rank, if the layer is split).
    pub fn heads_count(&self) -> usize {
        self.n_heads
    }

    /// Ranks the layer is split over (1 when whole).
    fn ranks(&self) -> usize {
        self.split.map_or(1, |s| s.ranks)
    }

    /// The layer with only heads `kept` (ascending indices into its heads): the Q/K/V columns
    /// and output rows of the other heads are cut out, and the mechanism keeps its kept heads'
    /// parameters ([`Attention::keep_heads`]). Equals this layer with the other heads' outputs
    /// set to zero.
    pub fn keep_heads(self, kept: &[usize]) -> Self {
        let dims: Vec<usize> = kept
            .iter()
            .flat_map(|&h| h * self.head_dim..(h + 1) * self.head_dim)
            .collect();
        let columns = |mut l: Linear| {
            l.weight = select_param(l.weight, 1, &dims);
            l
        };
        let mut output = self.output;
        output.weight = select_param(output.weight, 0, &dims);
        Self {
            query: columns(self.query),
            key: columns(self.key),
            value: columns(self.value),
            output,
            mechanism: self.mechanism.keep_heads(kept),
            n_heads: kept.len(),
            gate: self.gate.map(|g| select_param(g, 0, kept)),
            ..self
        }
    }

    /// The layer with its heads' outputs multiplied by `gate` (one value per head), a trained
    /// parameter whose gradient [`SelfAttention::gate_gradient`] reads; `None` removes the gates.
    pub fn with_gate(mut self, gate: Option<&[f32]>) -> Self {
        let device = self.query.weight.device();
        self.gate = gate.map(|g| {
            let values = TensorData::new(g.to_vec(), [g.len()]);
            Param::from_tensor(Tensor::<1>::from_data(values, &device).require_grad())
        });
        self
    }

    /// The gates' gradient in `grads`, one value per head (`None` without gates).
    pub fn gate_gradient(&self, grads: &burn::optim::GradientsParams) -> Option<Vec<f32>> {
        let gate = self.gate.as_ref()?;
        let grad = grads.get::<1>(gate.id)?;
        grad.into_data().try_to_vec::<f32>().ok()
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
    /// the merged heads kept for the backward pass) plus the mechanism's own cost. A split layer
    /// states the whole layer's, which its ranks share.
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let [d, inner] = self.query.weight.dims();
        let inner = inner * self.ranks();
        let rows = batch * len;
        let projections =
            3.0 * linear_flops(rows, d, inner, false) + linear_flops(rows, inner, d, true);
        ModelCost::layer(projections, 4.0 * (rows * inner) as f64)
            + ModelCost::attention(self.attention_cost(batch, len))
    }

    /// The mechanism's analytic cost for a `[batch, len]` input (all heads of a split layer).
    pub fn attention_cost(&self, batch: usize, len: usize) -> AttentionCost {
        self.mechanism.cost(AttentionShape {
            batch,
            heads: self.n_heads * self.ranks(),
            len,
            head_dim: self.head_dim,
        })
    }
}
