//! Local attention: non-overlapping blocks; a query sees its own block (LRA's `local`).
//! O(N·block) time and memory.

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Patterned, banded};
use crate::block_sparse::ElementRule;
use crate::mechanism::{at_least, fits};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SparsePlan};

/// Parameters of `local`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Block size. Default 50 (LRA).
    pub block: usize,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self { block: 50 }
    }
}

impl MechanismConfig for LocalConfig {
    type Module = LocalAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> LocalAttention {
        LocalAttention { block: self.block }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("block", self.block, 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("block", self.block, len)
    }
}

/// Local attention: non-overlapping blocks (Parmar et al. 2018; LRA's `local`).
#[derive(Module, Debug)]
pub struct LocalAttention {
    /// Block size.
    pub block: usize,
}

impl Patterned for LocalAttention {
    fn plan(&self, len: usize, heads: usize, _causal: bool) -> SparsePlan {
        SparsePlan::uniform(banded(len, self.block, &[0], ElementRule::All), heads)
    }
}
