//! `eft profile`: wall-clock and peak memory of attention forward+backward passes.
//!
//! Each configuration of a sweep runs in a fresh process, so the kernel's peak-RSS counter
//! measures that configuration alone. Times are medians of repeated passes after a warm-up.

use std::process::{Command, ExitCode};
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use eft_attention::{AttentionConfig, AttentionInput, AttentionLayout, AttentionShape};
use eft_train::params::materialize;
use eft_train::seeding::with_seed;
use serde::{Deserialize, Serialize};

use crate::args::{AttentionProfileArgs, ProfileCommand, SweepArgs};

/// One measured (or skipped) configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    mechanism: String,
    params: Vec<(String, String)>,
    batch: usize,
    heads: usize,
    len: usize,
    head_dim: usize,
    causal: bool,
    /// Median seconds of one forward+backward pass; `None` when skipped or failed.
    seconds: Option<f64>,
    /// Peak resident memory of the process minus its resident memory before the inputs existed.
    peak_bytes: Option<u64>,
    /// The mechanism's analytic FLOPs, forward + backward.
    flops: f64,
    /// The mechanism's analytic bytes held for the backward pass.
    saved_bytes: f64,
    /// Why there is no measurement, if there is none.
    note: Option<String>,
}

/// Runs the command.
pub fn run(what: ProfileCommand) -> anyhow::Result<ExitCode> {
    match what {
        ProfileCommand::Attention(args) => {
            let m = measure(&args)?;
            println!("{}", serde_json::to_string(&m)?);
        }
        ProfileCommand::Sweep(args) => sweep(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn analytic(args: &AttentionProfileArgs, config: &AttentionConfig) -> (f64, f64) {
    let shape = AttentionShape {
        batch: args.batch,
        heads: args.heads,
        len: args.len,
        head_dim: args.head_dim,
    };
    let cost = config
        .init(AttentionLayout::for_shape(shape), &Device::flex())
        .cost(shape);
    (cost.forward_flops + cost.backward_flops, cost.saved_bytes)
}

fn measure(args: &AttentionProfileArgs) -> anyhow::Result<Measurement> {
    let config = AttentionConfig::from_name_and_params(&args.mechanism, &args.params)?;
    config.check_causal(args.causal)?;
    config.check_shape(args.len, args.heads)?;
    let before = eft_meter::rss_bytes().unwrap_or(0);
    let device = Device::flex().autodiff();
    let shape = AttentionShape {
        batch: args.batch,
        heads: args.heads,
        len: args.len,
        head_dim: args.head_dim,
    };
    let attention = with_seed(&device, 0, || {
        let a = config.init(AttentionLayout::for_shape(shape), &device);
        materialize(&a);
        a
    });
    let dims = [args.batch, args.heads, args.len, args.head_dim];
    let (q, k, v, w) = eft_attention::testing::random_qkv(dims, 0, &device);
    let mut times = Vec::new();
    for pass in 0..=args.repeats {
        let (q, k, v) = (
            q.clone().require_grad(),
            k.clone().require_grad(),
            v.clone().require_grad(),
        );
        let started = Instant::now();
        let input = AttentionInput::new(q.clone(), k, v).with_causal(args.causal);
        let grads = (attention.forward(input) * w.clone()).sum().backward();
        let dq = q.grad(&grads).context("q has a gradient")?;
        std::hint::black_box(dq.into_data());
        if pass > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let (flops, saved_bytes) = analytic(args, &config);
    Ok(Measurement {
        mechanism: args.mechanism.clone(),
        params: args.params.clone(),
        batch: args.batch,
        heads: args.heads,
        len: args.len,
        head_dim: args.head_dim,
        causal: args.causal,
        seconds: times.get(times.len() / 2).copied(),
        peak_bytes: eft_meter::peak_rss_bytes().map(|peak| peak.saturating_sub(before)),
        flops,
        saved_bytes,
        note: None,
    })
}

fn sweep(args: &SweepArgs) -> anyhow::Result<()> {
    let names: Vec<String> = if args.mechanisms.is_empty() {
        AttentionConfig::NAMES
            .iter()
            .map(|s| s.to_string())
            .collect()
    } else {
        args.mechanisms.clone()
    };
    let exe = std::env::current_exe().context("finding the eft executable")?;
    let mut results = Vec::new();
    for name in &names {
        for &len in &args.lens {
            let one = AttentionProfileArgs {
                mechanism: name.clone(),
                params: args.params.clone(),
                len,
                batch: 1,
                heads: 4,
                head_dim: 64,
                causal: false,
                repeats: args.repeats,
            };
            let config = AttentionConfig::from_name_and_params(name, &args.params)?;
            let (flops, saved_bytes) = analytic(&one, &config);
            // Autodiff keeps scores, probabilities and their gradients alive together: `full`
            // peaked at about four times its saved bytes at N = 8K and 16K; five leaves a margin.
            let estimate = 5.0 * saved_bytes / f64::from(1u32 << 30);
            let skipped = |note: String| Measurement {
                mechanism: name.clone(),
                params: args.params.clone(),
                batch: 1,
                heads: 4,
                len,
                head_dim: 64,
                causal: false,
                seconds: None,
                peak_bytes: None,
                flops,
                saved_bytes,
                note: Some(note),
            };
            let m = if estimate > args.max_gib {
                skipped(format!(
                    "skipped: needs about {estimate:.0} GiB (limit {} GiB)",
                    args.max_gib
                ))
            } else {
                eprintln!("profiling {name} at N = {len}…");
                let out = Command::new(&exe)
                    .args([
                        "profile",
                        "attention",
                        "--mechanism",
                        name,
                        "--len",
                        &len.to_string(),
                    ])
                    .args(["--repeats", &args.repeats.to_string()])
                    .args(
                        args.params
                            .iter()
                            .flat_map(|(k, v)| ["--param".to_string(), format!("{k}={v}")]),
                    )
                    .output()
                    .context("running eft profile attention")?;
                match serde_json::from_slice::<Measurement>(&out.stdout) {
                    Ok(m) if out.status.success() => m,
                    _ => skipped(format!(
                        "failed ({}): {}",
                        out.status,
                        String::from_utf8_lossy(&out.stderr).trim()
                    )),
                }
            };
            results.push(m);
        }
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    // Keep earlier measurements of configurations this sweep did not repeat.
    let path = args.out.join("attention-cpu.json");
    let earlier: Vec<Measurement> = std::fs::read(&path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
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
        (rank, label(m), m.len)
    });
    let mut lens: Vec<usize> = results.iter().map(|m| m.len).collect();
    lens.sort_unstable();
    lens.dedup();
    let json = serde_json::to_string_pretty(&results)?;
    eft_train::write_atomic(&path, json.as_bytes())?;
    let table = table(&results, &lens);
    eft_train::write_atomic(&args.out.join("attention-cpu.md"), table.as_bytes())?;
    println!("{table}");
    eprintln!(
        "wrote {}",
        args.out.join("attention-cpu.{json,md}").display()
    );
    Ok(())
}

/// A table row's name: the mechanism, and its parameters when they are not the defaults.
fn label(m: &Measurement) -> String {
    let params: Vec<String> = m.params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    if params.is_empty() {
        m.mechanism.clone()
    } else {
        format!("{} {}", m.mechanism, params.join(" "))
    }
}

/// Seconds and MiB per mechanism and length, then the memory growth per doubling of N.
fn table(results: &[Measurement], lens: &[usize]) -> String {
    let mut names: Vec<String> = Vec::new();
    for r in results {
        if !names.contains(&label(r)) {
            names.push(label(r));
        }
    }
    let cell = |name: &str, len: usize| results.iter().find(|r| label(r) == name && r.len == len);
    let mut s = String::from(
        "Forward+backward of one attention call, B=1, H=4, D=64, default parameters unless the row\n\
         names them, f32 on the CPU.\n\
         Each cell: median seconds / peak MiB above the process baseline; the last column is the\n\
         peak-memory ratio between the two longest measured lengths.\n\n| mechanism |",
    );
    for len in lens {
        s += &format!(" N={len} |");
    }
    s += " memory × per doubling |\n|---|";
    s += &"---|".repeat(lens.len() + 1);
    s += "\n";
    for name in names {
        s += &format!("| {name} |");
        let mut measured: Vec<(usize, u64)> = Vec::new();
        for &len in lens {
            match cell(&name, len) {
                Some(Measurement {
                    seconds: Some(t),
                    peak_bytes: Some(b),
                    ..
                }) => {
                    s += &format!(" {t:.3} s / {:.0} MiB |", *b as f64 / f64::from(1u32 << 20));
                    measured.push((len, *b));
                }
                Some(m) => s += &format!(" {} |", m.note.as_deref().unwrap_or("—")),
                None => s += " — |",
            }
        }
        match measured.as_slice() {
            [.., (l1, b1), (l2, b2)] if *l2 == 2 * *l1 => {
                s += &format!(" {:.2} |\n", *b2 as f64 / *b1 as f64)
            }
            _ => s += " — |\n",
        }
    }
    s
}
