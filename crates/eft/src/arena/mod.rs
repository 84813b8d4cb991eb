//! `eft arena`: every (task, mechanism) cell as its own resumable run, then one report.

mod eta;
mod fidelity;
mod plan;
mod report;
mod verdict;

use std::path::Path;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::bail;
use eft_train::{CHECKPOINT_FILE, CONFIG_FILE, RECORD_FILE, RunConfig, RunRecord, RunStatus};

use crate::args::{ArenaArgs, SweepArgs};
use crate::interrupt::INTERRUPTED;
use report::Outcome;

/// Where a cell stands before this session touches it.
enum State {
    /// Finished or diverged: nothing left to train.
    Ended(Box<RunRecord>),
    Interrupted,
    New,
}

fn state(dir: &Path, planned: &RunConfig) -> anyhow::Result<State> {
    let record = std::fs::read_to_string(dir.join(RECORD_FILE))
        .ok()
        .and_then(|t| serde_json::from_str::<RunRecord>(&t).ok());
    let stored = match &record {
        Some(r) => Some(r.config.clone()),
        None => std::fs::read_to_string(dir.join(CONFIG_FILE))
            .ok()
            .and_then(|t| RunConfig::from_toml(&t).ok()),
    };
    // A cell trained under other settings must not pass for this one, nor be overwritten.
    if let Some(stored) = stored.filter(|s| s != planned) {
        bail!(
            "{} holds a run with other settings ({}); delete that folder to train it again, or \
             give this arena another --name",
            dir.display(),
            differences(&stored, planned)
        );
    }
    Ok(match record {
        Some(r) if matches!(r.status, RunStatus::Finished | RunStatus::Diverged) => {
            State::Ended(Box::new(r))
        }
        _ if dir.join(CHECKPOINT_FILE).exists() => State::Interrupted,
        _ => State::New,
    })
}

/// The first few config lines that differ, as `stored → planned`.
fn differences(stored: &RunConfig, planned: &RunConfig) -> String {
    let (a, b) = (stored.to_toml(), planned.to_toml());
    let (a, b): (Vec<&str>, Vec<&str>) = (a.lines().collect(), b.lines().collect());
    let mut out: Vec<String> = a
        .iter()
        .zip(&b)
        .filter(|(x, y)| x != y)
        .take(3)
        .map(|(x, y)| format!("`{x}` → `{y}`"))
        .collect();
    if out.is_empty() {
        out.push("the config differs".into());
    }
    out.join(", ")
}

/// The run of `config` in `dir`: its record if it ended earlier (kept), else resumed from its
/// checkpoint, else trained from the start. A folder holding a run of another config is an
/// error, never overwritten.
pub(crate) fn train_or_keep(
    dir: &Path,
    config: &RunConfig,
    options: &eft_train::TrainOptions,
) -> anyhow::Result<RunRecord> {
    train_from(state(dir, config)?, dir, config, options)
}

/// The run of `config` in `dir` from its state, as [`train_or_keep`].
fn train_from(
    state: State,
    dir: &Path,
    config: &RunConfig,
    options: &eft_train::TrainOptions,
) -> anyhow::Result<RunRecord> {
    match state {
        State::Ended(record) => {
            eprintln!("  ended earlier: kept");
            Ok(*record)
        }
        State::Interrupted => Ok(eft_train::resume(dir, options)?),
        State::New => Ok(eft_train::train(config.clone(), dir, options)?),
    }
}

/// Runs the command.
pub fn run(args: ArenaArgs) -> anyhow::Result<ExitCode> {
    let cells = plan::cells(&args.preset, &args.tasks, &args.mechanisms, &args.sets)?;
    let seeds = args
        .seeds
        .unwrap_or_else(|| plan::default_seeds(&args.preset));
    let mut cells = plan::with_seeds(cells, seeds);
    let name = args.name.clone().unwrap_or_else(|| args.preset.clone());
    let dir = args.out.join(&name);
    plan::resolve_teachers(&mut cells, &dir)?;
    // One arena process per folder; each cell's run folder is claimed again by its training.
    let _lock = eft_train::FolderLock::acquire(&dir)?;
    if args.report_only {
        let planned = cells.len();
        cells.retain(|c| matches!(state(&dir.join(&c.name), &c.config), Ok(State::Ended(_))));
        if cells.is_empty() {
            bail!(
                "--report-only: none of the {planned} cells of {} has ended yet; run the arena \
                 without --report-only to train some",
                dir.display()
            );
        }
        eprintln!("report only: {} of {planned} cells have ended", cells.len());
    }
    let options = crate::commands::train_options(args.device, args.no_progress, None)?;
    eprintln!(
        "arena {name}: {} cells ({} preset) → {}",
        cells.len(),
        args.preset,
        dir.display()
    );
    // Data first, once per task: a task whose data cannot be fetched fails its cells, not the arena.
    let mut unavailable: Vec<(String, String)> = Vec::new();
    let mut tasks: Vec<&str> = cells.iter().map(|c| c.task.as_str()).collect();
    tasks.dedup();
    for task in tasks {
        if let Err(e) = crate::fetch::fetch_data(&[task.to_string()]) {
            eprintln!("  data for {task} unavailable: {e:#}");
            unavailable.push((task.to_string(), format!("{e:#}")));
        }
    }
    // Seconds each cell trained in this session took, by task (finished cells cost nothing).
    let mut timed: Vec<(String, f64)> = Vec::new();
    let mut outcomes = Vec::with_capacity(cells.len());
    for (i, cell) in cells.iter().enumerate() {
        let run_dir = dir.join(&cell.name);
        let eta = eta::minutes_left(&timed, cells[i..].iter().map(|c| c.task.as_str()))
            .map(|m| format!(", about {m:.0} min left"));
        eprintln!(
            "[{}/{}] {} × {}{}",
            i + 1,
            cells.len(),
            cell.task,
            cell.mechanism,
            eta.unwrap_or_default()
        );
        if let Some((_, why)) = unavailable.iter().find(|(t, _)| *t == cell.task) {
            outcomes.push(Outcome {
                cell: cell.clone(),
                result: Err(format!("no data: {why}")),
            });
            continue;
        }
        let started = Instant::now();
        // Only cells trained in this session tell how long the rest will take.
        let cell_state = state(&run_dir, &cell.config);
        let trains = matches!(cell_state, Ok(State::New | State::Interrupted));
        let result = cell_state.and_then(|s| train_from(s, &run_dir, &cell.config, &options));
        if trains {
            timed.push((cell.task.clone(), started.elapsed().as_secs_f64()));
        }
        match result {
            Ok(record) if record.status == RunStatus::Finished => {
                crate::report::print_record(&record);
                outcomes.push(Outcome {
                    cell: cell.clone(),
                    result: Ok(record),
                });
            }
            Ok(record) if record.status == RunStatus::Diverged => {
                crate::report::print_record(&record);
                let at = record.diverged_at_step.unwrap_or(record.steps_done + 1);
                outcomes.push(Outcome {
                    cell: cell.clone(),
                    result: Err(format!(
                        "diverged at step {at} (non-finite loss or gradient)"
                    )),
                });
            }
            Ok(_) => {
                // Ctrl-C: the cell has a checkpoint; a rerun resumes it.
                report::write(&dir, &outcomes, &[], &[], None)?;
                eprintln!("arena interrupted; rerun the same command to continue");
                return Ok(ExitCode::from(INTERRUPTED));
            }
            Err(e) => {
                // One failing cell (out of memory, a bad parameter) must not stop the others.
                eprintln!("  failed: {e:#}");
                outcomes.push(Outcome {
                    cell: cell.clone(),
                    result: Err(format!("{e:#}")),
                });
            }
        }
    }
    let (profiled, note) = if args.no_profile {
        (Vec::new(), None)
    } else {
        profile_lengths(&dir, &cells, &args.verdict_lens)?
    };
    eprintln!("measuring each trained cell's attention against softmax…");
    let measured = fidelity::measure(&dir, &outcomes, &options.device);
    let md = report::write(&dir, &outcomes, &measured, &profiled, note.as_deref())?;
    println!("{md}");
    eprintln!("wrote {}", dir.join("report.{md,csv,json}").display());
    let failed = outcomes.iter().filter(|o| o.result.is_err()).count();
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// Timed passes per profiled attention call of the verdict.
const PROFILE_REPEATS: usize = 2;

/// One attention call of each of the arena's mechanisms at `lens`, as `eft profile sweep`
/// measures it (each in its own process), kept in `dir/attention-cpu.*` so that a rerun measures
/// only what is missing; with a note for the report saying what was measured and what was not.
fn profile_lengths(
    dir: &Path,
    cells: &[plan::Cell],
    lens: &[usize],
) -> anyhow::Result<(Vec<verdict::Profiled>, Option<String>)> {
    let mut mechanisms: Vec<String> = Vec::new();
    for c in cells {
        // A technique column (`full+switch`) or a named setting (`nystrom-pinv_iters6`)
        // profiles as its attention, with the default parameters.
        let name = c.config.model.attention.name();
        if !mechanisms.iter().any(|m| m == name) {
            mechanisms.push(name.to_string());
        }
    }
    let saved = crate::profile::saved_sweep(dir);
    let has = |m: &str, n: usize| saved.iter().any(|s| s.mechanism == m && s.len == n);
    let missing: Vec<String> = mechanisms
        .iter()
        .filter(|m| lens.iter().any(|&n| !has(m, n)))
        .cloned()
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "profiling one attention call of {} at N = {} for the verdict…",
            missing.join(", "),
            lens.iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
        crate::profile::sweep(&SweepArgs {
            mechanisms: missing,
            lens: lens.to_vec(),
            batch: 1,
            heads: 4,
            head_dim: 64,
            // The estimate is cautious (full at 16K: about 20 GiB estimated, 4.3 GiB measured).
            max_gib: 20.0,
            max_seconds: 120.0,
            repeats: PROFILE_REPEATS,
            model: None,
            params: Vec::new(),
            out: dir.to_path_buf(),
            redraw: false,
        })?;
    }
    let mut unmeasured = Vec::new();
    let profiled = crate::profile::saved_sweep(dir)
        .into_iter()
        .filter(|m| mechanisms.contains(&m.mechanism) && lens.contains(&m.len))
        .map(|m| {
            if let Some(why) = &m.note {
                unmeasured.push(format!("{} at N = {} ({why})", m.mechanism, m.len));
            }
            verdict::Profiled {
                heap: m.heap_peak_bytes.map(|b| b as f64),
                seconds: m.seconds,
                len: m.len,
                mechanism: m.mechanism,
            }
        })
        .collect();
    let mut note = format!(
        "The rows on one attention call come from `attention-cpu.md` beside this \
                    report: forward and backward of one call, B = 1, H = 4, D = 64, f32, each \
                    mechanism with its default parameters (the lengths are far beyond the \
                    arena's, so the arena's scaled-down parameters would not fit them), median \
                    of {PROFILE_REPEATS} passes in a fresh process."
    );
    if !unmeasured.is_empty() {
        note += &format!(" Not measured: {}.", unmeasured.join("; "));
    }
    Ok((profiled, Some(note)))
}
