//! Head pruning (Michel et al. 2019): gates on each head's output measure how much the loss
//! depends on it, and the least important heads are cut out of the weights.

use burn::optim::GradientsParams;

use crate::{Classifier, ModelConfig};

impl Classifier {
    /// The model with the heads of layer `l` multiplied by `gates[l]` (one value per head), as
    /// trained parameters whose gradient [`Classifier::head_gate_gradients`] reads; an empty
    /// slice removes the gates. Gates of 1 leave the forward pass as it was.
    pub fn with_head_gates(mut self, gates: &[Vec<f32>]) -> Self {
        self.encoder = self.encoder.map_attention(|layer, attention| {
            attention.with_gate(gates.get(layer).map(Vec::as_slice))
        });
        self
    }

    /// `∂L/∂ξ` of every layer's head gates in `grads`, one list per layer (empty without gates).
    pub fn head_gate_gradients(&self, grads: &GradientsParams) -> Vec<Vec<f32>> {
        self.encoder
            .attention_layers()
            .map(|a| a.gate_gradient(grads).unwrap_or_default())
            .collect()
    }

    /// The model with only the heads `kept[l]` in layer `l` ([`ModelConfig::kept_heads`]'s
    /// form): smaller Q/K/V/O weights, equal to this model with the other heads' outputs zeroed.
    /// `config` is the model's config, with `kept_heads` set to `kept` (it checks the lists and
    /// that every mechanism allows it); the result is the model that config builds.
    ///
    /// # Errors
    /// `config` is invalid, or this model already lost heads.
    pub fn keep_heads(mut self, config: &ModelConfig) -> Result<Self, crate::ModelError> {
        config.validate()?;
        let already = self
            .encoder
            .attention_layers()
            .any(|a| a.heads_count() != config.n_heads);
        if already {
            return Err(crate::ModelError::Config {
                field: "model.kept_heads",
                value: "on a model that already lost heads".into(),
                fix: "prune heads of the original model (its lists index the original heads)"
                    .into(),
            });
        }
        let kept = &config.kept_heads;
        self.encoder = self
            .encoder
            .map_attention(|layer, a| match kept.get(layer) {
                Some(heads) => a.keep_heads(heads),
                None => a,
            });
        Ok(self)
    }
}
