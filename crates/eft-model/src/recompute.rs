//! Gradient checkpointing per block: a training step's backward pass that keeps only the input of
//! every `every`-th block and rebuilds each segment of blocks from it when the gradient reaches it.
//!
//! No custom autodiff op: the forward pass runs each segment on the inner (graph-free) model and
//! keeps only its output (burn keeps a detached output's graph until the next backward call, so
//! detaching alone saved nothing: 1647 against 1463 MiB at depth 8); the backward pass walks the segments
//! from the last, rebuilds one under autodiff from its saved input, backpropagates
//! `(out · grad_out).sum()` through it, adds its parameter gradients to the step's and passes its
//! input's gradient down. Peak activation memory is the saved inputs plus one segment's graph.
//! Dropout replays: the device is reseeded before each segment, in the forward pass and in the
//! rebuild alike, so both draw the same masks.

use std::ops::Range;

use burn::module::Module;
use burn::tensor::{Bool, Int, Tensor};
use serde::{Deserialize, Serialize};

use crate::dropout::draw_seed;
use crate::step::{StepGradients, Top, backpropagate};
use crate::toml_form::{self, Form};
use crate::{Classifier, ModelError, ModelOutput};

/// Which block inputs a training step keeps. TOML `model.recompute`: `"none"` (default: keep every
/// activation), `"every"` (keep each block's input, rebuild each block) or `{ every = k }` (keep
/// every k-th block's input, rebuild k blocks at a time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Recompute {
    /// Keep every activation.
    #[default]
    None,
    /// Rebuild segments of this many blocks from their inputs (`"every"` is 1).
    Every(usize),
}

impl Recompute {
    /// Blocks per rebuilt segment, or `None` when nothing is recomputed.
    pub fn segment(self) -> Option<usize> {
        match self {
            Recompute::None => None,
            Recompute::Every(k) => Some(k),
        }
    }
}

impl Serialize for Recompute {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        toml_form::serialize(
            s,
            match *self {
                Recompute::None => Form::Name("none"),
                Recompute::Every(1) => Form::Name("every"),
                Recompute::Every(k) => Form::Entry("every", k),
            },
        )
    }
}

impl<'de> Deserialize<'de> for Recompute {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let expected = "\"none\", \"every\" or { every = k }";
        toml_form::deserialize(d, "model.recompute", expected, |form| match form {
            Form::Name("none") => Some(Recompute::None),
            Form::Name("every") => Some(Recompute::Every(1)),
            Form::Entry("every", k) => Some(Recompute::Every(k)),
            _ => None,
        })
    }
}

/// The blocks of each rebuilt segment: `every` at a time (at least one), the last maybe fewer.
fn segments(depth: usize, every: usize) -> Vec<Range<usize>> {
    let every = every.max(1);
    (0..depth)
        .step_by(every)
        .map(|start| start..(start + every).min(depth))
        .collect()
}

impl Classifier {
    /// The function [`Classifier::backward_recomputing`] differentiates, computed with every
    /// activation kept: the forward pass with the device reseeded before each segment of `every`
    /// blocks (so dropout draws per-segment masks). Without dropout it is [`Classifier::forward`].
    pub fn forward_segmented(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        every: usize,
    ) -> ModelOutput {
        let device = tokens.device();
        let base = draw_seed(&device);
        let (mut h, pad) = self.embeddings.forward(tokens, padding);
        for (s, range) in segments(self.encoder.depth(), every)
            .into_iter()
            .enumerate()
        {
            device.seed(eft_data::derived_seed(base, s as u64));
            h = range.fold(h, |x, d| self.encoder.layer(d, x, Some(pad.clone())));
        }
        self.head(self.encoder.finish(h), pad)
    }

    /// Forward and backward of one training step keeping only the input of every `every`-th
    /// block (see the module docs); `loss_of` turns the output into the loss to differentiate.
    /// The gradients are those of `loss_of(forward_segmented(..)).backward()`, bit for bit (each
    /// parameter's gradient comes from one segment's rebuild, which replays its masks), and so of
    /// `forward` when the blocks draw no dropout.
    ///
    /// # Errors
    /// A segment-recurrent encoder (`xl` with `segment`) carries memory across segments of the
    /// sequence, which this pass does not rebuild.
    pub fn backward_recomputing(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        every: usize,
        loss_of: impl FnOnce(&ModelOutput) -> Tensor<1>,
    ) -> Result<StepGradients, ModelError> {
        self.refuse_recurrence("model.recompute")?;
        let device = tokens.device();
        let segments = segments(self.encoder.depth(), every);
        let base = draw_seed(&device);
        let reseed = |segment: usize| device.seed(eft_data::derived_seed(base, segment as u64));
        let run = |range: Range<usize>, x: Tensor<3>, pad: &Tensor<2, Bool>| {
            range.fold(x, |x, d| self.encoder.layer(d, x, Some(pad.clone())))
        };

        // Forward: the embeddings keep their (small) graph; each segment's is dropped at once.
        let (embedded, pad) = self.embeddings.forward(tokens, padding);
        let mut inputs = Vec::with_capacity(segments.len());
        // The forward pass runs on the inner model, without a graph: burn keeps a graph until
        // the next backward call even when its output is detached, which saved nothing.
        let mut h = embedded.clone().detach();
        let inner = self.valid();
        let inner_pad = pad.clone().inner();
        for (s, range) in segments.iter().enumerate() {
            inputs.push(h.clone());
            reseed(s);
            let x = crate::dropout::replaying(|| {
                range.clone().fold(h.inner(), |x, d| {
                    inner.encoder.layer(d, x, Some(inner_pad.clone()))
                })
            });
            h = Tensor::from_inner(x);
        }

        // The head and the loss, on the last segment's output.
        let Top {
            output,
            loss,
            grad: mut grad_out,
            grads: mut total,
        } = self.top_backward(h, pad.clone(), loss_of);

        // Back through the segments, rebuilding each from its saved input.
        for (s, range) in segments.iter().enumerate().rev() {
            let x = inputs[s].clone().require_grad();
            reseed(s);
            let out = run(range.clone(), x.clone(), &pad);
            let grads = backpropagate(self, &mut total, out, grad_out);
            grad_out = Tensor::<3>::from_inner(x.grad(&grads).expect("blocks read their input"));
        }
        backpropagate(self, &mut total, embedded, grad_out);
        Ok(StepGradients::new(output, loss, total))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_and_writes_its_toml_forms() {
        #[derive(Serialize, Deserialize, PartialEq, Debug)]
        struct M {
            recompute: Recompute,
        }
        for (text, want) in [
            ("recompute = \"none\"", Recompute::None),
            ("recompute = \"every\"", Recompute::Every(1)),
            ("recompute = { every = 3 }", Recompute::Every(3)),
        ] {
            let m: M = toml::from_str(text).unwrap();
            assert_eq!(m.recompute, want);
            assert_eq!(
                toml::from_str::<M>(&toml::to_string(&m).unwrap()).unwrap(),
                m
            );
        }
        assert_eq!(Recompute::Every(3).segment(), Some(3));
        assert_eq!(Recompute::None.segment(), None);
        let e = toml::from_str::<M>("recompute = { each = 2 }")
            .unwrap_err()
            .to_string();
        assert!(e.contains("every = k"), "{e}");
    }
}
