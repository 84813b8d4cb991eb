//! The training loop: one flat pass over steps, with evaluation, checkpoints, interruption and
//! exact resume.
//!
//! Everything random in a step is a function of (seed, step): the batch ([`train_batch_indices`])
//! and the dropout masks (the device is re-seeded before every step). With the model, the Adam
//! moments and the loop state in the checkpoint, a resumed run takes the very same steps as one
//! that never stopped.

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::module::Module;
use burn::optim::GradientsParams;
use burn::tensor::{Device, Tensor};
use eft_data::{Batch, Dataset, train_batch_indices};
use eft_meter::{StepTimes, Throughput, peak_rss_bytes};
use eft_model::Classifier;
use indicatif::{ProgressBar, ProgressStyle};

use crate::checkpoint::{Checkpoint, LoopState};
use crate::evaluate::{batch_tensors, correct, cross_entropy};
use crate::folder_lock::FolderLock;
use crate::meter::{MeterRecord, matmul_peak};
use crate::metrics::{MetricsKind, MetricsLine, MetricsLog, StepMetrics};
use crate::optimizer::{AdamState, adam_step};
use crate::parallel::Collective;
use crate::params::{export_params, grad_norm, import_params};
use crate::record::{Baseline, EvalPoint, RunRecord, RunStatus};
use crate::seeding::{step_seed, with_seed};
use crate::tensor_parallel::TensorRanks;
use crate::{RunConfig, TrainError, write_atomic};

/// File names inside a run folder.
pub const CHECKPOINT_FILE: &str = "checkpoint.safetensors";
/// The run record.
pub const RECORD_FILE: &str = "record.json";
/// The config, for people to read (the checkpoint holds the authoritative copy).
pub const CONFIG_FILE: &str = "config.toml";

/// How a run is driven, beyond its config.
#[derive(Clone)]
pub struct TrainOptions {
    /// Where tensors live; autodiff is switched on for training.
    pub device: Device,
    /// Show progress on stderr: a bar on a terminal, otherwise a plain line every twentieth of
    /// the run.
    pub progress: bool,
    /// Set (e.g. by Ctrl-C) to stop after the current step, checkpoint, and return.
    pub stop: Arc<AtomicBool>,
    /// Stop once this many steps are done, as if interrupted (for tests and time-boxed sessions).
    pub stop_after: Option<usize>,
    /// The git commit eft was built from, for the record.
    pub git_commit: String,
    /// Makes one gradient of this step (counting from 0) infinite: how tests check that a
    /// low-precision run skips an overflowing step.
    #[doc(hidden)]
    pub overflow_at_step: Option<usize>,
    /// The data-parallel ranks this process trains among ([`crate::parallel`]); one by default.
    pub collective: std::rc::Rc<dyn crate::parallel::Collective>,
}

impl Default for TrainOptions {
    fn default() -> Self {
        Self {
            device: Device::flex(),
            progress: false,
            stop: Arc::new(AtomicBool::new(false)),
            stop_after: None,
            git_commit: "unknown".into(),
            overflow_at_step: None,
            collective: std::rc::Rc::new(crate::parallel::Solo),
        }
    }
}

/// Steps of each session left out of the time statistics (first-call setup, allocator growth).
const STEP_WARMUP: usize = 5;

/// Progress lines a run prints when stderr is not a terminal.
const PLAIN_PROGRESS_LINES: usize = 20;

/// Side of the square matrices whose product measures the device's FLOP/s.
const MATMUL_PEAK_SIZE: usize = 1024;

/// Starts a new run in `run_dir`; refuses a folder that already holds one.
pub fn train(
    config: RunConfig,
    run_dir: &Path,
    options: &TrainOptions,
) -> Result<RunRecord, TrainError> {
    let hash = config_hash(&config);
    let own = RankDir::new(run_dir, options)?;
    let session = start(config, own.path(), options);
    run_agreed(session, hash, options)
}

/// Sets up a new run in `run_dir` and writes its config, up to the first step.
fn start<'a>(
    config: RunConfig,
    run_dir: &Path,
    options: &'a TrainOptions,
) -> Result<Session<'a>, TrainError> {
    config.validate()?;
    let fresh = std::fs::read_dir(run_dir).map_or(true, |mut d| d.next().is_none());
    let lock = FolderLock::acquire(run_dir)?;
    for file in [CHECKPOINT_FILE, RECORD_FILE] {
        if run_dir.join(file).exists() {
            return Err(TrainError::file(
                run_dir,
                format!("this folder already holds a run ({file})"),
                "continue it with --resume, or choose another --name or --out",
            ));
        }
    }
    let session = match Session::new(config, None, run_dir, options, lock) {
        Ok(s) => s,
        Err(e) => {
            // Refused before anything was written (too big, no data): leave no folder behind.
            if fresh {
                let _ = std::fs::remove_dir_all(run_dir);
            }
            return Err(e);
        }
    };
    write_atomic(
        &run_dir.join(CONFIG_FILE),
        session.config.to_toml().as_bytes(),
    )?;
    Ok(session)
}

/// Runs a session once every rank has set up the same config (at once, so a rank that failed
/// leaves none of the others waiting).
fn run_agreed(
    session: Result<Session<'_>, TrainError>,
    hash: u64,
    options: &TrainOptions,
) -> Result<RunRecord, TrainError> {
    let ranks = &*options.collective;
    if ranks.size() == 1 {
        return session?.run();
    }
    let others = crate::parallel::agree(ranks, session.is_err(), hash);
    let session = session?;
    others?;
    session.run()
}

/// A stable hash of the config every rank must share.
fn config_hash(config: &RunConfig) -> u64 {
    use std::hash::{Hash, Hasher};
    let mut h = std::collections::hash_map::DefaultHasher::new();
    config.to_toml().hash(&mut h);
    h.finish()
}

/// Where a rank writes: rank 0 the run's folder, the others a private one they remove at the
/// end (they train the same weights, so only rank 0's files are kept).
struct RankDir {
    path: PathBuf,
    private: bool,
}

impl RankDir {
    fn new(run_dir: &Path, options: &TrainOptions) -> Result<Self, TrainError> {
        let rank = options.collective.rank();
        if rank == 0 {
            return Ok(Self {
                path: run_dir.to_path_buf(),
                private: false,
            });
        }
        // Unique within the process too: ranks as threads of one process (tests) train several
        // runs at once.
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "eft-rank{rank}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            run_dir
                .file_name()
                .map_or("run".into(), |n| n.to_string_lossy())
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).map_err(TrainError::io(&path))?;
        Ok(Self {
            path,
            private: true,
        })
    }

    fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for RankDir {
    fn drop(&mut self) {
        if self.private {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// Continues the run in `run_dir` from its last checkpoint, with the config saved there.
pub fn resume(run_dir: &Path, options: &TrainOptions) -> Result<RunRecord, TrainError> {
    let own = RankDir::new(run_dir, options)?;
    // Every rank starts from rank 0's files; the others continue in their own folder.
    let copied = match own.private {
        false => Ok(()),
        true => [CHECKPOINT_FILE, RECORD_FILE]
            .iter()
            .filter(|f| run_dir.join(f).exists())
            .try_for_each(|f| {
                std::fs::copy(run_dir.join(f), own.path().join(f))
                    .map(|_| ())
                    .map_err(TrainError::io(run_dir.join(f)))
            }),
    };
    let session = copied.and_then(|()| resume_session(own.path(), options));
    let hash = session.as_ref().map_or(0, |s| config_hash(&s.config));
    run_agreed(session, hash, options)
}

/// Loads the run in `run_dir` up to its next step.
fn resume_session<'a>(
    run_dir: &Path,
    options: &'a TrainOptions,
) -> Result<Session<'a>, TrainError> {
    let path = run_dir.join(CHECKPOINT_FILE);
    if !path.exists() {
        return Err(Checkpoint::not_found(&path));
    }
    // Claimed before reading, so that no other process moves the run on in between.
    let lock = FolderLock::acquire(run_dir)?;
    let checkpoint = Checkpoint::load(&path)?;
    let record_path = run_dir.join(RECORD_FILE);
    if let Ok(text) = std::fs::read_to_string(&record_path)
        && let Ok(record) = serde_json::from_str::<RunRecord>(&text)
    {
        match record.status {
            RunStatus::Finished => {
                return Err(TrainError::file(
                    record_path,
                    "this run has already finished",
                    "start a new run, or evaluate this one with `eft eval`",
                ));
            }
            RunStatus::Diverged => {
                return Err(TrainError::file(
                    record_path,
                    format!(
                        "this run diverged at step {} (it would again: training is \
                         deterministic)",
                        record.diverged_at_step.unwrap_or(record.steps_done + 1)
                    ),
                    "start a new run with a lower train.schedule.lr or with \
                     train.max_grad_norm; `eft eval` evaluates its last checkpoint",
                ));
            }
            RunStatus::Running | RunStatus::Interrupted => {}
        }
    }
    let config = checkpoint.config.clone();
    Session::new(config, Some(checkpoint), run_dir, options, lock)
}

/// Builds the task's splits and the model for `config`; what evaluation needs.
pub fn build_data_and_model(
    config: &RunConfig,
    device: &Device,
) -> Result<(Dataset, Classifier), TrainError> {
    config.validate()?;
    let model = build_model(config, device)?;
    Ok((build_data(config)?, model))
}

/// `model` with the weights of the run in folder `source` (`train.init_from`), which must be of
/// the same task and model shape, or the same model with every head where this one keeps
/// `model.kept_heads` (head pruning: the other heads are cut out of the source's weights).
fn init_from(
    model: Classifier,
    source: &str,
    step: Option<usize>,
    config: &RunConfig,
) -> Result<Classifier, TrainError> {
    let bad = |problem: String| TrainError::config("train.init_from", source, problem);
    let path = match step {
        None => Path::new(source).join(CHECKPOINT_FILE),
        Some(k) => Path::new(source).join(snapshot_file(k)),
    };
    if !path.is_file() {
        return Err(bad(match step {
            None => "holds no checkpoint: give the folder of a run of the same task".into(),
            Some(k) => format!(
                "kept no weights at step {k}: train it with --set train.keep_at=[{k}] to rewind \
                 there"
            ),
        }));
    }
    let checkpoint = Checkpoint::load(&path)?;
    let pretrained = matches!(checkpoint.config.task, eft_data::TaskConfig::Mlm(_));
    if pretrained && config.task.name() != "mlm" {
        return transfer_from(model, &checkpoint, &path);
    }
    if checkpoint.config.task.shape() != config.task.shape() {
        return Err(bad(format!(
            "is a run of task {} with other shapes; start from a run of task {} with the same \
             data settings",
            checkpoint.config.task.name(),
            config.task.name()
        )));
    }
    let cuts_heads =
        !config.model.kept_heads.is_empty() && checkpoint.config.model.kept_heads.is_empty();
    if !cuts_heads {
        return load_weights(model, &checkpoint, &path);
    }
    // The source has every head: load it into the unpruned model, then cut the heads out.
    let every_head = RunConfig {
        model: eft_model::ModelConfig {
            kept_heads: vec![],
            ..config.model.clone()
        },
        ..config.clone()
    };
    let device = model.devices()[0].clone();
    let full = model_with_weights(&every_head, &checkpoint, &path, &device)?;
    Ok(full.keep_heads(&config.model)?)
}

/// `model` with the embeddings and encoder of a pretraining run (task `mlm`): the token table
/// loses the rows of tokens this task does not have ([MASK]), a longer position table takes
/// the pretrained rows it shares, a CLS vector and the head start fresh.
fn transfer_from(
    model: Classifier,
    checkpoint: &Checkpoint,
    path: &Path,
) -> Result<Classifier, TrainError> {
    let parts = ["embeddings.", "encoder."];
    let (model, whole, partial) = crate::params::transfer_params(model, &checkpoint.model, &parts)
        .map_err(|problems| {
            TrainError::file(
                path,
                format!(
                    "its encoder does not fit this model: {}",
                    problems.join("; ")
                ),
                "fine-tune with the pretraining run's model fields (width, depth, heads, \
                 mechanism)",
            )
        })?;
    tracing::info!(
        whole,
        partial,
        "initialised the embeddings and encoder from a pretraining run"
    );
    Ok(model)
}

/// The file a run keeps its weights in after `step` steps (`train.keep_at`).
pub fn snapshot_file(step: usize) -> String {
    format!("weights-step{step}.safetensors")
}

/// The model `config` builds, holding the weights of `checkpoint` (read from `path`).
pub fn model_with_weights(
    config: &RunConfig,
    checkpoint: &Checkpoint,
    path: &Path,
    device: &Device,
) -> Result<Classifier, TrainError> {
    load_weights(build_model(config, device)?, checkpoint, path)
}

/// The model for `config`, its parameters drawn under the run's seed.
pub fn build_model(config: &RunConfig, device: &Device) -> Result<Classifier, TrainError> {
    Ok(with_seed(device, config.training_seed(), || {
        let shape = config.task.shape();
        let model = match (&config.train.electra, &config.task) {
            (Some(e), eft_data::TaskConfig::Mlm(mlm)) => {
                let generator = config
                    .model
                    .generator(e.generator, "train.electra.generator")?;
                let discriminator = crate::electra::discriminator_shape(shape);
                config.model.init(discriminator, device)?.with_generator(
                    &generator,
                    config.model.positions_for(shape),
                    shape.n_classes,
                    mlm.mask_rate,
                    device,
                )
            }
            _ => config.model.init(shape, device)?,
        };
        crate::params::materialize(&model);
        Ok::<_, eft_model::ModelError>(model)
    })?)
}

/// The task's splits for `config`, checked against the batch size.
pub fn build_data(config: &RunConfig) -> Result<Dataset, TrainError> {
    let started = std::time::Instant::now();
    let data = config.task.build(config.seed)?;
    tracing::info!(
        task = config.task.name(),
        train = data.train.len(),
        val = data.val.len(),
        test = data.test.len(),
        seconds = started.elapsed().as_secs_f64(),
        "built the task's splits"
    );
    if config.train.batch_size > data.train.len() {
        return Err(TrainError::config(
            "train.batch_size",
            config.train.batch_size,
            format!("exceeds the {} training examples", data.train.len()),
        ));
    }
    Ok(data)
}

/// Loads a checkpoint's weights into `model`, naming what does not fit.
pub fn load_weights(
    model: Classifier,
    checkpoint: &Checkpoint,
    path: &Path,
) -> Result<Classifier, TrainError> {
    import_params(model, &checkpoint.model).map_err(|problems| {
        TrainError::file(
            path,
            format!("weights do not fit the model: {}", problems.join("; ")),
            "the checkpoint belongs to another model config",
        )
    })
}

struct Session<'a> {
    config: RunConfig,
    data: Dataset,
    model: Classifier,
    adam: AdamState,
    /// Pruning masks re-applied after every optimiser step; empty when nothing is pruned.
    masks: BTreeMap<String, crate::params::NamedArray>,
    /// The same masks as tensors, built once.
    mask_tensors: BTreeMap<String, Tensor<1>>,
    /// The distillation teacher, on the plain device (no gradient).
    teacher: Option<Classifier>,
    state: LoopState,
    dir: PathBuf,
    options: &'a TrainOptions,
    /// This session's step durations, heap peak and the device's matmul FLOP/s.
    times: StepTimes,
    peak_heap: Option<u64>,
    matmul_peak: f64,
    /// FLOPs per step by batch shape: the analytic count builds sparsity patterns, which is not
    /// work to repeat every step.
    step_flops: std::collections::HashMap<[usize; 2], f64>,
    /// The run's `metrics.jsonl` and `metrics.csv`.
    metrics: MetricsLog,
    /// This session's seconds in gradient all-reduces, and how many steps made one.
    reduce_seconds: f64,
    reduce_steps: usize,
    /// This rank's part of a tensor-parallel run (`model.tensor_parallel` above 1).
    tensor: Option<TensorRanks>,
    /// This process's claim on `dir`, released when the session ends.
    _lock: FolderLock,
}

impl<'a> Session<'a> {
    fn new(
        config: RunConfig,
        checkpoint: Option<Checkpoint>,
        dir: &Path,
        options: &'a TrainOptions,
        lock: FolderLock,
    ) -> Result<Self, TrainError> {
        let device = options.device.clone().autodiff();
        let ranks = options.collective.size();
        let split = config.model.tensor_parallel > 1;
        if split {
            crate::tensor_parallel::check_run(&config, &options.device)?;
        }
        // Tensor-parallel ranks all train on the whole batch.
        let data_ranks = if split { 1 } else { ranks };
        if !config.train.batch_size.is_multiple_of(data_ranks) {
            return Err(TrainError::config(
                "train.batch_size",
                config.train.batch_size,
                format!(
                    "is the global batch, split evenly among the {ranks} ranks: use a multiple \
                     of {ranks}"
                ),
            ));
        }
        if ranks > 1 && config.model.dropout > 0.0 && !config.train.per_example_dropout {
            return Err(TrainError::config(
                "train.per_example_dropout",
                false,
                format!(
                    "with dropout, {ranks} ranks train the one-process model only if each \
                     example draws its own masks: set it to true (also in a one-process run \
                     to compare with), or model.dropout = 0"
                ),
            ));
        }
        // The model first: its cost decides whether a step fits before the data is drawn
        // (minutes for Path-X).
        preflight(&config)?;
        crate::precision::check_backend(config.train.precision, &options.device)?;
        let model = build_model(&config, &device)?;
        check_memory(&config, &model)?;
        let teacher = config
            .train
            .distill
            .as_ref()
            .map(|d| d.load_teacher(&config, &options.device))
            .transpose()?;
        let data = build_data(&config)?;
        let (model, adam, mut state, masks) = match checkpoint {
            None => {
                let model = match &config.train.init_from {
                    Some(source) => init_from(model, source, config.train.init_step, &config)?,
                    None => model,
                };
                let masks = match &config.train.prune {
                    None => BTreeMap::new(),
                    Some(p) => {
                        let ranked = match &p.from {
                            None => export_params(&model),
                            Some(run) => {
                                let path = Path::new(run).join(CHECKPOINT_FILE);
                                if !path.is_file() {
                                    return Err(TrainError::config(
                                        "train.prune.from",
                                        run,
                                        "holds no checkpoint: give the folder of a trained run \
                                         of this model",
                                    ));
                                }
                                Checkpoint::load(&path)?.model
                            }
                        };
                        crate::prune::magnitude_masks(&ranked, p)
                    }
                };
                let params = export_params(&model);
                if let Some(problem) = masks.iter().find_map(|(name, mask)| {
                    let fits = params.get(name).is_some_and(|a| a.shape == mask.shape);
                    (!fits).then(|| format!("`{name}` does not fit this model"))
                }) {
                    return Err(TrainError::config(
                        "train.prune.from",
                        config
                            .train
                            .prune
                            .as_ref()
                            .and_then(|p| p.from.clone())
                            .unwrap_or_default(),
                        format!("{problem}: rank a run of the same model"),
                    ));
                }
                (
                    model,
                    None,
                    LoopState {
                        loss_scale: config.train.precision.initial_scale(),
                        ..LoopState::default()
                    },
                    masks,
                )
            }
            Some(c) => {
                let path = dir.join(CHECKPOINT_FILE);
                let model = load_weights(model, &c, &path)?;
                let moments = Some((c.adam_steps, c.adam, path));
                (model, moments, c.state, c.masks)
            }
        };
        // A tensor-parallel rank keeps its part of the whole model it built and loaded.
        let (model, tensor) = match split {
            false => (model, None),
            true => {
                let (model, tensor) =
                    TensorRanks::split(model, &config.model, options.collective.clone())?;
                (model, Some(tensor))
            }
        };
        let adam = match adam {
            None => AdamState::default(),
            Some((steps, moments, path)) => {
                let moments = match &tensor {
                    Some(t) => t.cut(moments),
                    None => moments,
                };
                AdamState::import(steps, &moments, &device).ok_or_else(|| {
                    TrainError::file(
                        &path,
                        "optimizer moments are incomplete",
                        "the checkpoint is damaged; restore a backup",
                    )
                })?
            }
        };
        // Fresh weights take the mask here; a checkpoint's already hold it (multiplying again
        // changes nothing).
        let mask_tensors = crate::prune::mask_tensors(&masks, &options.device);
        let model = match masks.is_empty() {
            true => model,
            false => crate::prune::apply_masks(model, &mask_tensors),
        };
        state.sessions += 1;
        std::fs::create_dir_all(dir).map_err(TrainError::io(dir))?;
        let metrics = MetricsLog::open(dir, state.step)?;
        Ok(Self {
            config,
            data,
            model,
            adam,
            mask_tensors,
            masks,
            teacher,
            state,
            dir: dir.to_path_buf(),
            options,
            times: StepTimes::new(STEP_WARMUP),
            peak_heap: None,
            matmul_peak: 0.0,
            step_flops: Default::default(),
            metrics,
            reduce_seconds: 0.0,
            reduce_steps: 0,
            tensor,
            _lock: lock,
        })
    }

    fn run(mut self) -> Result<RunRecord, TrainError> {
        self.matmul_peak = matmul_peak(&self.options.device, MATMUL_PEAK_SIZE);
        let device = self.options.device.clone().autodiff();
        let steps = self.config.train.steps;
        let mut meter = Throughput::resume(self.state.tokens, self.state.seconds);
        let bar = self.progress_bar();
        // Not on a terminal the bar is hidden; a plain line every twentieth of the run keeps a
        // log or a pipe informed without ANSI codes.
        let quiet = self.options.collective.rank() > 0;
        let plain_every = (self.options.progress && !quiet && !std::io::stderr().is_terminal())
            .then(|| steps.div_ceil(PLAIN_PROGRESS_LINES).max(1));
        let t = self.config.train.clone();
        let mut hits = 0usize;
        let mut seen = 0usize;
        let ranks = self.data_ranks();
        let (rank, size) = (ranks.rank(), ranks.size());
        // Several ranks stop together: a request seen by any stops all after the step it rode
        // on with the gradients.
        let mut stop_agreed = false;
        let alone = self.options.collective.size() == 1;
        while self.state.step < steps {
            if (stop_agreed || (alone && self.options.stop.load(Ordering::SeqCst)))
                || self
                    .options
                    .stop_after
                    .is_some_and(|s| self.state.step >= s)
            {
                bar.abandon_with_message("interrupted: checkpoint saved; continue with --resume");
                return self.finish(&meter, RunStatus::Interrupted);
            }
            let step = self.state.step;
            if t.keep_at.contains(&step) {
                self.keep_snapshot()?;
            }
            let started = Instant::now();
            let sums_before = self.tensor.as_ref().map_or(0.0, TensorRanks::sum_seconds);
            let heap_base = eft_meter::reset_peak();
            self.model = self.model.at_step(step);
            let lr = t.schedule.lr(step, steps);
            let indices = train_batch_indices(
                self.data.train.len(),
                t.batch_size,
                self.config.training_seed(),
                step as u64,
            );
            // Each rank trains on its slice of the global batch; every rank knows every slice's
            // shape, so each counts the FLOPs and tokens of the whole step.
            let shards: Vec<Batch> = (0..size)
                .map(|r| {
                    let slice = &indices[crate::parallel::shard(indices.len(), r, size)];
                    Batch::from_examples(slice.iter().map(|&i| &self.data.train[i]))
                })
                .collect();
            let batch = &shards[rank];
            // Each batch row's dropout key: its example's index (and tower, for pairs). A
            // tensor-parallel step always draws this way: it cannot hold the process's generator
            // while it waits for ranks that are threads of this process.
            let row_keys = (t.per_example_dropout || self.tensor.is_some()).then(|| {
                let mine = &indices[crate::parallel::shard(indices.len(), rank, size)];
                let per = batch.batch / mine.len().max(1);
                mine.iter()
                    .flat_map(|&i| (0..per).map(move |t| (i * per + t) as u64))
                    .collect::<Vec<u64>>()
            });
            let tensors = batch_tensors(batch, &device);
            let model = &self.model;
            // A distillation teacher runs forward on every batch: its FLOPs are the step's too.
            let teacher_model = self
                .teacher
                .as_ref()
                .filter(|_| t.distill.as_ref().is_some_and(|d| d.alpha > 0.0));
            for shard in &shards {
                let shape = [shard.batch, shard.len];
                self.state.flops += *self.step_flops.entry(shape).or_insert_with(|| {
                    model.cost(shape[0], shape[1]).step_flops()
                        + teacher_model.map_or(0.0, |m| m.cost(shape[0], shape[1]).forward_flops)
                });
            }
            let graded: usize = shards.iter().map(|b| b.labels.len()).sum();
            // Dropout draws from the device's generator: pin it to (seed, step) for exact resume.
            let precision = (t.precision, self.state.loss_scale.map_or(1.0, |s| s.scale));
            // The teacher sees the batch without gradient or dropout (the plain device).
            let teacher = match (&self.teacher, &t.distill) {
                (Some(teacher), Some(config)) if config.alpha > 0.0 => {
                    let logits = teacher
                        .forward(
                            tensors.tokens.clone().inner(),
                            tensors.padding.clone().inner(),
                        )
                        .logits;
                    Some((Tensor::from_inner(logits), config))
                }
                _ => None,
            };
            let seed = step_seed(self.config.training_seed(), step);
            let step_once = || match &t.electra {
                Some(e) => crate::electra::step_gradients(&self.model, &tensors, e, seed),
                None => {
                    let (output, loss, grads) =
                        step_gradients(&self.model, &tensors, precision, teacher);
                    let logits = tensors.graded(output.logits.clone());
                    (output, logits, loss, grads)
                }
            };
            let (output, logits, loss_value, mut grads) = match (row_keys, &self.tensor) {
                (Some(keys), Some(_)) => eft_model::with_row_keys(keys, seed, step_once),
                (Some(keys), None) => with_seed(&device, seed, || {
                    eft_model::with_row_keys(keys, seed, step_once)
                }),
                (None, _) => with_seed(&device, seed, step_once),
            };
            if self.options.overflow_at_step == Some(step) {
                grads = crate::precision::poisoned(&self.model, grads);
            }
            let mut step_hits = correct(logits.inner(), tensors.labels.clone().inner());
            let mut loss_value = loss_value;
            if size > 1 {
                // The whole batch's mean loss is each slice's weighted by its graded labels.
                let weight = batch.labels.len() as f32 / graded as f32;
                let stop = self.options.stop.load(Ordering::SeqCst);
                let mut extra = [
                    loss_value as f32 * weight,
                    step_hits as f32,
                    f32::from(u8::from(stop)),
                ];
                let reducing = Instant::now();
                grads = crate::parallel::all_reduce_gradients(
                    &self.model,
                    grads,
                    weight,
                    &mut extra,
                    &*ranks,
                    None,
                )?;
                self.reduce_seconds += reducing.elapsed().as_secs_f64();
                self.reduce_steps += 1;
                loss_value = f64::from(extra[0]);
                step_hits = extra[1] as usize;
                stop_agreed = extra[2] > 0.0;
            }
            let mut norm = None;
            if let Some(tensor) = &self.tensor {
                let reducing = Instant::now();
                let stop = self.options.stop.load(Ordering::SeqCst);
                let (reduced, n, agreed) = tensor.reduce_step(&self.model, grads, stop)?;
                // The step's sums inside the layers too, not evaluation's.
                self.reduce_seconds +=
                    reducing.elapsed().as_secs_f64() + (tensor.sum_seconds() - sums_before);
                self.reduce_steps += 1;
                (grads, norm, stop_agreed) = (reduced, Some(n), agreed);
            }
            hits += step_hits;
            seen += graded;
            let norm = norm.unwrap_or_else(|| grad_norm(&self.model, &grads));
            let finite = loss_value.is_finite() && norm.is_finite();
            // f16: an overflowing step is skipped and the loss scale halved.
            let applied = self
                .state
                .loss_scale
                .as_mut()
                .is_none_or(|s| s.update(finite));
            if let Some(s) = self.state.loss_scale
                && s.scale < 1.0
            {
                let why = format!(
                    "f16 gradients overflow at every loss scale (now {})",
                    s.scale
                );
                bar.abandon_with_message(format!("diverged at step {}: {why}", step + 1));
                return self.diverged(&meter, step + 1, &why);
            }
            // Checked before the update, so the weights in memory and on disk stay finite.
            if applied && !finite {
                let why = format!("loss {loss_value}, gradient norm {norm}");
                bar.abandon_with_message(format!("diverged at step {}: {why}", step + 1));
                return self.diverged(&meter, step + 1, &why);
            }
            // The backward pass of a skipped forward FLOP is two more skipped (ModelCost's rule).
            self.state.skipped_flops += 3.0 * output.skipped_flops;
            if applied {
                self.state.extras.add(&output);
                let scale = match t.max_grad_norm {
                    Some(max) if norm > max => max / norm,
                    _ => 1.0,
                };
                self.model = adam_step(
                    self.model,
                    &mut grads,
                    &mut self.adam,
                    &t.optimizer,
                    lr,
                    scale,
                );
                if !self.masks.is_empty() {
                    self.model = crate::prune::apply_masks(self.model, &self.mask_tensors);
                }
            }
            let seconds = started.elapsed().as_secs_f64();
            self.times.add(seconds);
            let step_heap = eft_meter::is_tracking()
                .then(|| eft_meter::peak_allocated_bytes().max(heap_base) as u64);
            if let Some(peak) = step_heap {
                self.peak_heap = Some(self.peak_heap.unwrap_or(0).max(peak));
            }
            self.state.step += 1;
            meter.add(shards.iter().map(Batch::real_tokens).sum::<usize>() as u64);
            // A skipped step's loss and gradient are infinite: they stay out of the averages.
            if applied {
                self.state.loss_sum += loss_value;
                self.state.loss_count += 1;
                self.state.window.add(StepMetrics {
                    loss: loss_value,
                    correct: step_hits,
                    seen: graded,
                    grad_norm: norm,
                    seconds,
                    heap_peak_bytes: step_heap,
                });
            }
            let status = format!(
                "loss {:.3} acc {:.1}% {:.0} tok/s",
                self.state.loss_sum / self.state.loss_count as f64,
                100.0 * hits as f64 / seen.max(1) as f64,
                meter.tokens_per_second()
            );
            if plain_every.is_some_and(|k| self.state.step.is_multiple_of(k)) {
                let done = self.state.step as f64;
                let eta = meter.seconds() / done.max(1.0) * (steps as f64 - done);
                eprintln!(
                    "{} step {}/{steps}  {status}  ETA {eta:.0} s",
                    self.config.name, self.state.step
                );
            }
            bar.set_position(self.state.step as u64);
            bar.set_message(status);
            let done = self.state.step == steps;
            if self.state.step.is_multiple_of(t.log_every) || done {
                let line = self
                    .state
                    .window
                    .take(self.state.step, lr, meter.tokens_per_second());
                self.metrics.append(&line)?;
            }
            if self.state.step.is_multiple_of(t.eval_every) || done {
                let point = self.validate(lr, &meter)?;
                if !quiet {
                    bar.suspend(|| {
                        eprintln!(
                            "step {:>6}  train loss {:.4}  val loss {:.4}  val acc {:.2}%",
                            point.step,
                            point.train_loss,
                            point.val_loss,
                            100.0 * point.val_accuracy
                        )
                    });
                }
                (hits, seen) = (0, 0);
            }
            if self.state.step.is_multiple_of(t.checkpoint_every) && !done {
                self.checkpoint(&meter, RunStatus::Running)?;
            }
        }
        bar.finish_and_clear();
        if self.config.train.keep_at.contains(&self.state.step) {
            self.keep_snapshot()?;
        }
        self.finish(&meter, RunStatus::Finished)
    }

    /// The ranks that split the batches and evaluation sets: the run's, or this process alone
    /// when the ranks split the layers instead.
    fn data_ranks(&self) -> Rc<dyn Collective> {
        match self.tensor {
            Some(_) => Rc::new(crate::parallel::Solo),
            None => self.options.collective.clone(),
        }
    }

    /// Arrays of this rank's model (or its moments) as the whole model's: gathered from all
    /// ranks when the layers are split.
    fn whole(
        &self,
        arrays: BTreeMap<String, crate::params::NamedArray>,
    ) -> Result<BTreeMap<String, crate::params::NamedArray>, TrainError> {
        match &self.tensor {
            Some(t) => t.gather(arrays),
            None => Ok(arrays),
        }
    }

    fn validate(&mut self, lr: f64, meter: &Throughput) -> Result<EvalPoint, TrainError> {
        let result = crate::parallel::evaluate_split(
            &self.model.valid(),
            &self.data.val,
            self.config.train.batch_size,
            &self.options.device,
            &*self.data_ranks(),
        )?;
        let (aux_losses, layer_stats) = self.state.extras.take_means();
        let point = EvalPoint {
            step: self.state.step,
            train_loss: self.state.loss_sum / self.state.loss_count.max(1) as f64,
            val_loss: result.loss,
            val_accuracy: result.accuracy,
            lr,
            seconds: meter.seconds(),
            aux_losses,
            layer_stats,
        };
        self.metrics.append(&MetricsLine::evaluation(
            MetricsKind::Val,
            self.state.step,
            &result,
            Some(lr),
        ))?;
        self.state.evals.push(point.clone());
        self.state.loss_sum = 0.0;
        self.state.loss_count = 0;
        Ok(point)
    }

    /// Writes the weights as they are now beside the checkpoint (`train.keep_at`).
    fn keep_snapshot(&self) -> Result<(), TrainError> {
        Checkpoint {
            config: self.config.clone(),
            state: self.state.clone(),
            adam_steps: self.adam.steps,
            model: self.whole(export_params(&self.model))?,
            adam: BTreeMap::new(),
            masks: self.masks.clone(),
        }
        .save(&self.dir.join(snapshot_file(self.state.step)))
    }

    fn checkpoint(
        &mut self,
        meter: &Throughput,
        status: RunStatus,
    ) -> Result<RunRecord, TrainError> {
        self.state.tokens = meter.tokens();
        self.state.seconds = meter.seconds();
        Checkpoint {
            config: self.config.clone(),
            state: self.state.clone(),
            adam_steps: self.adam.steps,
            model: self.whole(export_params(&self.model))?,
            adam: self.whole(self.adam.export())?,
            masks: self.masks.clone(),
        }
        .save(&self.dir.join(CHECKPOINT_FILE))?;
        tracing::debug!(step = self.state.step, "checkpoint written");
        self.write_record(meter, status, None)
    }

    fn finish(mut self, meter: &Throughput, status: RunStatus) -> Result<RunRecord, TrainError> {
        // Until the test result is written the record says running, so a process killed during
        // the test evaluation leaves a run that --resume finishes (its loop has no steps left).
        let checkpointed = match status {
            RunStatus::Finished => RunStatus::Running,
            other => other,
        };
        let record = self.checkpoint(meter, checkpointed)?;
        if status != RunStatus::Finished {
            return Ok(record);
        }
        let test = crate::parallel::evaluate_split(
            &self.model.valid(),
            &self.data.test,
            self.config.train.batch_size,
            &self.options.device,
            &*self.data_ranks(),
        )?;
        self.metrics.append(&MetricsLine::evaluation(
            MetricsKind::Test,
            self.state.step,
            &test,
            None,
        ))?;
        let exits = self.config.model.exits.rule().map(|rule| {
            crate::evaluate_exiting(
                &self.model.valid(),
                &self.data.test,
                self.config.train.batch_size,
                &self.options.device,
                rule,
            )
        });
        let mut record = self.record(meter, status, Some(test));
        record.exits = exits;
        if matches!(self.config.task, eft_data::TaskConfig::Lm(_)) {
            record.bits_per_byte = Some(crate::record::BitsPerByte {
                test: test.loss / std::f64::consts::LN_2,
                unigram: eft_data::lm::unigram_bits_per_byte(&self.data),
            });
        }
        self.store(record)
    }

    /// Ends a run whose step `at` (counting from 1) had a non-finite loss or gradient: no
    /// checkpoint is written over the last good one, and the record says where it happened.
    fn diverged(self, meter: &Throughput, at: usize, why: &str) -> Result<RunRecord, TrainError> {
        tracing::warn!(step = at, why, "diverged");
        let mut record = self.record(meter, RunStatus::Diverged, None);
        record.diverged_at_step = Some(at);
        self.store(record)
    }

    fn write_record(
        &self,
        meter: &Throughput,
        status: RunStatus,
        test: Option<crate::EvalResult>,
    ) -> Result<RunRecord, TrainError> {
        self.store(self.record(meter, status, test))
    }

    /// Writes `record.json` atomically.
    fn store(&self, record: RunRecord) -> Result<RunRecord, TrainError> {
        let json = serde_json::to_string_pretty(&record).expect("records serialise");
        write_atomic(&self.dir.join(RECORD_FILE), json.as_bytes())?;
        Ok(record)
    }

    /// The run's record as of now.
    fn record(
        &self,
        meter: &Throughput,
        status: RunStatus,
        test: Option<crate::EvalResult>,
    ) -> RunRecord {
        let (class, test_accuracy) = self.data.majority_baseline();
        RunRecord {
            status,
            eft_version: env!("CARGO_PKG_VERSION").to_string(),
            git_commit: self.options.git_commit.clone(),
            config: self.config.clone(),
            steps_done: self.state.step,
            parameters: self
                .tensor
                .as_ref()
                .map_or_else(|| self.model.num_params(), TensorRanks::whole_parameters),
            split_sizes: [
                self.data.train.len(),
                self.data.val.len(),
                self.data.test.len(),
            ],
            evals: self.state.evals.clone(),
            test,
            majority_baseline: Baseline {
                class,
                test_accuracy,
            },
            wall_clock_seconds: meter.seconds(),
            tokens: meter.tokens(),
            tokens_per_second: meter.tokens_per_second(),
            peak_rss_bytes: peak_rss_bytes(),
            sessions: self.state.sessions,
            meter: Some(self.meter_record(meter)),
            diverged_at_step: None,
            exits: None,
            bits_per_byte: None,
            prune: self.config.train.prune.as_ref().map(|asked| {
                let params = export_params(&self.model);
                crate::PruneRecord {
                    asked: asked.clone(),
                    sparsity: crate::prune::sparsity(&params),
                    prunable: params
                        .iter()
                        .filter(|(n, a)| crate::prune::prunable(n, a))
                        .map(|(_, a)| a.values.len())
                        .sum(),
                }
            }),
            parallel: (self.reduce_steps > 0).then(|| crate::ParallelRecord {
                ranks: self.options.collective.size(),
                tensor_parallel: self.config.model.tensor_parallel,
                all_reduce_seconds_per_step: self.reduce_seconds / self.reduce_steps as f64,
            }),
            precision: self.config.train.precision.backend_note().map(|note| {
                crate::record::PrecisionRecord {
                    compute: self.config.train.precision,
                    backend: note.to_string(),
                    loss_scale: self.state.loss_scale,
                }
            }),
        }
    }

    fn meter_record(&self, meter: &Throughput) -> MeterRecord {
        let steps = self.state.step.max(1) as f64;
        let flops_per_step = self.state.flops / steps;
        let step_seconds = self.times.summary();
        let achieved = step_seconds.map(|t| flops_per_step / t.median);
        let price = self.config.meter.usd_per_hour;
        MeterRecord {
            total_flops: self.state.flops,
            flops_per_step,
            executed_flops_per_step: Some((self.state.flops - self.state.skipped_flops) / steps),
            step_seconds,
            achieved_flops_per_second: achieved,
            matmul_peak_flops_per_second: self.matmul_peak,
            fraction_of_peak: achieved.map(|a| a / self.matmul_peak),
            peak_step_heap_bytes: self.peak_heap,
            usd_per_hour: price,
            cost_usd: eft_meter::dollars(meter.seconds(), price),
            usd_per_million_tokens: (meter.tokens_per_second() > 0.0)
                .then(|| eft_meter::dollars_per_million_tokens(meter.tokens_per_second(), price)),
        }
    }

    fn progress_bar(&self) -> ProgressBar {
        let steps = self.config.train.steps as u64;
        if !self.options.progress || self.options.collective.rank() > 0 {
            return ProgressBar::hidden();
        }
        let bar = ProgressBar::new(steps).with_position(self.state.step as u64);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {msg} ETA {eta}")
                .expect("the template is valid")
                .progress_chars("=> "),
        );
        bar.set_prefix(self.config.name.clone());
        bar
    }
}

/// One step's forward pass, task loss and f32 parameter gradients, by the model's backward form
/// (plain, recomputing segments, or rebuilding reversible blocks), in `precision` on a cast copy
/// of the weights with the loss multiplied by `loss_scale` (the gradients divided back).
pub(crate) fn step_gradients(
    model: &Classifier,
    tensors: &crate::BatchTensors,
    (precision, loss_scale): (crate::Precision, f64),
    teacher: Option<(Tensor<2>, &crate::distill::DistillConfig)>,
) -> (eft_model::ModelOutput, f64, GradientsParams) {
    let (tokens, padding) = (tensors.tokens.clone(), tensors.padding.clone());
    // The loss in f32 whatever the compute type, as autocast does.
    let loss_of = |output: &eft_model::ModelOutput| {
        let task = output.task_loss(|logits| {
            let logits = tensors.graded(crate::in_f32(logits));
            match &teacher {
                None => cross_entropy(logits, tensors.labels.clone()),
                Some((teacher, config)) => crate::distill::distillation_loss(
                    logits,
                    tensors.graded(teacher.clone()),
                    tensors.labels.clone(),
                    config,
                ),
            }
        });
        // Learned exits: the depth classifier learns each sequence's oracle depth.
        let depth = output.depth_loss(|logits| {
            crate::cross_entropy_rows(
                tensors.graded(crate::in_f32(logits)),
                tensors.labels.clone(),
            )
        });
        let task = match depth {
            Some(depth) => task + depth,
            None => task,
        };
        let total = output.total_loss(task);
        if loss_scale == 1.0 {
            total
        } else {
            total.mul_scalar(loss_scale)
        }
    };
    let step = crate::step_in_precision(precision, loss_scale, model, |m| {
        m.step_gradients(tokens, padding, loss_of)
    })
    .expect("validation refuses rebuilding a segment-recurrent encoder");
    (step.output, step.loss, step.grads)
}

/// Bytes per parameter while training: the weight, its gradient and Adam's two moments (f32).
const BYTES_PER_TRAINED_PARAMETER: u64 = 16;

/// Refuses, before anything is allocated, a run whose mechanisms do not fit the task's length or
/// whose parameters and data cannot fit in the memory the system has (sizes computed without
/// overflow: allocating them aborted the process at `model.d_model = 2^34`, `task.train = 10^12`,
/// `model.n_layers = 10^6`).
pub fn preflight(config: &RunConfig) -> Result<(), TrainError> {
    let shape = config.task.shape();
    config.model.check_task(shape)?;
    let parameters = config.model.parameters_at_least(shape);
    // Each sequence's token ids, u32 (the examples' other fields come on top).
    let data = config
        .task
        .sequences()
        .saturating_mul(shape.max_len as u64)
        .saturating_mul(4);
    let needed = parameters
        .saturating_mul(BYTES_PER_TRAINED_PARAMETER)
        .saturating_add(data);
    let too_big = |available| TrainError::TooBig { needed, available };
    if needed == u64::MAX {
        // Saturated: more than any machine has, whether or not the available memory is known.
        let available = eft_meter::available_memory_bytes().unwrap_or(u64::MAX);
        return Err(too_big(available));
    }
    eft_meter::check_fits(needed as f64).map_err(|s| too_big(s.available))
}

/// Refuses a run whose training step cannot fit in the memory the system has: the allocator
/// would abort the process mid-step (and an arena with it) otherwise.
fn check_memory(config: &RunConfig, model: &Classifier) -> Result<(), TrainError> {
    let shape = config.task.shape();
    let rows = config.train.batch_size * if shape.paired { 2 } else { 1 };
    let needed = model.cost(rows, shape.max_len).saved_bytes();
    eft_meter::check_fits(needed).map_err(|s| TrainError::OutOfMemory {
        needed: s.needed as u64,
        available: s.available,
    })
}
