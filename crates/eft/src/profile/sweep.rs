//! `eft profile sweep`: mechanisms × lengths, each in a fresh process, within memory and time
//! budgets; results merged into JSON, CSV, Markdown and log-log charts.

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::Context;
use eft_attention::AttentionConfig;

use super::table::{csv, markdown};
use super::{Measurement, analytic};
use crate::args::{AttentionProfileArgs, SweepArgs};
use crate::plot::{Axis, Heading, Series, Unit, log_log};

/// Autodiff keeps scores, probabilities and their gradients alive together: `full` peaked at
/// about four times its saved bytes at N = 8K and 16K; five leaves a margin.
const PEAK_OVER_SAVED: f64 = 5.0;

/// How one child process ended.
pub(super) enum Outcome {
    Done(Box<Measurement>),
    OverBudget,
    OutOfMemory(String),
    Failed(String),
}

/// Runs `eft profile attention` for `one`, killing it after `budget`.
pub(super) fn measure_in_child(
    one: &AttentionProfileArgs,
    budget: Duration,
) -> anyhow::Result<Outcome> {
    let exe = std::env::current_exe().context("finding the eft executable")?;
    let mut child = Command::new(exe)
        .args(["profile", "attention", "--mechanism", &one.mechanism])
        .args(["--len", &one.len.to_string()])
        .args(["--batch", &one.batch.to_string()])
        .args(["--heads", &one.heads.to_string()])
        .args(["--head-dim", &one.head_dim.to_string()])
        .args(["--repeats", &one.repeats.to_string()])
        .args(
            one.model
                .iter()
                .flat_map(|p| ["--model".to_string(), p.clone()]),
        )
        .args(
            one.params
                .iter()
                .flat_map(|(k, v)| ["--param".to_string(), format!("{k}={v}")]),
        )
        .args(
            one.sets
                .iter()
                .flat_map(|(k, v)| ["--set".to_string(), format!("{k}={v}")]),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running eft profile attention")?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > budget {
            let _ = child.kill();
            let _ = child.wait();
            return Ok(Outcome::OverBudget);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    // Finishing between two polls after the budget ran out is still over it.
    if started.elapsed() > budget {
        return Ok(Outcome::OverBudget);
    }
    let (mut out, mut err) = (Vec::new(), String::new());
    if let Some(mut s) = child.stdout.take() {
        s.read_to_end(&mut out)?;
    }
    if let Some(mut s) = child.stderr.take() {
        s.read_to_string(&mut err)?;
    }
    let err = err.trim().to_string();
    if status.success() {
        return Ok(match serde_json::from_slice::<Measurement>(&out) {
            Ok(m) => Outcome::Done(Box::new(m)),
            Err(e) => Outcome::Failed(format!("unreadable result ({e})")),
        });
    }
    #[cfg(unix)]
    let signal = std::os::unix::process::ExitStatusExt::signal(&status);
    #[cfg(not(unix))]
    let signal: Option<i32> = None;
    // An allocation failure aborts (SIGABRT); the kernel's OOM killer sends SIGKILL.
    if err.contains("memory allocation") || matches!(signal, Some(6) | Some(9)) {
        return Ok(Outcome::OutOfMemory(format!("{status}")));
    }
    Ok(Outcome::Failed(format!("{status}: {err}")))
}

/// Runs the sweep and writes its files.
pub fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    if args.redraw {
        return write_all(args, Vec::new());
    }
    let names: Vec<String> = if args.mechanisms.is_empty() || args.mechanisms == ["all"] {
        AttentionConfig::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.mechanisms.clone()
    };
    let budget = Duration::from_secs_f64(args.max_seconds);
    // A model holds every layer's attention for the backward pass.
    let layers = match &args.model {
        Some(p) => eft_train::preset("listops", p)?.model.n_layers as f64,
        None => 1.0,
    };
    let mut results = Vec::new();
    for name in &names {
        // Once a mechanism runs out of memory or time, longer lengths are not tried.
        let mut stopped: Option<String> = None;
        for &len in &args.lens {
            let one = AttentionProfileArgs {
                mechanism: name.clone(),
                params: args.params.clone(),
                len,
                batch: args.batch,
                heads: args.heads,
                head_dim: args.head_dim,
                causal: false,
                repeats: args.repeats,
                model: args.model.clone(),
                sets: Vec::new(),
            };
            let config = AttentionConfig::from_name_and_params(name, &args.params)?;
            let cost = analytic(&one, &config);
            let estimate = PEAK_OVER_SAVED * cost.1 * layers / f64::from(1u32 << 30);
            let m = if let Some(why) = &stopped {
                Measurement::skipped(&one, cost, why.clone())
            } else if estimate > args.max_gib {
                Measurement::skipped(
                    &one,
                    cost,
                    format!(
                        "out of memory: needs about {estimate:.0} GiB (limit {} GiB)",
                        args.max_gib
                    ),
                )
            } else {
                eprintln!("profiling {name} at N = {len}…");
                match measure_in_child(&one, budget)? {
                    Outcome::Done(m) => *m,
                    Outcome::OverBudget => Measurement::skipped(
                        &one,
                        cost,
                        format!("over budget: more than {} s", args.max_seconds),
                    ),
                    Outcome::OutOfMemory(how) => {
                        Measurement::skipped(&one, cost, format!("out of memory ({how})"))
                    }
                    Outcome::Failed(why) => {
                        Measurement::skipped(&one, cost, format!("failed ({why})"))
                    }
                }
            };
            if let Some(note) = &m.note
                && (note.starts_with("out of memory") || note.starts_with("over budget"))
                && stopped.is_none()
            {
                let kind = note.split(':').next().unwrap_or(note).split(" (").next();
                stopped = Some(format!("{} at a shorter length", kind.unwrap_or(note)));
            }
            results.push(m);
        }
    }
    write_all(args, results)
}

/// Merges `results` into the files in `args.out` (keeping earlier rows this sweep did not
/// repeat) and writes JSON, CSV, Markdown and the charts.
fn write_all(args: &SweepArgs, results: Vec<Measurement>) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let stem = match &args.model {
        Some(p) => format!("model-{p}"),
        None => "attention".to_string(),
    };
    let path = args.out.join(format!("{stem}-cpu.json"));
    let earlier = super::read_measurements(&path);
    let repeated = |m: &Measurement| {
        results
            .iter()
            .any(|r| r.mechanism == m.mechanism && r.params == m.params && r.len == m.len)
    };
    let kept: Vec<Measurement> = earlier.into_iter().filter(|m| !repeated(m)).collect();
    let mut results: Vec<Measurement> = kept.into_iter().chain(results).collect();
    results.sort_by_key(|m| {
        let rank = AttentionConfig::NAMES
            .iter()
            .position(|n| *n == m.mechanism)
            .unwrap_or(usize::MAX);
        (rank, super::table::label(m), m.len)
    });
    // The shape the measurements have (a model fixes its own heads and head size).
    let (batch, heads, head_dim) = results
        .first()
        .map_or((args.batch, args.heads, args.head_dim), |m| {
            (m.batch, m.heads, m.head_dim)
        });
    let what = match &args.model {
        Some(p) => format!(
            "One training step (forward and backward) of the `{p}` ListOps model, B={batch}, \
             H={heads}, D={head_dim}"
        ),
        None => {
            format!("Forward+backward of one attention call, B={batch}, H={heads}, D={head_dim}")
        }
    };
    let json = serde_json::to_string_pretty(&results)?;
    eft_train::write_atomic(&path, json.as_bytes())?;
    eft_train::write_atomic(
        &args.out.join(format!("{stem}-cpu.csv")),
        csv(&results).as_bytes(),
    )?;
    let table = markdown(&results, &what);
    eft_train::write_atomic(&args.out.join(format!("{stem}-cpu.md")), table.as_bytes())?;
    println!("{table}");
    draw_charts(&args.out, &stem, &what, &results);
    eprintln!(
        "wrote {}",
        args.out
            .join(format!("{stem}-cpu.{{json,csv,md}}"))
            .display()
    );
    Ok(())
}

/// The time and memory charts of `results` (`<stem>-time`, `<stem>-memory`, PNG and SVG); a
/// chart that cannot be drawn (no font) loses the picture, not the measurements.
fn draw_charts(out: &std::path::Path, stem: &str, what: &str, results: &[Measurement]) {
    let series = |value: fn(&Measurement) -> Option<f64>| -> Vec<Series> {
        let mut out: Vec<Series> = Vec::new();
        for m in results {
            let Some(y) = value(m) else { continue };
            let name = super::table::label(m);
            match out.iter_mut().find(|s| s.name == name) {
                Some(s) => s.points.push((m.len as f64, y)),
                None => out.push(Series {
                    name,
                    points: vec![(m.len as f64, y)],
                }),
            }
        }
        out
    };
    let mut machines: Vec<&str> = results
        .iter()
        .filter_map(|m| m.machine.as_deref())
        .collect();
    machines.sort_unstable();
    machines.dedup();
    let machine = match machines.as_slice() {
        [] => "machine not recorded".to_string(),
        some => some.join("; "),
    };
    let subtitle = format!("{what}; f32, median pass; {machine}");
    let charts = [
        (
            "time",
            "Time per forward+backward pass",
            Axis {
                label: "seconds (median pass)",
                unit: Unit::Seconds,
            },
            series(|m| m.seconds),
        ),
        (
            "memory",
            "Peak heap of a pass (tracking allocator)",
            Axis {
                label: "peak heap",
                unit: Unit::Mebibytes,
            },
            series(|m| m.heap_peak_bytes.map(|b| b as f64 / f64::from(1u32 << 20))),
        ),
    ];
    let x = Axis {
        label: "sequence length N",
        unit: Unit::Length,
    };
    for (kind, title, y, lines) in charts {
        if lines.is_empty() {
            continue;
        }
        let chart = out.join(format!("{stem}-{kind}"));
        let heading = Heading {
            title,
            subtitle: &subtitle,
        };
        if let Err(e) = log_log(&chart, heading, x, y, &lines) {
            eprintln!("warning: {} not drawn: {e:#}", chart.display());
        }
    }
}
