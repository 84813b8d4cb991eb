//! Choosing a mechanism by name and parameters, and checking the choice before anything runs.

use serde::{Deserialize, Serialize};

use crate::{Attention, AttentionError, FullAttention};

/// Parameters of [`FullAttention`]: it has none.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FullConfig {}

/// Which attention mechanism a layer uses, with its parameters.
///
/// In TOML: `attention = { kind = "full" }`; parameters sit beside `kind`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AttentionConfig {
    /// Dense softmax attention (`full`).
    Full(FullConfig),
}

impl Default for AttentionConfig {
    fn default() -> Self {
        AttentionConfig::Full(FullConfig::default())
    }
}

impl AttentionConfig {
    /// The names accepted for `kind`.
    pub const NAMES: &'static [&'static str] = &["full"];

    /// The mechanism's config name.
    pub fn name(&self) -> &'static str {
        match self {
            AttentionConfig::Full(_) => "full",
        }
    }

    /// Builds a config from a name and `key=value` parameters, as the command line gives them.
    ///
    /// Values are read as TOML scalars (`3`, `0.5`, `true`), falling back to strings, so the same
    /// field names and types apply as in a config file.
    pub fn from_name_and_params(
        name: &str,
        params: &[(String, String)],
    ) -> Result<Self, AttentionError> {
        let mut table = toml::Table::new();
        table.insert("kind".into(), toml::Value::String(name.to_string()));
        for (key, raw) in params {
            table.insert(key.clone(), toml_scalar(raw));
        }
        let config: AttentionConfig =
            toml::Value::Table(table)
                .try_into()
                .map_err(|e: toml::de::Error| AttentionError::OutOfRange {
                    field: "attention",
                    value: name.to_string(),
                    fix: format!(
                        "{}; known mechanisms: {}",
                        e.message().trim(),
                        Self::NAMES.join(", ")
                    ),
                })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every parameter against its range; says which one is wrong and what would do.
    pub fn validate(&self) -> Result<(), AttentionError> {
        match self {
            AttentionConfig::Full(_) => Ok(()),
        }
    }

    /// Whether the mechanism defines a causal form.
    pub fn supports_causal(&self) -> bool {
        match self {
            AttentionConfig::Full(_) => true,
        }
    }

    /// Builds the mechanism for one layer (`layer` counts from 0; depth-dependent mechanisms use it).
    pub fn init(&self, _layer: usize) -> Attention {
        match self {
            AttentionConfig::Full(_) => Attention::Full(FullAttention),
        }
    }
}

/// Reads a command-line value as TOML (`3`, `0.5`, `true`, `[1, 2]`, `{ kind = "x" }`), and as a
/// plain string when it is not valid TOML, so `--param global=0,40` and `name=mine` need no quotes.
pub fn toml_scalar(raw: &str) -> toml::Value {
    match format!("v = {raw}").parse::<toml::Table>() {
        Ok(mut t) => t
            .remove("v")
            .unwrap_or_else(|| toml::Value::String(raw.into())),
        Err(_) => toml::Value::String(raw.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn builds_full_from_its_name() {
        let c = AttentionConfig::from_name_and_params("full", &[]).unwrap();
        assert_eq!(c, AttentionConfig::Full(FullConfig {}));
        assert!(c.supports_causal());
    }

    #[test]
    fn unknown_mechanism_names_the_choices() {
        let e = AttentionConfig::from_name_and_params("fulll", &[]).unwrap_err();
        let msg = e.to_string();
        assert!(msg.contains("fulll") && msg.contains("full"), "{msg}");
    }

    #[test]
    fn unknown_parameter_is_rejected() {
        let e = AttentionConfig::from_name_and_params("full", &[("block".into(), "4".into())])
            .unwrap_err();
        assert!(e.to_string().contains("block"), "{e}");
    }

    #[test]
    fn command_line_values_read_as_toml_or_text() {
        assert_eq!(toml_scalar("3"), toml::Value::Integer(3));
        assert_eq!(toml_scalar("true"), toml::Value::Boolean(true));
        assert_eq!(toml_scalar("0,40"), toml::Value::String("0,40".into()));
        assert_eq!(toml_scalar("mine"), toml::Value::String("mine".into()));
    }

    #[test]
    fn toml_round_trip() {
        let c = AttentionConfig::default();
        let s = toml::to_string(&c).unwrap();
        assert_eq!(s.trim(), "kind = \"full\"");
        assert_eq!(toml::from_str::<AttentionConfig>(&s).unwrap(), c);
    }
}
