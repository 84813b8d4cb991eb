//! Models that compute conditionally train: with Switch mixture-of-experts feed-forward layers,
//! as a Universal Transformer with adaptive computation time, with confidence or learned exits,
//! they learn quick ListOps, their records carry the auxiliary losses and statistics (dropped
//! tokens, steps per position, exits taken), and their meters count fewer executed FLOPs than
//! analytic ones.

mod common;

use eft_model::{
    ActConfig, ConfidenceExits, DepthConfig, ExitsConfig, FeedForwardConfig, LearnedExits,
    SwitchConfig,
};

/// The run beat the majority class by 5 points.
fn assert_learned(record: &eft_train::RunRecord) {
    let (test, majority) = (
        record.test.unwrap().accuracy,
        record.majority_baseline.test_accuracy,
    );
    assert!(
        test > majority + 0.05,
        "test {test} against majority {majority}"
    );
}

/// Switch layers (every second block) and confidence exits in one model, each doing its job:
/// the record carries the router's losses and drops, fewer executed than analytic FLOPs, and the
/// test split's early exits.
#[test]
fn a_switch_model_with_exits_learns_and_records_what_it_skipped() {
    let record = common::quick_listops_record(|m| {
        m.feed_forward = FeedForwardConfig::Switch(SwitchConfig {
            jitter: 0.01,
            z_loss: 0.001,
            every: 2,
            ..SwitchConfig::with_experts(4)
        });
        m.exits = ExitsConfig::Confidence(ConfidenceExits { threshold: 0.3 });
    });
    assert_learned(&record);
    let last = record.evals.last().unwrap();
    let balance = last.aux_losses["balance"];
    // Two Switch layers, each α·E·Σ fᵢPᵢ ≥ α (equality when balanced), α = 0.01.
    assert!((0.02..0.08).contains(&balance), "balance {balance}");
    assert!(last.aux_losses["router_z"] > 0.0);
    let dropped = &last.layer_stats["dropped_fraction"];
    assert_eq!(dropped.len(), 4);
    assert_eq!(
        (dropped[0], dropped[2]),
        (0.0, 0.0),
        "dense layers drop nothing"
    );
    let meter = record.meter.unwrap();
    let executed = meter.executed_flops_per_step.unwrap();
    assert!(
        executed < meter.flops_per_step && executed > 0.5 * meter.flops_per_step,
        "{executed} of {}",
        meter.flops_per_step
    );
    let exits = record.exits.expect("the record evaluates the exits");
    assert_eq!(exits.threshold, Some(0.3));
    assert!(exits.mean_layers < 4.0, "{exits:?}");
    assert!(exits.flops_saved() > 0.0, "{exits:?}");
    assert!(
        exits.accuracy > record.majority_baseline.test_accuracy,
        "{exits:?}"
    );
}

#[test]
fn a_universal_transformer_with_act_learns_and_records_its_steps() {
    let record = common::quick_listops_record(|m| {
        m.n_layers = 1;
        m.depth = DepthConfig::Act(ActConfig::with_max_steps(6));
    });
    assert_learned(&record);
    let last = record.evals.last().unwrap();
    assert!(last.aux_losses["ponder"] > 0.0);
    let steps = last.layer_stats["act_steps"][0];
    let per_sequence = last.layer_stats["act_steps_per_sequence"][0];
    let run = last.layer_stats["act_steps_run"][0];
    assert!(
        (1.0..=6.0).contains(&steps) && steps <= per_sequence && per_sequence <= run,
        "{steps} per position, {per_sequence} per sequence, {run} per batch"
    );
    let meter = record.meter.unwrap();
    let executed = meter.executed_flops_per_step.unwrap();
    // Six steps of every sequence analytic; a sequence ran `per_sequence` on average.
    let ratio = executed / meter.flops_per_step;
    assert!(
        ratio < 1.0 && ratio > 0.8 * per_sequence / 6.0,
        "{ratio} for {per_sequence} of 6 steps"
    );
}

/// Learned exits: a depth classifier trained on oracle depths picks where each test sequence
/// exits; the record says how deep they went.
#[test]
fn a_model_with_learned_exits_learns_and_records_its_depths() {
    let record = common::quick_listops_record(|m| {
        m.exits = ExitsConfig::Learned(LearnedExits { penalty: 0.01 });
    });
    assert_learned(&record);
    let exits = record.exits.expect("the record evaluates the exits");
    assert_eq!(exits.threshold, None);
    assert!((1.0..=4.0).contains(&exits.mean_layers), "{exits:?}");
    assert!(exits.flops_saved() > -0.01, "{exits:?}");
}
