//! Reversible blocks' training step (RevNet, Reformer): the forward pass keeps no block's
//! activations, only the top block's output; the backward pass rebuilds each block's input from
//! its output, `x₂ = y₂ − g(y₁)`, `x₁ = y₁ − f(x₂)`, block by block from the top, and
//! backpropagates through each branch as it rebuilds it. Peak activation memory is one branch's
//! graph whatever the depth; the price is every branch's forward run twice.
//!
//! Dropout replays: the device is reseeded before each branch of each block from one seed drawn
//! per step, in the forward pass and in the rebuild alike (the rebuild runs `g` before `f`, so
//! the branches cannot share one stream). The rebuilt input is the true one up to rounding, which
//! accumulates down the stack: [`Classifier::reversible_drift`] measures it.

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, s};

use crate::dropout::draw_seed;
use crate::residual::halves;
use crate::step::{StepGradients, Top, backpropagate};
use crate::{Block, Classifier, ModelError, ModelOutput, Residual};

/// Seeds of one step's branches: `f` of block `depth` draws from the first, `g` from the second.
fn branch_seeds(base: u64, depth: usize) -> [u64; 2] {
    [0, 1].map(|branch| eft_data::derived_seed(base, 2 * depth as u64 + branch))
}

/// One reversible block with its branches' seeds: `[x₁, x₂] → [x₁ + f(x₂), x₂ + g(y₁)]`.
fn coupled(block: &Block, x: Tensor<3>, pad: &Tensor<2, Bool>, seeds: [u64; 2]) -> Tensor<3> {
    let device = x.device();
    Residual::Reversible.apply(
        x,
        |x2| {
            device.seed(seeds[0]);
            block.attention_branch(x2, Some(pad.clone()))
        },
        |y1| {
            device.seed(seeds[1]);
            block.feed_forward_branch(y1)
        },
    )
}

/// Block `block`'s input rebuilt from its output, without gradients.
fn invert(block: &Block, y: Tensor<3>, pad: &Tensor<2, Bool>, seeds: [u64; 2]) -> Tensor<3> {
    let device = y.device();
    let [y1, y2] = halves(y);
    device.seed(seeds[1]);
    let x2 = y2 - block.feed_forward_branch(y1.clone());
    device.seed(seeds[0]);
    let x1 = y1 - block.attention_branch(x2.clone(), Some(pad.clone()));
    Tensor::cat(vec![x1, x2], 2)
}

impl Classifier {
    /// The function [`Classifier::backward_reversible`] differentiates, computed with every
    /// activation stored: each branch of each block runs with the device reseeded, so dropout
    /// draws known masks. Without dropout it is [`Classifier::forward`].
    pub fn forward_reversible(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> ModelOutput {
        let base = draw_seed(&tokens.device());
        let (mut h, pad) = self.embeddings.forward(tokens, padding);
        for d in 0..self.encoder.depth() {
            h = coupled(&self.encoder.block(d), h, &pad, branch_seeds(base, d));
        }
        self.head(self.encoder.finish(h), pad)
    }

    /// Forward and backward of one training step of a reversible model keeping no block's
    /// activations (see the module docs); `loss_of` turns the output into the loss. The
    /// gradients are those of `loss_of(forward_reversible(..)).backward()` up to the rounding
    /// of the rebuilt inputs.
    ///
    /// # Errors
    /// A model whose blocks are not reversible, or a segment-recurrent encoder.
    pub fn backward_reversible(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        loss_of: impl FnOnce(&ModelOutput) -> Tensor<1>,
    ) -> Result<StepGradients, ModelError> {
        self.refuse_recurrence("model.residual")?;
        if !self.reversible {
            return Err(ModelError::Config {
                field: "model.residual",
                value: "pre_norm".into(),
                fix: "the reversible backward pass needs model.residual = \"reversible\"".into(),
            });
        }
        let device = tokens.device();
        let depth = self.encoder.depth();
        let base = draw_seed(&device);
        let (embedded, pad) = self.embeddings.forward(tokens, padding);

        // Forward on the graph-free inner model (a detached output's graph would stay alive).
        let inner = self.valid();
        let inner_pad = pad.clone().inner();
        let top = crate::dropout::replaying(|| {
            (0..depth).fold(embedded.clone().inner(), |x, d| {
                coupled(
                    &inner.encoder.block(d),
                    x,
                    &inner_pad,
                    branch_seeds(base, d),
                )
            })
        });

        let top = Tensor::<3>::from_inner(top);
        let Top {
            output,
            loss,
            grad: mut grad_y,
            grads: mut total,
        } = self.top_backward(top.clone(), pad.clone(), loss_of);

        let mut y = top;
        // The bottom block's input is the embeddings' output, which the step keeps anyway: using
        // it spares the rebuild's worst cancellation (small embeddings under O(1) branch outputs).
        let bottom = Tensor::<3>::from_inner(embedded.clone().inner());
        for d in (0..depth).rev() {
            let block = self.encoder.block(d);
            let known = (d == 0).then(|| bottom.clone());
            let seeds = branch_seeds(base, d);
            (y, grad_y) = self.undo(&block, y, grad_y, &pad, seeds, known, &mut total);
        }
        backpropagate(self, &mut total, embedded, grad_y);
        Ok(StepGradients::new(output, loss, total))
    }

    /// One block of the backward pass: from its output `y` and the loss's gradient there,
    /// rebuilds its input (or takes the `known` one) and the gradient there, adding the branches'
    /// parameter gradients to `total`. `g` runs one feed-forward piece at a time
    /// (`model.ffn_chunk`), so its hidden layer is never whole.
    #[allow(clippy::too_many_arguments)]
    fn undo(
        &self,
        block: &Block,
        y: Tensor<3>,
        grad_y: Tensor<3>,
        pad: &Tensor<2, Bool>,
        seeds: [u64; 2],
        known: Option<Tensor<3>>,
        total: &mut GradientsParams,
    ) -> (Tensor<3>, Tensor<3>) {
        let device = y.device();
        let [y1, y2] = halves(y);
        let [gy1, gy2] = halves(grad_y);

        // y₂ = x₂ + g(y₁): g's value rebuilds x₂; its backward adds to y₁'s gradient.
        device.seed(seeds[1]);
        let (mut g, mut g_grad) = (Vec::new(), Vec::new());
        for r in block.feed_forward_pieces(y1.dims()[1]) {
            let z = y1.clone().slice(s![.., r.clone(), ..]).require_grad();
            let out = block.feed_forward_piece(z.clone());
            g.push(out.clone().detach());
            let grads = backpropagate(self, total, out, gy2.clone().slice(s![.., r, ..]));
            g_grad.push(Tensor::<3>::from_inner(
                z.grad(&grads).expect("g reads its input"),
            ));
        }
        let gx1 = gy1 + Tensor::cat(g_grad, 1);
        let x2 = match &known {
            Some(x) => halves(x.clone())[1].clone(),
            None => y2 - Tensor::cat(g, 1),
        };

        // y₁ = x₁ + f(x₂): f's value rebuilds x₁; its backward adds to x₂'s gradient.
        device.seed(seeds[0]);
        let w = x2.clone().require_grad();
        let f = block.attention_branch(w.clone(), Some(pad.clone()));
        let x = match known {
            Some(x) => x,
            None => Tensor::cat(vec![y1 - f.clone().detach(), x2], 2),
        };
        let grads = backpropagate(self, total, f, gx1.clone());
        let gx2 = gy2 + Tensor::<3>::from_inner(w.grad(&grads).expect("f reads its input"));
        (x, Tensor::cat(vec![gx1, gx2], 2))
    }

    /// How far each block's rebuilt input strays from the true one, under the masks of a
    /// training step: entry `d` is `‖x̂_d − x_d‖ / ‖x_d‖` (Frobenius norms) for the input of
    /// block `d`, rebuilt from the top down exactly as the backward pass does (each block from
    /// the rebuilt output above it), so the error accumulates as it does in training.
    ///
    /// # Errors
    /// A model whose blocks are not reversible.
    pub fn reversible_drift(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Result<Vec<f64>, ModelError> {
        if !self.reversible {
            return Err(ModelError::Config {
                field: "model.residual",
                value: "pre_norm".into(),
                fix: "only reversible blocks (model.residual = \"reversible\") are rebuilt".into(),
            });
        }
        let device: Device = tokens.device();
        let inner = self.valid();
        let base = draw_seed(&device);
        let (h, pad) = inner.embeddings.forward(tokens.inner(), padding.inner());
        crate::dropout::replaying(|| {
            let mut inputs = vec![h];
            for d in 0..inner.encoder.depth() {
                let x = inputs[d].clone();
                inputs.push(coupled(
                    &inner.encoder.block(d),
                    x,
                    &pad,
                    branch_seeds(base, d),
                ));
            }
            let mut y = inputs.pop().expect("the embeddings' output");
            let mut drift = vec![0.0; inputs.len()];
            for d in (0..inputs.len()).rev() {
                y = invert(&inner.encoder.block(d), y, &pad, branch_seeds(base, d));
                let norm = |t: Tensor<3>| t.powi_scalar(2).sum().into_scalar::<f64>().sqrt();
                drift[d] = norm(y.clone() - inputs[d].clone()) / norm(inputs[d].clone()).max(1e-30);
            }
            Ok(drift)
        })
    }
}
