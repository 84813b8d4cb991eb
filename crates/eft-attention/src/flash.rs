//! Memory-efficient exact attention (Dao et al. 2022; Rabe & Staats 2021).
//!
//! Same result as `full`, computed in `tile × tile` blocks with an online softmax by the
//! `eft-kernels` op, whose backward pass recomputes each block from one saved log-sum-exp per
//! query. O(N²·D) time, O(N·D) memory held for the backward pass, O(tile²) transient.

use burn::module::Module;
use burn::tensor::Tensor;

use crate::mechanism::at_least;
use crate::{
    AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape, Mechanism,
    MechanismConfig,
};
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

/// Parameters of `flash`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FlashConfig {
    /// Rows and columns per tile. Default 256: on the fused CPU kernel larger tiles amortise
    /// each tile product's packing (256 ran 10–35% faster than 128 at N = 1K–4K here; 512 adds
    /// little and a third more transient memory).
    pub tile: usize,
}

impl Default for FlashConfig {
    fn default() -> Self {
        Self { tile: 256 }
    }
}

impl MechanismConfig for FlashConfig {
    type Module = FlashAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> FlashAttention {
        FlashAttention { tile: self.tile }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("tile", self.tile, 1)
    }
}

/// Tiled exact attention with its own backward pass; never allocates an `N × N` buffer.
#[derive(Module, Debug)]
pub struct FlashAttention {
    /// Rows and columns per tile.
    pub tile: usize,
}

impl Mechanism for FlashAttention {
    /// Attends every query to every unmasked key, tile by tile.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4> {
        let padding = input.key_padding.map(|m| m.float());
        eft_kernels::flash_attention(input.q, input.k, input.v, padding, input.causal, self.tile)
    }

    /// FLOPs and saved bytes of one call.
    ///
    /// Forward as `full`; backward adds the recomputed scores (`2·N²·D`) and exponentials.
    /// Saved: the output and one log-sum-exp per query, in f32.
    fn cost(&self, shape: AttentionShape) -> AttentionCost {
        let bh = (shape.batch * shape.heads) as f64;
        let (n, d) = (shape.len as f64, shape.head_dim as f64);
        AttentionCost {
            forward_flops: bh * (4.0 * n * n * d + 6.0 * n * n),
            backward_flops: bh * (10.0 * n * n * d + 8.0 * n * n),
            saved_bytes: bh * n * (d + 1.0) * 4.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::{Case, check_against_reference};
    use crate::{Attention, AttentionConfig};
    use burn::tensor::{Bool, Device};

    fn flash(tile: usize) -> Attention {
        AttentionConfig::from_name_and_params("flash", &[("tile".into(), tile.to_string())])
            .unwrap()
            .init(crate::testing::layout(0), &Device::flex())
    }

    #[test]
    fn equals_full_attention_forward_and_backward() {
        let cases = [
            ([2, 3, 13, 4], vec![13, 9], 4),
            ([1, 2, 32, 8], vec![32], 8),
            ([2, 2, 37, 5], vec![30, 37], 16),
            ([1, 1, 5, 3], vec![5], 64),
        ];
        for (seed, (dims, real, tile)) in cases.into_iter().enumerate() {
            for causal in [false, true] {
                let [_, h, n, _] = dims;
                let nothing = Tensor::<4, Bool>::full([1, h, n, n], false, &Device::flex());
                let case = Case {
                    dims,
                    real: real.clone(),
                    causal,
                    seed: seed as u64,
                };
                let what = format!("flash tile {tile} {dims:?} causal={causal}");
                check_against_reference(&what, &flash(tile), nothing, &case, 1e-5);
            }
        }
    }

    #[test]
    fn a_query_that_sees_nothing_outputs_zeros() {
        // Causal with the first two keys padded: queries 0 and 1 see no key.
        let device = Device::flex();
        let (q, k, v, _) = crate::testing::random_qkv([1, 1, 6, 2], 3, &device);
        let pad = Tensor::<2>::from_data(
            burn::tensor::TensorData::new(vec![1.0f32, 1.0, 0.0, 0.0, 0.0, 0.0], [1, 6]),
            &device,
        );
        let out = eft_kernels::flash_attention(q, k, v, Some(pad), true, 4);
        let rows = crate::testing::to_f64(out.slice([0..1, 0..1, 0..2, 0..2]));
        assert_eq!(rows, vec![0.0; 4]);
    }
}
