//! One run's whole configuration: task, model, training, seed. Serialised beside the results.

use eft_data::TaskConfig;
use eft_model::ModelConfig;
use serde::{Deserialize, Serialize};

use crate::{OptimizerConfig, Precision, Schedule, TrainError};

/// The training loop's settings. TOML section `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TrainConfig {
    /// Optimizer steps.
    pub steps: usize,
    /// Examples per step.
    pub batch_size: usize,
    /// Evaluate on the validation split every this many steps (and after the last).
    pub eval_every: usize,
    /// Write a checkpoint every this many steps (and on interruption and at the end).
    pub checkpoint_every: usize,
    /// Append a line of training metrics to `metrics.jsonl` every this many steps.
    #[serde(default = "ten")]
    pub log_every: usize,
    /// The float type steps compute in: `"f32"` (default), `"bf16"` or `"f16"` (with dynamic loss
    /// scaling); weights and optimiser state stay f32.
    #[serde(default)]
    pub precision: Precision,
    /// Clip the global gradient norm to this value; absent means no clipping.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_grad_norm: Option<f64>,
    /// The optimizer.
    #[serde(default)]
    pub optimizer: OptimizerConfig,
    /// The learning-rate schedule.
    pub schedule: Schedule,
    /// Start from the weights of another run (its folder, which holds a checkpoint) with a fresh
    /// optimiser, instead of a fresh initialisation; with it, `steps = 0` evaluates those
    /// weights without training.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_from: Option<String>,
    /// With `init_from`: take that run's weights as they were after this many steps (a snapshot
    /// it kept with `keep_at`), not its last ones: rewinding, for lottery tickets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub init_step: Option<usize>,
    /// Steps after which a copy of the weights is kept as `weights-step<k>.safetensors` (0: the
    /// initial weights), for later runs to rewind to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub keep_at: Vec<usize>,
    /// Magnitude pruning, fixed when training starts and kept through it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prune: Option<crate::prune::PruneConfig>,
    /// Knowledge distillation from a finished run's predictions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub distill: Option<crate::distill::DistillConfig>,
    /// Pretrain as ELECTRA's discriminator beside a generator (task `mlm` only); absent means
    /// the task's own loss (masked-byte prediction for `mlm`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub electra: Option<crate::electra::ElectraConfig>,
    /// Draw each example's dropout masks from its own key (its index in the training split)
    /// instead of one stream for the batch, so that data-parallel ranks, each holding a slice of
    /// the batch, draw the masks one process draws (required to train on several ranks with
    /// dropout). Default false.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_example_dropout: bool,
    /// Which of several runs of the same config this is (the arena's `--seeds`): above 0, the
    /// initial weights, batch order and dropout follow `seed` and this number, while the task's
    /// data stays the one `seed` builds. Default 0.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub replica: u64,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

fn ten() -> usize {
    10
}

impl TrainConfig {
    /// Sets the step count, evaluating and checkpointing every `every` steps.
    pub fn set_steps(&mut self, steps: usize, every: usize) {
        self.steps = steps;
        self.eval_every = every;
        self.checkpoint_every = every;
    }
}

/// Everything that determines a run. TOML: `name`, `seed`, then `[task]`, `[model]`, `[train]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RunConfig {
    /// The run's name; its files go to `<out>/<name>/`.
    pub name: String,
    /// Seed of every random choice: data, initialisation, dropout, batch order.
    pub seed: u64,
    /// The task.
    pub task: TaskConfig,
    /// The model.
    pub model: ModelConfig,
    /// The training loop.
    pub train: TrainConfig,
    /// How the run is priced.
    #[serde(default)]
    pub meter: crate::meter::MeterConfig,
}

impl RunConfig {
    /// The seed of the initial weights, the batch order and dropout: `seed`, or for a replica
    /// (`train.replica` above 0) one derived from it, so replicas share the task's data.
    pub fn training_seed(&self) -> u64 {
        match self.train.replica {
            0 => self.seed,
            r => eft_data::derived_seed(self.seed, u64::MAX - r),
        }
    }

    /// Checks every field before anything runs; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), TrainError> {
        if self.name.is_empty()
            || !self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_.+".contains(c))
            || self.name.starts_with('.')
        {
            return Err(TrainError::config(
                "name",
                format!("{:?}", self.name),
                "use letters, digits, '-', '_', '+' and '.', not starting with '.'",
            ));
        }
        self.task.validate()?;
        self.model.validate()?;
        self.meter.validate()?;
        // Next-byte prediction with a model that sees the next byte would be copying.
        if matches!(self.task, eft_data::TaskConfig::Lm(_)) {
            if !self.model.causal {
                return Err(TrainError::config(
                    "model.causal",
                    "false",
                    "the lm task predicts each next byte: set model.causal = true (and a \
                     mechanism with a causal form)",
                ));
            }
            if let Some((name, why)) = self
                .model
                .layer_mechanisms()
                .find_map(|a| a.causal_leak().map(|why| (a.name(), why)))
            {
                return Err(TrainError::config(
                    "model.attention",
                    name,
                    format!(
                        "its causal form lets later bytes change earlier predictions ({why}); \
                         the lm task needs one that does not, e.g. full, flash, local or linear"
                    ),
                ));
            }
            if let eft_model::FeedForwardConfig::Switch(switch) = &self.model.feed_forward
                && switch.capacity_factor < switch.experts as f64
            {
                return Err(TrainError::config(
                    "model.feed_forward.capacity_factor",
                    switch.capacity_factor,
                    format!(
                        "a Switch layer that drops tokens makes each byte's prediction depend on                          how many bytes are routed with it, later ones included; the lm task                          needs capacity_factor ≥ experts ({}), so none is dropped",
                        switch.experts
                    ),
                ));
            }
        }
        // Recall tasks are graded at positions: the head must read every position.
        let per_position = self.task.per_position();
        if per_position != (self.model.pool == eft_model::Pool::None) {
            let fix = if per_position {
                format!(
                    "task {} is graded per position: set model.pool = \"none\"",
                    self.task.name()
                )
            } else {
                "pool none grades every position, which only mqar, copying, induction and lm \
                 define: use \"cls\" or \"mean\""
                    .to_string()
            };
            return Err(TrainError::config(
                "model.pool",
                format!("{:?}", self.model.pool).to_lowercase(),
                fix,
            ));
        }
        let t = &self.train;
        // Loaded weights may be evaluated as they are.
        let evaluate_only = t.steps == 0 && t.init_from.is_some();
        if let Some(p) = &t.prune {
            p.validate()?;
        }
        if t.init_step.is_some() && t.init_from.is_none() {
            return Err(TrainError::config(
                "train.init_step",
                t.init_step.unwrap_or(0),
                "rewinds the run named by train.init_from: set that too",
            ));
        }
        if let Some(d) = &t.distill {
            d.validate()?;
        }
        if let Some(e) = &t.electra {
            e.validate()?;
            self.check_electra(e)?;
        }
        for (field, v) in [
            ("train.steps", if evaluate_only { 1 } else { t.steps }),
            ("train.batch_size", t.batch_size),
            ("train.eval_every", t.eval_every),
            ("train.checkpoint_every", t.checkpoint_every),
            ("train.log_every", t.log_every),
        ] {
            if v == 0 {
                return Err(TrainError::config(field, 0, "must be at least 1"));
            }
        }
        if let Some(c) = t.max_grad_norm
            && !(c > 0.0 && c.is_finite())
        {
            return Err(TrainError::config(
                "train.max_grad_norm",
                c,
                "must be positive; leave it out to disable clipping",
            ));
        }
        if t.precision != Precision::F32
            && let Some(a) = self
                .model
                .layer_mechanisms()
                .find(|a| !crate::precision::LOW_PRECISION.contains(&a.name()))
        {
            return Err(TrainError::config(
                "train.precision",
                t.precision,
                format!(
                    "attention `{}` has no low-precision path yet (it came out NaN in tests); \
                     use another mechanism or train.precision = \"f32\"",
                    a.name()
                ),
            ));
        }
        t.optimizer.validate()?;
        if evaluate_only {
            return Ok(());
        }
        t.schedule.validate(t.steps)
    }

    /// Refuses ELECTRA where it is not built: another task, a rebuilding backward pass, low
    /// precision, distillation or exits; and a generator ratio that gives no valid model.
    fn check_electra(&self, e: &crate::electra::ElectraConfig) -> Result<(), TrainError> {
        let refuse = |field: &'static str, value: String, fix: &str| {
            Err(TrainError::config(field, value, fix.to_string()))
        };
        if !matches!(self.task, eft_data::TaskConfig::Mlm(_)) {
            return refuse(
                "train.electra",
                self.task.name().into(),
                "ELECTRA pretrains on task mlm: use `eft pretrain --objective electra` or                  --task mlm",
            );
        }
        if self.model.recompute != eft_model::Recompute::None
            || self.model.residual == eft_model::Residual::Reversible
        {
            return refuse(
                "train.electra",
                "a rebuilding backward pass".into(),
                "ELECTRA keeps every activation: set model.recompute = \"none\" and \
                 model.residual = \"pre_norm\"",
            );
        }
        if self.train.precision != Precision::F32 {
            return refuse(
                "train.precision",
                self.train.precision.to_string(),
                "ELECTRA trains in f32 only: set train.precision = \"f32\"",
            );
        }
        if self.train.distill.is_some() || self.model.exits != eft_model::ExitsConfig::None {
            return refuse(
                "train.electra",
                "with distillation or exits".into(),
                "ELECTRA's discriminator trains alone: drop train.distill and model.exits",
            );
        }
        self.model
            .generator(e.generator, "train.electra.generator")?;
        Ok(())
    }

    /// The config as TOML text, as saved beside a run.
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("a run config always serialises")
    }

    /// Reads a config from TOML text; errors name the field.
    pub fn from_toml(text: &str) -> Result<Self, TrainError> {
        toml::from_str(text).map_err(|e| toml_error(&e))
    }
}

/// Turns a TOML error into a one-line config error naming the key.
pub(crate) fn toml_error(e: &toml::de::Error) -> TrainError {
    TrainError::Invalid(e.message().trim().replace('\n', " "))
}
