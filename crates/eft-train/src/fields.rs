//! Every field a run config has, with its type and its value in a given config: what
//! `eft train --list-fields` prints and what an "unknown field" error points to.

use eft_attention::AttentionConfig;
use serde::Serialize;

use crate::RunConfig;

/// One settable field: its dotted path (as `--set` takes it), its type and its value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Dotted path, e.g. `model.d_model`.
    pub path: String,
    /// `integer`, `float`, `bool`, `string`, `list` or `optional` (unset by default).
    pub kind: &'static str,
    /// The value in the config listed, as TOML would write it; `none` for an unset option.
    pub value: String,
}

/// The fields of `config`, leaves only, sorted by path.
pub fn fields(config: &RunConfig) -> Vec<Field> {
    let mut out = Vec::new();
    walk("", &to_json(config), &mut out);
    out
}

/// The parameters of every attention mechanism with their defaults, by mechanism name, as
/// fields under `model.attention` (set `kind` to the name to choose one).
pub fn mechanism_fields() -> Vec<(&'static str, Vec<Field>)> {
    AttentionConfig::NAMES
        .iter()
        .map(|name| {
            let config = AttentionConfig::from_name_and_params(name, &[])
                .expect("every registered mechanism builds with its defaults");
            let mut out = Vec::new();
            walk("model.attention", &to_json(&config), &mut out);
            out.retain(|f| f.path != "model.attention.kind");
            (*name, out)
        })
        .collect()
}

/// The feed-forward kinds with their parameters' defaults, as fields under `model.feed_forward`
/// (a Switch layer shown with 4 experts; `experts` has no default).
pub fn feed_forward_fields() -> Vec<(&'static str, Vec<Field>)> {
    use eft_model::{FeedForwardConfig, SwitchConfig};
    kinds(
        "model.feed_forward",
        [
            ("dense", FeedForwardConfig::Dense),
            (
                "switch",
                FeedForwardConfig::Switch(SwitchConfig::with_experts(4)),
            ),
        ],
    )
}

/// The depth kinds with their parameters' defaults, as fields under `model.depth` (adaptive
/// computation time shown with 4 steps; `max_steps` has no default).
pub fn depth_fields() -> Vec<(&'static str, Vec<Field>)> {
    use eft_model::{ActConfig, DepthConfig};
    kinds(
        "model.depth",
        [
            ("fixed", DepthConfig::Fixed),
            ("act", DepthConfig::Act(ActConfig::with_max_steps(4))),
        ],
    )
}

/// The exit kinds with their parameters' defaults, as fields under `model.exits` (confidence
/// exits shown with threshold 0.9; `threshold` has no default).
pub fn exits_fields() -> Vec<(&'static str, Vec<Field>)> {
    use eft_model::{ConfidenceExits, ExitsConfig, LearnedExits};
    kinds(
        "model.exits",
        [
            ("none", ExitsConfig::None),
            (
                "confidence",
                ExitsConfig::Confidence(ConfidenceExits { threshold: 0.9 }),
            ),
            (
                "learned",
                ExitsConfig::Learned(LearnedExits { penalty: 0.01 }),
            ),
        ],
    )
}

/// Each named config's fields under `prefix`, its `kind` left out.
fn kinds<T: Serialize, const N: usize>(
    prefix: &str,
    configs: [(&'static str, T); N],
) -> Vec<(&'static str, Vec<Field>)> {
    configs
        .into_iter()
        .map(|(name, config)| {
            let mut out = Vec::new();
            walk(prefix, &to_json(&config), &mut out);
            let kind = format!("{prefix}.kind");
            out.retain(|f| f.path != kind);
            (name, out)
        })
        .collect()
}

fn to_json(value: &impl Serialize) -> serde_json::Value {
    serde_json::to_value(value).expect("configs serialise")
}

fn walk(prefix: &str, value: &serde_json::Value, out: &mut Vec<Field>) {
    use serde_json::Value as J;
    let leaf = |kind: &'static str, value: String| Field {
        path: prefix.to_string(),
        kind,
        value,
    };
    match value {
        J::Object(map) => {
            for (key, v) in map {
                let path = if prefix.is_empty() {
                    key.clone()
                } else {
                    format!("{prefix}.{key}")
                };
                walk(&path, v, out);
            }
        }
        J::Null => out.push(leaf("optional", "none".into())),
        J::Bool(b) => out.push(leaf("bool", b.to_string())),
        J::Number(n) if n.is_f64() => out.push(leaf("float", n.to_string())),
        J::Number(n) => out.push(leaf("integer", n.to_string())),
        J::String(s) => out.push(leaf("string", format!("{s:?}"))),
        J::Array(_) => out.push(leaf("list", value.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_of_a_preset_is_listed_with_its_type_and_value() {
        let config = crate::preset("listops", "quick").unwrap();
        let listed = fields(&config);
        let find = |p: &str| listed.iter().find(|f| f.path == p).cloned();
        let d = find("model.d_model").expect("model.d_model is listed");
        assert_eq!(
            (d.kind, d.value),
            ("integer", config.model.d_model.to_string())
        );
        assert_eq!(find("model.attention.kind").unwrap().value, "\"full\"");
        assert_eq!(find("train.schedule.kind").unwrap().kind, "string");
        assert_eq!(find("model.dropout").unwrap().kind, "float");
        // Every listed path is one that --set accepts.
        for f in &listed {
            let raw = if f.kind == "optional" { "1" } else { &f.value };
            crate::layered(&config, None, &[(f.path.clone(), raw.to_string())])
                .unwrap_or_else(|e| panic!("{}: {e}", f.path));
        }
    }

    #[test]
    fn every_mechanism_lists_its_parameters_and_unset_options() {
        let all = mechanism_fields();
        assert_eq!(all.len(), AttentionConfig::NAMES.len());
        let of = |name: &str| &all.iter().find(|(n, _)| *n == name).unwrap().1;
        assert!(of("full").is_empty());
        let linformer = of("linformer");
        assert!(
            linformer
                .iter()
                .any(|f| f.path == "model.attention.max_len" && f.kind == "optional"),
            "{linformer:?}"
        );
        assert!(
            of("lsh")
                .iter()
                .any(|f| f.path == "model.attention.buckets" && f.value == "8")
        );
    }
}
