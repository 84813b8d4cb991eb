//! Choosing a mechanism by name and parameters, and checking the choice before anything runs.

use burn::tensor::Device;
use serde::{Deserialize, Deserializer, Serialize};

use crate::sparse::{
    BigBirdAttention, BlockBertAttention, FixedAttention, LocalAttention, LongformerAttention,
    SlidingAttention, StridedAttention,
};
use crate::synthesizer::SynthesizerMode;
use crate::{
    Attention, AttentionError, AttentionLayout, FlashAttention, FullAttention, LinearAttention,
    LinformerAttention, LshAttention, NystromAttention, PerformerAttention, SinkhornAttention,
    SynthesizerAttention, XlAttention,
};

/// Parameters of [`FullAttention`]: it has none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullConfig {}

/// `flash`: exact attention in tiles with its own backward pass.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlashConfig {
    /// Rows and columns per tile. Default 128.
    #[serde(default = "one_twenty_eight")]
    pub tile: usize,
}

fn one_twenty_eight() -> usize {
    128
}

/// `linear`: `elu + 1` feature-map attention; it has no parameters.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinearConfig {}

/// The feature map of `performer`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum PerformerKernel {
    /// Positive random features for the softmax kernel (FAVOR+).
    #[default]
    Softmax,
    /// ReLU random features (LRA's setting).
    Relu,
}

/// `performer`: FAVOR+ random-feature attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PerformerConfig {
    /// Random features `m`. Default 256 (LRA).
    #[serde(default = "two_fifty_six")]
    pub features: usize,
    /// `softmax` or `relu`. Default `softmax`.
    #[serde(default)]
    pub kernel: PerformerKernel,
    /// Seed of the random features. Default 0.
    #[serde(default)]
    pub seed: u64,
    /// Redraw the features every this many training steps; 0 (default) never redraws.
    #[serde(default)]
    pub redraw: usize,
}

fn two_fifty_six() -> usize {
    256
}

/// `local`: non-overlapping blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LocalConfig {
    /// Block size. Default 50 (LRA).
    #[serde(default = "fifty")]
    pub block: usize,
}

/// `sliding`: a window of `window` positions on each side.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlidingConfig {
    /// Largest distance seen. Default 50.
    #[serde(default = "fifty")]
    pub window: usize,
}

/// `strided`: Sparse Transformer's strided pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StridedConfig {
    /// Stride `l`; at least 2. Default 50.
    #[serde(default = "fifty")]
    pub stride: usize,
}

/// `fixed`: Sparse Transformer's fixed pattern.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FixedConfig {
    /// Block size `l`. Default 50 (LRA).
    #[serde(default = "fifty")]
    pub block: usize,
    /// Summary columns `c` per block, `1..=block`. Default 10 (LRA).
    #[serde(default = "ten")]
    pub summary: usize,
}

/// `cascade`: a sliding window that widens with depth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// Window of the first layer. Default 16.
    #[serde(default = "sixteen")]
    pub window: usize,
    /// Factor by which each layer widens the window, ≥ 1. Default 2.
    #[serde(default = "two")]
    pub growth: f64,
}

/// `blockbert`: per-head block permutations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockBertConfig {
    /// Number of blocks the sequence is split into. Default 2.
    #[serde(default = "two_usize")]
    pub blocks: usize,
}

/// `longformer`: dilated sliding window plus global positions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LongformerConfig {
    /// Keys seen on each side. Default 32.
    #[serde(default = "thirty_two")]
    pub window: usize,
    /// Positions that see and are seen by all, e.g. `0,40` or `[0, 40]`. Default `[0]` (CLS).
    #[serde(default = "first", deserialize_with = "positions")]
    pub global: Vec<usize>,
    /// Gap between window keys (1 = none). Default 1.
    #[serde(default = "one")]
    pub dilation: usize,
}

/// `bigbird`: window, global and random blocks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigBirdConfig {
    /// Block size. Default 64 (LRA).
    #[serde(default = "sixty_four")]
    pub block: usize,
    /// Leading global blocks. Default 1.
    #[serde(default = "one")]
    pub global_blocks: usize,
    /// Random blocks per query block and head. Default 3 (LRA).
    #[serde(default = "three")]
    pub random_blocks: usize,
    /// Seed of the random blocks. Default 0.
    #[serde(default)]
    pub seed: u64,
}

/// How Linformer shares its length projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum LinformerShare {
    /// Every head has its own `E` and `F`.
    None,
    /// All heads share one `E` and one `F`.
    Headwise,
    /// All heads share one matrix used as both `E` and `F` (LRA's setting).
    #[default]
    Kv,
    /// One matrix for every layer: not available yet (it needs parameters tied across layers).
    Layerwise,
}

/// `linformer`: keys and values projected along the length axis.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LinformerConfig {
    /// Projected length `k`. Default 16 (LRA).
    #[serde(default = "sixteen")]
    pub k: usize,
    /// `none`, `headwise` or `kv`. Default `kv`.
    #[serde(default)]
    pub share: LinformerShare,
    /// Longest sequence the projections span. Default: the model's (task's) longest input.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// `synthesizer`: attention weights without (or besides) dot products.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SynthesizerConfig {
    /// `dense`, `random`, `factorized-dense` or `factorized-random`. Default `dense`.
    #[serde(default)]
    pub mode: SynthesizerMode,
    /// Add dot-product scores to the synthesised logits. Default false.
    #[serde(default)]
    pub mix: bool,
    /// Keep the random matrices fixed (random modes). Default false.
    #[serde(default)]
    pub frozen: bool,
    /// Rank of factorized-random. Default 8.
    #[serde(default = "eight")]
    pub rank: usize,
    /// Longest sequence the parameters span. Default: the model's (task's) longest input.
    #[serde(default)]
    pub max_len: Option<usize>,
}

/// `nystrom`: softmax attention through segment-mean landmarks.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NystromConfig {
    /// Landmarks `m`. Default 64.
    #[serde(default = "sixty_four")]
    pub landmarks: usize,
    /// Newton–Schulz iterations of the pseudo-inverse. Default 6.
    #[serde(default = "six")]
    pub pinv_iters: usize,
    /// Odd kernel size of the depthwise value convolution; none by default.
    #[serde(default)]
    pub conv_kernel: Option<usize>,
}

/// `lsh`: Reformer's hashed, sorted, chunked shared-QK attention.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LshConfig {
    /// Buckets per round: 1 or an even number. Default 8.
    #[serde(default = "eight")]
    pub buckets: usize,
    /// Hashing rounds. Default 2.
    #[serde(default = "two_usize")]
    pub hashes: usize,
    /// Tokens per chunk of the sorted sequence. Default 32.
    #[serde(default = "thirty_two")]
    pub chunk: usize,
    /// Seed of the random rotations. Default 0.
    #[serde(default)]
    pub seed: u64,
}

/// `sinkhorn`: learned block sorting by Sinkhorn normalisation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SinkhornConfig {
    /// Block size. Default 32.
    #[serde(default = "thirty_two")]
    pub block: usize,
    /// Sinkhorn iterations. Default 8.
    #[serde(default = "eight")]
    pub sinkhorn_iters: usize,
    /// Temperature dividing the sorting scores, > 0. Default 0.75.
    #[serde(default = "three_quarters")]
    pub temperature: f64,
    /// SortCut: every query sees the first `sortcut` sorted blocks. Default none.
    #[serde(default)]
    pub sortcut: Option<usize>,
}

/// `xl`: Transformer-XL's relative attention with segment memory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct XlConfig {
    /// Positions remembered from earlier segments, per layer. Default 64.
    #[serde(default = "sixty_four")]
    pub mem_len: usize,
    /// Segment length the model cuts each sequence into; default: the whole sequence is one
    /// segment (no memory is used then).
    #[serde(default)]
    pub segment: Option<usize>,
}

fn three_quarters() -> f64 {
    0.75
}
fn six() -> usize {
    6
}
fn eight() -> usize {
    8
}
fn one() -> usize {
    1
}
fn two_usize() -> usize {
    2
}
fn three() -> usize {
    3
}
fn ten() -> usize {
    10
}
fn sixteen() -> usize {
    16
}
fn thirty_two() -> usize {
    32
}
fn fifty() -> usize {
    50
}
fn sixty_four() -> usize {
    64
}
fn two() -> f64 {
    2.0
}
fn first() -> Vec<usize> {
    vec![0]
}

/// Reads positions from a list (`[0, 40]`), one number, or comma-separated text (`"0,40"`).
fn positions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<usize>),
        One(usize),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::List(v) => Ok(v),
        Raw::One(p) => Ok(vec![p]),
        Raw::Text(s) if s.trim().is_empty() => Ok(vec![]),
        Raw::Text(s) => s
            .split(',')
            .map(|p| {
                p.trim().parse::<usize>().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "global: `{p}` is not a position; write e.g. 0,40"
                    ))
                })
            })
            .collect(),
    }
}

/// Which attention mechanism a layer uses, with its parameters.
///
/// In TOML: `attention = { kind = "full" }`; parameters sit beside `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttentionConfig {
    /// Dense softmax attention.
    Full(FullConfig),
    /// Exact attention in tiles, O(N) memory.
    Flash(FlashConfig),
    /// Non-overlapping blocks.
    Local(LocalConfig),
    /// Sliding window.
    Sliding(SlidingConfig),
    /// Sparse Transformer, strided.
    Strided(StridedConfig),
    /// Sparse Transformer, fixed.
    Fixed(FixedConfig),
    /// Sliding window widening with depth.
    Cascade(CascadeConfig),
    /// Per-head block permutations.
    #[serde(rename = "blockbert")]
    BlockBert(BlockBertConfig),
    /// Dilated window plus global positions.
    Longformer(LongformerConfig),
    /// Window, global and random blocks.
    #[serde(rename = "bigbird")]
    BigBird(BigBirdConfig),
    /// Kernel attention with `elu + 1` features, O(N·D²).
    Linear(LinearConfig),
    /// FAVOR+ random-feature attention.
    Performer(PerformerConfig),
    /// Length-projected keys and values.
    Linformer(LinformerConfig),
    /// Synthesised attention weights.
    Synthesizer(SynthesizerConfig),
    /// Landmark (Nyström) approximation of softmax attention.
    Nystrom(NystromConfig),
    /// Reformer's locality-sensitive-hashing attention.
    Lsh(LshConfig),
    /// Learned block sorting.
    Sinkhorn(SinkhornConfig),
    /// Relative attention with segment memory.
    Xl(XlConfig),
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig::Full(FullConfig::default())
    }
}

fn out_of_range(field: &'static str, value: impl ToString, fix: impl ToString) -> AttentionError {
    AttentionError::OutOfRange {
        field,
        value: value.to_string(),
        fix: fix.to_string(),
    }
}

fn at_least(field: &'static str, value: usize, min: usize) -> Result<(), AttentionError> {
    if value < min {
        return Err(out_of_range(
            field,
            value,
            format!("must be at least {min}"),
        ));
    }
    Ok(())
}

impl AttentionConfig {
    /// The names accepted for `kind`.
    pub const NAMES: &'static [&'static str] = &[
        "full",
        "flash",
        "local",
        "sliding",
        "strided",
        "fixed",
        "cascade",
        "blockbert",
        "longformer",
        "bigbird",
        "linear",
        "performer",
        "linformer",
        "synthesizer",
        "nystrom",
        "lsh",
        "sinkhorn",
        "xl",
    ];

    /// The mechanism's config name.
    pub fn name(&self) -> &'static str {
        match self {
            AttentionConfig::Full(_) => "full",
            AttentionConfig::Flash(_) => "flash",
            AttentionConfig::Local(_) => "local",
            AttentionConfig::Sliding(_) => "sliding",
            AttentionConfig::Strided(_) => "strided",
            AttentionConfig::Fixed(_) => "fixed",
            AttentionConfig::Cascade(_) => "cascade",
            AttentionConfig::BlockBert(_) => "blockbert",
            AttentionConfig::Longformer(_) => "longformer",
            AttentionConfig::BigBird(_) => "bigbird",
            AttentionConfig::Linear(_) => "linear",
            AttentionConfig::Performer(_) => "performer",
            AttentionConfig::Linformer(_) => "linformer",
            AttentionConfig::Synthesizer(_) => "synthesizer",
            AttentionConfig::Nystrom(_) => "nystrom",
            AttentionConfig::Lsh(_) => "lsh",
            AttentionConfig::Sinkhorn(_) => "sinkhorn",
            AttentionConfig::Xl(_) => "xl",
        }
    }

    /// Builds a config from a name and `key=value` parameters, as the command line gives them.
    ///
    /// Values are read as TOML scalars (`3`, `0.5`, `true`), falling back to strings, so the same
    /// field names and types apply as in a config file.
    pub fn from_name_and_params(
        name: &str,
        params: &[(String, String)],
    ) -> Result<Self, AttentionError> {
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(name.to_string()));
        for (key, raw) in params {
            table.insert(key.clone(), toml_scalar(raw));
        }
        let config: AttentionConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| AttentionError::OutOfRange {
                    field: "attention",
                    value: name.to_string(),
                    fix: format!(
                        "{}; known mechanisms: {}",
                        e.message().trim(),
                        Self::NAMES.join(", ")
                    ),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Whether mechanism `name` takes a parameter called `key` (e.g. `seed`).
    pub fn has_param(name: &str, key: &str) -> bool {
        Self::from_name_and_params(name, &[])
            .ok()
            .and_then(|c| toml::Value::try_from(c).ok())
            .is_some_and(|v| v.get(key).is_some())
    }

    /// Checks every parameter against its range; says which one is wrong and what would do.
    pub fn validate(&self) -> Result<(), AttentionError> {
        match self {
            AttentionConfig::Full(_) | AttentionConfig::Linear(_) => Ok(()),
            AttentionConfig::Flash(c) => at_least("tile", c.tile, 1),
            AttentionConfig::Performer(c) => at_least("features", c.features, 1),
            AttentionConfig::Local(c) => at_least("block", c.block, 1),
            AttentionConfig::Sliding(c) => at_least("window", c.window, 1),
            AttentionConfig::Strided(c) => at_least("stride", c.stride, 2),
            AttentionConfig::Fixed(c) => {
                at_least("block", c.block, 1)?;
                at_least("summary", c.summary, 1)?;
                if c.summary > c.block {
                    return Err(out_of_range(
                        "summary",
                        c.summary,
                        format!("must not exceed block = {}", c.block),
                    ));
                }
                Ok(())
            }
            AttentionConfig::Cascade(c) => {
                at_least("window", c.window, 1)?;
                if !(c.growth >= 1.0 && c.growth.is_finite()) {
                    return Err(out_of_range("growth", c.growth, "must be a number ≥ 1"));
                }
                Ok(())
            }
            AttentionConfig::BlockBert(c) => at_least("blocks", c.blocks, 1),
            AttentionConfig::Longformer(c) => {
                at_least("window", c.window, 1)?;
                at_least("dilation", c.dilation, 1)
            }
            AttentionConfig::BigBird(c) => at_least("block", c.block, 1),
            AttentionConfig::Linformer(c) => {
                at_least("k", c.k, 1)?;
                at_least("max_len", c.max_len.unwrap_or(1), 1)?;
                if c.share == LinformerShare::Layerwise {
                    return Err(out_of_range(
                        "share",
                        "layerwise",
                        "sharing one projection across layers needs parameters tied across \
                         layers, which eft does not have yet; use none, headwise or kv",
                    ));
                }
                Ok(())
            }
            AttentionConfig::Xl(c) => at_least("segment", c.segment.unwrap_or(1), 1),
            AttentionConfig::Sinkhorn(c) => {
                at_least("block", c.block, 1)?;
                at_least("sinkhorn_iters", c.sinkhorn_iters, 1)?;
                at_least("sortcut", c.sortcut.unwrap_or(1), 1)?;
                if !(c.temperature > 0.0 && c.temperature.is_finite()) {
                    return Err(out_of_range(
                        "temperature",
                        c.temperature,
                        "must be a number > 0",
                    ));
                }
                Ok(())
            }
            AttentionConfig::Lsh(c) => {
                at_least("buckets", c.buckets, 1)?;
                at_least("hashes", c.hashes, 1)?;
                at_least("chunk", c.chunk, 1)?;
                if c.buckets > 1 && !c.buckets.is_multiple_of(2) {
                    return Err(out_of_range(
                        "buckets",
                        c.buckets,
                        "must be 1 or even: the hash picks the largest of x·R and −x·R",
                    ));
                }
                Ok(())
            }
            AttentionConfig::Nystrom(c) => {
                at_least("landmarks", c.landmarks, 1)?;
                at_least("pinv_iters", c.pinv_iters, 1)?;
                match c.conv_kernel {
                    Some(k) if k.is_multiple_of(2) => Err(out_of_range(
                        "conv_kernel",
                        k,
                        "must be odd, so the convolution is centred on each token",
                    )),
                    _ => Ok(()),
                }
            }
            AttentionConfig::Synthesizer(c) => {
                at_least("rank", c.rank, 1)?;
                at_least("max_len", c.max_len.unwrap_or(1), 1)?;
                let random = matches!(
                    c.mode,
                    SynthesizerMode::Random | SynthesizerMode::FactorizedRandom
                );
                if c.frozen && !random {
                    return Err(out_of_range(
                        "frozen",
                        true,
                        "only the random modes have a matrix to freeze; use mode = random or \
                         factorized-random",
                    ));
                }
                Ok(())
            }
        }
    }

    /// Checks the parameters against a concrete sequence length and head count, strictly: a
    /// window, block or position that the length cannot hold is an error here (at run time the
    /// mechanisms cap them to shorter batches instead).
    pub fn check_shape(&self, len: usize, heads: usize) -> Result<(), AttentionError> {
        self.validate()?;
        let fits = |field: &'static str, value: usize| {
            if value > len {
                return Err(out_of_range(
                    field,
                    value,
                    format!("must not exceed the sequence length {len}"),
                ));
            }
            Ok(())
        };
        match self {
            AttentionConfig::Full(_)
            | AttentionConfig::Flash(_)
            | AttentionConfig::Linear(_)
            | AttentionConfig::Performer(_) => Ok(()),
            AttentionConfig::Linformer(LinformerConfig { max_len, .. })
            | AttentionConfig::Synthesizer(SynthesizerConfig { max_len, .. }) => match max_len {
                Some(m) if *m < len => Err(out_of_range(
                    "max_len",
                    m,
                    format!(
                        "`{}` is built for sequences up to {m} tokens but is given {len}; raise \
                         max_len or leave it out to use the longest input",
                        self.name()
                    ),
                )),
                _ => Ok(()),
            },
            AttentionConfig::Local(c) => fits("block", c.block),
            AttentionConfig::Nystrom(c) => fits("landmarks", c.landmarks),
            AttentionConfig::Xl(_) => Ok(()),
            AttentionConfig::Lsh(c) => fits("chunk", c.chunk).and(fits("buckets", c.buckets)),
            AttentionConfig::Sinkhorn(c) => {
                fits("block", c.block)?;
                match c.sortcut {
                    Some(k) if k > len.div_ceil(c.block) => Err(out_of_range(
                        "sortcut",
                        k,
                        format!(
                            "must not exceed the {} blocks of the sequence",
                            len.div_ceil(c.block)
                        ),
                    )),
                    _ => Ok(()),
                }
            }
            AttentionConfig::Sliding(c) => fits("window", c.window),
            AttentionConfig::Cascade(c) => fits("window", c.window),
            AttentionConfig::BlockBert(c) => fits("blocks", c.blocks),
            AttentionConfig::BigBird(c) => fits("block", c.block),
            AttentionConfig::Strided(c) => fits("stride", c.stride).and(two_head_sets(heads)),
            AttentionConfig::Fixed(c) => fits("block", c.block).and(two_head_sets(heads)),
            AttentionConfig::Longformer(c) => {
                fits("window", c.window * c.dilation)?;
                match c.global.iter().find(|&&g| g >= len) {
                    Some(g) => Err(out_of_range(
                        "global",
                        g,
                        format!("positions must be below the sequence length {len}"),
                    )),
                    None => Ok(()),
                }
            }
        }
    }

    /// Whether the mechanism defines a causal form.
    pub fn supports_causal(&self) -> bool {
        if let AttentionConfig::Sinkhorn(c) = self {
            // SortCut's first blocks are shared by every query, later ones included.
            return c.sortcut.is_none();
        }
        !matches!(
            self,
            AttentionConfig::BlockBert(_)
                | AttentionConfig::BigBird(_)
                | AttentionConfig::Linformer(_)
                | AttentionConfig::Nystrom(_)
        )
    }

    /// Rejects a causal request for a mechanism without a causal form.
    pub fn check_causal(&self, causal: bool) -> Result<(), AttentionError> {
        if causal && !self.supports_causal() {
            return Err(out_of_range(
                "causal",
                true,
                format!(
                    "`{}` has no causal form; drop causal or pick another mechanism",
                    self.name()
                ),
            ));
        }
        Ok(())
    }

    /// Builds the mechanism for one layer; learned parameters are drawn from `device`'s generator
    /// and sized by `layout` (`cascade` widens with `layout.layer`).
    pub fn init(&self, layout: AttentionLayout, device: &Device) -> Attention {
        let layer = layout.layer;
        match self {
            AttentionConfig::Full(_) => Attention::Full(FullAttention),
            AttentionConfig::Flash(c) => Attention::Flash(FlashAttention { tile: c.tile }),
            AttentionConfig::Linear(_) => Attention::Linear(LinearAttention),
            AttentionConfig::Performer(c) => Attention::Performer(PerformerAttention::new(
                c.features,
                c.kernel == PerformerKernel::Relu,
                c.seed,
                c.redraw,
                layout.head_dim,
                device,
            )),
            AttentionConfig::Local(c) => Attention::Local(LocalAttention { block: c.block }),
            AttentionConfig::Sliding(c) => {
                Attention::Sliding(SlidingAttention { window: c.window })
            }
            AttentionConfig::Strided(c) => {
                Attention::Strided(StridedAttention { stride: c.stride })
            }
            AttentionConfig::Fixed(c) => Attention::Fixed(FixedAttention {
                block: c.block,
                summary: c.summary,
            }),
            AttentionConfig::Cascade(c) => {
                let window =
                    (c.window as f64 * c.growth.powi(layer as i32)).min(usize::MAX as f64 / 4.0);
                Attention::Cascade(SlidingAttention {
                    window: window as usize,
                })
            }
            AttentionConfig::BlockBert(c) => {
                Attention::BlockBert(BlockBertAttention { blocks: c.blocks })
            }
            AttentionConfig::Longformer(c) => Attention::Longformer(LongformerAttention {
                window: c.window,
                dilation: c.dilation,
                global: c.global.clone(),
            }),
            AttentionConfig::BigBird(c) => Attention::BigBird(BigBirdAttention {
                block: c.block,
                global_blocks: c.global_blocks,
                random_blocks: c.random_blocks,
                seed: c.seed,
            }),
            AttentionConfig::Linformer(c) => Attention::Linformer(LinformerAttention::new(
                c.k,
                c.max_len.unwrap_or(layout.max_len),
                layout.heads,
                c.share == LinformerShare::None,
                c.share == LinformerShare::Kv,
                device,
            )),
            AttentionConfig::Xl(c) => Attention::Xl(XlAttention::new(
                c.mem_len,
                c.segment.unwrap_or(0),
                layout.heads,
                layout.head_dim,
                device,
            )),
            AttentionConfig::Sinkhorn(c) => Attention::Sinkhorn(SinkhornAttention::new(
                c.block,
                c.sinkhorn_iters,
                c.temperature,
                c.sortcut.unwrap_or(0),
                layout.max_len.div_ceil(c.block).max(1),
                layout.head_dim,
                device,
            )),
            AttentionConfig::Lsh(c) => Attention::Lsh(LshAttention {
                buckets: c.buckets,
                hashes: c.hashes,
                chunk: c.chunk,
                seed: c.seed,
            }),
            AttentionConfig::Nystrom(c) => Attention::Nystrom(NystromAttention::new(
                c.landmarks,
                c.pinv_iters,
                c.conv_kernel,
                layout.heads,
                device,
            )),
            AttentionConfig::Synthesizer(c) => Attention::Synthesizer(SynthesizerAttention::new(
                c.mode,
                c.rank,
                c.mix,
                c.frozen,
                c.max_len.unwrap_or(layout.max_len),
                layout.heads,
                layout.head_dim,
                device,
            )),
        }
    }
}

fn two_head_sets(heads: usize) -> Result<(), AttentionError> {
    if heads < 2 {
        return Err(out_of_range(
            "heads",
            heads,
            "this mechanism splits heads into two sets; use at least 2 heads",
        ));
    }
    Ok(())
}

/// Reads a command-line value as TOML (`3`, `0.5`, `true`, `[1, 2]`, `{ kind = "x" }`), and as a
/// plain string when it is not valid TOML, so `--param global=0,40` and `name=mine` need no quotes.
pub fn toml_scalar(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_full_from_its_name() {
        let c = AttentionConfig::from_name_and_params("full", &[]).unwrap();
        assert_eq!(c, AttentionConfig::Full(FullConfig {}));
        assert!(c.supports_causal());
    }

    #[test]
    fn every_name_builds_with_defaults() {
        for name in AttentionConfig::NAMES {
            let c = AttentionConfig::from_name_and_params(name, &[]).unwrap();
            assert_eq!(c.name(), *name);
        }
    }

    /// Every variant has a slot here (the match is exhaustive), and NAMES lists as many names.
    fn slot(c: &AttentionConfig) -> usize {
        match c {
            AttentionConfig::Full(_) => 0,
            AttentionConfig::Flash(_) => 1,
            AttentionConfig::Local(_) => 2,
            AttentionConfig::Sliding(_) => 3,
            AttentionConfig::Strided(_) => 4,
            AttentionConfig::Fixed(_) => 5,
            AttentionConfig::Cascade(_) => 6,
            AttentionConfig::BlockBert(_) => 7,
            AttentionConfig::Longformer(_) => 8,
            AttentionConfig::BigBird(_) => 9,
            AttentionConfig::Linear(_) => 10,
            AttentionConfig::Performer(_) => 11,
            AttentionConfig::Linformer(_) => 12,
            AttentionConfig::Synthesizer(_) => 13,
            AttentionConfig::Nystrom(_) => 14,
            AttentionConfig::Lsh(_) => 15,
            AttentionConfig::Sinkhorn(_) => 16,
            AttentionConfig::Xl(_) => 17,
        }
    }

    #[test]
    fn names_list_every_mechanism_once() {
        let mut slots: Vec<usize> = AttentionConfig::NAMES
            .iter()
            .map(|n| slot(&AttentionConfig::from_name_and_params(n, &[]).unwrap()))
            .collect();
        slots.sort_unstable();
        slots.dedup();
        assert_eq!(slots, (0..AttentionConfig::NAMES.len()).collect::<Vec<_>>());
    }

    #[test]
    fn unknown_mechanism_names_the_choices() {
        let e = AttentionConfig::from_name_and_params("fulll", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fulll") && msg.contains("bigbird"), "{msg}");
    }

    #[test]
    fn unknown_parameter_is_rejected() {
        let e = AttentionConfig::from_name_and_params("full", &[("block".into(), "4".into())])
            .unwrap_err();
        assert!(e.to_string().contains("block"), "{e}");
    }

    #[test]
    fn out_of_range_parameters_name_the_field() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        let e = |name, params: Vec<(String, String)>| {
            AttentionConfig::from_name_and_params(name, &params)
                .unwrap_err()
                .to_string()
        };
        assert!(e("local", p("block", "0")).contains("block"));
        assert!(e("strided", p("stride", "1")).contains("stride"));
        assert!(e("fixed", p("summary", "60")).contains("summary"));
        assert!(e("cascade", p("growth", "0.5")).contains("growth"));
        assert!(e("longformer", p("global", "0,x")).contains("global"));
        assert!(e("lsh", p("buckets", "3")).contains("even"));
        assert!(e("nystrom", p("conv_kernel", "4")).contains("odd"));
        let c = AttentionConfig::from_name_and_params("lsh", &p("chunk", "40")).unwrap();
        assert!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("chunk")
        );
        let c = AttentionConfig::from_name_and_params("sliding", &p("window", "40")).unwrap();
        assert!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("sequence length 32")
        );
        let c = AttentionConfig::from_name_and_params("longformer", &p("global", "0,40")).unwrap();
        assert_eq!(
            c.check_shape(32, 4)
                .unwrap_err()
                .to_string()
                .contains("global"),
            true
        );
        c.check_shape(64, 4).unwrap();
        let c = AttentionConfig::from_name_and_params("strided", &p("stride", "4")).unwrap();
        assert!(
            c.check_shape(32, 1)
                .unwrap_err()
                .to_string()
                .contains("2 heads")
        );
    }

    #[test]
    fn learned_mechanisms_refuse_lengths_beyond_their_max_len() {
        let p = |k: &str, v: &str| vec![(k.to_string(), v.to_string())];
        for name in ["linformer", "synthesizer"] {
            let c = AttentionConfig::from_name_and_params(name, &p("max_len", "32")).unwrap();
            c.check_shape(32, 4).unwrap();
            let e = c.check_shape(33, 4).unwrap_err().to_string();
            assert!(e.contains("max_len") && e.contains("33"), "{e}");
        }
        let e = AttentionConfig::from_name_and_params("linformer", &p("share", "layerwise"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("share") && e.contains("kv"), "{e}");
        let e = AttentionConfig::from_name_and_params("synthesizer", &p("frozen", "true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("frozen"), "{e}");
        assert!(
            !AttentionConfig::from_name_and_params("linformer", &[])
                .unwrap()
                .supports_causal()
        );
        assert!(AttentionConfig::has_param("performer", "seed"));
        assert!(!AttentionConfig::has_param("linformer", "seed"));
    }

    #[test]
    fn global_positions_read_from_text_lists_and_numbers() {
        let g = |raw: &str| match AttentionConfig::from_name_and_params(
            "longformer",
            &[("global".into(), raw.into())],
        )
        .unwrap()
        {
            AttentionConfig::Longformer(c) => c.global,
            _ => unreachable!(),
        };
        assert_eq!(g("0,40"), vec![0, 40]);
        assert_eq!(g("[3, 5]"), vec![3, 5]);
        assert_eq!(g("7"), vec![7]);
    }

    #[test]
    fn causal_support_is_declared() {
        let causal = |n| {
            AttentionConfig::from_name_and_params(n, &[])
                .unwrap()
                .supports_causal()
        };
        assert!(causal("local") && causal("sliding") && causal("longformer"));
        assert!(!causal("blockbert") && !causal("bigbird"));
        assert!(causal("sinkhorn") && causal("lsh") && !causal("nystrom"));
        let sortcut =
            AttentionConfig::from_name_and_params("sinkhorn", &[("sortcut".into(), "2".into())])
                .unwrap();
        assert!(
            sortcut
                .check_causal(true)
                .unwrap_err()
                .to_string()
                .contains("causal")
        );
    }

    #[test]
    fn command_line_values_read_as_toml_or_text() {
        assert_eq!(toml_scalar("3"), toml::Value::Integer(3));
        assert_eq!(toml_scalar("true"), toml::Value::Boolean(true));
        assert_eq!(toml_scalar("0,40"), toml::Value::String("0,40".into()));
        assert_eq!(toml_scalar("mine"), toml::Value::String("mine".into()));
    }

    #[test]
    fn toml_round_trip() {
        for name in AttentionConfig::NAMES {
            let c = AttentionConfig::from_name_and_params(name, &[]).unwrap();
            let s = toml::to_string(&c).unwrap();
            assert_eq!(toml::from_str::<AttentionConfig>(&s).unwrap(), c, "{s}");
        }
    }
}
