//! Gradient checkpointing per block is exact: the recomputing backward pass gives the gradients of
//! the plain one without dropout, and with dropout those of the same function computed with every
//! activation stored (its rebuilds replay the forward pass's masks).
//!
//! Its own test binary: burn's CPU generator is one per process, and these tests seed and draw
//! under one lock, which tests of other files would not take.

use std::sync::Mutex;

use burn::module::{Module, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::AttentionConfig;
use eft_attention::testing::to_f64;
use eft_model::{Classifier, ModelConfig, ModelOutput, TaskShape};

static GENERATOR: Mutex<()> = Mutex::new(());

const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 10,
    n_classes: 4,
    paired: false,
};

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let tokens: Vec<i64> = (0..30).map(|i| 1 + (i * 7) % 11).collect();
    let padding: Vec<bool> = (0..30).map(|i| i % 10 >= 7 + i / 10).collect();
    (
        Tensor::from_data(TensorData::new(tokens, [3, 10]), device),
        Tensor::from_data(TensorData::new(padding, [3, 10]), device),
    )
}

fn loss(output: &ModelOutput) -> Tensor<1> {
    let logits = output.logits.clone();
    let w = Tensor::<2>::from_data(
        TensorData::new((0..12).map(|i| i as f32 * 0.25 - 1.0).collect(), [3, 4]),
        &logits.device(),
    );
    (logits * w).sum()
}

/// Every parameter's gradient, in visiting order.
fn flat(model: &Classifier, grads: &GradientsParams) -> Vec<Vec<f64>> {
    struct Collect<'a>(&'a GradientsParams, Vec<Vec<f64>>);
    impl ModuleVisitor for Collect<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let g = self
                .0
                .get::<D>(param.id)
                .expect("every parameter has a gradient");
            self.1.push(to_f64(g));
        }
    }
    let mut c = Collect(grads, Vec::new());
    model.visit(&mut c);
    c.1
}

fn model(attention: &str, dropout: f64, device: &Device) -> Classifier {
    device.seed(9);
    let m = ModelConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        n_layers: 4,
        dropout,
        attention: AttentionConfig::from_name_and_params(attention, &[]).unwrap(),
        ..ModelConfig::default()
    }
    .init(DIMS, device)
    .unwrap();
    // burn draws parameters on first use: draw them now, not inside a seeded pass.
    let (tokens, padding) = batch(device);
    let _ = m.forward(tokens, padding);
    m
}

/// Without dropout, recomputing every 1, 2, 3 or 4 blocks gives the plain backward pass's
/// gradients (≤1e-6 of each tensor's largest), for exact, memory-efficient and kernel attention.
#[test]
fn gradients_equal_the_plain_backward_pass() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    for attention in ["full", "flash", "linear"] {
        let device = Device::flex().autodiff();
        let m = model(attention, 0.0, &device);
        let (tokens, padding) = batch(&device);
        let out = m.forward(tokens.clone(), padding.clone());
        let want = flat(&m, &GradientsParams::from_grads(loss(&out).backward(), &m));
        for every in 1..=4 {
            let got = m
                .backward_recomputing(tokens.clone(), padding.clone(), every, loss)
                .unwrap();
            assert_eq!(got.loss, loss(&out).into_scalar::<f64>());
            for (g, w) in flat(&m, &got.grads).iter().zip(&want) {
                let scale = w.iter().fold(1e-12f64, |a, v| a.max(v.abs()));
                let err = g.iter().zip(w).fold(0f64, |a, (x, y)| a.max((x - y).abs()));
                assert!(
                    err <= 1e-6 * scale,
                    "{attention} every {every}: {err} of {scale}"
                );
            }
        }
    }
}

/// With dropout, the rebuilds draw the forward pass's masks: the gradients equal, bit for bit,
/// those of the same function with every activation stored; another seed gives others.
#[test]
fn dropout_masks_are_replayed_in_the_rebuild() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let m = model("full", 0.3, &device);
    let (tokens, padding) = batch(&device);
    for every in [1, 2, 3] {
        device.seed(77);
        let got = m
            .backward_recomputing(tokens.clone(), padding.clone(), every, loss)
            .unwrap();
        device.seed(77);
        let out = m.forward_segmented(tokens.clone(), padding.clone(), every);
        let want = GradientsParams::from_grads(loss(&out).backward(), &m);
        assert_eq!(flat(&m, &got.grads), flat(&m, &want), "every {every}");
        device.seed(78);
        let other = m
            .backward_recomputing(tokens.clone(), padding.clone(), every, loss)
            .unwrap();
        assert_ne!(
            flat(&m, &other.grads),
            flat(&m, &got.grads),
            "the masks matter"
        );
    }
}
