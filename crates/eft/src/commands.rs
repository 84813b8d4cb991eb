//! What each subcommand does: resolve its arguments, call the library, report.

use std::process::ExitCode;

use anyhow::Context;

use eft_train::{
    CHECKPOINT_FILE, Checkpoint, RunStatus, TrainError, TrainOptions, build_data_and_model,
    evaluate, layered_with, load_weights, preset,
};

use crate::args::{Cli, Command, EvalArgs, GenerateArgs, PruneArgs, Split, TrainArgs};
use crate::device::device;
use crate::interrupt::{INTERRUPTED, stop_on_ctrl_c};

/// Runs the parsed command.
pub fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Arena(args) => crate::arena::run(args),
        Command::Search(args) => crate::search::run(args),
        Command::Data(crate::args::DataCommand::Fetch { tasks }) => {
            crate::fetch::fetch_data(&tasks)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Data(crate::args::DataCommand::Pathfinder(args)) => {
            for path in crate::plot::pathfinder_pngs(&args)? {
                println!("{}", path.display());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Train(args) => train(*args),
        Command::Eval(args) => eval(args),
        Command::Export(args) => crate::export::run(args),
        Command::Generate(args) => generate(args),
        Command::Prune(args) => prune(args),
        Command::Pretrain(args) => crate::pretrain::run(*args),
        Command::Context(args) => crate::context::run(args),
        Command::Attn(args) => crate::attn::run(args),
        Command::Profile(what) => crate::profile::run(what),
        Command::Report(args) => crate::report::run(args),
    }
}

/// Exit code of a run that diverged (a non-finite loss or gradient).
pub const DIVERGED: u8 = 3;

/// 2 for a bad config or input file, 1 for anything else.
pub fn exit_code(e: &anyhow::Error) -> u8 {
    if e.downcast_ref::<eft_attention::AttentionError>().is_some()
        || e.downcast_ref::<crate::attn::BadInput>().is_some()
        || matches!(
            e.downcast_ref::<eft_data::DataError>(),
            Some(eft_data::DataError::Config { .. })
        )
    {
        return 2;
    }
    match e.downcast_ref::<TrainError>() {
        Some(TrainError::Io { .. }) | None => 1,
        Some(_) => 2,
    }
}

fn train(args: TrainArgs) -> anyhow::Result<ExitCode> {
    // A dry run computes nothing: it needs neither a device nor a Ctrl-C handler.
    let config = args.resume.is_none().then(|| resolve(&args)).transpose()?;
    if let Some(config) = &config
        && args.list_fields
    {
        print!("{}", list_fields(config));
        return Ok(ExitCode::SUCCESS);
    }
    if let Some(config) = &config
        && args.dry_run
    {
        print!("{}", config.to_toml());
        return Ok(ExitCode::SUCCESS);
    }
    let options = train_options(args.device, args.no_progress, args.stop_after)?;
    let record = match (config, &args.resume) {
        (None, Some(dir)) => eft_train::resume(dir, &options)?,
        (None, None) => unreachable!("a config is resolved unless resuming"),
        (Some(config), _) => train_new(config, &args.out, args.name.is_some(), &options)?,
    };
    finish(&record)
}

/// Trains a new run of `config` under `out`; an unnamed run takes a free name there.
/// How a training command runs: on `backend`, with or without a progress bar, stopped by
/// Ctrl-C (with a checkpoint) or after `stop_after` steps.
pub(crate) fn train_options(
    backend: crate::args::Backend,
    no_progress: bool,
    stop_after: Option<usize>,
) -> anyhow::Result<TrainOptions> {
    Ok(TrainOptions {
        device: device(backend)?,
        progress: !no_progress,
        stop: stop_on_ctrl_c()?,
        stop_after,
        git_commit: env!("EFT_GIT_COMMIT").to_string(),
        collective: crate::ranks::collective(),
        ..TrainOptions::default()
    })
}

pub(crate) fn train_new(
    mut config: eft_train::RunConfig,
    out: &std::path::Path,
    named: bool,
    options: &TrainOptions,
) -> anyhow::Result<eft_train::RunRecord> {
    // Before a folder or a progress line exists.
    eft_train::preflight(&config)?;
    let ranks = options.collective.size();
    if !named && ranks > 1 {
        // Each rank would pick a free name while rank 0 creates it, and they would differ.
        return Err(TrainError::config(
            "--name",
            "(none)",
            format!("{ranks} ranks must be told the run's name: give --name"),
        )
        .into());
    }
    if !named {
        config.name = free_name(out, &config.name)?;
    }
    let dir = out.join(&config.name);
    if crate::ranks::reports() {
        let on = match ranks {
            1 => String::new(),
            k => format!(" on {k} ranks"),
        };
        eprintln!("training {} → {}{on}", config.name, dir.display());
    }
    Ok(eft_train::train(config, &dir, options)?)
}

/// Prints a run's record; the exit code says how it ended.
pub(crate) fn finish(record: &eft_train::RunRecord) -> anyhow::Result<ExitCode> {
    if crate::ranks::reports() {
        crate::report::print_record(record);
    }
    Ok(match record.status {
        RunStatus::Finished => ExitCode::SUCCESS,
        RunStatus::Diverged => ExitCode::from(DIVERGED),
        RunStatus::Running | RunStatus::Interrupted => ExitCode::from(INTERRUPTED),
    })
}

/// The table `--list-fields` prints: the resolved config's fields, then each feed-forward kind's
/// and each mechanism's.
fn list_fields(config: &eft_train::RunConfig) -> String {
    use std::fmt::Write;
    let row = |f: &eft_train::fields::Field| format!("{:<36} {:<9} {}\n", f.path, f.kind, f.value);
    let mut out = format!(
        "Fields of `{}` (set any with --set PATH=VALUE; another task's with --task):\n\n",
        config.name
    );
    out.extend(eft_train::fields::fields(config).iter().map(row));
    let sections = [
        (
            "Feed-forward kinds",
            "model.feed_forward",
            eft_train::fields::feed_forward_fields(),
        ),
        (
            "Depth kinds",
            "model.depth",
            eft_train::fields::depth_fields(),
        ),
        (
            "Exit kinds",
            "model.exits",
            eft_train::fields::exits_fields(),
        ),
        (
            "Attention parameters",
            "model.attention",
            eft_train::fields::mechanism_fields(),
        ),
    ];
    for (title, field, kinds) in sections {
        let _ = writeln!(
            out,
            "\n{title} and their defaults ({field}.PATH with kind = NAME):"
        );
        for (name, fields) in kinds {
            let _ = writeln!(out, "\n{name}:");
            if fields.is_empty() {
                out.push_str("  (no parameters)\n");
            }
            out.extend(fields.iter().map(|f| format!("  {}", row(f))));
        }
    }
    out
}

/// `name`, or `name-2`, `name-3`, … : the first that names no existing folder under `out`, created
/// here, so repeating a command without `--name` starts a new run instead of failing.
fn free_name(out: &std::path::Path, name: &str) -> anyhow::Result<String> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    for i in 1.. {
        let candidate = match i {
            1 => name.to_string(),
            _ => format!("{name}-{i}"),
        };
        // Creating the folder claims the name: two runs started together never share one.
        match std::fs::create_dir(out.join(&candidate)) {
            Ok(()) => return Ok(candidate),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e).with_context(|| format!("creating {}", out.display())),
        }
    }
    unreachable!("some suffix is free")
}

/// Preset → --config file → named flags → --set, then validation.
pub(crate) fn resolve(args: &TrainArgs) -> anyhow::Result<eft_train::RunConfig> {
    let mut base = preset(&args.task, &args.preset)?;
    let default_name = |c: &eft_train::RunConfig| {
        format!(
            "{}-{}-{}",
            c.task.name(),
            c.model.attention.name(),
            args.preset
        )
    };
    base.name = default_name(&base);
    // Named flags as typed values; --param and --set stay text, read as TOML by the layering.
    let mut values: Vec<(String, toml::Value)> = Vec::new();
    let mut overrides: Vec<(String, String)> = Vec::new();
    match &args.attention {
        Some(name) => values.push((
            "model.attention".into(),
            eft_attention::AttentionConfig::named_table(name, &args.params)?,
        )),
        None => overrides.extend(
            args.params
                .iter()
                .map(|(k, v)| (format!("model.attention.{k}"), v.clone())),
        ),
    }
    let count = |n: usize| toml::Value::Integer(n as i64);
    let flags = [
        ("train.steps", args.steps.map(count)),
        ("seed", args.seed.map(|s| toml::Value::Integer(s as i64))),
        ("train.batch_size", args.batch_size.map(count)),
        ("name", args.name.clone().map(toml::Value::String)),
    ];
    values.extend(
        flags
            .into_iter()
            .filter_map(|(k, v)| Some((k.to_string(), v?))),
    );
    overrides.extend(args.sets.iter().cloned());
    let mut config = layered_with(&base, args.config.as_deref(), &values, &overrides)?;
    // Unless a name was given, the run is named for what it resolved to, wherever the mechanism
    // was chosen (--attention, --config or --set).
    if config.name == base.name {
        config.name = default_name(&config);
    }
    Ok(config)
}

/// `eft prune`: a new run that starts from RUN's weights, prunes them by magnitude and
/// fine-tunes (or only evaluates) with the mask held; RUN is not modified.
fn prune(args: PruneArgs) -> anyhow::Result<ExitCode> {
    if args.lottery {
        return lottery(args);
    }
    if let Some(share) = args.heads {
        return prune_heads(args, share);
    }
    let sparsity = args.sparsity.unwrap_or_default();
    let path = args.run.join(CHECKPOINT_FILE);
    let source = Checkpoint::load(&path)?;
    let scope = match args.scope {
        crate::args::PruneScopeArg::Global => "global",
        crate::args::PruneScopeArg::Layer => "layer",
    };
    let name = format!("{}-prune{}", source.config.name, (sparsity * 100.0).round());
    let prune = format!("{{ sparsity = {sparsity:?}, scope = {scope:?} }}");
    train_pruned(&args, &source, name, ("train.prune", prune))
}

/// A new run that starts from RUN's weights with one pruning field set and fine-tunes for
/// --finetune steps (0: only evaluates), named --name or `name`.
fn train_pruned(
    args: &PruneArgs,
    source: &Checkpoint,
    name: String,
    (field, value): (&str, String),
) -> anyhow::Result<ExitCode> {
    let mut sets = vec![
        ("name".to_string(), args.name.clone().unwrap_or(name)),
        (
            "train.init_from".to_string(),
            format!("{:?}", args.run.display().to_string()),
        ),
        (field.to_string(), value),
        ("train.steps".to_string(), args.finetune.to_string()),
    ];
    sets.extend(args.set.iter().cloned());
    let config = eft_train::layered(&source.config, None, &sets)?;
    let (out, options) = pruned_runs(args)?;
    let record = train_new(config, &out, args.name.is_some(), &options)?;
    finish(&record)
}

/// `eft prune --heads`: ranks RUN's heads by importance, then a new run with the least
/// important share removed from the weights, fine-tuned for --finetune steps (0: evaluated).
fn prune_heads(args: PruneArgs, share: f64) -> anyhow::Result<ExitCode> {
    if !(0.0..1.0).contains(&share) {
        return Err(TrainError::config(
            "--heads",
            share,
            "must be in [0, 1): the share of attention heads removed (0.5 removes half)",
        )
        .into());
    }
    let path = args.run.join(CHECKPOINT_FILE);
    let source = Checkpoint::load(&path)?;
    let model = &source.config.model;
    if !model.kept_heads.is_empty() {
        return Err(TrainError::config(
            "--heads",
            share,
            format!(
                "{} already lost heads (model.kept_heads); prune the run it came from with a \
                 larger --heads instead",
                args.run.display()
            ),
        )
        .into());
    }
    let layers = model.n_layers;
    let total: usize = (0..layers).map(|l| model.heads_at(l)).sum();
    let remove = (share * total as f64).round() as usize;
    let most = total - layers;
    if remove > most {
        return Err(TrainError::config(
            "--heads",
            share,
            format!(
                "removes {remove} of the {total} heads, but each of the {} layers keeps one: \
                 remove at most {most} (--heads {:.3})",
                layers,
                most as f64 / total as f64
            ),
        )
        .into());
    }
    let importance = eft_train::head_importance::head_importance(
        &source,
        &path,
        args.importance_batches,
        &device(args.device)?,
    )?;
    let kept = eft_train::head_importance::heads_to_keep(&importance, remove);
    println!("| layer | head | importance (normalised) | kept |\n|---:|---:|---:|:---:|");
    let normalised = eft_train::head_importance::normalised(&importance);
    for (layer, scores) in normalised.iter().enumerate() {
        for (head, score) in scores.iter().enumerate() {
            let mark = if kept[layer].contains(&head) {
                "yes"
            } else {
                ""
            };
            println!("| {layer} | {head} | {score:.3} | {mark} |");
        }
    }
    let name = format!("{}-heads{}", source.config.name, (share * 100.0).round());
    train_pruned(
        &args,
        &source,
        name,
        ("model.kept_heads", format!("{kept:?}")),
    )
}

/// Where `eft prune` writes its runs (--out, else beside RUN) and how they train.
fn pruned_runs(args: &PruneArgs) -> anyhow::Result<(std::path::PathBuf, TrainOptions)> {
    let out = args
        .out
        .clone()
        .or_else(|| args.run.parent().map(std::path::Path::to_path_buf))
        .unwrap_or_default();
    let options = TrainOptions {
        device: device(args.device)?,
        progress: !args.no_progress,
        stop: stop_on_ctrl_c()?,
        git_commit: env!("EFT_GIT_COMMIT").to_string(),
        ..TrainOptions::default()
    };
    Ok((out, options))
}

/// `eft prune --lottery`: per round r, sparsity 1 − (1 − rate)^r ranked by the previous round's
/// trained ticket (round 1: RUN), a ticket retrained from RUN's weights at step --rewind and a
/// control with the same mask from a fresh initialisation (the next seed), each for RUN's steps
/// less the rewind. Finished rounds are kept, so rerunning continues.
fn lottery(args: PruneArgs) -> anyhow::Result<ExitCode> {
    if !(args.rate > 0.0 && args.rate < 1.0) {
        return Err(TrainError::config(
            "--rate",
            args.rate,
            "must be in (0, 1): the share of the remaining weights each round prunes",
        )
        .into());
    }
    let source = Checkpoint::load(&args.run.join(CHECKPOINT_FILE))?;
    if !args
        .run
        .join(eft_train::snapshot_file(args.rewind))
        .is_file()
    {
        return Err(TrainError::config(
            "--rewind",
            args.rewind,
            format!(
                "{} kept no weights at step {k}: train it with --set train.keep_at=[{k}]",
                args.run.display(),
                k = args.rewind
            ),
        )
        .into());
    }
    let steps = source.config.train.steps.saturating_sub(args.rewind).max(1);
    let base = args
        .name
        .clone()
        .unwrap_or_else(|| format!("{}-lottery", source.config.name));
    let (out, options) = pruned_runs(&args)?;
    let quoted = |p: &std::path::Path| format!("{:?}", p.display().to_string());
    let mut ranked = args.run.clone();
    println!("| round | sparsity | ticket | control (fresh init) |\n|---:|---:|---:|---:|");
    for round in 1..=args.rounds {
        let sparsity = 1.0 - (1.0 - args.rate).powi(round as i32);
        let prune = format!(
            "{{ sparsity = {sparsity:?}, scope = \"global\", from = {} }}",
            quoted(&ranked)
        );
        let mut accuracy = Vec::new();
        for (kind, rewind) in [("ticket", true), ("control", false)] {
            let name = format!("{base}-r{round}-{kind}");
            let dir = out.join(&name);
            let finished =
                eft_train::RunRecord::read(&dir).filter(|r| r.status == RunStatus::Finished);
            let record = match finished {
                Some(r) => r,
                None if dir.join(CHECKPOINT_FILE).is_file() => eft_train::resume(&dir, &options)?,
                None => {
                    let mut sets = vec![
                        ("name".to_string(), name.clone()),
                        ("train.prune".to_string(), prune.clone()),
                        ("train.steps".to_string(), steps.to_string()),
                    ];
                    if rewind {
                        sets.push(("train.init_from".into(), quoted(&args.run)));
                        sets.push(("train.init_step".into(), args.rewind.to_string()));
                    } else {
                        sets.push(("seed".into(), (source.config.seed + 1).to_string()));
                    }
                    sets.extend(args.set.iter().cloned());
                    let config = eft_train::layered(&source.config, None, &sets)?;
                    train_new(config, &out, true, &options)?
                }
            };
            accuracy.push(record.test.map_or(f64::NAN, |t| 100.0 * t.accuracy));
        }
        println!(
            "| {round} | {:.1}% | {:.1}% | {:.1}% |",
            100.0 * sparsity,
            accuracy[0],
            accuracy[1]
        );
        ranked = out.join(format!("{base}-r{round}-ticket"));
    }
    Ok(ExitCode::SUCCESS)
}

fn generate(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let path = args.run.join(CHECKPOINT_FILE);
    let checkpoint = Checkpoint::load(&path)?;
    let sampling = eft_train::Sampling {
        temperature: args.temperature,
        top_k: args.top_k,
        seed: args.seed,
    };
    sampling.validate()?;
    eft_train::check_generation(&checkpoint.config, args.prompt.as_bytes())?;
    let device = device(args.device)?;
    let model = eft_train::build_model(&checkpoint.config, &device)?;
    let model = load_weights(model, &checkpoint, &path)?;
    let window = checkpoint.config.task.shape().max_len;
    eprintln!("decoding: {}", model.decoder(window)?.describe());
    let bytes = eft_train::generate(
        &model,
        args.prompt.as_bytes(),
        args.tokens,
        window,
        sampling,
        &device,
    )?;
    println!("{}{}", args.prompt, String::from_utf8_lossy(&bytes));
    Ok(ExitCode::SUCCESS)
}

fn eval(args: EvalArgs) -> anyhow::Result<ExitCode> {
    let path = args.run.join(CHECKPOINT_FILE);
    let checkpoint = Checkpoint::load(&path)?;
    if !args.exit_threshold.is_empty() {
        crate::exits::check(&checkpoint, &args.exit_threshold)?;
    }
    let device = device(args.device)?;
    let (data, model) = build_data_and_model(&checkpoint.config, &device)?;
    let model = load_weights(model, &checkpoint, &path)?;
    let (split, examples) = match args.split {
        Split::Train => ("train", &data.train),
        Split::Val => ("val", &data.val),
        Split::Test => ("test", &data.test),
    };
    if !args.exit_threshold.is_empty() {
        let table = crate::exits::sweep(
            &args.run,
            &checkpoint.config.name,
            &model,
            examples,
            checkpoint.config.train.batch_size,
            &device,
            &args.exit_threshold,
        )?;
        println!(
            "{} {split} after {} steps, early exit:\n\n{table}\nwrote {}",
            checkpoint.config.name,
            checkpoint.state.step,
            args.run.join("exits.{md,json,png,svg}").display()
        );
        return Ok(ExitCode::SUCCESS);
    }
    let result = evaluate(
        &model,
        examples,
        checkpoint.config.train.batch_size,
        &device,
    );
    println!(
        "{} {} after {} steps: accuracy {:.2}%, loss {:.4} ({} examples)",
        checkpoint.config.name,
        split,
        checkpoint.state.step,
        100.0 * result.accuracy,
        result.loss,
        result.examples
    );
    Ok(ExitCode::SUCCESS)
}
