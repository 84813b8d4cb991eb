//! One training step's forward and backward pass, however the model keeps its activations:
//! all of them (plain autodiff), every k-th block's input ([`crate::Recompute`]), or none
//! (reversible blocks, rebuilt from their outputs).

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Int, Tensor};

use crate::{Classifier, ModelError, ModelOutput};

/// How a training step's backward pass gets the activations it needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backward {
    /// Autodiff keeps every activation.
    Stored,
    /// Keeps the input of every k-th block and rebuilds segments of k blocks (`model.recompute`).
    Recompute(usize),
    /// Keeps only the top block's output and rebuilds each block's input from its output
    /// (`model.residual = "reversible"`).
    Reversible,
}

/// A training step's forward output, its loss and the gradients of every parameter.
pub struct StepGradients {
    /// The forward pass's output, detached from any graph.
    pub output: ModelOutput,
    /// The loss `loss_of` gave.
    pub loss: f64,
    /// Gradients of the model's parameters, as `GradientsParams::from_grads` would give them.
    pub grads: GradientsParams,
}

impl StepGradients {
    /// Packs a step whose output may still hold a graph.
    pub(crate) fn new(output: ModelOutput, loss: f64, grads: GradientsParams) -> Self {
        let output = ModelOutput {
            logits: output.logits.detach(),
            exit_logits: output.exit_logits.into_iter().map(|l| l.detach()).collect(),
            depth_logits: output.depth_logits.map(|(l, p)| (l.detach(), p)),
            ..output
        };
        Self {
            output,
            loss,
            grads,
        }
    }
}

impl Classifier {
    /// Forward and backward of one training step, by the model's [`Backward`] form; `loss_of`
    /// turns the output into the loss to differentiate.
    ///
    /// # Errors
    /// The rebuilding forms refuse a segment-recurrent encoder (`xl` with `segment`), which the
    /// config's validation already refuses.
    pub fn step_gradients(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        loss_of: impl FnOnce(&ModelOutput) -> Tensor<1>,
    ) -> Result<StepGradients, ModelError> {
        match self.backward_form() {
            Backward::Stored => {
                let output = self.forward(tokens, padding);
                let loss = loss_of(&output);
                let value = loss.clone().into_scalar::<f64>();
                let grads = GradientsParams::from_grads(loss.backward(), self);
                Ok(StepGradients::new(output, value, grads))
            }
            Backward::Recompute(every) => {
                self.backward_recomputing(tokens, padding, every, loss_of)
            }
            Backward::Reversible => self.backward_reversible(tokens, padding, loss_of),
        }
    }

    /// Refuses the rebuilding passes for an encoder whose layers carry memory across segments of
    /// the sequence, which a rebuild does not restore.
    pub(crate) fn refuse_recurrence(&self, field: &'static str) -> Result<(), ModelError> {
        match self.encoder.recurrence() {
            None => Ok(()),
            Some(_) => Err(ModelError::Config {
                field,
                value: format!("{:?}", self.backward_form()),
                fix: "segment recurrence (xl with segment) cannot be rebuilt in the backward \
                      pass; keep every activation (model.recompute = \"none\", model.residual = \
                      \"pre_norm\")"
                    .into(),
            }),
        }
    }
}

/// The top of a rebuilding step: the final LayerNorm, the head and the loss on the encoder's
/// output `top` (a value without graph), differentiated down to `top`.
pub(crate) struct Top {
    pub output: ModelOutput,
    pub loss: f64,
    /// The loss's gradient with respect to the encoder's output.
    pub grad: Tensor<3>,
    /// The head's and the final LayerNorm's parameter gradients.
    pub grads: GradientsParams,
}

impl Classifier {
    pub(crate) fn top_backward(
        &self,
        top: Tensor<3>,
        padding: Tensor<2, Bool>,
        loss_of: impl FnOnce(&ModelOutput) -> Tensor<1>,
    ) -> Top {
        let top = top.require_grad();
        let output = self.head(self.encoder.finish(top.clone()), padding);
        let loss = loss_of(&output);
        let value = loss.clone().into_scalar::<f64>();
        let mut grads = loss.backward();
        let grad = Tensor::<3>::from_inner(top.grad(&grads).expect("the head reads its input"));
        Top {
            output,
            loss: value,
            grad,
            grads: GradientsParams::from_module(&mut grads, self),
        }
    }
}

/// Adds every parameter gradient of `from` into `into` (summing where both have one: a block
/// shared by several depths, or rebuilt in pieces).
pub(crate) fn accumulate<M: Module>(
    model: &M,
    into: &mut GradientsParams,
    mut from: GradientsParams,
) {
    struct Add<'a> {
        into: &'a mut GradientsParams,
        from: &'a mut GradientsParams,
    }
    impl ModuleVisitor for Add<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.from.remove::<D>(param.id) {
                let sum = match self.into.remove::<D>(param.id) {
                    Some(old) => old + g,
                    None => g,
                };
                self.into.register::<D>(param.id, sum);
            }
        }
    }
    model.visit(&mut Add {
        into,
        from: &mut from,
    });
}

/// Backpropagates `(out · grad_out).sum()` (the chain rule through a piece of the model whose
/// output's gradient is known) and adds the parameter gradients it gives to `total`.
pub(crate) fn backpropagate(
    model: &Classifier,
    total: &mut GradientsParams,
    out: Tensor<3>,
    grad_out: Tensor<3>,
) -> burn::tensor::Gradients {
    let mut grads = (out * grad_out).sum().backward();
    accumulate(
        model,
        total,
        GradientsParams::from_module(&mut grads, model),
    );
    grads
}
