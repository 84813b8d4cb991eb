//! Models that compute conditionally train: with Switch mixture-of-experts feed-forward layers,
//! or as a Universal Transformer with adaptive computation time, they learn quick ListOps, their
//! records carry the auxiliary losses and statistics (dropped tokens, steps per position), and
//! their meters count fewer executed FLOPs than analytic ones.

mod common;

use eft_model::{
    ActConfig, ConfidenceExits, DepthConfig, ExitsConfig, FeedForwardConfig, SwitchConfig,
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

#[test]
fn a_switch_model_learns_and_records_what_it_skipped() {
    let record = common::quick_listops_record(|m| {
        m.feed_forward = FeedForwardConfig::Switch(SwitchConfig {
            jitter: 0.01,
            z_loss: 0.001,
            every: 2,
            ..SwitchConfig::with_experts(4)
        });
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
    let run = last.layer_stats["act_steps_run"][0];
    assert!(
        (1.0..=6.0).contains(&steps) && steps <= run,
        "{steps} of {run}"
    );
    let meter = record.meter.unwrap();
    let executed = meter.executed_flops_per_step.unwrap();
    // Six steps analytic; the batch ran `run` on average.
    let ratio = executed / meter.flops_per_step;
    assert!(
        ratio < 1.0 && ratio > 0.9 * run / 6.0,
        "{ratio} for {run} of 6 steps"
    );
}

/// A model with a head after every block learns through the mean of their losses; its test
/// record then evaluates early exit at the configured threshold: fewer layers and FLOPs.
#[test]
fn a_model_with_exits_learns_and_records_its_early_exits() {
    let record = common::quick_listops_record(|m| {
        m.exits = ExitsConfig::Confidence(ConfidenceExits { threshold: 0.3 });
    });
    assert_learned(&record);
    let exits = record.exits.expect("the record evaluates the exits");
    assert_eq!(exits.threshold, 0.3);
    assert!(exits.mean_layers < 4.0, "{exits:?}");
    assert!(exits.flops_saved() > 0.0, "{exits:?}");
    assert!(
        exits.accuracy > record.majority_baseline.test_accuracy,
        "{exits:?}"
    );
}
