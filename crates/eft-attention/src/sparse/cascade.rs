//! Cascade: a sliding window that widens with depth, `window · growth^layer` at layer `layer`;
//! each layer runs as a sliding window of its width.

use burn::tensor::Device;
use serde::{Deserialize, Serialize};

use crate::mechanism::{at_least, fits, out_of_range};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SlidingAttention};

/// Parameters of `cascade`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CascadeConfig {
    /// Window of the first layer. Default 16.
    pub window: usize,
    /// Factor by which each layer widens the window, ≥ 1. Default 2.
    pub growth: f64,
}

impl Default for CascadeConfig {
    fn default() -> Self {
        Self {
            window: 16,
            growth: 2.0,
        }
    }
}

impl MechanismConfig for CascadeConfig {
    type Module = SlidingAttention;

    fn init(&self, layout: AttentionLayout, _: &Device) -> SlidingAttention {
        let window = (self.window as f64 * self.growth.powi(layout.layer as i32))
            .min(usize::MAX as f64 / 4.0);
        SlidingAttention {
            window: window as usize,
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("window", self.window, 1)?;
        if !(self.growth >= 1.0 && self.growth.is_finite()) {
            return Err(out_of_range("growth", self.growth, "must be a number ≥ 1"));
        }
        Ok(())
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        fits("window", self.window, len)
    }
}
