//! The model's configuration, checked once before anything is built.

use burn::tensor::Device;
use eft_attention::{AttentionConfig, AttentionLayout};
use serde::{Deserialize, Serialize};

use crate::{
    Classifier, DepthConfig, ExitsConfig, FeedForwardConfig, ModelError, Recompute, Residual,
    Share, TaskShape,
};

/// How positions are encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Positions {
    /// A learned vector per position (LRA's default).
    #[default]
    Learned,
    /// Fixed sines and cosines (Vaswani et al. 2017); no parameters, any length up to the table.
    Sinusoidal,
}

/// How the sequence is reduced to one vector for the head.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Pool {
    /// A learned CLS vector is prepended and its final state is used.
    #[default]
    Cls,
    /// The mean of the final states of the real (non-padding) tokens.
    Mean,
    /// No pooling: the head reads every position (tasks graded per position, such as MQAR).
    None,
}

/// The layer that turns the encoder's states into logits. TOML `model.head`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Head {
    /// Dense → ReLU → Dense through `d_ff` hidden units (LRA's head).
    #[default]
    Mlp,
    /// One linear layer (a language model's output layer).
    Linear,
    /// The token embedding, transposed, as the output layer (weight tying, Press & Wolf 2017):
    /// for tasks whose classes are their tokens shifted by one (`lm`).
    Tied,
}

/// The encoder classifier's configuration. TOML section `[model]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    /// Width `d` of the residual stream.
    pub d_model: usize,
    /// Attention heads; must divide `d_model`.
    pub n_heads: usize,
    /// Number of blocks.
    pub n_layers: usize,
    /// Hidden width of the MLP in each block and of the classifier head.
    pub d_ff: usize,
    /// Dropout probability after embeddings, attention and MLP layers, in `[0, 1)`.
    pub dropout: f64,
    /// Position encoding. Default `learned`.
    #[serde(default)]
    pub positions: Positions,
    /// Pooling before the head. Default `cls`.
    #[serde(default)]
    pub pool: Pool,
    /// The output layer: `"mlp"` (default), `"linear"` or `"tied"` (the token embedding's).
    #[serde(default)]
    pub head: Head,
    /// Whether queries only see earlier keys. Default `false` (an encoder).
    #[serde(default)]
    pub causal: bool,
    /// How each block joins its branches to the residual stream. Default `pre_norm`.
    #[serde(default)]
    pub residual: Residual,
    /// The feed-forward branch of every block. Default `{ kind = "dense" }`.
    #[serde(default)]
    pub feed_forward: FeedForwardConfig,
    /// How deep the encoder runs: `{ kind = "fixed" }` (default, each block once) or
    /// `{ kind = "act", max_steps = T }` (the stack repeated per position until it halts).
    #[serde(default)]
    pub depth: DepthConfig,
    /// Per-layer classifier heads for early exit: `{ kind = "none" }` (default) or
    /// `{ kind = "confidence", threshold = p }`.
    #[serde(default)]
    pub exits: ExitsConfig,
    /// The attention mechanism used by every block. Default `{ kind = "full" }`.
    #[serde(default)]
    pub attention: AttentionConfig,
    /// One mechanism per layer, for hybrids (e.g. local below, full on top); when given it must
    /// list `n_layers` entries and replaces `attention`. Default: empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub layer_attention: Vec<AttentionConfig>,
    /// Which depths share one block's weights: `"none"` (default), `"all"` (ALBERT),
    /// `{ cycle = k }` or `{ sequence = k }` (k distinct blocks; k must divide `n_layers`).
    #[serde(default)]
    pub share: Share,
    /// Which block inputs a training step keeps: `"none"` (default), `"every"` or
    /// `{ every = k }`; the rest is rebuilt in the backward pass (gradient checkpointing).
    #[serde(default)]
    pub recompute: Recompute,
    /// Positions per piece of the feed-forward branch (Reformer's chunking): the branch runs on
    /// one piece at a time, so its `N × d_ff` hidden layer is never whole where no graph keeps
    /// it (reversible training, evaluation). Default: not split.
    #[serde(default)]
    pub ffn_chunk: Option<usize>,
    /// The heads each layer keeps after head pruning (ascending indices into its `n_heads`
    /// heads, one list per layer; `eft prune --heads` writes it); the head dimension stays
    /// `d_model / n_heads`. Default: empty, every head.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept_heads: Vec<Vec<usize>>,
    /// Ranks that each hold a block of every layer's heads and MLP columns (Megatron-LM tensor
    /// parallelism, under `mpirun -np K`); must divide the heads and `d_ff`. Default 1: whole
    /// layers.
    #[serde(
        default = "crate::tensor_parallel::whole",
        skip_serializing_if = "crate::tensor_parallel::is_whole"
    )]
    pub tensor_parallel: usize,
}

impl Default for ModelConfig {
    /// The `quick` preset's model: 2 pre-norm blocks of width 64, 4 heads, MLP width 128,
    /// dropout 0.1, learned positions, CLS pooling, `full` attention.
    fn default() -> Self {
        Self {
            d_model: 64,
            n_heads: 4,
            n_layers: 2,
            d_ff: 128,
            dropout: 0.1,
            positions: Positions::Learned,
            pool: Pool::Cls,
            head: Head::Mlp,
            causal: false,
            residual: Residual::default(),
            feed_forward: FeedForwardConfig::default(),
            depth: DepthConfig::default(),
            exits: ExitsConfig::default(),
            attention: AttentionConfig::default(),
            layer_attention: vec![],
            share: Share::None,
            recompute: Recompute::default(),
            ffn_chunk: None,
            kept_heads: vec![],
            tensor_parallel: 1,
        }
    }
}

impl ModelConfig {
    /// Checks every field; the error names the field and the fix.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |field, value: String, fix: String| Err(ModelError::Config { field, value, fix });
        for (field, v) in [
            ("model.d_model", self.d_model),
            ("model.n_heads", self.n_heads),
            ("model.n_layers", self.n_layers),
            ("model.d_ff", self.d_ff),
        ] {
            if v == 0 {
                return bad(field, "0".into(), "must be at least 1".into());
            }
        }
        if !self.d_model.is_multiple_of(self.n_heads) {
            // Head counts worth suggesting are small: searching all of a huge d_model hung.
            let divisors: Vec<String> = (1..=self.d_model.min(64))
                .filter(|h| self.d_model.is_multiple_of(*h))
                .map(|h| h.to_string())
                .collect();
            return bad(
                "model.n_heads",
                self.n_heads.to_string(),
                format!(
                    "must divide model.d_model = {}; choose one of {}",
                    self.d_model,
                    divisors.join(", ")
                ),
            );
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return bad(
                "model.dropout",
                self.dropout.to_string(),
                "must be in [0, 1)".into(),
            );
        }
        if !self.layer_attention.is_empty() && self.layer_attention.len() != self.n_layers {
            return bad(
                "model.layer_attention",
                format!("{} entries", self.layer_attention.len()),
                format!(
                    "must list one mechanism per layer ({}), or be left out",
                    self.n_layers
                ),
            );
        }
        self.validate_sharing()?;
        self.validate_kept_heads()?;
        self.validate_reversible()?;
        self.validate_switch()?;
        self.validate_depth()?;
        self.validate_exits()?;
        if self.ffn_chunk == Some(0) {
            return bad(
                "model.ffn_chunk",
                "0".into(),
                "must be at least 1 (positions per piece), or left out".into(),
            );
        }
        if let Some(every) = self.recompute.segment() {
            if every == 0 {
                return bad(
                    "model.recompute",
                    "{ every = 0 }".into(),
                    "k must be at least 1 (blocks per rebuilt segment), or \"none\"".into(),
                );
            }
            if self.layer_mechanisms().any(|a| a.recurrence().is_some()) {
                return bad(
                    "model.recompute",
                    format!("{:?}", self.recompute),
                    "segment recurrence (xl with segment) cannot be recomputed yet; set \
                     model.recompute = \"none\""
                        .into(),
                );
            }
        }
        self.validate_segments()?;
        self.validate_tensor_parallel()?;
        for attention in self.layer_mechanisms() {
            attention.validate()?;
            if self.causal && !attention.supports_causal() {
                return bad(
                    "model.causal",
                    "true".into(),
                    format!(
                        "attention `{}` has no causal form; set causal = false or pick another mechanism",
                        attention.name()
                    ),
                );
            }
        }
        Ok(())
    }

    /// The first setting that replaces the plain forward pass, in which conditional computation
    /// runs and reports: recomputation, reversible blocks, segment recurrence.
    pub(crate) fn rebuilding_setting(&self) -> Option<(&'static str, String)> {
        if self.recompute != Recompute::None {
            return Some(("model.recompute", format!("{:?}", self.recompute)));
        }
        if self.residual == Residual::Reversible {
            return Some(("model.residual", "reversible".into()));
        }
        if self.layer_mechanisms().any(|a| a.recurrence().is_some()) {
            return Some(("model.attention", "xl with segment".into()));
        }
        None
    }

    /// Exits need a threshold in (0, 1], more than one layer, one prediction per sequence, and
    /// the plain forward pass (which runs the heads).
    fn validate_exits(&self) -> Result<(), ModelError> {
        match &self.exits {
            ExitsConfig::None => return Ok(()),
            ExitsConfig::Confidence(c) if !(c.threshold > 0.0 && c.threshold <= 1.0) => {
                return bad(
                    "model.exits.threshold",
                    c.threshold.to_string(),
                    "must be in (0, 1]: the top class probability that lets a sequence exit \
                     (1: never)",
                );
            }
            ExitsConfig::Learned(l) if !(l.penalty.is_finite() && l.penalty >= 0.0) => {
                return bad(
                    "model.exits.penalty",
                    l.penalty.to_string(),
                    "must be a number >= 0: the loss a layer is worth in the oracle depth",
                );
            }
            _ => {}
        }
        if self.n_layers < 2 {
            return bad(
                "model.exits",
                "confidence".into(),
                "exits need layers to exit between: set model.n_layers >= 2",
            );
        }
        if self.pool == Pool::None {
            return bad(
                "model.exits",
                "confidence".into(),
                "a sequence exits whole, but this task predicts at every position (pool = none); \
                 use model.exits = { kind = \"none\" }",
            );
        }
        let refuse = |field, value: String| {
            bad(
                field,
                value,
                "early exit runs the plain forward pass, layer by layer; use model.exits = \
                 { kind = \"none\" } or drop this",
            )
        };
        if let Some((field, value)) = self.rebuilding_setting() {
            return refuse(field, value);
        }
        if self.depth != DepthConfig::Fixed {
            return refuse("model.depth", "act".into());
        }
        Ok(())
    }

    /// Adaptive computation time needs a step, a threshold in (0, 1], a non-negative ponder
    /// weight, and the plain forward pass (the loop runs in it).
    fn validate_depth(&self) -> Result<(), ModelError> {
        let DepthConfig::Act(act) = &self.depth else {
            return Ok(());
        };
        if act.max_steps == 0 {
            return bad(
                "model.depth.max_steps",
                "0".into(),
                "must be at least 1 (the most steps a position takes)",
            );
        }
        let t = act.threshold;
        if !(t > 0.0 && t <= 1.0) {
            return bad(
                "model.depth.threshold",
                t.to_string(),
                "must be in (0, 1]: 1 − ε, e.g. 0.99",
            );
        }
        if !(act.ponder.is_finite() && act.ponder >= 0.0) {
            return bad(
                "model.depth.ponder",
                act.ponder.to_string(),
                "must be a number >= 0 (0 turns the ponder cost off)",
            );
        }
        let refuse = |field, value: String| {
            bad(
                field,
                value,
                "adaptive computation time runs the stack in its own loop, which this does not \
                 rebuild or route yet; use model.depth = { kind = \"fixed\" } or drop it",
            )
        };
        if let Some((field, value)) = self.rebuilding_setting() {
            return refuse(field, value);
        }
        if matches!(self.feed_forward, FeedForwardConfig::Switch(_)) {
            return refuse("model.feed_forward", "switch".into());
        }
        Ok(())
    }

    /// A Switch feed-forward layer needs two experts, a positive capacity, non-negative loss
    /// weights, and the plain forward pass that returns its auxiliary losses.
    fn validate_switch(&self) -> Result<(), ModelError> {
        let FeedForwardConfig::Switch(switch) = &self.feed_forward else {
            return Ok(());
        };
        if switch.experts < 2 {
            return bad(
                "model.feed_forward.experts",
                switch.experts.to_string(),
                "a mixture needs at least 2 experts; for one MLP use kind = \"dense\"",
            );
        }
        let c = switch.capacity_factor;
        if !(c.is_finite() && c > 0.0) {
            return bad(
                "model.feed_forward.capacity_factor",
                c.to_string(),
                "must be a positive number (1.0 is an even share per expert; 1.25 is usual)",
            );
        }
        for (field, v) in [
            ("model.feed_forward.balance", switch.balance),
            ("model.feed_forward.z_loss", switch.z_loss),
        ] {
            if !(v.is_finite() && v >= 0.0) {
                return bad(
                    field,
                    v.to_string(),
                    "must be a number >= 0 (0 turns it off)",
                );
            }
        }
        if !(0.0..1.0).contains(&switch.jitter) {
            return bad(
                "model.feed_forward.jitter",
                switch.jitter.to_string(),
                "must be in [0, 1) (0 turns it off; 0.01 is the paper's)",
            );
        }
        if switch.every == 0 || switch.every > self.n_layers {
            return bad(
                "model.feed_forward.every",
                switch.every.to_string(),
                "must be between 1 and model.n_layers (every k-th block is a Switch layer)",
            );
        }
        if switch.every > 1 && self.share != Share::None {
            return bad(
                "model.feed_forward.every",
                switch.every.to_string(),
                "shared blocks would be Switch at one depth and dense at another: use every = 1 \
                 or model.share = \"none\"",
            );
        }
        let refuse = |field, value: String| {
            bad(
                field,
                value,
                "Switch layers run in the plain forward pass, which returns their auxiliary \
                 losses; use model.feed_forward = { kind = \"dense\" } or drop this",
            )
        };
        if let Some((field, value)) = self.rebuilding_setting() {
            return refuse(field, value);
        }
        if let Some(chunk) = self.ffn_chunk {
            return refuse("model.ffn_chunk", chunk.to_string());
        }
        Ok(())
    }

    /// Head-pruned layers: one list per layer, each a non-empty ascending set of head indices,
    /// every layer with its own weights and a mechanism whose heads do not depend on their index.
    fn validate_kept_heads(&self) -> Result<(), ModelError> {
        if self.kept_heads.is_empty() {
            return Ok(());
        }
        let bad = |value: String, fix: String| {
            Err(ModelError::Config {
                field: "model.kept_heads",
                value,
                fix,
            })
        };
        if self.kept_heads.len() != self.n_layers {
            return bad(
                format!("{} lists", self.kept_heads.len()),
                format!(
                    "must list the kept heads of each of the {} layers",
                    self.n_layers
                ),
            );
        }
        for (layer, kept) in self.kept_heads.iter().enumerate() {
            let ascending = kept.windows(2).all(|w| w[0] < w[1]);
            if kept.is_empty() || !ascending || kept.iter().any(|&h| h >= self.n_heads) {
                return bad(
                    format!("{kept:?} at layer {layer}"),
                    format!(
                        "each layer keeps at least one head, listed once in ascending order, \
                         each below n_heads = {}",
                        self.n_heads
                    ),
                );
            }
        }
        if self.share != Share::None {
            return bad(
                "with shared layers".into(),
                "head-pruned layers need their own weights: set model.share = \"none\"".into(),
            );
        }
        for attention in self.layer_mechanisms() {
            attention.check_head_removal()?;
        }
        Ok(())
    }

    /// Heads of layer `layer`: its kept heads after head pruning, else `n_heads`.
    pub fn heads_at(&self, layer: usize) -> usize {
        self.kept_heads.get(layer).map_or(self.n_heads, Vec::len)
    }

    /// Reversible blocks split the width in two halves, each with the heads, and already rebuild
    /// every block in the backward pass.
    fn validate_reversible(&self) -> Result<(), ModelError> {
        if self.residual != Residual::Reversible {
            return Ok(());
        }
        let bad = |field, value: String, fix: String| Err(ModelError::Config { field, value, fix });
        let half = self.d_model / 2;
        if !self.d_model.is_multiple_of(2) {
            return bad(
                "model.d_model",
                self.d_model.to_string(),
                "reversible blocks split the channels in two halves: make d_model even".into(),
            );
        }
        if !half.is_multiple_of(self.n_heads) {
            return bad(
                "model.n_heads",
                self.n_heads.to_string(),
                format!(
                    "reversible branches are d_model/2 = {half} wide: n_heads must divide {half}"
                ),
            );
        }
        if self.recompute != Recompute::None {
            return bad(
                "model.recompute",
                format!("{:?}", self.recompute),
                "reversible blocks already rebuild every block from its output; set \
                 model.recompute = \"none\""
                    .into(),
            );
        }
        if self.layer_mechanisms().any(|a| a.recurrence().is_some()) {
            return bad(
                "model.residual",
                "reversible".into(),
                "segment recurrence (xl with segment) remembers inputs a reversible rebuild \
                 does not restore; use model.residual = \"pre_norm\""
                    .into(),
            );
        }
        Ok(())
    }

    /// A sharing pattern must divide the depth, and depths that share a block must agree on its
    /// mechanism.
    fn validate_sharing(&self) -> Result<(), ModelError> {
        let bad = |fix: String| {
            Err(ModelError::Config {
                field: "model.share",
                value: format!("{:?}", self.share).to_lowercase(),
                fix,
            })
        };
        if let Some(problem) = self.share.problem(self.n_layers) {
            return bad(problem);
        }
        let tied: Vec<&AttentionConfig> = self
            .layer_mechanisms()
            .filter(|a| a.shares_across_layers())
            .collect();
        if tied.windows(2).any(|w| w[0] != w[1]) {
            return Err(ModelError::Config {
                field: "model.layer_attention",
                value: "linformer share = \"layerwise\" with different parameters".into(),
                fix: "the layers share one projection: give them the same k and max_len".into(),
            });
        }
        if self.layer_attention.is_empty() || self.share == Share::None {
            return Ok(());
        }
        for depth in 0..self.n_layers {
            let first = (0..depth).find(|&d| {
                self.share.block_at(d, self.n_layers) == self.share.block_at(depth, self.n_layers)
            });
            if let Some(first) = first
                && self.layer_attention[first] != self.layer_attention[depth]
            {
                return bad(format!(
                    "layers {first} and {depth} share a block but model.layer_attention gives them \
                     different mechanisms; give them the same one or share differently"
                ));
            }
        }
        Ok(())
    }

    /// Segment recurrence is a property of the whole encoder: every layer must recur alike, and
    /// the pooled vector must not be a CLS token that only the first segment sees.
    fn validate_segments(&self) -> Result<(), ModelError> {
        let layers: Vec<_> = self.layer_mechanisms().map(|a| a.recurrence()).collect();
        if layers.iter().all(Option::is_none) {
            return Ok(());
        }
        let bad = |value: String, fix: &str| {
            Err(ModelError::Config {
                field: "model.attention",
                value,
                fix: fix.into(),
            })
        };
        if layers.iter().any(|l| *l != layers[0]) {
            return bad(
                "segment recurrence in some layers".into(),
                "segment recurrence runs the whole encoder per segment: give every layer the \
                 same mechanism with the same segment and mem_len",
            );
        }
        if self.pool == Pool::Cls {
            return bad(
                "segment recurrence and pool = cls".into(),
                "the CLS token sits in the first segment and would only see it; set model.pool = \
                 \"mean\"",
            );
        }
        Ok(())
    }

    /// The mechanisms of the layers, each once where every layer shares one: what validation
    /// walks (a loop over a huge `n_layers` hung, and collecting it aborted, before the memory
    /// check could refuse it).
    pub fn layer_mechanisms(&self) -> impl Iterator<Item = &AttentionConfig> {
        let shared = self.layer_attention.is_empty().then_some(&self.attention);
        shared.into_iter().chain(&self.layer_attention)
    }

    /// The mechanism of layer `layer` (counting from 0).
    pub fn attention_at(&self, layer: usize) -> &AttentionConfig {
        self.layer_attention.get(layer).unwrap_or(&self.attention)
    }

    /// Positions the encoder sees for a task: its longest input, plus one for a CLS token.
    pub fn positions_for(&self, dims: TaskShape) -> usize {
        dims.max_len + usize::from(self.pool == Pool::Cls)
    }

    /// Where layer `layer`'s mechanism sits, for inputs of up to `max_len` positions.
    pub fn layout(&self, layer: usize, max_len: usize) -> AttentionLayout {
        AttentionLayout {
            layer,
            max_len,
            heads: self.heads_at(layer),
            head_dim: self.d_model / self.n_heads,
        }
    }

    /// Validates the config, then builds the model with parameters drawn from the device's RNG.
    pub fn init(&self, dims: TaskShape, device: &Device) -> Result<Classifier, ModelError> {
        self.validate()?;
        self.check_task(dims)?;
        Ok(Classifier::new(self, dims, device))
    }

    /// A lower bound on the model's parameters for a task (token embeddings, every block's
    /// attention projections and feed-forward weights, the head, and what each mechanism says it
    /// allocates), saturating instead of overflowing.
    pub fn parameters_at_least(&self, dims: TaskShape) -> u64 {
        // Tied depths hold one block between them; a bad pattern is caught by validation.
        let blocks = if self.share.problem(self.n_layers).is_none() {
            self.share.blocks(self.n_layers)
        } else {
            self.n_layers
        };
        let [d, f, layers] = [self.d_model, self.d_ff, blocks].map(|x| x as u64);
        let block = d.saturating_mul(f).saturating_mul(2);
        // Q/K/V/O: 4·d·(heads · head dimension) per block; narrower where heads were pruned.
        let head_dim = (self.d_model / self.n_heads.max(1)) as u64;
        let projection = |heads: usize| {
            let inner = (heads as u64).saturating_mul(head_dim);
            d.saturating_mul(inner).saturating_mul(4)
        };
        // Summed over the kept-head lists (finite, unlike a huge n_layers a fuzzer may ask for).
        let projections = match self.kept_heads.is_empty() {
            true => layers.saturating_mul(projection(self.n_heads)),
            false => (self.kept_heads.iter())
                .fold(0u64, |sum, k| sum.saturating_add(projection(k.len()))),
        };
        // A Switch layer holds E MLPs and the router where a dense block holds one MLP.
        let experts = match &self.feed_forward {
            FeedForwardConfig::Switch(s) => {
                let layers = (blocks / s.every.max(1)) as u64; // depths k, 2k, … (counting from 1)
                let extra = d
                    .saturating_mul(f)
                    .saturating_mul(2)
                    .saturating_mul((s.experts as u64).saturating_sub(1))
                    .saturating_add(d.saturating_mul(s.experts as u64));
                layers.saturating_mul(extra)
            }
            FeedForwardConfig::Dense => 0,
        };
        let positions = self.positions_for(dims);
        let mechanisms = match self.layer_attention.is_empty() {
            true => {
                layers.saturating_mul(self.attention.floats_at_least(self.layout(0, positions)))
            }
            false => (0..self.layer_attention.len())
                .filter(|&l| blocks == self.n_layers || self.share.owns(l, self.n_layers))
                .fold(0u64, |sum, l| {
                    let layout = self.layout(l, positions);
                    sum.saturating_add(self.layer_attention[l].floats_at_least(layout))
                }),
        };
        (dims.vocab_size as u64)
            .saturating_mul(d)
            .saturating_add(layers.saturating_mul(block))
            .saturating_add(projections)
            .saturating_add(d.saturating_mul(dims.n_classes as u64))
            .saturating_add(mechanisms)
            .saturating_add(experts)
    }

    /// Checks the model against a task's shape: what every layer's mechanism must fit.
    pub fn check_task(&self, dims: TaskShape) -> Result<(), ModelError> {
        if dims.vocab_size < 2 || dims.n_classes < 2 || dims.max_len == 0 {
            return Err(ModelError::Config {
                field: "task",
                value: format!("{dims:?}"),
                fix: "a task needs at least 2 tokens, 2 classes and length 1".into(),
            });
        }
        if self.head == Head::Tied && (dims.paired || dims.vocab_size != dims.n_classes + 1) {
            return bad(
                "model.head",
                "tied".into(),
                "the token embedding can only be the output layer when the classes are the \
                 tokens shifted by one (task lm) and nothing is paired; use \"linear\" or \"mlp\"",
            );
        }
        if dims.paired && self.exits != ExitsConfig::None {
            return bad(
                "model.exits",
                "confidence".into(),
                "this task compares two passages per example, which exit together; early exit \
                 is not built for paired tasks yet: use model.exits = { kind = \"none\" }",
            );
        }
        let positions = self.positions_for(dims);
        for attention in self.layer_mechanisms() {
            attention.check_shape(positions, self.n_heads)?;
        }
        Ok(())
    }
}

/// A config error: `field` = `value` is refused, `fix` says what would be accepted.
fn bad(field: &'static str, value: String, fix: impl Into<String>) -> Result<(), ModelError> {
    Err(ModelError::Config {
        field,
        value,
        fix: fix.into(),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::SwitchConfig;

    /// A model small enough for unit tests.
    pub(crate) fn small() -> ModelConfig {
        ModelConfig {
            d_model: 16,
            n_heads: 4,
            n_layers: 2,
            d_ff: 32,
            dropout: 0.0,
            positions: Positions::Learned,
            pool: Pool::Cls,
            head: Head::Mlp,
            causal: false,
            residual: Residual::PreNorm,
            feed_forward: FeedForwardConfig::Dense,
            depth: DepthConfig::Fixed,
            exits: ExitsConfig::None,
            attention: AttentionConfig::default(),
            layer_attention: vec![],
            share: Share::None,
            recompute: Recompute::default(),
            ffn_chunk: None,
            kept_heads: vec![],
            tensor_parallel: 1,
        }
    }

    #[test]
    fn xl_segments_need_every_layer_and_mean_pooling() {
        let xl =
            AttentionConfig::from_name_and_params("xl", &[("segment".into(), "8".into())]).unwrap();
        let cls = ModelConfig {
            attention: xl.clone(),
            ..small()
        };
        assert!(cls.validate().unwrap_err().to_string().contains("pool"));
        let mixed = ModelConfig {
            pool: Pool::Mean,
            layer_attention: vec![xl.clone(), AttentionConfig::default()],
            ..small()
        };
        assert!(
            mixed
                .validate()
                .unwrap_err()
                .to_string()
                .contains("every layer")
        );
        ModelConfig {
            pool: Pool::Mean,
            attention: xl,
            ..small()
        }
        .validate()
        .unwrap();
    }

    #[test]
    fn layers_may_use_different_mechanisms() {
        let local = AttentionConfig::from_name_and_params("local", &[("block".into(), "4".into())])
            .unwrap();
        let c = ModelConfig {
            layer_attention: vec![local.clone(), AttentionConfig::default()],
            ..small()
        };
        c.validate().unwrap();
        assert_eq!(c.attention_at(0), &local);
        assert_eq!(c.attention_at(1).name(), "full");
        let wrong = ModelConfig {
            layer_attention: vec![local],
            ..small()
        };
        assert!(
            wrong
                .validate()
                .unwrap_err()
                .to_string()
                .contains("model.layer_attention")
        );
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), c, "{text}");
    }

    #[test]
    fn causal_is_rejected_for_mechanisms_without_a_causal_form() {
        let bigbird = AttentionConfig::from_name_and_params("bigbird", &[]).unwrap();
        let c = ModelConfig {
            causal: true,
            attention: bigbird,
            ..small()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("no causal form")
        );
    }

    #[test]
    fn heads_must_divide_width() {
        let c = ModelConfig {
            n_heads: 5,
            ..small()
        };
        let msg = c.validate().unwrap_err().to_string();
        assert!(
            msg.contains("model.n_heads") && msg.contains("1, 2, 4, 8, 16"),
            "{msg}"
        );
    }

    #[test]
    fn zero_sizes_and_bad_dropout_are_rejected() {
        let c = ModelConfig {
            n_layers: 0,
            ..small()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("model.n_layers")
        );
        let c = ModelConfig {
            dropout: 1.0,
            ..small()
        };
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("model.dropout")
        );
    }

    /// The Switch layer reads from TOML with its defaults, and each bad value is refused with
    /// the field that holds it.
    #[test]
    fn switch_layers_read_from_toml_and_refuse_bad_values() {
        let base = "d_model = 16\nn_heads = 4\nn_layers = 2\nd_ff = 32\ndropout = 0.0\n";
        let c: ModelConfig = toml::from_str(&format!(
            "{base}feed_forward = {{ kind = \"switch\", experts = 4 }}"
        ))
        .unwrap();
        let FeedForwardConfig::Switch(s) = &c.feed_forward else {
            panic!("{c:?}")
        };
        assert_eq!(
            (s.experts, s.capacity_factor, s.balance, s.every),
            (4, 1.25, 0.01, 1)
        );
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        assert_eq!(toml::from_str::<ModelConfig>(&text).unwrap(), c, "{text}");
        let typo = toml::from_str::<ModelConfig>(&format!(
            "{base}feed_forward = {{ kind = \"switch\", experts = 4, expert = 2 }}"
        ));
        assert!(typo.unwrap_err().to_string().contains("expert"));

        let with = |edit: fn(&mut SwitchConfig), extra: fn(&mut ModelConfig)| {
            let mut s = SwitchConfig {
                experts: 4,
                capacity_factor: 1.0,
                balance: 0.01,
                z_loss: 0.0,
                jitter: 0.0,
                every: 1,
            };
            edit(&mut s);
            let mut c = ModelConfig {
                feed_forward: FeedForwardConfig::Switch(s),
                ..small()
            };
            extra(&mut c);
            c.validate().map_err(|e| e.to_string())
        };
        let none = |_: &mut ModelConfig| {};
        for (edit, field) in [
            ((|s| s.experts = 1) as fn(&mut SwitchConfig), "experts"),
            (|s| s.capacity_factor = 0.0, "capacity_factor"),
            (|s| s.capacity_factor = -1.0, "capacity_factor"),
            (|s| s.balance = -0.1, "balance"),
            (|s| s.z_loss = f64::NAN, "z_loss"),
            (|s| s.jitter = 1.0, "jitter"),
            (|s| s.every = 0, "every"),
            (|s| s.every = 3, "every"),
        ] {
            let e = with(edit, none).unwrap_err();
            assert!(e.contains(&format!("model.feed_forward.{field}")), "{e}");
        }
        with(|s| s.every = 2, none).unwrap();
        let e = with(|_| {}, |c| c.recompute = Recompute::Every(1)).unwrap_err();
        assert!(e.contains("model.recompute"), "{e}");
        let e = with(|_| {}, |c| c.residual = Residual::Reversible).unwrap_err();
        assert!(e.contains("model.residual"), "{e}");
        let e = with(|_| {}, |c| c.ffn_chunk = Some(4)).unwrap_err();
        assert!(e.contains("model.ffn_chunk"), "{e}");
        let e = with(|s| s.every = 2, |c| c.share = Share::All).unwrap_err();
        assert!(e.contains("model.share"), "{e}");
    }

    #[test]
    fn toml_fills_defaults_and_rejects_unknown_fields() {
        let c: ModelConfig =
            toml::from_str("d_model = 16\nn_heads = 4\nn_layers = 2\nd_ff = 32\ndropout = 0.0")
                .unwrap();
        assert_eq!(c, small());
        let e = toml::from_str::<ModelConfig>(
            "d_model = 16\nn_heads = 4\nn_layers = 2\nd_ff = 32\ndropout = 0.0\nwidth = 3",
        )
        .unwrap_err();
        assert!(e.to_string().contains("width"), "{e}");
    }
}
