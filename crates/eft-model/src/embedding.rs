//! Token and position embeddings, with the optional CLS vector.

use burn::module::{Module, Param};
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, Initializer};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::dropout;
use crate::{ModelConfig, ModelCost, Pool, Positions, TaskShape};

/// Maps tokens to vectors: token embedding + position encoding, CLS prepended when pooling by it.
#[derive(Module, Debug)]
pub struct Embeddings {
    tokens: Embedding,
    /// Learned positions; `None` means sinusoidal.
    positions: Option<Embedding>,
    /// The CLS vector, `[1, 1, d]`; `None` when pooling by mean.
    cls: Option<Param<Tensor<3>>>,
    dropout: Dropout,
    d_model: usize,
    max_len: usize,
}

impl Embeddings {
    /// Builds the embeddings; small normal initialisation (std 0.02) as in GPT-2.
    pub fn new(config: &ModelConfig, dims: TaskShape, device: &Device) -> Self {
        let init = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        };
        let with_cls = config.pool == Pool::Cls;
        let max_len = dims.max_len + usize::from(with_cls);
        let table = |n| {
            EmbeddingConfig::new(n, config.d_model)
                .with_initializer(init.clone())
                .init(device)
        };
        Self {
            tokens: table(dims.vocab_size),
            positions: (config.positions == Positions::Learned).then(|| table(max_len)),
            cls: with_cls.then(|| init.init([1, 1, config.d_model], device)),
            dropout: DropoutConfig::new(config.dropout).init(),
            d_model: config.d_model,
            max_len,
        }
    }

    /// The token table's parameter id, for tests that read its gradient.
    #[cfg(test)]
    pub(crate) fn token_weight_id(&self) -> burn::module::ParamId {
        self.tokens.weight.id
    }

    /// The token table without the padding row, `[vocab − 1, d]`: a tied output layer's weights
    /// (row c is token c + 1's vector).
    pub(crate) fn output_table(&self) -> Tensor<2> {
        let [vocab, d] = self.tokens.weight.dims();
        self.tokens.weight.val().slice([1..vocab, 0..d])
    }

    /// Embeds tokens; returns the vectors and the padding mask, both with CLS prepended if used.
    ///
    /// # Shapes
    /// - tokens, padding: `[B, N]` (`padding` is `true` at padding)
    /// - output: `[B, N', d]` and `[B, N']`, `N' = N + 1` with CLS pooling, else `N`
    ///
    /// # Panics
    /// Panics if `N'` exceeds the table built for the task's `max_len`; the trainer checks
    /// lengths against the task before calling.
    pub fn forward(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> (Tensor<3>, Tensor<2, Bool>) {
        self.forward_from(tokens, padding, 0)
    }

    /// [`Embeddings::forward`] for tokens at positions `start..` of a longer sequence (a chunk
    /// being decoded; no CLS is prepended after position 0).
    ///
    /// # Panics
    /// Panics if the positions exceed a learned table; decoding checks its capacity first.
    pub fn forward_from(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        start: usize,
    ) -> (Tensor<3>, Tensor<2, Bool>) {
        let [batch, _] = tokens.dims();
        let device = tokens.device();
        let mut x = self.tokens.forward(tokens); // [B, N, d]
        let mut padding = padding;
        if let Some(cls) = self.cls.as_ref().filter(|_| start == 0) {
            let cls = cls.val().expand([batch, 1, self.d_model]);
            x = Tensor::cat(vec![cls, x], 1); // [B, N+1, d]
            let real = Tensor::<2, Bool>::full([batch, 1], false, &device);
            padding = Tensor::cat(vec![real, padding], 1);
        }
        let [_, len, _] = x.dims();
        let end = start + len;
        let pos = match &self.positions {
            Some(table) => {
                assert!(
                    end <= self.max_len,
                    "sequence of {end} positions exceeds the model's {}",
                    self.max_len
                );
                let ids = Tensor::<1, Int>::arange(start as i64..end as i64, &device);
                table.forward(ids.reshape([1, len])) // [1, N', d]
            }
            None => {
                let positions: Vec<f64> = (start..end).map(|p| p as f64).collect();
                eft_attention::sinusoid(&positions, self.d_model, &device).reshape([
                    1,
                    len,
                    self.d_model,
                ])
            }
        };
        (dropout::apply(&self.dropout, x + pos), padding)
    }
}

impl Embeddings {
    /// Adding positions to `[batch, len]` token vectors (CLS included); lookups are free, the
    /// sum is kept for the backward pass.
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let values = (batch * len * self.d_model) as f64;
        ModelCost::layer(values, values)
    }

    /// Positions a learned table holds; `None` for sinusoidal positions (any number).
    pub fn learned_positions(&self) -> Option<usize> {
        self.positions.as_ref().map(|_| self.max_len)
    }
}

/// The fixed sinusoidal table, `[len, d]`: `sin(p / 10000^(2i/d))` at `2i`, `cos` at `2i + 1`.
pub fn sinusoidal_table(len: usize, d_model: usize, device: &Device) -> Tensor<2> {
    let positions: Vec<f64> = (0..len).map(|p| p as f64).collect();
    eft_attention::sinusoid(&positions, d_model, device)
}
