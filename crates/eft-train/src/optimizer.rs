//! Adam and AdamW with state keyed by parameter name.
//!
//! burn-optim's optimizers key their state by burn's random `ParamId`s, which a process that
//! reloads a checkpoint cannot reproduce, and they clip gradients per tensor rather than by the
//! global norm. Exact resume and LRA-style global clipping need both, so the update lives here:
//! a dozen lines of Adam, tested against a hand computation.

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::params::{NamedArray, PathStack};

/// Whether weight decay is added to the gradient (Adam) or applied to the weights (AdamW).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OptimizerKind {
    /// Adam with L2 regularisation: the decay term joins the gradient.
    Adam,
    /// AdamW: decoupled weight decay, `θ ← θ − lr·wd·θ` beside the Adam step.
    #[default]
    Adamw,
}

/// The optimizer's settings. TOML section `[train.optimizer]`; defaults are LRA's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerConfig {
    /// `adam` or `adamw`. Default `adamw`.
    pub kind: OptimizerKind,
    /// First-moment decay. Default 0.9.
    pub beta1: f64,
    /// Second-moment decay. Default 0.98.
    pub beta2: f64,
    /// Denominator guard. Default 1e-9.
    pub eps: f64,
    /// Weight decay. Default 0.
    pub weight_decay: f64,
}

impl Default for OptimizerConfig {
    fn default() -> Self {
        Self {
            kind: OptimizerKind::Adamw,
            beta1: 0.9,
            beta2: 0.98,
            eps: 1e-9,
            weight_decay: 0.0,
        }
    }
}

impl OptimizerConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), TrainError> {
        for (field, b) in [
            ("train.optimizer.beta1", self.beta1),
            ("train.optimizer.beta2", self.beta2),
        ] {
            if !(0.0..1.0).contains(&b) {
                return Err(TrainError::config(field, b, "must be in [0, 1)"));
            }
        }
        if self.eps.is_nan() || self.eps <= 0.0 {
            return Err(TrainError::config(
                "train.optimizer.eps",
                self.eps,
                "must be positive",
            ));
        }
        if self.weight_decay.is_nan() || self.weight_decay < 0.0 {
            return Err(TrainError::config(
                "train.optimizer.weight_decay",
                self.weight_decay,
                "must be zero or positive",
            ));
        }
        Ok(())
    }
}

/// Adam's moments for every parameter, by name, and the number of steps taken.
#[derive(Debug, Clone, Default)]
pub struct AdamState {
    /// Steps taken so far.
    pub steps: u64,
    moments: BTreeMap<String, (Tensor<1>, Tensor<1>)>,
}

impl AdamState {
    /// The moments as arrays, named `m.<param>` and `v.<param>`.
    pub fn export(&self) -> BTreeMap<String, NamedArray> {
        let mut out = BTreeMap::new();
        for (name, (m, v)) in &self.moments {
            out.insert(format!("m.{name}"), NamedArray::from_tensor(m));
            out.insert(format!("v.{name}"), NamedArray::from_tensor(v));
        }
        out
    }

    /// Rebuilds the state from [`AdamState::export`]'s arrays; `None` if a pair is incomplete.
    pub fn import(
        steps: u64,
        arrays: &BTreeMap<String, NamedArray>,
        device: &burn::tensor::Device,
    ) -> Option<Self> {
        let mut moments = BTreeMap::new();
        for (key, m) in arrays {
            let Some(name) = key.strip_prefix("m.") else {
                continue;
            };
            let v = arrays.get(&format!("v.{name}"))?;
            moments.insert(name.to_string(), (m.to_tensor(device), v.to_tensor(device)));
        }
        (moments.len() * 2 == arrays.len()).then_some(Self { steps, moments })
    }
}

/// One Adam(W) update of every parameter of `module` that has a gradient.
///
/// `grad_scale` multiplies every gradient first (global-norm clipping passes `clip / norm`).
pub fn adam_step<M: Module>(
    module: M,
    grads: &mut GradientsParams,
    state: &mut AdamState,
    config: &OptimizerConfig,
    lr: f64,
    grad_scale: f64,
) -> M {
    state.steps += 1;
    let mut step = AdamStep {
        path: PathStack::default(),
        grads,
        state,
        config,
        lr,
        grad_scale,
    };
    module.map(&mut step)
}

struct AdamStep<'a> {
    path: PathStack,
    grads: &'a mut GradientsParams,
    state: &'a mut AdamState,
    config: &'a OptimizerConfig,
    lr: f64,
    grad_scale: f64,
}

impl ModuleMapper for AdamStep<'_> {
    fn enter_module(&mut self, name: &str, _: &str) {
        self.path.enter(name);
    }

    fn exit_module(&mut self, _: &str, _: &str) {
        self.path.exit();
    }

    fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
        let (id, tensor, mapper) = param.consume();
        let Some(grad) = self.grads.remove::<D>(id) else {
            return Param::from_mapped_value(id, tensor, mapper);
        };
        let require_grad = tensor.is_require_grad();
        let theta = tensor.inner(); // plain tensor: the update is not part of any graph
        let shape = theta.dims();
        let n = shape.iter().product::<usize>();
        let theta1 = theta.reshape([n]);
        let c = self.config;
        let mut g = grad.reshape([n]) * self.grad_scale;
        if c.kind == OptimizerKind::Adam && c.weight_decay > 0.0 {
            g = g + theta1.clone() * c.weight_decay;
        }
        let name = self.path.name();
        let (m, v) = match self.state.moments.remove(&name) {
            Some((m, v)) => (
                m * c.beta1 + g.clone() * (1.0 - c.beta1),
                v * c.beta2 + g.square() * (1.0 - c.beta2),
            ),
            None => (g.clone() * (1.0 - c.beta1), g.square() * (1.0 - c.beta2)),
        };
        let t = self.state.steps as i32;
        let m_hat = m.clone() / (1.0 - c.beta1.powi(t));
        let v_hat = v.clone() / (1.0 - c.beta2.powi(t));
        let mut update = m_hat / (v_hat.sqrt() + c.eps);
        if c.kind == OptimizerKind::Adamw && c.weight_decay > 0.0 {
            update = update + theta1.clone() * c.weight_decay;
        }
        let new = (theta1 - update * self.lr).reshape(shape);
        self.state.moments.insert(name, (m, v));
        let mut new = Tensor::from_inner(new);
        if require_grad {
            new = new.require_grad();
        }
        Param::from_mapped_value(id, new, mapper)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};
    use burn::tensor::{Device, TensorData};

    #[derive(Module, Debug)]
    struct Tiny {
        layer: Linear,
    }

    /// Adam's first steps on f(w) = Σ w·x, where every gradient is known in closed form.
    fn run(kind: OptimizerKind, weight_decay: f64) -> (Vec<f32>, Vec<f32>) {
        let device = Device::flex().autodiff();
        device.seed(0);
        let mut model = Tiny {
            layer: LinearConfig::new(2, 1).with_bias(false).init(&device),
        };
        let w0 = crate::params::export_params(&model)["layer.weight"]
            .values
            .clone();
        let config = OptimizerConfig {
            kind,
            weight_decay,
            ..OptimizerConfig::default()
        };
        let mut state = AdamState::default();
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -3.0], [1, 2]), &device);
        for _ in 0..3 {
            let loss = model.layer.forward(x.clone()).sum();
            let mut grads = GradientsParams::from_grads(loss.backward(), &model);
            model = adam_step(model, &mut grads, &mut state, &config, 0.1, 0.5);
        }
        let w = crate::params::export_params(&model)["layer.weight"]
            .values
            .clone();
        (w0, w)
    }

    fn by_hand(w0: &[f32], kind: OptimizerKind, wd: f64) -> Vec<f64> {
        let (b1, b2, eps, lr, scale) = (0.9f64, 0.98f64, 1e-9, 0.1, 0.5);
        let x = [1.0, -3.0];
        w0.iter()
            .zip(x)
            .map(|(&w, xi)| {
                let (mut w, mut m, mut v) = (w as f64, 0.0, 0.0);
                for t in 1..=3 {
                    let mut g = xi * scale;
                    if kind == OptimizerKind::Adam {
                        g += wd * w;
                    }
                    m = b1 * m + (1.0 - b1) * g;
                    v = b2 * v + (1.0 - b2) * g * g;
                    let mut u = (m / (1.0 - b1.powi(t))) / ((v / (1.0 - b2.powi(t))).sqrt() + eps);
                    if kind == OptimizerKind::Adamw {
                        u += wd * w;
                    }
                    w -= lr * u;
                }
                w
            })
            .collect()
    }

    #[test]
    fn matches_a_hand_computation_for_adam_and_adamw() {
        for (kind, wd) in [
            (OptimizerKind::Adam, 0.0),
            (OptimizerKind::Adam, 0.3),
            (OptimizerKind::Adamw, 0.3),
        ] {
            let (w0, w) = run(kind, wd);
            let w: Vec<f64> = w.iter().map(|&x| x as f64).collect();
            eft_attention::testing::assert_close(
                &format!("{kind:?}"),
                &w,
                &by_hand(&w0, kind, wd),
                1e-5,
                1e-6,
            );
        }
    }

    #[test]
    fn global_grad_norm_covers_every_parameter() {
        let device = Device::flex().autodiff();
        device.seed(1);
        let model = Tiny {
            layer: LinearConfig::new(2, 2).init(&device),
        };
        // d(Σ W·x + b)/dW = x for each output column, d/db = 1: norm² = 2·|x|² + 2.
        let x = Tensor::<2>::from_data(TensorData::new(vec![3.0f32, -4.0], [1, 2]), &device);
        let grads = GradientsParams::from_grads(model.layer.forward(x).sum().backward(), &model);
        let norm = crate::params::grad_norm(&model, &grads);
        assert!((norm - (2.0f64 * 25.0 + 2.0).sqrt()).abs() < 1e-5, "{norm}");
    }

    #[test]
    fn state_round_trips_through_arrays() {
        let device = Device::flex();
        let mut state = AdamState {
            steps: 4,
            ..AdamState::default()
        };
        let t = |v: f32| Tensor::<1>::from_data(TensorData::new(vec![v, v + 1.0], [2]), &device);
        state.moments.insert("a.weight".into(), (t(1.0), t(2.0)));
        let arrays = state.export();
        assert_eq!(arrays.len(), 2);
        let back = AdamState::import(4, &arrays, &device).unwrap();
        assert_eq!(back.export(), arrays);
        let mut broken = arrays.clone();
        broken.remove("v.a.weight");
        assert!(AdamState::import(4, &broken, &device).is_none());
    }

    #[test]
    fn bad_betas_are_rejected() {
        let c = OptimizerConfig {
            beta2: 1.0,
            ..OptimizerConfig::default()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("train.optimizer.beta2")
        );
    }
}
