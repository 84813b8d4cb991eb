//! Knowledge distillation (Hinton et al. 2015): a student trained on a finished run's softened
//! predictions beside the labels.
//!
//! The loss is `α·T²·KL(softmax(z_t/T) ‖ softmax(z_s/T)) + (1 − α)·CE(z_s, y)`, averaged over
//! the graded rows (every sequence, or every graded position of a per-position task). `T²` keeps
//! the soft term's gradient on the scale of the hard one's as `T` grows. The teacher is any
//! finished run of the same task (any mechanism, width or depth), loaded once and run without
//! gradient on the batch the student sees. A term whose weight is 0 is not computed, so `α = 0`
//! is the plain loss exactly.

use std::path::Path;

use burn::tensor::activation::{log_softmax, softmax};
use burn::tensor::{Device, Int, Tensor};
use eft_model::Classifier;
use serde::{Deserialize, Serialize};

use crate::{CHECKPOINT_FILE, Checkpoint, RunConfig, RunStatus, TrainError};

/// `train.distill = { teacher = "runs/NAME", temperature = 2, alpha = 0.5 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DistillConfig {
    /// The teacher: a finished run's folder, of the same task.
    pub teacher: String,
    /// Softmax temperature `T` > 0 of both distributions in the soft term. Default 2.
    #[serde(default = "default_temperature")]
    pub temperature: f64,
    /// Weight `α` ∈ [0, 1] of the soft term; the labels get `1 − α`. Default 0.5.
    #[serde(default = "default_alpha")]
    pub alpha: f64,
}

fn default_temperature() -> f64 {
    2.0
}

fn default_alpha() -> f64 {
    0.5
}

impl DistillConfig {
    /// Checks the temperature and the weight.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.temperature > 0.0 && self.temperature.is_finite()) {
            return Err(TrainError::config(
                "train.distill.temperature",
                self.temperature,
                "must be a number > 0 (1: the teacher's own distribution; 2–4 soften it)",
            ));
        }
        if !(0.0..=1.0).contains(&self.alpha) {
            return Err(TrainError::config(
                "train.distill.alpha",
                self.alpha,
                "must be in [0, 1]: the weight of the teacher's term (0: labels only)",
            ));
        }
        Ok(())
    }

    /// Loads the teacher onto `device` (no autodiff): its run must be finished and of the task
    /// `student` trains on.
    pub fn load_teacher(
        &self,
        student: &RunConfig,
        device: &Device,
    ) -> Result<Classifier, TrainError> {
        let dir = Path::new(&self.teacher);
        let bad =
            |problem: String| TrainError::config("train.distill.teacher", &self.teacher, problem);
        let path = dir.join(CHECKPOINT_FILE);
        if !path.is_file() {
            return Err(bad(
                "holds no checkpoint: give the folder of a finished run".into(),
            ));
        }
        let finished = crate::RunRecord::read(dir).is_some_and(|r| r.status == RunStatus::Finished);
        if !finished {
            return Err(bad(
                "has not finished: finish it first (eft train --resume DIR)".into(),
            ));
        }
        let checkpoint = Checkpoint::load(&path)?;
        if checkpoint.config.task.shape() != student.task.shape() {
            return Err(bad(format!(
                "is a run of task {} with other shapes; the teacher must be of task {} with the \
                 same data settings",
                checkpoint.config.task.name(),
                student.task.name()
            )));
        }
        crate::model_with_weights(&checkpoint.config, &checkpoint, &path, device)
    }
}

/// The distillation loss of student logits `z_s` against teacher logits `z_t` (both `[R, C]`,
/// the teacher's without gradient) and labels `[R]`; see the module documentation.
pub fn distillation_loss(
    student: Tensor<2>,
    teacher: Tensor<2>,
    labels: Tensor<1, Int>,
    config: &DistillConfig,
) -> Tensor<1> {
    let (t, alpha) = (config.temperature, config.alpha);
    let hard = (alpha < 1.0).then(|| crate::cross_entropy(student.clone(), labels) * (1.0 - alpha));
    if alpha == 0.0 {
        return hard.expect("alpha 0 keeps the hard term");
    }
    let rows = student.dims()[0] as f64;
    let target = softmax(teacher.clone() / t, 1);
    let kl =
        (target.clone() * (log_softmax(teacher / t, 1) - log_softmax(student / t, 1))).sum() / rows;
    let soft = kl * (alpha * t * t);
    match hard {
        Some(hard) => soft + hard,
        None => soft,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    fn config(temperature: f64, alpha: f64) -> DistillConfig {
        DistillConfig {
            teacher: String::new(),
            temperature,
            alpha,
        }
    }

    /// The loss and its gradient with respect to the student's logits against f64 by hand:
    /// `∂/∂z_s = α·T·(softmax(z_s/T) − softmax(z_t/T)) + (1 − α)·(softmax(z_s) − onehot(y))`,
    /// averaged over rows.
    #[test]
    fn loss_and_gradient_match_a_hand_computation() {
        let device = Device::flex().autodiff();
        let zs = [[1.0, -0.5, 2.0], [0.3, 0.1, -1.2]];
        let zt = [[0.5, 0.0, 3.0], [-1.0, 2.0, 0.2]];
        let y = [2i64, 0];
        let (t, alpha) = (2.5, 0.3);
        let flat = |z: &[[f64; 3]; 2]| z.iter().flatten().map(|&v| v as f32).collect::<Vec<_>>();
        let student =
            Tensor::<2>::from_data(TensorData::new(flat(&zs), [2, 3]), &device).require_grad();
        let teacher = Tensor::<2>::from_data(TensorData::new(flat(&zt), [2, 3]), &device);
        let labels = Tensor::<1, Int>::from_data(TensorData::new(y.to_vec(), [2]), &device);
        let loss = distillation_loss(student.clone(), teacher, labels, &config(t, alpha));
        let value = f64::from(loss.clone().into_scalar::<f32>());
        let grads = loss.backward();
        let grad: Vec<f64> = student
            .grad(&grads)
            .unwrap()
            .into_data()
            .iter::<f64>()
            .collect();

        let soft = |z: &[f64; 3], t: f64| {
            let m = z.iter().cloned().fold(f64::MIN, f64::max);
            let e: Vec<f64> = z.iter().map(|v| ((v - m) / t).exp()).collect();
            let s: f64 = e.iter().sum();
            e.into_iter().map(|v| v / s).collect::<Vec<f64>>()
        };
        let (mut want, mut want_grad) = (0.0, Vec::new());
        for r in 0..2 {
            let (ps_t, pt_t, ps) = (soft(&zs[r], t), soft(&zt[r], t), soft(&zs[r], 1.0));
            let kl: f64 = (0..3).map(|c| pt_t[c] * (pt_t[c] / ps_t[c]).ln()).sum();
            want += (alpha * t * t * kl - (1.0 - alpha) * ps[y[r] as usize].ln()) / 2.0;
            for c in 0..3 {
                let onehot = f64::from(u8::from(c == y[r] as usize));
                want_grad.push(
                    (alpha * t * (ps_t[c] - pt_t[c]) + (1.0 - alpha) * (ps[c] - onehot)) / 2.0,
                );
            }
        }
        assert!((value - want).abs() < 1e-5, "{value} against {want}");
        for (g, w) in grad.iter().zip(&want_grad) {
            assert!((g - w).abs() < 1e-5, "{grad:?} against {want_grad:?}");
        }
    }

    #[test]
    fn bad_temperature_and_weight_name_their_field() {
        for (t, a, field) in [
            (0.0, 0.5, "temperature"),
            (-1.0, 0.5, "temperature"),
            (2.0, 1.5, "alpha"),
            (2.0, -0.1, "alpha"),
        ] {
            let err = config(t, a).validate().unwrap_err().to_string();
            assert!(err.contains(field), "{err}");
        }
    }
}
