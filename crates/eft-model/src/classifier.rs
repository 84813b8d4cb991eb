//! The classifier: embeddings → encoder → pooling → Dense→ReLU→Dense head (per sequence, or per
//! position when pooling is `none`).

use burn::module::Module;
use burn::nn::{Initializer, Linear, LinearConfig, Relu};
use burn::tensor::{Bool, Device, Int, Tensor};

use crate::{
    Backward, Embeddings, Encoder, ExitHead, ExitsConfig, Head, ModelConfig, ModelCost,
    ModelOutput, Pool, TaskShape, dense, layer_norm_flops, linear_flops,
};

/// LRA's encoder classifier with a pluggable attention mechanism.
#[derive(Module, Debug)]
pub struct Classifier {
    pub(crate) embeddings: Embeddings,
    pub(crate) encoder: Encoder,
    /// The MLP head's hidden layer (`model.head = "mlp"`).
    head_hidden: Option<Linear>,
    head_activation: Relu,
    /// The head's output layer; none when tied to the token embedding.
    head_out: Option<Linear>,
    cls_pool: bool,
    pub(crate) per_position: bool,
    paired: bool,
    /// Blocks per rebuilt segment under gradient checkpointing, if the config asks for it.
    #[module(skip)]
    recompute: Option<usize>,
    /// Whether the blocks are reversible (their inputs rebuilt from their outputs in training).
    #[module(skip)]
    pub(crate) reversible: bool,
    /// A head after each block but the last, when the config asks for early exits.
    pub(crate) exits: Vec<ExitHead>,
    /// Learned exits' depth classifier.
    pub(crate) depth_head: Option<Linear>,
    /// Learned exits' price of a layer in the oracle depth.
    #[module(skip)]
    pub(crate) depth_penalty: f64,
    /// ELECTRA's generator, when the model is a discriminator being pretrained.
    pub(crate) generator: Option<crate::Generator>,
}

impl Classifier {
    /// Builds the model; use [`ModelConfig::init`], which validates first.
    pub(crate) fn new(config: &ModelConfig, dims: TaskShape, device: &Device) -> Self {
        let linear = |i, o| {
            LinearConfig::new(i, o)
                .with_initializer(Initializer::XavierUniform { gain: 1.0 })
                .init(device)
        };
        let head_in = if dims.paired { 4 } else { 1 } * config.d_model;
        Self {
            embeddings: Embeddings::new(config, dims, device),
            encoder: Encoder::new(config, config.positions_for(dims), device),
            // Two towers: the head reads [x₁, x₂, x₁∗x₂, x₁−x₂].
            head_hidden: (config.head == Head::Mlp).then(|| linear(head_in, config.d_ff)),
            head_activation: Relu::new(),
            head_out: match config.head {
                Head::Mlp => Some(linear(config.d_ff, dims.n_classes)),
                Head::Linear => Some(linear(head_in, dims.n_classes)),
                Head::Tied => None,
            },
            cls_pool: config.pool == Pool::Cls,
            per_position: config.pool == Pool::None,
            paired: dims.paired,
            recompute: config.recompute.segment(),
            reversible: config.residual == crate::Residual::Reversible,
            exits: match config.exits {
                ExitsConfig::None => Vec::new(),
                _ => (1..config.n_layers)
                    .map(|_| ExitHead::new(config, dims.n_classes, device))
                    .collect(),
            },
            depth_head: matches!(config.exits, ExitsConfig::Learned(_))
                .then(|| crate::exits::depth_head(config, device)),
            depth_penalty: match &config.exits {
                ExitsConfig::Learned(l) => l.penalty,
                _ => 0.0,
            },
            generator: None,
        }
    }

    /// Class logits for a padded batch (one row per sequence, one per position (row-major)
    /// when pooling is `none`, or one per pair of consecutive rows for a paired task), with the
    /// auxiliary losses and per-layer statistics of the parts that report any.
    ///
    /// # Shapes
    /// - tokens: `[B, N]`; padding: `[B, N]`, `true` at padding
    /// - logits: `[B, C]`; `[B·N, C]` with pooling `none`; `[B/2, C]` when paired
    pub fn forward(&self, tokens: Tensor<2, Int>, padding: Tensor<2, Bool>) -> ModelOutput {
        let (x, padding) = self.embeddings.forward(tokens, padding); // [B, N', d]
        if !self.exits.is_empty() {
            return self.forward_with_exits(x, padding);
        }
        let (x, report) = self.encoder.forward_reporting(x, Some(padding.clone()));
        self.head(x, padding).with_report(report)
    }

    /// Pooling (or every position), the pair comparison and the Dense→ReLU→Dense head on the
    /// encoder's output `[B, N', d]`.
    pub(crate) fn head(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> ModelOutput {
        let pooled = if self.per_position {
            let [batch, len, d] = x.dims();
            x.reshape([batch * len, d])
        } else {
            self.pool(x, padding) // [B, d]
        };
        let pooled = if self.paired {
            compare_pairs(pooled)
        } else {
            pooled
        };
        let logits = match (&self.head_hidden, &self.head_out) {
            (Some(hidden), Some(out)) => {
                let h = self.head_activation.forward(dense::apply(hidden, pooled));
                dense::apply(out, h)
            }
            (None, Some(out)) => dense::apply(out, pooled),
            // Tied: scores against every token's embedding, padding's excluded.
            _ => pooled.matmul(self.embeddings.output_table().transpose()),
        };
        ModelOutput::new(logits)
    }

    /// Whether rows come in pairs compared by the head.
    pub fn paired(&self) -> bool {
        self.paired
    }

    /// Reduces `[B, N, d]` to `[B, d]`: the CLS position, or the mean over real tokens.
    pub(crate) fn pool(&self, x: Tensor<3>, padding: Tensor<2, Bool>) -> Tensor<2> {
        let [batch, len, d] = x.dims();
        if self.cls_pool {
            return x.slice([0..batch, 0..1, 0..d]).reshape([batch, d]);
        }
        let real = padding
            .bool_not()
            .float()
            .cast(x.dtype())
            .reshape([batch, len, 1]); // [B, N, 1]
        let count = real.clone().sum_dim(1).clamp_min(1.0); // [B, 1, 1]
        (x * real).sum_dim(1).div(count).reshape([batch, d])
    }

    /// The model as it should be at training step `step`: mechanisms with state that changes on
    /// a schedule (Performer's feature redraw) update it; everything else is unchanged.
    pub fn at_step(mut self, step: usize) -> Self {
        self.encoder = self.encoder.at_step(step);
        self
    }

    /// Number of classes.
    pub(crate) fn classes(&self) -> usize {
        match &self.head_out {
            Some(out) => out.weight.dims()[1],
            None => self.embeddings.output_table().dims()[0],
        }
    }

    /// Whether the head reads every position (pooling `none`).
    pub fn per_position(&self) -> bool {
        self.per_position
    }

    /// The analytic cost of one step on a batch of `batch` sequences of `len` tokens (before any
    /// CLS token): what the embeddings and the encoder state, plus pooling, the head and the loss.
    pub fn cost(&self, batch: usize, len: usize) -> ModelCost {
        let n = len + usize::from(self.cls_pool);
        // Each exit head normalises its layer's output, then pools and classifies like the head.
        let exit = ModelCost::layer(
            layer_norm_flops(batch * n, self.encoder.width()),
            (batch * n * self.encoder.width()) as f64,
        ) + self.head_cost(batch, n);
        let exits: ModelCost = self.exits.iter().map(|_| exit).sum();
        let exits = match &self.depth_head {
            Some(head) => {
                let [d, layers] = head.weight.dims();
                exits + ModelCost::layer(linear_flops(batch, d, layers, true), 0.0)
            }
            None => exits,
        };
        let cost = self.embeddings.cost(batch, n)
            + self.encoder.cost(batch, n)
            + self.head_cost(batch, n)
            + exits
            + self.generator_cost(batch, n);
        // Rebuilding forms keep some block inputs and one segment's activations at a time (an
        // upper bound for reversible blocks, which hold one branch's), and run every block's
        // forward a second time.
        let (every, kept) = match self.backward_form() {
            Backward::Stored => return cost,
            Backward::Recompute(every) => (every, self.encoder.depth().div_ceil(every)),
            // The top output, and a block's output and rebuilt input with their gradients.
            Backward::Reversible => (1, 5),
        };
        let blocks: Vec<ModelCost> = (0..self.encoder.depth())
            .map(|d| self.encoder.block(d).cost(batch, n))
            .collect();
        let all: ModelCost = blocks.iter().copied().sum();
        let widest = blocks
            .chunks(every)
            .map(|segment| segment.iter().map(ModelCost::saved_bytes).sum::<f64>())
            .fold(0.0, f64::max);
        let inputs = (kept * batch * n * self.encoder.width()) as f64 * 4.0;
        ModelCost {
            attention_saved_bytes: cost.attention_saved_bytes - all.attention_saved_bytes,
            activation_bytes: cost.activation_bytes - all.activation_bytes + inputs + widest,
            recompute_flops: all.forward_flops,
            ..cost
        }
    }

    /// How a training step's backward pass gets its activations.
    pub fn backward_form(&self) -> Backward {
        match (self.reversible, self.recompute) {
            (true, _) => Backward::Reversible,
            (false, Some(every)) => Backward::Recompute(every),
            (false, None) => Backward::Stored,
        }
    }

    /// Pooling, the head and the loss. The head reads one pooled row per sequence, or every
    /// position; the loss is counted over the same rows (for per-position tasks that bounds the
    /// graded positions from above).
    pub(crate) fn head_cost(&self, batch: usize, n: usize) -> ModelCost {
        let classes = self.classes();
        let d = self.encoder.width();
        let head_in = d * if self.paired { 4 } else { 1 };
        let (rows, df) = ((batch * n) as f64, d as f64);
        let mut flops = 0.0;
        let heads = if self.per_position {
            batch * n
        } else {
            if !self.cls_pool {
                flops += 2.0 * rows * df + batch as f64 * df; // mask, sum, divide
            }
            batch
        };
        let heads = if self.paired {
            flops += 2.0 * (batch / 2 * d) as f64; // x₁∗x₂ and x₁−x₂; the cat is free
            batch / 2
        } else {
            heads
        };
        flops += match (&self.head_hidden, &self.head_out) {
            (Some(h), Some(_)) => {
                let hidden = h.weight.dims()[1];
                linear_flops(heads, head_in, hidden, true)
                    + (heads * hidden) as f64 // ReLU
                    + linear_flops(heads, hidden, classes, true)
            }
            (None, Some(_)) => linear_flops(heads, head_in, classes, true),
            _ => linear_flops(heads, head_in, classes, false),
        } + heads as f64 * (4.0 * classes as f64 + 2.0); // log-softmax and the picked loss
        ModelCost::layer(flops, 0.0)
    }

    /// Each layer's attention input on a padded batch (see [`Encoder::attention_inputs`]);
    /// `None` when the layers recur over segments or steps.
    ///
    /// # Shapes
    /// - tokens, padding: `[B, N]`
    pub fn attention_inputs(
        &self,
        tokens: Tensor<2, Int>,
        padding: Tensor<2, Bool>,
    ) -> Option<Vec<eft_attention::AttentionInput>> {
        let (x, padding) = self.embeddings.forward(tokens, padding);
        self.encoder.attention_inputs(x, Some(padding))
    }

    /// The encoder, for cost accounting and per-layer access.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }
}

/// `[2P, d]` pooled rows, pairs consecutive, to `[P, 4d]`: `[x₁, x₂, x₁∗x₂, x₁−x₂]` per pair.
fn compare_pairs(pooled: Tensor<2>) -> Tensor<2> {
    let [rows, d] = pooled.dims();
    let pairs = pooled.reshape([rows / 2, 2, d]);
    let first = pairs
        .clone()
        .slice([0..rows / 2, 0..1, 0..d])
        .reshape([rows / 2, d]);
    let second = pairs
        .slice([0..rows / 2, 1..2, 0..d])
        .reshape([rows / 2, d]);
    Tensor::cat(
        vec![
            first.clone(),
            second.clone(),
            first.clone() * second.clone(),
            first - second,
        ],
        1,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Head, Positions, TaskShape};
    use burn::optim::GradientsParams;
    use burn::tensor::{Distribution, TensorData};
    use eft_attention::testing::{assert_close, to_f64};

    fn config(pool: Pool, positions: Positions) -> ModelConfig {
        ModelConfig {
            positions,
            pool,
            ..crate::config::tests::small()
        }
    }

    const DIMS: TaskShape = TaskShape {
        vocab_size: 12,
        max_len: 20,
        n_classes: 5,
        paired: false,
    };

    fn batch(rows: &[&[i64]], len: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
        let mut tokens = Vec::new();
        let mut padding = Vec::new();
        for row in rows {
            for i in 0..len {
                tokens.push(row.get(i).copied().unwrap_or(0));
                padding.push(i >= row.len());
            }
        }
        (
            Tensor::from_data(TensorData::new(tokens, [rows.len(), len]), device),
            Tensor::from_data(TensorData::new(padding, [rows.len(), len]), device),
        )
    }

    #[test]
    fn logits_have_batch_by_classes_shape() {
        let device = Device::flex();
        device.seed(1);
        let model = config(Pool::Cls, Positions::Learned)
            .init(DIMS, &device)
            .unwrap();
        let (t, p) = batch(&[&[1, 2, 3], &[4, 5]], 3, &device);
        assert_eq!(model.forward(t, p).logits.dims(), [2, 5]);
    }

    /// Padding positions change nothing: neither how much padding there is nor what it holds.
    #[test]
    fn pairs_are_compared_as_both_their_products_and_differences() {
        let device = Device::flex();
        let rows = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 3.0, 5.0, -1.0, 0.5, 2.0, 2.0], [4, 2]),
            &device,
        );
        let got = to_f64(compare_pairs(rows));
        let want = [
            1.0, 2.0, 3.0, 5.0, 3.0, 10.0, -2.0, -3.0, // pair (1,2),(3,5)
            -1.0, 0.5, 2.0, 2.0, -2.0, 1.0, -3.0, -1.5, // pair (-1,.5),(2,2)
        ];
        assert_close("pairs", &got, &want, 0.0, 1e-12);
    }

    /// A paired model gives each pair the same logits whatever else is in the batch and however
    /// much padding its passages carry, and the second passage matters.
    #[test]
    fn paired_logits_depend_on_their_own_pair_only() {
        let device = Device::flex();
        device.seed(6);
        let dims = TaskShape {
            paired: true,
            ..DIMS
        };
        let model = config(Pool::Cls, Positions::Learned)
            .init(dims, &device)
            .unwrap();
        let rows: [&[i64]; 4] = [&[3, 1, 4], &[1, 5, 9, 2], &[6, 5], &[3, 5, 8, 9, 7]];
        let (t, p) = batch(&rows, 5, &device);
        let all = to_f64(model.forward(t, p).logits);
        assert_eq!(all.len(), 2 * DIMS.n_classes, "one row of logits per pair");
        let (t, p) = batch(&rows[2..], 9, &device);
        let second = to_f64(model.forward(t, p).logits);
        assert_close("pair 2", &second, &all[DIMS.n_classes..], 1e-5, 1e-6);
        let (t, p) = batch(&[rows[0], rows[3]], 5, &device);
        let swapped = to_f64(model.forward(t, p).logits);
        assert!(
            swapped
                .iter()
                .zip(&all[..DIMS.n_classes])
                .any(|(a, b)| (a - b).abs() > 1e-4),
            "the second passage changes the logits"
        );
    }

    /// With pooling `none` every real position gets its own logits, unchanged by padding and by
    /// the other sequences of the batch.
    #[test]
    fn per_position_logits_ignore_padding_and_neighbours() {
        let device = Device::flex();
        device.seed(4);
        let model = config(Pool::None, Positions::Learned)
            .init(DIMS, &device)
            .unwrap();
        let rows: [&[i64]; 2] = [&[3, 1, 4, 1, 5], &[9, 2, 6]];
        let (t, p) = batch(&rows, 5, &device);
        let both = to_f64(model.forward(t, p).logits);
        let classes = DIMS.n_classes;
        assert_eq!(both.len(), 2 * 5 * classes, "one row per position");
        let (t, p) = batch(&rows[1..], 9, &device);
        let alone = to_f64(model.forward(t, p).logits);
        // Sequence 1's three real positions: rows 5..8 of the pair, rows 0..3 alone.
        assert_close(
            "per position",
            &alone[..3 * classes],
            &both[5 * classes..8 * classes],
            1e-5,
            1e-6,
        );
        assert!(model.per_position());
    }

    #[test]
    fn padding_changes_nothing_for_every_pooling_and_position_kind() {
        for pool in [Pool::Cls, Pool::Mean] {
            for positions in [Positions::Learned, Positions::Sinusoidal] {
                let device = Device::flex();
                device.seed(2);
                let model = config(pool, positions).init(DIMS, &device).unwrap();
                let rows: [&[i64]; 2] = [&[3, 1, 4, 1, 5], &[9, 2, 6]];
                let (t, p) = batch(&rows, 5, &device);
                let short = model.forward(t, p).logits;
                let (t, p) = batch(&rows, 12, &device);
                // Fill the padding with real-looking tokens: they must still be ignored.
                let noise =
                    Tensor::<2, Int>::random([2, 12], Distribution::Uniform(1.0, 11.0), &device);
                let t = t.clone().mask_where(p.clone(), noise);
                let long = model.forward(t, p).logits;
                assert_close(
                    &format!("{pool:?}/{positions:?}"),
                    &to_f64(long),
                    &to_f64(short),
                    1e-5,
                    1e-6,
                );
            }
        }
    }

    #[test]
    fn real_tokens_do_change_the_output() {
        let device = Device::flex();
        device.seed(3);
        let model = config(Pool::Mean, Positions::Learned)
            .init(DIMS, &device)
            .unwrap();
        let (t1, p1) = batch(&[&[3, 1, 4]], 3, &device);
        let (t2, p2) = batch(&[&[3, 1, 5]], 3, &device);
        let diff = (model.forward(t1, p1).logits - model.forward(t2, p2).logits)
            .abs()
            .max()
            .into_scalar::<f32>();
        assert!(
            diff > 1e-4,
            "a changed token moved the logits by only {diff}"
        );
    }

    /// A tied head scores every position against the token embedding itself: its logits are
    /// the final states times the table (padding row left out), it adds no parameters, and a
    /// token that is not in the input still gets a gradient through the output layer (an
    /// untied head's embedding rows of absent tokens get none).
    #[test]
    fn a_tied_head_is_the_token_embedding() {
        let dims = TaskShape {
            vocab_size: 13,
            max_len: 6,
            n_classes: 12,
            paired: false,
        };
        let build = |head| {
            let device = Device::flex().autodiff();
            device.seed(8);
            let config = ModelConfig {
                pool: Pool::None,
                causal: true,
                head,
                ..crate::config::tests::small()
            };
            (config.init(dims, &device).unwrap(), device)
        };
        let (tied, device) = build(Head::Tied);
        let (linear, _) = build(Head::Linear);
        assert_eq!(
            linear.num_params() - tied.num_params(),
            16 * 12 + 12,
            "a tied head has no weights of its own"
        );
        let (t, p) = batch(&[&[1, 2, 3, 1, 2, 3]], 6, &device);
        let states = {
            let (x, pad) = tied.embeddings.forward(t.clone(), p.clone());
            let x = tied.encoder.forward(x, Some(pad));
            x.reshape([6, 16])
        };
        let table = tied.embeddings.output_table(); // [12, 16]
        let want = to_f64(states.matmul(table.transpose()));
        let out = tied.forward(t.clone(), p.clone()).logits;
        assert_close("tied logits", &to_f64(out.clone()), &want, 1e-5, 1e-6);
        // Token 9 is not in the input: only the tied head gives its row a gradient.
        let absent = |model: &Classifier, logits: Tensor<2>| {
            let grads = GradientsParams::from_grads(logits.sum().backward(), model);
            let g = grads
                .get::<2>(model.embeddings.token_weight_id())
                .expect("the embedding has a gradient");
            to_f64(g.slice([9..10, 0..16]))
                .iter()
                .map(|v| v.abs())
                .sum::<f64>()
        };
        assert!(absent(&tied, out) > 0.0);
        let out = linear.forward(t, p).logits;
        assert_eq!(absent(&linear, out), 0.0);
        // A task whose classes are not its tokens cannot tie.
        let e = ModelConfig {
            head: Head::Tied,
            ..crate::config::tests::small()
        }
        .init(DIMS, &Device::flex())
        .unwrap_err();
        assert!(e.to_string().contains("model.head"), "{e}");
    }

    #[test]
    fn too_few_classes_is_an_error() {
        let dims = TaskShape {
            n_classes: 1,
            ..DIMS
        };
        let err = config(Pool::Cls, Positions::Learned)
            .init(dims, &Device::flex())
            .unwrap_err();
        assert!(err.to_string().contains("2 classes"));
    }

    /// Every mechanism drops into the model: a padded batch gives finite logits and finite
    /// gradients for every parameter, causal too where the mechanism has a causal form.
    #[test]
    fn every_mechanism_trains_in_the_model() {
        for attention in eft_attention::testing::small_configs() {
            let name = attention.name();
            for causal in [false, true] {
                if causal && !attention.supports_causal() {
                    continue;
                }
                let device = Device::flex().autodiff();
                device.seed(4);
                let config = ModelConfig {
                    attention: attention.clone(),
                    causal,
                    // A CLS token would only see the first segment.
                    pool: if attention.recurrence().is_some() {
                        Pool::Mean
                    } else {
                        Pool::Cls
                    },
                    ..crate::config::tests::small()
                };
                let model = config.init(DIMS, &device).unwrap().at_step(2);
                let (t, p) = batch(&[&[3, 1, 4, 1, 5, 9, 2, 6, 5, 3], &[2, 7, 1]], 10, &device);
                let logits = model.forward(t, p).logits;
                let values = to_f64(logits.clone());
                assert!(values.iter().all(|v| v.is_finite()), "{name}: {values:?}");
                let grads = GradientsParams::from_grads(logits.square().sum().backward(), &model);
                struct Finite<'a>(&'a GradientsParams, Vec<String>);
                impl burn::module::ModuleVisitor for Finite<'_> {
                    fn visit_float<const D: usize>(
                        &mut self,
                        param: &burn::module::Param<Tensor<D>>,
                    ) {
                        if let Some(g) = self.0.get::<D>(param.id)
                            && !to_f64(g).iter().all(|v| v.is_finite())
                        {
                            self.1.push(format!("{:?}", param.dims()));
                        }
                    }
                }
                let mut check = Finite(&grads, Vec::new());
                model.visit(&mut check);
                assert!(check.1.is_empty(), "{name} causal={causal}: {:?}", check.1);
            }
        }
    }
}
