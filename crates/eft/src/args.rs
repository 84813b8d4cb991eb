//! Command-line arguments, as clap parses them.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

/// eft: efficient transformers, trained and measured side by side.
#[derive(Debug, Parser)]
#[command(name = "eft", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Train and evaluate mechanisms side by side on the arena's tasks; writes one run per
    /// (task, mechanism) cell under <out>/<name>/ and the comparison in <out>/<name>/report.md.
    ///
    /// Rerunning skips finished cells and resumes an interrupted one; a cell that fails is
    /// recorded and the others still run.
    Arena(ArenaArgs),
    /// Architecture search on measured cost: aging evolution (or random search) over a space
    /// of mechanisms, sizes and techniques, each candidate a short eft run measured by the meter;
    /// writes every candidate under <out>/cands/ and the Pareto front of accuracy against cost
    /// to <out>/front.{md,csv,json,svg}. Rerunning continues a stopped search.
    Search(SearchArgs),
    /// Train a model on a task; writes <out>/<name>/{config.toml, checkpoint.safetensors, record.json}.
    ///
    /// The config is built in layers: the preset, then --config FILE, then the flags below, then
    /// every --set. Ctrl-C stops after the current step with a checkpoint; --resume continues it
    /// to the same final weights as an uninterrupted run.
    Train(Box<TrainArgs>),
    /// Evaluate a trained run's checkpoint on one of its task's splits.
    Eval(EvalArgs),
    /// Write a run's model weights alone for another framework (PyTorch: `[out, in]` Linear
    /// weights, LayerNorm `weight`/`bias`), e.g. `eft export runs/x --format pytorch x.safetensors`.
    Export(ExportArgs),
    /// Continue a prompt with a trained language model (a run of task lm), e.g.
    /// `eft generate runs/lm-quick --prompt "This movie" --tokens 200`.
    Generate(GenerateArgs),
    /// Effective context of trained language models: bits per byte against how many earlier
    /// bytes each sees; writes <out>/effective-context.{json,md} and its chart, e.g.
    /// `eft context runs/lm-full runs/lm-xl --out bench/results`.
    Context(ContextArgs),
    /// Prune a trained run by weight magnitude into a new run: zero the smallest share of the
    /// dense layers' weights, then fine-tune with them held at zero (or only evaluate), e.g.
    /// `eft prune runs/listops-full-quick --sparsity 0.8 --finetune 300`. RUN is not modified.
    Prune(PruneArgs),
    /// Pretrain an encoder on masked bytes of IMDb's training reviews and the Brown corpus (task
    /// mlm), to fine-tune with `train.init_from`: `--objective mlm` predicts the masked bytes,
    /// `electra` trains ELECTRA's discriminator beside a small generator; `--flops` spends a
    /// budget of the meter's FLOPs, e.g. `eft pretrain --objective electra --flops 1.5e13`.
    Pretrain(Box<crate::pretrain::PretrainArgs>),
    /// Run one attention mechanism on tensors from a safetensors file (conformance checks).
    ///
    /// IN holds `q`, `k`, `v` (f32, B×H×N×D) and optionally `mask` (B×N, 1 = real token,
    /// 0 = padding) and `grad_out` (B×H×N×D). OUT receives `out` and, when `grad_out` was given,
    /// `dq`, `dk`, `dv`.
    Attn(AttnArgs),
    /// Fetch the data tasks need from packages (pinned, verified, unpacked into $EFT_DATA or data/).
    #[command(subcommand)]
    Data(DataCommand),
    /// Print a Markdown table of finished runs from their record.json files.
    Report(ReportArgs),
    /// Measure mechanisms: time and peak memory of forward+backward passes.
    #[command(subcommand)]
    Profile(ProfileCommand),
}

/// What `eft data` does.
#[derive(Debug, Subcommand)]
pub enum DataCommand {
    /// Fetch the packages of the named tasks (default: all that need any); already fetched and
    /// verified data is kept, a corrupt or partial download is fetched again.
    Fetch {
        /// Tasks, e.g. `image`.
        tasks: Vec<String>,
    },
    /// Draw Pathfinder images and write them as PNG files a person can look at.
    Pathfinder(PathfinderArgs),
}

/// Arguments of `eft data pathfinder`.
#[derive(Debug, Args)]
pub struct PathfinderArgs {
    /// Folder to write `pathfinder-<i>-<label>.png` into (created if missing).
    #[arg(long)]
    pub png: PathBuf,
    /// Images to draw; labels alternate connected / not connected.
    #[arg(long, default_value_t = 8)]
    pub count: usize,
    /// Image side: 32 (Pathfinder) or 128 (Path-X); any 8–256 works.
    #[arg(long, default_value_t = 32)]
    pub size: usize,
    /// Paddles per target snake: 6, 9 or 14.
    #[arg(long, default_value_t = 14)]
    pub contour_length: usize,
    /// Seed of the drawing.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Arguments of `eft arena`.
#[derive(Debug, Args)]
pub struct ArenaArgs {
    /// `quick` (this CPU in minutes), `lite` (LRA's lengths with small models; hours on a CPU)
    /// or `paper` (LRA's released configs; for a GPU).
    #[arg(long, default_value = "quick")]
    pub preset: String,
    /// Mechanisms, comma-separated, each optionally with parameters.
    #[arg(long, value_delimiter = ',', help = mechanism_help(
        "Mechanisms, comma-separated, each optionally with parameters as NAME:KEY=VALUE:KEY=VALUE \
         and techniques after `+` (`full+switch`, `full+switch:experts=8`: a Switch \
         mixture-of-experts feed-forward, 4 experts unless given; `full+act:max_steps=6`: one \
         block applied recurrently with adaptive computation time, 4 steps at most unless given; \
         `full+exits:threshold=0.7`: a head after every block, early exit at that confidence, \
         0.5 unless given; `full+learned_exits`: a depth classifier picks each sequence's exit; \
         `linear+distill:alpha=0.5`: distilled from the same task's `full` cell, listed before it, \
         or `:teacher=NAME`'s) \
         (default: the preset's set, one or more per family)"
    ))]
    pub mechanisms: Vec<String>,
    /// Tasks, comma-separated.
    #[arg(long, value_delimiter = ',', help = task_help_with("Tasks, comma-separated (default: every task)"))]
    pub tasks: Vec<String>,
    /// The arena's name: its folder under --out (default: the preset's name).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder that holds arenas.
    #[arg(long, default_value = "arena")]
    pub out: PathBuf,
    /// Set any run-config field of every cell, e.g. `train.steps=100` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub sets: Vec<(String, String)>,
    /// Train each cell with this many seeds (initial weights, batch order, dropout; the same
    /// data): the report shows mean ± standard deviation and marks differences within the spread
    /// as ties. Seed r > 0 of a cell is the run `<cell>-seed<r>` (default: 3 for quick, 1
    /// otherwise).
    #[arg(long, value_parser = at_least_one())]
    pub seeds: Option<usize>,
    /// Sequence lengths at which the report's verdict checks the speed and memory findings, by
    /// profiling one attention call of each mechanism as `eft profile sweep` does (kept in the
    /// arena's folder; measured once).
    #[arg(long, value_delimiter = ',', default_value = "1024,4096,16384", value_parser = at_least_one())]
    pub verdict_lens: Vec<usize>,
    /// Skip that profile: the verdict then rests on the arena's own lengths alone.
    #[arg(long)]
    pub no_profile: bool,
    /// Hide the per-cell progress bars.
    #[arg(long)]
    pub no_progress: bool,
    /// Train nothing: write the report from the cells that have ended, leaving out the rest (a
    /// preset run in pieces, e.g. `--preset lite` after some of its cells).
    #[arg(long)]
    pub report_only: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Arguments of `eft search`.
#[derive(Debug, Args)]
pub struct SearchArgs {
    /// The task whose quick preset the candidates change.
    #[arg(long, help = task_help_with("The task whose quick preset the candidates change"))]
    pub task: String,
    /// The search space (TOML: [mechanisms] with parameter choices, [fields] with choices or
    /// ranges); default: the space shipped with eft.
    #[arg(long, value_name = "FILE")]
    pub space: Option<PathBuf>,
    /// Candidates to evaluate (rejected ones do not count).
    #[arg(long, default_value_t = 60)]
    pub budget_evals: usize,
    /// Objectives besides accuracy, comma-separated: flops, latency, memory, params.
    #[arg(long, default_value = "acc,flops,latency")]
    pub objectives: String,
    /// Reject, before training, candidates whose analytic cost exceeds this many GFLOP per
    /// training step.
    #[arg(long, value_name = "X")]
    pub max_gflop_per_step: Option<f64>,
    /// Reject, before training, candidates whose analytic training memory exceeds this many MiB.
    #[arg(long, value_name = "Y")]
    pub max_mib: Option<f64>,
    /// Training steps per candidate (the proxy for its accuracy).
    #[arg(long, default_value_t = 300)]
    pub proxy_steps: usize,
    /// `evolution` (aging evolution) or `random` (the baseline with the same budget).
    #[arg(long, default_value = "evolution")]
    pub strategy: String,
    /// Candidates alive at once (aging evolution's P).
    #[arg(long, default_value_t = 12)]
    pub population: usize,
    /// Tournament size (aging evolution's S).
    #[arg(long, default_value_t = 4)]
    pub sample: usize,
    /// Seed of every draw: the same seed proposes the same candidates.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// The search's folder (default: searches/<task>-<strategy>).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Set any run-config field of every candidate, e.g. `train.batch_size=16` (repeatable).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub sets: Vec<(String, String)>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Arguments of `eft report`.
#[derive(Debug, Args)]
pub struct ReportArgs {
    /// Run folders (each holds a record.json), or folders of run folders.
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Also draw the accuracy / speed / memory bubble chart of the finished runs into this
    /// folder (`bubbles.png`, `bubbles.svg`).
    #[arg(long, value_name = "DIR")]
    pub plots: Option<PathBuf>,
    /// Also draw the runs' loss and accuracy curves (from each run's `metrics.jsonl`) on one
    /// figure in this folder (`curves.png`, `curves.svg`).
    #[arg(long, value_name = "DIR")]
    pub curves: Option<PathBuf>,
    /// Also draw the pruned runs' test accuracy against the share of dense weights kept, one
    /// line per task and fine-tuning length, into this folder (`pruning.png`, `pruning.svg`).
    #[arg(long, value_name = "DIR")]
    pub pruning: Option<PathBuf>,
}

/// What `eft profile` measures.
#[derive(Debug, Subcommand)]
pub enum ProfileCommand {
    /// One mechanism at one shape, in this process; prints one JSON line.
    Attention(AttentionProfileArgs),
    /// Every mechanism at every length, each in a fresh process (so peak memory is its own);
    /// writes <out>/attention-cpu.json and <out>/attention-cpu.md, keeping earlier results of
    /// configurations it does not repeat.
    Sweep(SweepArgs),
    /// The backend's f32 matrix product `[n, n]·[n, n]` (no autodiff): the GEMM rate that the
    /// attention kernels are measured against; prints one JSON line.
    Matmul(MatmulArgs),
    /// The memory techniques against depth and length: a training step of the quick model, plain,
    /// recomputing, reversible and shared, each in a fresh process, plus the reversible rebuild's
    /// drift per depth; writes <out>/memory-techniques.{json,md} and its charts.
    Memory(MemoryArgs),
    /// Decoding speed and state size against context length for each decoding form (key-value
    /// cache, window cache, segment memory, kernel sums, recomputation); writes
    /// <out>/decoding.{json,md} and its charts.
    Decode(DecodeArgs),
}

/// Arguments of `eft profile decode`.
#[derive(Debug, Args)]
pub struct DecodeArgs {
    /// Forms to measure, by the start of their label (e.g. `full,linear`); default all.
    #[arg(long, value_delimiter = ',')]
    pub forms: Vec<String>,
    /// Context lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1024,2048,4096,8192,16384,32768,65536", value_parser = at_least_one())]
    pub contexts: Vec<usize>,
    /// Bytes decoded and timed at each context.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub steps: usize,
    /// Longest context the recomputing form is run at.
    #[arg(long, default_value_t = 4096)]
    pub max_recompute: usize,
    /// Seed of the weights and the bytes fed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Folder for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Measure nothing: rewrite the table and redraw the charts from the JSON already in --out.
    #[arg(long)]
    pub redraw: bool,
}

/// Arguments of `eft profile memory`.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Mechanisms, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "full,flash")]
    pub mechanisms: Vec<String>,
    /// Depths (model.n_layers), comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16", value_parser = at_least_one())]
    pub depths: Vec<usize>,
    /// Sequence lengths, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1024,4096", value_parser = at_least_one())]
    pub lens: Vec<usize>,
    /// Techniques, comma-separated: plain, recompute (every block), reversible (feed-forward in
    /// pieces of 1024 positions), shared (one block at every depth), bf16, f16 (compute type).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "plain,recompute,reversible,shared"
    )]
    pub techniques: Vec<String>,
    /// Also try the deepest model at this length with `full` plain and `flash` plain,
    /// recomputing and reversible (the 16-layer, N = 16K step); 0 skips it.
    #[arg(long, default_value_t = 16384)]
    pub long: usize,
    /// Depths at which the reversible rebuild's drift is measured, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "2,4,8,16,32", value_parser = at_least_one())]
    pub drift_depths: Vec<usize>,
    /// Also measure the drift after this many training steps of quick ListOps (the trained
    /// weights' branch outputs are larger); 0 skips it.
    #[arg(long, default_value_t = 0)]
    pub drift_trained_steps: usize,
    /// Measure only the drift, keeping the steps already in --out's JSON.
    #[arg(long)]
    pub drift_only: bool,
    /// Batch size B.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub batch: usize,
    /// Timed steps per configuration, after one warm-up step.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub repeats: usize,
    /// Stop a configuration that runs longer than this many seconds (recorded as over budget).
    #[arg(long, default_value_t = 900.0)]
    pub max_seconds: f64,
    /// Folder for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Measure nothing: rewrite the table and redraw the charts from the JSON already in --out.
    #[arg(long)]
    pub redraw: bool,
}

/// Arguments of `eft profile matmul`.
#[derive(Debug, Args)]
pub struct MatmulArgs {
    /// Rows, columns and inner dimension of the square product.
    #[arg(long, default_value_t = 2048, value_parser = at_least_one())]
    pub size: usize,
    /// Timed products after one warm-up; the median is reported.
    #[arg(long, default_value_t = 5, value_parser = at_least_one())]
    pub repeats: usize,
}

/// Arguments of `eft profile attention`.
#[derive(Debug, Args, Clone)]
pub struct AttentionProfileArgs {
    /// Mechanism (as for `eft attn`).
    #[arg(long)]
    pub mechanism: String,
    /// A parameter of the mechanism, as NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// Sequence length N.
    #[arg(long, value_parser = at_least_one())]
    pub len: usize,
    /// Batch size B.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub batch: usize,
    /// Heads H.
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    pub heads: usize,
    /// Head dimension D.
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub head_dim: usize,
    /// Causal masking.
    #[arg(long)]
    pub causal: bool,
    /// Timed passes after one warm-up pass; the median is reported.
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    pub repeats: usize,
    /// Measure a whole training step (forward and backward) of this preset's model with the
    /// mechanism, instead of the attention call alone: `quick` or `paper` (LRA's ListOps model).
    #[arg(long, value_name = "PRESET")]
    pub model: Option<String>,
    /// With --model: a field of the preset's run config, as KEY=VALUE like `eft train --set`
    /// (repeatable), e.g. `model.n_layers=16` or `model.residual=reversible`.
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair, requires = "model")]
    pub sets: Vec<(String, String)>,
}

/// Arguments of `eft profile sweep`.
#[derive(Debug, Args)]
pub struct SweepArgs {
    /// Mechanisms to measure, comma-separated, or `all` (the default), each with its default
    /// parameters unless --param says otherwise.
    #[arg(long, value_delimiter = ',')]
    pub mechanisms: Vec<String>,
    /// Sequence lengths, comma-separated.
    #[arg(
        long,
        alias = "lengths",
        value_delimiter = ',',
        default_value = "1024,2048,4096,8192,16384",
        value_parser = at_least_one()
    )]
    pub lens: Vec<usize>,
    /// Batch size B.
    #[arg(long, default_value_t = 1, value_parser = at_least_one())]
    pub batch: usize,
    /// Heads H (attention sweeps; a --model sweep uses the preset's).
    #[arg(long, default_value_t = 4, value_parser = at_least_one())]
    pub heads: usize,
    /// Head dimension D (attention sweeps).
    #[arg(long, default_value_t = 64, value_parser = at_least_one())]
    pub head_dim: usize,
    /// Skip a configuration whose estimated peak memory exceeds this many GiB (recorded as out
    /// of memory, like one whose process dies allocating).
    #[arg(long, default_value_t = 16.0)]
    pub max_gib: f64,
    /// Stop a configuration that runs longer than this many seconds (recorded as over budget);
    /// longer lengths of that mechanism are then not tried.
    #[arg(long, default_value_t = 900.0)]
    pub max_seconds: f64,
    /// Timed passes per configuration.
    #[arg(long, default_value_t = 3, value_parser = at_least_one())]
    pub repeats: usize,
    /// Measure whole training steps of this preset's model (`quick` or `paper`) instead of single
    /// attention calls; results go to <out>/model-PRESET-cpu.* instead of attention-cpu.*.
    #[arg(long, value_name = "PRESET")]
    pub model: Option<String>,
    /// A parameter given to every mechanism of this sweep, as NAME=VALUE (repeatable); the
    /// table labels such rows with their parameters.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// Folder for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Measure nothing: rewrite the tables and redraw the charts from the JSON already in
    /// `--out` (the sweep's other flags then only pick which file: `--model`).
    #[arg(long)]
    pub redraw: bool,
}

/// Arguments of `eft attn`.
#[derive(Debug, Args)]
pub struct AttnArgs {
    /// Mechanism.
    #[arg(long, help = mechanism_help("Mechanism"))]
    pub mechanism: String,
    /// A parameter of the mechanism, as NAME=VALUE (repeatable); seed=S draws learned parameters and sampled patterns.
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair)]
    pub params: Vec<(String, String)>,
    /// Causal masking (query i sees keys j ≤ i).
    #[arg(long)]
    pub causal: bool,
    /// Input safetensors file.
    #[arg(long, value_name = "IN.safetensors")]
    pub input: PathBuf,
    /// Output safetensors file (written atomically).
    #[arg(long, value_name = "OUT.safetensors")]
    pub output: PathBuf,
}

/// Arguments of `eft train`.
#[derive(Debug, Args)]
pub struct TrainArgs {
    /// Task to train on.
    #[arg(long, default_value = "listops", conflicts_with = "resume", help = task_help())]
    pub task: String,
    /// Starting config.
    #[arg(long, default_value = "quick", conflicts_with = "resume", help = preset_help())]
    pub preset: String,
    /// A TOML file layered over the preset (same fields as the `config.toml` a run writes).
    #[arg(long, value_name = "FILE", conflicts_with = "resume")]
    pub config: Option<PathBuf>,
    /// Attention mechanism of every layer.
    #[arg(long, conflicts_with = "resume", help = mechanism_help("Attention mechanism of every layer"))]
    pub attention: Option<String>,
    /// A parameter of the attention mechanism, as NAME=VALUE (repeatable).
    #[arg(long = "param", value_name = "NAME=VALUE", value_parser = parse_pair, conflicts_with = "resume")]
    pub params: Vec<(String, String)>,
    /// Training steps (sets train.steps).
    #[arg(long, conflicts_with = "resume")]
    pub steps: Option<usize>,
    /// Seed of every random choice (sets seed).
    #[arg(long, conflicts_with = "resume")]
    pub seed: Option<u64>,
    /// Examples per step (sets train.batch_size).
    #[arg(long, conflicts_with = "resume")]
    pub batch_size: Option<usize>,
    /// Run name; files go to <out>/<name>, which must not hold a run yet. Without it the name is
    /// <task>-<attention>-<preset>, suffixed -2, -3, … when that folder is taken.
    #[arg(long, conflicts_with = "resume")]
    pub name: Option<String>,
    /// Folder that holds runs.
    #[arg(
        long,
        default_value = "runs",
        value_name = "DIR",
        conflicts_with = "resume"
    )]
    pub out: PathBuf,
    /// Set any config field by its dotted path, e.g. `model.d_model=128` or
    /// `train.schedule={ kind = "constant", lr = 0.001 }` (repeatable; applied last).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair, conflicts_with = "resume")]
    pub sets: Vec<(String, String)>,
    /// Continue the interrupted run in this folder from its last checkpoint, with its saved config.
    #[arg(long, value_name = "RUN_DIR")]
    pub resume: Option<PathBuf>,
    /// Stop, resumably, once this many steps are done (a time-boxed session).
    #[arg(long, value_name = "STEPS")]
    pub stop_after: Option<usize>,
    /// Print the resolved config and exit without training.
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,
    /// Print every config field (dotted path for --set, type, value in the resolved config) and
    /// every mechanism's parameters with their defaults, then exit; --task picks the task's fields.
    #[arg(long, conflicts_with = "resume")]
    pub list_fields: bool,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// The compute backends this build offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Backend {
    /// burn's Flex CPU backend (SIMD matmul, all cores).
    Cpu,
    /// burn's wgpu backend on the default GPU (needs a build with `--features wgpu`).
    Wgpu,
}

/// A task's data split.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Split {
    /// The training split.
    Train,
    /// The validation split.
    Val,
    /// The test split.
    Test,
}

/// Arguments of `eft prune`.
#[derive(Debug, Args)]
pub struct PruneArgs {
    /// The run to prune (its folder; it is read, not modified).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Share of the prunable weights set to zero, in [0, 1).
    #[arg(long, required_unless_present_any = ["lottery", "heads"])]
    pub sparsity: Option<f64>,
    /// Share of the attention heads to remove, in [0, 1): the least important by Michel et al.
    /// (2019)'s |∂L/∂gate| on training batches, normalised per layer; each layer keeps at least
    /// one. The new run has smaller Q/K/V/O weights and fewer heads.
    #[arg(long, conflicts_with_all = ["sparsity", "lottery"])]
    pub heads: Option<f64>,
    /// Training batches the head importance is summed over (with --heads).
    #[arg(long, default_value_t = 32, value_parser = at_least_one())]
    pub importance_batches: usize,
    /// Iterative magnitude pruning for lottery tickets (Frankle & Carbin 2019): each round
    /// prunes --rate of the weights left, ranked by the previous round's trained weights, and
    /// retrains from RUN's weights at step --rewind (kept with train.keep_at), beside a control
    /// with the same mask from a fresh initialisation.
    #[arg(long, conflicts_with_all = ["sparsity", "finetune"])]
    pub lottery: bool,
    /// Lottery rounds.
    #[arg(long, default_value_t = 5, value_parser = at_least_one())]
    pub rounds: usize,
    /// Share of the remaining weights each lottery round prunes, in (0, 1).
    #[arg(long, default_value_t = 0.2)]
    pub rate: f64,
    /// The step whose weights a lottery round retrains from (0: the initialisation); RUN must
    /// have kept them (`--set train.keep_at=[k]` when it trained).
    #[arg(long, default_value_t = 0)]
    pub rewind: usize,
    /// Rank all dense weights together (global) or each matrix alone (layer).
    #[arg(long, value_enum, default_value_t = PruneScopeArg::Global)]
    pub scope: PruneScopeArg,
    /// Fine-tuning steps with the mask held; 0 evaluates the pruned weights as they are.
    #[arg(long, default_value_t = 0)]
    pub finetune: usize,
    /// The new run's name (default: RUN's name with -prune<percent>, or -heads<percent>).
    #[arg(long)]
    pub name: Option<String>,
    /// Folder for the new run (default: RUN's folder).
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Any other field of the new run, as KEY=VALUE (repeatable; e.g. a fine-tuning learning rate).
    #[arg(long = "set", value_name = "KEY=VALUE", value_parser = parse_pair)]
    pub set: Vec<(String, String)>,
    /// Hide the progress bar.
    #[arg(long)]
    pub no_progress: bool,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Pruning scopes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PruneScopeArg {
    /// One magnitude threshold over all dense weights.
    Global,
    /// The same share of each matrix.
    Layer,
}

/// Arguments of `eft context`.
#[derive(Debug, Args)]
pub struct ContextArgs {
    /// Run folders of task lm.
    #[arg(value_name = "RUN_DIR", required = true)]
    pub runs: Vec<PathBuf>,
    /// Contexts measured, comma-separated (default: powers of two up to each run's window).
    #[arg(long, value_delimiter = ',', value_parser = at_least_one())]
    pub contexts: Option<Vec<usize>>,
    /// Test windows whose next byte is predicted.
    #[arg(long, default_value_t = 2000, value_parser = at_least_one())]
    pub windows: usize,
    /// Relative bits-per-byte gap to the longest context within which context stops counting.
    #[arg(long, default_value_t = 0.01)]
    pub tolerance: f64,
    /// Folder for the results.
    #[arg(long, default_value = "bench/results")]
    pub out: PathBuf,
    /// Where the model runs.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Arguments of `eft export`.
#[derive(Debug, Args)]
pub struct ExportArgs {
    /// The run folder (holds checkpoint.safetensors).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The safetensors file to write.
    #[arg(value_name = "OUT")]
    pub out: PathBuf,
    /// The conventions of the framework that will load it.
    #[arg(long, value_enum, default_value_t = ExportFormat::Pytorch)]
    pub format: ExportFormat,
    /// Also write a check batch to this file: the first 8 test examples' `tokens` and `padding`
    /// (`[B, N]`, 1 = padding) and eft's `logits` for them, to compare a port against.
    #[arg(long, value_name = "FILE")]
    pub check_batch: Option<PathBuf>,
}

/// Formats `eft export` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// PyTorch's layouts and parameter names, loadable with `load_state_dict`.
    Pytorch,
}

/// Arguments of `eft generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    /// The run folder of a language model (task lm).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// The text to continue.
    #[arg(long)]
    pub prompt: String,
    /// Bytes to generate.
    #[arg(long, default_value_t = 200)]
    pub tokens: usize,
    /// Softmax temperature, > 0 (1: the model's distribution; small: nearly greedy).
    #[arg(long, default_value_t = 1.0)]
    pub temperature: f64,
    /// Draw only from the k most probable bytes (1: greedy).
    #[arg(long)]
    pub top_k: Option<usize>,
    /// Seed of the draws: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// Arguments of `eft eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    /// The run folder (holds checkpoint.safetensors).
    #[arg(value_name = "RUN_DIR")]
    pub run: PathBuf,
    /// Split to evaluate.
    #[arg(long, value_enum, default_value_t = Split::Test)]
    pub split: Split,
    /// Early-exit thresholds to sweep, comma-separated (a run trained with `model.exits`):
    /// accuracy, layers used and FLOPs per threshold, written to RUN_DIR/exits.{md,json,png}.
    #[arg(long, value_delimiter = ',')]
    pub exit_threshold: Vec<f64>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = Backend::Cpu)]
    pub device: Backend,
}

/// `what`, then the mechanisms of the registry, so the help never lists fewer than exist.
fn mechanism_help(what: &str) -> String {
    format!(
        "{what} [possible values: {}]",
        eft_attention::AttentionConfig::NAMES.join(", ")
    )
}

/// `what`, then the tasks of the registry.
fn task_help_with(what: &str) -> String {
    format!(
        "{what} [possible values: {}]",
        eft_data::TaskConfig::NAMES.join(", ")
    )
}

fn task_help() -> String {
    task_help_with("Task to train on")
}

/// The run presets of the registry.
fn preset_help() -> String {
    format!(
        "Starting config: `quick` (a CPU in minutes) or `paper` (LRA's released settings); \
         task lm also has `lite` (512 bytes) [possible values: {}]",
        eft_train::PRESETS.join(", ")
    )
}

pub(crate) fn parse_pair(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.trim().to_string())),
        _ => Err(format!("`{s}` is not NAME=VALUE")),
    }
}

/// A count that must be at least 1 (a length, a batch, a number of heads or passes): zero is
/// refused by the parser with a message naming the flag.
fn at_least_one() -> clap::builder::RangedU64ValueParser<usize> {
    clap::builder::RangedU64ValueParser::<usize>::new().range(1..)
}
