//! The arena's report: accuracy per task in the form of LRA's Table 1 (with the majority-class
//! baseline and LRA's published figure), cost per cell relative to `full`, as Markdown, CSV,
//! JSON and the accuracy/speed/memory bubble chart.

use std::path::Path;

use eft_train::RunRecord;
use serde::Serialize;

use super::fidelity::{self, Measured};
use super::plan::Cell;
use super::verdict::{self, Profiled};
use crate::plot::{Axis, Bubble, Heading, Unit, bubbles};

/// How one cell ended.
pub struct Outcome {
    /// The cell.
    pub cell: Cell,
    /// Its finished record, or why there is none.
    pub result: Result<RunRecord, String>,
}

/// LRA's Table 1 (accuracy %), by eft mechanism and task; `None` where LRA reports none, and
/// for retrieval, whose substitute data has nothing in common with AAN's.
fn published(mechanism: &str, task: &str) -> Option<f64> {
    if task == "retrieval" {
        return None;
    }
    let row: [f64; 5] = match mechanism {
        "full" | "flash" => [36.37, 64.27, 57.46, 42.44, 71.40],
        "local" => [15.82, 52.98, 53.39, 41.46, 66.63],
        "strided" | "fixed" => [17.07, 63.58, 59.59, 44.24, 71.71],
        "longformer" => [35.63, 62.85, 56.89, 42.22, 69.71],
        "linformer" => [35.70, 53.94, 52.27, 38.56, 76.34],
        "lsh" => [37.27, 56.10, 53.40, 38.07, 68.50],
        "sinkhorn" => [33.67, 61.20, 53.83, 41.23, 67.45],
        "synthesizer" => [36.99, 61.68, 54.67, 41.61, 69.45],
        "bigbird" => [36.05, 64.02, 59.29, 40.83, 74.87],
        "linear" => [16.13, 65.90, 53.09, 42.34, 75.30],
        "performer" => [18.01, 65.40, 53.82, 42.77, 77.05],
        _ => return None,
    };
    let column = ["listops", "text", "retrieval", "image", "pathfinder"]
        .iter()
        .position(|t| *t == task)?;
    Some(row[column])
}

/// One cell in report.json and report.csv.
#[derive(Debug, Serialize)]
pub(super) struct Row {
    pub task: String,
    /// The column's name (`full+switch`, `nystrom-pinv_iters6`).
    pub mechanism: String,
    /// The attention kind of the cell's config (`[model.attention] kind`).
    pub attention: String,
    /// Which of the cell's seeds (`--seeds`), from 0.
    pub replica: u64,
    pub status: String,
    pub test_accuracy: Option<f64>,
    /// Examples (or graded answers) in the test split.
    pub test_examples: Option<usize>,
    pub majority_baseline: Option<f64>,
    lra_published: Option<f64>,
    flops_per_step: Option<f64>,
    /// What the steps executed: less than `flops_per_step` where conditional computation
    /// skipped work (a Switch layer's dropped and padding tokens).
    executed_flops_per_step: Option<f64>,
    pub steps_per_second: Option<f64>,
    /// The largest heap in use during one training step (eft's tracking allocator). The arena
    /// trains every cell in one process, whose resident high-water mark only grows, so RSS is
    /// not a per-cell figure.
    pub peak_step_heap_bytes: Option<u64>,
    cost_usd: Option<f64>,
    /// The run's wall-clock seconds, data, evaluation and checkpoints included, over all its
    /// sessions.
    wall_seconds: Option<f64>,
    /// Trainable parameters (a Switch layer holds every expert's).
    parameters: Option<u64>,
    error: Option<String>,
}

#[cfg(test)]
impl Row {
    /// A finished cell of seed 0 with this accuracy and placeholder costs.
    pub(super) fn finished(task: &str, mechanism: &str, accuracy: f64) -> Self {
        Self {
            task: task.into(),
            mechanism: mechanism.into(),
            attention: mechanism.into(),
            replica: 0,
            status: "finished".into(),
            test_accuracy: Some(accuracy),
            test_examples: Some(500),
            majority_baseline: Some(10.0),
            lra_published: published(mechanism, task),
            flops_per_step: Some(2e9),
            executed_flops_per_step: Some(2e9),
            steps_per_second: Some(10.0),
            peak_step_heap_bytes: Some(64 << 20),
            cost_usd: Some(0.001),
            wall_seconds: Some(30.0),
            parameters: Some(1000),
            error: None,
        }
    }
}

fn row(o: &Outcome) -> Row {
    let r = o.result.as_ref().ok();
    let meter = r.and_then(|r| r.meter.as_ref());
    Row {
        task: o.cell.task.clone(),
        mechanism: o.cell.mechanism.clone(),
        attention: o.cell.config.model.attention.name().into(),
        replica: o.cell.replica,
        status: match &o.result {
            Ok(_) => "finished".into(),
            Err(_) => "failed".into(),
        },
        test_accuracy: r.and_then(|r| r.test.map(|t| 100.0 * t.accuracy)),
        test_examples: r.and_then(|r| r.test.map(|t| t.examples)),
        majority_baseline: r.map(|r| 100.0 * r.majority_baseline.test_accuracy),
        lra_published: published(&o.cell.mechanism, &o.cell.task),
        flops_per_step: meter.map(|m| m.flops_per_step),
        executed_flops_per_step: meter.and_then(|m| m.executed_flops_per_step),
        steps_per_second: meter.and_then(|m| m.step_seconds).map(|t| 1.0 / t.median),
        peak_step_heap_bytes: meter.and_then(|m| m.peak_step_heap_bytes),
        cost_usd: meter.map(|m| m.cost_usd),
        wall_seconds: r.map(|r| r.wall_clock_seconds),
        parameters: r.map(|r| r.parameters as u64),
        error: o.result.as_ref().err().cloned(),
    }
}

/// Writes report.md (the attention's distance from softmax, `measured`, after the tables, and
/// at the end the verdict on LRA's findings, the speed and memory ones also judged on
/// `profiled` lengths, described by `profile_note`), report.csv, report.json, fidelity.csv and
/// bubbles.{png,svg} into `dir`; returns the Markdown.
pub fn write(
    dir: &Path,
    outcomes: &[Outcome],
    measured: &[Measured],
    profiled: &[Profiled],
    profile_note: Option<&str>,
) -> anyhow::Result<String> {
    let rows: Vec<Row> = outcomes.iter().map(row).collect();
    let mut md = markdown(&rows, &drawn_tasks(outcomes));
    md += "\n";
    let close = fidelity::markdown(&rows, measured);
    if !close.is_empty() {
        md += &close;
        md += "\n";
        eft_train::write_atomic(
            &dir.join("fidelity.csv"),
            fidelity::csv(measured).as_bytes(),
        )?;
    }
    md += &verdict::markdown(&verdict::findings(&rows, profiled), profile_note);
    eft_train::write_atomic(&dir.join("report.md"), md.as_bytes())?;
    eft_train::write_atomic(
        &dir.join("report.json"),
        serde_json::to_string_pretty(&rows)?.as_bytes(),
    )?;
    eft_train::write_atomic(&dir.join("report.csv"), csv(&rows).as_bytes())?;
    let runs = mechanism_bubbles(&rows);
    let tasks = {
        let mut t: Vec<&str> = rows.iter().map(|r| r.task.as_str()).collect();
        t.dedup();
        t.len()
    };
    let subtitle = format!(
        "Mean test accuracy over {tasks} tasks; speed and peak heap per step relative to full on \
         each task, geometric mean; f32; {}",
        eft_meter::machine()
    );
    let heading = Heading {
        title: "Arena: accuracy, speed and memory",
        subtitle: &subtitle,
    };
    let speed = Axis {
        label: "training steps per second relative to full",
        unit: Unit::Ratio,
    };
    if !runs.is_empty()
        && let Err(e) = bubbles(&dir.join("bubbles"), heading, speed, Unit::Ratio, &runs)
    {
        eprintln!("warning: bubble chart not drawn: {e:#}");
    }
    Ok(md)
}

/// One bubble per mechanism, as in LRA's Figure 3: its mean test accuracy over the tasks it
/// finished, and its steps/s and peak memory relative to `full` on the same task, averaged
/// geometrically over those tasks (ratios, so a slow task does not outweigh a fast one).
fn mechanism_bubbles(rows: &[Row]) -> Vec<Bubble> {
    let full = |task: &str| {
        rows.iter()
            .find(|r| r.task == task && r.mechanism == "full")
            .and_then(|r| Some((r.steps_per_second?, r.peak_step_heap_bytes? as f64)))
    };
    let mut names: Vec<&str> = rows.iter().map(|r| r.mechanism.as_str()).collect();
    names.sort_unstable();
    names.dedup();
    names
        .into_iter()
        .filter_map(|m| {
            let cells: Vec<(f64, f64, f64)> = rows
                .iter()
                .filter(|r| r.mechanism == m)
                .filter_map(|r| {
                    let (speed, memory) = full(&r.task)?;
                    Some((
                        r.test_accuracy?,
                        r.steps_per_second? / speed,
                        r.peak_step_heap_bytes? as f64 / memory,
                    ))
                })
                .collect();
            let n = cells.len() as f64;
            let geo = |f: fn(&(f64, f64, f64)) -> f64| {
                (cells.iter().map(|c| f(c).ln()).sum::<f64>() / n).exp()
            };
            (!cells.is_empty()).then(|| Bubble {
                name: m.to_string(),
                accuracy: cells.iter().map(|c| c.0).sum::<f64>() / n,
                speed: geo(|c| c.1),
                memory: geo(|c| c.2),
            })
        })
        .collect()
}

/// A cell's test accuracy over its seeds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Accuracy {
    pub mean: f64,
    /// Sample standard deviation; 0 with one seed.
    pub sd: f64,
    seeds: usize,
    /// The smallest test split of the seeds, if known.
    examples: Option<usize>,
}

impl Accuracy {
    fn of(values: impl Iterator<Item = f64>, examples: Option<usize>) -> Option<Self> {
        let v: Vec<f64> = values.collect();
        let n = v.len();
        let mean = v.iter().sum::<f64>() / n.max(1) as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n.max(2) - 1) as f64;
        (n > 0).then_some(Self {
            mean,
            sd: var.sqrt(),
            seeds: n,
            examples,
        })
    }

    /// The finished seeds of mechanism `m` on task `t`.
    pub fn of_cell(rows: &[Row], m: &str, t: &str) -> Option<Self> {
        let cell = || {
            rows.iter()
                .filter(|r| r.mechanism == m && r.task == t && r.status != "failed")
        };
        Self::of(
            cell().filter_map(|r| r.test_accuracy),
            cell().filter_map(|r| r.test_examples).min(),
        )
    }

    /// Whether the two means differ by less than the larger spread (both with several seeds).
    pub fn ties(&self, other: &Self) -> bool {
        self.seeds > 1 && other.seeds > 1 && (self.mean - other.mean).abs() < self.sd.max(other.sd)
    }

    /// Whether the mean is above `baseline` (a percentage) by more than the seed spread and
    /// by more than the test split's sampling error at the baseline's rate: the seeds share one
    /// test split, so its noise does not average out over them, and one seed has no spread.
    pub fn learned(&self, baseline: f64) -> bool {
        let p = (baseline / 100.0).clamp(0.0, 1.0);
        let sampling = self
            .examples
            .map_or(0.0, |n| 100.0 * (p * (1.0 - p) / n.max(1) as f64).sqrt());
        self.mean - self.sd.max(sampling) > baseline
    }

    pub fn show(&self) -> String {
        if self.seeds == 1 {
            return format!("{:.1}%", self.mean);
        }
        format!("{:.1} ± {:.1}%", self.mean, self.sd)
    }
}

fn pct(x: Option<f64>) -> String {
    x.map_or_else(|| "—".into(), |v| format!("{v:.1}%"))
}

/// The values of `key` in the order they first appear in `rows` (tasks, mechanisms).
pub(super) fn first_seen(rows: &[Row], key: fn(&Row) -> &str) -> Vec<&str> {
    let mut out: Vec<&str> = Vec::new();
    for r in rows {
        let k = key(r);
        if !out.contains(&k) {
            out.push(k);
        }
    }
    out
}

/// Notes on the generated tasks whose difficulty is a setting, from the first cell's config:
/// the Pathfinder drawn, beside LRA's where they differ.
fn drawn_tasks(outcomes: &[Outcome]) -> Vec<String> {
    let Some(t) = outcomes.iter().find_map(|o| match &o.cell.config.task {
        eft_data::TaskConfig::Pathfinder(t) => Some(t),
        _ => None,
    }) else {
        return Vec::new();
    };
    let (drawn, lra) = (
        t.describe(),
        eft_data::pathfinder::PathfinderConfig::lra32(14, 1, 1, 1).describe(),
    );
    if drawn == lra {
        return Vec::new();
    }
    vec![format!("pathfinder here is {drawn}; LRA's is {lra}")]
}

/// The accuracy and cost tables, with `notes` on the tasks after the accuracy table.
fn markdown(rows: &[Row], notes: &[String]) -> String {
    let tasks = first_seen(rows, |r| &r.task);
    let mechanisms = first_seen(rows, |r| &r.mechanism);
    let find = |m: &str, t: &str| {
        rows.iter()
            .find(|r| r.mechanism == m && r.task == t && r.replica == 0)
    };
    let seeds = rows.iter().map(|r| r.replica + 1).max().unwrap_or(1);
    let stats = |m: &str, t: &str| Accuracy::of_cell(rows, m, t);
    // Per task, the best mean and its spread: a mechanism within the larger of the two spreads
    // of it is tied with the best.
    let best = |t: &str| {
        mechanisms
            .iter()
            .filter_map(|m| stats(m, t))
            .max_by(|a, b| a.mean.total_cmp(&b.mean))
    };

    let mut s = String::from(
        "## Accuracy (LRA Table 1 form)\n\nTest accuracy; LRA's published figure for the same family in brackets \
         (their full-size models and data, not comparable one to one).",
    );
    if seeds > 1 {
        s += &format!(
            " Mean ± standard deviation over {seeds} seeds (initial weights, batch order and \
             dropout; the same data); per task the best mean is in bold, and ≈ marks a mean \
             whose difference from it is within the larger of the two spreads: a tie."
        );
    }
    s += "\n\n| mechanism |";
    for t in &tasks {
        s += &format!(" {t} |");
    }
    s += " average |\n|---|";
    s += &"---|".repeat(tasks.len() + 1);
    s += "\n";
    for m in &mechanisms {
        s += &format!("| {m} |");
        let mut got = Vec::new();
        for t in &tasks {
            match (find(m, t), stats(m, t)) {
                (Some(r), None) if r.status == "failed" => s += " failed |",
                (Some(r), Some(a)) => {
                    got.push(a.mean);
                    let lra = r
                        .lra_published
                        .map_or_else(String::new, |p| format!(" ({p:.1}%)"));
                    let shown = match (seeds, best(t)) {
                        (1, _) => pct(Some(a.mean)),
                        (_, Some(b)) if b.mean == a.mean => format!("**{}**", a.show()),
                        (_, Some(b)) if a.ties(&b) => format!("{} ≈", a.show()),
                        _ => a.show(),
                    };
                    s += &format!(" {shown}{lra} |");
                }
                _ => s += " — |",
            }
        }
        let avg = (got.len() == tasks.len()).then(|| got.iter().sum::<f64>() / got.len() as f64);
        s += &format!(" {} |\n", pct(avg));
    }
    s += "| majority class |";
    for t in &tasks {
        let b = rows
            .iter()
            .find(|r| r.task == *t)
            .and_then(|r| r.majority_baseline);
        s += &format!(" {} |", pct(b));
    }
    s += " — |\n| learned? |";
    let learned = verdict::learned_tasks(rows);
    let mut unlearned = Vec::new();
    for t in &tasks {
        s += match learned.iter().find(|(l, _)| l == t) {
            Some((_, true)) => " yes |",
            Some((_, false)) => {
                unlearned.push(*t);
                " **no** |"
            }
            None => " — |",
        };
    }
    s += " — |\n";
    if !unlearned.is_empty() {
        // Without `full`, learning is judged on the best mechanism of the task.
        let judged = if rows.iter().any(|r| r.mechanism == "full") {
            "`full` is not"
        } else {
            "No mechanism is"
        };
        s += &format!(
            "\n**Not learned in this budget: {}.** {judged} above the majority baseline by more \
             than its seed spread (at least the test split's sampling error) there, so that \
             column's figures are chance, not results, and the verdict below leaves it out.\n",
            unlearned.join(", ")
        );
    }
    if tasks.contains(&"retrieval") {
        s += &format!("\nNote: {}.\n", eft_data::retrieval::SUBSTITUTE_NOTE);
    }
    if tasks.contains(&"image") {
        s += "\nNote: image is MNIST (or CIFAR-10 when `task.cifar10` names its files), LRA's is grey CIFAR-10.\n";
    }
    let graded: Vec<&str> = ["mqar", "copying", "induction"]
        .into_iter()
        .filter(|t| tasks.contains(t))
        .collect();
    if !graded.is_empty() {
        s += &format!(
            "\nNote: {} are graded at their answer positions (accuracy over all answers: queries, markers, the final trigger); the baseline always names the most frequent answer.\n",
            graded.join(", ")
        );
    }
    if tasks.contains(&"pathx") {
        s += "\nNote: every model of LRA's Table 1 failed Path-X (chance, 50%).\n";
    }
    for note in notes {
        s += &format!("\nNote: {note}.\n");
    }

    s += "\n## Cost (relative to `full` on the same task)\n\nFLOPs per training step (analytic, and \
          executed: less where conditional computation skipped work), steps per second \
          (median, warm-up excluded), the peak heap of a training step (eft's tracking allocator), the run's cost at its price per hour and its wall-clock time (data, evaluation and checkpoints included).\n\n\
          | task | mechanism | GFLOP/step | executed | steps/s | peak heap/step | cost | wall time |\n|---|---|---|---|---|---|---|---|\n";
    // With several seeds, the first seed's run stands for the cell's cost.
    for r in rows.iter().filter(|r| r.replica == 0) {
        let full = find("full", &r.task);
        let ratio = |x: Option<f64>, f: Option<f64>| match (x, f) {
            (Some(x), Some(f)) if f > 0.0 && r.mechanism != "full" => format!(" ({:.2}×)", x / f),
            _ => String::new(),
        };
        let flops = r.flops_per_step.map(|f| f / 1e9);
        let mem = r
            .peak_step_heap_bytes
            .map(|b| b as f64 / f64::from(1u32 << 20));
        let fmt = |x: Option<f64>, digits: usize| {
            x.map_or_else(|| "—".into(), |v| format!("{v:.digits$}"))
        };
        s += &format!(
            "| {} | {} | {}{} | {} | {}{} | {} MiB{} | {} | {} |\n",
            r.task,
            r.mechanism,
            fmt(flops, 3),
            ratio(flops, full.and_then(|f| f.flops_per_step.map(|x| x / 1e9))),
            fmt(r.executed_flops_per_step.map(|f| f / 1e9), 3),
            fmt(r.steps_per_second, 1),
            ratio(r.steps_per_second, full.and_then(|f| f.steps_per_second)),
            fmt(mem, 0),
            ratio(
                mem,
                full.and_then(|f| f
                    .peak_step_heap_bytes
                    .map(|b| b as f64 / f64::from(1u32 << 20)))
            ),
            r.cost_usd
                .map_or_else(|| "—".into(), |c| format!("${c:.4}")),
            r.wall_seconds.map_or_else(|| "—".into(), duration),
        );
    }
    let walls: Vec<f64> = rows.iter().filter_map(|r| r.wall_seconds).collect();
    if !walls.is_empty() {
        s += &format!(
            "\nWall-clock time of the {} runs, every seed included: {} in all (what training this \
             arena from scratch takes, without the data's download and the report's profile).\n",
            walls.len(),
            duration(walls.iter().sum())
        );
    }
    let failed: Vec<&Row> = rows.iter().filter(|r| r.status == "failed").collect();
    if !failed.is_empty() {
        s += "\n## Failed cells\n\n";
        for r in failed {
            s += &format!(
                "- {} × {}: {}\n",
                r.task,
                r.mechanism,
                r.error.as_deref().unwrap_or("")
            );
        }
    }
    s
}

/// Seconds as `42 s`, `3 min 05 s` or `2 h 07 min`.
fn duration(seconds: f64) -> String {
    let s = seconds.round() as u64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, s % 3600 / 60),
    }
}

/// `x` without float noise: rounded to 12 significant digits, then written as briefly as it
/// reads back (`11.2`, not `11.200000000000001`).
fn tidy(x: f64) -> String {
    format!("{x:.11e}")
        .parse::<f64>()
        .map_or_else(|_| x.to_string(), |v| v.to_string())
}

fn csv(rows: &[Row]) -> String {
    let mut s = String::from(
        "task,mechanism,replica,status,test_accuracy,majority_baseline,lra_published,flops_per_step,executed_flops_per_step,steps_per_second,peak_step_heap_bytes,cost_usd,wall_seconds,error\n",
    );
    let o = |x: Option<f64>| x.map_or_else(String::new, tidy);
    for r in rows {
        let error = r.error.as_deref().unwrap_or("").replace('"', "\"\"");
        s += &format!(
            "{},{},{},{},{},{},{},{},{},{},{},{},{},\"{error}\"\n",
            r.task,
            r.mechanism,
            r.replica,
            r.status,
            o(r.test_accuracy),
            o(r.majority_baseline),
            o(r.lra_published),
            o(r.flops_per_step),
            o(r.executed_flops_per_step),
            o(r.steps_per_second),
            r.peak_step_heap_bytes
                .map_or_else(String::new, |b| b.to_string()),
            o(r.cost_usd),
            o(r.wall_seconds),
        );
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unlearned task names what was judged: `full`, or the best mechanism without it.
    #[test]
    fn an_unlearned_task_names_what_was_judged() {
        let mut local = Row::finished("pathfinder", "local", 50.3);
        local.majority_baseline = Some(50.2);
        let md = markdown(std::slice::from_ref(&local), &[]);
        assert!(
            md.contains("Not learned in this budget: pathfinder.** No mechanism is above"),
            "{md}"
        );
        let mut full = Row::finished("pathfinder", "full", 50.3);
        full.majority_baseline = Some(50.2);
        let md = markdown(&[full, local], &[]);
        assert!(md.contains("pathfinder.** `full` is not above"), "{md}");
    }

    /// The planned cells of `preset` for `task` (every mechanism), none of them run.
    fn unrun(preset: &str, task: &str) -> Vec<Outcome> {
        super::super::plan::cells(preset, &[task.into()], &[], &[])
            .unwrap()
            .into_iter()
            .map(|cell| Outcome {
                cell,
                result: Err("not run".into()),
            })
            .collect()
    }

    /// The report says which Pathfinder its cells drew, from their config, beside LRA's.
    #[test]
    fn the_drawn_pathfinder_is_described_beside_lras() {
        let outcomes = unrun("quick", "pathfinder");
        let eft_data::TaskConfig::Pathfinder(quick) = &outcomes[0].cell.config.task else {
            panic!("a pathfinder cell");
        };
        let notes = drawn_tasks(&outcomes);
        assert_eq!(notes.len(), 1, "{notes:?}");
        assert!(
            notes[0].contains(&quick.describe())
                && notes[0].contains("32×32 pixels (1024 tokens), target snakes of 14 paddles"),
            "{notes:?}"
        );
        assert!(drawn_tasks(&unrun("quick", "listops")).is_empty());
        // lite draws LRA's own Pathfinder: nothing to say.
        assert!(drawn_tasks(&unrun("lite", "pathfinder")).is_empty());
    }

    fn row(task: &str, mechanism: &str, accuracy: Option<f64>, speed: f64) -> Row {
        let mut r = Row::finished(task, mechanism, accuracy.unwrap_or_default());
        r.steps_per_second = Some(speed);
        r.wall_seconds = Some(125.0);
        if accuracy.is_none() {
            r.status = "failed".into();
            r.test_accuracy = None;
            r.error = Some("out of memory".into());
        }
        r
    }

    /// Bubbles average accuracy arithmetically and speed and memory ratios geometrically.
    #[test]
    fn one_bubble_per_mechanism_relative_to_full() {
        let mut rows = vec![
            row("listops", "full", Some(30.0), 10.0),
            row("text", "full", Some(50.0), 20.0),
            row("listops", "linear", Some(20.0), 20.0),
            row("text", "linear", Some(60.0), 80.0),
            row("text", "lsh", None, 5.0),
        ];
        rows[3].peak_step_heap_bytes = Some(16 << 20);
        let b = mechanism_bubbles(&rows);
        assert_eq!(
            b.len(),
            2,
            "a mechanism without a finished cell has no bubble"
        );
        let linear = b.iter().find(|b| b.name == "linear").unwrap();
        assert!((linear.accuracy - 40.0).abs() < 1e-12);
        assert!((linear.speed - 8f64.sqrt()).abs() < 1e-12, "√(2·4)");
        assert!((linear.memory - 0.5).abs() < 1e-12, "√(1·¼)");
        let full = b.iter().find(|b| b.name == "full").unwrap();
        assert_eq!((full.speed, full.memory, full.accuracy), (1.0, 1.0, 40.0));
    }

    /// Table 1 averages a mechanism only over a complete row and puts LRA's figure beside ours;
    /// Table 2 gives ratios to `full` on the same task; failures are listed with their reason.
    #[test]
    fn tables_average_complete_rows_and_relate_to_full() {
        let rows = vec![
            row("listops", "full", Some(36.0), 10.0),
            row("image", "full", Some(80.0), 4.0),
            row("listops", "linear", Some(30.0), 20.0),
            row("image", "linear", None, 8.0),
        ];
        let md = markdown(&rows, &[]);
        assert!(
            md.contains("| full | 36.0% (36.4%) | 80.0% (42.4%) | 58.0% |"),
            "{md}"
        );
        assert!(
            md.contains("| linear | 30.0% (16.1%) | failed | — |"),
            "{md}"
        );
        assert!(
            md.contains("| listops | linear | 2.000 (1.00×) | 2.000 | 20.0 (2.00×) |"),
            "{md}"
        );
        assert!(md.contains("- image × linear: out of memory"), "{md}");
        assert!(md.contains("| $0.0010 | 2 min 05 s |"), "{md}");
        assert!(
            md.contains("4 runs, every seed included: 8 min 20 s"),
            "{md}"
        );
        assert_eq!(duration(7_620.0), "2 h 07 min");
        assert_eq!(csv(&rows).lines().count(), 5);
    }

    /// With several seeds a cell shows mean ± standard deviation; the best mean per task is in
    /// bold and means within the larger spread of it are marked as ties; costs come from the
    /// first seed's run only.
    #[test]
    fn seeds_give_error_bars_and_ties() {
        let seeded = |m: &str, r: u64, acc: f64| Row {
            replica: r,
            ..row("listops", m, Some(acc), 10.0)
        };
        let rows = vec![
            seeded("full", 0, 36.0),
            seeded("full", 1, 38.0),
            seeded("full", 2, 40.0),
            seeded("linear", 0, 35.0),
            seeded("linear", 1, 37.0),
            seeded("linear", 2, 36.0),
            seeded("local", 0, 20.0),
            seeded("local", 1, 21.0),
            seeded("local", 2, 22.0),
        ];
        let md = markdown(&rows, &[]);
        // full 38 ± 2; linear 36 ± 1 is 2 points below: exactly the larger spread, not within it.
        assert!(md.contains("| full | **38.0 ± 2.0%** (36.4%) |"), "{md}");
        assert!(md.contains("| linear | 36.0 ± 1.0% (16.1%) |"), "{md}");
        assert!(md.contains("| local | 21.0 ± 1.0% (15.8%) |"), "{md}");
        let tied = vec![
            seeded("full", 0, 36.0),
            seeded("full", 1, 40.0),
            seeded("linear", 0, 37.0),
            seeded("linear", 1, 36.0),
        ];
        let md = markdown(&tied, &[]);
        assert!(md.contains("| linear | 36.5 ± 0.7% ≈ (16.1%) |"), "{md}");
        assert_eq!(
            md.matches("| listops | full |").count(),
            1,
            "one cost row per cell"
        );
        assert!(md.contains("over 2 seeds"), "{md}");
    }

    /// The CSV writes what the numbers are, not their float noise.
    #[test]
    fn csv_numbers_carry_no_float_noise() {
        let mut r = row("listops", "full", Some(100.0 * 0.112), 0.1 + 0.2);
        r.majority_baseline = Some(11.200000000000001);
        let text = csv(&[r]);
        let line = text.lines().nth(1).unwrap();
        assert!(
            line.contains(",11.2,11.2,") && line.contains(",0.3,"),
            "{line}"
        );
        assert!(
            !line.contains("000000001") && !line.contains("99999999"),
            "{line}"
        );
        assert_eq!(tidy(1.0 / 3.0), "0.333333333333");
    }
}
