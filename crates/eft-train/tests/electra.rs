//! ELECTRA's step, piece by piece on one batch: the generator's parameters get exactly the
//! gradient of its masked-byte loss (nothing from replaced-token detection), the
//! discriminator's own parameters exactly λ times the detection loss's, the shared embeddings
//! the sum; the discriminator reads the window with the draws at the masked positions and is
//! labelled where a draw changed the byte; the model's cost counts the generator.

use std::collections::BTreeMap;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use eft_data::{Batch, mlm::masked_window, seeded_rng};
use eft_train::electra::{self, ElectraConfig};
use eft_train::params::{NamedArray, export_grads};
use eft_train::{RunConfig, batch_tensors, build_model, preset};
use rand::Rng;

fn config() -> RunConfig {
    let mut c = preset("mlm", "quick").unwrap();
    if let eft_data::TaskConfig::Mlm(t) = &mut c.task {
        t.len = 16;
    }
    c.model.d_model = 32;
    c.model.d_ff = 64;
    c.model.dropout = 0.0;
    c.train.electra = Some(ElectraConfig::default());
    c.validate().unwrap();
    c
}

fn grads_of(model: &eft_model::Classifier, loss: Tensor<1>) -> BTreeMap<String, NamedArray> {
    export_grads(model, &GradientsParams::from_grads(loss.backward(), model))
}

fn assert_same(a: &NamedArray, b: &NamedArray, name: &str) {
    assert_eq!(a.shape, b.shape, "{name}");
    let scale = b.values.iter().fold(1e-12f32, |m, v| m.max(v.abs()));
    for (x, y) in a.values.iter().zip(&b.values) {
        assert!((x - y).abs() <= 1e-4 * scale, "{name}: {x} vs {y}");
    }
}

#[test]
fn the_generator_learns_only_from_its_own_loss() {
    let config = config();
    let e = config.train.electra.clone().unwrap();
    let device = Device::flex().autodiff();
    let model = build_model(&config, &device).unwrap();
    assert!(model.has_generator());
    let mut rng = seeded_rng(7, 0);
    let examples: Vec<_> = (0..4)
        .map(|_| {
            let bytes: Vec<u8> = (0..16).map(|_| rng.random_range(b'a'..=b'z')).collect();
            masked_window(&bytes, 0.15, &mut rng)
        })
        .collect();
    let tensors = batch_tensors(&Batch::from_examples(examples.iter()), &device);

    let (output, scores, loss, grads) = electra::step_gradients(&model, &tensors, &e, 11);
    let step = export_grads(&model, &grads);
    assert_eq!(
        scores.dims(),
        [4 * 2, 256],
        "two graded positions per window"
    );

    // The same draws, each loss alone.
    let batch = electra::generate(&model, &tensors, 11);
    let logits = model
        .forward(batch.input.clone(), tensors.padding.clone())
        .logits;
    let rtd = electra::detection_loss(logits, batch.labels.clone(), tensors.padding.clone());
    let (mlm_value, rtd_value) = (
        batch.mlm.clone().into_scalar::<f64>(),
        rtd.clone().into_scalar::<f64>(),
    );
    assert!((loss - (mlm_value + e.rtd_weight * rtd_value)).abs() < 1e-4 * loss);
    let from_mlm = grads_of(&model, batch.mlm.clone());
    let from_rtd = grads_of(&model, rtd.mul_scalar(e.rtd_weight));

    let (mut generator, mut shared, mut discriminator) = (0, 0, 0);
    for (name, g) in &step {
        if name.starts_with("generator.") {
            generator += 1;
            assert!(!from_rtd.contains_key(name), "{name} has an RTD gradient");
            assert_same(g, &from_mlm[name], name);
        } else if name.starts_with("embeddings.") {
            shared += 1;
            let mut sum = from_mlm[name].clone();
            for (s, r) in sum.values.iter_mut().zip(&from_rtd[name].values) {
                *s += r;
            }
            assert_same(g, &sum, name);
        } else {
            discriminator += 1;
            assert!(!from_mlm.contains_key(name), "{name} has an MLM gradient");
            assert_same(g, &from_rtd[name], name);
        }
    }
    assert!(generator > 0 && shared > 0 && discriminator > 0);

    // The corrupted window: draws at the masked positions, labels where they changed the byte.
    let original: Vec<i64> = tensors.tokens.clone().into_data().iter::<i64>().collect();
    let input: Vec<i64> = batch.input.into_data().iter::<i64>().collect();
    let labels: Vec<i64> = batch.labels.into_data().iter::<i64>().collect();
    let mut graded = BTreeMap::new();
    for (i, example) in examples.iter().enumerate() {
        for &(p, byte) in &example.targets {
            graded.insert(i * 16 + p as usize, i64::from(byte) + 1);
        }
    }
    for (flat, (&was, &now)) in original.iter().zip(&input).enumerate() {
        match graded.get(&flat) {
            None => assert_eq!((now, labels[flat]), (was, 0), "position {flat}"),
            Some(&truth) => assert_eq!(labels[flat], i64::from(now != truth), "at {flat}"),
        }
    }
    let replaced = labels.iter().sum::<i64>() as f64 / labels.len() as f64;
    let stats: BTreeMap<_, _> = output.layer_stats.into_iter().collect();
    assert_eq!(stats["replaced_share"], vec![replaced]);
    assert_eq!(output.aux_losses[0].0, "rtd");
}

/// The step's FLOPs count the generator: its pass through the shared embeddings, its
/// projections, its encoder (a quarter of the width) and its scores at the masked positions,
/// on top of the discriminator's.
#[test]
fn the_cost_counts_the_generator() {
    let mut c = config();
    let device = Device::flex();
    let electra = build_model(&c, &device).unwrap();
    c.train.electra = None;
    let plain = build_model(&c, &device).unwrap();
    let (batch, len) = (4, 16);
    let extra = electra.cost(batch, len).forward_flops - plain.cost(batch, len).forward_flops;
    // By hand: d = 32, d_g = 8, d_ff_g = 16, 1 head, 2 layers; 2 of 16 positions scored.
    let (rows, scored) = ((batch * len) as f64, (batch * 2) as f64);
    let linear =
        |r: f64, i: f64, o: f64, bias: bool| r * (2.0 * i * o + if bias { o } else { 0.0 });
    let generator_encoder = {
        let g = eft_model::ModelConfig {
            d_model: 8,
            n_heads: 1,
            d_ff: 16,
            ..c.model.clone()
        };
        g.init(
            eft_model::TaskShape {
                vocab_size: 258,
                max_len: 16,
                n_classes: 2,
                paired: false,
            },
            &device,
        )
        .unwrap()
        .encoder()
        .cost(batch, len)
        .forward_flops
    };
    let head = linear(scored, 8.0, 32.0, true)
        + linear(scored, 32.0, 256.0, false)
        + scored * (4.0 * 256.0 + 2.0)
        + scored * 2.0 * 256.0;
    let expected = rows * 32.0 + linear(rows, 32.0, 8.0, true) + generator_encoder + head;
    // The discriminator's head scores 2 classes where the plain model's scores 256.
    let mlp = |classes: f64| linear(rows, 64.0, classes, true) + rows * (4.0 * classes + 2.0);
    let generator = extra + mlp(256.0) - mlp(2.0);
    assert!(
        (generator - expected).abs() < 1e-6 * expected,
        "{generator} vs {expected}"
    );
}
