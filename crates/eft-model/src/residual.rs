//! How a block joins its two branches to the residual stream.

use burn::tensor::{Tensor, s};
use serde::{Deserialize, Serialize};

/// The residual form of every block. TOML: `model.residual = "pre_norm" | "reversible"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case", try_from = "String")]
pub enum Residual {
    /// `y = x + f(x)`, `z = y + g(y)`, each branch normalising its own input (LRA's pre-LN block).
    #[default]
    PreNorm,
    /// RevNet's coupling on the two halves of the channels, `x = [x₁, x₂]`:
    /// `y₁ = x₁ + f(x₂)`, `y₂ = x₂ + g(y₁)`. The input can be rebuilt from the output
    /// (`x₂ = y₂ − g(y₁)`, `x₁ = y₁ − f(x₂)`), so training keeps no block's activations; the
    /// branches run at half the width.
    Reversible,
}

impl TryFrom<String> for Residual {
    type Error = String;

    /// Reads the TOML name; an unknown one is an error naming the field and the choices.
    fn try_from(name: String) -> Result<Self, String> {
        match name.as_str() {
            "pre_norm" => Ok(Residual::PreNorm),
            "reversible" => Ok(Residual::Reversible),
            other => Err(format!(
                "model.residual = \"{other}\": expected \"pre_norm\" or \"reversible\""
            )),
        }
    }
}

impl Residual {
    /// Width of the branches of a block whose residual stream is `d_model` wide.
    pub fn branch_width(self, d_model: usize) -> usize {
        match self {
            Residual::PreNorm => d_model,
            Residual::Reversible => d_model / 2,
        }
    }

    /// Joins the attention branch `f` and the feed-forward branch `g` to `x`.
    ///
    /// # Shapes
    /// - x: `[B, N, d]`; `f`, `g`: `[B, N, w]` → `[B, N, w]` with `w` the branch width
    ///   ([`Residual::branch_width`]) → `[B, N, d]`
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
            Residual::Reversible => {
                let [x1, x2] = halves(x);
                let y1 = x1 + f(x2.clone());
                let y2 = x2 + g(y1.clone());
                Tensor::cat(vec![y1, y2], 2)
            }
        }
    }
}

/// The two channel halves `[x₁, x₂]` of a reversible block's stream.
///
/// # Shapes
/// - x: `[B, N, d]` → two `[B, N, d/2]`
pub(crate) fn halves(x: Tensor<3>) -> [Tensor<3>; 2] {
    let d = x.dims()[2];
    [
        x.clone().slice(s![.., .., 0..d / 2]),
        x.slice(s![.., .., d / 2..d]),
    ]
}
