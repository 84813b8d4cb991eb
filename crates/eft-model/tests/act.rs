//! The Universal Transformer with adaptive computation time inside the classifier: its cost
//! counts `max_steps` steps and what a pass skipped is exactly the steps it did not run; the
//! ponder cost reaches the halting unit; bad settings are refused by field.

use burn::optim::GradientsParams;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_model::{ActConfig, DepthConfig, ModelConfig, TaskShape};

const DIMS: TaskShape = TaskShape {
    vocab_size: 12,
    max_len: 8,
    n_classes: 3,
    paired: false,
};

fn config(act: ActConfig) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 2,
        n_layers: 1,
        d_ff: 32,
        dropout: 0.0,
        depth: DepthConfig::Act(act),
        ..ModelConfig::default()
    }
}

fn batch(device: &Device) -> (Tensor<2, Int>, Tensor<2, Bool>) {
    let tokens: Vec<i64> = (0..16).map(|i| 1 + (i * 7) % 11).collect();
    let padding: Vec<bool> = (0..16).map(|i| i % 8 >= 6 && i >= 8).collect();
    (
        Tensor::from_data(TensorData::new(tokens, [2, 8]), device),
        Tensor::from_data(TensorData::new(padding, [2, 8]), device),
    )
}

/// A one-sequence pass that ran `r` of `T` steps executed the analytic cost of a `T`-step model
/// less `T − r` steps: the same as the analytic cost of an `r`-step model. (One sequence, so the
/// identity holds whatever the initialisation: with several, those that halt early leave the
/// batch and save more.)
#[test]
fn skipped_flops_are_the_steps_not_run() {
    let device = Device::flex();
    device.seed(3);
    let model = config(ActConfig::with_max_steps(6))
        .init(DIMS, &device)
        .unwrap();
    let (t, p) = batch(&device);
    let out = model.forward(t.slice([0..1, 0..8]), p.slice([0..1, 0..8]));
    let run = out
        .layer_stats
        .iter()
        .find(|(n, _)| n == "act_steps_run")
        .unwrap()
        .1[0] as usize;
    assert!((1..=6).contains(&run), "{run}");
    let shorter = config(ActConfig::with_max_steps(run))
        .init(DIMS, &device)
        .unwrap();
    let executed = model.cost(1, 8).forward_flops - out.skipped_flops;
    let want = shorter.cost(1, 8).forward_flops;
    assert!(
        (executed - want).abs() <= 1e-9 * want,
        "{executed} vs {want}"
    );
    // Each step adds the same cost: T steps cost the 1-step model plus T − 1 steps.
    let steps = |t| {
        config(ActConfig::with_max_steps(t))
            .init(DIMS, &device)
            .unwrap()
            .cost(2, 8)
            .forward_flops
    };
    let step = steps(2) - steps(1);
    assert!(step > 0.0);
    let six = model.cost(2, 8).forward_flops;
    assert!((six - steps(1) - 5.0 * step).abs() <= 1e-9 * six);
}

/// The ponder cost alone gives the halting unit a gradient, and the task loss reaches the
/// step embeddings and the shared block.
#[test]
fn the_ponder_cost_trains_the_halting_unit() {
    let device = Device::flex().autodiff();
    device.seed(4);
    let model = config(ActConfig {
        ponder: 0.1,
        ..ActConfig::with_max_steps(4)
    })
    .init(DIMS, &device)
    .unwrap();
    let (t, p) = batch(&device);
    let out = model.forward(t, p);
    let ponder = out
        .aux_losses
        .iter()
        .find(|(n, _)| n == "ponder")
        .unwrap()
        .1
        .clone();
    let grads = GradientsParams::from_grads(ponder.backward(), &model);
    let params = eft_model_params(&model);
    let halt = params
        .iter()
        .find(|(n, _)| n.ends_with("act.halt.weight"))
        .unwrap();
    let g = grads
        .get::<2>(halt.1)
        .expect("the halting unit has a ponder gradient");
    let norm = g.abs().sum().into_scalar::<f64>();
    assert!(norm > 0.0, "{norm}");
}

/// Names and ids of the model's 2-D parameters.
fn eft_model_params(model: &eft_model::Classifier) -> Vec<(String, burn::module::ParamId)> {
    use burn::module::{Module, ModuleVisitor, Param};
    struct Names(Vec<String>, Vec<(String, burn::module::ParamId)>);
    impl ModuleVisitor for Names {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.0.push(name.into());
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.0.pop();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if D == 2 {
                self.1.push((self.0.join("."), param.id));
            }
        }
    }
    let mut names = Names(Vec::new(), Vec::new());
    model.visit(&mut names);
    names.1
}

#[test]
fn bad_act_settings_are_refused_by_field() {
    for (act, field) in [
        (ActConfig::with_max_steps(0), "model.depth.max_steps"),
        (
            ActConfig {
                threshold: 0.0,
                ..ActConfig::with_max_steps(3)
            },
            "model.depth.threshold",
        ),
        (
            ActConfig {
                threshold: 1.5,
                ..ActConfig::with_max_steps(3)
            },
            "model.depth.threshold",
        ),
        (
            ActConfig {
                ponder: -1.0,
                ..ActConfig::with_max_steps(3)
            },
            "model.depth.ponder",
        ),
    ] {
        let e = config(act).validate().unwrap_err().to_string();
        assert!(e.contains(field), "{e}");
    }
    let e = ModelConfig {
        recompute: eft_model::Recompute::Every(1),
        ..config(ActConfig::with_max_steps(3))
    }
    .validate()
    .unwrap_err()
    .to_string();
    assert!(e.contains("model.recompute"), "{e}");
    let c: ModelConfig = toml::from_str(
        "d_model = 16\nn_heads = 2\nn_layers = 1\nd_ff = 32\ndropout = 0.0\n\
         depth = { kind = \"act\", max_steps = 5 }",
    )
    .unwrap();
    assert_eq!(c.depth, DepthConfig::Act(ActConfig::with_max_steps(5)));
}
