//! Training with gradient checkpointing (`model.recompute`) takes the same steps as training
//! without it, and its record counts the forward FLOPs it runs twice; reversible blocks, trained
//! on rebuilt activations, learn.

mod common;

use eft_model::{Recompute, Residual};
use eft_train::{Checkpoint, RunConfig, TrainOptions, preset, train};

fn config(recompute: Recompute) -> RunConfig {
    let mut c = preset("listops", "quick").unwrap();
    c.model.n_layers = 4;
    c.model.dropout = 0.0;
    c.model.recompute = recompute;
    c.train.set_steps(6, 6);
    c.train.schedule = eft_train::Schedule::Constant { lr: 1e-3 };
    if let eft_data::TaskConfig::ListOps(task) = &mut c.task {
        (task.train, task.val, task.test) = (256, 32, 32);
    }
    c
}

#[test]
fn checkpointed_training_takes_the_plain_steps() {
    let dir = tempfile::tempdir().unwrap();
    let run = |name: &str, r: Recompute| {
        let record = train(config(r), &dir.path().join(name), &TrainOptions::default()).unwrap();
        let c = Checkpoint::load(&dir.path().join(name).join("checkpoint.safetensors")).unwrap();
        (record, c)
    };
    let (plain_record, plain) = run("plain", Recompute::None);
    for (name, r) in [
        ("every", Recompute::Every(1)),
        ("three", Recompute::Every(3)),
    ] {
        let (record, c) = run(name, r);
        for (param, want) in &plain.model {
            let got = &c.model[param];
            let scale = want.values.iter().fold(1e-6f32, |m, v| m.max(v.abs()));
            let err = got
                .values
                .iter()
                .zip(&want.values)
                .fold(0f32, |m, (a, b)| m.max((a - b).abs()));
            assert!(err <= 1e-4 * scale, "{name} {param}: {err} of {scale}");
        }
        // The blocks' forward runs twice: more FLOPs per step, counted.
        let (plain_flops, flops) = (
            plain_record.meter.as_ref().unwrap().flops_per_step,
            record.meter.as_ref().unwrap().flops_per_step,
        );
        assert!(
            flops > plain_flops * 1.1,
            "{name}: {flops} vs {plain_flops}"
        );
    }
}

/// Four reversible blocks with the feed-forward branch in pieces, trained on rebuilt activations,
/// learn quick ListOps: well above the majority class.
#[test]
fn a_reversible_model_learns() {
    let (test, majority) = common::quick_listops_accuracy(|m| {
        m.residual = Residual::Reversible;
        m.ffn_chunk = Some(64);
    });
    assert!(
        test > majority + 0.05,
        "test {test} against majority {majority}"
    );
}
