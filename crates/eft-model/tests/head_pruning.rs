//! Head pruning is exact: a model with heads cut out of its weights computes what the original
//! computes with those heads' outputs gated to zero, forward and gradients, for every mechanism
//! that allows it; the gates' gradients are the loss's derivatives in them.
//!
//! Its own test binary: burn's CPU generator is one per process and these tests seed it.

use std::sync::Mutex;

mod common;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use common::{DIMS, batch, built, flat, loss};
use eft_attention::testing::{small_configs, to_f64};
use eft_model::{Classifier, ModelConfig, Pool};

static GENERATOR: Mutex<()> = Mutex::new(());

/// Gradients agree to f32 rounding of differently shaped sums: ≤1.3e-4 seen (linear
/// attention's key gradients, which its normaliser nearly cancels); a wrong slice is O(1).
const GRAD_TOL: f64 = 5e-4;

/// Each layer keeps a different set of its four heads.
const KEPT: [&[usize]; 4] = [&[0, 2], &[1, 2, 3], &[3], &[0, 1, 2, 3]];

fn config(attention: eft_attention::AttentionConfig) -> ModelConfig {
    ModelConfig {
        d_model: 16,
        n_heads: 4,
        d_ff: 32,
        n_layers: 4,
        dropout: 0.0,
        // XL's segments need a pooled vector every segment sees.
        pool: Pool::Mean,
        attention,
        ..ModelConfig::default()
    }
}

fn pruned_config(attention: eft_attention::AttentionConfig) -> ModelConfig {
    ModelConfig {
        kept_heads: KEPT.iter().map(|k| k.to_vec()).collect(),
        ..config(attention)
    }
}

/// Gates of 1 on kept heads and 0 on the others.
fn gates() -> Vec<Vec<f32>> {
    KEPT.iter()
        .map(|kept| {
            (0..4)
                .map(|h| f32::from(u8::from(kept.contains(&h))))
                .collect()
        })
        .collect()
}

/// The model whose parameters are `model`'s gradients in `grads` (zeros where none).
fn gradient_model(model: Classifier, grads: &GradientsParams) -> Classifier {
    struct ToGrad<'a>(&'a GradientsParams);
    impl ModuleMapper for ToGrad<'_> {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let (id, tensor, mapper) = param.consume();
            let grad = self.0.get::<D>(id).unwrap_or_else(|| tensor.zeros_like());
            Param::from_mapped_value(id, grad, mapper)
        }
    }
    model.map(&mut ToGrad(grads))
}

/// Every parameter's values and shape, in visiting order.
fn values(model: &Classifier) -> Vec<(Vec<usize>, Vec<f64>)> {
    struct Collect(Vec<(Vec<usize>, Vec<f64>)>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push((param.dims().to_vec(), to_f64(param.val())));
        }
    }
    let mut c = Collect(Vec::new());
    model.visit(&mut c);
    c.0
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(1e-12f64, |a, x| a.max(x.abs()))
}

/// For every mechanism that allows head removal: the pruned model's logits and every
/// parameter's gradient equal the gated original's (its gradients sliced to the kept heads),
/// logits within 1e-5 of the largest, gradients within [`GRAD_TOL`] of each tensor's
/// largest; the pruned model has the parameter shapes that its
/// config builds (so its checkpoints load). Mechanisms that give heads index-dependent patterns
/// are refused by the config, naming the mechanism.
#[test]
fn pruned_heads_equal_gated_heads_forward_and_gradients() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let mut checked = 0;
    for attention in small_configs() {
        let name = attention.name();
        let pruned_cfg = pruned_config(attention.clone());
        if let Err(e) = attention.check_head_removal() {
            let refused = pruned_cfg.validate().unwrap_err().to_string();
            assert_eq!(refused, eft_model::ModelError::from(e).to_string());
            assert!(refused.contains(name), "{refused}");
            continue;
        }
        let device = Device::flex().autodiff();
        let original = built(config(attention), &device);
        let pruned = original.clone().keep_heads(&pruned_cfg).unwrap();
        let gated = original.with_head_gates(&gates());
        let (tokens, padding) = batch(&device);

        let want = gated.forward(tokens.clone(), padding.clone());
        let got = pruned.forward(tokens, padding);
        let (w, g) = (to_f64(want.logits.clone()), to_f64(got.logits.clone()));
        let err = w
            .iter()
            .zip(&g)
            .fold(0f64, |a, (x, y)| a.max((x - y).abs()));
        assert!(err <= 1e-5 * max_abs(&w), "{name} logits: {err}");

        let want_grads = GradientsParams::from_grads(loss(&want).backward(), &gated);
        let got_grads = flat(
            &pruned,
            &GradientsParams::from_grads(loss(&got).backward(), &pruned),
        );
        let sliced = gradient_model(gated, &want_grads)
            .with_head_gates(&[])
            .keep_heads(&pruned_cfg)
            .unwrap();
        let sliced = values(&sliced);
        assert_eq!(sliced.len(), got_grads.len(), "{name}: parameter count");
        // Each tensor against its largest entry, floored at 1e-4 of the model's largest gradient:
        // a tensor whose gradient is analytically ~0 (Sinkhorn's column bias, which the
        // normalisation cancels) holds only rounding.
        let model_largest = sliced.iter().fold(0f64, |a, (_, w)| a.max(max_abs(w)));
        let mut worst = 0f64;
        for (i, ((_, w), g)) in sliced.iter().zip(&got_grads).enumerate() {
            if g.is_empty() {
                assert!(
                    w.iter().all(|x| *x == 0.0),
                    "{name} parameter {i}: gradient on one side"
                );
                continue;
            }
            let scale = max_abs(w).max(1e-4 * model_largest);
            let err = w.iter().zip(g).fold(0f64, |a, (x, y)| a.max((x - y).abs())) / scale;
            assert!(
                err <= GRAD_TOL,
                "{name} parameter {i}: {err:.1e} of its scale"
            );
            worst = worst.max(err);
        }
        eprintln!(
            "{name}: logits {:.1e}, gradients {worst:.1e}",
            err / max_abs(&w)
        );
        let fresh = pruned_cfg.init(DIMS, &device).unwrap();
        let shapes = |m: &Classifier| values(m).into_iter().map(|(s, _)| s).collect::<Vec<_>>();
        assert_eq!(
            shapes(&pruned),
            shapes(&fresh),
            "{name}: shapes of the config's model"
        );
        // The preflight's lower bound on parameters holds, and shrinks with the heads.
        let count: usize = shapes(&fresh)
            .iter()
            .map(|s| s.iter().product::<usize>())
            .sum();
        let bound = pruned_cfg.parameters_at_least(DIMS);
        assert!(bound as usize <= count, "{name}: {bound} > {count}");
        assert!(bound < config(pruned_cfg.attention.clone()).parameters_at_least(DIMS));
        checked += 1;
    }
    assert!(
        checked >= 12,
        "only {checked} mechanisms allow head removal"
    );
}

/// A gate's gradient is the loss's derivative in it: central differences at ξ = 1 ± 0.01 agree
/// within 1% of the largest gate gradient.
#[test]
fn gate_gradients_are_derivatives_of_the_loss() {
    let _guard = GENERATOR.lock().unwrap_or_else(|e| e.into_inner());
    let device = Device::flex().autodiff();
    let model = built(config(Default::default()), &device);
    let ones = vec![vec![1.0f32; 4]; 4];
    let gated = model.clone().with_head_gates(&ones);
    let (tokens, padding) = batch(&device);
    let out = gated.forward(tokens.clone(), padding.clone());
    let grads = GradientsParams::from_grads(loss(&out).backward(), &gated);
    let analytic = gated.head_gate_gradients(&grads);
    assert_eq!(analytic.iter().map(Vec::len).collect::<Vec<_>>(), [4; 4]);
    let largest = analytic.iter().flatten().fold(0f32, |a, g| a.max(g.abs()));
    assert!(largest > 0.0);
    let loss_at = |gates: &[Vec<f32>]| {
        let m = model.clone().with_head_gates(gates);
        loss(&m.forward(tokens.clone(), padding.clone())).into_scalar::<f64>()
    };
    for layer in 0..4 {
        for head in 0..4 {
            let mut up = ones.clone();
            let mut down = ones.clone();
            up[layer][head] += 0.01;
            down[layer][head] -= 0.01;
            let numeric = (loss_at(&up) - loss_at(&down)) / 0.02;
            let err = (numeric - f64::from(analytic[layer][head])).abs();
            assert!(
                err <= 0.01 * f64::from(largest),
                "layer {layer} head {head}: {err}"
            );
        }
    }
}
