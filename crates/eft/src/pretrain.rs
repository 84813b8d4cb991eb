//! `eft pretrain`: `eft train --task mlm` with a choice of objective (masked-byte prediction or
//! ELECTRA) and a step count that can come from a FLOP budget, so objectives compare at equal
//! measured cost.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;
use eft_train::TrainError;
use eft_train::electra::ElectraConfig;

use crate::args::{Backend, TrainArgs, parse_pair};
use crate::commands::{finish, resolve, train_new, train_options};

/// What the pretraining optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Objective {
    /// Masked-byte prediction (BERT's MLM: 15% of the bytes, 80/10/10).
    Mlm,
    /// ELECTRA: a generator fills the masked bytes, the model detects which were replaced.
    Electra,
}

/// Arguments of `eft pretrain`.
#[derive(Debug, Args)]
pub struct PretrainArgs {
    /// The pretraining objective.
    #[arg(long, value_enum, default_value_t = Objective::Mlm)]
    pub objective: Objective,
    /// ELECTRA's generator width as a share of the model's, in (0, 1].
    #[arg(long, default_value_t = 0.25)]
    pub generator: f64,
    /// ELECTRA's weight λ of the replaced-token-detection loss.
    #[arg(long, default_value_t = 50.0)]
    pub rtd_weight: f64,
    /// Spend this many training FLOPs (the meter's count, generator included): the steps are
    /// the budget over one step's FLOPs, evaluated and checkpointed five times.
    #[arg(long, conflicts_with = "steps")]
    pub flops: Option<f64>,
    /// Starting config.
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Training steps (sets train.steps).
    #[arg(long)]
    pub steps: Option<usize>,
    /// Seed of every random choice.
    #[arg(long)]
    pub seed: Option<u64>,
    /// Run name (default: mlm-<attention>-<preset>, or electra-…).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder that holds runs.
    #[arg(long, default_value = "runs", value_name = "DIR")]
    pub out: PathBuf,
    /// Set any config field by its dotted path (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub sets: Vec<(String, String)>,
    /// Print the resolved config and exit without training.
    #[arg(long)]
    pub dry_run: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Resolves the run as `eft train --task mlm` would, sets the objective and the budget, and
/// trains it.
pub fn run(args: PretrainArgs) -> anyhow::Result<ExitCode> {
    let train = TrainArgs {
        task: "mlm".into(),
        preset: args.preset.clone(),
        config: None,
        attention: None,
        params: vec![],
        steps: args.steps,
        seed: args.seed,
        batch_size: None,
        name: args.name.clone(),
        out: args.out.clone(),
        sets: args.sets.clone(),
        resume: None,
        stop_after: None,
        dry_run: args.dry_run,
        list_fields: false,
        no_progress: args.no_progress,
        device: args.device,
    };
    let mut config = resolve(&train)?;
    if args.objective == Objective::Electra {
        config.train.electra = Some(ElectraConfig {
            generator: args.generator,
            rtd_weight: args.rtd_weight,
        });
        if args.name.is_none() {
            config.name = config.name.replacen("mlm", "electra", 1);
        }
    }
    if let Some(budget) = args.flops {
        let steps = steps_for(&config, budget)?;
        config.train.set_steps(steps, steps.div_ceil(5));
    }
    config.validate()?;
    if args.dry_run {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let options = train_options(args.device, args.no_progress, None)?;
    let record = train_new(config, &args.out, args.name.is_some(), &options)?;
    finish(&record)
}

/// The whole steps that `budget` FLOPs pay for, by the model's analytic cost of one step.
fn steps_for(config: &eft_train::RunConfig, budget: f64) -> Result<usize, TrainError> {
    config.validate()?;
    let model = eft_train::build_model(config, &burn::tensor::Device::flex())?;
    let len = config.task.shape().max_len;
    let per_step = model.cost(config.train.batch_size, len).step_flops();
    let steps = budget / per_step;
    if !(steps >= 1.0 && steps.is_finite()) {
        return Err(TrainError::config(
            "--flops",
            budget,
            format!("pays for no step: one step costs {per_step:.3e} FLOPs"),
        ));
    }
    eprintln!(
        "{} FLOPs buy {} steps of {per_step:.3e}",
        budget, steps as usize
    );
    Ok(steps as usize)
}
