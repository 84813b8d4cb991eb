//! BigBird (Zaheer et al. 2020): blocks of `block` see their neighbours, the first
//! `global_blocks` blocks (which also see all) and `random_blocks` seeded random blocks per head.
//! O(N·block·(3 + g + r)); no causal form.

use burn::module::Module;
use burn::tensor::Device;
use rand::seq::index::sample;
use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;
use serde::{Deserialize, Serialize};

use super::Patterned;
use crate::block_sparse::{BlockPattern, ElementRule};
use crate::mechanism::{at_least, fits};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SparsePlan};

/// Parameters of `bigbird`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BigBirdConfig {
    /// Block size. Default 64 (LRA).
    pub block: usize,
    /// Leading global blocks. Default 1.
    pub global_blocks: usize,
    /// Random blocks per query block and head. Default 3 (LRA).
    pub random_blocks: usize,
    /// Seed of the random blocks. Default 0.
    pub seed: u64,
}

impl Default for BigBirdConfig {
    fn default() -> Self {
        Self {
            block: 64,
            global_blocks: 1,
            random_blocks: 3,
            seed: 0,
        }
    }
}

impl MechanismConfig for BigBirdConfig {
    type Module = BigBirdAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> BigBirdAttention {
        BigBirdAttention {
            block: self.block,
            global_blocks: self.global_blocks,
            random_blocks: self.random_blocks,
            seed: self.seed,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("block", self.block, 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("block", self.block, len)
    }

    fn supports_causal(&self) -> bool {
        false
    }
}

/// BigBird (Zaheer et al. 2020): window, global and random blocks.
#[derive(Module, Debug)]
pub struct BigBirdAttention {
    /// Block size.
    pub block: usize,
    /// Leading blocks that are global.
    pub global_blocks: usize,
    /// Random blocks per query block and head.
    pub random_blocks: usize,
    /// Seed of the random blocks.
    pub seed: u64,
}

impl Patterned for BigBirdAttention {
    fn plan(&self, len: usize, heads: usize, _causal: bool) -> SparsePlan {
        let block = self.block.clamp(1, len.max(1));
        let nb = len.div_ceil(block);
        let g = self.global_blocks.min(nb);
        // Capped like g: a query block cannot gather more random blocks than exist (an uncapped
        // 2^63 overflowed this capacity).
        let per_query = 3 + g + self.random_blocks.min(nb);
        let mut key_blocks = Vec::with_capacity(heads * nb * per_query);
        for h in 0..heads {
            for i in 0..nb {
                let mut chosen: Vec<usize> = (i.saturating_sub(1)..=(i + 1).min(nb - 1)).collect();
                chosen.extend((0..g).filter(|b| !chosen.contains(b)).collect::<Vec<_>>());
                let rest: Vec<usize> = (0..nb).filter(|b| !chosen.contains(b)).collect();
                let seed = self.seed ^ ((len as u64) << 40) ^ ((h as u64) << 20) ^ i as u64;
                let mut rng = ChaCha8Rng::seed_from_u64(seed);
                let r = self.random_blocks.min(rest.len());
                chosen.extend(sample(&mut rng, rest.len(), r).into_iter().map(|x| rest[x]));
                let slots = chosen.len();
                key_blocks.extend(chosen.into_iter().map(Some));
                key_blocks.extend(std::iter::repeat_n(None, per_query - slots));
            }
        }
        let pattern = BlockPattern {
            len,
            block,
            heads,
            per_query,
            key_blocks,
            global_keys: vec![],
            global_queries: (0..(g * block).min(len)).collect(),
            rule: ElementRule::All,
        };
        SparsePlan::uniform(pattern, heads)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A random-block count beyond the blocks that exist gathers what exists: it overflowed the
    /// plan's capacity (and panicked) before.
    #[test]
    fn a_huge_random_block_count_is_capped_by_the_blocks_that_exist() {
        let with = |random_blocks| BigBirdAttention {
            block: 4,
            global_blocks: 1,
            random_blocks,
            seed: 1,
        };
        let (huge, all) = (
            with(usize::MAX / 2).plan(16, 2, false),
            with(4).plan(16, 2, false),
        );
        assert_eq!(huge, all);
    }
}
