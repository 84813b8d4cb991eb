//! Mixed precision: a training step computes in bf16 or f16 on a copy of the weights cast for that
//! step, while the weights the optimiser updates and its moments stay in f32. f16's narrow range
//! needs dynamic loss scaling: the loss is multiplied by a scale before the backward pass and the
//! gradients divided by it after; a step whose gradients overflow is skipped and the scale halved,
//! and the scale doubles after 2000 clean steps.
//!
//! On burn's Flex backend bf16 arithmetic converts each operation's operands to f32 and back, and
//! its f16 matrix products convert while packing: on these CPUs low precision halves activation
//! memory but does not speed anything up (see `bench/results/precision/`).

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::optim::GradientsParams;
use burn::tensor::{FloatDType, Tensor};
use serde::{Deserialize, Serialize};

/// The attention mechanisms whose every operation follows its inputs' precision: all but `lsh`
/// (its padded rows came out NaN in bf16) and `cosformer` (its output came out NaN in f16).
pub const LOW_PRECISION: [&str; 17] = [
    "full",
    "flash",
    "local",
    "sliding",
    "strided",
    "fixed",
    "cascade",
    "blockbert",
    "longformer",
    "bigbird",
    "linear",
    "performer",
    "linformer",
    "synthesizer",
    "nystrom",
    "sinkhorn",
    "xl",
];

/// The float type a training step computes in. TOML `train.precision`: `"f32"` (default),
/// `"bf16"` or `"f16"` (with dynamic loss scaling).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Precision {
    /// Everything in f32.
    #[default]
    F32,
    /// bfloat16 compute: f32's range, 8 bits of mantissa; no loss scaling needed.
    Bf16,
    /// IEEE half compute with dynamic loss scaling.
    F16,
}

impl TryFrom<String> for Precision {
    type Error = String;

    /// Reads the TOML name; an unknown one is an error naming the field and the choices.
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "f16" => Ok(Precision::F16),
            other => Err(format!(
                "train.precision = \"{other}\": expected \"f32\", \"bf16\" or \"f16\""
            )),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::F16 => "f16",
        })
    }
}

impl Precision {
    /// The compute type of a low-precision step; `None` for f32.
    pub fn dtype(self) -> Option<FloatDType> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(FloatDType::BF16),
            Precision::F16 => Some(FloatDType::F16),
        }
    }

    /// The loss scaling a run in this precision starts with (f16 only).
    pub fn initial_scale(self) -> Option<LossScale> {
        (self == Precision::F16).then(LossScale::default)
    }

    /// What the record says about how the backend computes in this precision.
    pub fn backend_note(self) -> Option<&'static str> {
        match self {
            Precision::F32 => None,
            Precision::Bf16 => Some(
                "bf16 on burn Flex: every operation converts its operands to f32 and its result \
                 back; memory halves, time does not",
            ),
            Precision::F16 => Some(
                "f16 on burn Flex: no f16 arithmetic in these CPUs' hardware; matrix products \
                 convert to f32 while packing, element-wise operations per element; memory \
                 halves, time does not",
            ),
        }
    }
}

/// Dynamic loss scaling's state, checkpointed with the run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LossScale {
    /// What the loss is multiplied by before the backward pass.
    pub scale: f64,
    /// Steps since the scale last changed without an overflow.
    pub clean_steps: usize,
    /// Steps skipped because their gradients overflowed, over the run.
    pub skipped_steps: usize,
}

impl Default for LossScale {
    /// 2¹⁶, as PyTorch's `GradScaler` starts.
    fn default() -> Self {
        Self {
            scale: 65536.0,
            clean_steps: 0,
            skipped_steps: 0,
        }
    }
}

impl LossScale {
    /// Clean steps after which the scale doubles.
    pub const GROW_AFTER: usize = 2000;

    /// Records a step's outcome and says whether its update is applied: a step whose gradients
    /// are not all finite is skipped and halves the scale; 2000 clean steps in a row double it.
    pub fn update(&mut self, finite: bool) -> bool {
        if !finite {
            self.scale /= 2.0;
            self.clean_steps = 0;
            self.skipped_steps += 1;
            return false;
        }
        self.clean_steps += 1;
        if self.clean_steps == Self::GROW_AFTER {
            self.scale *= 2.0;
            self.clean_steps = 0;
        }
        true
    }
}

pub use eft_model::in_f32;

/// `model` with every float parameter cast to `dtype`, each a fresh leaf with its parameter's id:
/// its gradients come out keyed like the f32 model's.
pub fn cast_parameters<M: Module>(model: &M, dtype: FloatDType) -> M {
    struct Cast(FloatDType);
    impl ModuleMapper for Cast {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let dtype = self.0;
            param.map(|t| {
                let grad = t.is_require_grad();
                // A leaf of its own: the step's graph must not run back into the f32 weights.
                let low = Tensor::<D>::from_inner(t.inner().cast(dtype));
                if grad { low.require_grad() } else { low }
            })
        }
    }
    model.clone().map(&mut Cast(dtype))
}

/// The gradients of a low-precision step as f32 gradients of `model`, divided by `scale`.
pub fn f32_gradients<M: Module>(
    model: &M,
    mut grads: GradientsParams,
    scale: f64,
) -> GradientsParams {
    struct Convert<'a> {
        grads: &'a mut GradientsParams,
        out: GradientsParams,
        scale: f64,
    }
    impl ModuleVisitor for Convert<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(param.id) {
                let g = g.cast(FloatDType::F32);
                let g = if self.scale == 1.0 {
                    g
                } else {
                    g.div_scalar(self.scale)
                };
                self.out.register::<D>(param.id, g);
            }
        }
    }
    let mut visitor = Convert {
        grads: &mut grads,
        out: GradientsParams::new(),
        scale,
    };
    model.visit(&mut visitor);
    visitor.out
}

/// One training step of `model` in `precision`: `step` runs on the model itself in f32, or on a
/// copy of it cast to the compute type, its loss multiplied by `loss_scale`; the result's logits,
/// loss and gradients come back in f32 and unscaled.
pub fn step_in_precision<E>(
    precision: Precision,
    loss_scale: f64,
    model: &eft_model::Classifier,
    step: impl FnOnce(&eft_model::Classifier) -> Result<eft_model::StepGradients, E>,
) -> Result<eft_model::StepGradients, E> {
    let Some(dtype) = precision.dtype() else {
        return step(model);
    };
    let mut out = step(&cast_parameters(model, dtype))?;
    out.output.logits = in_f32(out.output.logits);
    out.grads = f32_gradients(model, out.grads, loss_scale);
    out.loss /= loss_scale;
    Ok(out)
}

/// Refuses low precision on a backend it was not built and tested for (only burn Flex, the CPU
/// backend, carries bf16 and f16 through every operation eft uses).
pub fn check_backend(
    precision: Precision,
    device: &burn::tensor::Device,
) -> Result<(), crate::TrainError> {
    let flex = matches!(
        device.clone().inner().as_dispatch(),
        burn::backend::DispatchDevice::Flex(_)
    );
    if precision == Precision::F32 || flex {
        return Ok(());
    }
    Err(crate::TrainError::config(
        "train.precision",
        precision,
        "low precision is built for the CPU backend (--device cpu) only so far; use \"f32\" here",
    ))
}

/// `grads` with the first gradient of `model` made infinite (an injected overflow).
pub(crate) fn poisoned<M: Module>(model: &M, mut grads: GradientsParams) -> GradientsParams {
    struct Poison<'a>(&'a mut GradientsParams, bool);
    impl ModuleVisitor for Poison<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if !self.1
                && let Some(g) = self.0.remove::<D>(param.id)
            {
                self.0.register::<D>(param.id, g.mul_scalar(f32::INFINITY));
                self.1 = true;
            }
        }
    }
    model.visit(&mut Poison(&mut grads, false));
    grads
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An overflow skips the step and halves the scale; 2000 clean steps double it.
    #[test]
    fn the_scale_halves_on_overflow_and_grows_after_clean_steps() {
        let mut s = LossScale::default();
        assert!(!s.update(false));
        assert_eq!((s.scale, s.skipped_steps, s.clean_steps), (32768.0, 1, 0));
        for _ in 0..LossScale::GROW_AFTER - 1 {
            assert!(s.update(true));
        }
        assert_eq!(s.scale, 32768.0);
        assert!(s.update(true));
        assert_eq!((s.scale, s.clean_steps), (65536.0, 0));
    }

    #[test]
    fn reads_its_toml_names_and_names_the_field_otherwise() {
        #[derive(Deserialize, Debug)]
        struct T {
            #[allow(dead_code)]
            precision: Precision,
        }
        for (text, want) in [
            ("f32", Precision::F32),
            ("bf16", Precision::Bf16),
            ("f16", Precision::F16),
        ] {
            let t: T = toml::from_str(&format!("precision = \"{text}\"")).unwrap();
            assert_eq!(t.precision, want);
            assert_eq!(want.to_string(), text);
        }
        let e = toml::from_str::<T>("precision = \"fp8\"")
            .unwrap_err()
            .to_string();
        assert!(e.contains("train.precision") && e.contains("bf16"), "{e}");
    }
}
