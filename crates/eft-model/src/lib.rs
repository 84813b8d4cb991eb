//! The eft encoder: embeddings, pluggable-attention blocks, pooling and classification heads.
//!
//! The model follows LRA's released encoder: token embedding plus learned or sinusoidal
//! positions, `n_layers` pre-LayerNorm blocks (Q/K/V projections without bias, an output
//! projection, a GELU MLP, dropout), a final LayerNorm, CLS or mean pooling, and a
//! Dense→ReLU→Dense head. The attention inside each block is whatever
//! [`eft_attention::AttentionConfig`] names; nothing here knows which mechanism runs.
//!
//! A [`Block`] exposes its two residual branches, `f` (attention) and `g` (feed-forward), so that
//! other residual forms (reversible layers) reuse them unchanged, and the [`Encoder`] runs layers
//! one at a time so that per-layer exits and shared layers slot in without touching the block.
//!
//! ```
//! use burn::tensor::{Bool, Device, Int, Tensor};
//! use eft_model::{ModelConfig, TaskShape};
//!
//! let device = Device::flex();
//! let config = ModelConfig { n_layers: 1, ..ModelConfig::default() };
//! let task = TaskShape { vocab_size: 20, max_len: 16, n_classes: 3, paired: false };
//! let model = config.init(task, &device)?;
//! let tokens = Tensor::<2, Int>::ones([4, 16], &device); // [B, N] token ids
//! let padding = Tensor::<2, Bool>::full([4, 16], false, &device); // true at padding
//! assert_eq!(model.forward(tokens, padding).logits.dims(), [4, 3]);
//! # Ok::<(), eft_model::ModelError>(())
//! ```
//!
//! # Index letters
//! `B` batch, `N` sequence length, `H` heads, `D` head dimension, `d` model width, `C` classes.
#![warn(missing_docs)]

mod act;
mod block;
mod classifier;
mod config;
mod cost;
mod decode;
mod dense;
mod dropout;
mod embedding;
mod encoder;
mod error;
mod exits;
mod feed_forward;
mod generator;
mod halting;
mod head_pruning;
mod norm;
mod output;
mod precision;
mod recompute;
mod residual;
mod reversible;
mod routing;
mod self_attention;
mod share;
mod step;
mod switch;
mod tensor_parallel;
mod toml_form;

pub use act::{ACT_POSITION_FLOPS, Act, ActConfig, ActReport, DepthConfig};
pub use block::Block;
pub use classifier::Classifier;
pub use config::{Head, ModelConfig, Pool, Positions};
pub use cost::{GELU_FLOPS, ModelCost, layer_norm_flops, linear_flops};
pub use decode::DecodeState;
pub use dropout::with_row_keys;
pub use eft_data::TaskShape;
pub use embedding::{Embeddings, sinusoidal_table};
pub use encoder::{Encoder, EncoderReport};
pub use error::ModelError;
pub use exits::{
    ConfidenceExits, ExitHead, ExitRule, Exited, ExitsConfig, LearnedExits, oracle_depths,
};
pub use feed_forward::{FeedForward, FeedForwardConfig};
pub use generator::Generator;
pub use halting::Halting;
pub use output::ModelOutput;
pub use precision::in_f32;
pub use recompute::Recompute;
pub use residual::Residual;
pub use routing::{Routing, expert_capacity, route};
pub use self_attention::{SelfAttention, StateMemory};
pub use share::Share;
pub use step::{Backward, StepGradients};
pub use switch::{SOFTMAX_FLOPS, Switch, SwitchConfig, SwitchReport};
pub use tensor_parallel::TensorSplit;
