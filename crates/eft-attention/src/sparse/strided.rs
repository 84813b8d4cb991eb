//! Sparse Transformer's strided pattern (Child et al. 2019): heads `0..⌈H/2⌉` see
//! `|i − j| < stride`, the rest `(i − j) mod stride = 0`. O(N·(stride + N/stride)).

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Patterned, banded, halves, window_pattern};
use crate::block_sparse::ElementRule;
use crate::mechanism::{at_least, fits, two_head_sets};
use crate::{AttentionError, AttentionLayout, HeadGroup, MechanismConfig, SparsePlan};

/// Parameters of `strided`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct StridedConfig {
    /// Stride `l`; at least 2. Default 50.
    pub stride: usize,
}

impl Default for StridedConfig {
    fn default() -> Self {
        Self { stride: 50 }
    }
}

impl MechanismConfig for StridedConfig {
    type Module = StridedAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> StridedAttention {
        StridedAttention {
            stride: self.stride,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("stride", self.stride, 2)
    }

    fn check_shape(&self, len: usize, heads: usize) -> Result<(), AttentionError> {
        fits("stride", self.stride, len).and(two_head_sets(heads))
    }
}

/// Sparse Transformer's strided pattern (Child et al. 2019).
#[derive(Module, Debug)]
pub struct StridedAttention {
    /// Stride `l`.
    pub stride: usize,
}

impl Patterned for StridedAttention {
    fn plan(&self, len: usize, heads: usize, causal: bool) -> SparsePlan {
        let l = self.stride.clamp(1, len.max(1));
        let (a, b) = halves(heads);
        // Head set B: group positions by residue mod l; each group is one block of ⌈N/l⌉.
        let per = len.div_ceil(l);
        let order: Vec<usize> = (0..l)
            .flat_map(|r| (0..per).map(move |t| r + l * t))
            .collect();
        let residue = banded(order.len(), per, &[0], ElementRule::All);
        SparsePlan {
            groups: vec![
                HeadGroup {
                    heads: a,
                    pattern: window_pattern(len, l - 1, 1, causal),
                    order: None,
                },
                HeadGroup {
                    heads: b,
                    pattern: residue,
                    order: Some(order),
                },
            ],
        }
    }
}
