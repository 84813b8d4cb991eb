//! Sparse Transformer's fixed pattern (Child et al. 2019): heads `0..⌈H/2⌉` see their own block,
//! the rest the summary columns `j mod block ≥ block − summary`. O(N·(block + N·summary/block)).

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Patterned, banded, halves};
use crate::block_sparse::ElementRule;
use crate::mechanism::{at_least, fits, out_of_range, two_head_sets};
use crate::{AttentionError, AttentionLayout, HeadGroup, MechanismConfig, SparsePlan};

/// Parameters of `fixed`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FixedConfig {
    /// Block size `l`. Default 50 (LRA).
    pub block: usize,
    /// Summary columns `c` per block, `1..=block`. Default 10 (LRA).
    pub summary: usize,
}

impl Default for FixedConfig {
    fn default() -> Self {
        Self {
            block: 50,
            summary: 10,
        }
    }
}

impl MechanismConfig for FixedConfig {
    type Module = FixedAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> FixedAttention {
        FixedAttention {
            block: self.block,
            summary: self.summary,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("block", self.block, 1)?;
        at_least("summary", self.summary, 1)?;
        if self.summary > self.block {
            return Err(out_of_range(
                "summary",
                self.summary,
                format!("must not exceed block = {}", self.block),
            ));
        }
        Ok(())
    }

    fn check_shape(&self, len: usize, heads: usize) -> Result<(), AttentionError> {
        fits("block", self.block, len).and(two_head_sets(heads))
    }
}

/// Sparse Transformer's fixed pattern (Child et al. 2019).
#[derive(Module, Debug)]
pub struct FixedAttention {
    /// Block size `l`.
    pub block: usize,
    /// Summary columns `c` at the end of each block.
    pub summary: usize,
}

impl Patterned for FixedAttention {
    fn plan(&self, len: usize, heads: usize, _causal: bool) -> SparsePlan {
        let l = self.block.clamp(1, len.max(1));
        let c = self.summary.min(l);
        let (a, b) = halves(heads);
        let mut summary = banded(len, l, &[0], ElementRule::All);
        summary.key_blocks.iter_mut().for_each(|s| *s = None);
        summary.global_keys = (0..len).filter(|j| j % l >= l - c).collect();
        SparsePlan {
            groups: vec![
                HeadGroup {
                    heads: a,
                    pattern: banded(len, l, &[0], ElementRule::All),
                    order: None,
                },
                HeadGroup {
                    heads: b,
                    pattern: summary,
                    order: None,
                },
            ],
        }
    }
}
