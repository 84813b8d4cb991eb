//! How close each trained cell's attention is to softmax attention on its own activations: the
//! first test sequences through each finished cell's model, every layer's attention input
//! measured with [`eft_attention::fidelity`], shown beside the cell's accuracy.

use std::path::Path;

use burn::tensor::Device;
use eft_attention::Fidelity;
use eft_data::{Batch, Dataset};
use eft_train::{CHECKPOINT_FILE, Checkpoint, build_data, build_model, load_weights};
use serde::{Deserialize, Serialize};

use super::report::{Accuracy, Outcome, Row, first_seen};

/// Test sequences (pairs, for a paired task) each cell is measured on, at most.
const SEQUENCES: usize = 32;

/// Tokens per sequence above which fewer sequences are measured: the softmax reference is
/// quadratic in the length, and at LRA's 1K–2K tokens 32 sequences took minutes a cell.
const LONGEST_FULL_BATCH: usize = 576;

/// Bytes the dense softmax reference may hold (its scores, probabilities and their
/// intermediate, f32): beyond this a cell is not measured rather than risk the report.
const REFERENCE_BYTES: f64 = 4.0 * (1u64 << 30) as f64;

/// Bytes of the dense reference for `sequences` rows of `len` tokens and `heads` heads.
fn reference_bytes(sequences: usize, heads: usize, len: usize) -> f64 {
    3.0 * 4.0 * (sequences * heads) as f64 * (len as f64).powi(2)
}

/// Sequences measured at `len` tokens: [`SEQUENCES`] up to [`LONGEST_FULL_BATCH`] tokens, then
/// as many as hold the same number of tokens, at least 2.
fn sequences(len: usize) -> usize {
    (SEQUENCES * LONGEST_FULL_BATCH / len.max(1)).clamp(2, SEQUENCES)
}

/// One cell's measurement.
#[derive(Debug, Clone, Serialize)]
pub struct Measured {
    /// Task name.
    pub task: String,
    /// Mechanism column name.
    pub mechanism: String,
    /// Which of the cell's seeds.
    pub replica: u64,
    /// Each layer's errors, in depth order; empty when not measured.
    pub layers: Vec<Fidelity>,
    /// Why the cell was not measured.
    pub skipped: Option<String>,
}

impl Measured {
    /// The mean over layers of one of the errors, if every layer has it.
    fn mean(&self, of: fn(&Fidelity) -> Option<f64>) -> Option<f64> {
        let v: Option<Vec<f64>> = self.layers.iter().map(of).collect();
        v.filter(|v| !v.is_empty())
            .map(|v| v.iter().sum::<f64>() / v.len() as f64)
    }
}

/// Measures every finished cell of `outcomes` (their runs in `dir`) on `device`; the data of
/// each task is built once. A cell that cannot be measured says why instead of stopping the
/// report.
pub fn measure(dir: &Path, outcomes: &[Outcome], device: &Device) -> Vec<Measured> {
    let mut data: Vec<(String, Dataset)> = Vec::new();
    let mut out = Vec::new();
    for o in outcomes.iter().filter(|o| o.result.is_ok()) {
        let (layers, skipped) = match measure_cell(&dir.join(&o.cell.name), &mut data, device) {
            Ok(Some(layers)) => (layers, None),
            Ok(None) => (
                Vec::new(),
                Some("its layers attend segment by segment with memory, or repeat as steps: no single call to compare".into()),
            ),
            Err(e) => (Vec::new(), Some(format!("{e:#}"))),
        };
        out.push(Measured {
            task: o.cell.task.clone(),
            mechanism: o.cell.mechanism.clone(),
            replica: o.cell.replica,
            layers,
            skipped,
        });
    }
    out
}

/// The errors of each layer of the run in `run`, `None` when its layers recur.
fn measure_cell(
    run: &Path,
    data: &mut Vec<(String, Dataset)>,
    device: &Device,
) -> anyhow::Result<Option<Vec<Fidelity>>> {
    let path = run.join(CHECKPOINT_FILE);
    let checkpoint = Checkpoint::load(&path)?;
    let config = &checkpoint.config;
    let len = config.task.shape().max_len;
    let (rows, heads) = (sequences(len), config.model.n_heads);
    // A finished cell's weights do not change: its measurement is kept beside them and reused
    // while the config, the step and the number of sequences are the same.
    let key = format!(
        "{}\nstep {}, {rows} sequences, measure v{MEASURE_VERSION}",
        toml::to_string(config)?,
        checkpoint.state.step
    );
    let saved_path = run.join(SAVED_FILE);
    if let Some(saved) = std::fs::read(&saved_path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Saved>(&b).ok())
        .filter(|s| s.key == key)
    {
        return Ok(saved.layers);
    }
    let layers = measure_layers(config, &checkpoint, &path, rows, heads, data, device)?;
    let saved = Saved { key, layers };
    eft_train::write_atomic(&saved_path, &serde_json::to_vec_pretty(&saved)?)?;
    Ok(saved.layers)
}

/// Version of what a measurement computes: raise it when `eft_attention::fidelity` or the
/// inputs measured change, so that kept measurements are taken again.
const MEASURE_VERSION: u32 = 1;

/// File in a cell's folder that keeps its measurement.
const SAVED_FILE: &str = "fidelity.json";

/// A cell's kept measurement and what it was measured for.
#[derive(Serialize, Deserialize)]
struct Saved {
    /// The config, the checkpoint's step and the sequences measured.
    key: String,
    /// Each layer's errors; `None` when the layers recur.
    layers: Option<Vec<Fidelity>>,
}

/// Runs the first `rows` test sequences of the checkpoint at `path` and measures each layer.
fn measure_layers(
    config: &eft_train::RunConfig,
    checkpoint: &Checkpoint,
    path: &Path,
    rows: usize,
    heads: usize,
    data: &mut Vec<(String, Dataset)>,
    device: &Device,
) -> anyhow::Result<Option<Vec<Fidelity>>> {
    let len = config.task.shape().max_len;
    let model = load_weights(build_model(config, device)?, checkpoint, path)?;
    // A paired task's example is two sequences.
    let towers = if model.paired() { 2 } else { 1 };
    let bytes = reference_bytes(rows * towers, heads, len);
    if bytes > REFERENCE_BYTES {
        anyhow::bail!(
            "the dense softmax reference for {rows} sequences of {len} tokens would hold {:.0} \
             GiB",
            bytes / f64::from(1u32 << 30)
        );
    }
    // The data depends on the task and the data seed only, shared by a task's columns.
    let key = format!("{}\n{}", config.seed, toml::to_string(&config.task)?);
    if !data.iter().any(|(k, _)| *k == key) {
        data.push((key.clone(), build_data(config)?));
    }
    let test = &data
        .iter()
        .find(|(k, _)| *k == key)
        .expect("just built")
        .1
        .test;
    let batch = Batch::from_examples(test.iter().take(rows));
    let tensors = eft_train::batch_tensors(&batch, device);
    let Some(inputs) = model.attention_inputs(tensors.tokens, tensors.padding) else {
        return Ok(None);
    };
    let encoder = model.encoder();
    Ok(Some(
        inputs
            .into_iter()
            .enumerate()
            .map(|(depth, input)| {
                let block = encoder.block(depth);
                eft_attention::fidelity(block.self_attention().mechanism(), input)
            })
            .collect(),
    ))
}

/// A relative error as a percentage with two significant digits.
fn show(error: f64) -> String {
    let p = 100.0 * error;
    if p < 0.01 {
        "<0.01%".into()
    } else if p < 10.0 {
        format!("{p:.2}%")
    } else {
        format!("{p:.0}%")
    }
}

/// The mean of one error over a cell's measured seeds and layers.
fn cell_mean(
    measured: &[Measured],
    m: &str,
    t: &str,
    of: fn(&Fidelity) -> Option<f64>,
) -> Option<f64> {
    let v: Vec<f64> = measured
        .iter()
        .filter(|x| x.mechanism == m && x.task == t)
        .filter_map(|x| x.mean(of))
        .collect();
    (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64)
}

/// The report's section: per mechanism and task, the accuracy beside the error against
/// softmax, and a table of the errors against each mechanism's own formula where it has one.
pub fn markdown(rows: &[Row], measured: &[Measured]) -> String {
    if measured.iter().all(|m| m.layers.is_empty()) {
        return String::new();
    }
    let tasks = first_seen(rows, |r| &r.task);
    let mechanisms = first_seen(rows, |r| &r.mechanism);
    let header = |s: &mut String| {
        *s += &format!("| mechanism | {} |\n|---|", tasks.join(" | "));
        *s += &"---|".repeat(tasks.len());
        *s += "\n";
    };
    let mut s = format!(
        "## How close each mechanism is to softmax attention\n\nEach cell: test accuracy (as in \
         Table 1) · the relative error of the attention output against softmax attention over \
         the same queries, keys and values, `‖out − softmax‖ / ‖softmax‖` over the real query \
         rows, mean over layers and seeds, on each trained model's own activations for the \
         first {SEQUENCES} test sequences (fewer beyond {LONGEST_FULL_BATCH} tokens: as many \
         as hold {} tokens).\n\n",
        SEQUENCES * LONGEST_FULL_BATCH
    );
    header(&mut s);
    for m in &mechanisms {
        s += &format!("| {m} |");
        for t in &tasks {
            let accuracy = Accuracy::of_cell(rows, m, t).map_or("—".into(), |a| a.show());
            let error = cell_mean(measured, m, t, |f| Some(f.vs_softmax)).map_or("—".into(), show);
            s += &format!(" {accuracy} · {error} |");
        }
        s += "\n";
    }
    let with_formula: Vec<&&str> = mechanisms
        .iter()
        .filter(|m| {
            tasks
                .iter()
                .any(|t| cell_mean(measured, m, t, |f| f.vs_formula).is_some())
        })
        .collect();
    if !with_formula.is_empty() {
        s += "\nAgainst each mechanism's own formula computed the slow, exact way (a sparse \
              pattern: softmax with the pattern as a dense mask; `nystrom`: its formula with \
              the exact pseudo-inverse, f64 Newton–Schulz to convergence), same inputs. The \
              other mechanisms' fast paths compute their formulas exactly, up to rounding.\n\n";
        header(&mut s);
        for m in with_formula {
            s += &format!("| {m} |");
            for t in &tasks {
                let error = cell_mean(measured, m, t, |f| f.vs_formula).map_or("—".into(), show);
                s += &format!(" {error} |");
            }
            s += "\n";
        }
    }
    let mut skipped: Vec<String> = Vec::new();
    for x in measured.iter().filter(|x| x.replica == 0) {
        if let Some(why) = &x.skipped {
            let line = format!("`{}` ({why})", x.mechanism);
            if !skipped.contains(&line) {
                skipped.push(line);
            }
        }
    }
    if !skipped.is_empty() {
        s += &format!("\nNot measured: {}.\n", skipped.join("; "));
    }
    s
}

/// fidelity.csv: one line per measured layer.
pub fn csv(measured: &[Measured]) -> String {
    let mut s = String::from("task,mechanism,replica,layer,vs_softmax,vs_formula\n");
    for m in measured {
        for (layer, f) in m.layers.iter().enumerate() {
            s += &format!(
                "{},{},{},{layer},{},{}\n",
                m.task,
                m.mechanism,
                m.replica,
                f.vs_softmax,
                f.vs_formula.map_or(String::new(), |v| v.to_string())
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(m: &str, t: &str, replica: u64, errors: &[(f64, Option<f64>)]) -> Measured {
        Measured {
            task: t.into(),
            mechanism: m.into(),
            replica,
            layers: errors
                .iter()
                .map(|&(vs_softmax, vs_formula)| Fidelity {
                    vs_softmax,
                    vs_formula,
                })
                .collect(),
            skipped: None,
        }
    }

    #[test]
    fn errors_average_over_layers_and_seeds_beside_the_accuracy() {
        let rows = vec![
            Row::finished("listops", "full", 30.0),
            Row::finished("listops", "local", 20.0),
            Row::finished("listops", "linear", 25.0),
        ];
        let m = vec![
            measured("full", "listops", 0, &[(0.0, None), (0.0, None)]),
            measured(
                "local",
                "listops",
                0,
                &[(0.2, Some(1e-7)), (0.4, Some(1e-7))],
            ),
            measured(
                "local",
                "listops",
                1,
                &[(0.5, Some(1e-7)), (0.5, Some(1e-7))],
            ),
            measured("linear", "listops", 0, &[(0.123, None), (0.123, None)]),
        ];
        let md = markdown(&rows, &m);
        assert!(md.contains("| full | 30.0% · <0.01% |"), "{md}");
        assert!(md.contains("| local | 20.0% · 40% |"), "{md}");
        assert!(md.contains("| linear | 25.0% · 12% |"), "{md}");
        // Only local has a formula to compare with.
        let formula = md.split("own formula").nth(1).unwrap();
        assert!(formula.contains("| local | <0.01% |"), "{md}");
        assert!(!formula.contains("| linear"), "{md}");
        assert_eq!(csv(&m).lines().count(), 1 + 8);
    }

    #[test]
    fn long_sequences_are_measured_on_fewer_of_them() {
        assert_eq!(sequences(100), 32);
        assert_eq!(sequences(576), 32);
        assert_eq!(sequences(2_000), 9);
        assert_eq!(sequences(16_384), 2);
        // LRA's ListOps fits; Path-X's 16K tokens would need tens of GiB and are skipped.
        assert!(reference_bytes(sequences(2_000), 4, 2_000) < REFERENCE_BYTES);
        assert!(reference_bytes(sequences(16_384), 8, 16_384) > REFERENCE_BYTES);
    }

    #[test]
    fn nothing_measured_writes_no_section() {
        let rows = vec![Row::finished("listops", "xl", 30.0)];
        let mut x = measured("xl", "listops", 0, &[]);
        x.skipped = Some("recurs".into());
        assert_eq!(markdown(&rows, &[x]), "");
    }
}
