//! A sparsity pattern in block form: what the block-sparse kernels and the tensor-op engine
//! of `eft-attention` both run, and what the dense oracle is built from.

/// Which keys a query inside a gathered block may see, beyond causal and padding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementRule {
    /// Every key of the gathered blocks.
    All,
    /// Keys with `|i − j| ≤ window` and `(i − j) mod dilation = 0`.
    Window {
        /// Largest distance seen.
        window: usize,
        /// Only every `dilation`-th key within the window (1 = all).
        dilation: usize,
    },
}

impl ElementRule {
    /// Whether query `i` may see key `j` under this rule.
    pub fn allows(self, i: usize, j: usize) -> bool {
        match self {
            ElementRule::All => true,
            ElementRule::Window { window, dilation } => {
                let dist = i.abs_diff(j);
                dist <= window && dist.is_multiple_of(dilation)
            }
        }
    }
}

/// A sparsity pattern in block form, for one sequence length.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockPattern {
    /// Sequence length `N` the pattern was built for.
    pub len: usize,
    /// Block size `b`.
    pub block: usize,
    /// Number of pattern heads: 1 (all heads share it) or `H` (one pattern per head).
    pub heads: usize,
    /// Key blocks per query block, `K`.
    pub per_query: usize,
    /// `[heads, N/b, K]` key-block indices; `None` marks an unused slot.
    pub key_blocks: Vec<Option<usize>>,
    /// Positions every query may see, besides its gathered blocks.
    pub global_keys: Vec<usize>,
    /// Positions whose queries see every key.
    pub global_queries: Vec<usize>,
    /// Refinement inside gathered blocks.
    pub rule: ElementRule,
}

impl BlockPattern {
    /// Number of blocks after padding `N` up to a multiple of `b`.
    pub fn n_blocks(&self) -> usize {
        self.len.div_ceil(self.block)
    }

    /// Whether query `i` may see key `j` for pattern head `h`, by the pattern alone (before causal
    /// and padding); the dense oracle built from this must equal what the engine computes.
    pub fn allows(&self, h: usize, i: usize, j: usize) -> bool {
        if self.global_queries.contains(&i) || self.global_keys.contains(&j) {
            return true;
        }
        let qb = i / self.block;
        let base = (h * self.n_blocks() + qb) * self.per_query;
        self.key_blocks[base..base + self.per_query]
            .iter()
            .any(|&kb| kb == Some(j / self.block))
            && self.rule.allows(i, j)
    }

    /// Columns of one query block's scores: `K·b` gathered keys, then the global keys.
    pub fn width(&self) -> usize {
        self.per_query * self.block + self.global_keys.len()
    }

    /// Query–key pairs scored per head: the engine's work and memory unit.
    pub fn scored_pairs(&self) -> f64 {
        let padded = (self.n_blocks() * self.block) as f64;
        let gathered = (self.per_query * self.block + self.global_keys.len()) as f64;
        padded * gathered + (self.global_queries.len() * self.len) as f64
    }
}
