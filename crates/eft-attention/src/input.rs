//! The one input every attention mechanism takes.

use burn::tensor::{Bool, Tensor};

/// Keys and values of earlier positions that queries may also see (Transformer-XL's memory).
///
/// Only `xl` reads it; the memory is placed before the current keys, so query `i` of the
/// current segment sits at position `M + i`.
///
/// # Shapes
/// - `k`, `v`: `[B, H, M, D]`; `padding`: `[B, M]`, `true` where the position is padding
#[derive(Debug, Clone)]
pub struct Memory {
    /// Keys of the remembered positions.
    pub k: Tensor<4>,
    /// Values of the remembered positions.
    pub v: Tensor<4>,
    /// Which remembered positions are padding.
    pub padding: Option<Tensor<2, Bool>>,
}

/// Queries, keys and values with the masks that apply to them.
///
/// # Shapes
/// - `q`, `k`, `v`: `[B, H, N, D]`
/// - `key_padding`: `[B, N]`, `true` where the position is padding
#[derive(Debug, Clone)]
pub struct AttentionInput {
    /// Queries.
    pub q: Tensor<4>,
    /// Keys.
    pub k: Tensor<4>,
    /// Values.
    pub v: Tensor<4>,
    /// Padding positions that no query may attend to.
    pub key_padding: Option<Tensor<2, Bool>>,
    /// Whether query `i` may only see keys `j <= i`.
    pub causal: bool,
    /// Earlier positions to attend to as well (only `xl` takes memory).
    pub memory: Option<Memory>,
}

impl AttentionInput {
    /// Bundles self-attention inputs without masks.
    pub fn new(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>) -> Self {
        Self {
            q,
            k,
            v,
            key_padding: None,
            causal: false,
            memory: None,
        }
    }

    /// Adds remembered keys and values (Transformer-XL).
    pub fn with_memory(mut self, memory: Memory) -> Self {
        self.memory = Some(memory);
        self
    }

    /// Sets the key-padding mask (`[B, N]`, `true` = padding).
    pub fn with_key_padding(mut self, mask: Tensor<2, Bool>) -> Self {
        self.key_padding = Some(mask);
        self
    }

    /// Sets the causal flag.
    pub fn with_causal(mut self, causal: bool) -> Self {
        self.causal = causal;
        self
    }
}
