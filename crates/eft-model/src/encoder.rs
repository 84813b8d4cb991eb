//! The stack of blocks and the final LayerNorm.

use std::borrow::Cow;

use burn::module::{Module, Param};
use burn::nn::LayerNorm;
use burn::tensor::{Bool, Device, Int, Tensor, s};

use eft_attention::Recurrence;

use crate::norm::{new_norm, normalise};
use crate::{
    Act, ActReport, Block, DepthConfig, ModelConfig, ModelCost, SwitchReport, layer_norm_flops,
};

/// `n_layers` blocks applied in order, then a LayerNorm.
///
/// [`Encoder::layer`] runs one depth at a time, so callers that stop early (per-layer exits) or
/// reuse a block at several depths (sharing) drive the same blocks without a second code path.
#[derive(Module, Debug)]
pub struct Encoder {
    /// The distinct blocks; depths that share one run the same module.
    blocks: Vec<Block>,
    final_norm: LayerNorm,
    /// Which block each depth runs.
    #[module(skip)]
    order: Vec<usize>,
    /// A parameter every layer's mechanism uses, lent to each block as it runs (Linformer's
    /// layerwise projection): one tensor, its gradient summed over the layers.
    layer_shared: Option<Param<Tensor<3>>>,
    /// The halting unit and step embeddings when the stack is applied recurrently
    /// (`model.depth = { kind = "act" }`).
    act: Option<Act>,
}

/// What the encoder's conditional parts did in one forward pass.
#[derive(Debug, Clone, Default)]
pub struct EncoderReport {
    /// One entry per depth, `None` for a dense layer.
    pub switch: Vec<Option<SwitchReport>>,
    /// The recurrence's halting, under adaptive computation time.
    pub act: Option<ActReport>,
}

impl Encoder {
    /// Builds the blocks for `config`, for sequences of up to `max_len` positions.
    pub fn new(config: &ModelConfig, max_len: usize, device: &Device) -> Self {
        let n = config.n_layers;
        Self {
            // Each block is built with the layout of the first depth that runs it.
            blocks: (0..n)
                .filter(|&depth| config.share.owns(depth, n))
                .map(|depth| Block::new(config, depth, max_len, device))
                .collect(),
            final_norm: new_norm(config.d_model, device),
            order: (0..n)
                .map(|depth| config.share.block_at(depth, n))
                .collect(),
            layer_shared: config
                .layer_mechanisms()
                .find_map(|a| a.layer_shared(config.layout(0, max_len), device)),
            act: match &config.depth {
                DepthConfig::Fixed => None,
                DepthConfig::Act(act) => Some(Act::new(config, act, device)),
            },
        }
    }

    /// The encoder as it should be at training step `step` (Performer redraws its features).
    pub fn at_step(mut self, step: usize) -> Self {
        self.blocks = self.blocks.into_iter().map(|b| b.at_step(step)).collect();
        self
    }

    /// The encoder with each block's attention sub-layer replaced by `f(block index, layer)`; the
    /// index is the depth where no depths share a block.
    pub fn map_attention(
        mut self,
        mut f: impl FnMut(usize, crate::SelfAttention) -> crate::SelfAttention,
    ) -> Self {
        self.blocks = (self.blocks.into_iter().enumerate())
            .map(|(i, b)| b.map_attention(|a| f(i, a)))
            .collect();
        self
    }

    /// The encoder with each distinct block replaced by `f` of it.
    pub(crate) fn map_blocks(mut self, f: impl FnMut(Block) -> Block) -> Self {
        self.blocks = self.blocks.into_iter().map(f).collect();
        self
    }

    /// See [`crate::Classifier::rank_partial_params`]: the split layers' head-shared mechanism
    /// parameters and, when any layer is split, the layerwise-shared one.
    pub(crate) fn rank_partial_params(&self) -> Vec<burn::module::ParamId> {
        let split = self.attention_layers().any(|a| a.tensor_split().is_some());
        let mut ids: Vec<_> = self
            .attention_layers()
            .flat_map(|a| a.head_shared().iter().copied())
            .collect();
        ids.extend(self.layer_shared.as_ref().filter(|_| split).map(|p| p.id));
        ids
    }

    /// Each distinct block's attention sub-layer, in block order.
    pub fn attention_layers(&self) -> impl Iterator<Item = &crate::SelfAttention> {
        self.blocks.iter().map(Block::self_attention)
    }

    /// Width `d` of the residual stream.
    pub fn width(&self) -> usize {
        self.final_norm.gamma.dims()[0]
    }

    /// Number of layers.
    pub fn depth(&self) -> usize {
        self.order.len()
    }

    /// The block run at `depth` (the same module at every depth that shares it), holding the
    /// parameter the encoder shares across layers if there is one.
    pub fn block(&self, depth: usize) -> Cow<'_, Block> {
        let block = &self.blocks[self.order[depth]];
        match &self.layer_shared {
            None => Cow::Borrowed(block),
            Some(shared) => Cow::Owned(block.clone().with_layer_shared(shared.clone())),
        }
    }

    /// Applies layer `depth` (counting from 0).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn layer(&self, depth: usize, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.block(depth).forward(x, padding)
    }

    /// Each depth's attention input on `x` (see [`Block::forward_capturing`]), in depth order;
    /// `None` under segment recurrence or adaptive computation time, whose layers see other
    /// inputs (segments with memory, repeated steps).
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]`
    pub fn attention_inputs(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> Option<Vec<eft_attention::AttentionInput>> {
        if self.recurrence().is_some() || self.adaptive() {
            return None;
        }
        let mut x = x;
        let mut inputs = Vec::with_capacity(self.depth());
        for depth in 0..self.depth() {
            let (next, input) = self.block(depth).forward_capturing(x, padding.clone());
            inputs.push(input);
            x = next;
        }
        Some(inputs)
    }

    /// Whether the stack is applied recurrently with adaptive computation time.
    pub fn adaptive(&self) -> bool {
        self.act.is_some()
    }

    /// Every block's cost plus the final LayerNorm's (its input kept), for `[batch, len]`;
    /// under adaptive computation time, `max_steps` steps of the stack and the halting.
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let rows = batch * len;
        let d = self.final_norm.gamma.dims()[0];
        let steps = self.act.as_ref().map_or(1, Act::max_steps);
        let step: ModelCost = (0..steps).map(|_| self.step_cost(batch, len)).sum();
        step + ModelCost::layer(layer_norm_flops(rows, d), (rows * d) as f64)
    }

    /// One pass of the stack: every depth runs (and keeps activations for) its block, shared or
    /// not, plus the halting's own cost under adaptive computation time.
    fn step_cost(&self, batch: usize, len: usize) -> ModelCost {
        let blocks: ModelCost = (0..self.depth())
            .map(|depth| self.block(depth).cost(batch, len))
            .sum();
        match &self.act {
            None => blocks,
            Some(act) => blocks + act.step_cost(batch * len),
        }
    }

    /// The final LayerNorm.
    pub fn finish(&self, x: Tensor<3>) -> Tensor<3> {
        normalise(&self.final_norm, x)
    }

    /// The segment recurrence the layers run under, if any layer recurs (the model config makes
    /// every layer agree).
    pub fn recurrence(&self) -> Option<Recurrence> {
        self.blocks
            .iter()
            .find_map(|b| b.self_attention().mechanism().recurrence())
    }

    /// Every layer, then the final LayerNorm. Under segment recurrence the sequence is processed
    /// one segment at a time, each layer remembering (without gradient) its last inputs.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward(&self, x: Tensor<3>, padding: Option<Tensor<2, Bool>>) -> Tensor<3> {
        self.forward_reporting(x, padding).0
    }

    /// [`Encoder::forward`], with what its conditional parts report: each layer's Switch
    /// feed-forward (none under segment recurrence or adaptive computation time, which
    /// validation does not let Switch layers run under) and the halting of adaptive computation
    /// time.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn forward_reporting(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
    ) -> (Tensor<3>, EncoderReport) {
        if let Some(r) = self.recurrence() {
            let x = self.recurrent(x, padding, r.segment, r.mem_len);
            return (self.finish(x), EncoderReport::default());
        }
        if let Some(act) = &self.act {
            let [batch, len, _] = x.dims();
            let blocks_flops: f64 = (0..self.depth())
                .map(|depth| self.block(depth).cost(batch, len).forward_flops)
                .sum();
            let stack = |h: Tensor<3>, pad: Tensor<2, Bool>| {
                (0..self.depth()).fold(h, |h, depth| self.layer(depth, h, Some(pad.clone())))
            };
            let (x, report) = act.run(x, padding.clone(), blocks_flops, stack);
            let report = EncoderReport {
                switch: Vec::new(),
                act: Some(report),
            };
            return (self.finish(x), report);
        }
        let mut switch = Vec::with_capacity(self.depth());
        let x = (0..self.depth()).fold(x, |x, depth| {
            let (y, report) = self.block(depth).forward_reporting(x, padding.clone());
            switch.push(report);
            y
        });
        (self.finish(x), EncoderReport { switch, act: None })
    }

    /// Transformer-XL's segment recurrence: segment `s` of every layer attends to that layer's
    /// memory, the last `mem_len` inputs it saw before, which are detached.
    fn recurrent(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        segment: usize,
        mem_len: usize,
    ) -> Tensor<3> {
        let [batch, len, d] = x.dims();
        let device = x.device();
        let padding =
            padding.unwrap_or_else(|| Tensor::<2, Int>::zeros([batch, len], &device).bool());
        let mut memory: Vec<Option<(Tensor<3>, Tensor<2, Bool>)>> = vec![None; self.depth()];
        let mut outputs = Vec::with_capacity(len.div_ceil(segment));
        for start in (0..len).step_by(segment) {
            let end = (start + segment).min(len);
            let mut h = x.clone().slice(s![.., start..end, ..]);
            let pad = padding.clone().slice(s![.., start..end]);
            for (depth, slot) in memory.iter_mut().enumerate() {
                let block = self.block(depth);
                let seen = slot.take();
                let out = block.forward_with_memory(
                    h.clone(),
                    Some(pad.clone()),
                    seen.clone().map(|(m, p)| (m, Some(p))),
                );
                // Keep the last `mem_len` inputs of this layer, old memory first.
                let (states, mask) = match seen {
                    Some((m, p)) => (
                        Tensor::cat(vec![m, h.detach()], 1),
                        Tensor::cat(vec![p, pad.clone()], 1),
                    ),
                    None => (h.detach(), pad.clone()),
                };
                let kept = states.dims()[1];
                let from = kept.saturating_sub(mem_len);
                *slot = (mem_len > 0).then(|| {
                    (
                        states.slice(s![.., from..kept, ..]),
                        mask.slice(s![.., from..kept]),
                    )
                });
                h = out;
            }
            outputs.push(h);
        }
        let out = Tensor::cat(outputs, 1);
        debug_assert_eq!(out.dims(), [batch, len, d]);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Pool;
    use burn::tensor::Distribution;
    use eft_attention::AttentionConfig;
    use eft_attention::testing::to_f64;

    fn xl(segment: Option<usize>) -> ModelConfig {
        let mut params = vec![("mem_len".to_string(), "4".to_string())];
        if let Some(s) = segment {
            params.push(("segment".into(), s.to_string()));
        }
        ModelConfig {
            attention: AttentionConfig::from_name_and_params("xl", &params).unwrap(),
            pool: Pool::Mean,
            ..crate::config::tests::small()
        }
    }

    /// Each depth's captured attention input is what that block's mechanism sees in the forward
    /// pass: depth 1's comes from layer 0's output, not from the embedding; recurring layers
    /// give none.
    #[test]
    fn attention_inputs_follow_the_layers() {
        let device = Device::flex();
        device.seed(2);
        let config = crate::config::tests::small();
        let encoder = Encoder::new(&config, 10, &device);
        let x = Tensor::<3>::random([2, 10, 16], Distribution::Normal(0.0, 1.0), &device);
        let inputs = encoder.attention_inputs(x.clone(), None).unwrap();
        assert_eq!(inputs.len(), encoder.depth());
        let queries = |depth: usize, x: Tensor<3>| {
            to_f64(encoder.block(depth).forward_capturing(x, None).1.q)
        };
        assert_eq!(to_f64(inputs[0].q.clone()), queries(0, x.clone()));
        let after = encoder.layer(0, x.clone(), None);
        assert_eq!(to_f64(inputs[1].q.clone()), queries(1, after));
        assert_ne!(to_f64(inputs[1].q.clone()), queries(1, x.clone()));
        let recurring = Encoder::new(&xl(Some(5)), 10, &device);
        assert!(recurring.attention_inputs(x, None).is_none());
    }

    /// Segment 2 sees segment 1 only through memory, which carries no gradient: the gradient of
    /// segment 2's outputs with respect to segment 1's inputs is exactly zero, while the outputs
    /// do depend on segment 1 (changing it changes them).
    #[test]
    fn memory_is_used_and_receives_no_gradient() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let encoder = Encoder::new(&xl(Some(5)), 10, &device);
        let x = Tensor::<3>::random([2, 10, 16], Distribution::Normal(0.0, 1.0), &device);
        let second = |x: Tensor<3>| encoder.forward(x, None).slice(s![.., 5..10, ..]);
        let x = x.require_grad();
        // Weighted, because the plain sum of layer-normalised rows has zero gradient exactly.
        let w = Tensor::<3>::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device);
        let grads = (second(x.clone()) * w).sum().backward();
        let g = to_f64(x.grad(&grads).unwrap());
        let (first_half, second_half): (Vec<_>, Vec<_>) =
            g.iter().enumerate().partition(|(i, _)| (i / 16) % 10 < 5);
        assert!(
            first_half.iter().all(|(_, v)| **v == 0.0),
            "memory carried a gradient"
        );
        assert!(second_half.iter().any(|(_, v)| **v != 0.0));

        let moved = x.clone().slice_assign(
            s![.., 0..5, ..],
            Tensor::random([2, 5, 16], Distribution::Normal(0.0, 1.0), &device),
        );
        let (a, b) = (to_f64(second(x.inner())), to_f64(second(moved)));
        assert!(
            a.iter().zip(&b).any(|(x, y)| (x - y).abs() > 1e-4),
            "memory was not used"
        );
    }

    /// One segment as long as the input is the plain encoder.
    #[test]
    fn one_segment_is_the_plain_encoder() {
        let device = Device::flex();
        device.seed(2);
        let plain = Encoder::new(&xl(None), 8, &device);
        let x = Tensor::<3>::random([1, 8, 16], Distribution::Normal(0.0, 1.0), &device);
        let reference = to_f64(plain.forward(x.clone(), None));
        let direct = (0..plain.depth()).fold(x.clone(), |h, d| plain.layer(d, h, None));
        eft_attention::testing::assert_close(
            "one segment",
            &reference,
            &to_f64(plain.finish(direct)),
            0.0,
            0.0,
        );
        let segmented = plain.recurrent(x, None, 8, 4);
        eft_attention::testing::assert_close(
            "segment = length",
            &to_f64(plain.finish(segmented)),
            &reference,
            1e-6,
            1e-6,
        );
    }
}
