//! Errors raised while configuring a model.

/// What was wrong with a model configuration, and how to fix it.
#[derive(Debug, thiserror::Error, PartialEq)]
pub enum ModelError {
    /// A field is outside its range or contradicts another.
    #[error("model field `{field}` = {value}: {fix}")]
    Config {
        /// The field's config name.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What would be accepted.
        fix: String,
    },
    /// The attention mechanism's parameters are wrong.
    #[error(transparent)]
    Attention(#[from] eft_attention::AttentionError),
}
