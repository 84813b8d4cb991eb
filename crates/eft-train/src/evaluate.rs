//! Turning batches into tensors, the loss, and evaluation over a whole split.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData, activation::log_softmax};
use eft_data::{Batch, Example};
use eft_model::Classifier;

use crate::EvalResult;

/// A batch as tensors: tokens `[B, N]`, padding `[B, N]` (`true` at padding), labels `[B]`.
pub fn batch_tensors(
    batch: &Batch,
    device: &Device,
) -> (Tensor<2, Int>, Tensor<2, Bool>, Tensor<1, Int>) {
    let shape = [batch.batch, batch.len];
    let tokens: Vec<i64> = batch.tokens.iter().map(|&t| i64::from(t)).collect();
    let labels: Vec<i64> = batch.labels.iter().map(|&l| i64::from(l)).collect();
    (
        Tensor::from_data(TensorData::new(tokens, shape), device),
        Tensor::from_data(TensorData::new(batch.padding.clone(), shape), device),
        Tensor::from_data(TensorData::new(labels, [batch.batch]), device),
    )
}

/// Mean cross-entropy of `logits` `[B, C]` against `labels` `[B]`.
pub fn cross_entropy(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    let [batch, _] = logits.dims();
    let picked = log_softmax(logits, 1).gather(1, labels.reshape([batch, 1])); // [B, 1]
    -picked.mean()
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
    let (mut loss, mut hits) = (0.0, 0);
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = Batch::from_examples(chunk);
        let (tokens, padding, labels) = batch_tensors(&batch, device);
        let logits = model.forward(tokens, padding);
        hits += correct(logits.clone(), labels.clone());
        loss += cross_entropy(logits, labels).into_scalar::<f64>() * chunk.len() as f64;
    }
    let n = examples.len().max(1) as f64;
    EvalResult {
        loss: loss / n,
        accuracy: hits as f64 / n,
        examples: examples.len(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
