//! `eft profile decode`: how fast each decoding form produces tokens, and how much state it
//! holds, as the context grows — a key-value cache grows with it, a window's cache and kernel
//! sums do not, and recomputing the causal pass costs a whole pass per token.
//!
//! The model is the quick language model (width 64, 4 heads, 2 layers, byte vocabulary) with
//! sinusoidal positions, freshly initialised: speed and state size do not depend on the weights.
//! Each context is reached by feeding random bytes in chunks of 256 (the prefill, timed too),
//! then `steps` single bytes are decoded one at a time and timed, each read back to the host.

use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use anyhow::Context;
use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_attention::AttentionConfig;
use eft_model::{Classifier, DecodeState, ModelConfig, Pool, Positions, TaskShape};
use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::args::DecodeArgs;
use crate::plot::{Axis, Heading, Series, Unit, log_log};

/// A decoding form: label, mechanism, parameters, and whether to recompute.
type Form = (
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
    bool,
);

/// The decoding forms compared.
const FORMS: [Form; 6] = [
    ("full (key-value cache)", "full", &[], false),
    ("full (recomputed)", "full", &[], true),
    (
        "sliding 512 (window cache)",
        "sliding",
        &[("window", "512")],
        false,
    ),
    (
        "xl 512+512 (segment memory)",
        "xl",
        &[("segment", "512"), ("mem_len", "512")],
        false,
    ),
    ("linear (kernel sums)", "linear", &[], false),
    ("performer 256 (kernel sums)", "performer", &[], false),
];

/// Positions fed per prefill chunk.
const PREFILL_CHUNK: usize = 256;

/// One form at one context.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Point {
    form: String,
    context: usize,
    /// Single-byte decoding steps per second at this context.
    tokens_per_second: Option<f64>,
    /// Bytes the decoding state holds (f32 caches or sums, or the token history).
    state_bytes: Option<u64>,
    /// Positions per second while feeding the context in chunks.
    prefill_per_second: Option<f64>,
    note: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Results {
    machine: String,
    steps: usize,
    points: Vec<Point>,
}

/// Runs the command.
pub fn run(args: &DecodeArgs) -> anyhow::Result<()> {
    let path = args.out.join("decoding.json");
    let results = if args.redraw {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not eft's decoding results", path.display()))?
    } else {
        let mut contexts = args.contexts.clone();
        contexts.sort_unstable();
        // Forms not measured now keep their earlier points.
        let mut points: Vec<Point> = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Results>(&b).ok())
            .map(|r| r.points)
            .unwrap_or_default();
        for (label, name, params, recompute) in FORMS {
            if !args.forms.is_empty() && !args.forms.iter().any(|f| label.starts_with(f.as_str())) {
                continue;
            }
            let fresh = measure_form(args, &contexts, label, name, params, recompute)?;
            points.retain(|p| p.form != label);
            points.extend(fresh);
        }
        points.sort_by_key(|p| {
            let form = FORMS
                .iter()
                .position(|f| f.0 == p.form)
                .unwrap_or(FORMS.len());
            (form, p.context)
        });
        let results = Results {
            machine: eft_meter::machine(),
            steps: args.steps,
            points,
        };
        std::fs::create_dir_all(&args.out)?;
        eft_train::write_atomic(&path, serde_json::to_string_pretty(&results)?.as_bytes())?;
        results
    };
    write_report(&args.out, &results)
}

fn measure_form(
    args: &DecodeArgs,
    contexts: &[usize],
    label: &str,
    name: &str,
    params: &[(&str, &str)],
    recompute: bool,
) -> anyhow::Result<Vec<Point>> {
    let device = Device::flex();
    device.seed(args.seed);
    let top = contexts.last().copied().unwrap_or(0);
    let capacity = top + args.steps * contexts.len() + 1;
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let model = ModelConfig {
        causal: true,
        pool: Pool::None,
        positions: Positions::Sinusoidal,
        dropout: 0.0,
        attention: AttentionConfig::from_name_and_params(name, &params)?,
        ..ModelConfig::default()
    }
    .init(
        TaskShape {
            vocab_size: 257,
            max_len: capacity,
            n_classes: 256,
            paired: false,
        },
        &device,
    )?;
    let mut state = if recompute {
        model.recomputing_decoder(capacity)?
    } else {
        model.decoder(capacity)?
    };
    let mut rng = eft_data::seeded_rng(args.seed, 0xdec);
    let mut points = Vec::new();
    for &context in contexts {
        let point = |note: Option<String>| Point {
            form: label.to_string(),
            context,
            tokens_per_second: None,
            state_bytes: None,
            prefill_per_second: None,
            note,
        };
        if recompute && context > args.max_recompute {
            points.push(point(Some(format!(
                "not run beyond {} positions (a whole causal pass per byte)",
                args.max_recompute
            ))));
            continue;
        }
        let fed = context.saturating_sub(state.position());
        let clock = Instant::now();
        while state.position() < context {
            let n = PREFILL_CHUNK.min(context - state.position());
            step(&model, &mut state, n, &mut rng, &device)?;
        }
        let prefill = fed as f64 / clock.elapsed().as_secs_f64().max(1e-9);
        let clock = Instant::now();
        for _ in 0..args.steps {
            step(&model, &mut state, 1, &mut rng, &device)?;
        }
        let seconds = clock.elapsed().as_secs_f64();
        let bytes = state.bytes() as u64;
        eprintln!(
            "{label} at {context}: {:.1} tokens/s, state {:.2} MiB, prefill {:.0} positions/s",
            args.steps as f64 / seconds,
            bytes as f64 / (1 << 20) as f64,
            prefill
        );
        points.push(Point {
            tokens_per_second: Some(args.steps as f64 / seconds),
            state_bytes: Some(bytes),
            prefill_per_second: (fed > 0).then_some(prefill),
            ..point(None)
        });
    }
    Ok(points)
}

/// Feeds `n` random bytes and reads the last logits back (so the work is done, not queued).
fn step(
    model: &Classifier,
    state: &mut DecodeState,
    n: usize,
    rng: &mut impl Rng,
    device: &Device,
) -> anyhow::Result<()> {
    let tokens: Vec<i64> = (0..n).map(|_| rng.random_range(1..257)).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, n]), device);
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; n], [1, n]), device);
    let logits = model.decode(state, tokens, padding)?;
    let [_, _, classes] = logits.dims();
    let last = logits.slice([0..1, n - 1..n, 0..classes]).into_data();
    anyhow::ensure!(
        last.iter::<f32>().all(f32::is_finite),
        "decoding produced a non-finite logit"
    );
    Ok(())
}

fn write_report(out: &Path, results: &Results) -> anyhow::Result<()> {
    let mut contexts: Vec<usize> = results.points.iter().map(|p| p.context).collect();
    contexts.sort_unstable();
    contexts.dedup();
    let mut forms: Vec<&str> = Vec::new();
    for p in &results.points {
        if !forms.contains(&p.form.as_str()) {
            forms.push(&p.form);
        }
    }
    let mut md = String::new();
    writeln!(
        md,
        "# Decoding speed and state size against context\n\n\
         Single-byte decoding steps per second (each read back to the host) and the bytes the \
         decoding state holds, after the context was fed in chunks of {PREFILL_CHUNK}; {} steps \
         per point. Quick language model (width 64, 4 heads, 2 layers, byte vocabulary, \
         sinusoidal positions), batch 1, f32, {}. Regenerate with `bash bench/decoding.sh`.\n",
        results.steps, results.machine
    )?;
    let header: Vec<String> = contexts.iter().map(|c| format!("{c}")).collect();
    writeln!(
        md,
        "## Tokens per second\n\n| form | {} |",
        header.join(" | ")
    )?;
    writeln!(md, "|---|{}", "---:|".repeat(contexts.len()))?;
    let cell = |form: &str, c: usize, f: &dyn Fn(&Point) -> Option<String>| {
        results
            .points
            .iter()
            .find(|p| p.form == form && p.context == c)
            .and_then(f)
            .unwrap_or_else(|| "—".into())
    };
    for form in &forms {
        let row: Vec<String> = contexts
            .iter()
            .map(|&c| cell(form, c, &|p| p.tokens_per_second.map(|t| format!("{t:.1}"))))
            .collect();
        writeln!(md, "| {form} | {} |", row.join(" | "))?;
    }
    writeln!(
        md,
        "\n## State held (MiB)\n\n| form | {} |",
        header.join(" | ")
    )?;
    writeln!(md, "|---|{}", "---:|".repeat(contexts.len()))?;
    for form in &forms {
        let row: Vec<String> = contexts
            .iter()
            .map(|&c| {
                cell(form, c, &|p| {
                    p.state_bytes
                        .map(|b| format!("{:.3}", b as f64 / (1 << 20) as f64))
                })
            })
            .collect();
        writeln!(md, "| {form} | {} |", row.join(" | "))?;
    }
    let notes: Vec<String> = results
        .points
        .iter()
        .filter_map(|p| {
            p.note
                .as_ref()
                .map(|n| format!("- {} at {}: {n}", p.form, p.context))
        })
        .collect();
    if !notes.is_empty() {
        writeln!(md, "\n{}", notes.join("\n"))?;
    }
    eft_train::write_atomic(&out.join("decoding.md"), md.as_bytes())?;
    let series = |f: &dyn Fn(&Point) -> Option<f64>| -> Vec<Series> {
        forms
            .iter()
            .map(|form| Series {
                name: form.to_string(),
                points: results
                    .points
                    .iter()
                    .filter(|p| p.form == *form)
                    .filter_map(|p| f(p).map(|y| (p.context as f64, y)))
                    .collect(),
            })
            .collect()
    };
    let subtitle = format!("quick lm, batch 1, f32, {}", results.machine);
    let context = Axis {
        label: "context (positions)",
        unit: Unit::Length,
    };
    let charts = [
        (
            "decoding-speed",
            "Decoding speed against context",
            Axis {
                label: "tokens / s",
                unit: Unit::Plain,
            },
            series(&|p| p.tokens_per_second),
        ),
        (
            "decoding-memory",
            "Decoding state against context",
            Axis {
                label: "state",
                unit: Unit::Mebibytes,
            },
            series(&|p| p.state_bytes.map(|b| b as f64 / (1 << 20) as f64)),
        ),
    ];
    for (stem, title, y, series) in charts {
        let heading = Heading {
            title,
            subtitle: &subtitle,
        };
        // The measurements are written; a chart that cannot be drawn (no font) is reported.
        match log_log(&out.join(stem), heading, context, y, &series) {
            Ok(files) => eprintln!("drew {}", files.len()),
            Err(e) => eprintln!("no chart: {e}"),
        }
    }
    eprintln!("wrote {}", out.join("decoding.{json,md}").display());
    Ok(())
}
