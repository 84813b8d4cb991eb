//! Distillation as a run: a student with α = 0 is the plain run bit for bit (loading a teacher
//! changes nothing else), with α > 0 the teacher changes what it learns, and a teacher that is
//! missing, unfinished or of another task is named before anything trains.

use std::path::Path;

use common::weights;
use eft_train::distill::DistillConfig;
use eft_train::{RunConfig, TrainOptions, train};

mod common;

fn tiny(d_model: usize) -> RunConfig {
    let mut c = common::tiny_listops("run", 64, d_model);
    c.model.dropout = 0.1;
    c.train.set_steps(6, 3);
    c
}

fn student(teacher: &Path, alpha: f64) -> RunConfig {
    let mut c = tiny(8);
    c.train.distill = Some(DistillConfig {
        teacher: teacher.display().to_string(),
        temperature: 2.0,
        alpha,
    });
    c
}

#[test]
fn alpha_zero_is_the_plain_run_and_a_teacher_changes_the_student() {
    let root = tempfile::tempdir().unwrap();
    let teacher = root.path().join("teacher");
    let mut config = tiny(16);
    config.model.attention =
        eft_attention::AttentionConfig::from_name_and_params("linear", &[]).unwrap();
    train(config, &teacher, &TrainOptions::default()).unwrap();
    let plain = root.path().join("plain");
    let a = train(tiny(8), &plain, &Default::default()).unwrap();
    let zero = root.path().join("zero");
    let b = train(student(&teacher, 0.0), &zero, &Default::default()).unwrap();
    assert_eq!(
        weights(&plain),
        weights(&zero),
        "alpha 0 changed the weights"
    );
    assert_eq!(a.test, b.test);
    let half = root.path().join("half");
    let c = train(student(&teacher, 0.5), &half, &Default::default()).unwrap();
    assert_ne!(weights(&plain), weights(&half), "the teacher was not used");
    // The teacher's forward pass on every batch is counted; at alpha 0 it does not run.
    let (plain_flops, taught_flops) = (
        a.meter.as_ref().unwrap().total_flops,
        c.meter.as_ref().unwrap().total_flops,
    );
    assert_eq!(b.meter.as_ref().unwrap().total_flops, plain_flops);
    let config = student(&teacher, 0.5);
    let data = eft_train::build_data(&config).unwrap();
    let device = burn::tensor::Device::flex();
    let teacher_model = eft_train::build_model(
        &RunConfig::from_toml(&std::fs::read_to_string(teacher.join("config.toml")).unwrap())
            .unwrap(),
        &device,
    )
    .unwrap();
    let forward: f64 = (0..config.train.steps)
        .map(|step| {
            let t = &config.train;
            let rows = eft_data::train_batch_indices(
                data.train.len(),
                t.batch_size,
                config.seed,
                step as u64,
            );
            let batch = eft_data::Batch::from_examples(rows.iter().map(|&i| &data.train[i]));
            teacher_model.cost(batch.batch, batch.len).forward_flops
        })
        .sum();
    let counted = taught_flops - plain_flops;
    assert!(
        (counted - forward).abs() <= 1e-9 * forward,
        "{counted} vs {forward}"
    );
}

#[test]
fn a_missing_unfinished_or_foreign_teacher_is_named() {
    let root = tempfile::tempdir().unwrap();
    let err = |config: RunConfig, name: &str| {
        train(config, &root.path().join(name), &Default::default())
            .unwrap_err()
            .to_string()
    };
    let missing = err(student(&root.path().join("none"), 0.5), "a");
    assert!(
        missing.contains("train.distill.teacher") && missing.contains("no checkpoint"),
        "{missing}"
    );
    let stopped = root.path().join("stopped");
    let stopping = TrainOptions {
        stop_after: Some(2),
        ..TrainOptions::default()
    };
    train(tiny(8), &stopped, &stopping).unwrap();
    let unfinished = err(student(&stopped, 0.5), "b");
    assert!(unfinished.contains("has not finished"), "{unfinished}");
    let other = root.path().join("other");
    let mut longer = tiny(8);
    if let eft_data::TaskConfig::ListOps(t) = &mut longer.task {
        t.max_len = 40;
    }
    train(longer, &other, &Default::default()).unwrap();
    let foreign = err(student(&other, 0.5), "c");
    assert!(foreign.contains("other shapes"), "{foreign}");
    let mut cold = student(&other, 0.5);
    cold.train.distill.as_mut().unwrap().temperature = 0.0;
    assert!(err(cold, "d").contains("train.distill.temperature"));
}
