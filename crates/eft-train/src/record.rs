//! The run record: what a run was, what it measured, and how it ended, as `record.json`.

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
    /// Peak resident memory of the last session's process, in bytes (`None` off Linux).
    pub peak_memory_bytes: Option<u64>,
    /// Sessions that trained this run (1 + number of resumes).
    pub sessions: u32,
    /// FLOPs, time per step, memory and cost (absent in records of older eft versions).
    #[serde(default)]
    pub meter: Option<crate::meter::MeterRecord>,
}
