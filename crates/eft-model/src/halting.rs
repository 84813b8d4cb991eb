//! Adaptive computation time's bookkeeping (Graves 2016, as the Universal Transformer uses it):
//! per position, the halting probabilities `pₜ` of the steps so far accumulate until one more
//! would pass the threshold `1 − ε`; that step is the position's last, `N`, and takes the
//! remainder `R = 1 − Σ_{t<N} pₜ` as its weight. The position's output is `Σ_{t<N} pₜ·yₜ + R·y_N`
//! (weights summing to 1) and its ponder cost `N + R`. At the last allowed step every position
//! still running halts. Gradients flow through the probabilities (the weights and `R`); which
//! step halts is a comparison and has none.

use burn::tensor::{Bool, Tensor};

/// The halting state of a `[B, N]` grid of positions.
#[derive(Debug, Clone)]
pub struct Halting {
    /// `Σ pₜ` of the steps taken, 1 once halted.
    cumulative: Tensor<2>,
    /// `R` for halted positions, 0 before.
    remainders: Tensor<2>,
    /// Steps each position has taken (`N` once halted).
    updates: Tensor<2>,
    threshold: f64,
}

impl Halting {
    /// Every real position running; padding positions (`true`) count as halted from the start,
    /// with no steps and no remainder.
    pub fn new(padding: Tensor<2, Bool>, threshold: f64) -> Self {
        let cumulative = padding.float();
        Self {
            remainders: cumulative.zeros_like(),
            updates: cumulative.zeros_like(),
            cumulative,
            threshold,
        }
    }

    /// Positions still running (`true`) before the next step.
    pub fn running(&self) -> Tensor<2, Bool> {
        self.cumulative.clone().lower_elem(1.0)
    }

    /// Whether any position is still running.
    pub fn any_running(&self) -> bool {
        self.running().any().into_scalar::<bool>()
    }

    /// Takes one step with halting probabilities `p` (`[B, N]`, in (0, 1)); `last` forces every
    /// running position to halt. Returns each position's weight for this step's output: `pₜ`
    /// while it runs on, `R` at its halting step, 0 after.
    pub fn step(&mut self, p: Tensor<2>, last: bool) -> Tensor<2> {
        let running = self.running().float();
        let reach = self.cumulative.clone() + p.clone() * running.clone();
        let (halting, continuing) = match last {
            true => (running.clone(), running.zeros_like()),
            false => {
                let over = reach.greater_elem(self.threshold).float();
                (over.clone() * running.clone(), (over.neg() + 1.0) * running)
            }
        };
        self.cumulative = self.cumulative.clone() + p.clone() * continuing.clone();
        let remainder = (self.cumulative.clone().neg() + 1.0) * halting.clone();
        self.remainders = self.remainders.clone() + remainder.clone();
        self.cumulative = self.cumulative.clone() + remainder.clone();
        self.updates = self.updates.clone() + continuing.clone() + halting;
        p * continuing + remainder
    }

    /// `N + R` per position (0 at padding).
    pub fn ponder(&self) -> Tensor<2> {
        self.updates.clone() + self.remainders.clone()
    }

    /// Steps per position, `N` (no gradient).
    pub fn updates(&self) -> Tensor<2> {
        self.updates.clone()
    }

    /// Remainders per position, `R`.
    pub fn remainders(&self) -> Tensor<2> {
        self.remainders.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, TensorData};
    use eft_attention::testing::{assert_close, to_f64};

    fn grid(values: &[f32], device: &Device) -> Tensor<2> {
        Tensor::from_data(TensorData::new(values.to_vec(), [1, values.len()]), device)
    }

    /// Four positions, threshold 0.9, at most 3 steps, the last one padding:
    /// - a: p = 0.5, 0.6 → 0.5 + 0.6 > 0.9 at step 2: halts there, R = 0.5, N + R = 2.5;
    /// - b: p = 0.95 → over the threshold at once: halts at step 1 with R = 1, N + R = 2;
    /// - c: p = 0.2, 0.3, 0.1 → never reaches it: forced to halt at step 3, R = 0.5, N + R = 3.5;
    /// - padding: no steps, weight 0 throughout.
    #[test]
    fn halts_by_hand_with_remainders_and_ponder_costs() {
        let device = Device::flex();
        let pad = Tensor::<2, Bool>::from_data(
            TensorData::new(vec![false, false, false, true], [1, 4]),
            &device,
        );
        let mut h = Halting::new(pad, 0.9);
        let steps = [
            [0.5f32, 0.95, 0.2, 0.7],
            [0.6, 0.8, 0.3, 0.7],
            [0.9, 0.8, 0.1, 0.7],
        ];
        let want_weights = [
            [0.5, 1.0, 0.2, 0.0],
            [0.5, 0.0, 0.3, 0.0],
            [0.0, 0.0, 0.5, 0.0],
        ];
        let want_running = [
            [true, true, true, false],
            [true, false, true, false],
            [false, false, true, false],
        ];
        for (t, p) in steps.iter().enumerate() {
            let running: Vec<bool> = h.running().into_data().iter::<bool>().collect();
            assert_eq!(running, want_running[t], "running before step {}", t + 1);
            let w = h.step(grid(p, &device), t == 2);
            assert_close(
                &format!("weights of step {}", t + 1),
                &to_f64(w),
                &want_weights[t].map(f64::from),
                1e-6,
                1e-6,
            );
        }
        assert!(!h.any_running());
        assert_close("N", &to_f64(h.updates()), &[2.0, 1.0, 3.0, 0.0], 0.0, 0.0);
        assert_close(
            "R",
            &to_f64(h.remainders()),
            &[0.5, 1.0, 0.5, 0.0],
            1e-6,
            1e-6,
        );
        assert_close(
            "N + R",
            &to_f64(h.ponder()),
            &[2.5, 2.0, 3.5, 0.0],
            1e-6,
            1e-6,
        );
    }

    /// The ponder cost's gradient: `R = 1 − Σ_{t<N} pₜ`, so `∂(N + R)/∂pₜ = −1` for the steps
    /// before halting and 0 for the halting step and after; a position that halts at step 1 has
    /// no gradient.
    #[test]
    fn ponder_cost_gradient_is_minus_one_before_halting() {
        let device = Device::flex().autodiff();
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; 3], [1, 3]), &device);
        let mut h = Halting::new(pad, 0.9);
        let p1 = grid(&[0.5, 0.95, 0.2], &device).require_grad();
        let p2 = grid(&[0.6, 0.8, 0.3], &device).require_grad();
        let p3 = grid(&[0.9, 0.8, 0.1], &device).require_grad();
        h.step(p1.clone(), false);
        h.step(p2.clone(), false);
        h.step(p3.clone(), true);
        let grads = h.ponder().sum().backward();
        let g = |p: &Tensor<2>| to_f64(p.grad(&grads).unwrap());
        assert_close("step 1", &g(&p1), &[-1.0, 0.0, -1.0], 0.0, 0.0);
        assert_close("step 2", &g(&p2), &[0.0, 0.0, -1.0], 0.0, 0.0);
        assert_close("step 3", &g(&p3), &[0.0, 0.0, 0.0], 0.0, 0.0);
    }
}
