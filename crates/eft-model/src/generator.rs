//! ELECTRA's generator (Clark et al. 2020): a narrower encoder that reads the discriminator's
//! embeddings through a projection and scores masked positions against the same token table,
//! so generator and discriminator share their token and position embeddings. ELECTRA's
//! generator head adds a GELU and a LayerNorm before the tied scores; this one is linear.

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::{Classifier, Encoder, ModelConfig, ModelCost, ModelError, dense, linear_flops};

/// The generator's narrower encoder and its two projections.
#[derive(Module, Debug)]
pub struct Generator {
    /// The shared embeddings' width `d` to the generator's `d_g`.
    project_in: Linear,
    encoder: Encoder,
    /// `d_g` back to `d`, where the token table scores it.
    project_out: Linear,
    /// Classes scored: the first rows of the output table (the bytes).
    #[module(skip)]
    classes: usize,
    /// Share of each sequence's positions scored (the mask rate), for the cost.
    #[module(skip)]
    scored_share: f64,
}

impl ModelConfig {
    /// The generator's encoder config: this one at `width` times the width, heads and MLP width
    /// (each at least 1), every other field as here but plain (no exits, sharing, recomputation
    /// or pruned heads).
    ///
    /// # Errors
    /// Names `field` when the narrower width does not split into the narrower heads.
    pub fn generator(&self, width: f64, field: &'static str) -> Result<ModelConfig, ModelError> {
        let scale = |n: usize| ((n as f64 * width).round() as usize).max(1);
        let config = ModelConfig {
            d_model: scale(self.d_model),
            n_heads: scale(self.n_heads),
            d_ff: scale(self.d_ff),
            kept_heads: vec![],
            exits: Default::default(),
            depth: Default::default(),
            share: Default::default(),
            recompute: Default::default(),
            residual: Default::default(),
            feed_forward: Default::default(),
            ..self.clone()
        };
        if !config.d_model.is_multiple_of(config.n_heads) {
            return Err(ModelError::Config {
                field,
                value: width.to_string(),
                fix: format!(
                    "gives width {} and {} heads, which do not divide; pick a ratio that \
                     keeps model.d_model / model.n_heads whole (e.g. 0.25 for 64 and 4 heads)",
                    config.d_model, config.n_heads
                ),
            });
        }
        config.validate().map_err(|e| ModelError::Config {
            field,
            value: width.to_string(),
            fix: format!("the generator this ratio gives is not a valid model: {e}"),
        })?;
        Ok(config)
    }
}

impl Generator {
    fn new(
        config: &ModelConfig,
        d_model: usize,
        max_len: usize,
        classes: usize,
        scored_share: f64,
        device: &Device,
    ) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        Self {
            project_in: linear(d_model, config.d_model),
            encoder: Encoder::new(config, max_len, device),
            project_out: linear(config.d_model, d_model),
            classes,
            scored_share,
        }
    }

    /// Forward and backward FLOPs of `[batch, len]` inputs with `scored_share` of the positions
    /// scored: the embeddings' second pass, both projections, the encoder, the scores, their
    /// log-softmax and loss, and drawing a replacement from each scored row.
    fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let [d, d_g] = self.project_in.weight.dims();
        let rows = batch * len;
        let scored = batch * ((self.scored_share * len as f64).round() as usize).clamp(1, len);
        let c = self.classes;
        let head = linear_flops(scored, d_g, d, true)
            + linear_flops(scored, d, c, false)
            + scored as f64 * (4.0 * c as f64 + 2.0)
            + scored as f64 * 2.0 * c as f64; // softmax and cumulative sum of the draw
        // The shared embeddings run a second time, on the generator's input: the position sum.
        let embed = (rows * d) as f64;
        ModelCost::layer(embed + linear_flops(rows, d, d_g, true), 2.0 * embed)
            + self.encoder.cost(batch, len)
            + ModelCost::layer(head, (scored * (d_g + d + c)) as f64)
    }
}

impl Classifier {
    /// This model (the discriminator) with an ELECTRA generator built from `config` (see
    /// [`ModelConfig::generator`]) for up to `max_len` positions, scoring `classes` tokens at
    /// about `scored_share` of each sequence's positions.
    pub fn with_generator(
        mut self,
        config: &ModelConfig,
        max_len: usize,
        classes: usize,
        scored_share: f64,
        device: &Device,
    ) -> Self {
        let d = self.encoder.width();
        self.generator = Some(Generator::new(
            config,
            d,
            max_len,
            classes,
            scored_share,
            device,
        ));
        self
    }

    /// Whether the model carries an ELECTRA generator.
    pub fn has_generator(&self) -> bool {
        self.generator.is_some()
    }

    /// The generator's scores `[R, classes]` for the rows `rows` (`[R]` flat indices into
    /// `[B·N]`) of a batch, class `c` scored against token `c + 1`'s embedding; `None` without
    /// a generator.
    pub fn generator_scores(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
        rows: Tensor<1, Int>,
    ) -> Option<Tensor<2>> {
        let g = self.generator.as_ref()?;
        let (x, padding) = self.embeddings.forward(tokens, padding);
        let (h, _) = g
            .encoder
            .forward_reporting(dense::apply(&g.project_in, x), Some(padding));
        let [batch, len, width] = h.dims();
        let h = h.reshape([batch * len, width]).select(0, rows);
        let table = self.embeddings.output_table();
        let [_, d] = table.dims();
        let table = table.slice([0..g.classes, 0..d]);
        Some(dense::apply(&g.project_out, h).matmul(table.transpose()))
    }

    /// The generator's cost for `[batch, len]`, zero without one.
    pub(crate) fn generator_cost(&self, batch: usize, len: usize) -> ModelCost {
        self.generator
            .as_ref()
            .map_or_else(ModelCost::default, |g| g.cost(batch, len))
    }
}
