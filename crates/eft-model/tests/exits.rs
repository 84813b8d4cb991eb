//! Early exit: threshold 1 is the full model; otherwise each sequence leaves at the first layer
//! whose head is confident enough, exactly as a per-sequence reference built from every head's
//! logits says, and the pass counts only the blocks each sequence ran.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::testing::{assert_close, to_f64};
use eft_model::{
    ConfidenceExits, ExitRule, ExitsConfig, LearnedExits, ModelConfig, Pool, TaskShape,
    oracle_depths,
};

const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 8,
    n_classes: 3,
    paired: false,
};

fn config(threshold: f64) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        n_layers: 3,
        d_ff: 32,
        dropout: 0.0,
        exits: ExitsConfig::Confidence(ConfidenceExits { threshold }),
        ..ModelConfig::default()
    }
}

fn batch(rows: usize, device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let tokens: Vec<i64> = (0..rows * 8)
        .map(|i| 1 + (i as i64 * 7 + i as i64 / 5) % 11)
        .collect();
    let padding: Vec<bool> = (0..rows * 8).map(|i| i % 8 >= 8 - (i / 8) % 4).collect();
    (
        Tensor::from_data(TensorData::new(tokens, [rows, 8]), device),
        Tensor::from_data(TensorData::new(padding, [rows, 8]), device),
    )
}

#[test]
fn threshold_one_is_the_full_model() {
    let device = Device::flex();
    device.seed(1);
    let model = config(1.0).init(DIMS, &device).unwrap();
    let (t, p) = batch(6, &device);
    let full = model.forward(t.clone(), p.clone());
    assert_eq!(full.exit_logits.len(), 2, "a head after blocks 1 and 2");
    let exited = model.forward_exiting(t, p, ExitRule::Confidence(1.0));
    assert_close(
        "threshold 1",
        &to_f64(exited.logits),
        &to_f64(full.logits),
        0.0,
        0.0,
    );
    assert_eq!(exited.layers, vec![3; 6]);
    assert_eq!(exited.executed_flops, exited.full_flops);
    // The full count is the same model's without exits.
    let plain = ModelConfig {
        exits: ExitsConfig::None,
        ..config(1.0)
    }
    .init(DIMS, &device)
    .unwrap();
    let want = plain.cost(6, 8).forward_flops;
    assert!((exited.full_flops - want).abs() <= 1e-9 * want);
}

/// Each sequence's exit against a reference: every head's logits from the training pass, the
/// first head whose top probability reaches the threshold. The threshold is the median of the
/// first head's confidences, so some sequences leave after block 1 and some go on.
#[test]
fn each_sequence_exits_at_its_first_confident_head() {
    let device = Device::flex();
    device.seed(2);
    let model = config(0.5).init(DIMS, &device).unwrap();
    let rows = 10;
    let (t, p) = batch(rows, &device);
    let all = model.forward(t.clone(), p.clone());
    let heads: Vec<Vec<f64>> = all
        .exit_logits
        .iter()
        .chain(std::iter::once(&all.logits))
        .map(|l| to_f64(l.clone()))
        .collect();
    let top = |h: usize, r: usize| {
        let row = &heads[h][r * 3..r * 3 + 3];
        let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = row.iter().map(|v| (v - m).exp()).sum();
        1.0 / z
    };
    let mut first: Vec<f64> = (0..rows).map(|r| top(0, r)).collect();
    first.sort_by(f64::total_cmp);
    let threshold = (first[rows / 2 - 1] + first[rows / 2]) / 2.0;
    let exited = model.forward_exiting(t, p, ExitRule::Confidence(threshold));
    let mut want_logits = Vec::new();
    let mut want_layers = Vec::new();
    for r in 0..rows {
        let h = (0..2).find(|&h| top(h, r) >= threshold).unwrap_or(2);
        want_layers.push(h + 1);
        want_logits.extend_from_slice(&heads[h][r * 3..r * 3 + 3]);
    }
    assert_eq!(exited.layers, want_layers);
    assert!(want_layers.contains(&1) && want_layers.iter().any(|&l| l > 1));
    assert_close(
        "exit logits",
        &to_f64(exited.logits),
        &want_logits,
        1e-5,
        1e-5,
    );
    assert!(exited.executed_flops < exited.full_flops);
}

/// A first head whose output is a fixed, confident bias sends every sequence out after block 1:
/// the logits are that bias and the pass ran the embeddings, one block and that head.
#[test]
fn a_confident_first_head_stops_everyone_after_one_block() {
    let device = Device::flex();
    device.seed(3);
    let model = config(0.9).init(DIMS, &device).unwrap();
    let model = replace(model, "exits.0.out.weight", |t| t.zeros_like(), &device);
    let bias = Tensor::from_data(TensorData::new(vec![4.0f32, 0.0, 0.0], [3]), &device);
    let model = replace(model, "exits.0.out.bias", |_| bias.clone(), &device);
    let (t, p) = batch(4, &device);
    let exited = model.forward_exiting(t, p, ExitRule::Confidence(0.9));
    assert_eq!(exited.layers, vec![1; 4]);
    let want: Vec<f64> = (0..4).flat_map(|_| [4.0, 0.0, 0.0]).collect();
    assert_close("bias logits", &to_f64(exited.logits), &want, 1e-6, 1e-6);
    // One block and one head: what a 1-layer model without exits runs.
    let one = ModelConfig {
        n_layers: 1,
        exits: ExitsConfig::None,
        ..config(0.9)
    }
    .init(DIMS, &device)
    .unwrap();
    let want = one.cost(4, 8).forward_flops;
    assert!((exited.executed_flops - want).abs() <= 1e-9 * want);
    // p = e⁴ / (e⁴ + 2) ≈ 0.965 ≥ 0.9; at 0.97 nobody leaves there.
    let (t, p) = batch(4, &device);
    assert!(
        model
            .forward_exiting(t, p, ExitRule::Confidence(0.97))
            .layers
            .iter()
            .all(|&l| l > 1)
    );
    let probs = to_f64(softmax(
        Tensor::<2>::from_data(TensorData::new(vec![4.0f32, 0.0, 0.0], [1, 3]), &device),
        1,
    ));
    assert!((probs[0] - 0.9647).abs() < 1e-3);
}

/// The oracle depth by hand: per head losses (1.0, 0.5, 0.45) with 0.1 a layer cost 1.1, 0.7,
/// 0.75: depth 2; with no penalty the deepest, least loss wins; ties go to the shallower.
#[test]
fn oracle_depths_price_each_layer() {
    let losses = vec![
        vec![1.0, 0.2, 0.3],
        vec![0.5, 0.2, 0.3],
        vec![0.45, 0.1, 0.3],
    ];
    assert_eq!(oracle_depths(&losses, 0.1), vec![2, 1, 1]);
    assert_eq!(oracle_depths(&losses, 0.0), vec![3, 3, 1]);
}

/// A depth classifier that always picks depth 1 (weights 0, bias for the first depth) sends
/// every sequence out after block 1 with the first head's logits, whatever its confidence;
/// the pass ran the depth classifier, one block and that head.
#[test]
fn a_learned_depth_of_one_stops_everyone_after_one_block() {
    let device = Device::flex();
    device.seed(5);
    let learned = ModelConfig {
        exits: ExitsConfig::Learned(LearnedExits { penalty: 0.01 }),
        ..config(0.5)
    };
    let model = learned.init(DIMS, &device).unwrap();
    let model = replace(model, "depth_head.weight", |t| t.zeros_like(), &device);
    let model = replace(
        model,
        "depth_head.bias",
        |_| Tensor::from_data(TensorData::new(vec![5.0f32, 0.0, 0.0], [3]), &device),
        &device,
    );
    let (t, p) = batch(5, &device);
    let all = model.forward(t.clone(), p.clone());
    let exited = model.forward_exiting(t, p, ExitRule::Learned);
    assert_eq!(exited.layers, vec![1; 5]);
    assert_close(
        "first head",
        &to_f64(exited.logits),
        &to_f64(all.exit_logits[0].clone()),
        1e-5,
        1e-5,
    );
    let one = ModelConfig {
        n_layers: 1,
        exits: ExitsConfig::None,
        ..config(0.5)
    }
    .init(DIMS, &device)
    .unwrap();
    let classifier = 2.0 * 5.0 * 16.0 * 3.0 + 5.0 * 3.0; // 5 rows, 16 → 3 with bias
    let want = one.cost(5, 8).forward_flops + classifier;
    assert!(
        (exited.executed_flops - want).abs() <= 1e-9 * want,
        "{} vs {want}",
        exited.executed_flops
    );
}

/// The depth loss trains the depth classifier only: its target, the oracle depth, carries no
/// gradient to the heads.
#[test]
fn the_depth_loss_reaches_the_depth_classifier_alone() {
    let device = Device::flex().autodiff();
    device.seed(6);
    let model = ModelConfig {
        exits: ExitsConfig::Learned(LearnedExits { penalty: 0.01 }),
        ..config(0.5)
    }
    .init(DIMS, &device)
    .unwrap();
    let (t, p) = batch(4, &device);
    let out = model.forward(t, p);
    let labels = [0usize, 1, 2, 1];
    let per_row = |l: Tensor<2>| {
        let logp = burn::tensor::activation::log_softmax(l, 1);
        let idx = Tensor::<2, Int>::from_data(
            TensorData::new(labels.iter().map(|&x| x as i64).collect(), [4, 1]),
            &logp.device(),
        );
        -logp.gather(1, idx).reshape([4])
    };
    let loss = out
        .depth_loss(per_row)
        .expect("learned exits have a depth loss");
    let grads = burn::optim::GradientsParams::from_grads(loss.backward(), &model);
    let mut with = Vec::new();
    struct Names<'a>(
        Vec<String>,
        &'a burn::optim::GradientsParams,
        &'a mut Vec<String>,
    );
    impl burn::module::ModuleVisitor for Names<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.1.get::<D>(param.id).is_some() {
                self.2.push(self.0.join("."));
            }
        }
    }
    model.visit(&mut Names(Vec::new(), &grads, &mut with));
    assert!(with.iter().any(|n| n.starts_with("depth_head")), "{with:?}");
    assert!(
        with.iter()
            .all(|n| n.starts_with("depth_head") || n.starts_with("embeddings")),
        "only the classifier and what it reads: {with:?}"
    );
}

/// The model with the parameter named `name` changed by `change`.
fn replace(
    model: eft_model::Classifier,
    name: &str,
    change: impl Fn(Tensor<1>) -> Tensor<1>,
    device: &Device,
) -> eft_model::Classifier {
    struct Replace<'a, F> {
        path: Vec<String>,
        name: &'a str,
        change: F,
        device: &'a Device,
    }
    impl<F: Fn(Tensor<1>) -> Tensor<1>> burn::module::ModuleMapper for Replace<'_, F> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            if self.path.join(".") != self.name {
                return param;
            }
            param.map(|t| {
                let shape = t.dims();
                let flat = t.reshape([shape.iter().product::<usize>()]);
                (self.change)(flat).to_device(self.device).reshape(shape)
            })
        }
    }
    model.map(&mut Replace {
        path: Vec::new(),
        name,
        change,
        device,
    })
}

#[test]
fn bad_exit_settings_are_refused_by_field() {
    let e = config(0.0).validate().unwrap_err().to_string();
    assert!(e.contains("model.exits.threshold"), "{e}");
    let e = config(1.2).validate().unwrap_err().to_string();
    assert!(e.contains("model.exits.threshold"), "{e}");
    let e = ModelConfig {
        n_layers: 1,
        ..config(0.9)
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("n_layers"), "{e}");
    let e = ModelConfig {
        pool: Pool::None,
        ..config(0.9)
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("every position"), "{e}");
    let paired = TaskShape {
        paired: true,
        ..DIMS
    };
    let e = config(0.9).check_task(paired).unwrap_err().to_string();
    assert!(e.contains("paired"), "{e}");
    let e = ModelConfig {
        exits: ExitsConfig::Learned(LearnedExits { penalty: -1.0 }),
        ..config(0.9)
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("model.exits.penalty"), "{e}");
}
