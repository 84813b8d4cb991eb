//! `eft report`: one Markdown table from the records of several runs, and their charts: the
//! accuracy/speed/memory bubbles and the training curves.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use eft_train::metrics::{self, MetricsKind};
use eft_train::{RECORD_FILE, RunRecord, RunStatus};

use crate::args::ReportArgs;
use crate::plot::{Axis, Bubble, Curves, Heading, Series, Unit, log_log};

/// Runs the command.
pub fn run(args: ReportArgs) -> anyhow::Result<ExitCode> {
    // Search folders get the search's report (and two of them, their comparison).
    if args
        .runs
        .iter()
        .all(|p| p.join(crate::search::LOG_FILE).is_file())
    {
        let logs = args
            .runs
            .iter()
            .map(|p| crate::search::load(p))
            .collect::<anyhow::Result<Vec<_>>>()?;
        for (dir, log) in args.runs.iter().zip(&logs) {
            println!("{}", crate::search::write_outputs(dir, log)?);
        }
        if let [a, b] = &logs[..] {
            let n = crate::search::val_examples(&args.runs[0]);
            println!(
                "## {} against {}\n",
                args.runs[0].display(),
                args.runs[1].display()
            );
            println!("{}", crate::search::compare(a, b, n));
        }
        return Ok(ExitCode::SUCCESS);
    }
    let mut runs: Vec<(PathBuf, RunRecord)> = Vec::new();
    for path in &args.runs {
        for file in record_files(path)? {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("reading {}", file.display()))?;
            let record: RunRecord = serde_json::from_str(&text)
                .with_context(|| format!("{}: not an eft run record", file.display()))?;
            let dir = file.parent().unwrap_or(Path::new(".")).to_path_buf();
            runs.push((dir, record));
        }
    }
    if runs.is_empty() {
        anyhow::bail!(
            "no {RECORD_FILE} under {:?}; point eft report at run folders",
            args.runs
        );
    }
    print!("{}", table(runs.iter().map(|(_, r)| r)));
    let subtitle = format!(
        "{} runs; f32; report drawn on {}",
        runs.len(),
        eft_meter::machine()
    );
    if let Some(dir) = &args.plots {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let points = bubbles(&runs);
        anyhow::ensure!(!points.is_empty(), "no finished run to plot");
        let heading = Heading {
            title: "Accuracy, speed and memory of finished runs",
            subtitle: &subtitle,
        };
        let speed = Axis {
            label: "training tokens per second",
            unit: Unit::Plain,
        };
        for path in crate::plot::bubbles(
            &dir.join("bubbles"),
            heading,
            speed,
            Unit::Mebibytes,
            &points,
        )? {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(dir) = &args.pruning {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let series = pruning(&runs);
        anyhow::ensure!(!series.is_empty(), "no finished pruned run to plot");
        let heading = Heading {
            title: "Accuracy against the weights kept",
            subtitle: &subtitle,
        };
        let kept = Axis {
            label: "dense weights kept (%)",
            unit: Unit::Plain,
        };
        let accuracy = Axis {
            label: "test accuracy (%)",
            unit: Unit::Plain,
        };
        for path in log_log(&dir.join("pruning"), heading, kept, accuracy, &series)? {
            eprintln!("wrote {}", path.display());
        }
    }
    if let Some(dir) = &args.curves {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let heading = Heading {
            title: "Training curves",
            subtitle: &subtitle,
        };
        for path in crate::plot::curves(&dir.join("curves"), heading, &curves(&runs))? {
            eprintln!("wrote {}", path.display());
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Each run's label: its folder's name (unique within a folder of runs, unlike mechanism names).
fn label(dir: &Path, record: &RunRecord) -> String {
    dir.file_name().map_or_else(
        || record.config.name.clone(),
        |n| n.to_string_lossy().into_owned(),
    )
}

/// Finished runs as bubbles: test accuracy against tokens/s, area by the heap peak of a step
/// (MiB), or by peak RSS where the heap was not tracked.
fn bubbles(runs: &[(PathBuf, RunRecord)]) -> Vec<Bubble> {
    runs.iter()
        .filter_map(|(dir, r)| {
            let test = r
                .test
                .as_ref()
                .filter(|_| r.status == RunStatus::Finished)?;
            let bytes = r
                .meter
                .as_ref()
                .and_then(|m| m.peak_step_heap_bytes)
                .or(r.peak_rss_bytes)
                .unwrap_or(1);
            Some(Bubble {
                name: label(dir, r),
                speed: r.tokens_per_second,
                accuracy: 100.0 * test.accuracy,
                memory: bytes as f64 / f64::from(1u32 << 20),
            })
        })
        .collect()
}

/// Finished pruned runs as lines of test accuracy against the share of dense weights kept, one
/// per task and fine-tuning length, or per task for lottery tickets and their controls.
fn pruning(runs: &[(PathBuf, RunRecord)]) -> Vec<Series> {
    let mut series: Vec<Series> = Vec::new();
    for (_, r) in runs {
        let (Some(p), Some(test)) = (&r.prune, &r.test) else {
            continue;
        };
        if r.status != RunStatus::Finished {
            continue;
        }
        let task = r.config.task.name();
        // Lottery rounds rank a trained run's weights (`prune.from`): the ticket rewinds, the
        // control starts fresh; one-shot pruning fine-tunes the pruned weights.
        let name = match (p.asked.from.is_some(), r.config.train.init_step) {
            (true, Some(k)) => format!("{task}, ticket rewound to step {k}"),
            (true, None) => format!("{task}, same mask, fresh init"),
            (false, _) => match r.config.train.steps {
                0 => format!("{task}, not fine-tuned"),
                n => format!("{task}, fine-tuned {n} steps"),
            },
        };
        let point = (100.0 * (1.0 - p.sparsity), 100.0 * test.accuracy);
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    for s in &mut series {
        s.points.sort_by(|a, b| b.0.total_cmp(&a.0));
    }
    series.sort_by(|a, b| a.name.cmp(&b.name));
    series
}

/// Each run's loss and accuracy curves from its `metrics.jsonl`.
fn curves(runs: &[(PathBuf, RunRecord)]) -> Vec<Curves> {
    runs.iter()
        .map(|(dir, r)| {
            let mut c = Curves {
                name: label(dir, r),
                ..Curves::default()
            };
            for line in metrics::read(dir) {
                let (step, accuracy) = (line.step as f64, 100.0 * line.accuracy);
                match line.kind {
                    MetricsKind::Train => {
                        c.train_loss.push((step, line.loss));
                        c.train_accuracy.push((step, accuracy));
                    }
                    MetricsKind::Val => {
                        c.val_loss.push((step, line.loss));
                        c.val_accuracy.push((step, accuracy));
                    }
                    MetricsKind::Test => {}
                }
            }
            c
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

fn table<'a>(records: impl Iterator<Item = &'a RunRecord>) -> String {
    let mut s = String::from(
        "| run | attention | test accuracy | majority baseline | steps | wall-clock | tokens/s | peak heap/step | peak RSS | GFLOP/step | executed GFLOP/step | ms/step (p10–p90) | of matmul peak | cost |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|---|---|\n",
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
        // The memory and conditional-computation techniques a run used, after its mechanism.
        let mut techniques = Vec::new();
        if model.share != eft_model::Share::None {
            techniques.push(format!("{} layers, share {}", model.n_layers, model.share));
        }
        if let Some(k) = model.recompute.segment() {
            techniques.push(format!("recompute every {k}"));
        }
        if model.residual == eft_model::Residual::Reversible {
            techniques.push("reversible".into());
        }
        if let Some(c) = model.ffn_chunk {
            techniques.push(format!("ffn in pieces of {c}"));
        }
        if let eft_model::FeedForwardConfig::Switch(s) = &model.feed_forward {
            let every = match s.every {
                1 => String::new(),
                k => format!(" every {k} layers"),
            };
            techniques.push(format!(
                "switch {} experts, capacity {}{every}",
                s.experts, s.capacity_factor
            ));
        }
        if let Some(e) = &r.exits {
            techniques.push(format!(
                "exits {}: {:.1}%, {:.2} layers, {:.0}% of the FLOPs",
                exit_rule(e.threshold),
                100.0 * e.accuracy,
                e.mean_layers,
                100.0 * (1.0 - e.flops_saved())
            ));
        }
        if let eft_model::DepthConfig::Act(a) = &model.depth {
            techniques.push(format!(
                "act ≤{} steps, threshold {}, ponder {}",
                a.max_steps, a.threshold, a.ponder
            ));
        }
        if r.config.train.precision != eft_train::Precision::F32 {
            techniques.push(r.config.train.precision.to_string());
        }
        if let Some(d) = &r.config.train.distill {
            let teacher = Path::new(&d.teacher)
                .file_name()
                .map_or(d.teacher.clone(), |n| n.to_string_lossy().into_owned());
            techniques.push(format!(
                "distilled from {teacher} (T {}, α {})",
                d.temperature, d.alpha
            ));
        }
        if let Some(e) = &r.config.train.electra {
            techniques.push(format!(
                "ELECTRA (generator ×{}, λ {})",
                e.generator, e.rtd_weight
            ));
        }
        if !model.kept_heads.is_empty() {
            let kept: usize = model.kept_heads.iter().map(Vec::len).sum();
            let total = model.n_heads * model.n_layers;
            techniques.push(format!("heads {kept} of {total} kept"));
        }
        if let Some(source) = &r.config.train.init_from {
            let name = Path::new(source)
                .file_name()
                .map_or(source.clone(), |n| n.to_string_lossy().into_owned());
            techniques.push(match r.config.train.init_step {
                Some(k) => format!("from {name} at step {k}"),
                None => format!("from {name}"),
            });
        }
        if let Some(p) = &r.prune {
            techniques.push(
                format!(
                    "pruned {:.1}% ({:?}), {}",
                    100.0 * p.sparsity,
                    p.asked.scope,
                    match r.config.train.steps {
                        0 => "not fine-tuned".to_string(),
                        n => format!("fine-tuned {n} steps"),
                    }
                )
                .to_lowercase(),
            );
        }
        let attention = match techniques.is_empty() {
            true => attention,
            false => format!("{} · {}", attention.trim(), techniques.join(", ")),
        };
        let na = || "n/a".to_string();
        let (flops, executed, step, share, cost) = match &r.meter {
            Some(m) => (
                format!("{:.3}", m.flops_per_step / 1e9),
                m.executed_flops_per_step
                    .map_or_else(na, |f| format!("{:.3}", f / 1e9)),
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
            None => (na(), na(), na(), na(), na()),
        };
        let (heap, rss) = memory(r);
        s += &format!(
            "| {} | {} | {} | {:.1}% | {} | {:.0} s | {:.0} | {heap} | {rss} | {flops} | {executed} | {step} | {share} | {cost} |\n",
            r.config.name,
            attention.trim(),
            accuracy,
            100.0 * r.majority_baseline.test_accuracy,
            r.steps_done,
            r.wall_clock_seconds,
            r.tokens_per_second,
        );
    }
    s
}

/// The record's two memory figures in MiB: the heap peak of a training step and the process's
/// peak RSS.
fn memory(r: &RunRecord) -> (String, String) {
    let mib = |b: Option<u64>| {
        b.map_or_else(
            || "n/a".into(),
            |b| format!("{:.0} MiB", b as f64 / f64::from(1u32 << 20)),
        )
    };
    (
        mib(r.meter.as_ref().and_then(|m| m.peak_step_heap_bytes)),
        mib(r.peak_rss_bytes),
    )
}

/// How a run's sequences chose their exits, in words.
fn exit_rule(threshold: Option<f64>) -> String {
    match threshold {
        Some(p) => format!("at top probability ≥ {p}"),
        None => "at the learned depth".into(),
    }
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
    if let Some(b) = &record.bits_per_byte {
        println!(
            "{name}: {:.3} bits per byte on the test split (unigram baseline {:.3})",
            b.test, b.unigram
        );
    }
    if let Some(e) = &record.exits {
        println!(
            "early exit {}: accuracy {:.2}%, {:.2} layers on average, {:.1}% of the full model's \
             forward FLOPs",
            exit_rule(e.threshold),
            100.0 * e.accuracy,
            e.mean_layers,
            100.0 * (1.0 - e.flops_saved())
        );
    }
    let (heap, rss) = memory(record);
    println!(
        "{} steps in {:.1} s, {:.0} tokens/s, peak heap/step {heap}, peak RSS {rss}, {} parameters",
        record.steps_done, record.wall_clock_seconds, record.tokens_per_second, record.parameters
    );
    if let Some(m) = &record.meter {
        println!(
            "{:.3} GFLOP/step ({} executed), {:.2e} FLOPs in all, {} of the matmul peak, ${:.4} at ${}/h ({} per million tokens)",
            m.flops_per_step / 1e9,
            m.executed_flops_per_step
                .map_or_else(|| "n/a".into(), |f| format!("{:.3}", f / 1e9)),
            m.total_flops,
            m.fraction_of_peak
                .map_or_else(|| "n/a".into(), |f| format!("{:.1}%", 100.0 * f)),
            m.cost_usd,
            m.usd_per_hour,
            m.usd_per_million_tokens
                .map_or_else(|| "n/a".into(), |d| format!("${d:.3}"))
        );
    }
}
