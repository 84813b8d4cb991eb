//! Reversible blocks train on rebuilt activations: the backward pass that rebuilds each block's
//! input from its output gives the gradients of the same function computed with every activation
//! stored, for several mechanisms, with sharing and with a chunked feed-forward branch; dropout
//! masks replay; the rebuilt inputs stay close to the true ones. A chunked feed-forward branch is
//! the unchunked one.
//!
//! Its own test binary: burn's CPU generator is one per process, and these tests seed and draw
//! under one lock.

mod common;

use std::sync::Mutex;

use burn::optim::GradientsParams;
use burn::tensor::Device;
use common::{assert_grads_close, batch, built, flat, loss, relative_errors, small};
use eft_attention::AttentionConfig;
use eft_model::{Backward, ModelConfig, Residual, Share};

static GENERATOR: Mutex<()> = Mutex::new(());

fn reversible(attention: &str, dropout: f64) -> ModelConfig {
    ModelConfig {
        residual: Residual::Reversible,
        d_model: 16,
        n_heads: 2,
        ..small(attention, dropout)
    }
}

/// Without dropout, the rebuilding backward pass gives the stored one's gradients, for exact,
/// memory-efficient, kernel, random-feature and windowed attention, with all blocks shared, and
/// with the feed-forward branch in pieces of 3 positions: ≤1e-5 relative over the whole model
/// (measured ~5e-7: f32 rebuilds round) and ≤2e-4 for every tensor (measured ≤6e-6, except
/// linear attention's query weights at 1.1e-4: their gradient is ~1000× smaller than the rest, a
/// near-cancelling sum that magnifies the rebuilt inputs' rounding).
#[test]
fn gradients_equal_the_stored_backward_pass() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let mut cases: Vec<(String, ModelConfig)> = ["full", "flash", "linear", "performer"]
        .iter()
        .map(|a| (a.to_string(), reversible(a, 0.0)))
        .collect();
    cases.push((
        "local".into(),
        ModelConfig {
            attention: AttentionConfig::from_name_and_params(
                "local",
                &[("block".into(), "4".into())],
            )
            .unwrap(),
            ..reversible("full", 0.0)
        },
    ));
    cases.push((
        "shared".into(),
        ModelConfig {
            share: Share::All,
            ..reversible("full", 0.0)
        },
    ));
    cases.push((
        "ffn_chunk 3".into(),
        ModelConfig {
            ffn_chunk: Some(3),
            ..reversible("full", 0.0)
        },
    ));
    for (what, config) in cases {
        let m = built(config, &device);
        assert_eq!(m.backward_form(), Backward::Reversible);
        let (tokens, padding) = batch(&device);
        let out = m.forward(tokens.clone(), padding.clone());
        let want = flat(&m, &GradientsParams::from_grads(loss(&out).backward(), &m));
        let got = m.step_gradients(tokens, padding, loss).unwrap();
        let plain = loss(&out).into_scalar::<f64>();
        assert!(
            (got.loss - plain).abs() <= 1e-5 * plain.abs().max(1.0),
            "{what}"
        );
        let (worst, whole) = relative_errors(&flat(&m, &got.grads), &want);
        assert!(
            whole <= 1e-5 && worst <= 2e-4,
            "{what}: {whole} whole, {worst} worst"
        );
    }
}

/// With dropout, each branch's rebuild draws the forward pass's masks: the gradients equal those
/// of the same function with every activation stored; another seed gives other gradients.
#[test]
fn dropout_masks_are_replayed_in_the_rebuild() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    for chunk in [None, Some(4)] {
        let m = built(
            ModelConfig {
                ffn_chunk: chunk,
                ..reversible("full", 0.3)
            },
            &device,
        );
        let (tokens, padding) = batch(&device);
        device.seed(77);
        let got = m
            .backward_reversible(tokens.clone(), padding.clone(), loss)
            .unwrap();
        device.seed(77);
        let out = m.forward_reversible(tokens.clone(), padding.clone());
        let want = flat(&m, &GradientsParams::from_grads(loss(&out).backward(), &m));
        let (worst, whole) = relative_errors(&flat(&m, &got.grads), &want);
        assert!(
            whole <= 1e-5 && worst <= 2e-4,
            "ffn_chunk {chunk:?}: {whole}, {worst}"
        );
        device.seed(78);
        let other = m.backward_reversible(tokens, padding, loss).unwrap();
        assert_ne!(
            flat(&m, &other.grads),
            flat(&m, &got.grads),
            "the masks matter"
        );
    }
}

/// The rebuilt inputs are the true ones up to f32 rounding at depth 4 (with dropout; the bottom
/// one, the small embeddings, loses most: ~2e-4 of its norm after cancellation), and a
/// model with pre-norm blocks is refused by the reversible passes.
#[test]
fn rebuilt_inputs_stay_close() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let m = built(reversible("full", 0.1), &device);
    let (tokens, padding) = batch(&device);
    let drift = m.reversible_drift(tokens.clone(), padding.clone()).unwrap();
    assert_eq!(drift.len(), 4);
    assert!(drift.iter().all(|e| *e < 1e-3), "{drift:?}");
    let plain = built(small("full", 0.0), &device);
    let e = plain.reversible_drift(tokens.clone(), padding.clone());
    assert!(e.unwrap_err().to_string().contains("model.residual"));
    let e = plain.backward_reversible(tokens, padding, loss);
    assert!(e.err().unwrap().to_string().contains("model.residual"));
}

/// A feed-forward branch in pieces is the whole one: outputs and gradients of a plain model with
/// `ffn_chunk` 1, 3 and 7 equal those without (≤1e-5: the pieces' products round differently).
#[test]
fn a_chunked_feed_forward_branch_is_the_whole_one() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let whole = built(small("full", 0.0), &device);
    let (tokens, padding) = batch(&device);
    let out = whole.forward(tokens.clone(), padding.clone());
    let want = flat(
        &whole,
        &GradientsParams::from_grads(loss(&out).backward(), &whole),
    );
    for chunk in [1, 3, 7] {
        let m = built(
            ModelConfig {
                ffn_chunk: Some(chunk),
                ..small("full", 0.0)
            },
            &device,
        );
        let out = m.forward(tokens.clone(), padding.clone());
        let got = flat(&m, &GradientsParams::from_grads(loss(&out).backward(), &m));
        assert_grads_close(&format!("ffn_chunk {chunk}"), &got, &want, 1e-5);
    }
}
