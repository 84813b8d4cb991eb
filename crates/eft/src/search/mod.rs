//! `eft search`: architecture search on measured cost. Each candidate is a normal eft run in
//! `<out>/cands/<id>/`, trained for a few proxy steps and measured by the meter; the search's
//! log (`<out>/search.json`, written after every candidate) is all it needs to continue after a
//! kill, since every proposal follows from the seed and the log before it.

mod evolution;
mod pareto;
mod report;
mod space;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};
use eft_train::{RunConfig, RunRecord, RunStatus, write_atomic};
use serde::{Deserialize, Serialize};

pub use evolution::{Entry, Outcome, Strategy};
pub use pareto::{Objective, Point};
pub use report::{compare, load, val_examples, write_outputs};
pub use space::{DEFAULT_SPACE, Space};

use crate::args::SearchArgs;
use crate::interrupt::INTERRUPTED;

/// The search's log file inside its folder.
pub const LOG_FILE: &str = "search.json";

/// Proposals in a row the budgets may reject before the search gives up.
const MAX_REJECTED_IN_A_ROW: usize = 200;

/// Valid candidates drawn to check, before anything trains, that some fit the budgets.
const BUDGET_PROBES: usize = 300;

/// Everything that decides which candidates a search proposes, kept with its log: a rerun
/// with other settings is refused instead of mixing two searches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    /// The task.
    pub task: String,
    /// How candidates are proposed.
    pub strategy: Strategy,
    /// The seed of every draw.
    pub seed: u64,
    /// Objectives besides accuracy, for tournaments and the front.
    pub objectives: Vec<Objective>,
    /// Training steps per candidate.
    pub proxy_steps: usize,
    /// Candidates to evaluate.
    pub budget_evals: usize,
    /// Largest analytic GFLOP per training step a candidate may have.
    pub max_gflop_per_step: Option<f64>,
    /// Largest analytic training memory (MiB) a candidate may need.
    pub max_mib: Option<f64>,
    /// The space file's text.
    pub space: String,
    /// `--set` overrides of the task's quick preset.
    pub sets: Vec<(String, String)>,
}

/// The search's log: its settings, the baseline and every proposal so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Log {
    /// What the search was started with.
    pub settings: Settings,
    /// The task's quick model (`full` attention) trained for the same proxy steps.
    pub baseline: Option<Point>,
    /// Every proposal, in order.
    pub entries: Vec<Entry>,
}

impl Log {
    fn load_or_start(dir: &Path, settings: Settings) -> anyhow::Result<Self> {
        let path = dir.join(LOG_FILE);
        let Ok(text) = std::fs::read_to_string(&path) else {
            return Ok(Self {
                settings,
                baseline: None,
                entries: Vec::new(),
            });
        };
        let log: Log = serde_json::from_str(&text).with_context(|| {
            format!(
                "{} is not an eft search log; restore it or choose another --out",
                path.display()
            )
        })?;
        // A larger or smaller budget continues the same search; anything else is another one.
        let same = Settings {
            budget_evals: settings.budget_evals,
            ..log.settings.clone()
        };
        if same != settings {
            bail!(
                "{} holds a search with other settings; rerun it with the same flags and space, \
                 or choose another --out",
                dir.display()
            );
        }
        Ok(Self { settings, ..log })
    }

    fn save(&self, dir: &Path) -> anyhow::Result<()> {
        let json = serde_json::to_string_pretty(self).expect("a search log serialises");
        write_atomic(&dir.join(LOG_FILE), json.as_bytes())?;
        Ok(())
    }

    /// Candidates evaluated so far (trained, repeated or failed).
    pub fn evaluated(&self) -> usize {
        self.entries.iter().filter(|e| e.evaluated()).count()
    }
}

/// The candidates' common config: the task's quick preset with `sets`, trained `proxy_steps`
/// steps and evaluated once at the end (a warm-up that long shortened to a quarter of it).
fn base_config(
    task: &str,
    sets: &[(String, String)],
    proxy_steps: usize,
) -> anyhow::Result<RunConfig> {
    let preset = eft_train::preset(task, "quick")?;
    let mut base = eft_train::layered(&preset, None, sets)?;
    base.train.set_steps(proxy_steps, proxy_steps);
    // A warm-up as long as the proxy run would never reach the peak rate: a quarter of it.
    match &mut base.train.schedule {
        eft_train::Schedule::Rsqrt { warmup, .. } | eft_train::Schedule::Cosine { warmup, .. }
            if *warmup >= proxy_steps =>
        {
            *warmup = (proxy_steps / 4).max(1);
        }
        _ => {}
    }
    Ok(base)
}

/// The measured point of a finished run.
fn point_of(record: &RunRecord) -> anyhow::Result<Point> {
    let meter = record
        .meter
        .as_ref()
        .context("the run has no meter record")?;
    let acc = record
        .evals
        .last()
        .map(|e| e.val_accuracy)
        .context("the run has no evaluation")?;
    Ok(Point {
        acc,
        flops: meter.flops_per_step,
        latency: 1e3 * meter.step_seconds.as_ref().map_or(f64::NAN, |s| s.median),
        memory: meter.peak_step_heap_bytes.map_or(f64::NAN, |b| b as f64),
        params: record.parameters as f64,
    })
}

/// Why `config` breaks a budget, by its analytic cost, if it does.
fn over_budget(config: &RunConfig, settings: &Settings) -> anyhow::Result<Option<String>> {
    let model = eft_train::build_model(config, &burn::tensor::Device::flex())?;
    let shape = config.task.shape();
    let rows = config.train.batch_size * if shape.paired { 2 } else { 1 };
    let cost = model.cost(rows, shape.max_len);
    let gflop = cost.step_flops() / 1e9;
    if let Some(max) = settings.max_gflop_per_step
        && gflop > max
    {
        return Ok(Some(format!(
            "{gflop:.3} GFLOP/step over --max-gflop-per-step {max}"
        )));
    }
    // Weights, gradients and Adam's moments, and what the step keeps for its backward pass.
    use burn::module::Module;
    let mib = (16.0 * model.num_params() as f64 + cost.saved_bytes()) / f64::from(1 << 20);
    if let Some(max) = settings.max_mib
        && mib > max
    {
        return Ok(Some(format!("{mib:.1} MiB over --max-mib {max}")));
    }
    Ok(None)
}

/// Refuses budgets that none of [`BUDGET_PROBES`] valid candidates meets, before anything
/// trains.
fn check_budgets(space: &Space, base: &RunConfig, settings: &Settings) -> anyhow::Result<()> {
    if settings.max_gflop_per_step.is_none() && settings.max_mib.is_none() {
        return Ok(());
    }
    use rand::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(settings.seed);
    let mut last = None;
    for _ in 0..BUDGET_PROBES {
        let Some(genome) = space.sample(base, &mut rng) else {
            break;
        };
        match over_budget(&space.config(base, &genome)?, settings)? {
            None => return Ok(()),
            Some(why) => last = Some(why),
        }
    }
    bail!(
        "no candidate of {BUDGET_PROBES} drawn meets the budgets (the last: {}); raise \
         --max-gflop-per-step or --max-mib, or give a space with smaller models",
        last.unwrap_or_else(|| "none valid".into())
    )
}

/// Everything a search needs before it trains, checked.
struct Setup {
    settings: Settings,
    base: RunConfig,
    space: Space,
}

/// Reads and checks the arguments and the space; every problem is bad input (exit 2), found
/// before anything trains.
fn setup(args: &SearchArgs) -> anyhow::Result<Setup> {
    let space_text = match &args.space {
        Some(path) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the search space {}", path.display()))?,
        None => DEFAULT_SPACE.to_string(),
    };
    let objectives = Objective::parse_list(&args.objectives)?;
    let strategy = match args.strategy.as_str() {
        "evolution" => Strategy::Evolution {
            population: args.population,
            sample: args.sample,
        },
        "random" => Strategy::Random,
        other => bail!("--strategy {other}: choose evolution or random"),
    };
    if args.sample == 0 || args.sample > args.population {
        bail!(
            "--sample {} must be between 1 and --population {}",
            args.sample,
            args.population
        );
    }
    if args.budget_evals == 0 || args.proxy_steps == 0 {
        bail!("--budget-evals and --proxy-steps must be at least 1");
    }
    let settings = Settings {
        task: args.task.clone(),
        strategy,
        seed: args.seed,
        objectives: objectives.clone(),
        proxy_steps: args.proxy_steps,
        budget_evals: args.budget_evals,
        max_gflop_per_step: args.max_gflop_per_step,
        max_mib: args.max_mib,
        space: space_text.clone(),
        sets: args.sets.clone(),
    };
    let base = base_config(&args.task, &settings.sets, args.proxy_steps)?;
    let space = Space::parse(&space_text, &base).with_context(|| match &args.space {
        Some(p) => format!("search space {}", p.display()),
        None => "the default search space".into(),
    })?;
    check_budgets(&space, &base, &settings)?;
    Ok(Setup {
        settings,
        base,
        space,
    })
}

/// Runs the command.
pub fn run(args: SearchArgs) -> anyhow::Result<ExitCode> {
    let Setup {
        settings,
        base,
        space,
    } = setup(&args).map_err(|e| crate::attn::BadInput(format!("{e:#}")))?;
    let (strategy, objectives) = (settings.strategy, settings.objectives.clone());
    let out = args
        .out
        .clone()
        .unwrap_or_else(|| PathBuf::from(format!("searches/{}-{}", args.task, args.strategy)));
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let _lock = eft_train::FolderLock::acquire(&out)?;
    let mut log = Log::load_or_start(&out, settings.clone())
        .map_err(|e| crate::attn::BadInput(format!("{e:#}")))?;
    crate::fetch::fetch_data(std::slice::from_ref(&args.task))?;
    let options = crate::commands::train_options(args.device, true, None)?;
    eprintln!(
        "search: {} on {} ({} candidates of {} steps) → {}",
        args.strategy,
        args.task,
        args.budget_evals,
        args.proxy_steps,
        out.display()
    );
    if log.baseline.is_none() {
        let mut config = base.clone();
        config.name = "baseline".into();
        let record = crate::arena::train_or_keep(&out.join("baseline"), &config, &options)?;
        if record.status != RunStatus::Finished {
            return Ok(interrupted());
        }
        log.baseline = Some(point_of(&record)?);
        log.save(&out)?;
    }
    let mut rejected_in_a_row = 0;
    while log.evaluated() < settings.budget_evals {
        let id = log.entries.len();
        let Some((genome, parent)) = evolution::propose(
            strategy,
            &space,
            &base,
            &log.entries,
            settings.seed,
            &objectives,
        ) else {
            bail!("the space offers no valid candidate: widen its choices");
        };
        let mut config = space.config(&base, &genome)?;
        config.name = format!("cand-{id:03}");
        let earlier = log
            .entries
            .iter()
            .find(|e| e.genome == genome && e.point().is_some());
        let outcome = if let Some(e) = earlier {
            Outcome::Repeat {
                of: e.id,
                point: e.point().expect("found with a point"),
            }
        } else if let Some(why) = over_budget(&config, &settings)? {
            Outcome::Rejected { why }
        } else {
            eprintln!(
                "[{}/{}] #{id} {}",
                log.evaluated() + 1,
                settings.budget_evals,
                space::describe(&genome)
            );
            match crate::arena::train_or_keep(
                &out.join("cands").join(format!("{id:03}")),
                &config,
                &options,
            ) {
                Ok(r) if r.status == RunStatus::Finished => Outcome::Trained {
                    point: point_of(&r)?,
                    test_accuracy: r.test.map_or(f64::NAN, |t| t.accuracy),
                    seconds: r.wall_clock_seconds,
                },
                Ok(r) if r.status == RunStatus::Diverged => Outcome::Failed {
                    why: "diverged".into(),
                },
                Ok(_) => return Ok(interrupted()),
                Err(e) => Outcome::Failed {
                    why: format!("{e:#}"),
                },
            }
        };
        rejected_in_a_row = match outcome {
            Outcome::Rejected { .. } => rejected_in_a_row + 1,
            _ => 0,
        };
        if rejected_in_a_row > MAX_REJECTED_IN_A_ROW {
            bail!(
                "the budgets rejected {MAX_REJECTED_IN_A_ROW} proposals in a row; raise them or \
                 give a space with smaller models"
            );
        }
        log.entries.push(Entry {
            id,
            genome,
            parent,
            outcome,
        });
        log.save(&out)?;
    }
    let md = write_outputs(&out, &log)?;
    println!("{md}");
    eprintln!("wrote {}", out.join("front.{md,csv,json,svg}").display());
    Ok(ExitCode::SUCCESS)
}

fn interrupted() -> ExitCode {
    eprintln!("search interrupted; rerun the same command to continue");
    ExitCode::from(INTERRUPTED)
}
