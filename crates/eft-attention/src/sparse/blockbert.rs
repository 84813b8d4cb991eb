//! BlockBERT (Qiu et al. 2019): `blocks` blocks; head `h`'s query block `i` sees key block
//! `(i + h) mod blocks`. O(N²/blocks); no causal form.

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Patterned, banded};
use crate::block_sparse::ElementRule;
use crate::mechanism::{at_least, fits};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SparsePlan};

/// Parameters of `blockbert`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BlockBertConfig {
    /// Number of blocks the sequence is split into. Default 2.
    pub blocks: usize,
}

impl Default for BlockBertConfig {
    fn default() -> Self {
        Self { blocks: 2 }
    }
}

impl MechanismConfig for BlockBertConfig {
    type Module = BlockBertAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> BlockBertAttention {
        BlockBertAttention {
            blocks: self.blocks,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("blocks", self.blocks, 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("blocks", self.blocks, len)
    }

    fn supports_causal(&self) -> bool {
        false
    }
}

/// BlockBERT (Qiu et al. 2019): per-head block permutations.
#[derive(Module, Debug)]
pub struct BlockBertAttention {
    /// Number of blocks.
    pub blocks: usize,
}

impl Patterned for BlockBertAttention {
    fn plan(&self, len: usize, heads: usize, _causal: bool) -> SparsePlan {
        let block = len.div_ceil(self.blocks.clamp(1, len.max(1)));
        let mut pattern = banded(len, block, &[0], ElementRule::All);
        let nb = pattern.n_blocks();
        pattern.heads = heads;
        pattern.key_blocks = (0..heads)
            .flat_map(|h| (0..nb).map(move |i| Some((i + h) % nb)))
            .collect();
        SparsePlan::uniform(pattern, heads)
    }
}
