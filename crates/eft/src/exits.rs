//! `eft eval RUN --exit-threshold P,...`: the early-exit sweep of a run with exits, as a table,
//! JSON and a chart of accuracy against the FLOPs executed per example.

use std::fmt::Write as _;
use std::path::Path;

use burn::tensor::Device;
use eft_data::Example;
use eft_model::{Classifier, ExitRule};
use eft_train::{Checkpoint, ExitEval, TrainError, evaluate_exiting, write_atomic};

use crate::plot::{Axis, Heading, Series, Unit, log_log};

/// Checks the thresholds before anything is evaluated: each in (0, 1], and the run must have
/// exits to take.
pub fn check(checkpoint: &Checkpoint, thresholds: &[f64]) -> Result<(), TrainError> {
    let bad = |value: String, fix: &str| {
        Err(TrainError::Config {
            field: "--exit-threshold".into(),
            value,
            fix: fix.into(),
        })
    };
    match checkpoint.config.model.exits.rule() {
        None => {
            return bad(
                format!("{thresholds:?}"),
                "this run has no exits; train one with model.exits = { kind = \"confidence\", \
                 threshold = 0.9 }",
            );
        }
        Some(ExitRule::Learned) => {
            return bad(
                format!("{thresholds:?}"),
                "this run's depth classifier picks where each sequence exits: run eft eval \
                 without --exit-threshold, or see its record's `exits`",
            );
        }
        Some(ExitRule::Confidence(_)) => {}
    }
    match thresholds.iter().find(|t| !(**t > 0.0 && **t <= 1.0)) {
        Some(t) => bad(
            t.to_string(),
            "each threshold must be in (0, 1] (1: never exit early)",
        ),
        None => Ok(()),
    }
}

/// Evaluates `examples` at every threshold and writes `exits.json`, `exits.md` and the chart
/// `exits.{png,svg}` into `run`; returns the Markdown table.
pub fn sweep(
    run: &Path,
    name: &str,
    model: &Classifier,
    examples: &[Example],
    batch_size: usize,
    device: &Device,
    thresholds: &[f64],
) -> anyhow::Result<String> {
    let mut points: Vec<ExitEval> = thresholds
        .iter()
        .map(|&t| evaluate_exiting(model, examples, batch_size, device, ExitRule::Confidence(t)))
        .collect();
    points.sort_by(|a, b| {
        a.threshold
            .unwrap_or(0.0)
            .total_cmp(&b.threshold.unwrap_or(0.0))
    });
    let mut md = String::from(
        "| threshold | accuracy | loss | mean layers | GFLOP per example | of the full model |\n\
         |---|---|---|---|---|---|\n",
    );
    for p in &points {
        let _ = writeln!(
            md,
            "| {} | {:.2}% | {:.4} | {:.2} | {:.4} | {:.1}% |",
            p.threshold.unwrap_or(0.0),
            100.0 * p.accuracy,
            p.loss,
            p.mean_layers,
            p.flops_per_example / 1e9,
            100.0 * (1.0 - p.flops_saved())
        );
    }
    write_atomic(
        &run.join("exits.json"),
        serde_json::to_string_pretty(&points)?.as_bytes(),
    )?;
    write_atomic(&run.join("exits.md"), md.as_bytes())?;
    let series = [Series {
        name: name.to_string(),
        points: points
            .iter()
            .map(|p| (p.flops_per_example / 1e9, 100.0 * p.accuracy))
            .collect(),
    }];
    let subtitle = format!(
        "{} examples; one point per threshold ({}); forward FLOPs executed per example",
        points.first().map_or(0, |p| p.examples),
        thresholds
            .iter()
            .map(|t| t.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    let heading = Heading {
        title: "Early exit: accuracy against compute",
        subtitle: &subtitle,
    };
    let x = Axis {
        label: "GFLOP per example",
        unit: Unit::Plain,
    };
    let y = Axis {
        label: "accuracy (%)",
        unit: Unit::Plain,
    };
    // The table is written; a chart that cannot be drawn (no font) is reported.
    if let Err(e) = log_log(&run.join("exits"), heading, x, y, &series) {
        eprintln!("warning: exits chart not drawn: {e:#}");
    }
    Ok(md)
}
