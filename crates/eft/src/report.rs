//! `eft report`: one Markdown table from the records of several runs.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eft_train::{RECORD_FILE, RunRecord, RunStatus};

use crate::args::ReportArgs;
use crate::plot::Bubble;

/// Runs the command.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    let mut records = Vec::new();
    for path in &args.runs {
        for file in record_files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let record: RunRecord = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an eft run record", file.display()))?;
            records.push(record);
        }
    }
    if records.is_empty() {
        anyhow::bail!(
            "no {RECORD_FILE} under {:?}; point eft report at run folders",
            args.runs
        );
    }
    print!("{}", table(&records));
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let runs = bubbles(&records);
        anyhow::ensure!(!runs.is_empty(), "no finished run to plot");
        for path in crate::plot::bubbles(
            &dir.join("bubbles"),
            "Accuracy, speed and memory (bubble area: peak memory)",
            "training tokens per second",
            &runs,
        )? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Finished runs as bubbles: test accuracy against tokens/s, area by peak memory.
fn bubbles(records: &[RunRecord]) -> Vec<Bubble> {
    records
        .iter()
        .filter_map(|r| {
            let test = r
                .test
                .as_ref()
                .filter(|_| r.status == RunStatus::Finished)?;
            Some(Bubble {
                name: r.config.model.attention.name().to_string(),
                speed: r.tokens_per_second,
                accuracy: 100.0 * test.accuracy,
                memory: r.peak_memory_bytes.unwrap_or(1) as f64,
            })
        })
        .collect()
}

/// `path/record.json`, or the records of the run folders directly inside `path`.
fn record_files(path: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let own = path.join(RECORD_FILE);
    if own.exists() {
        return Ok(vec![own]);
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir(path)
        .with_context(|| format!("reading {}", path.display()))?
        .filter_map(|e| Some(e.ok()?.path().join(RECORD_FILE)))
        .filter(|p| p.exists())
        .collect();
    found.sort();
    Ok(found)
}

fn table(records: &[RunRecord]) -> String {
    let mut s = String::from(
        "| run | attention | test accuracy | majority baseline | steps | wall-clock | tokens/s | peak memory | GFLOP/step | ms/step (p10–p90) | of matmul peak | cost |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
    );
    for r in records {
        let accuracy = match (&r.test, r.status) {
            (Some(t), RunStatus::Finished) => format!("{:.1}%", 100.0 * t.accuracy),
            _ => format!("({:?})", r.status).to_lowercase(),
        };
        let model = &r.config.model;
        let describe = |a: &eft_attention::AttentionConfig| {
            let text = toml::to_string(a).unwrap_or_default();
            let params: Vec<&str> = text.lines().filter(|l| !l.starts_with("kind")).collect();
            format!("{} {}", a.name(), params.join(", ").replace(" = ", "="))
        };
        let attention = if model.layer_attention.is_empty() {
            describe(&model.attention)
        } else {
            model
                .layer_attention
                .iter()
                .map(describe)
                .collect::<Vec<_>>()
                .join(" / ")
        };
        let na = || "n/a".to_string();
        let (flops, step, share, cost) = match &r.meter {
            Some(m) => (
                format!("{:.3}", m.flops_per_step / 1e9),
                m.step_seconds.map_or_else(na, |t| {
                    format!(
                        "{:.1} ({:.1}–{:.1})",
                        1e3 * t.median,
                        1e3 * t.p10,
                        1e3 * t.p90
                    )
                }),
                m.fraction_of_peak
                    .map_or_else(na, |f| format!("{:.1}%", 100.0 * f)),
                format!("${:.4}", m.cost_usd),
            ),
            None => (na(), na(), na(), na()),
        };
        s += &format!(
            "| {} | {} | {} | {:.1}% | {} | {:.0} s | {:.0} | {} | {flops} | {step} | {share} | {cost} |\n",
            r.config.name,
            attention.trim(),
            accuracy,
            100.0 * r.majority_baseline.test_accuracy,
            r.steps_done,
            r.wall_clock_seconds,
            r.tokens_per_second,
            r.peak_memory_bytes
                .map(|b| format!("{:.0} MiB", b as f64 / f64::from(1u32 << 20)))
                .unwrap_or_else(|| "n/a".into()),
        );
    }
    s
}

/// Prints a finished or stopped run's outcome and its meter figures, as `eft train` ends.
pub fn print_record(record: &RunRecord) {
    let name = &record.config.name;
    match (record.status, &record.test) {
        (RunStatus::Finished, Some(test)) => {
            println!(
                "{name}: test accuracy {:.2}% (majority-class baseline {:.2}%), test loss {:.4}",
                100.0 * test.accuracy,
                100.0 * record.majority_baseline.test_accuracy,
                test.loss
            );
        }
        (RunStatus::Diverged, _) => println!(
            "{name}: diverged at step {} (non-finite loss or gradient); its last checkpoint is \
             kept; lower train.schedule.lr or set train.max_grad_norm",
            record.diverged_at_step.unwrap_or(record.steps_done + 1)
        ),
        _ => println!(
            "{name}: stopped after {} of {} steps; continue with `eft train --resume <RUN_DIR>`",
            record.steps_done, record.config.train.steps
        ),
    }
    let memory = record
        .peak_memory_bytes
        .map(|b| format!("{:.0} MiB", b as f64 / (1 << 20) as f64))
        .unwrap_or_else(|| "n/a".into());
    println!(
        "{} steps in {:.1} s, {:.0} tokens/s, peak memory {memory}, {} parameters",
        record.steps_done, record.wall_clock_seconds, record.tokens_per_second, record.parameters
    );
    if let Some(m) = &record.meter {
        println!(
            "{:.3} GFLOP/step, {:.2e} FLOPs in all, {} of the matmul peak, ${:.4} at ${}/h (${:.3} per million tokens)",
            m.flops_per_step / 1e9,
            m.total_flops,
            m.fraction_of_peak
                .map_or_else(|| "n/a".into(), |f| format!("{:.1}%", 100.0 * f)),
            m.cost_usd,
            m.usd_per_hour,
            m.usd_per_million_tokens
        );
    }
}
