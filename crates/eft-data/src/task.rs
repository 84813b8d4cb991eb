//! Which task a run trains on, and the splits it yields.

use serde::{Deserialize, Serialize};

use crate::DataError;
use crate::copying::{CopyingConfig, InductionConfig};
use crate::image::ImageConfig;
use crate::listops::ListOpsConfig;
use crate::lm::LmConfig;
use crate::mlm::MlmConfig;
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

/// The sizes a model needs to read a task's data: they come from the task, not from the user.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskShape {
    /// Number of token ids, padding (id 0) included.
    pub vocab_size: usize,
    /// Number of output classes.
    pub n_classes: usize,
    /// Longest sequence any split may hold, in tokens.
    pub max_len: usize,
    /// Whether each example is a pair of sequences in consecutive rows, encoded separately and
    /// compared by the head (two towers, as in LRA's retrieval).
    pub paired: bool,
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

    /// The sizes a model needs to read these splits.
    pub fn shape(&self) -> TaskShape {
        TaskShape {
            vocab_size: self.vocab_size,
            n_classes: self.n_classes,
            max_len: self.max_len,
            paired: self.paired(),
        }
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
    /// Byte-level language modelling on IMDb reviews, graded at every position.
    Lm(LmConfig),
    /// Masked-byte pretraining on IMDb's training reviews and the Brown corpus.
    Mlm(MlmConfig),
}

impl TaskConfig {
    /// The names accepted for `name`: LRA's Table 1 order, then the recall diagnostics.
    pub const NAMES: &'static [&'static str] = &[
        "listops",
        "text",
        "retrieval",
        "image",
        "pathfinder",
        "pathx",
        "mqar",
        "copying",
        "induction",
        "lm",
        "mlm",
    ];

    /// The classification tasks the arena runs by default: every task but language modelling
    /// and pretraining, which come last in [`TaskConfig::NAMES`].
    pub const ARENA: &'static [&'static str] = Self::NAMES.split_at(Self::NAMES.len() - 2).0;

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
            TaskConfig::Lm(_) => "lm",
            TaskConfig::Mlm(_) => "mlm",
        }
    }

    /// The sizes its data will have, known without building it (what [`Dataset::shape`] of
    /// the built splits says).
    pub fn shape(&self) -> TaskShape {
        let (vocab_size, n_classes, max_len) = match self {
            TaskConfig::ListOps(c) => (
                crate::listops::VOCAB_SIZE,
                crate::listops::N_CLASSES,
                c.max_len - 1,
            ),
            TaskConfig::Image(c) => (257, 10, c.size * c.size),
            TaskConfig::Text(c) => (257, 2, c.max_len),
            TaskConfig::Retrieval(c) => (257, 2, c.passage_len),
            TaskConfig::Pathfinder(c) | TaskConfig::PathX(c) => (257, 2, c.size * c.size),
            TaskConfig::Mqar(c) => (c.vocab + 1, c.vocab, c.len),
            TaskConfig::Copying(c) => (c.vocab + 3, c.vocab + 1, c.len),
            TaskConfig::Induction(c) => (c.vocab + 2, c.vocab + 1, c.len),
            TaskConfig::Lm(c) => (257, 256, c.len),
            TaskConfig::Mlm(c) => (crate::mlm::MASK_TOKEN as usize + 1, 256, c.len),
        };
        TaskShape {
            vocab_size,
            n_classes,
            max_len,
            paired: matches!(self, TaskConfig::Retrieval(_)),
        }
    }

    /// Sequences the three splits hold together (two per example for paired tasks), saturating.
    pub fn sequences(&self) -> u64 {
        let (train, val, test) = match self {
            TaskConfig::ListOps(c) => (c.train, c.val, c.test),
            TaskConfig::Image(c) => (c.train, c.val, c.test),
            TaskConfig::Text(c) => (c.train, c.val, c.test),
            TaskConfig::Retrieval(c) => (c.train, c.val, c.test),
            TaskConfig::Pathfinder(c) | TaskConfig::PathX(c) => (c.train, c.val, c.test),
            TaskConfig::Mqar(c) => (c.train, c.val, c.test),
            TaskConfig::Copying(c) => (c.train, c.val, c.test),
            TaskConfig::Induction(c) => (c.train, c.val, c.test),
            TaskConfig::Lm(c) => (c.train, c.val, c.test),
            TaskConfig::Mlm(c) => (c.train, c.val, c.test),
        };
        let pairs = if self.shape().paired { 2 } else { 1 };
        [train, val, test]
            .into_iter()
            .fold(0u64, |sum, n| sum.saturating_add(n as u64))
            .saturating_mul(pairs)
    }

    /// Whether the task is graded per position (its examples carry targets), so the model's
    /// head must read every position.
    pub fn per_position(&self) -> bool {
        matches!(
            self,
            TaskConfig::Mqar(_)
                | TaskConfig::Copying(_)
                | TaskConfig::Induction(_)
                | TaskConfig::Lm(_)
                | TaskConfig::Mlm(_)
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
            TaskConfig::Lm(c) => c.validate(),
            TaskConfig::Mlm(c) => c.validate(),
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
            TaskConfig::Lm(c) => c.build(seed),
            TaskConfig::Mlm(c) => c.build(seed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::copying::{CopyingConfig, InductionConfig};
    use crate::pathfinder::PathfinderConfig;

    /// What a config promises about its data is what building it gives (the file-backed tasks
    /// check the same in their loaders' tests).
    #[test]
    fn generated_tasks_have_the_shape_their_config_promises() {
        let pathfinder = PathfinderConfig::lra32(6, 2, 1, 1);
        let mut small = pathfinder.clone();
        small.size = 24;
        let configs = [
            TaskConfig::ListOps(ListOpsConfig {
                min_len: 5,
                max_len: 30,
                max_depth: 3,
                max_args: 3,
                train: 4,
                val: 2,
                test: 2,
            }),
            TaskConfig::Pathfinder(pathfinder),
            TaskConfig::PathX(small),
            TaskConfig::Mqar(MqarConfig {
                len: 32,
                pairs: 4,
                vocab: 64,
                train: 2,
                val: 1,
                test: 1,
            }),
            TaskConfig::Copying(CopyingConfig {
                len: 24,
                tokens: 4,
                vocab: 6,
                train: 2,
                val: 1,
                test: 1,
            }),
            TaskConfig::Induction(InductionConfig {
                len: 16,
                vocab: 5,
                train: 2,
                val: 1,
                test: 1,
            }),
        ];
        for c in configs {
            let data = c.build(0).unwrap();
            assert_eq!(c.shape(), data.shape(), "{}", c.name());
        }
    }
}
