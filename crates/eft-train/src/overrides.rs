//! Layering a config: preset, then a TOML file, then `key=value` overrides from the command line.

use std::path::Path;

use crate::config::toml_error;
use crate::{RunConfig, TrainError};

/// Merges `overlay` into `base`: tables merge key by key, anything else replaces.
///
/// A table that names a different `kind` or `name` (another mechanism, task or schedule)
/// replaces the base table whole, so parameters of the old choice do not leak into the new one.
pub fn merge(base: &mut toml::Value, overlay: toml::Value) {
    merge_at(base, overlay, true);
}

fn merge_at(base: &mut toml::Value, overlay: toml::Value, root: bool) {
    match (base, overlay) {
        (toml::Value::Table(b), toml::Value::Table(o)) => {
            // At the root, `name` is the run's name, not a choice between variants.
            let switches = !root
                && ["kind", "name"].iter().any(|k| {
                    o.get(*k)
                        .is_some_and(|v| b.get(*k).is_some_and(|bv| bv != v))
                });
            if switches {
                *b = o;
                return;
            }
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_at(slot, v, false),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (b, o) => *b = o,
    }
}

/// Sets the dotted `key` (e.g. `model.d_model`) to `raw`, read as a TOML value when it parses as
/// one and as a string otherwise.
pub fn set(config: &mut toml::Value, key: &str, raw: &str) -> Result<(), TrainError> {
    let mut nested = eft_attention::toml_scalar(raw);
    for part in key.split('.').rev() {
        if part.is_empty() {
            return Err(TrainError::config(
                key,
                raw,
                "keys are dotted field paths such as model.d_model",
            ));
        }
        let mut t = toml::Table::new();
        t.insert(part.to_string(), nested);
        nested = toml::Value::Table(t);
    }
    merge(config, nested);
    Ok(())
}

/// Builds a run config from a base, an optional TOML file and `key=value` overrides, in that order,
/// then validates it.
pub fn layered(
    base: &RunConfig,
    file: Option<&Path>,
    overrides: &[(String, String)],
) -> Result<RunConfig, TrainError> {
    let mut value = toml::Value::try_from(base).expect("a run config always serialises");
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(TrainError::io(path))?;
        let overlay: toml::Value = toml::from_str(&text).map_err(|e| {
            TrainError::file(path, e.message().trim(), "fix the TOML syntax at that line")
        })?;
        merge(&mut value, overlay);
    }
    for (key, raw) in overrides {
        set(&mut value, key, raw)?;
    }
    let config: RunConfig = value
        .try_into()
        .map_err(|e: toml::de::Error| toml_error(&e))?;
    config.validate()?;
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::preset;

    fn quick() -> RunConfig {
        preset("listops", "quick").unwrap()
    }

    #[test]
    fn overrides_reach_nested_fields_with_their_types() {
        let c = layered(
            &quick(),
            None,
            &[
                ("model.d_model".into(), "32".into()),
                ("train.schedule.lr".into(), "0.01".into()),
                ("name".into(), "mine".into()),
            ],
        )
        .unwrap();
        assert_eq!(c.model.d_model, 32);
        assert_eq!(c.name, "mine");
        assert!(matches!(c.train.schedule, crate::Schedule::Cosine { lr, .. } if lr == 0.01));
    }

    #[test]
    fn wrong_types_and_unknown_fields_are_named() {
        let e = layered(&quick(), None, &[("model.d_model".into(), "wide".into())]).unwrap_err();
        assert!(
            e.to_string().contains("d_model") || e.to_string().contains("usize"),
            "{e}"
        );
        let e = layered(&quick(), None, &[("model.widht".into(), "3".into())]).unwrap_err();
        assert!(e.to_string().contains("widht"), "{e}");
        let e = layered(&quick(), None, &[("model.d_model".into(), "-4".into())]).unwrap_err();
        assert!(
            e.to_string().contains("-4") || e.to_string().contains("d_model"),
            "{e}"
        );
    }

    #[test]
    fn switching_kind_replaces_the_whole_table() {
        let c = layered(
            &quick(),
            None,
            &[(
                "train.schedule".into(),
                "{ kind = \"constant\", lr = 0.1 }".into(),
            )],
        )
        .unwrap();
        assert_eq!(c.train.schedule, crate::Schedule::Constant { lr: 0.1 });
    }

    #[test]
    fn a_file_layers_between_preset_and_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("run.toml");
        std::fs::write(&path, "seed = 7\n[model]\nn_layers = 3\n").unwrap();
        let c = layered(&quick(), Some(&path), &[("seed".into(), "9".into())]).unwrap();
        assert_eq!((c.seed, c.model.n_layers), (9, 3));
        std::fs::write(&path, "seed = [\n").unwrap();
        let e = layered(&quick(), Some(&path), &[]).unwrap_err();
        assert!(e.to_string().contains("run.toml"), "{e}");
    }

    #[test]
    fn heads_not_dividing_width_is_caught_before_running() {
        let e = layered(&quick(), None, &[("model.n_heads".into(), "5".into())]).unwrap_err();
        assert!(e.to_string().contains("model.n_heads"), "{e}");
    }
}
