//! How a block joins its two branches to the residual stream.

use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

/// The residual form of every block. TOML: `model.residual = "pre_norm"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Residual {
    /// `y = x + f(x)`, `z = y + g(y)`, each branch normalising its own input (LRA's pre-LN block).
    #[default]
    PreNorm,
}

impl Residual {
    /// Joins the attention branch `f` and the feed-forward branch `g` to `x`.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; `f`, `g`: `[B, N, d]` → `[B, N, d]`
    pub fn apply(
        self,
        x: Tensor<3>,
        f: impl FnOnce(Tensor<3>) -> Tensor<3>,
        g: impl FnOnce(Tensor<3>) -> Tensor<3>,
    ) -> Tensor<3> {
        match self {
            Residual::PreNorm => {
                let y = x.clone() + f(x);
                y.clone() + g(y)
            }
        }
    }
}
