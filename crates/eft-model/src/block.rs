//! One transformer block, assembled from its parts and exposed as its two residual branches.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, LayerNorm};
use std::ops::Range;

use burn::tensor::{Bool, Device, Tensor, s};

use crate::dropout;
use crate::norm::{new_norm, normalise};
use crate::{
    FeedForward, ModelConfig, ModelCost, Residual, SelfAttention, StateMemory, Switch,
    SwitchReport, layer_norm_flops,
};

/// A block assembled from parts: an attention branch `f = dropout∘attention∘norm` (any mechanism),
/// a feed-forward branch `g = dropout∘feed_forward∘norm` ([`crate::FeedForwardConfig`]) and a
/// residual form joining them ([`Residual`]; pre-LN: `y = x + f(x)`, `z = y + g(y)`).
///
/// The branches are public so other residual forms can reuse them: a reversible block computes
/// `y₁ = x₁ + f(x₂)`, `y₂ = x₂ + g(y₁)` from the very same `f` and `g`.
#[derive(Module, Debug)]
pub struct Block {
    attention_norm: LayerNorm,
    attention: SelfAttention,
    feed_forward_norm: LayerNorm,
    /// The dense MLP, or none where the block is a Switch layer (the field keeps its checkpoint
    /// names either way: `Option` adds no path segment).
    feed_forward: Option<FeedForward>,
    switch: Option<Switch>,
    dropout: Dropout,
    #[module(skip)]
    residual: Residual,
    /// Positions per piece of the feed-forward branch (`model.ffn_chunk`), if it is split.
    #[module(skip)]
    ffn_chunk: Option<usize>,
}

impl Block {
    /// Builds block `layer` (counting from 0). Its branches run at the residual form's branch
    /// width (half of `d_model` for reversible blocks).
    pub fn new(config: &ModelConfig, layer: usize, max_len: usize, device: &Device) -> Self {
        let branch = ModelConfig {
            d_model: config.residual.branch_width(config.d_model),
            ..config.clone()
        };
        let norm = || new_norm(branch.d_model, device);
        Self {
            attention_norm: norm(),
            attention: SelfAttention::new(&branch, layer, max_len, device),
            feed_forward_norm: norm(),
            feed_forward: config
                .feed_forward
                .switch_at(layer)
                .is_none()
                .then(|| FeedForward::dense(&branch, device)),
            switch: config
                .feed_forward
                .switch_at(layer)
                .map(|s| Switch::new(&branch, s, device)),
            dropout: DropoutConfig::new(config.dropout).init(),
            residual: config.residual,
            ffn_chunk: config.ffn_chunk,
        }
    }

    /// The attention branch `f(x)`.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn attention_branch(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.attention_branch_with_memory(x, padding, None)
    }

    /// The attention branch when attention also sees remembered states (Transformer-XL):
    /// `memory` holds earlier inputs of this block, normalised here like `x`.
    pub fn attention_branch_with_memory(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        memory: Option<StateMemory>,
    ) -> Tensor<3> {
        let memory = memory.map(|(m, p)| (normalise(&self.attention_norm, m), p));
        let h =
            self.attention
                .forward_with_memory(normalise(&self.attention_norm, x), padding, memory);
        dropout::apply(&self.dropout, h)
    }

    /// The residual form with attention decoding a causal chunk at positions `start..` against
    /// `cache` (see [`SelfAttention::decode`]).
    ///
    /// # Shapes
    /// - x: `[B, n, d]`; padding: `[B, n]` → `[B, n, d]`
    pub fn decode(
        &self,
        x: Tensor<3>,
        padding: Tensor<2, Bool>,
        cache: &mut eft_attention::AttentionCache,
        start: usize,
    ) -> Tensor<3> {
        self.residual.apply(
            x,
            |x| {
                let x = normalise(&self.attention_norm, x);
                dropout::apply(
                    &self.dropout,
                    self.attention.decode(x, padding, cache, start),
                )
            },
            |y| self.feed_forward_branch(y),
        )
    }

    /// Whether the feed-forward part is a Switch layer.
    pub fn is_switch(&self) -> bool {
        self.switch.is_some()
    }

    /// The feed-forward branch `g(x)`, applied to each piece of `model.ffn_chunk` positions in
    /// turn when the config splits it (each piece draws its own dropout masks, in order).
    ///
    /// # Shapes
    /// - x: `[B, N, d]` → `[B, N, d]`
    pub fn feed_forward_branch(&self, x: Tensor<3>) -> Tensor<3> {
        let len = x.dims()[1];
        // The usual case, whole, without building a list of pieces on every call.
        if self.ffn_chunk.is_none_or(|c| c >= len) {
            return self.feed_forward_piece(x);
        }
        let outputs = self
            .feed_forward_pieces(len)
            .into_iter()
            .map(|r| self.feed_forward_piece(x.clone().slice(s![.., r, ..])))
            .collect();
        Tensor::cat(outputs, 1)
    }

    /// The position ranges the feed-forward branch is applied to one at a time: the whole
    /// sequence, or pieces of `model.ffn_chunk` positions.
    pub fn feed_forward_pieces(&self, len: usize) -> Vec<Range<usize>> {
        let chunk = self.ffn_chunk.unwrap_or(len).max(1);
        (0..len)
            .step_by(chunk)
            .map(|start| start..(start + chunk).min(len))
            .collect()
    }

    /// The feed-forward branch on one piece of positions (it acts on each position alone).
    /// A Switch layer's report is dropped here: the passes that call this (chunked, rebuilt)
    /// are refused for Switch layers by the config's validation.
    ///
    /// # Shapes
    /// - x: `[B, n, d]` → `[B, n, d]`
    pub fn feed_forward_piece(&self, x: Tensor<3>) -> Tensor<3> {
        self.feed_forward_reporting(x, None).0
    }

    /// The feed-forward branch on all positions, with the Switch layer's report if the block
    /// has one; padding positions are not routed.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn feed_forward_reporting(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Option<SwitchReport>) {
        let x = normalise(&self.feed_forward_norm, x);
        let (h, report) = match (&self.feed_forward, &self.switch) {
            (Some(mlp), _) => (mlp.forward(x), None),
            (None, Some(switch)) => {
                let (h, report) = switch.forward(x, padding);
                (h, Some(report))
            }
            (None, None) => unreachable!("a block is built with one feed-forward branch"),
        };
        (dropout::apply(&self.dropout, h), report)
    }

    /// The block's residual form over its two branches (pre-LN: `x + f(x)`, then `+ g(·)`).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_with_memory(x, padding, None)
    }

    /// The residual form with remembered states for attention (see
    /// [`Block::attention_branch_with_memory`]).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]`; memory: `[B, M, d]`, `[B, M]` → `[B, N, d]`
    pub fn forward_with_memory(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        memory: Option<StateMemory>,
    ) -> Tensor<3> {
        self.run(x, padding, memory, None).0
    }

    /// [`Block::forward`], also returning what this block's mechanism was given in it: the
    /// queries, keys and values by head and the masks, of the branch input the residual form
    /// chose (half the channels under the reversible coupling).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward_capturing(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, eft_attention::AttentionInput) {
        let mut input = None;
        let (out, _) = self.run(x, padding, None, Some(&mut input));
        (
            out,
            input.expect("the residual form runs the attention branch"),
        )
    }

    /// The residual form, with what a Switch feed-forward layer reports (padding positions are
    /// not routed). A dense block reports nothing.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward_reporting(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, Option<SwitchReport>) {
        self.run(x, padding, None, None)
    }

    /// The residual form; `capture`, when given, receives the mechanism's input (a block with
    /// memory is never captured: the fidelity measurement skips recurrent stacks).
    fn run(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        memory: Option<StateMemory>,
        capture: Option<&mut Option<eft_attention::AttentionInput>>,
    ) -> (Tensor<3>, Option<SwitchReport>) {
        let mut report = None;
        let out = self.residual.apply(
            x,
            |x| match capture {
                None => self.attention_branch_with_memory(x, padding.clone(), memory),
                Some(slot) => {
                    let x = normalise(&self.attention_norm, x);
                    let (h, input) = self.attention.forward_capturing(x, padding.clone());
                    *slot = Some(input);
                    dropout::apply(&self.dropout, h)
                }
            },
            |y| match self.switch {
                None => self.feed_forward_branch(y),
                Some(_) => {
                    let (out, r) = self.feed_forward_reporting(y, padding.clone());
                    report = r;
                    out
                }
            },
        );
        (out, report)
    }

    /// The block as it should be at training step `step` (Performer redraws its features).
    pub fn at_step(mut self, step: usize) -> Self {
        self.attention = self.attention.at_step(step);
        self
    }

    /// The block's cost for a `[batch, len]` input: its two LayerNorms (inputs kept) and residual
    /// additions, plus what its attention and feed-forward parts state (all at branch width).
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let rows = batch * len;
        let d = self.attention_norm.gamma.dims()[0];
        let own = 2.0 * layer_norm_flops(rows, d) + 2.0 * (rows * d) as f64;
        ModelCost::layer(own, 2.0 * (rows * d) as f64)
            + self.attention.cost(batch, len)
            + self.feed_forward_cost(rows)
    }

    /// The feed-forward part's analytic cost for `rows` positions (a Switch layer's counts one
    /// expert per position).
    pub fn feed_forward_cost(&self, rows: usize) -> ModelCost {
        match (&self.feed_forward, &self.switch) {
            (Some(mlp), _) => mlp.cost(rows),
            (_, Some(switch)) => switch.cost(rows),
            (None, None) => ModelCost::default(),
        }
    }

    /// The block running on the parameter its encoder shares across layers (Linformer's
    /// layerwise projection).
    pub fn with_layer_shared(mut self, shared: burn::module::Param<Tensor<3>>) -> Self {
        self.attention = self.attention.with_layer_shared(shared);
        self
    }

    /// The block with its attention sub-layer replaced by `f` of it (head pruning, gates).
    pub fn map_attention(mut self, f: impl FnOnce(SelfAttention) -> SelfAttention) -> Self {
        self.attention = f(self.attention);
        self
    }

    /// The block's part on one rank of a tensor-parallel split (attention heads and MLP
    /// columns; norms whole). Switch blocks are refused by the config before this.
    pub(crate) fn split(mut self, split: crate::tensor_parallel::TensorSplit) -> Self {
        self.attention = self.attention.split(split);
        self.feed_forward = self.feed_forward.map(|f| f.split(split));
        self
    }

    /// The attention sub-layer, for cost accounting.
    pub fn self_attention(&self) -> &SelfAttention {
        &self.attention
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::Distribution;
    use eft_attention::testing::to_f64;

    /// The capture is the projection of what the residual form feeds the attention branch (every
    /// channel pre-LN, the second half under the reversible coupling), and the capturing
    /// forward's output is the plain forward's.
    #[test]
    fn the_capture_is_what_the_attention_branch_reads() {
        let device = Device::flex();
        for residual in [Residual::PreNorm, Residual::Reversible] {
            device.seed(3);
            let config = ModelConfig {
                residual,
                ..crate::config::tests::small()
            };
            let block = Block::new(&config, 0, 10, &device);
            let x = Tensor::<3>::random([2, 10, 16], Distribution::Normal(0.0, 1.0), &device);
            let (out, input) = block.forward_capturing(x.clone(), None);
            assert_eq!(to_f64(out), to_f64(block.forward(x.clone(), None)));
            let project = |channels: Tensor<3>| {
                block
                    .attention
                    .project(&normalise(&block.attention_norm, channels), None)
            };
            let (read, other) = match residual {
                Residual::PreNorm => (x.clone(), None),
                Residual::Reversible => (
                    x.clone().slice(s![.., .., 8..16]),
                    Some(x.clone().slice(s![.., .., 0..8])),
                ),
            };
            let expected = project(read);
            assert_eq!(to_f64(input.q), to_f64(expected.q.clone()), "{residual:?}");
            assert_eq!(to_f64(input.v), to_f64(expected.v), "{residual:?}");
            // The other half gives other queries: the comparison can tell the halves apart.
            if let Some(other) = other {
                assert_ne!(to_f64(project(other).q), to_f64(expected.q));
            }
        }
    }
}
