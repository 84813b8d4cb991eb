//! A search's results: the Pareto front as Markdown, CSV and JSON, its chart, the verdict on
//! the baseline, and the comparison of two searches (evolution against random search).

use std::fmt::Write;
use std::path::Path;

use anyhow::Context;
use eft_train::write_atomic;
use serde::Serialize;

use super::evolution::{Outcome, Strategy};
use super::pareto::{Point, area, front};
use super::space::describe;
use super::{LOG_FILE, Log};

/// The notes' Evolved Transformer figure: the share of the baseline's FLOPs or parameters a
/// candidate may use to count as dominating it.
const ET_SHARE: f64 = 0.78;

/// The candidates trained in this search (repeats left out): (id, point, test accuracy).
fn results(log: &Log) -> Vec<(usize, Point, Option<f64>)> {
    log.entries
        .iter()
        .filter_map(|e| match &e.outcome {
            Outcome::Trained {
                point,
                test_accuracy,
                ..
            } => Some((e.id, *point, Some(*test_accuracy))),
            _ => None,
        })
        .collect()
}

/// Candidates that match the baseline's accuracy at most [`ET_SHARE`] of its FLOPs or
/// parameters, best accuracy first.
fn dominating(log: &Log) -> Vec<(usize, Point)> {
    let Some(b) = log.baseline else {
        return Vec::new();
    };
    let mut out: Vec<(usize, Point)> = results(log)
        .into_iter()
        .filter(|(_, p, _)| {
            p.acc >= b.acc && (p.flops <= ET_SHARE * b.flops || p.params <= ET_SHARE * b.params)
        })
        .map(|(id, p, _)| (id, p))
        .collect();
    out.sort_by(|a, b| b.1.acc.total_cmp(&a.1.acc));
    out
}

#[derive(Serialize)]
struct FrontJson<'a> {
    settings: &'a super::Settings,
    baseline: Option<Point>,
    front: Vec<usize>,
    dominates_baseline: Vec<usize>,
    entries: &'a [super::Entry],
}

/// Writes `front.{md,csv,json}` and the chart `front.{svg,png}` into `dir`; returns the Markdown.
pub fn write_outputs(dir: &Path, log: &Log) -> anyhow::Result<String> {
    let md = report(log, val_examples(dir));
    write_atomic(&dir.join("front.md"), md.as_bytes())?;
    let rows = results(log);
    let points: Vec<Point> = rows.iter().map(|r| r.1).collect();
    let on_front = front(&points, &log.settings.objectives);
    let mut csv = String::from(
        "id,candidate,val_accuracy,test_accuracy,gflop_per_step,ms_per_step,peak_mib,params,front\n",
    );
    for (i, (id, p, test)) in rows.iter().enumerate() {
        let genome = &log.entries[*id].genome;
        writeln!(
            csv,
            "{id},\"{}\",{},{},{},{},{},{},{}",
            describe(genome),
            p.acc,
            test.unwrap_or(f64::NAN),
            p.flops / 1e9,
            p.latency,
            p.memory / f64::from(1 << 20),
            p.params,
            on_front.contains(&i)
        )
        .expect("writing to a string");
    }
    write_atomic(&dir.join("front.csv"), csv.as_bytes())?;
    let json = FrontJson {
        settings: &log.settings,
        baseline: log.baseline,
        front: on_front.iter().map(|&i| rows[i].0).collect(),
        dominates_baseline: dominating(log).into_iter().map(|(id, _)| id).collect(),
        entries: &log.entries,
    };
    let json = serde_json::to_string_pretty(&json).expect("serialises");
    write_atomic(&dir.join("front.json"), json.as_bytes())?;
    let initial = match log.settings.strategy {
        Strategy::Evolution { population, .. } => population,
        Strategy::Random => 0,
    };
    let first_trained: Vec<usize> = log
        .entries
        .iter()
        .filter(|e| e.point().is_some())
        .take(initial)
        .map(|e| e.id)
        .collect();
    let candidate = |p: &Point, front: bool, initial: bool| crate::plot::Candidate {
        accuracy: 100.0 * p.acc,
        gflop: p.flops / 1e9,
        ms: p.latency,
        front,
        initial,
    };
    let candidates: Vec<crate::plot::Candidate> = rows
        .iter()
        .enumerate()
        .map(|(i, (id, p, _))| candidate(p, on_front.contains(&i), first_trained.contains(id)))
        .collect();
    let baseline = log.baseline.map(|b| candidate(&b, false, false));
    let title = format!(
        "{} search on {}: {} candidates",
        strategy_name(log.settings.strategy),
        log.settings.task,
        log.evaluated()
    );
    let subtitle = format!(
        "{} proxy steps each; front on accuracy against {}; {}",
        log.settings.proxy_steps,
        objective_names(log),
        eft_meter::machine()
    );
    let heading = crate::plot::Heading {
        title: &title,
        subtitle: &subtitle,
    };
    if !candidates.is_empty()
        && let Err(e) =
            crate::plot::front(&dir.join("front"), heading, &candidates, baseline.as_ref())
    {
        eprintln!("  chart not drawn: {e:#}");
    }
    Ok(md)
}

fn strategy_name(s: Strategy) -> String {
    match s {
        Strategy::Evolution { population, sample } => {
            format!("aging evolution (P = {population}, S = {sample})")
        }
        Strategy::Random => "random".into(),
    }
}

fn objective_names(log: &Log) -> String {
    let names: Vec<String> = log.settings.objectives[1..]
        .iter()
        .map(|o| format!("{o:?}").to_lowercase())
        .collect();
    names.join(", ")
}

fn row(out: &mut String, id: &str, what: &str, p: &Point, test: Option<f64>) {
    writeln!(
        out,
        "| {id} | {what} | {:.1} | {} | {:.3} | {:.2} | {:.1} | {:.0} |",
        100.0 * p.acc,
        test.map_or("—".into(), |t| format!("{:.1}", 100.0 * t)),
        p.flops / 1e9,
        p.latency,
        p.memory / f64::from(1 << 20),
        p.params
    )
    .expect("writing to a string");
}

const HEADER: &str = "| # | candidate | val acc % | test acc % | GFLOP/step | ms/step | peak MiB | params |\n|---:|---|---:|---:|---:|---:|---:|---:|";

/// The search's report in Markdown; `val_examples`, the validation split's size, sets the
/// accuracy's standard error that the verdict weighs margins against.
pub fn report(log: &Log, val_examples: Option<usize>) -> String {
    let s = &log.settings;
    let mut out = String::new();
    let rejected = log.entries.len() - log.evaluated();
    let repeats = (log.entries.iter())
        .filter(|e| matches!(e.outcome, Outcome::Repeat { .. }))
        .count();
    let failed = (log.entries.iter())
        .filter(|e| matches!(e.outcome, Outcome::Failed { .. }))
        .count();
    writeln!(
        out,
        "# Search on {}: {}\n\n{} candidates evaluated of a budget of {} ({repeats} repeats of an \
         earlier candidate, not retrained; {failed} failed), {rejected} rejected before training \
         by the budgets; {} proxy training steps each on the task's quick preset; seed {}. \
         Accuracy is the validation accuracy after the proxy steps; costs are the meter's \
         (FLOPs per step analytic, ms per step the median measured, peak heap of a step).\n",
        s.task,
        strategy_name(s.strategy),
        log.evaluated(),
        s.budget_evals,
        s.proxy_steps,
        s.seed
    )
    .expect("writing to a string");
    let rows = results(log);
    let points: Vec<Point> = rows.iter().map(|r| r.1).collect();
    let on_front = front(&points, &s.objectives);
    writeln!(
        out,
        "## Pareto front (accuracy against {})\n\n{HEADER}",
        objective_names(log)
    )
    .expect("writing to a string");
    if let Some(b) = &log.baseline {
        row(&mut out, "—", "baseline: the quick `full` model", b, None);
    }
    for &i in &on_front {
        let (id, p, test) = rows[i];
        row(
            &mut out,
            &id.to_string(),
            &describe(&log.entries[id].genome),
            &p,
            test,
        );
    }
    out.push_str("\n## Verdict\n\n");
    match (log.baseline, dominating(log).first()) {
        (None, _) => out.push_str("No baseline was trained.\n"),
        (Some(b), Some(_)) => {
            let qualify = dominating(log);
            writeln!(
                out,
                "{} candidate(s) dominate the baseline `full` model ({:.1}% validation accuracy) \
                 in the notes' Evolved Transformer sense (at least its accuracy at ≤ {:.0}% of \
                 its FLOPs or parameters):\n",
                qualify.len(),
                100.0 * b.acc,
                100.0 * ET_SHARE
            )
            .expect("writing to a string");
            for (id, p) in qualify {
                writeln!(
                    out,
                    "- #{id} `{}`: {:.1}% at {:.0}% of the FLOPs per step and {:.0}% of the \
                     parameters",
                    describe(&log.entries[id].genome),
                    100.0 * p.acc,
                    100.0 * p.flops / b.flops,
                    100.0 * p.params / b.params
                )
                .expect("writing to a string");
            }
        }
        (Some(b), None) => {
            let cheap = rows
                .iter()
                .filter(|(_, p, _)| {
                    p.flops <= ET_SHARE * b.flops || p.params <= ET_SHARE * b.params
                })
                .map(|(_, p, _)| p.acc)
                .fold(f64::NAN, f64::max);
            writeln!(
                out,
                "No candidate dominates the baseline `full` model ({:.1}% validation accuracy) \
                 at ≤ {:.0}% of its FLOPs or parameters: the best such candidate reaches {:.1}%.",
                100.0 * b.acc,
                100.0 * ET_SHARE,
                100.0 * cheap
            )
            .expect("writing to a string");
        }
    }
    if let (Some(b), Some(n)) = (log.baseline, val_examples.filter(|&n| n > 0)) {
        let se = (b.acc * (1.0 - b.acc) / n as f64).sqrt();
        writeln!(
            out,
            "\nOne binomial standard error of the baseline's accuracy on the {n} validation \
             examples is {:.1} points: accuracy margins below two of them ({:.1} points) are \
             ties, and one seed per candidate cannot separate them.",
            100.0 * se,
            200.0 * se
        )
        .expect("writing to a string");
    }
    writeln!(out, "\n## Every candidate\n\n{HEADER}").expect("writing to a string");
    for (id, p, test) in &rows {
        row(
            &mut out,
            &id.to_string(),
            &describe(&log.entries[*id].genome),
            p,
            *test,
        );
    }
    for e in log
        .entries
        .iter()
        .filter(|e| e.point().is_none() || matches!(e.outcome, Outcome::Repeat { .. }))
    {
        let what = match &e.outcome {
            Outcome::Rejected { why } => format!("rejected: {why}"),
            Outcome::Failed { why } => format!("failed: {why}"),
            Outcome::Repeat { of, .. } => format!("repeat of #{of}"),
            Outcome::Trained { .. } => continue,
        };
        writeln!(
            out,
            "| {} | {} — {what} | | | | | | |",
            e.id,
            describe(&e.genome)
        )
        .expect("writing to a string");
    }
    out
}

/// Two searches compared on one task: the best proxy accuracy and the area their (accuracy,
/// FLOPs) fronts dominate, on common bounds.
pub fn compare(a: &Log, b: &Log, val_examples: Option<usize>) -> String {
    let points = |l: &Log| -> Vec<Point> { results(l).into_iter().map(|r| r.1).collect() };
    let (pa, pb) = (points(a), points(b));
    let all = pa.iter().chain(&pb);
    let floor = all.clone().map(|p| p.acc).fold(f64::INFINITY, f64::min);
    let ceiling = 1.01 * all.map(|p| p.flops).fold(0.0, f64::max);
    let best = |p: &[Point]| p.iter().map(|p| p.acc).fold(f64::NAN, f64::max);
    let (aa, ab) = (area(&pa, floor, ceiling), area(&pb, floor, ceiling));
    let margin = match val_examples.filter(|&n| n > 0) {
        Some(n) => {
            let p = best(&pa).max(best(&pb));
            let se = (p * (1.0 - p) / n as f64).sqrt();
            format!(
                " The best accuracies differ by {:.1} points; one binomial standard error at \
                 that accuracy on {n} validation examples is {:.1} points.",
                100.0 * (best(&pa) - best(&pb)).abs(),
                100.0 * se
            )
        }
        None => String::new(),
    };
    format!(
        "| search | candidates | best val acc % | front area (acc × ln FLOPs, common bounds) |\n\
         |---|---:|---:|---:|\n| {} | {} | {:.1} | {:.4} |\n| {} | {} | {:.1} | {:.4} |\n\n{}{margin}\n",
        strategy_name(a.settings.strategy),
        pa.len(),
        100.0 * best(&pa),
        aa,
        strategy_name(b.settings.strategy),
        pb.len(),
        100.0 * best(&pb),
        ab,
        if aa > ab {
            "The first search's front dominates more of the accuracy–FLOPs plane."
        } else if ab > aa {
            "The second search's front dominates more of the accuracy–FLOPs plane."
        } else {
            "The two fronts dominate the same area."
        }
    )
}

/// The size of the validation split the search in `dir` measured accuracy on (from its
/// baseline's record), for the accuracy's standard error.
pub fn val_examples(dir: &Path) -> Option<usize> {
    let text = std::fs::read_to_string(dir.join("baseline").join(eft_train::RECORD_FILE)).ok()?;
    let record: eft_train::RunRecord = serde_json::from_str(&text).ok()?;
    Some(record.split_sizes[1])
}

/// Reads the search log in `dir`.
pub fn load(dir: &Path) -> anyhow::Result<Log> {
    let path = dir.join(LOG_FILE);
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text)
        .with_context(|| format!("{}: not an eft search log", path.display()))
}
