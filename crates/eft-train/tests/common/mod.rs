//! Helpers shared by the trainer's integration tests.
// Each test binary uses its own subset.
#![allow(dead_code)]

use eft_model::ModelConfig;

/// Trains a small 4-layer quick-ListOps model (width 32, 120 steps, 2000 training examples)
/// changed by `change`, and returns its test accuracy and the majority class's.
pub fn quick_listops_accuracy(change: impl FnOnce(&mut ModelConfig)) -> (f64, f64) {
    let record = quick_listops_record(change);
    let accuracy = (
        record.test.unwrap().accuracy,
        record.majority_baseline.test_accuracy,
    );
    eprintln!("test {} against majority {}", accuracy.0, accuracy.1);
    accuracy
}

/// The record of [`quick_listops_accuracy`]'s run.
pub fn quick_listops_record(change: impl FnOnce(&mut ModelConfig)) -> eft_train::RunRecord {
    let mut config = eft_train::preset("listops", "quick").unwrap();
    config.model.n_layers = 4;
    config.model.d_model = 32;
    config.model.d_ff = 64;
    change(&mut config.model);
    config.train.set_steps(120, 120);
    if let eft_data::TaskConfig::ListOps(task) = &mut config.task {
        (task.train, task.val, task.test) = (2000, 100, 300);
    }
    let dir = tempfile::tempdir().unwrap();
    eft_train::train(config, &dir.path().join("run"), &Default::default()).unwrap()
}
