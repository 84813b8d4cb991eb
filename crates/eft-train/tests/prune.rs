//! Magnitude pruning as a run: a new run starts from a trained run's weights, prunes exactly the
//! share asked, keeps every pruned weight at zero through fine-tuning and across an interruption,
//! and leaves the source run untouched.

use std::path::Path;

use eft_train::prune::{PruneConfig, PruneScope, magnitude_masks, prunable};
use eft_train::{CHECKPOINT_FILE, Checkpoint, RunConfig, TrainOptions, resume, train};

mod common;

fn tiny() -> RunConfig {
    common::tiny_listops("source", 64, 16)
}

fn pruned(source: &Path, sparsity: f64, scope: PruneScope, steps: usize) -> RunConfig {
    let mut c = tiny();
    c.name = "pruned".into();
    c.train.init_from = Some(source.display().to_string());
    c.train.prune = Some(PruneConfig {
        sparsity,
        scope,
        from: None,
    });
    c.train.steps = steps;
    c
}

fn load(dir: &Path) -> Checkpoint {
    Checkpoint::load(&dir.join(CHECKPOINT_FILE)).unwrap()
}

#[test]
fn pruned_weights_stay_zero_through_fine_tuning_and_resume() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    train(tiny(), &source, &TrainOptions::default()).unwrap();
    let before = std::fs::read(source.join(CHECKPOINT_FILE)).unwrap();
    let trained = load(&source).model;

    for (scope, sparsity) in [(PruneScope::Global, 0.6), (PruneScope::Layer, 0.3)] {
        let dir = root.path().join(format!("{scope:?}"));
        // Stopped part-way, then resumed: the masks come back from the checkpoint.
        let stopping = TrainOptions {
            stop_after: Some(3),
            ..TrainOptions::default()
        };
        train(pruned(&source, sparsity, scope, 8), &dir, &stopping).unwrap();
        let record = resume(&dir, &TrainOptions::default()).unwrap();
        let after = load(&dir);
        let masks = magnitude_masks(
            &trained,
            &PruneConfig {
                sparsity,
                scope,
                from: None,
            },
        );
        assert_eq!(
            after.masks, masks,
            "the checkpoint holds the masks of the source weights"
        );

        let total: usize = masks.values().map(|m| m.values.len()).sum();
        let asked = (sparsity * total as f64).round() as usize;
        let mut zeros = 0;
        let mut moved = false;
        for (name, mask) in &masks {
            let (w, w0) = (&after.model[name].values, &trained[name].values);
            for i in 0..w.len() {
                if mask.values[i] == 0.0 {
                    assert_eq!(w[i], 0.0, "{name}[{i}] was pruned but is {}", w[i]);
                    zeros += 1;
                } else {
                    moved |= w[i] != w0[i];
                }
            }
        }
        if scope == PruneScope::Global {
            assert_eq!(zeros, asked, "exactly the share asked");
        }
        assert!(moved, "fine-tuning changed the kept weights");
        let p = record.prune.expect("a pruned run records it");
        assert_eq!(p.prunable, total);
        assert!(p.sparsity * total as f64 >= zeros as f64 - 0.5);
        // Everything else (embeddings, norms, biases) was loaded, not pruned.
        for (name, a) in &after.model {
            if !prunable(name, a) {
                assert!(
                    a.values.iter().any(|v| *v != 0.0) || name.contains("bias"),
                    "{name}"
                );
            }
        }
    }
    assert_eq!(
        std::fs::read(source.join(CHECKPOINT_FILE)).unwrap(),
        before,
        "the source run is not modified"
    );

    // No fine-tuning: the pruned source weights are evaluated as they are.
    let dir = root.path().join("evaluated");
    let record = train(
        pruned(&source, 0.5, PruneScope::Global, 0),
        &dir,
        &Default::default(),
    )
    .unwrap();
    assert_eq!(record.steps_done, 0);
    assert!(record.test.is_some());
    // Its record reads back (nothing trained: no price per token, not a NaN).
    let text = std::fs::read_to_string(dir.join(eft_train::RECORD_FILE)).unwrap();
    let read: eft_train::RunRecord = serde_json::from_str(&text).unwrap();
    assert_eq!(read.meter.unwrap().usd_per_million_tokens, None);
    let masks = magnitude_masks(
        &trained,
        &PruneConfig {
            sparsity: 0.5,
            scope: PruneScope::Global,
            from: None,
        },
    );
    for (name, a) in &load(&dir).model {
        let want: Vec<f32> = match masks.get(name) {
            Some(m) => trained[name]
                .values
                .iter()
                .zip(&m.values)
                .map(|(w, m)| w * m)
                .collect(),
            None => trained[name].values.clone(),
        };
        assert_eq!(a.values, want, "{name}");
    }
}

#[test]
fn a_missing_or_foreign_source_is_named() {
    let root = tempfile::tempdir().unwrap();
    let missing = train(
        pruned(&root.path().join("nothing"), 0.5, PruneScope::Global, 2),
        &root.path().join("a"),
        &Default::default(),
    )
    .unwrap_err()
    .to_string();
    assert!(
        missing.contains("train.init_from") && missing.contains("no checkpoint"),
        "{missing}"
    );
    let source = root.path().join("source");
    train(tiny(), &source, &Default::default()).unwrap();
    let mut other = pruned(&source, 0.5, PruneScope::Global, 2);
    if let eft_data::TaskConfig::ListOps(t) = &mut other.task {
        t.max_len = 40;
    }
    let err = train(other, &root.path().join("b"), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("train.init_from") && err.contains("other shapes"),
        "{err}"
    );
}

/// Lottery tickets' parts: a run keeps its weights at the steps asked (step 0: its
/// initialisation), a later run rewinds to them, masks can be ranked by another run's trained
/// weights, and ranking a pruned run at a higher sparsity keeps every weight it pruned pruned.
#[test]
fn snapshots_rewinding_and_masks_from_another_run() {
    let root = tempfile::tempdir().unwrap();
    let source = root.path().join("source");
    let mut config = tiny();
    config.train.keep_at = vec![0, 4, 8];
    train(config.clone(), &source, &TrainOptions::default()).unwrap();
    let at = |k: usize| load_file(&source.join(eft_train::snapshot_file(k))).model;
    // Step 0 is the initialisation the run's seed draws; step 8 (the last) its final weights.
    let fresh = eft_train::params::export_params(
        &eft_train::build_model(&config, &burn::tensor::Device::flex()).unwrap(),
    );
    assert_eq!(at(0), fresh);
    assert_eq!(at(8), load(&source).model);
    assert_ne!(at(4), at(0));

    // Round 1: masks ranked by the trained weights, applied to the rewound step-4 weights.
    let ticket = root.path().join("ticket");
    let mut round = pruned(&source, 0.5, PruneScope::Global, 0);
    round.train.init_step = Some(4);
    round.train.prune.as_mut().unwrap().from = Some(source.display().to_string());
    train(round.clone(), &ticket, &Default::default()).unwrap();
    let masks = magnitude_masks(&load(&source).model, round.train.prune.as_ref().unwrap());
    let got = load(&ticket);
    assert_eq!(got.masks, masks);
    let rewound = at(4);
    for (name, w) in &got.model {
        let want: Vec<f32> = match masks.get(name) {
            Some(m) => rewound[name]
                .values
                .iter()
                .zip(&m.values)
                .map(|(w, m)| w * m)
                .collect(),
            None => rewound[name].values.clone(),
        };
        assert_eq!(w.values, want, "{name}");
    }

    // Round 2 ranks round 1's (pruned) weights at a higher sparsity: a superset of its zeros.
    let deeper = PruneConfig {
        sparsity: 0.75,
        scope: PruneScope::Global,
        from: None,
    };
    let next = magnitude_masks(&got.model, &deeper);
    for (name, m) in &masks {
        for (i, keep) in m.values.iter().enumerate() {
            if *keep == 0.0 {
                assert_eq!(next[name].values[i], 0.0, "{name}[{i}] came back");
            }
        }
    }

    // Rewinding to a step the source did not keep is named.
    let mut missing = round;
    missing.train.init_step = Some(3);
    let err = train(missing, &root.path().join("missing"), &Default::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("keep_at=[3]"), "{err}");
}

fn load_file(path: &Path) -> Checkpoint {
    Checkpoint::load(path).unwrap()
}
