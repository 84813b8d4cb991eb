//! Where a mechanism sits in a model and the largest input it must take.

use crate::AttentionShape;

/// What building a mechanism needs to know: its depth, and the sizes its learned parameters
/// depend on (Linformer's projections and Synthesizer's matrices span the longest sequence).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttentionLayout {
    /// Depth of the layer, counting from 0 (`cascade` widens with it).
    pub layer: usize,
    /// Longest sequence the mechanism will be given.
    pub max_len: usize,
    /// Number of heads `H`.
    pub heads: usize,
    /// Head dimension `D`.
    pub head_dim: usize,
}

/// Stops a mechanism whose parameters span `max_len` positions from running on `len`.
///
/// # Panics
/// Panics when `len > max_len`; configs check lengths before a model is built, so reaching this
/// is a caller's bug, and the message says how to fix it.
pub(crate) fn assert_fits(what: &str, len: usize, max_len: usize) {
    assert!(
        len <= max_len,
        "{what} was built for sequences up to {max_len} tokens, got {len}; rebuild it with a \
         larger max_len"
    );
}

impl AttentionLayout {
    /// The layout of layer 0 for inputs of exactly `shape`.
    pub fn for_shape(shape: AttentionShape) -> Self {
        Self {
            layer: 0,
            max_len: shape.len,
            heads: shape.heads,
            head_dim: shape.head_dim,
        }
    }
}
