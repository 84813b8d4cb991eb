//! The one input every attention mechanism takes.

use burn::tensor::{Bool, Tensor};

use crate::AttentionError;

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
        }
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

    /// Checks that q, k, v and the mask agree in shape; returns `[B, H, N, D]`.
    pub fn check(&self) -> Result<[usize; 4], AttentionError> {
        let q = self.q.dims();
        let (k, v) = (self.k.dims(), self.v.dims());
        if k != q || v != q {
            return Err(AttentionError::Shape(format!(
                "q is {q:?}, k is {k:?}, v is {v:?}; all three must be [B, H, N, D] alike"
            )));
        }
        if let Some(mask) = &self.key_padding {
            let m = mask.dims();
            if m != [q[0], q[2]] {
                return Err(AttentionError::Shape(format!(
                    "padding mask is {m:?} but q is {q:?}; the mask must be [B, N] = [{}, {}]",
                    q[0], q[2]
                )));
            }
        }
        Ok(q)
    }
}
