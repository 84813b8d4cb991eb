//! `eft profile memory`: what each memory technique saves, as a training step of the quick
//! ListOps model against depth and length (each step in a fresh process, so its peak is its own),
//! and how far the reversible rebuild drifts from the true activations as depth grows.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use burn::tensor::{Device, Int, Tensor};
use eft_model::{Residual, TaskShape};
use eft_train::seeding::with_seed;
use serde::{Deserialize, Serialize};

use super::Measurement;
use super::sweep::{Outcome, measure_in_child};
use crate::args::{AttentionProfileArgs, MemoryArgs};
use crate::plot::{Axis, Heading, Series, Unit, log_log};

/// The techniques compared, each as the run fields it sets.
const TECHNIQUES: [(&str, &[(&str, &str)]); 6] = [
    ("plain", &[]),
    ("recompute", &[("model.recompute", "every")]),
    (
        "reversible",
        &[
            ("model.residual", "reversible"),
            ("model.ffn_chunk", "1024"),
        ],
    ),
    ("shared", &[("model.share", "all")]),
    ("bf16", &[("train.precision", "bf16")]),
    ("f16", &[("train.precision", "f16")]),
];

/// One measured (or skipped) training step.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Step {
    technique: String,
    depth: usize,
    #[serde(flatten)]
    measurement: Measurement,
}

/// The reversible rebuild's relative error at one depth, per block input (bottom first), and
/// what it does to the gradients.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Drift {
    depth: usize,
    len: usize,
    /// Steps of quick ListOps the model trained before the measurement (0: freshly initialised).
    #[serde(default)]
    trained_steps: usize,
    per_block: Vec<f64>,
    /// `‖g_rebuilt − g_stored‖ / ‖g_stored‖` over all parameters, against the same step with
    /// every activation stored.
    gradient_error: f64,
}

/// `‖a − b‖ / ‖b‖` over every parameter gradient of `model`.
fn relative_distance(
    model: &eft_model::Classifier,
    a: &burn::optim::GradientsParams,
    b: &burn::optim::GradientsParams,
) -> f64 {
    let (a, b) = (
        eft_train::params::export_grads(model, a),
        eft_train::params::export_grads(model, b),
    );
    let (mut diff, mut norm) = (0f64, 0f64);
    for (name, want) in &b {
        let got = a.get(name).map_or(&[][..], |g| &g.values[..]);
        for (i, w) in want.values.iter().enumerate() {
            let g = got.get(i).copied().unwrap_or(f32::NAN);
            diff += f64::from(g - w).powi(2);
            norm += f64::from(*w).powi(2);
        }
    }
    (diff / norm).sqrt()
}

/// Everything the command writes to `memory-techniques.json`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Results {
    steps: Vec<Step>,
    drift: Vec<Drift>,
}

fn fields(technique: &str) -> anyhow::Result<Vec<(String, String)>> {
    let Some((_, sets)) = TECHNIQUES.iter().find(|(name, _)| *name == technique) else {
        let names: Vec<&str> = TECHNIQUES.iter().map(|t| t.0).collect();
        bail!(
            "unknown technique `{technique}` in --techniques: choose from {}",
            names.join(", ")
        );
    };
    Ok(sets
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect())
}

/// Runs the command.
pub fn run(args: &MemoryArgs) -> anyhow::Result<()> {
    let path = args.out.join("memory-techniques.json");
    if args.redraw {
        let bytes = std::fs::read(&path).with_context(|| format!("reading {}", path.display()))?;
        let results = serde_json::from_slice(&bytes)
            .with_context(|| format!("{} is not eft's memory results", path.display()))?;
        return write_all(&args.out, &results);
    }
    if args.drift_only {
        let mut results: Results = std::fs::read(&path)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        results.drift = measure_drift(args)?;
        eft_train::write_atomic(&path, serde_json::to_string_pretty(&results)?.as_bytes())?;
        return write_all(&args.out, &results);
    }
    for t in &args.techniques {
        fields(t)?;
    }
    let mut cells: Vec<(String, String, usize, usize)> = Vec::new();
    for mechanism in &args.mechanisms {
        for &len in &args.lens {
            for &depth in &args.depths {
                for technique in &args.techniques {
                    cells.push((mechanism.clone(), technique.clone(), depth, len));
                }
            }
        }
    }
    let deepest = args.depths.iter().copied().max().unwrap_or(1);
    if args.long > 0 {
        for (mechanism, technique) in [
            ("full", "plain"),
            ("flash", "plain"),
            ("flash", "recompute"),
            ("flash", "reversible"),
        ] {
            cells.push((mechanism.into(), technique.into(), deepest, args.long));
        }
    }
    let budget = Duration::from_secs_f64(args.max_seconds);
    let mut results = Results::default();
    // A configuration that ran out of memory or time is not tried deeper.
    let mut stopped: BTreeSet<(String, String, usize)> = BTreeSet::new();
    for (mechanism, technique, depth, len) in cells {
        let mut sets = fields(&technique)?;
        sets.push(("model.n_layers".into(), depth.to_string()));
        let one = AttentionProfileArgs {
            mechanism: mechanism.clone(),
            params: Vec::new(),
            len,
            batch: args.batch,
            heads: 4,
            head_dim: 64,
            causal: false,
            repeats: args.repeats,
            model: Some("quick".into()),
            sets,
        };
        let key = (mechanism.clone(), technique.clone(), len);
        let measurement = if stopped.contains(&key) {
            Measurement::skipped(
                &one,
                (0.0, 0.0),
                "not tried: a shallower model did not fit".into(),
            )
        } else {
            eprintln!("profiling {mechanism} {technique} at depth {depth}, N = {len}…");
            let m = match measure_in_child(&one, budget)? {
                Outcome::Done(m) => *m,
                Outcome::OverBudget => Measurement::skipped(
                    &one,
                    (0.0, 0.0),
                    format!("over budget: more than {} s", args.max_seconds),
                ),
                Outcome::OutOfMemory(how) => {
                    Measurement::skipped(&one, (0.0, 0.0), format!("out of memory ({how})"))
                }
                Outcome::Failed(why) => Measurement::skipped(&one, (0.0, 0.0), why),
            };
            if m.seconds.is_none() {
                stopped.insert(key);
            }
            m
        };
        results.steps.push(Step {
            technique,
            depth,
            measurement,
        });
    }
    results.drift = measure_drift(args)?;
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    eft_train::write_atomic(&path, serde_json::to_string_pretty(&results)?.as_bytes())?;
    write_all(&args.out, &results)
}

/// The drift at every depth of `--drift-depths`, fresh and (with `--drift-trained-steps`) trained.
fn measure_drift(args: &MemoryArgs) -> anyhow::Result<Vec<Drift>> {
    let mut out = Vec::new();
    for &depth in &args.drift_depths {
        eprintln!("measuring the reversible rebuild's drift at depth {depth}…");
        out.push(drift(depth, args.lens[0], 0)?);
        if args.drift_trained_steps > 0 {
            eprintln!("… and after {} training steps", args.drift_trained_steps);
            out.push(drift(depth, args.lens[0], args.drift_trained_steps)?);
        }
    }
    Ok(out)
}

/// The rebuild's drift of a reversible quick model (`full`, dropout as the preset has it) of
/// `depth` blocks on one random sequence: freshly initialised at `len` tokens, or after `trained`
/// steps of quick ListOps at that task's length.
fn drift(depth: usize, len: usize, trained: usize) -> anyhow::Result<Drift> {
    let mut run = eft_train::preset("listops", "quick")?;
    run.model.n_layers = depth;
    run.model.residual = Residual::Reversible;
    let device = Device::flex().autodiff();
    let (model, len) = if trained == 0 {
        let dims = TaskShape {
            vocab_size: 16,
            max_len: len,
            n_classes: 10,
            paired: false,
        };
        (super::model::build(&run.model, dims, &device)?, len)
    } else {
        run.train.set_steps(trained, trained);
        let dir = tempfile::tempdir()?;
        let options = eft_train::TrainOptions::default();
        eft_train::train(run.clone(), &dir.path().join("run"), &options)?;
        let path = dir.path().join("run").join("checkpoint.safetensors");
        let checkpoint = eft_train::Checkpoint::load(&path)?;
        let shape = run.task.shape();
        let model = super::model::build(&run.model, shape, &device)?;
        (
            eft_train::load_weights(model, &checkpoint, &path)?,
            shape.max_len,
        )
    };
    let (tokens, labels) = with_seed(&device, 1, || {
        let uniform = |hi: f64| burn::tensor::Distribution::Uniform(0.0, hi);
        (
            Tensor::<2>::random([1, len], uniform(16.0), &device).int(),
            Tensor::<1>::random([1], uniform(10.0), &device).int(),
        )
    });
    let padding = Tensor::<2, Int>::zeros([1, len], &device).bool();
    let loss =
        |o: &eft_model::ModelOutput| eft_train::cross_entropy(o.logits.clone(), labels.clone());
    let per_block = with_seed(&device, 2, || {
        model.reversible_drift(tokens.clone(), padding.clone())
    })?;
    let rebuilt = with_seed(&device, 3, || {
        model.backward_reversible(tokens.clone(), padding.clone(), loss)
    })?;
    let stored = with_seed(&device, 3, || {
        let out = model.forward_reversible(tokens.clone(), padding.clone());
        burn::optim::GradientsParams::from_grads(loss(&out).backward(), &model)
    });
    Ok(Drift {
        depth,
        len,
        trained_steps: trained,
        per_block,
        gradient_error: relative_distance(&model, &rebuilt.grads, &stored),
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1u32 << 20)
}

/// The Markdown report: per mechanism and length, peak heap and step time against depth for each
/// technique (with the ratio to plain), the long-sequence cells, then the drift table.
fn markdown(results: &Results) -> String {
    let machine = results
        .steps
        .iter()
        .find_map(|s| s.measurement.machine.clone())
        .unwrap_or_else(|| "machine not recorded".into());
    let mut s = format!(
        "# Memory techniques: peak heap and time of a training step against depth\n\n\
         One training step (forward, loss, backward; no optimiser step) of the `quick` ListOps \
         model (width 64, 4 heads, MLP 128, dropout 0) on B = 1 random sequence, each in a fresh \
         process; f32 unless the column is bf16 or f16, on {machine}. Each cell: peak heap above the step's start (tracking \
         allocator) in MiB / median step seconds; in brackets the ratio to `plain` at the same \
         depth. `recompute` keeps every block's input and rebuilds each block in the backward \
         pass; `reversible` keeps no block's activations (RevNet coupling on half-width branches, \
         feed-forward in pieces of 1024 positions); `shared` ties every depth to one block (fewer \
         parameters, the same activations); `bf16` and `f16` compute the step in that type on weights \
         cast from f32 (on burn Flex through f32 conversions: no speed-up on CPUs without such \
         arithmetic). Regenerate: `eft profile memory` (`--redraw` redraws \
         from the JSON).\n"
    );
    let mut keys: Vec<(String, usize)> = Vec::new();
    for st in &results.steps {
        let k = (st.measurement.mechanism.clone(), st.measurement.len);
        if !keys.contains(&k) {
            keys.push(k);
        }
    }
    for (mechanism, len) in keys {
        let rows: Vec<&Step> = results
            .steps
            .iter()
            .filter(|st| st.measurement.mechanism == mechanism && st.measurement.len == len)
            .collect();
        let mut techniques: Vec<&str> = Vec::new();
        let mut depths: Vec<usize> = Vec::new();
        for st in &rows {
            if !techniques.contains(&st.technique.as_str()) {
                techniques.push(&st.technique);
            }
            if !depths.contains(&st.depth) {
                depths.push(st.depth);
            }
        }
        let _ = write!(s, "\n## `{mechanism}`, N = {len}\n\n| depth |");
        for t in &techniques {
            let _ = write!(s, " {t} |");
        }
        s += "\n|---|";
        s += &"---|".repeat(techniques.len());
        s += "\n";
        for depth in depths {
            let find = |t: &str| {
                rows.iter()
                    .find(|st| st.technique == t && st.depth == depth)
                    .map(|st| &st.measurement)
            };
            let plain = find("plain").and_then(|m| Some((m.heap_peak_bytes?, m.seconds?)));
            let _ = write!(s, "| {depth} |");
            for t in &techniques {
                let cell = match find(t) {
                    Some(Measurement {
                        seconds: Some(secs),
                        heap_peak_bytes: Some(heap),
                        ..
                    }) => {
                        let ratio = match plain {
                            Some((h, p)) if *t != "plain" => {
                                format!(" ({:.2}× / {:.2}×)", *heap as f64 / h as f64, secs / p)
                            }
                            _ => String::new(),
                        };
                        format!("{:.0} MiB / {secs:.2} s{ratio}", mib(*heap))
                    }
                    Some(m) => m.note.clone().unwrap_or_else(|| "not measured".into()),
                    None => "—".into(),
                };
                let _ = write!(s, " {cell} |");
            }
            s += "\n";
        }
    }
    if !results.drift.is_empty() {
        s += "\n## Reversible rebuild: relative error of the rebuilt block inputs\n\n\
              A reversible `quick` model (`full`, dropout 0.1 replayed) of each depth, freshly \
              initialised or after the stated training steps on quick ListOps (then at that \
              task's length), one random sequence: `‖x̂ − x‖ / ‖x‖` of each block's input rebuilt from \
              the top down as the backward pass does. The bottom input is the embeddings' output \
              (std-0.02 vectors under O(1) branch outputs, so its rebuild cancels worst); training \
              takes it from the embeddings instead of rebuilding it, so the largest error a \
              training step uses is that of the inputs above it.\n\n\
              The last column is what the drift does to a training step: the relative distance \
              between its gradients and those of the same step with every activation stored.\n\n\
              | depth | trained steps | N | bottom input (not used) | worst rebuilt input used | top block's input | gradient error |\n\
              |---|---|---|---|---|---|---|\n";
        for d in &results.drift {
            let used = d.per_block.iter().skip(1).fold(0f64, |a, &e| a.max(e));
            let top = d.per_block.last().copied().unwrap_or(0.0);
            let bottom = d.per_block.first().copied().unwrap_or(0.0);
            let _ = writeln!(
                s,
                "| {} | {} | {} | {bottom:.1e} | {used:.1e} | {top:.1e} | {:.1e} |",
                d.depth, d.trained_steps, d.len, d.gradient_error
            );
        }
    }
    s
}

/// Writes the Markdown report and the peak-heap chart.
fn write_all(out: &Path, results: &Results) -> anyhow::Result<()> {
    let table = markdown(results);
    eft_train::write_atomic(&out.join("memory-techniques.md"), table.as_bytes())?;
    println!("{table}");
    // One chart at the longest length measured at several depths: more lines crowd it.
    let depths_at = |len: usize| {
        let d: BTreeSet<usize> = results
            .steps
            .iter()
            .filter(|st| st.measurement.len == len)
            .map(|st| st.depth)
            .collect();
        d.len()
    };
    let len = results
        .steps
        .iter()
        .map(|st| st.measurement.len)
        .filter(|&len| depths_at(len) > 1)
        .max();
    let mut series: Vec<Series> = Vec::new();
    for st in results
        .steps
        .iter()
        .filter(|st| Some(st.measurement.len) == len)
    {
        let m = &st.measurement;
        let (Some(heap), Some(_)) = (m.heap_peak_bytes, m.seconds) else {
            continue;
        };
        let name = format!("{} {}", m.mechanism, st.technique);
        let point = (st.depth as f64, mib(heap));
        match series.iter_mut().find(|s| s.name == name) {
            Some(s) => s.points.push(point),
            None => series.push(Series {
                name,
                points: vec![point],
            }),
        }
    }
    if !series.is_empty() {
        let subtitle = format!(
            "quick ListOps model, N = {}, B = 1, one step per fresh process; shared \
             coincides with plain",
            len.unwrap_or(0)
        );
        let heading = Heading {
            title: "Peak heap of a training step against depth",
            subtitle: &subtitle,
        };
        let x = Axis {
            label: "depth (blocks)",
            unit: Unit::Length,
        };
        let y = Axis {
            label: "peak heap",
            unit: Unit::Mebibytes,
        };
        // The measurements are written; a chart that cannot be drawn (no font) is reported.
        match log_log(&out.join("memory-techniques"), heading, x, y, &series) {
            Ok(files) => eprintln!("drew {}", files.len()),
            Err(e) => eprintln!("no chart: {e}"),
        }
    }
    eprintln!(
        "wrote {}",
        out.join("memory-techniques.{json,md}").display()
    );
    Ok(())
}
