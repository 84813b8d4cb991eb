//! A model with Switch mixture-of-experts feed-forward layers trains: it learns quick ListOps,
//! its record carries the router's auxiliary losses and dropped tokens, and its meter counts
//! fewer executed FLOPs than analytic ones (padding is not routed, dropped tokens run no expert).

mod common;

use eft_model::{FeedForwardConfig, SwitchConfig};

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
    let (test, majority) = (
        record.test.unwrap().accuracy,
        record.majority_baseline.test_accuracy,
    );
    assert!(
        test > majority + 0.05,
        "test {test} against majority {majority}"
    );
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
