//! The Universal Transformer with adaptive computation time (Dehghani et al. 2019; Graves 2016):
//! the encoder's stack of blocks is one step, applied again and again to its own output with a
//! learned step embedding added, while a halting unit decides per position how many steps it
//! takes ([`crate::Halting`]). A position that has halted is frozen: its state stops changing
//! (the others still attend to it). A sequence whose positions have all halted leaves the batch:
//! each step runs the blocks on the sequences still running only. The batch stops when every
//! position has halted, or after `max_steps`.

use burn::module::{Module, Param};
use burn::nn::{Initializer, Linear, LinearConfig};
use burn::tensor::{Bool, Device, Int, Tensor, activation::sigmoid};
use serde::{Deserialize, Serialize};

use crate::{Halting, ModelConfig, ModelCost, dense, in_f32, linear_flops};

/// How deep the encoder runs. TOML `model.depth = { kind = "fixed" }` (default: each of
/// `n_layers` blocks once) or `{ kind = "act", max_steps = T, threshold = 0.99, ponder = 0.01 }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum DepthConfig {
    /// The `n_layers` blocks, each once.
    #[default]
    Fixed,
    /// The `n_layers` blocks as one step, repeated per position until it halts.
    Act(ActConfig),
}

/// Adaptive computation time's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActConfig {
    /// The most steps any position takes; at least 1.
    pub max_steps: usize,
    /// A position halts at the step whose probability would take its running sum past this,
    /// `1 − ε`; in (0, 1]. Default 0.99.
    #[serde(default = "default_threshold")]
    pub threshold: f64,
    /// Weight τ of the ponder cost `τ·mean(N + R)` over real positions. Default 0.01.
    #[serde(default = "default_ponder")]
    pub ponder: f64,
}

fn default_threshold() -> f64 {
    0.99
}

fn default_ponder() -> f64 {
    0.01
}

impl ActConfig {
    /// `max_steps` steps with the other fields at their defaults.
    pub fn with_max_steps(max_steps: usize) -> Self {
        Self {
            max_steps,
            threshold: default_threshold(),
            ponder: default_ponder(),
        }
    }
}

/// FLOPs per position of one step's bookkeeping besides the halting unit's dot product: its
/// sigmoid (3) and the halting arithmetic (about 12).
pub const ACT_POSITION_FLOPS: f64 = 15.0;

/// What the recurrence did in one forward pass.
#[derive(Debug, Clone)]
pub struct ActReport {
    /// `τ·mean(N + R)` over real positions.
    pub ponder: Tensor<1>,
    /// Mean steps `N` per real position.
    pub mean_steps: f64,
    /// Steps the batch ran: until its last position halted.
    pub steps_run: usize,
    /// Sequences the blocks ran on, summed over the steps.
    pub sequence_steps: usize,
    /// Sequences in the batch.
    pub sequences: usize,
    /// Forward FLOPs the analytic count includes (`max_steps` steps of every sequence) and the
    /// pass did not run: the steps after the batch stopped, and halted sequences' blocks.
    pub skipped_flops: f64,
}

/// The halting unit and the step embeddings.
#[derive(Module, Debug)]
pub struct Act {
    /// `[d, 1]`, its bias starting at 1 (p ≈ 0.73: most positions halt after two steps at
    /// first).
    halt: Linear,
    /// A learned vector per step, `[max_steps, d]`.
    steps: Param<Tensor<2>>,
    #[module(skip)]
    config: ActConfig,
}

impl Act {
    /// Builds the halting unit and step embeddings for `config.depth`'s settings `act`.
    pub fn new(config: &ModelConfig, act: &ActConfig, device: &Device) -> Self {
        let mut halt = LinearConfig::new(config.d_model, 1)
            .with_initializer(Initializer::XavierUniform { gain: 1.0 })
            .init(device);
        halt.bias = halt
            .bias
            .map(|b| b.map(|t| t.ones_like()).set_require_grad(true));
        let steps = Initializer::Normal {
            mean: 0.0,
            std: 0.02,
        }
        .init([act.max_steps, config.d_model], device);
        Self {
            halt,
            steps,
            config: act.clone(),
        }
    }

    /// Runs `step` (the stack of blocks, on a batch and its padding) recurrently on `x` as the
    /// module docs say; `blocks_flops` is the stack's forward FLOPs for the whole batch, for the
    /// report.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; padding: `[B, N]` → `[B, N, d]`
    pub fn run(
        &self,
        x: Tensor<3>,
        padding: Option<Tensor<2, Bool>>,
        blocks_flops: f64,
        step: impl Fn(Tensor<3>, Tensor<2, Bool>) -> Tensor<3>,
    ) -> (Tensor<3>, ActReport) {
        let [batch, len, d] = x.dims();
        let device = x.device();
        let padding =
            padding.unwrap_or_else(|| Tensor::<2, Int>::zeros([batch, len], &device).bool());
        let real = padding
            .clone()
            .bool_not()
            .int()
            .sum()
            .into_scalar::<i64>()
            .max(1) as f64;
        let mut halting = Halting::new(padding.clone(), self.config.threshold);
        let (mut state, mut out) = (x.clone(), x.zeros_like());
        let max_steps = self.config.max_steps;
        let (mut steps_run, mut sequence_steps) = (0, 0);
        for t in 0..max_steps {
            // The sequences with a position still running: one read back per step, which also
            // stops the batch once every position has halted.
            let running = halting.running();
            let live: Vec<i64> = running
                .clone()
                .any_dim(1)
                .into_data()
                .iter::<bool>()
                .enumerate()
                .filter(|(_, running)| *running)
                .map(|(b, _)| b as i64)
                .collect();
            if live.is_empty() {
                break;
            }
            let running = running.float().cast(x.dtype()).unsqueeze_dim::<3>(2);
            let p = in_f32(sigmoid(dense::apply(&self.halt, state.clone()))).reshape([batch, len]);
            let weight = halting.step(p, t + 1 == max_steps);
            let embedding = self
                .steps
                .val()
                .slice([t..t + 1, 0..d])
                .unsqueeze_dim::<3>(0);
            let input = state.clone() + embedding.cast(x.dtype());
            let y = if live.len() == batch {
                step(input, padding.clone())
            } else {
                // Halted sequences keep their state (their weights and running flags are 0).
                let rows = Tensor::<1, Int>::from_data(
                    burn::tensor::TensorData::new(live.clone(), [live.len()]),
                    &device,
                );
                let stepped = step(
                    input.select(0, rows.clone()),
                    padding.clone().select(0, rows.clone()),
                );
                let change = stepped - state.clone().select(0, rows.clone());
                state
                    .clone()
                    .select_assign(0, rows, change, burn::tensor::IndexingUpdateOp::Add)
            };
            sequence_steps += live.len();
            out = out + y.clone() * weight.cast(x.dtype()).unsqueeze_dim::<3>(2);
            // Halted positions keep their state: the others still attend to it.
            state = state.clone() + (y - state) * running;
            steps_run += 1;
        }
        let ponder = halting.ponder().sum().reshape([1]) * (self.config.ponder / real);
        let mean_steps = halting.updates().sum().into_scalar::<f64>() / real;
        let own = self.step_cost(batch * len).forward_flops;
        let per_sequence = blocks_flops / batch as f64;
        let executed = steps_run as f64 * own + sequence_steps as f64 * per_sequence;
        let report = ActReport {
            ponder,
            mean_steps,
            steps_run,
            sequence_steps,
            sequences: batch,
            skipped_flops: max_steps as f64 * (own + blocks_flops) - executed,
        };
        (out, report)
    }

    /// Steps the analytic count runs: `max_steps`.
    pub fn max_steps(&self) -> usize {
        self.config.max_steps
    }

    /// One step's own cost for `rows` positions of width `d`, besides the blocks': the halting
    /// unit, the step embedding's addition, the output's weighted sum (2 per element) and the
    /// frozen-state update (3 per element).
    pub fn step_cost(&self, rows: usize) -> ModelCost {
        let d = self.steps.dims()[1];
        let flops = linear_flops(rows, d, 1, true)
            + ACT_POSITION_FLOPS * rows as f64
            + 6.0 * (rows * d) as f64;
        ModelCost::layer(flops, 3.0 * (rows * d) as f64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::TensorData;
    use eft_attention::testing::{assert_close, to_f64};
    use std::cell::RefCell;

    /// An ACT unit whose halting probability is `sigmoid(x₀)` (the first channel) and whose step
    /// embeddings are zero, over width 3.
    fn unit(max_steps: usize, device: &Device) -> Act {
        let config = ModelConfig {
            d_model: 3,
            ..ModelConfig::default()
        };
        let mut act = Act::new(&config, &ActConfig::with_max_steps(max_steps), device);
        let w = TensorData::new(vec![1.0f32, 0.0, 0.0], [3, 1]);
        act.halt.weight = Param::from_tensor(Tensor::from_data(w, device));
        act.halt.bias = Some(Param::from_tensor(Tensor::zeros([1], device)));
        act.steps = Param::from_tensor(Tensor::zeros([max_steps, 3], device));
        act
    }

    fn logit(p: f64) -> f32 {
        (p / (1.0 - p)).ln() as f32
    }

    /// Three positions with constant halting probabilities 0.995, 0.5 and 0.2 (the step leaves the
    /// first channel alone), at most 3 steps, threshold 0.99: they halt at steps 1, 2 and 3 (the
    /// last forced) with remainders 1, 0.5 and 0.6. The step adds (0, 1, 10): a halted position's
    /// state stops changing, so the inputs the step sees freeze, and each output is the weighted
    /// sum of its steps' outputs.
    #[test]
    fn halted_positions_freeze_and_outputs_weight_their_steps() {
        let device = Device::flex();
        let act = unit(3, &device);
        let first = [logit(0.995), logit(0.5), logit(0.2)];
        let x = Tensor::<3>::from_data(
            TensorData::new(
                first
                    .iter()
                    .flat_map(|&f| [f, 0.0, 0.0])
                    .collect::<Vec<f32>>(),
                [1, 3, 3],
            ),
            &device,
        );
        let seen = RefCell::new(Vec::new());
        let shift =
            Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 1.0, 10.0], [1, 1, 3]), &device);
        let (out, report) = act.run(x, None, 7.0, |h, _| {
            seen.borrow_mut().push(to_f64(h.clone()));
            h + shift.clone()
        });
        assert_eq!(report.steps_run, 3);
        assert_eq!(report.sequence_steps, 3, "one sequence, three steps");
        assert_eq!(report.skipped_flops, 0.0);
        assert!((report.mean_steps - 2.0).abs() < 1e-12);
        // Second channel of each position's input at each step: it grows by 1 per step taken.
        let second = |step: usize, pos: usize| seen.borrow()[step][pos * 3 + 1];
        let inputs: Vec<[f64; 3]> = (0..3).map(|t| [0, 1, 2].map(|p| second(t, p))).collect();
        assert_eq!(inputs, [[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 2.0, 2.0]]);
        // Outputs: Σ wₜ·yₜ with yₜ = input + (0, 1, 10).
        let want = [
            [first[0] as f64, 1.0, 10.0],                   // 1·y₁
            [first[1] as f64, 0.5 * 1.0 + 0.5 * 2.0, 15.0], // 0.5·y₁ + 0.5·y₂
            [
                first[2] as f64,
                0.2 + 0.2 * 2.0 + 0.6 * 3.0,
                0.2 * 10.0 + 0.2 * 20.0 + 0.6 * 30.0,
            ],
        ];
        let want: Vec<f64> = want.iter().flatten().copied().collect();
        assert_close("weighted outputs", &to_f64(out), &want, 1e-5, 1e-5);
        // N + R = (1 + 1) + (2 + 0.5) + (3 + 0.6), mean 8.1 / 3, times τ = 0.01.
        let ponder = report.ponder.into_scalar::<f64>();
        assert!((ponder - 0.01 * 8.1 / 3.0).abs() < 1e-6, "{ponder}");
    }

    /// Two sequences, the first halting at step 1 (p = 0.995), the second at step 3 (p = 0.4):
    /// steps 2 and 3 run the blocks on the second alone, and the first's output is its step-1
    /// output; only the second sequence's blocks count after step 1.
    #[test]
    fn halted_sequences_leave_the_batch() {
        let device = Device::flex();
        let act = unit(4, &device);
        let x = Tensor::<3>::from_data(
            TensorData::new(
                vec![logit(0.995), 0.0, 0.0, logit(0.4), 0.0, 0.0],
                [2, 1, 3],
            ),
            &device,
        );
        let rows = RefCell::new(Vec::new());
        let shift =
            Tensor::<3>::from_data(TensorData::new(vec![0.0f32, 1.0, 0.0], [1, 1, 3]), &device);
        let (out, report) = act.run(x, None, 10.0, |h, pad| {
            assert_eq!(pad.dims()[0], h.dims()[0]);
            rows.borrow_mut().push(h.dims()[0]);
            h + shift.clone()
        });
        assert_eq!(*rows.borrow(), [2, 1, 1]);
        assert_eq!((report.steps_run, report.sequence_steps), (3, 4));
        // Sequence 1: 1·y₁ = (p, 1, 0); sequence 2: 0.4·1 + 0.4·2 + 0.2·3 = 1.8.
        let got = to_f64(out);
        assert!(
            (got[1] - 1.0).abs() < 1e-6 && (got[4] - 1.8).abs() < 1e-5,
            "{got:?}"
        );
        // Four steps of two sequences analytic; three steps of bookkeeping and 4 sequence-steps
        // of blocks (5 per sequence) run.
        let own = act.step_cost(2).forward_flops;
        assert!((report.skipped_flops - (4.0 * (own + 10.0) - 3.0 * own - 4.0 * 5.0)).abs() < 1e-9);
    }

    /// When every position halts early the batch stops: the steps not run are reported as
    /// skipped, and padding positions neither run nor count.
    #[test]
    fn the_batch_stops_when_every_position_has_halted() {
        let device = Device::flex();
        let act = unit(6, &device);
        let x = Tensor::<3>::from_data(
            TensorData::new(vec![logit(0.6), 0.0, 0.0, -30.0, 0.0, 0.0], [1, 2, 3]),
            &device,
        );
        let pad = Tensor::<2, Bool>::from_data(TensorData::new(vec![false, true], [1, 2]), &device);
        let calls = RefCell::new(0);
        let (_, report) = act.run(x, Some(pad), 7.0, |h, _| {
            *calls.borrow_mut() += 1;
            h
        });
        // p = 0.6: 0.6, then 1.2 > 0.99 at step 2. The padding position's p ≈ 0 is ignored.
        assert_eq!((report.steps_run, *calls.borrow()), (2, 2));
        let own = act.step_cost(2).forward_flops;
        assert_eq!(report.skipped_flops, 4.0 * (own + 7.0));
        assert!((report.mean_steps - 2.0).abs() < 1e-12);
        let ponder = report.ponder.into_scalar::<f64>();
        assert!((ponder - 0.01 * 2.4).abs() < 1e-6, "{ponder}");
    }
}
