//! Errors raised while configuring or calling an attention mechanism.

/// What was wrong with an attention configuration or input, and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum AttentionError {
    /// A parameter is outside the range the mechanism accepts.
    #[error("attention parameter `{field}` = {value}: {fix}")]
    OutOfRange {
        /// The parameter's config name.
        field: &'static str,
        /// The offending value, as written.
        value: String,
        /// What would be accepted.
        fix: String,
    },
    /// An input dimension is zero, for which no mechanism is defined.
    #[error(
        "attention input has {dim} = 0: batch, heads, length and head dimension must each be at \
         least 1"
    )]
    EmptyInput {
        /// Which dimension: `batch`, `heads`, `len` or `head_dim`.
        dim: &'static str,
    },
}
