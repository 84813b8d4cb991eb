//! `eft profile`: wall-clock, memory and FLOPs of attention forward+backward passes.
//!
//! Each configuration of a sweep runs in a fresh process, so the kernel's peak-RSS counter
//! measures that configuration alone; the tracking allocator gives the heap's peak as well. Times
//! are medians of repeated passes after a warm-up.

mod decode;
mod matmul;
mod memory;
mod model;
mod sweep;
mod table;

pub(crate) use sweep::sweep;

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::Device;
use eft_attention::{AttentionConfig, AttentionInput, AttentionLayout, AttentionShape};
use eft_train::params::materialize;
use eft_train::seeding::with_seed;
use serde::{Deserialize, Serialize};

use crate::args::{AttentionProfileArgs, ProfileCommand};

/// One measured (or skipped) configuration.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Measurement {
    pub(crate) mechanism: String,
    params: Vec<(String, String)>,
    batch: usize,
    heads: usize,
    pub(crate) len: usize,
    head_dim: usize,
    causal: bool,
    /// Median seconds of one forward+backward pass; `None` when skipped or failed.
    pub(crate) seconds: Option<f64>,
    /// Fastest and slowest timed pass.
    #[serde(default)]
    seconds_range: Option<(f64, f64)>,
    /// Peak resident memory of the process minus its resident memory before the inputs existed.
    peak_bytes: Option<u64>,
    /// Peak heap bytes during the passes minus the heap in use before them (tracking allocator).
    #[serde(default)]
    pub(crate) heap_peak_bytes: Option<u64>,
    /// Model config fields set for a model step (`--set`), as KEY=VALUE.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    sets: Vec<(String, String)>,
    /// The mechanism's analytic FLOPs, forward + backward.
    flops: f64,
    /// The mechanism's analytic bytes held for the backward pass.
    saved_bytes: f64,
    /// Why there is no measurement, if there is none: "out of memory …", "over budget …",
    /// "failed …".
    pub(crate) note: Option<String>,
    /// The CPU and core count it ran on (absent in sweeps from before eft recorded it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    machine: Option<String>,
}

impl Measurement {
    /// A configuration that was not measured, and why.
    fn skipped(
        args: &AttentionProfileArgs,
        (flops, saved_bytes): (f64, f64),
        note: String,
    ) -> Self {
        Self {
            mechanism: args.mechanism.clone(),
            params: args.params.clone(),
            batch: args.batch,
            heads: args.heads,
            len: args.len,
            head_dim: args.head_dim,
            causal: args.causal,
            sets: args.sets.clone(),
            seconds: None,
            seconds_range: None,
            peak_bytes: None,
            heap_peak_bytes: None,
            flops,
            saved_bytes,
            note: Some(note),
            machine: Some(eft_meter::machine()),
        }
    }

    /// Forward+backward passes per second.
    fn steps_per_second(&self) -> Option<f64> {
        self.seconds.map(|s| 1.0 / s)
    }
}

/// The attention sweep's results saved in `dir` (`attention-cpu.json`); none if it has none.
pub(crate) fn saved_sweep(dir: &std::path::Path) -> Vec<Measurement> {
    read_measurements(&dir.join("attention-cpu.json"))
}

/// The measurements a sweep wrote to `path`; none if the file is missing or unreadable.
fn read_measurements(path: &std::path::Path) -> Vec<Measurement> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

/// Runs the command.
pub fn run(what: ProfileCommand) -> anyhow::Result<ExitCode> {
    match what {
        ProfileCommand::Attention(args) => {
            let m = measure(&args)?;
            println!("{}", serde_json::to_string(&m)?);
        }
        ProfileCommand::Sweep(args) => sweep::sweep(&args)?,
        ProfileCommand::Matmul(args) => println!("{}", matmul::measure(&args)),
        ProfileCommand::Memory(args) => memory::run(&args)?,
        ProfileCommand::Decode(args) => decode::run(&args)?,
    }
    Ok(ExitCode::SUCCESS)
}

fn shape(args: &AttentionProfileArgs) -> AttentionShape {
    AttentionShape {
        batch: args.batch,
        heads: args.heads,
        len: args.len,
        head_dim: args.head_dim,
    }
}

/// The mechanism's analytic FLOPs (forward + backward) and saved bytes at the arguments' shape.
fn analytic(args: &AttentionProfileArgs, config: &AttentionConfig) -> (f64, f64) {
    let shape = shape(args);
    let cost = config
        .init(AttentionLayout::for_shape(shape), &Device::flex())
        .cost(shape);
    (cost.forward_flops + cost.backward_flops, cost.saved_bytes)
}

fn measure(args: &AttentionProfileArgs) -> anyhow::Result<Measurement> {
    let config = AttentionConfig::from_name_and_params(&args.mechanism, &args.params)?;
    config.check_causal(args.causal)?;
    if let Some(preset) = &args.model {
        return model::measure(args, preset, config);
    }
    config.check_input(shape(args))?;
    let cost = analytic(args, &config);
    // q, k, v, the output weights and three gradients, f32, beside what the call keeps.
    let inputs = 7.0
        * 4.0
        * [args.batch, args.heads, args.len, args.head_dim]
            .iter()
            .map(|&d| d as f64)
            .product::<f64>();
    crate::memory::check_fits(
        format_args!("{} at this shape", args.mechanism),
        inputs + cost.1,
    )?;
    let before = eft_meter::rss_bytes().unwrap_or(0);
    let device = Device::flex().autodiff();
    let attention = with_seed(&device, 0, || {
        let a = config.init(AttentionLayout::for_shape(shape(args)), &device);
        materialize(&a);
        a
    });
    let dims = [args.batch, args.heads, args.len, args.head_dim];
    let (q, k, v, w) = eft_attention::random_qkv(dims, 0, &device);
    let heap_before = eft_meter::reset_peak();
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
    let heap = eft_meter::is_tracking()
        .then(|| eft_meter::peak_allocated_bytes().saturating_sub(heap_before) as u64);
    Ok(Measurement {
        seconds: times.get(times.len() / 2).copied(),
        seconds_range: times.first().zip(times.last()).map(|(a, b)| (*a, *b)),
        peak_bytes: eft_meter::peak_rss_bytes().map(|peak| peak.saturating_sub(before)),
        heap_peak_bytes: heap,
        note: None,
        ..Measurement::skipped(args, cost, String::new())
    })
}
