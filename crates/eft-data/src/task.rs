//! Which task a run trains on, and the splits it yields.

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::copying::{CopyingConfig, InductionConfig};
use crate::image::ImageConfig;
use crate::listops::ListOpsConfig;
use crate::mqar::MqarConfig;
use crate::pathfinder::PathfinderConfig;
use crate::retrieval::RetrievalConfig;
use crate::text::TextConfig;

/// One example: token ids (no padding) and its class, or classes at some positions.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Example {
    /// Token ids; 0 is reserved for padding and never appears here.
    pub tokens: Vec<u32>,
    /// Class label in `0..n_classes` of the whole sequence (unused when `targets` is not empty).
    pub label: u32,
    /// (position, class) pairs for tasks graded per position (MQAR); empty for sequence tasks.
    pub targets: Vec<(u32, u32)>,
    /// The second passage of a pair task (retrieval): encoded by the same encoder on its own.
    pub second: Option<Vec<u32>>,
}

impl Example {
    /// A sequence with one class for the whole of it.
    pub fn classified(tokens: Vec<u32>, label: u32) -> Self {
        Example {
            tokens,
            label,
            targets: Vec::new(),
            second: None,
        }
    }

    /// The classes the example is graded on: its targets', or its label.
    pub fn graded_labels(&self) -> Vec<u32> {
        if self.targets.is_empty() {
            vec![self.label]
        } else {
            self.targets.iter().map(|t| t.1).collect()
        }
    }
}

/// The three splits of a task with the sizes a model needs to read them.
#[derive(Debug, Clone)]
pub struct Dataset {
    /// Training examples.
    pub train: Vec<Example>,
    /// Validation examples, evaluated during training.
    pub val: Vec<Example>,
    /// Test examples, evaluated once at the end.
    pub test: Vec<Example>,
    /// Number of token ids, padding included.
    pub vocab_size: usize,
    /// Number of classes.
    pub n_classes: usize,
    /// Longest sequence any split may hold.
    pub max_len: usize,
}

impl Dataset {
    /// The most frequent training label, and the test accuracy of always predicting it (per
    /// graded position for tasks with targets).
    pub fn majority_baseline(&self) -> (u32, f64) {
        let mut counts = vec![0usize; self.n_classes];
        for l in self.train.iter().flat_map(Example::graded_labels) {
            counts[l as usize] += 1;
        }
        let majority = (0..self.n_classes)
            .max_by_key(|&c| (counts[c], std::cmp::Reverse(c)))
            .unwrap_or(0) as u32;
        let test: Vec<u32> = self.test.iter().flat_map(Example::graded_labels).collect();
        let hits = test.iter().filter(|&&l| l == majority).count();
        (majority, hits as f64 / test.len().max(1) as f64)
    }

    /// Whether examples are pairs of passages (two-tower tasks).
    pub fn paired(&self) -> bool {
        self.train.first().is_some_and(|e| e.second.is_some())
    }
}

/// The task a run trains on, with its parameters.
///
/// In TOML: `[task]` with `name = "listops"` and the task's fields beside it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "name", rename_all = "snake_case")]
#[non_exhaustive]
pub enum TaskConfig {
    /// LRA ListOps: nested list operations over digits.
    #[serde(rename = "listops")]
    ListOps(ListOpsConfig),
    /// MNIST digits as grey-level sequences (standing in for LRA's grayscale CIFAR-10).
    Image(ImageConfig),
    /// Byte-level IMDb sentiment.
    Text(TextConfig),
    /// Byte-level document matching with two towers (a substitute for LRA's AAN retrieval).
    Retrieval(RetrievalConfig),
    /// LRA Pathfinder: are two markers on one snake (32×32 by default)?
    Pathfinder(PathfinderConfig),
    /// LRA Path-X: Pathfinder at 128×128, 16,384 tokens.
    #[serde(rename = "pathx")]
    PathX(PathfinderConfig),
    /// Multi-query associative recall, graded at each query position.
    Mqar(MqarConfig),
    /// Selective copying (Mamba), graded at each marker.
    Copying(CopyingConfig),
    /// Induction heads (Mamba), graded at the last position.
    Induction(InductionConfig),
}

impl TaskConfig {
    /// The names accepted for `name`.
    pub const NAMES: &'static [&'static str] = &[
        "listops",
        "image",
        "text",
        "retrieval",
        "pathfinder",
        "pathx",
        "mqar",
        "copying",
        "induction",
    ];

    /// The task's config name.
    pub fn name(&self) -> &'static str {
        match self {
            TaskConfig::ListOps(_) => "listops",
            TaskConfig::Image(_) => "image",
            TaskConfig::Text(_) => "text",
            TaskConfig::Retrieval(_) => "retrieval",
            TaskConfig::Pathfinder(_) => "pathfinder",
            TaskConfig::PathX(_) => "pathx",
            TaskConfig::Mqar(_) => "mqar",
            TaskConfig::Copying(_) => "copying",
            TaskConfig::Induction(_) => "induction",
        }
    }

    /// Whether the task is graded per position (its examples carry targets), so the model's
    /// head must read every position.
    pub fn per_position(&self) -> bool {
        matches!(
            self,
            TaskConfig::Mqar(_) | TaskConfig::Copying(_) | TaskConfig::Induction(_)
        )
    }

    /// Checks every parameter; names the wrong one and what would do.
    pub fn validate(&self) -> Result<(), DataError> {
        match self {
            TaskConfig::ListOps(c) => c.validate(),
            TaskConfig::Image(c) => c.validate(),
            TaskConfig::Text(c) => c.validate(),
            TaskConfig::Retrieval(c) => c.validate(),
            TaskConfig::Pathfinder(c) | TaskConfig::PathX(c) => c.validate(),
            TaskConfig::Mqar(c) => c.validate(),
            TaskConfig::Copying(c) => c.validate(),
            TaskConfig::Induction(c) => c.validate(),
        }
    }

    /// Builds the splits from `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        match self {
            TaskConfig::ListOps(c) => c.build(seed),
            TaskConfig::Image(c) => c.build(seed),
            TaskConfig::Text(c) => c.build(seed),
            TaskConfig::Retrieval(c) => c.build(seed),
            TaskConfig::Pathfinder(c) | TaskConfig::PathX(c) => c.build(seed),
            TaskConfig::Mqar(c) => c.build(seed),
            TaskConfig::Copying(c) => c.build(seed),
            TaskConfig::Induction(c) => c.build(seed),
        }
    }
}
