//! Helpers shared by the trainer's integration tests.
// Each test binary uses its own subset.
#![allow(dead_code)]

use eft_model::ModelConfig;
use eft_train::parallel::Collective;

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

/// A small ListOps run named `name`: sequences of 5–30 tokens, `train` training examples (16
/// validation and test), width `d_model` with 2 heads and an MLP of twice the width, batch 8,
/// a constant learning rate of 3e-3, 8 steps evaluated every 4.
pub fn tiny_listops(name: &str, train: usize, d_model: usize) -> eft_train::RunConfig {
    let mut c = eft_train::preset("listops", "quick").unwrap();
    c.name = name.into();
    if let eft_data::TaskConfig::ListOps(t) = &mut c.task {
        (t.min_len, t.max_len, t.max_depth) = (5, 30, 3);
        (t.train, t.val, t.test) = (train, 16, 16);
    }
    c.model.d_model = d_model;
    c.model.n_heads = 2;
    c.model.d_ff = 2 * d_model;
    c.train.batch_size = 8;
    c.train.set_steps(8, 4);
    c.train.schedule = eft_train::Schedule::Constant { lr: 3e-3 };
    c
}

/// The weights in the checkpoint of the run in `dir`, by name.
pub fn weights(dir: &std::path::Path) -> Vec<(String, Vec<f32>)> {
    eft_train::Checkpoint::load(&dir.join(eft_train::CHECKPOINT_FILE))
        .unwrap()
        .model
        .into_iter()
        .map(|(k, a)| (k, a.values))
        .collect()
}

/// Trains `config` on `ranks` threads into `dir`; each rank's result.
pub fn train_ranks(
    config: &eft_train::RunConfig,
    dir: &std::path::Path,
    ranks: usize,
) -> Vec<Result<eft_train::RunRecord, String>> {
    train_ranks_with(config, dir, ranks, |_| eft_train::TrainOptions::default())
}

/// [`train_ranks`] with each rank's options (its collective set here) from `options(rank)`.
pub fn train_ranks_with(
    config: &eft_train::RunConfig,
    dir: &std::path::Path,
    ranks: usize,
    options: impl Fn(usize) -> eft_train::TrainOptions + Sync,
) -> Vec<Result<eft_train::RunRecord, String>> {
    let group = eft_train::parallel::ThreadGroup::new(ranks);
    std::thread::scope(|s| {
        let handles: Vec<_> = group
            .into_iter()
            .map(|rank| {
                let config = config.clone();
                let options = &options;
                s.spawn(move || {
                    let base = options(rank.rank());
                    let options = eft_train::TrainOptions {
                        collective: std::rc::Rc::new(rank),
                        ..base
                    };
                    eft_train::train(config, dir, &options).map_err(|e| e.to_string())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}
