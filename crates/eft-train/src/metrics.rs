//! The run's metrics stream: `metrics.jsonl` and `metrics.csv` in the run folder, one line every
//! `train.log_every` steps and one per evaluation, appended as the run goes.
//!
//! On resume both files are cut back to the checkpoint's step, and the window of steps since the
//! last line travels in the checkpoint, so a run killed at any moment and resumed holds every line
//! exactly once, with the values an uninterrupted run writes (timings aside).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{EvalResult, TrainError, write_atomic};

/// The stream as JSON lines.
pub const METRICS_JSONL: &str = "metrics.jsonl";
/// The same lines as CSV, for spreadsheets and pandas.
pub const METRICS_CSV: &str = "metrics.csv";

/// The CSV header; the columns follow [`MetricsLine`]'s fields.
const CSV_HEADER: &str =
    "kind,step,loss,accuracy,lr,grad_norm,tokens_per_second,step_seconds,heap_peak_bytes\n";

/// What a line reports on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsKind {
    /// Means over the training steps since the previous `train` line.
    Train,
    /// The validation split, evaluated at `step`.
    Val,
    /// The test split, evaluated once after the last step.
    Test,
}

impl MetricsKind {
    fn name(self) -> &'static str {
        match self {
            MetricsKind::Train => "train",
            MetricsKind::Val => "val",
            MetricsKind::Test => "test",
        }
    }
}

/// One line of the stream. Timing fields (`tokens_per_second`, `step_seconds`, heap) are
/// measurements; the others are the same in every run of the same config.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricsLine {
    /// What the line reports on.
    pub kind: MetricsKind,
    /// Steps completed when it was written.
    pub step: usize,
    /// Mean cross-entropy (of the window's steps, or of the split).
    pub loss: f64,
    /// Fraction of predictions that were right.
    pub accuracy: f64,
    /// The learning rate of the last step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lr: Option<f64>,
    /// Mean global gradient norm of the window's steps, before clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grad_norm: Option<f64>,
    /// Training throughput so far in the run, real tokens per second.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_second: Option<f64>,
    /// Mean wall-clock seconds of the window's steps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step_seconds: Option<f64>,
    /// Largest heap in use during one of the window's steps (tracked builds only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_peak_bytes: Option<u64>,
}

impl MetricsLine {
    /// A line for an evaluation of the validation or test split.
    pub fn evaluation(
        kind: MetricsKind,
        step: usize,
        result: &EvalResult,
        lr: Option<f64>,
    ) -> Self {
        Self {
            kind,
            step,
            loss: result.loss,
            accuracy: result.accuracy,
            lr,
            grad_norm: None,
            tokens_per_second: None,
            step_seconds: None,
            heap_peak_bytes: None,
        }
    }

    fn csv_row(&self) -> String {
        let opt = |v: Option<f64>| v.map(|x| x.to_string()).unwrap_or_default();
        format!(
            "{},{},{},{},{},{},{},{},{}\n",
            self.kind.name(),
            self.step,
            self.loss,
            self.accuracy,
            opt(self.lr),
            opt(self.grad_norm),
            opt(self.tokens_per_second),
            opt(self.step_seconds),
            self.heap_peak_bytes
                .map(|b| b.to_string())
                .unwrap_or_default()
        )
    }
}

/// Sums over the training steps since the last `train` line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct MetricsWindow {
    /// Steps in the window.
    pub steps: usize,
    /// Sum of their losses.
    pub loss_sum: f64,
    /// Right predictions and predictions made.
    pub correct: usize,
    /// Predictions made.
    pub seen: usize,
    /// Sum of their gradient norms.
    pub grad_norm_sum: f64,
    /// Sum of their wall-clock seconds.
    pub seconds: f64,
    /// Largest heap of one of them, where tracked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heap_peak_bytes: Option<u64>,
}

/// One training step's measurements, added to the window.
#[derive(Debug, Clone, Copy)]
pub struct StepMetrics {
    /// Its loss.
    pub loss: f64,
    /// Right predictions in its batch.
    pub correct: usize,
    /// Predictions in its batch.
    pub seen: usize,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Peak heap during the step, where tracked.
    pub heap_peak_bytes: Option<u64>,
}

impl MetricsWindow {
    /// Adds one step.
    pub fn add(&mut self, s: StepMetrics) {
        self.steps += 1;
        self.loss_sum += s.loss;
        self.correct += s.correct;
        self.seen += s.seen;
        self.grad_norm_sum += s.grad_norm;
        self.seconds += s.seconds;
        if let Some(h) = s.heap_peak_bytes {
            self.heap_peak_bytes = Some(self.heap_peak_bytes.unwrap_or(0).max(h));
        }
    }

    /// The window as a `train` line at `step`, and an empty window.
    pub fn take(&mut self, step: usize, lr: f64, tokens_per_second: f64) -> MetricsLine {
        let w = std::mem::take(self);
        let n = w.steps.max(1) as f64;
        MetricsLine {
            kind: MetricsKind::Train,
            step,
            loss: w.loss_sum / n,
            accuracy: w.correct as f64 / w.seen.max(1) as f64,
            lr: Some(lr),
            grad_norm: Some(w.grad_norm_sum / n),
            tokens_per_second: Some(tokens_per_second),
            step_seconds: Some(w.seconds / n),
            heap_peak_bytes: w.heap_peak_bytes,
        }
    }
}

/// The open stream of a run folder.
pub struct MetricsLog {
    jsonl: File,
    csv: File,
    dir: PathBuf,
}

impl MetricsLog {
    /// Opens the stream in `dir`, keeping the lines of steps up to `step` (the checkpoint's) and
    /// dropping the rest: later training lines are written again by the resumed run, and a test
    /// line by the test evaluation that the resumed run repeats.
    pub fn open(dir: &Path, step: usize) -> Result<Self, TrainError> {
        let kept = read(dir)
            .into_iter()
            .filter(|l| l.step <= step && l.kind != MetricsKind::Test)
            .collect::<Vec<_>>();
        let jsonl: String = kept.iter().map(json_row).collect();
        let csv: String = std::iter::once(CSV_HEADER.to_string())
            .chain(kept.iter().map(MetricsLine::csv_row))
            .collect();
        write_atomic(&dir.join(METRICS_JSONL), jsonl.as_bytes())?;
        write_atomic(&dir.join(METRICS_CSV), csv.as_bytes())?;
        let append = |name: &str| {
            let path = dir.join(name);
            OpenOptions::new()
                .append(true)
                .open(&path)
                .map_err(TrainError::io(&path))
        };
        Ok(Self {
            jsonl: append(METRICS_JSONL)?,
            csv: append(METRICS_CSV)?,
            dir: dir.to_path_buf(),
        })
    }

    /// Appends `line` to both files, each in one write so a kill leaves at most a cut last line
    /// (which the next [`MetricsLog::open`] drops).
    pub fn append(&mut self, line: &MetricsLine) -> Result<(), TrainError> {
        let dir = &self.dir;
        self.jsonl
            .write_all(json_row(line).as_bytes())
            .map_err(TrainError::io(dir.join(METRICS_JSONL)))?;
        self.csv
            .write_all(line.csv_row().as_bytes())
            .map_err(TrainError::io(dir.join(METRICS_CSV)))
    }
}

fn json_row(line: &MetricsLine) -> String {
    let mut row = serde_json::to_string(line).expect("metrics lines serialise");
    row.push('\n');
    row
}

/// The whole lines of `dir`'s `metrics.jsonl` (none if it is missing); a line cut by a kill is
/// left out.
pub fn read(dir: &Path) -> Vec<MetricsLine> {
    let Ok(text) = std::fs::read_to_string(dir.join(METRICS_JSONL)) else {
        return Vec::new();
    };
    text.split_inclusive('\n')
        .filter(|l| l.ends_with('\n'))
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn step(loss: f64) -> StepMetrics {
        StepMetrics {
            loss,
            correct: 3,
            seen: 4,
            grad_norm: 2.0,
            seconds: 0.5,
            heap_peak_bytes: Some(7),
        }
    }

    #[test]
    fn a_window_averages_its_steps_and_starts_again() {
        let mut w = MetricsWindow::default();
        w.add(step(1.0));
        w.add(step(3.0));
        let line = w.take(2, 0.1, 100.0);
        assert_eq!(
            (line.loss, line.accuracy, line.grad_norm),
            (2.0, 0.75, Some(2.0))
        );
        assert_eq!(
            (line.step_seconds, line.heap_peak_bytes),
            (Some(0.5), Some(7))
        );
        assert_eq!(w, MetricsWindow::default());
    }

    #[test]
    fn reopening_keeps_the_checkpointed_lines_and_drops_a_cut_one() {
        let dir = tempfile::tempdir().unwrap();
        let mut log = MetricsLog::open(dir.path(), 0).unwrap();
        let mut w = MetricsWindow::default();
        for s in 1..=4 {
            w.add(step(s as f64));
            log.append(&w.take(s, 0.1, 1.0)).unwrap();
        }
        let test = EvalResult {
            loss: 0.5,
            accuracy: 0.9,
            examples: 10,
        };
        log.append(&MetricsLine::evaluation(MetricsKind::Test, 4, &test, None))
            .unwrap();
        drop(log);
        // A kill mid-write leaves half a line.
        let mut f = OpenOptions::new()
            .append(true)
            .open(dir.path().join(METRICS_JSONL))
            .unwrap();
        f.write_all(b"{\"kind\":\"train\",\"st").unwrap();
        assert_eq!(read(dir.path()).len(), 5);
        MetricsLog::open(dir.path(), 2).unwrap();
        let steps: Vec<usize> = read(dir.path()).iter().map(|l| l.step).collect();
        assert_eq!(steps, [1, 2]);
        let csv = std::fs::read_to_string(dir.path().join(METRICS_CSV)).unwrap();
        assert_eq!(csv.lines().count(), 3, "{csv}");
        assert!(csv.starts_with(CSV_HEADER) && csv.contains("\ntrain,2,2,0.75,0.1,2,1,0.5,7\n"));
        // At the last step the test line is dropped too: the resumed run writes it again.
        MetricsLog::open(dir.path(), 2).unwrap();
        assert_eq!(read(dir.path()).len(), 2);
    }
}
