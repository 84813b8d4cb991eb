//! Longformer (Beltagy et al. 2020): `|i − j| ≤ window·dilation` with `(i − j) mod dilation = 0`,
//! plus `global` positions that see and are seen by all. O(N·(window + g)).

use burn::module::Module;
use burn::tensor::Device;
use serde::{Deserialize, Deserializer, Serialize};

use super::{Patterned, window_pattern};
use crate::mechanism::{at_least, fits, out_of_range};
use crate::{AttentionError, AttentionLayout, MechanismConfig, SparsePlan};

/// Parameters of `longformer`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LongformerConfig {
    /// Keys seen on each side. Default 32.
    pub window: usize,
    /// Positions that see and are seen by all, e.g. `0,40` or `[0, 40]`. Default `[0]` (CLS).
    #[serde(deserialize_with = "positions")]
    pub global: Vec<usize>,
    /// Gap between window keys (1 = none). Default 1.
    pub dilation: usize,
}

impl Default for LongformerConfig {
    fn default() -> Self {
        Self {
            window: 32,
            global: vec![0],
            dilation: 1,
        }
    }
}

impl MechanismConfig for LongformerConfig {
    type Module = LongformerAttention;

    fn init(&self, _: AttentionLayout, _: &Device) -> LongformerAttention {
        LongformerAttention {
            window: self.window,
            dilation: self.dilation,
            global: self.global.clone(),
        }
    }

    fn validate(&self) -> Result<(), AttentionError> {
        at_least("window", self.window, 1)?;
        at_least("dilation", self.dilation, 1)
    }

    fn check_shape(&self, len: usize, _heads: usize) -> Result<(), AttentionError> {
        let Some(span) = self.window.checked_mul(self.dilation) else {
            return Err(out_of_range(
                "window",
                self.window,
                format!(
                    "window × dilation ({}) must not exceed the sequence length {len}",
                    self.dilation
                ),
            ));
        };
        fits("window", span, len)?;
        match self.global.iter().find(|&&g| g >= len) {
            Some(g) => Err(out_of_range(
                "global",
                g,
                format!("positions must be below the sequence length {len}"),
            )),
            None => Ok(()),
        }
    }
}

/// Reads positions from a list (`[0, 40]`), one number, or comma-separated text (`"0,40"`).
fn positions<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<usize>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        List(Vec<usize>),
        One(usize),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::List(v) => Ok(v),
        Raw::One(p) => Ok(vec![p]),
        Raw::Text(s) if s.trim().is_empty() => Ok(vec![]),
        Raw::Text(s) => s
            .split(',')
            .map(|p| {
                p.trim().parse::<usize>().map_err(|_| {
                    serde::de::Error::custom(format!(
                        "global: `{p}` is not a position; write e.g. 0,40"
                    ))
                })
            })
            .collect(),
    }
}

/// Longformer (Beltagy et al. 2020): dilated sliding window plus global positions.
#[derive(Module, Debug)]
pub struct LongformerAttention {
    /// Keys seen on each side.
    pub window: usize,
    /// Gap between the keys of the window.
    pub dilation: usize,
    /// Positions that see, and are seen by, every position.
    pub global: Vec<usize>,
}

impl Patterned for LongformerAttention {
    fn plan(&self, len: usize, heads: usize, causal: bool) -> SparsePlan {
        let mut pattern = window_pattern(len, self.window, self.dilation, causal);
        let mut global: Vec<usize> = self.global.iter().copied().filter(|&g| g < len).collect();
        global.sort_unstable();
        global.dedup();
        pattern.global_keys = global.clone();
        pattern.global_queries = global;
        SparsePlan::uniform(pattern, heads)
    }
}
