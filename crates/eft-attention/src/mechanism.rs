//! What every mechanism is: a config that checks and builds itself, and a module that attends and
//! states its cost. Capabilities that only some mechanisms have (causal form, per-step updates,
//! segment recurrence, memory) are trait methods with defaults, so nothing above this crate asks
//! which mechanism runs.

use std::fmt::Debug;

use burn::tensor::{Device, Tensor};
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::{AttentionCost, AttentionError, AttentionInput, AttentionLayout, AttentionShape};

/// Segment recurrence: the encoder cuts each sequence into segments of `segment` positions and
/// every layer also sees its last `mem_len` inputs, without gradient (Transformer-XL).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recurrence {
    /// Positions per segment.
    pub segment: usize,
    /// Positions each layer remembers from earlier segments.
    pub mem_len: usize,
}

/// What every mechanism module does: attend, and say what that costs.
pub trait Mechanism {
    /// Runs the mechanism.
    ///
    /// # Shapes
    /// - input: see [`AttentionInput`]
    /// - output: `[B, H, N, D]`
    fn forward(&self, input: AttentionInput) -> Tensor<4>;

    /// Analytic FLOPs and saved bytes for one call at `shape`.
    fn cost(&self, shape: AttentionShape) -> AttentionCost;

    /// The module as it should be at training step `step`; most mechanisms do not change.
    fn at_step(self, _step: usize) -> Self
    where
        Self: Sized,
    {
        self
    }

    /// The segment recurrence the encoder must run this layer under, if any.
    fn recurrence(&self) -> Option<Recurrence> {
        None
    }

    /// Whether [`AttentionInput::memory`] is read; the model passes memory only to such layers.
    fn reads_memory(&self) -> bool {
        false
    }

    /// The sparsity pattern, for the mechanisms defined by one.
    fn patterned(&self) -> Option<&dyn crate::Patterned> {
        None
    }
}

/// A mechanism's parameters: serde defaults through `Default`, checks, and the module they build.
///
/// The defaults say "nothing to check" and "causal form exists", so a mechanism states only what
/// is particular to it.
pub trait MechanismConfig:
    Debug + Clone + PartialEq + Default + Serialize + DeserializeOwned
{
    /// The module this config builds.
    type Module: Mechanism;

    /// Builds the module for one layer; learned parameters are drawn from `device`'s generator.
    fn init(&self, layout: AttentionLayout, device: &Device) -> Self::Module;

    /// Checks every parameter against its range.
    fn validate(&self) -> Result<(), AttentionError> {
        Ok(())
    }

    /// Checks the parameters against a concrete length and head count, strictly (a window or block
    /// longer than the sequence is an error here; at run time it is capped instead).
    fn check_shape(&self, _len: usize, _heads: usize) -> Result<(), AttentionError> {
        Ok(())
    }

    /// A lower bound on the floats one layer of the mechanism allocates when built (learned
    /// parameters and fixed buffers), computed without overflow, for memory checks made before
    /// anything is built. Most mechanisms allocate nothing worth counting.
    fn floats_at_least(&self, _layout: AttentionLayout) -> u64 {
        0
    }

    /// Whether the mechanism defines a causal form.
    fn supports_causal(&self) -> bool {
        true
    }

    /// Why its causal form still lets later tokens change earlier outputs, if it does: routing
    /// that reads the whole sequence. Such a form masks every later key, but is not
    /// autoregressive, and language modelling refuses it.
    fn causal_leak(&self) -> Option<&'static str> {
        None
    }

    /// The segment recurrence these parameters ask the encoder for, if any.
    fn recurrence(&self) -> Option<Recurrence> {
        None
    }
}

/// A parameter outside its range, with what would do.
pub(crate) fn out_of_range(
    field: &'static str,
    value: impl ToString,
    fix: impl ToString,
) -> AttentionError {
    AttentionError::OutOfRange {
        field,
        value: value.to_string(),
        fix: fix.to_string(),
    }
}

/// `value ≥ min`, or an error naming `field`.
pub(crate) fn at_least(
    field: &'static str,
    value: usize,
    min: usize,
) -> Result<(), AttentionError> {
    if value < min {
        return Err(out_of_range(
            field,
            value,
            format!("must be at least {min}"),
        ));
    }
    Ok(())
}

/// `value ≤ len`, or an error naming `field` and the sequence length.
pub(crate) fn fits(field: &'static str, value: usize, len: usize) -> Result<(), AttentionError> {
    if value > len {
        return Err(out_of_range(
            field,
            value,
            format!("must not exceed the sequence length {len}"),
        ));
    }
    Ok(())
}

/// A learned mechanism built for `max_len` positions cannot take `len`.
pub(crate) fn spans(name: &str, max_len: Option<usize>, len: usize) -> Result<(), AttentionError> {
    match max_len {
        Some(m) if m < len => Err(out_of_range(
            "max_len",
            m,
            format!(
                "`{name}` is built for sequences up to {m} tokens but is given {len}; raise \
                 max_len or leave it out to use the longest input"
            ),
        )),
        _ => Ok(()),
    }
}

/// Mechanisms that split heads into two sets need two heads.
pub(crate) fn two_head_sets(heads: usize) -> Result<(), AttentionError> {
    if heads < 2 {
        return Err(out_of_range(
            "heads",
            heads,
            "this mechanism splits heads into two sets; use at least 2 heads",
        ));
    }
    Ok(())
}
