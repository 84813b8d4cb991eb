//! Tensor parallelism (Megatron-LM, Shoeybi et al. 2019): each of K ranks holds a block of every
//! layer's heads (their Q/K/V columns, output-projection rows and per-head mechanism parameters)
//! and of its MLP's hidden columns (`W₁` columns and `b₁`, `W₂` rows). A split layer's input
//! passes [`eft_kernels::copy_to_ranks`] (gradients summed backward) and its row-split output
//! [`eft_kernels::sum_over_ranks`] (partial outputs summed forward) before the output bias, so
//! every rank computes the whole model's activations, loss and gradients for what it holds.
//!
//! A split model is cut from the whole one ([`Classifier::split_for_rank`]): every rank draws the
//! same initial weights and keeps its block, so K ranks train the one-process model.

use std::collections::BTreeMap;
use std::ops::Range;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::nn::Linear;
use burn::tensor::Tensor;

use crate::{Classifier, FeedForwardConfig, ModelConfig, ModelError};

/// Serde default of `model.tensor_parallel`: whole layers.
pub(crate) fn whole() -> usize {
    1
}

/// Whether `model.tensor_parallel` is its default (left out of a saved config).
pub(crate) fn is_whole(ranks: &usize) -> bool {
    *ranks == 1
}

/// Which block of a split layer's heads or columns this rank holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TensorSplit {
    /// This rank, from 0.
    pub rank: usize,
    /// Ranks the layer is split over.
    pub ranks: usize,
}

impl TensorSplit {
    /// This rank's block of `n` things cut into `ranks` equal blocks.
    pub fn block(self, n: usize) -> Range<usize> {
        let per = n / self.ranks;
        self.rank * per..(self.rank + 1) * per
    }

    /// `(whole width, offset)` of this rank's block of a `local`-wide part.
    pub(crate) fn columns(self, local: usize) -> (usize, usize) {
        (local * self.ranks, local * self.rank)
    }
}

/// `layer`'s `x·W` for this rank's rows of `W`, summed over the ranks, plus the bias (which
/// every rank holds whole and adds once, after the sum).
pub(crate) fn row_parallel(layer: &Linear, x: Tensor<3>) -> Tensor<3> {
    let partial = eft_kernels::linear(x, layer.weight.val(), None);
    let whole = eft_kernels::sum_over_ranks(partial);
    match &layer.bias {
        Some(b) => {
            let d = b.dims()[0];
            whole + b.val().reshape([1, 1, d])
        }
        None => whole,
    }
}

/// `x` entering a column-split layer: itself, or with its gradient summed over the ranks.
pub(crate) fn enter<const D: usize>(split: Option<TensorSplit>, x: Tensor<D>) -> Tensor<D> {
    match split {
        Some(_) => eft_kernels::copy_to_ranks(x),
        None => x,
    }
}

/// The float parameters of `module` with their shapes, by id.
pub(crate) fn param_shapes<M: Module>(module: &M) -> BTreeMap<ParamId, Vec<usize>> {
    struct Shapes(BTreeMap<ParamId, Vec<usize>>);
    impl ModuleVisitor for Shapes {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.insert(param.id, param.dims().to_vec());
        }
    }
    let mut shapes = Shapes(BTreeMap::new());
    module.visit(&mut shapes);
    shapes.0
}

impl ModelConfig {
    /// `model.tensor_parallel`: at least 1; above 1 it divides every layer's heads and the MLP
    /// width, and every part is one this form of splitting computes exactly.
    pub(crate) fn validate_tensor_parallel(&self) -> Result<(), ModelError> {
        let k = self.tensor_parallel;
        let bad = |fix: String| {
            Err(ModelError::Config {
                field: "model.tensor_parallel",
                value: k.to_string(),
                fix,
            })
        };
        if k == 0 {
            return bad("must be at least 1 (ranks per layer; 1 keeps layers whole)".into());
        }
        if k == 1 {
            return Ok(());
        }
        if let Some(layer) = (0..self.n_layers).find(|&l| !self.heads_at(l).is_multiple_of(k)) {
            return bad(format!(
                "must divide every layer's heads (layer {layer} has {}): use a divisor of it",
                self.heads_at(layer)
            ));
        }
        if !self.d_ff.is_multiple_of(k) {
            return bad(format!(
                "must divide model.d_ff = {}: use a divisor of it",
                self.d_ff
            ));
        }
        if matches!(self.feed_forward, FeedForwardConfig::Switch(_)) {
            return bad(
                "Switch experts are not split across ranks (expert parallelism is not built): \
                 use model.feed_forward = { kind = \"dense\" } or tensor_parallel = 1"
                    .into(),
            );
        }
        if let Some((field, value)) = self.rebuilding_setting() {
            return bad(format!(
                "split layers run the plain forward pass, not {field} = {value}: drop one of them"
            ));
        }
        if let Some(a) = self
            .layer_mechanisms()
            .find(|a| a.check_head_removal().is_err())
        {
            return bad(format!(
                "attention `{}` ties a head's computation to its index or to the other heads, so \
                 a rank's block of heads would not compute what it does in the whole layer; \
                 split full, flash, local, sliding, cascade, longformer, linear, performer, \
                 cosformer, nystrom (no conv), linformer, synthesizer, sinkhorn or xl layers",
                a.name()
            ));
        }
        Ok(())
    }
}

impl Classifier {
    /// The part of this (whole) model that `rank` of `config.tensor_parallel` ranks holds, on
    /// which it computes the whole model's outputs together with the other ranks, each in a
    /// thread that joined their group ([`eft_kernels::join_rank_group`]). Embeddings, norms,
    /// biases after a sum and the heads stay whole on every rank.
    ///
    /// # Errors
    /// `config` is invalid or keeps layers whole, `rank` is not one of its ranks, or the model
    /// is already split or carries an ELECTRA generator.
    pub fn split_for_rank(mut self, config: &ModelConfig, rank: usize) -> Result<Self, ModelError> {
        config.validate()?;
        let ranks = config.tensor_parallel;
        let refuse = |value: String, fix: &str| ModelError::Config {
            field: "model.tensor_parallel",
            value,
            fix: fix.into(),
        };
        if ranks == 1 || rank >= ranks {
            return Err(refuse(
                format!("{ranks} (rank {rank})"),
                "split a model for one of its ranks, with tensor_parallel above 1",
            ));
        }
        if self
            .encoder
            .attention_layers()
            .any(|a| a.tensor_split().is_some())
        {
            return Err(refuse(ranks.to_string(), "this model is already split"));
        }
        if self.generator.is_some() {
            return Err(refuse(
                ranks.to_string(),
                "an ELECTRA generator is not split: pretrain with tensor_parallel = 1",
            ));
        }
        let split = TensorSplit { rank, ranks };
        self.encoder = self.encoder.map_blocks(|b| b.split(split));
        Ok(self)
    }

    /// Parameters every rank holds whole whose gradient each rank computes only from its own
    /// heads (a mechanism's parameter shared by all heads, Linformer's layerwise projection):
    /// a split model's trainer sums their gradients over the ranks. Empty when not split.
    pub fn rank_partial_params(&self) -> Vec<ParamId> {
        self.encoder.rank_partial_params()
    }
}
