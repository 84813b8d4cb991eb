//! Gradient checkpointing per block is exact: the recomputing backward pass gives the gradients of
//! the plain one without dropout, and with dropout those of the same function computed with every
//! activation stored (its rebuilds replay the forward pass's masks).
//!
//! Its own test binary: burn's CPU generator is one per process, and these tests seed and draw
//! under one lock, which tests of other files would not take.

use std::sync::Mutex;

mod common;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use common::{assert_grads_close, batch, built, flat, loss, small};
use eft_model::Classifier;

static GENERATOR: Mutex<()> = Mutex::new(());

fn model(attention: &str, dropout: f64, device: &Device) -> Classifier {
    built(small(attention, dropout), device)
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
            let what = format!("{attention} every {every}");
            assert_grads_close(&what, &flat(&m, &got.grads), &want, 1e-6);
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
