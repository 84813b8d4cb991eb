//! `eft context`: the effective context of trained language models (see
//! [`eft_train::context`]) as one table and one chart.

use std::fmt::Write as _;
use std::process::ExitCode;

use anyhow::{Context as _, bail};
use eft_train::context::{bits_at_context, default_contexts, effective_context};
use eft_train::{CHECKPOINT_FILE, Checkpoint, build_data, build_model, load_weights};
use serde::{Deserialize, Serialize};

use crate::args::ContextArgs;
use crate::device::device;
use crate::plot::{Axis, Heading, Series, Unit, log_log};

/// One model's curve.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Curve {
    run: String,
    mechanism: String,
    /// The attention parameters given, as TOML.
    params: String,
    /// Bytes per training window.
    trained_len: usize,
    /// `(context, bits per byte)`, increasing context.
    points: Vec<(usize, f64)>,
    /// The smallest context within the tolerance of the longest's bits per byte.
    effective: usize,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct Results {
    windows: usize,
    tolerance: f64,
    curves: Vec<Curve>,
}

/// Runs the command.
pub fn run(args: ContextArgs) -> anyhow::Result<ExitCode> {
    let device = device(args.device)?;
    let mut curves = Vec::new();
    for run in &args.runs {
        let path = run.join(CHECKPOINT_FILE);
        let checkpoint = Checkpoint::load(&path)?;
        let mut config = checkpoint.config.clone();
        let eft_data::TaskConfig::Lm(task) = &mut config.task else {
            bail!(
                "{}: effective context is measured on language models; this run's task is {}",
                run.display(),
                config.task.name()
            );
        };
        // More test windows than training evaluated on: the same seed, so the same first ones.
        task.test = args.windows;
        let len = task.len;
        let model = load_weights(build_model(&config, &device)?, &checkpoint, &path)?;
        let data = build_data(&config)?;
        let contexts = match &args.contexts {
            Some(c) => c.iter().copied().filter(|&c| c <= len).collect(),
            None => default_contexts(len),
        };
        if contexts.is_empty() {
            bail!("--contexts: none fits the run's windows of {len} bytes");
        }
        let mut points = Vec::new();
        for c in contexts {
            let bits = bits_at_context(&model, &data.test, c, &device);
            eprintln!("{}: context {c}: {bits:.3} bits per byte", run.display());
            points.push((c, bits));
        }
        curves.push(Curve {
            run: run.display().to_string(),
            mechanism: config.model.attention.name().to_string(),
            params: toml::to_string(&config.model.attention)
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.starts_with("kind"))
                .collect::<Vec<_>>()
                .join(", "),
            trained_len: len,
            effective: effective_context(&points, args.tolerance),
            points,
        });
    }
    let results = Results {
        windows: args.windows,
        tolerance: args.tolerance,
        curves,
    };
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let json = args.out.join("effective-context.json");
    eft_train::write_atomic(&json, serde_json::to_string_pretty(&results)?.as_bytes())?;
    write_report(&args.out, &results)?;
    Ok(ExitCode::SUCCESS)
}

fn write_report(out: &std::path::Path, results: &Results) -> anyhow::Result<()> {
    let mut contexts: Vec<usize> = results
        .curves
        .iter()
        .flat_map(|c| c.points.iter().map(|p| p.0))
        .collect();
    contexts.sort_unstable();
    contexts.dedup();
    let mut md = String::new();
    writeln!(
        md,
        "# Effective context\n\n\
         Bits per byte of the byte after each of {} test windows when the model sees only the \
         last `c` bytes before it (fed from position 0). Effective context: the smallest `c` \
         within {:.0}% of the curve's best bits per byte — beyond it, more context buys less \
         than that; \"longest − best\" is what the rest of the window adds (positive: the model \
         does worse with more context). Dai et al. 2019's RECL, simplified: each model against \
         itself, one corpus. Regenerate with `bash bench/context.sh`.\n",
        results.windows,
        results.tolerance * 100.0
    )?;
    let header: Vec<String> = contexts.iter().map(|c| c.to_string()).collect();
    writeln!(
        md,
        "| run | mechanism | trained on | effective | best at | longest − best | {} |",
        header.join(" | ")
    )?;
    writeln!(
        md,
        "|---|---|---:|---:|---:|---:|{}",
        "---:|".repeat(contexts.len())
    )?;
    for curve in &results.curves {
        let cells: Vec<String> = contexts
            .iter()
            .map(|c| {
                curve
                    .points
                    .iter()
                    .find(|p| p.0 == *c)
                    .map_or("—".into(), |p| format!("{:.3}", p.1))
            })
            .collect();
        let mechanism = if curve.params.is_empty() {
            curve.mechanism.clone()
        } else {
            format!("{} ({})", curve.mechanism, curve.params)
        };
        let best = curve
            .points
            .iter()
            .copied()
            .reduce(|a, b| if b.1 < a.1 { b } else { a })
            .unwrap_or((0, f64::NAN));
        let longest = curve.points.last().map_or(f64::NAN, |p| p.1);
        writeln!(
            md,
            "| {} | {mechanism} | {} | {} | {} | {:+.3} | {} |",
            curve.run,
            curve.trained_len,
            curve.effective,
            best.0,
            longest - best.1,
            cells.join(" | ")
        )?;
    }
    eft_train::write_atomic(&out.join("effective-context.md"), md.as_bytes())?;
    let series: Vec<Series> = results
        .curves
        .iter()
        .map(|c| Series {
            name: format!("{}, trained on {}", c.mechanism, c.trained_len),
            points: c.points.iter().map(|&(x, y)| (x as f64, y)).collect(),
        })
        .collect();
    let heading = Heading {
        title: "Bits per byte against the context seen",
        subtitle: "byte after each test window, the model given only the last c bytes",
    };
    let x = Axis {
        label: "context c (bytes)",
        unit: Unit::Length,
    };
    let y = Axis {
        label: "bits per byte",
        unit: Unit::Plain,
    };
    // The table is written; a chart that cannot be drawn (no font) is reported.
    match log_log(&out.join("effective-context"), heading, x, y, &series) {
        Ok(files) => eprintln!("drew {}", files.len()),
        Err(e) => eprintln!("no chart: {e}"),
    }
    eprintln!(
        "wrote {}",
        out.join("effective-context.{json,md}").display()
    );
    Ok(())
}
