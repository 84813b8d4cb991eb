//! Linformer (Wang et al. 2020): keys and values projected along the length axis.
//!
//! `softmax(q·(E·k)ᵀ/√D)·(F·v)` with learned `E, F ∈ R^{k×N}`: attention over `k` mixed key rows
//! instead of `N` keys, O(N·k·D) time and memory. Padded keys are zeroed before the projection,
//! since after it they can no longer be told apart. A sequence shorter than the longest one the
//! layer was built for uses the first `N` columns of `E` and `F` (as if padded with zeros).
//! The projection mixes all positions, so there is no causal form.

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::tensor::{Device, Tensor};

use crate::mechanism::{at_least, spans};
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use serde::{Deserialize, Serialize};

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
    /// One matrix for every layer, head, keys and values: the encoder owns it and lends it to
    /// each layer's call (one parameter, its gradient summed over the layers).
    Layerwise,
}

/// Parameters of `linformer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LinformerConfig {
    /// Projected length `k`. Default 16 (LRA).
    pub k: usize,
    /// `none`, `headwise` or `kv`. Default `kv`.
    pub share: LinformerShare,
    /// Longest sequence the projections span. Default: the model's (task's) longest input.
    pub max_len: Option<usize>,
}

impl Default for LinformerConfig {
    fn default() -> Self {
        Self {
            k: 16,
            share: LinformerShare::Kv,
            max_len: None,
        }
    }
}

impl MechanismConfig for LinformerConfig {
    type Module = LinformerAttention;

    fn init(&self, layout: AttentionLayout, device: &Device) -> LinformerAttention {
        LinformerAttention::new(
            self.k,
            self.max_len.unwrap_or(layout.max_len),
            layout.heads,
            self.share,
            device,
        )
    }

    fn floats_at_least(&self, layout: AttentionLayout) -> u64 {
        // At least one k × max_len projection.
        let max_len = self.max_len.unwrap_or(layout.max_len) as u64;
        (self.k as u64).saturating_mul(max_len)
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("k", self.k, 1)?;
        at_least("max_len", self.max_len.unwrap_or(1), 1)?;
        Ok(())
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        spans("linformer", self.max_len, len)
    }

    fn supports_causal(&self) -> bool {
        false
    }
}

/// `parts` projections `[parts, k, max_len]`, Xavier-uniform with fan-in `max_len` and fan-out
/// `k`, drawn from `device`'s generator.
pub fn projection(parts: usize, k: usize, max_len: usize, device: &Device) -> Param<Tensor<3>> {
    Initializer::XavierUniform { gain: 1.0 }.init_with(
        [parts, k, max_len],
        Some(max_len),
        Some(k),
        device,
    )
}

impl LinformerConfig {
    /// The projection an encoder shares across its layers when this config asks for layerwise
    /// sharing (`layout` gives the length it spans), else `None`.
    pub fn layerwise_projection(
        &self,
        layout: AttentionLayout,
        device: &Device,
    ) -> Option<Param<Tensor<3>>> {
        (self.share == LinformerShare::Layerwise)
            .then(|| projection(1, self.k, self.max_len.unwrap_or(layout.max_len), device))
    }
}

/// Linformer attention with length projections `E` (keys) and `F` (values).
#[derive(Module, Debug)]
pub struct LinformerAttention {
    /// Projected length `k`.
    pub k: usize,
    /// Longest sequence the projections span.
    pub max_len: usize,
    /// `E`: `[P, k, max_len]`, `P` = heads or 1 (shared by all heads); `None` for layerwise
    /// sharing until the encoder lends its projection ([`LinformerAttention::with_projection`]).
    pub keys: Option<Param<Tensor<3>>>,
    /// `F`, same shape as `E`; `None` when `F = E`.
    pub values: Option<Param<Tensor<3>>>,
}

impl LinformerAttention {
    /// Draws `E` (and `F` unless `share` is `kv`) from `device`'s generator, Xavier-uniform with
    /// fan-in `max_len` and fan-out `k`; `share = none` gives each head its own.
    pub fn new(
        k: usize,
        max_len: usize,
        heads: usize,
        share: LinformerShare,
        device: &Device,
    ) -> Self {
        let (p, share_kv) = match share {
            LinformerShare::None => (heads, false),
            LinformerShare::Headwise => (1, false),
            LinformerShare::Kv => (1, true),
            LinformerShare::Layerwise => {
                return Self {
                    k,
                    max_len,
                    keys: None,
                    values: None,
                };
            }
        };
        let draw = || projection(p, k, max_len, device);
        Self {
            k,
            max_len,
            keys: Some(draw()),
            values: (!share_kv).then(draw),
        }
    }

    /// The layer running on `projection` as `E` and `F` for every head (layerwise sharing).
    pub fn with_projection(mut self, projection: Param<Tensor<3>>) -> Self {
        self.keys = Some(projection);
        self.values = None;
        self
    }

    /// Builds the layer from given projections (e.g. identities in tests), `[P, k, max_len]`.
    pub fn from_projections(keys: Tensor<3>, values: Option<Tensor<3>>) -> Self {
        let [_, k, max_len] = keys.dims();
        Self {
            k,
            max_len,
            keys: Some(Param::from_tensor(keys)),
            values: values.map(Param::from_tensor),
        }
    }
}

impl Mechanism for LinformerAttention {
    /// Projects and attends.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`] (not causal), `N ≤ max_len`
    /// - output: `[B, H, N, D]`
    ///
    /// # Panics
    /// Panics when `N` exceeds `max_len`; configs check this before a model is built.
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let [batch, heads, len, dim] = input.q.dims();
        crate::layout::assert_fits("linformer", len, self.max_len);
        // Padded keys and values contribute nothing to the projections.
        let real = input
            .key_padding
            .map(|p| p.bool_not().float().cast(input.k.dtype()));
        let project = |p: &Param<Tensor<3>>, x: Tensor<4>| {
            let e = p.val();
            let parts = e.dims()[0];
            let e = e.slice([0..parts, 0..self.k, 0..len]); // [parts, k, N]
            if parts == 1 {
                // One projection for every head: heads folded into the columns make it one
                // [k, N]·[N, H·D] product per batch row (free for the model's [B, N, H·D] layout).
                let x = x.swap_dims(1, 2).reshape([batch, len, heads * dim]); // [B, N, H·D]
                let x = match &real {
                    Some(r) => x * r.clone().reshape([batch, len, 1]),
                    None => x,
                };
                e.matmul(x) // [B, k, H·D]
                    .reshape([batch, self.k, heads, dim])
                    .swap_dims(1, 2) // [B, H, k, D]
            } else {
                let x = match &real {
                    Some(r) => x * r.clone().reshape([batch, 1, len, 1]),
                    None => x,
                };
                e.reshape([1, parts, self.k, len]).matmul(x) // [B, H, k, D]
            }
        };
        let keys = self
            .keys
            .as_ref()
            .expect("a layerwise linformer runs with the projection its encoder lends it");
        let kp = project(keys, input.k);
        let vp = project(self.values.as_ref().unwrap_or(keys), input.v);
        let out = eft_kernels::materialised_attention(input.q, kp, vp, None, false);
        debug_assert_eq!(out.dims(), [batch, heads, len, dim]);
        out
    }

    /// FLOPs and saved bytes: two `k × N × D` projections and attention over `k` keys; the
    /// `N × k` probabilities and the projected keys and values are kept.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d, k) = (shape.len as f64, shape.head_dim as f64, self.k as f64);
        AttentionCost {
            forward_flops: bh * (4.0 * k * n * d + 4.0 * n * k * d + 6.0 * n * k),
            backward_flops: bh * (8.0 * k * n * d + 8.0 * n * k * d + 5.0 * n * k),
            saved_bytes: bh * (n * k + 2.0 * k * d) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{assert_close, output_and_grads, random_qkv, to_f64};
    use crate::{FullAttention, Mechanism};
    use burn::tensor::{Bool, Tensor, TensorData};

    fn identity(n: usize, device: &Device) -> Tensor<3> {
        Tensor::<2>::eye(n, device).reshape([1, n, n])
    }

    /// With `k = N` and `E = F = I` the projections do nothing: Linformer is full attention,
    /// forward and dq, dk, dv.
    #[test]
    fn identity_projections_equal_full_attention() {
        let device = Device::flex().autodiff();
        for (seed, dims) in [[2, 3, 9, 4], [1, 2, 16, 8]].into_iter().enumerate() {
            let n = dims[2];
            let (q, k, v, w) = random_qkv(dims, seed as u64, &device);
            let shared = LinformerAttention::from_projections(identity(n, &device), None);
            let separate = LinformerAttention::from_projections(
                identity(n, &device),
                Some(identity(n, &device)),
            );
            let run = |m: &dyn Mechanism| output_and_grads(&|i| m.forward(i), [&q, &k, &v, &w]);
            let expected = run(&FullAttention);
            for m in [&shared, &separate] {
                for (name, (a, e)) in ["out", "dq", "dk", "dv"]
                    .iter()
                    .zip(run(m).iter().zip(&expected))
                {
                    assert_close(&format!("linformer {dims:?} {name}"), a, e, 1e-5, 1e-6);
                }
            }
        }
    }

    /// dE and dF agree with central differences, for every sharing mode.
    #[test]
    fn projection_gradients_match_differences() {
        let device = Device::flex().autodiff();
        let (q, k, v, w) = random_qkv([2, 2, 6, 3], 4, &device);
        for share in [
            LinformerShare::None,
            LinformerShare::Headwise,
            LinformerShare::Kv,
        ] {
            let m = crate::testing::seeded(&device, 7, || {
                LinformerAttention::new(3, 8, 2, share, &device)
            });
            crate::testing::check_param_grads(
                &format!("linformer share={share:?}"),
                &m,
                |m| {
                    (m.forward(AttentionInput::new(q.clone(), k.clone(), v.clone())) * w.clone())
                        .sum()
                },
                5,
            );
        }
    }

    /// Padded keys and values have no effect, whatever they hold.
    #[test]
    fn padded_positions_change_nothing() {
        let device = Device::flex();
        let dims = [2, 2, 10, 4];
        let (q, k, v, noise) = random_qkv(dims, 3, &device);
        let m = crate::testing::seeded(&device, 1, || {
            LinformerAttention::new(4, 12, 2, LinformerShare::None, &device)
        });
        let pad: Vec<bool> = (0..20).map(|p| p % 10 >= [10, 6][p / 10]).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [2, 10]), &device);
        let keep = Tensor::<2, Bool>::from_data(TensorData::new(pad, [2, 10]), &device)
            .bool_not()
            .float()
            .reshape([2, 1, 10, 1]);
        let scramble =
            |t: Tensor<4>| t.clone() * keep.clone() + noise.clone() * (-keep.clone() + 1.0);
        let run = |k: Tensor<4>, v: Tensor<4>| {
            to_f64(m.forward(AttentionInput::new(q.clone(), k, v).with_key_padding(mask.clone())))
        };
        assert_close(
            "padding invariance",
            &run(scramble(k.clone()), scramble(v.clone())),
            &run(k, v),
            1e-6,
            1e-6,
        );
    }
}
