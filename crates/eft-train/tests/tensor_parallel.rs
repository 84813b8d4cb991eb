//! Tensor parallelism with ranks as threads: a model split over K ranks computes the whole
//! model's outputs, and its gradients are the whole model's cut into the ranks' blocks, for every
//! mechanism whose heads are independent; two ranks train the one-process model, write whole
//! checkpoints and resume; bad splits are refused naming the field.

use std::collections::BTreeMap;
use std::rc::Rc;

use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::AttentionConfig;
use eft_model::{Classifier, ModelConfig, TaskShape};
use eft_train::parallel::ThreadGroup;
use eft_train::params::{NamedArray, export_grads, grad_norm, materialize};
use eft_train::seeding::with_seed;
use eft_train::tensor_parallel::TensorRanks;
use eft_train::{TrainOptions, train};

mod common;

const SHAPE: TaskShape = TaskShape {
    vocab_size: 20,
    max_len: 16,
    n_classes: 3,
    paired: false,
};
const BATCH: usize = 3;

/// Logits, gradients by name and gradient norm of one training step of `model` on a fixed
/// batch (the last row half padding), dropout keyed per row from a fixed seed.
fn step(model: &Classifier) -> (Vec<f32>, BTreeMap<String, NamedArray>, GradientsParams) {
    let device = Device::flex().autodiff();
    let n = SHAPE.max_len;
    let tokens: Vec<i64> = (0..BATCH * n).map(|i| (i * 7 % 19 + 1) as i64).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [BATCH, n]), &device);
    let pad: Vec<bool> = (0..BATCH * n)
        .map(|i| i / n == BATCH - 1 && i % n >= n / 2)
        .collect();
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(pad, [BATCH, n]), &device);
    let weights: Vec<f32> = (0..BATCH * SHAPE.n_classes)
        .map(|i| (i as f32 * 0.37).sin())
        .collect();
    let weights =
        Tensor::<2>::from_data(TensorData::new(weights, [BATCH, SHAPE.n_classes]), &device);
    eft_model::with_row_keys((0..BATCH as u64).collect(), 99, || {
        let logits = model.forward(tokens, padding).logits;
        let grads = GradientsParams::from_grads((logits.clone() * weights).sum().backward(), model);
        let values = logits.into_data().try_to_vec::<f32>().unwrap();
        (values, export_grads(model, &grads), grads)
    })
}

/// The model `config` builds under a fixed seed, on the autodiff device.
fn build(config: &ModelConfig) -> Classifier {
    let device = Device::flex().autodiff();
    with_seed(&device, 7, || {
        let model = config.init(SHAPE, &device).unwrap();
        materialize(&model);
        model
    })
}

/// Largest difference relative to the largest magnitude of `want`, or to `floor` if larger.
fn relative(got: &[f32], want: &[f32], floor: f32) -> f32 {
    assert_eq!(got.len(), want.len());
    let scale = want.iter().fold(floor.max(1e-12), |m, v| m.max(v.abs()));
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs())
        .fold(0.0, f32::max)
        / scale
}

/// The ranks' arrays put side by side along the one dimension where they differ from `whole`.
fn joined(parts: &[&NamedArray], whole: &[usize]) -> Vec<f32> {
    let local = &parts[0].shape;
    let Some(dim) = (0..whole.len()).find(|&d| whole[d] != local[d]) else {
        return parts[0].values.clone();
    };
    let inner: usize = local[dim + 1..].iter().product::<usize>() * local[dim];
    let outer: usize = local[..dim].iter().product();
    (0..outer)
        .flat_map(|o| {
            parts
                .iter()
                .flat_map(move |p| &p.values[o * inner..][..inner])
        })
        .copied()
        .collect()
}

/// K ranks of `config` split `ranks` ways against the whole model: logits, every gradient (after
/// the trainer's sum of the head-shared ones) and the gradient norm within `1e-5` relative;
/// every whole parameter's gradient is the same on every rank.
fn split_equals_whole(mut config: ModelConfig, ranks: usize) {
    let whole = build(&config);
    let (want_logits, want_grads, want) = step(&whole);
    let want_norm = grad_norm(&whole, &want);
    config.tensor_parallel = ranks;
    let name = config.attention.name();
    let parts: Vec<_> = std::thread::scope(|s| {
        let handles: Vec<_> = ThreadGroup::new(ranks)
            .into_iter()
            .map(|rank| {
                let config = config.clone();
                s.spawn(move || {
                    let (model, tensor) =
                        TensorRanks::split(build(&config), &config, Rc::new(rank)).unwrap();
                    let (logits, _, grads) = step(&model);
                    let (grads, norm, _) = tensor.reduce_step(&model, grads, false).unwrap();
                    (logits, export_grads(&model, &grads), norm)
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (rank, (logits, _, norm)) in parts.iter().enumerate() {
        let e = relative(logits, &want_logits, 0.0);
        assert!(e <= 1e-5, "{name}: rank {rank}'s logits differ by {e}");
        let e = (norm - want_norm).abs() / want_norm;
        assert!(
            e <= 1e-5,
            "{name}: rank {rank}'s gradient norm {norm} vs {want_norm}"
        );
    }
    // A gradient that is zero up to rounding (Sinkhorn's output bias, which its column
    // normalisation cancels) is compared at the scale of the model's gradients.
    let floor = 1e-3
        * want_grads
            .values()
            .flat_map(|a| &a.values)
            .fold(0f32, |m, v| m.max(v.abs()));
    let mut split = 0;
    for (param, whole) in &want_grads {
        let mine: Vec<&NamedArray> = parts.iter().map(|p| &p.1[param]).collect();
        if mine[0].shape == whole.shape {
            for (rank, m) in mine.iter().enumerate() {
                let e = relative(&m.values, &whole.values, floor);
                assert!(e <= 1e-5, "{name}: {param} on rank {rank} differs by {e}");
            }
        } else {
            split += 1;
            let e = relative(&joined(&mine, &whole.shape), &whole.values, floor);
            assert!(e <= 1e-5, "{name}: split {param} differs by {e}");
        }
    }
    // Q, K, V, O and both MLP matrices with b₁, in each of the two layers.
    assert!(split >= 14, "{name}: only {split} parameters were split");
}

fn model(attention: &str, params: &[(&str, &str)]) -> ModelConfig {
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    ModelConfig {
        d_model: 16,
        n_heads: 4,
        d_ff: 32,
        dropout: 0.1,
        attention: AttentionConfig::from_name_and_params(attention, &params).unwrap(),
        ..ModelConfig::default()
    }
}

#[test]
fn split_models_compute_the_whole_models_outputs_and_gradients() {
    for (attention, params) in [
        ("full", &[][..]),
        ("flash", &[("tile", "4")][..]),
        ("local", &[("block", "4")][..]),
        ("linear", &[][..]),
        ("performer", &[][..]),
        ("cosformer", &[][..]),
        ("synthesizer", &[][..]),
        ("xl", &[][..]),
    ] {
        split_equals_whole(model(attention, params), 2);
    }
}

/// Mechanisms with parameters every head shares: each rank's gradient of them covers its own
/// heads, and the trainer's sum over ranks makes the whole gradient.
#[test]
fn head_shared_parameters_get_the_whole_gradient() {
    for (attention, params) in [
        ("linformer", &[("k", "4")][..]),
        ("linformer", &[("k", "4"), ("share", "layerwise")][..]),
        ("sinkhorn", &[("block", "4")][..]),
    ] {
        split_equals_whole(model(attention, params), 2);
    }
}

#[test]
fn four_ranks_split_four_heads() {
    split_equals_whole(model("full", &[]), 4);
}

#[test]
fn bad_splits_are_refused_naming_the_field() {
    let refused = |change: &dyn Fn(&mut ModelConfig), says: &str| {
        let mut config = model("full", &[]);
        config.tensor_parallel = 2;
        change(&mut config);
        let e = config.validate().unwrap_err().to_string();
        assert!(e.contains("model.tensor_parallel"), "{e}");
        assert!(e.contains(says), "{e} should say {says}");
    };
    refused(&|c| c.tensor_parallel = 3, "divide every layer's heads");
    refused(&|c| c.d_ff = 33, "model.d_ff = 33");
    refused(&|c| c.tensor_parallel = 0, "at least 1");
    refused(
        &|c| c.attention = AttentionConfig::from_name_and_params("bigbird", &[]).unwrap(),
        "bigbird",
    );
    refused(
        &|c| c.residual = eft_model::Residual::Reversible,
        "plain forward",
    );
    // The ranks must be as many as the layers are split into.
    let mut config = model("full", &[]);
    config.tensor_parallel = 2;
    let e = TensorRanks::split(build(&config), &config, Rc::new(eft_train::parallel::Solo))
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("mpirun -np 2"), "{e}");
}

/// Two ranks, each holding half of every layer, train the model one process trains (with and
/// without dropout), write the whole model's checkpoint, count the whole model's FLOPs and
/// parameters, and resume from an interrupted run to the same weights.
#[test]
fn two_ranks_splitting_the_layers_train_the_model_one_process_trains() {
    let root = tempfile::tempdir().unwrap();
    for dropout in [0.0, 0.1] {
        let mut config = common::tiny_listops("run", 128, 16);
        config.model.dropout = dropout;
        config.train.per_example_dropout = true;
        config.train.set_steps(20, 10);
        let one = root.path().join(format!("one{dropout}"));
        let single = train(config.clone(), &one, &TrainOptions::default()).unwrap();
        config.model.tensor_parallel = 2;
        let dir = root.path().join(format!("split{dropout}"));
        let results = common::train_ranks(&config, &dir, 2);
        assert!(results.iter().all(Result::is_ok), "{results:?}");
        let record = results[0].clone().unwrap();
        let parallel = record.parallel.unwrap();
        assert_eq!((parallel.ranks, parallel.tensor_parallel), (2, 2));
        assert_eq!(record.parameters, single.parameters);
        let flops = |r: &eft_train::RunRecord| r.meter.as_ref().unwrap().total_flops;
        assert_eq!(flops(&record), flops(&single));
        let worst = common::weights(&one)
            .iter()
            .zip(common::weights(&dir))
            .flat_map(|((n, x), (m, y))| {
                assert_eq!(n, &m);
                x.iter()
                    .zip(y)
                    .map(|(p, q)| (p - q).abs())
                    .collect::<Vec<_>>()
            })
            .fold(0f32, f32::max);
        eprintln!("dropout {dropout}: largest weight difference {worst}");
        assert!(worst < 1e-4, "dropout {dropout}: weights differ by {worst}");
        let (a, b) = (single.test.unwrap(), record.test.unwrap());
        assert_eq!(a.accuracy, b.accuracy);
        assert!((a.loss - b.loss).abs() < 1e-5, "{} vs {}", a.loss, b.loss);

        // Stopped after 10 steps and resumed on two ranks: the uninterrupted run's weights.
        let resumed = root.path().join(format!("resumed{dropout}"));
        let stopped = common::train_ranks_with(&config, &resumed, 2, |_| TrainOptions {
            stop_after: Some(10),
            ..TrainOptions::default()
        });
        assert!(stopped.iter().all(Result::is_ok), "{stopped:?}");
        let group = eft_train::parallel::ThreadGroup::new(2);
        let finished: Vec<_> = std::thread::scope(|s| {
            let handles: Vec<_> = group
                .into_iter()
                .map(|rank| {
                    let resumed = &resumed;
                    s.spawn(move || {
                        let options = TrainOptions {
                            collective: Rc::new(rank),
                            ..TrainOptions::default()
                        };
                        eft_train::resume(resumed, &options).map_err(|e| e.to_string())
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(finished.iter().all(Result::is_ok), "{finished:?}");
        assert_eq!(common::weights(&resumed), common::weights(&dir));
        // One process cannot hold both halves.
        let e = eft_train::resume(&resumed, &TrainOptions::default()).unwrap_err();
        assert!(e.to_string().contains("finished") || e.to_string().contains("mpirun -np 2"));
    }
}
