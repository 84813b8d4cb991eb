//! Training a classifier from a config built in code: start from a preset, change what you
//! need, train, and read the record. The run folder gets the same files as `eft train` writes
//! (checkpoint, record, metrics stream), so `eft eval`, `eft report` and `eft export` work on it.
//!
//!     cargo run --release -p eft-train --example train_from_code

use std::path::Path;

use eft_attention::AttentionConfig;
use eft_data::TaskConfig;
use eft_train::{RunRecord, Schedule, TrainOptions, preset, train};

/// Trains a small ListOps classifier with `mechanism` for `steps` steps in `dir`.
fn run(dir: &Path, mechanism: &str, steps: usize) -> anyhow::Result<RunRecord> {
    let mut config = preset("listops", "quick")?;
    config.name = format!("listops-{mechanism}");
    config.model.attention = AttentionConfig::from_name_and_params(mechanism, &[])?;
    config.model.d_model = 32;
    config.model.d_ff = 64;
    config.train.set_steps(steps, steps);
    config.train.schedule = Schedule::Cosine {
        lr: 1e-3,
        warmup: steps / 10,
        min_lr: 1e-5,
    };
    // Fewer examples than the preset's 20,000, so the data is drawn in a moment.
    if let TaskConfig::ListOps(task) = &mut config.task {
        task.train = 2000;
    }
    let record = train(
        config,
        &dir.join(format!("listops-{mechanism}")),
        &TrainOptions::default(),
    )?;
    Ok(record)
}

fn main() -> anyhow::Result<()> {
    let dir = Path::new("runs");
    let record = run(dir, "linear", 300)?;
    let test = record.test.expect("a finished run has a test result");
    println!(
        "{}: {} steps, test accuracy {:.1}% (majority class {:.1}%), {:.0} tokens/s",
        record.config.name,
        record.steps_done,
        100.0 * test.accuracy,
        100.0 * record.majority_baseline.test_accuracy,
        record.tokens_per_second
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_run_from_code_finishes_with_its_files() {
        let dir = tempfile::tempdir().unwrap();
        let record = super::run(dir.path(), "linear", 20).unwrap();
        assert_eq!(record.steps_done, 20);
        assert!(record.test.is_some());
        let run = dir.path().join("listops-linear");
        for file in ["checkpoint.safetensors", "record.json", "metrics.jsonl"] {
            assert!(run.join(file).exists(), "{file}");
        }
    }
}
