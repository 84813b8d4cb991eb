//! Parameter sharing across depth: tied blocks are one parameter each (fewer parameters, smaller
//! checkpoints), their gradient is the sum of what each depth contributes, and a shared model
//! still learns.

mod common;

use std::collections::BTreeMap;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor, TensorData};
use eft_model::{Classifier, ModelConfig, Share, TaskShape};
use eft_train::params::{NamedArray, export_grads, export_params, import_params};

const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 10,
    n_classes: 4,
    paired: false,
};

fn config(n_layers: usize, share: Share) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        d_ff: 32,
        dropout: 0.0,
        n_layers,
        share,
        ..ModelConfig::default()
    }
}

fn build(config: &ModelConfig, device: &Device) -> Classifier {
    device.seed(5);
    config.init(DIMS, device).unwrap()
}

/// Every parameter's gradient of `(logits · logits).sum()` on a fixed batch of two sequences.
fn grads_of(m: &Classifier) -> BTreeMap<String, NamedArray> {
    let device = m.devices()[0].clone();
    let tokens = Tensor::<2, Int>::from_data(
        TensorData::new((0..20).map(|i| 1 + i % 11).collect::<Vec<i64>>(), [2, 10]),
        &device,
    );
    let padding = Tensor::<2, Int>::zeros([2, 10], &device).bool();
    let logits = m.forward(tokens, padding).logits;
    let loss = (logits.clone() * logits).sum();
    export_grads(m, &GradientsParams::from_grads(loss.backward(), m))
}

#[test]
fn tied_blocks_shrink_parameters_and_checkpoints() {
    let device = Device::flex();
    let count = |c: ModelConfig| {
        let m = build(&c, &device);
        (m.num_params(), export_params(&m).len())
    };
    // Four depths sharing one block hold what a one-block model holds; sharing two, a two-block one.
    assert_eq!(count(config(4, Share::All)), count(config(1, Share::None)));
    assert_eq!(
        count(config(4, Share::Cycle(2))),
        count(config(2, Share::None))
    );
    assert_eq!(
        count(config(4, Share::Sequence(2))),
        count(config(2, Share::None))
    );
    let (plain, shared) = (
        count(config(4, Share::None)).0,
        count(config(4, Share::All)).0,
    );
    let block = plain - count(config(3, Share::None)).0;
    assert_eq!(plain - shared, 3 * block, "three blocks fewer");
}

#[test]
fn a_tied_gradient_is_the_sum_over_its_depths() {
    let device = Device::flex().autodiff();
    for share in [Share::All, Share::Cycle(2), Share::Sequence(2)] {
        let tied = build(&config(4, share), &device);
        // The same function untied: depth d gets a copy of the block it shared.
        let weights = export_params(&tied);
        let mut copied: BTreeMap<String, NamedArray> = BTreeMap::new();
        for (name, array) in &weights {
            match name.strip_prefix("encoder.blocks.") {
                Some(rest) => {
                    let (block, param) = rest.split_once('.').unwrap();
                    let block: usize = block.parse().unwrap();
                    for depth in (0..4).filter(|&d| share.block_at(d, 4) == block) {
                        copied.insert(format!("encoder.blocks.{depth}.{param}"), array.clone());
                    }
                }
                None => {
                    copied.insert(name.clone(), array.clone());
                }
            }
        }
        let untied = import_params(build(&config(4, Share::None), &device), &copied).unwrap();
        let (g_tied, g_untied) = (grads_of(&tied), grads_of(&untied));
        for (name, g) in &g_tied {
            let want: Vec<f64> = match name.strip_prefix("encoder.blocks.") {
                Some(rest) => {
                    let (block, param) = rest.split_once('.').unwrap();
                    let block: usize = block.parse().unwrap();
                    let mut sum = vec![0.0; g.values.len()];
                    for depth in (0..4).filter(|&d| share.block_at(d, 4) == block) {
                        let part = &g_untied[&format!("encoder.blocks.{depth}.{param}")];
                        for (s, v) in sum.iter_mut().zip(&part.values) {
                            *s += f64::from(*v);
                        }
                    }
                    sum
                }
                None => g_untied[name]
                    .values
                    .iter()
                    .map(|&v| f64::from(v))
                    .collect(),
            };
            let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
            for (got, want) in g.values.iter().zip(&want) {
                assert!(
                    (f64::from(*got) - want).abs() <= 1e-5 * scale,
                    "{share:?} {name}: {got} vs {want}"
                );
            }
        }
        // Tied weights have one gradient each; the untied model has one per depth.
        assert!(g_tied.len() < g_untied.len());
    }
}

/// Four depths of one shared block still learn quick ListOps: well above the majority class.
#[test]
fn a_shared_model_learns() {
    let (test, majority) = common::quick_listops_accuracy(|m| m.share = Share::All);
    assert!(
        test > majority + 0.05,
        "test {test} against majority {majority}"
    );
}

/// Linformer's `share = "layerwise"`: one projection for every layer, owned by the encoder: three
/// projections fewer than four layers with `kv` each, and its gradient is the sum of what each
/// layer's copy receives in the untied model holding the same projection at every layer.
#[test]
fn a_layerwise_linformer_projection_is_one_parameter() {
    let device = Device::flex().autodiff();
    let linformer = |share: &str| ModelConfig {
        attention: eft_attention::AttentionConfig::from_name_and_params(
            "linformer",
            &[("k".into(), "4".into()), ("share".into(), share.into())],
        )
        .unwrap(),
        ..config(4, Share::None)
    };
    let tied = build(&linformer("layerwise"), &device);
    let weights = export_params(&tied);
    let shared = weights
        .iter()
        .find(|(name, _)| name.starts_with("encoder.layer_shared"))
        .map(|(_, a)| a.clone())
        .expect("the encoder holds the projection");
    let untied = build(&linformer("kv"), &device);
    let keys: Vec<String> = export_params(&untied)
        .into_keys()
        .filter(|n| n.ends_with(".keys"))
        .collect();
    assert_eq!(keys.len(), 4, "{keys:?}");
    assert_eq!(
        untied.num_params() - tied.num_params(),
        3 * shared.values.len(),
        "three projections fewer"
    );
    let mut copied: BTreeMap<String, NamedArray> = weights
        .into_iter()
        .filter(|(n, _)| !n.starts_with("encoder.layer_shared"))
        .collect();
    for name in &keys {
        copied.insert(name.clone(), shared.clone());
    }
    let untied = import_params(untied, &copied).unwrap();
    let (g_tied, g_untied) = (grads_of(&tied), grads_of(&untied));
    let got = g_tied
        .iter()
        .find(|(n, _)| n.starts_with("encoder.layer_shared"))
        .map(|(_, g)| g.values.clone())
        .unwrap();
    let mut want = vec![0f64; got.len()];
    for name in &keys {
        for (s, v) in want.iter_mut().zip(&g_untied[name].values) {
            *s += f64::from(*v);
        }
    }
    let scale = want.iter().fold(1e-6f64, |m, v| m.max(v.abs()));
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() <= 1e-5 * scale, "{g} vs {w}");
    }
}
