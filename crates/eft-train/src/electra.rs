//! ELECTRA's replaced-token detection (Clark et al. 2020) on the `mlm` task.
//!
//! A small generator ([`eft_model::Generator`], sharing the discriminator's embeddings) is
//! trained by masked-byte prediction on the task's masked positions; a replacement byte is
//! drawn from its distribution at each of them; the discriminator (the model that fine-tunes
//! later) reads the window with those replacements and classifies every real position as
//! original or replaced. The loss is `MLM + λ·RTD`, RTD the mean cross-entropy over real
//! positions. A drawn byte equal to the original counts as original, as in the paper. The draw
//! is discrete, so no gradient of the discriminator's loss reaches the generator.

use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use eft_model::{Classifier, ModelOutput, TaskShape};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::{BatchTensors, TrainError, cross_entropy, cross_entropy_rows};

/// The random stream of the replacement draws.
const DRAW_STREAM: u64 = 0xe1ec;

/// `train.electra = { generator = 0.25, rtd_weight = 50 }`: pretrain the model as ELECTRA's
/// discriminator (task `mlm` only).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElectraConfig {
    /// The generator's width, heads and MLP width as a share of the model's, in (0, 1].
    /// Default 0.25 (the paper: ¼ to ½ works best).
    #[serde(default = "default_generator")]
    pub generator: f64,
    /// Weight `λ` of the replaced-token-detection loss. Default 50 (the paper's).
    #[serde(default = "default_rtd_weight")]
    pub rtd_weight: f64,
}

fn default_generator() -> f64 {
    0.25
}

fn default_rtd_weight() -> f64 {
    50.0
}

impl Default for ElectraConfig {
    fn default() -> Self {
        Self {
            generator: default_generator(),
            rtd_weight: default_rtd_weight(),
        }
    }
}

impl ElectraConfig {
    /// Checks the ratio and the weight.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.generator > 0.0 && self.generator <= 1.0) {
            return Err(TrainError::config(
                "train.electra.generator",
                self.generator,
                "must be in (0, 1]: the generator's width as a share of the model's (0.25)",
            ));
        }
        if !(self.rtd_weight > 0.0 && self.rtd_weight.is_finite()) {
            return Err(TrainError::config(
                "train.electra.rtd_weight",
                self.rtd_weight,
                "must be a number > 0: the weight of replaced-token detection (the paper: 50)",
            ));
        }
        Ok(())
    }
}

/// The discriminator's task shape: two classes per position (original, replaced).
pub fn discriminator_shape(task: TaskShape) -> TaskShape {
    TaskShape {
        n_classes: 2,
        ..task
    }
}

/// One draw per row of `probs` (`[rows × classes]`, each row a distribution), by inverting
/// the cumulative sum at a uniform number from `rng`.
pub fn draw(probs: &[f32], classes: usize, rng: &mut impl Rng) -> Vec<u32> {
    probs
        .chunks(classes)
        .map(|row| {
            let u: f32 = rng.random::<f32>() * row.iter().sum::<f32>();
            let mut acc = 0.0;
            let picked = row.iter().position(|&p| {
                acc += p;
                u < acc
            });
            // Rounding can leave `u` past the last sum: the last class with any mass.
            picked.unwrap_or_else(|| row.iter().rposition(|&p| p > 0.0).unwrap_or(0)) as u32
        })
        .collect()
}

/// The discriminator's input and labels: `tokens` (`[B·N]`, byte `b` as token `b + 1`) with
/// each flat position `rows[i]` replaced by the drawn byte `drawn[i]`, and per position 1 where
/// the token now differs from the original byte (`originals[i]` at the rows; elsewhere the
/// token is the original), else 0.
pub fn corrupt(
    tokens: &[i64],
    rows: &[i64],
    originals: &[i64],
    drawn: &[u32],
) -> (Vec<i64>, Vec<i64>) {
    let mut input = tokens.to_vec();
    let mut replaced = vec![0; tokens.len()];
    for ((&row, &original), &byte) in rows.iter().zip(originals).zip(drawn) {
        let r = row as usize;
        input[r] = i64::from(byte) + 1;
        replaced[r] = i64::from(i64::from(byte) != original);
    }
    (input, replaced)
}

/// One ELECTRA step's pieces: the generator's masked-byte loss and scores, the
/// discriminator's input, labels and real-position weights.
pub struct ElectraBatch {
    /// Generator scores at the graded rows `[M, 256]` (with their graph).
    pub scores: Tensor<2>,
    /// Mean cross-entropy of `scores` against the original bytes.
    pub mlm: Tensor<1>,
    /// The window with the drawn replacements `[B, N]`.
    pub input: Tensor<2, Int>,
    /// 1 where replaced, per flat position `[B·N]`.
    pub labels: Tensor<1, Int>,
    /// Share of real positions replaced.
    pub replaced_share: f64,
}

/// The generator's pass on `tensors` and the replacements drawn (with `seed`) from it.
///
/// # Panics
/// Panics if the model has no generator or the batch no graded rows; validation makes every
/// ELECTRA run an `mlm` run with a generator.
pub fn generate(model: &Classifier, tensors: &BatchTensors, seed: u64) -> ElectraBatch {
    let rows = tensors.rows.clone().expect("mlm grades positions");
    let scores = model
        .generator_scores(
            tensors.tokens.clone(),
            tensors.padding.clone(),
            rows.clone(),
        )
        .expect("an ELECTRA model has a generator");
    let mlm = cross_entropy(crate::in_f32(scores.clone()), tensors.labels.clone());
    let [_, classes] = scores.dims();
    let probs = softmax(crate::in_f32(scores.clone().detach()), 1).into_data();
    let drawn = draw(
        &probs.try_to_vec::<f32>().expect("f32 probabilities"),
        classes,
        &mut eft_data::seeded_rng(seed, DRAW_STREAM),
    );
    let ints = |t: Tensor<1, Int>| t.into_data().iter::<i64>().collect::<Vec<_>>();
    let shape = tensors.tokens.dims();
    let flat = tensors.tokens.clone().reshape([shape[0] * shape[1]]);
    let (input, labels) = corrupt(
        &ints(flat),
        &ints(rows),
        &ints(tensors.labels.clone()),
        &drawn,
    );
    let real: Vec<bool> = tensors.padding.clone().into_data().iter::<bool>().collect();
    let replaced = labels.iter().zip(&real).filter(|&(&l, &p)| l == 1 && !p);
    let real_count = real.iter().filter(|&&p| !p).count().max(1);
    let replaced_share = replaced.count() as f64 / real_count as f64;
    let device = tensors.tokens.device();
    ElectraBatch {
        scores,
        mlm,
        input: Tensor::from_data(TensorData::new(input, shape), &device),
        labels: Tensor::from_data(TensorData::new(labels, [shape[0] * shape[1]]), &device),
        replaced_share,
    }
}

/// Mean cross-entropy of the discriminator's per-position logits `[B·N, 2]` against `labels`,
/// over the positions that are not padding.
pub fn detection_loss(
    logits: Tensor<2>,
    labels: Tensor<1, Int>,
    padding: Tensor<2, Bool>,
) -> Tensor<1> {
    let [rows, _] = logits.dims();
    let real = padding.bool_not().reshape([rows]).float();
    let count = real.clone().sum().clamp_min(1.0);
    (cross_entropy_rows(crate::in_f32(logits), labels) * real)
        .sum()
        .div(count)
}

/// The share of real positions the discriminator's logits classify right.
fn detection_hits(logits: Tensor<2>, labels: Tensor<1, Int>, padding: Tensor<2, Bool>) -> f64 {
    let [rows, _] = logits.dims();
    let real = padding.bool_not().reshape([rows]);
    let hits = logits
        .argmax(1)
        .reshape([rows])
        .equal(labels)
        .bool_and(real.clone());
    let n = real.int().sum().into_scalar::<i64>().max(1);
    hits.int().sum().into_scalar::<i64>() as f64 / n as f64
}

/// One ELECTRA training step: the generator's pass and draw, the discriminator's forward on
/// the corrupted window, `MLM + λ·RTD` and every parameter's gradient. Returns the output
/// (carrying `rtd` as a weighted auxiliary loss and the detection accuracy and replaced share
/// as statistics), the generator's scores at the graded rows (what the step's accuracy
/// grades), the loss and the gradients.
pub fn step_gradients(
    model: &Classifier,
    tensors: &BatchTensors,
    config: &ElectraConfig,
    seed: u64,
) -> (ModelOutput, Tensor<2>, f64, burn::optim::GradientsParams) {
    let batch = generate(model, tensors, seed);
    let padding = tensors.padding.clone();
    let mut rtd_value = None;
    let step = model
        .step_gradients(batch.input.clone(), padding.clone(), |output| {
            let rtd = detection_loss(output.logits.clone(), batch.labels.clone(), padding.clone());
            let weighted = rtd.mul_scalar(config.rtd_weight);
            rtd_value = Some(weighted.clone().detach());
            batch.mlm.clone() + weighted
        })
        .expect("validation refuses ELECTRA with a rebuilding backward pass");
    let mut output = step.output;
    let accuracy = detection_hits(output.logits.clone(), batch.labels, padding);
    output
        .aux_losses
        .push(("rtd".into(), rtd_value.expect("the loss was computed")));
    output.layer_stats.extend([
        ("rtd_accuracy".to_string(), vec![accuracy]),
        ("replaced_share".to_string(), vec![batch.replaced_share]),
    ]);
    (output, batch.scores.detach(), step.loss, step.grads)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Replaced positions are labelled 1 unless the draw gave the original byte back; every
    /// other position keeps its token and is labelled 0.
    #[test]
    fn labels_mark_only_replacements_that_changed_the_byte() {
        // Bytes 10, 20, 30, 40 as tokens, position 1 masked (257), position 3 a random byte.
        let tokens = [11, 257, 31, 99];
        let (input, labels) = corrupt(&tokens, &[1, 3], &[20, 40], &[20, 7]);
        assert_eq!(input, [11, 21, 31, 8]);
        assert_eq!(labels, [0, 0, 0, 1]);
    }

    /// On a fixed seed, draws follow the distribution (within 4 standard deviations over
    /// 20,000 draws) and never pick a class of zero probability.
    #[test]
    fn draws_follow_the_generator_distribution() {
        let probs = [0.5f32, 0.0, 0.3, 0.2];
        let rows: Vec<f32> = probs.iter().copied().cycle().take(4 * 20_000).collect();
        let drawn = draw(&rows, 4, &mut eft_data::seeded_rng(3, DRAW_STREAM));
        for (c, &p) in probs.iter().enumerate() {
            let share = drawn.iter().filter(|&&d| d as usize == c).count() as f64 / 20_000.0;
            let sd = (f64::from(p) * (1.0 - f64::from(p)) / 20_000.0).sqrt();
            assert!(
                (share - f64::from(p)).abs() <= 4.0 * sd,
                "class {c}: {share}"
            );
        }
        let again = draw(&rows, 4, &mut eft_data::seeded_rng(3, DRAW_STREAM));
        assert_eq!(drawn, again);
    }

    #[test]
    fn bad_settings_name_the_field() {
        for (c, field) in [
            (
                ElectraConfig {
                    generator: 0.0,
                    ..Default::default()
                },
                "train.electra.generator",
            ),
            (
                ElectraConfig {
                    rtd_weight: -1.0,
                    ..Default::default()
                },
                "train.electra.rtd_weight",
            ),
        ] {
            assert!(c.validate().unwrap_err().to_string().contains(field));
        }
    }
}
