//! Helpers shared by the model's gradient tests: a fixed padded batch, a weighted loss, every
//! parameter's gradient in visiting order, and a comparison relative to each tensor's largest.
// Each test binary uses its own subset.
#![allow(dead_code)]

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::AttentionConfig;
use eft_attention::testing::to_f64;
use eft_model::{Classifier, ModelConfig, ModelOutput, TaskShape};

/// The task the tests' models are built for.
pub const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 10,
    n_classes: 4,
    paired: false,
};

/// Three sequences of ten tokens, padded at their ends (7, 8 and 9 real tokens).
pub fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let tokens: Vec<i64> = (0..30).map(|i| 1 + (i * 7) % 11).collect();
    let padding: Vec<bool> = (0..30).map(|i| i % 10 >= 7 + i / 10).collect();
    (
        Tensor::from_data(TensorData::new(tokens, [3, 10]), device),
        Tensor::from_data(TensorData::new(padding, [3, 10]), device),
    )
}

/// A fixed weighted sum of the logits (every class gets a distinct gradient).
pub fn loss(output: &ModelOutput) -> Tensor<1> {
    let logits = output.logits.clone();
    let w = Tensor::<2>::from_data(
        TensorData::new((0..12).map(|i| i as f32 * 0.25 - 1.0).collect(), [3, 4]),
        &logits.device(),
    );
    (logits * w).sum()
}

/// Every parameter's gradient, in visiting order; empty for a parameter without one (Performer's
/// fixed features), so a gradient present on one side only shows as a length mismatch.
pub fn flat(model: &Classifier, grads: &GradientsParams) -> Vec<Vec<f64>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f64>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1
                .push(self.0.get::<D>(param.id).map(to_f64).unwrap_or_default());
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

/// Asserts every gradient tensor of `got` within `tol` of `want`'s, relative to its largest entry.
pub fn assert_grads_close(what: &str, got: &[Vec<f64>], want: &[Vec<f64>], tol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: parameter count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len(), "{what}, parameter {i}: gradient sizes");
        let scale = w.iter().fold(1e-12f64, |a, v| a.max(v.abs()));
        let err = g.iter().zip(w).fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(
            err <= tol * scale,
            "{what}, parameter {i}: {err} of {scale}"
        );
    }
}

/// Four blocks of width 16 with two heads, `attention` in each, dropout `dropout`.
pub fn small(attention: &str, dropout: f64) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        n_layers: 4,
        dropout,
        attention: AttentionConfig::from_name_and_params(attention, &[]).unwrap(),
        ..ModelConfig::default()
    }
}

/// `config`'s model for [`DIMS`], initialised from seed 9 on `device`.
pub fn built(config: ModelConfig, device: &Device) -> Classifier {
    device.seed(9);
    let m = config.init(DIMS, device).unwrap();
    // burn draws parameters on first use: draw them now, not inside a seeded pass.
    let (tokens, padding) = batch(device);
    let _ = m.forward(tokens, padding);
    m
}

/// The largest, over parameter tensors, of `‖got − want‖₂ / ‖want‖₂`, and over the whole model.
pub fn relative_errors(got: &[Vec<f64>], want: &[Vec<f64>]) -> (f64, f64) {
    let (mut worst, mut diff, mut norm) = (0f64, 0f64, 0f64);
    assert_eq!(got.len(), want.len(), "parameter count");
    for (g, w) in got.iter().zip(want) {
        assert_eq!(g.len(), w.len(), "gradient sizes");
        let d: f64 = g.iter().zip(w).map(|(x, y)| (x - y).powi(2)).sum();
        let n: f64 = w.iter().map(|y| y * y).sum();
        worst = worst.max((d / n.max(1e-300)).sqrt());
        diff += d;
        norm += n;
    }
    (worst, (diff / norm).sqrt())
}
