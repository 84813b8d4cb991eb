//! The run record: what a run was, what it measured, and how it ended, as `record.json`.

use std::collections::BTreeMap;

use eft_model::ModelOutput;
use serde::{Deserialize, Serialize};

use crate::RunConfig;

/// One validation pass during training.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EvalPoint {
    /// Steps completed when it ran.
    pub step: usize,
    /// Mean training loss since the previous evaluation.
    pub train_loss: f64,
    /// Validation loss.
    pub val_loss: f64,
    /// Validation accuracy in [0, 1].
    pub val_accuracy: f64,
    /// Learning rate of the last step.
    pub lr: f64,
    /// Wall-clock training seconds so far.
    pub seconds: f64,
    /// Mean of each auxiliary loss since the previous evaluation (none for a dense model).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub aux_losses: BTreeMap<String, f64>,
    /// Mean of each per-layer statistic since the previous evaluation, one value per layer.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub layer_stats: BTreeMap<String, Vec<f64>>,
}

/// Sums of what a model reported beside its logits ([`ModelOutput`]) since the last evaluation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct ExtraSums {
    /// Steps summed.
    pub steps: usize,
    /// Sum of each auxiliary loss.
    pub aux_losses: BTreeMap<String, f64>,
    /// Sum of each per-layer statistic, per layer.
    pub layer_stats: BTreeMap<String, Vec<f64>>,
}

impl ExtraSums {
    /// Adds one step's auxiliary losses and statistics; a step that reports none costs nothing.
    pub fn add(&mut self, output: &ModelOutput) {
        if output.aux_losses.is_empty() && output.layer_stats.is_empty() {
            return;
        }
        self.steps += 1;
        for (name, loss) in &output.aux_losses {
            *self.aux_losses.entry(name.clone()).or_default() += loss.clone().into_scalar::<f64>();
        }
        for (name, values) in &output.layer_stats {
            let sums = self.layer_stats.entry(name.clone()).or_default();
            sums.resize(sums.len().max(values.len()), 0.0);
            sums.iter_mut().zip(values).for_each(|(s, v)| *s += v);
        }
    }

    /// Whether nothing was summed.
    pub fn is_empty(&self) -> bool {
        self.steps == 0
    }

    /// The means of everything summed, leaving the sums empty.
    pub fn take_means(&mut self) -> (BTreeMap<String, f64>, BTreeMap<String, Vec<f64>>) {
        let n = self.steps.max(1) as f64;
        let sums = std::mem::take(self);
        let aux = sums
            .aux_losses
            .into_iter()
            .map(|(k, v)| (k, v / n))
            .collect();
        let stats = sums
            .layer_stats
            .into_iter()
            .map(|(k, v)| (k, v.into_iter().map(|x| x / n).collect()))
            .collect();
        (aux, stats)
    }
}

/// What pruning did to a run's weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PruneRecord {
    /// The pruning asked for.
    pub asked: crate::prune::PruneConfig,
    /// The share of the prunable weights that are zero at the end of the run.
    pub sparsity: f64,
    /// Prunable weights.
    pub prunable: usize,
}

/// A language model's test cross-entropy in bits per byte, beside the unigram model's (byte
/// frequencies of the training split), the baseline it must beat.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BitsPerByte {
    /// The model's: its test loss (nats per byte) over ln 2.
    pub test: f64,
    /// The unigram model's on the same test bytes.
    pub unigram: f64,
}

/// Loss and accuracy over a whole split.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EvalResult {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Examples evaluated.
    pub examples: usize,
}

/// Always predicting the most frequent training class.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Baseline {
    /// The class predicted.
    pub class: u32,
    /// Its accuracy on the test split.
    pub test_accuracy: f64,
}

/// How far a run got.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Still training (the record is refreshed at every checkpoint).
    Running,
    /// Stopped early; `eft train --resume` continues it.
    Interrupted,
    /// All steps done and the test split evaluated.
    Finished,
    /// Stopped at a step whose loss or gradient was not finite; the checkpoint before it is kept.
    Diverged,
}

/// Everything a run reports, written to `<run>/record.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    /// How far the run got.
    pub status: RunStatus,
    /// The eft version that trained it.
    pub eft_version: String,
    /// The git commit eft was built from, or `unknown`.
    pub git_commit: String,
    /// The full config.
    pub config: RunConfig,
    /// Steps completed.
    pub steps_done: usize,
    /// Trainable parameters.
    pub parameters: usize,
    /// Examples in the train, validation and test splits.
    pub split_sizes: [usize; 3],
    /// Validation results during training.
    pub evals: Vec<EvalPoint>,
    /// The final test result (`None` until finished).
    pub test: Option<EvalResult>,
    /// The majority-class baseline on the test split.
    pub majority_baseline: Baseline,
    /// Wall-clock seconds spent training, over all sessions (evaluation included).
    pub wall_clock_seconds: f64,
    /// Real (non-padding) tokens trained on.
    pub tokens: u64,
    /// `tokens / wall_clock_seconds`.
    pub tokens_per_second: f64,
    /// Peak resident set size (RSS) of the last session's process, in bytes (`None` off
    /// Linux): everything the process touched, an upper bound for sizing a machine. The heap
    /// of one step is `meter.peak_step_heap_bytes`.
    #[serde(alias = "peak_memory_bytes")]
    pub peak_rss_bytes: Option<u64>,
    /// Sessions that trained this run (1 + number of resumes).
    pub sessions: u32,
    /// FLOPs, time per step, memory and cost (absent in records of older eft versions).
    #[serde(default)]
    pub meter: Option<crate::meter::MeterRecord>,
    /// For a diverged run: the step (counting from 1) whose loss or gradient was not finite.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub diverged_at_step: Option<usize>,
    /// How a low-precision run computed (absent for f32).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<PrecisionRecord>,
    /// How many data-parallel ranks trained this session and what their all-reduce cost
    /// (absent for one process).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<ParallelRecord>,
    /// The test split with early exit at `model.exits.threshold`, when the model has exits
    /// (`test` is the full model's).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exits: Option<crate::ExitEval>,
    /// Language modelling: the test split's bits per byte and the unigram baseline's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bits_per_byte: Option<BitsPerByte>,
    /// The masks' effect, for a pruned run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<PruneRecord>,
}

impl RunRecord {
    /// The record in run folder `dir`, if it holds a readable one.
    pub fn read(dir: &std::path::Path) -> Option<Self> {
        let text = std::fs::read_to_string(dir.join(crate::RECORD_FILE)).ok()?;
        serde_json::from_str(&text).ok()
    }
}

/// What a low-precision run's record says about its arithmetic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PrecisionRecord {
    /// The compute type (`train.precision`).
    pub compute: crate::Precision,
    /// How the backend carries it out (on burn Flex: through f32).
    pub backend: String,
    /// The loss scaling's state at the end (f16).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::LossScale>,
}

/// A data-parallel session: its ranks and the time the gradient all-reduce took.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ParallelRecord {
    /// Ranks that trained, each on its slice of every global batch, or each on its block of
    /// every layer when `tensor_parallel` is above 1.
    pub ranks: usize,
    /// Ranks each layer was split over (1: data parallelism).
    #[serde(default = "one", skip_serializing_if = "is_one")]
    pub tensor_parallel: usize,
    /// Mean seconds per step of rank 0's gradient all-reduce (flattening and writing back
    /// included); under tensor parallelism also the sums inside the layers.
    pub all_reduce_seconds_per_step: f64,
}

fn one() -> usize {
    1
}

fn is_one(n: &usize) -> bool {
    *n == 1
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::tensor::{Device, Tensor, TensorData};

    /// Auxiliary losses and per-layer statistics are averaged over the steps that reported them.
    #[test]
    fn extras_are_averaged_per_evaluation_window() {
        let device = Device::flex();
        let mut sums = ExtraSums::default();
        sums.add(&ModelOutput::new(Tensor::zeros([1, 2], &device)));
        assert!(sums.is_empty(), "a dense model reports nothing");
        for (loss, dropped) in [(0.5f32, [1.0, 3.0]), (1.5, [3.0, 5.0])] {
            let mut out = ModelOutput::new(Tensor::zeros([1, 2], &device));
            let t = Tensor::<1>::from_data(TensorData::new(vec![loss], [1]), &device);
            out.aux_losses.push(("balance".into(), t));
            out.layer_stats.push(("dropped".into(), dropped.to_vec()));
            sums.add(&out);
        }
        let (aux, stats) = sums.take_means();
        assert_eq!(aux["balance"], 1.0);
        assert_eq!(stats["dropped"], vec![2.0, 4.0]);
        assert!(sums.is_empty(), "taking the means starts a new window");
    }
}
