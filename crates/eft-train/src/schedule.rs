//! Learning-rate schedules: constant, LRA's rsqrt with warmup, and cosine with warmup.
//!
//! Not burn-optim's schedulers: those are stateful iterators (`step()` advances them), whose state a
//! checkpoint would have to carry; a pure function of `(step, total)` resumes exactly by
//! construction. Where burn has the same formula (rsqrt is its Noam), a test checks they agree.

use serde::{Deserialize, Serialize};

use crate::TrainError;

/// How the learning rate moves with the step. TOML section `[train.schedule]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Schedule {
    /// The same rate at every step.
    Constant {
        /// Learning rate.
        lr: f64,
    },
    /// LRA's schedule: `lr · min(1, t/warmup) / √max(t, warmup)`, `t` counting from 1.
    Rsqrt {
        /// Base rate (LRA: 0.05); the peak, reached at `t = warmup`, is `lr/√warmup`.
        lr: f64,
        /// Warmup steps; at least 1.
        warmup: usize,
    },
    /// Linear warmup to `lr`, then half a cosine down to `min_lr` at the last step.
    Cosine {
        /// Peak learning rate.
        lr: f64,
        /// Warmup steps (may be 0).
        warmup: usize,
        /// Final learning rate. Default 0.
        #[serde(default)]
        min_lr: f64,
    },
}

impl Schedule {
    /// The learning rate at `step` (counting from 0) of a run of `total` steps.
    pub fn lr(&self, step: usize, total: usize) -> f64 {
        let t = (step + 1) as f64;
        match *self {
            Schedule::Constant { lr } => lr,
            Schedule::Rsqrt { lr, warmup } => {
                let w = warmup as f64;
                lr * (t / w).min(1.0) / t.max(w).sqrt()
            }
            Schedule::Cosine { lr, warmup, min_lr } => {
                if step < warmup {
                    return lr * t / warmup as f64;
                }
                let span = total.saturating_sub(warmup).max(1) as f64;
                let progress = ((step - warmup) as f64 / span).min(1.0);
                min_lr + (lr - min_lr) * 0.5 * (1.0 + (std::f64::consts::PI * progress).cos())
            }
        }
    }

    /// Checks rates and warmup against a run of `total` steps.
    pub fn validate(&self, total: usize) -> Result<(), TrainError> {
        let (lr, warmup) = match *self {
            Schedule::Constant { lr } => (lr, None),
            Schedule::Rsqrt { lr, warmup } => {
                if warmup == 0 {
                    return Err(TrainError::config(
                        "train.schedule.warmup",
                        0,
                        "the rsqrt schedule needs warmup ≥ 1",
                    ));
                }
                (lr, Some(warmup))
            }
            Schedule::Cosine { lr, warmup, min_lr } => {
                // The rate first: min_lr's bound is only meaningful for a valid one.
                check_lr(lr)?;
                if !(0.0..=lr).contains(&min_lr) {
                    return Err(TrainError::config(
                        "train.schedule.min_lr",
                        min_lr,
                        format!("must be in [0, lr = {lr}]"),
                    ));
                }
                (lr, Some(warmup))
            }
        };
        check_lr(lr)?;
        if let Some(w) = warmup
            && w >= total
            && !matches!(self, Schedule::Rsqrt { .. })
        {
            return Err(TrainError::config(
                "train.schedule.warmup",
                w,
                format!(
                    "must be below train.steps = {total}; lower it with \
                     --set train.schedule.warmup={}",
                    total / 10
                ),
            ));
        }
        Ok(())
    }
}

/// A learning rate must be a positive, finite number.
fn check_lr(lr: f64) -> Result<(), TrainError> {
    if lr > 0.0 && lr.is_finite() {
        return Ok(());
    }
    Err(TrainError::config(
        "train.schedule.lr",
        lr,
        "must be a positive number",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// LRA's rsqrt is burn-optim's Noam schedule with model size 1: the same rate at every step.
    #[test]
    fn rsqrt_is_burns_noam_schedule() {
        use burn::lr_scheduler::noam::NoamLrSchedulerConfig;
        let (lr, warmup) = (0.05, 1000);
        let ours = Schedule::Rsqrt { lr, warmup };
        let mut noam = NoamLrSchedulerConfig::new(lr)
            .with_warmup_steps(warmup)
            .with_model_size(1)
            .init()
            .unwrap();
        for step in 0..5000 {
            let theirs = noam.step().base();
            let mine = ours.lr(step, 5000);
            assert!(
                (mine - theirs).abs() <= 1e-15 * theirs,
                "step {step}: {mine} vs {theirs}"
            );
        }
    }

    #[test]
    fn rsqrt_warms_up_linearly_then_decays_as_inverse_root() {
        let s = Schedule::Rsqrt {
            lr: 0.05,
            warmup: 100,
        };
        let peak = 0.05 / 10.0;
        assert!((s.lr(99, 1000) - peak).abs() < 1e-12);
        assert!((s.lr(49, 1000) - peak * 0.5).abs() < 1e-12);
        assert!((s.lr(399, 1000) - 0.05 / 20.0).abs() < 1e-12);
        let max = (0..1000).map(|t| s.lr(t, 1000)).fold(0.0, f64::max);
        assert!((max - peak).abs() < 1e-12);
    }

    #[test]
    fn cosine_warms_up_peaks_and_ends_at_min() {
        let s = Schedule::Cosine {
            lr: 1e-3,
            warmup: 10,
            min_lr: 1e-5,
        };
        assert!((s.lr(0, 110) - 1e-4).abs() < 1e-15);
        assert!((s.lr(10, 110) - 1e-3).abs() < 1e-15);
        assert!((s.lr(60, 110) - (1e-5 + (1e-3 - 1e-5) * 0.5)).abs() < 1e-12);
        assert!((s.lr(110, 110) - 1e-5).abs() < 1e-15);
        let rates: Vec<f64> = (10..110).map(|t| s.lr(t, 110)).collect();
        assert!(
            rates.windows(2).all(|w| w[1] <= w[0]),
            "decays monotonically"
        );
    }

    #[test]
    fn constant_is_constant() {
        let s = Schedule::Constant { lr: 0.3 };
        assert_eq!(s.lr(0, 5), 0.3);
        assert_eq!(s.lr(4, 5), 0.3);
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = Schedule::Constant { lr: 0.0 }.validate(10).unwrap_err();
        assert!(e.to_string().contains("train.schedule.lr"));
        let e = Schedule::Rsqrt { lr: 0.1, warmup: 0 }
            .validate(10)
            .unwrap_err();
        assert!(e.to_string().contains("warmup"));
        let e = Schedule::Cosine {
            lr: 0.1,
            warmup: 10,
            min_lr: 0.0,
        }
        .validate(10)
        .unwrap_err();
        assert!(e.to_string().contains("train.steps = 10"));
    }
}
