//! Sliding-window attention: `|i − j| ≤ window` (causal: `i − window ≤ j ≤ i`).
//! O(N·window) time and memory.

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use super::{Patterned, window_pattern};
use crate::mechanism::{at_least, fits};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SparsePlan};

/// Parameters of `sliding`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SlidingConfig {
    /// Largest distance seen. Default 50.
    pub window: usize,
}

impl Default for SlidingConfig {
    fn default() -> Self {
        Self { window: 50 }
    }
}

impl MechanismConfig for SlidingConfig {
    type Module = SlidingAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> SlidingAttention {
        SlidingAttention {
            window: self.window,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("window", self.window, 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("window", self.window, len)
    }
}

/// Sliding-window attention: each query sees the keys within `window` positions.
#[derive(Module, Debug)]
pub struct SlidingAttention {
    /// Largest distance seen.
    pub window: usize,
}

impl Patterned for SlidingAttention {
    fn plan(&self, len: usize, heads: usize, causal: bool) -> SparsePlan {
        SparsePlan::uniform(window_pattern(len, self.window, 1, causal), heads)
    }
}
