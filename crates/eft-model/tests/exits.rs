//! Early exit: threshold 1 is the full model; otherwise each sequence leaves at the first layer
//! whose head is confident enough, exactly as a per-sequence reference built from every head's
//! logits says, and the pass counts only the blocks each sequence ran.

use burn::module::{Module, Param};
use burn::tensor::activation::softmax;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::testing::{assert_close, to_f64};
use eft_model::{ConfidenceExits, ExitsConfig, ModelConfig, Pool, TaskShape};

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
    let exited = model.forward_exiting(t, p, 1.0);
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
    let exited = model.forward_exiting(t, p, threshold);
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
    let model = fix_first_head(model, [4.0, 0.0, 0.0], &device);
    let (t, p) = batch(4, &device);
    let exited = model.forward_exiting(t, p, 0.9);
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
            .forward_exiting(t, p, 0.97)
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

/// The model with the first exit head's output layer replaced by weights 0 and `bias`.
fn fix_first_head(
    model: eft_model::Classifier,
    bias: [f32; 3],
    device: &Device,
) -> eft_model::Classifier {
    struct Replace<'a> {
        path: Vec<String>,
        bias: [f32; 3],
        device: &'a Device,
    }
    impl burn::module::ModuleMapper for Replace<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.pop();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let name = self.path.join(".");
            if name == "exits.0.out.weight" {
                return param.map(|t| t.zeros_like());
            }
            if name == "exits.0.out.bias" {
                let b =
                    Tensor::<D>::from_data(TensorData::new(self.bias.to_vec(), [3]), self.device);
                return param.map(|_| b);
            }
            param
        }
    }
    model.map(&mut Replace {
        path: Vec::new(),
        bias,
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
}
