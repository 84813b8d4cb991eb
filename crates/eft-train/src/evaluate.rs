//! Turning batches into tensors, the loss, and evaluation over a whole split.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData, activation::log_softmax};
use eft_data::{Batch, Example};
use eft_model::{Classifier, ExitRule};

use crate::EvalResult;

/// A batch as tensors.
#[derive(Debug, Clone)]
pub struct BatchTensors {
    /// Token ids `[B, N]`.
    pub tokens: Tensor<2, Int>,
    /// `true` at padding, `[B, N]`.
    pub padding: Tensor<2, Bool>,
    /// Labels `[M]`: one per sequence, or one per graded position.
    pub labels: Tensor<1, Int>,
    /// Flat indices `[M]` of the graded positions in `[B·N]`, for per-position tasks.
    pub rows: Option<Tensor<1, Int>>,
}

impl BatchTensors {
    /// The logits the batch is graded on: per-sequence logits as they are, or the graded rows of
    /// per-position logits `[B·N, C]`.
    pub fn graded(&self, logits: Tensor<2>) -> Tensor<2> {
        match &self.rows {
            Some(rows) => logits.select(0, rows.clone()),
            None => logits,
        }
    }
}

/// `batch` as tensors on `device`.
pub fn batch_tensors(batch: &Batch, device: &Device) -> BatchTensors {
    let shape = [batch.batch, batch.len];
    let tokens: Vec<i64> = batch.tokens.iter().map(|&t| i64::from(t)).collect();
    let labels: Vec<i64> = batch.labels.iter().map(|&l| i64::from(l)).collect();
    BatchTensors {
        tokens: Tensor::from_data(TensorData::new(tokens, shape), device),
        padding: Tensor::from_data(TensorData::new(batch.padding.clone(), shape), device),
        labels: Tensor::from_data(TensorData::new(labels, [batch.labels.len()]), device),
        rows: (!batch.rows.is_empty()).then(|| eft_attention::index_tensor(&batch.rows, device)),
    }
}

/// Mean cross-entropy of `logits` `[B, C]` against `labels` `[B]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    cross_entropy_rows(logits, labels).mean()
}

/// Cross-entropy of each row of `logits` `[B, C]` against its label, `[B]`.
pub fn cross_entropy_rows(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1])); // [B, 1]
    -picked.reshape([batch])
}

/// How many rows of `logits` `[B, C]` pick their label.
pub fn correct(logits: Tensor<2>, labels: Tensor<1, Int>) -> usize {
    let [batch, _] = logits.dims();
    let hits = logits.argmax(1).reshape([batch]).equal(labels);
    hits.int().sum().into_scalar::<i64>() as usize
}

/// Loss and accuracy of `model` over `examples`, in batches of `batch_size`, without dropout or
/// autodiff (`model` should come from `Module::valid`).
pub fn evaluate(
    model: &Classifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
) -> EvalResult {
    evaluate_sums(model, examples, batch_size, device).result()
}

/// What [`evaluate`] adds up: the summed loss, the hits and the graded labels, and the examples;
/// slices of a split evaluated apart (by data-parallel ranks) add up to the whole.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct EvalSums {
    /// Sum of the graded labels' cross-entropies.
    pub loss: f64,
    /// Graded labels predicted right.
    pub hits: usize,
    /// Graded labels.
    pub graded: usize,
    /// Examples evaluated.
    pub examples: usize,
}

impl EvalSums {
    /// Mean loss and accuracy per graded label.
    pub fn result(&self) -> EvalResult {
        // Per sequence, or per query position (MQAR).
        let n = self.graded.max(1) as f64;
        EvalResult {
            loss: self.loss / n,
            accuracy: self.hits as f64 / n,
            examples: self.examples,
        }
    }
}

/// [`evaluate`]'s sums over `examples`.
pub fn evaluate_sums(
    model: &Classifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
) -> EvalSums {
    let (mut loss, mut hits, mut graded) = (0.0, 0, 0);
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = Batch::from_examples(chunk);
        let t = batch_tensors(&batch, device);
        // An ELECTRA model is graded on its generator's masked-byte predictions.
        let logits = match t.rows.clone().filter(|_| model.has_generator()) {
            Some(rows) => model
                .generator_scores(t.tokens.clone(), t.padding.clone(), rows)
                .expect("the model has a generator"),
            None => t.graded(model.forward(t.tokens.clone(), t.padding.clone()).logits),
        };
        hits += correct(logits.clone(), t.labels.clone());
        loss += cross_entropy(logits, t.labels).into_scalar::<f64>() * batch.labels.len() as f64;
        graded += batch.labels.len();
    }
    EvalSums {
        loss,
        hits,
        graded,
        examples: examples.len(),
    }
}

/// Early-exit evaluation of a split (`model.exits`): accuracy, loss, the layers the examples
/// used and the forward FLOPs they executed against the full model's.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ExitEval {
    /// The top class probability that let an example exit; none where a depth classifier
    /// chose (learned exits).
    pub threshold: Option<f64>,
    /// Fraction classified correctly by the head each example exited at.
    pub accuracy: f64,
    /// Mean cross-entropy of those heads.
    pub loss: f64,
    /// Mean layers an example ran before it exited.
    pub mean_layers: f64,
    /// Forward FLOPs executed per example (blocks up to the exit and the heads passed).
    pub flops_per_example: f64,
    /// Forward FLOPs per example of the same batches through every layer.
    pub full_flops_per_example: f64,
    /// Examples evaluated.
    pub examples: usize,
}

impl ExitEval {
    /// The fraction of the full model's forward FLOPs the exits saved.
    pub fn flops_saved(&self) -> f64 {
        1.0 - self.flops_per_example / self.full_flops_per_example.max(f64::MIN_POSITIVE)
    }
}

/// [`evaluate`] with early exit by `rule` ([`Classifier::forward_exiting`]).
pub fn evaluate_exiting(
    model: &Classifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
    rule: ExitRule,
) -> ExitEval {
    let (mut loss, mut hits, mut layers) = (0.0, 0, 0);
    let (mut executed, mut full) = (0.0, 0.0);
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = Batch::from_examples(chunk);
        let t = batch_tensors(&batch, device);
        let exited = model.forward_exiting(t.tokens.clone(), t.padding.clone(), rule);
        let logits = t.graded(exited.logits);
        hits += correct(logits.clone(), t.labels.clone());
        loss += cross_entropy(logits, t.labels).into_scalar::<f64>() * batch.labels.len() as f64;
        layers += exited.layers.iter().sum::<usize>();
        executed += exited.executed_flops;
        full += exited.full_flops;
    }
    let n = examples.len().max(1) as f64;
    ExitEval {
        threshold: match rule {
            ExitRule::Confidence(t) => Some(t),
            ExitRule::Learned => None,
        },
        accuracy: hits as f64 / n,
        loss: loss / n,
        mean_layers: layers as f64 / n,
        flops_per_example: executed / n,
        full_flops_per_example: full / n,
        examples: examples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::module::Module;

    #[test]
    fn cross_entropy_matches_the_formula() {
        let device = Device::flex();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![1.0f32, 2.0, 0.5, 0.0, -1.0, 3.0], [2, 3]),
            &device,
        );
        let labels = Tensor::<1, Int>::from_data(TensorData::new(vec![1i64, 0], [2]), &device);
        let lse = |r: [f64; 3]| r.iter().map(|x| x.exp()).sum::<f64>().ln();
        let expected = ((lse([1.0, 2.0, 0.5]) - 2.0) + (lse([0.0, -1.0, 3.0]) - 0.0)) / 2.0;
        let got = cross_entropy(logits.clone(), labels.clone()).into_scalar::<f64>();
        assert!((got - expected).abs() < 1e-6, "{got} vs {expected}");
        assert_eq!(correct(logits, labels), 1);
    }

    /// Per-position tasks are graded at their query positions only: the batched evaluation
    /// equals an argmax taken by hand over each sequence's own logits.
    #[test]
    fn mqar_is_graded_at_its_queries() {
        let task = eft_data::mqar::MqarConfig {
            len: 16,
            pairs: 3,
            vocab: 32,
            train: 1,
            val: 1,
            test: 7,
        };
        let data = task.build(1).unwrap();
        let device = Device::flex();
        let dims = eft_model::TaskShape {
            vocab_size: data.vocab_size,
            max_len: data.max_len,
            n_classes: data.n_classes,
            paired: false,
        };
        let model = crate::seeding::with_seed(&device, 5, || {
            let model = crate::preset("mqar", "quick")
                .unwrap()
                .model
                .init(dims, &device)
                .unwrap();
            crate::params::materialize(&model);
            model
        })
        .valid();
        let (mut hits, mut total) = (0, 0);
        for e in &data.test {
            let t = batch_tensors(&Batch::from_examples([e]), &device);
            let logits: Vec<f32> = model
                .forward(t.tokens, t.padding)
                .logits
                .into_data()
                .try_to_vec::<f32>()
                .unwrap();
            let classes = data.n_classes;
            for &(at, value) in &e.targets {
                let row = &logits[at as usize * classes..(at as usize + 1) * classes];
                let best = (0..classes)
                    .max_by(|&a, &b| row[a].total_cmp(&row[b]))
                    .unwrap();
                hits += usize::from(best as u32 == value);
                total += 1;
            }
        }
        let r = evaluate(&model, &data.test, 3, &device);
        assert_eq!(total, 21);
        assert!(
            (r.accuracy - hits as f64 / total as f64).abs() < 1e-12,
            "{r:?}"
        );
    }
}
