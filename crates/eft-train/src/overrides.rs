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
    set_value(config, key, eft_attention::toml_scalar(raw))
}

/// Sets the dotted `key` to a typed `value`, merged like a table from a file.
pub fn set_value(
    config: &mut toml::Value,
    key: &str,
    value: toml::Value,
) -> Result<(), TrainError> {
    let mut nested = value;
    for part in key.split('.').rev() {
        if part.is_empty() {
            return Err(TrainError::config(
                key,
                nested,
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
    layered_with(base, file, &[], overrides)
}

/// [`layered`] with typed `values` (named command-line flags, a chosen mechanism) set between
/// the file and the `key=value` overrides, so nothing is turned into TOML text to be re-read.
pub fn layered_with(
    base: &RunConfig,
    file: Option<&Path>,
    values: &[(String, toml::Value)],
    overrides: &[(String, String)],
) -> Result<RunConfig, TrainError> {
    let mut value = toml::Value::try_from(base).expect("a run config always serialises");
    let mut schedule_set = false;
    if let Some(path) = file {
        let text = std::fs::read_to_string(path).map_err(|e| {
            TrainError::file(path, e, "pass --config the path of a TOML run config")
        })?;
        let overlay: toml::Value = toml::from_str(&text).map_err(|e| {
            TrainError::file(path, e.message().trim(), "fix the TOML syntax at that line")
        })?;
        schedule_set |= overlay
            .get("train")
            .is_some_and(|t| !t.is_table() || t.get("schedule").is_some());
        merge(&mut value, overlay);
    }
    let touches_schedule = |key: &str| key == "train" || key.starts_with("train.schedule");
    for (key, typed) in values {
        schedule_set |= touches_schedule(key);
        set_value(&mut value, key, typed.clone())?;
    }
    for (key, raw) in overrides {
        schedule_set |= touches_schedule(key);
        set(&mut value, key, raw)?;
    }
    let mut config: RunConfig = value
        .try_into()
        .map_err(|e: toml::de::Error| blame(base, overrides, &e))?;
    if !schedule_set {
        scale_warmup(&mut config.train, base.train.steps);
    }
    config.validate()?;
    Ok(config)
}

/// A config that does not deserialise, blamed on the first `--set` that alone breaks the base
/// config (the error's text has no field path of its own: `invalid type: integer 3, expected
/// internally tagged enum`), or left as it is.
fn blame(base: &RunConfig, overrides: &[(String, String)], e: &toml::de::Error) -> TrainError {
    let message = e.message().trim().replace('\n', " ");
    for (key, raw) in overrides {
        let mut value = toml::Value::try_from(base).expect("a run config always serialises");
        if set(&mut value, key, raw).is_ok() && value.try_into::<RunConfig>().is_err() {
            return TrainError::config(
                key,
                raw,
                format!("{message}; `eft train --list-fields` lists every field and kind"),
            );
        }
    }
    toml_error(e)
}

/// A run shortened below its preset's warmup keeps the preset's shape: the warmup shrinks in
/// proportion to the steps (100 of 1500 becomes 4 of 60), so `--steps 60` just works. Only a
/// warmup nobody set and that no longer fits is changed.
fn scale_warmup(train: &mut crate::TrainConfig, base_steps: usize) {
    let steps = train.steps;
    if let crate::Schedule::Cosine { warmup, .. } = &mut train.schedule
        && *warmup >= steps
        && steps > 0
    {
        let scaled = (*warmup as u128 * steps as u128 / base_steps.max(1) as u128) as usize;
        *warmup = scaled.min(steps - 1);
    }
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

    /// A run shorter than the preset's warmup scales the warmup it did not set, and an explicit
    /// warmup that does not fit is still refused, naming the flag that fixes it.
    #[test]
    fn short_runs_scale_the_warmup_they_did_not_set() {
        let base = quick();
        let crate::Schedule::Cosine { warmup, .. } = base.train.schedule else {
            panic!("the quick preset warms up a cosine schedule")
        };
        assert!(warmup >= 60, "the test needs a warmup of at least 60 steps");
        let c = layered(&base, None, &[("train.steps".into(), "60".into())]).unwrap();
        let crate::Schedule::Cosine { warmup: w, .. } = c.train.schedule else {
            panic!("still cosine")
        };
        assert_eq!(w, warmup * 60 / base.train.steps);
        let same = layered(&base, None, &[("train.steps".into(), "2000".into())]).unwrap();
        assert_eq!(
            same.train.schedule, base.train.schedule,
            "a warmup that fits is kept"
        );
        let e = layered(
            &base,
            None,
            &[
                ("train.steps".into(), "60".into()),
                ("train.schedule.warmup".into(), "100".into()),
            ],
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("--set train.schedule.warmup="),
            "{e}"
        );
    }

    #[test]
    fn heads_not_dividing_width_is_caught_before_running() {
        let e = layered(&quick(), None, &[("model.n_heads".into(), "5".into())]).unwrap_err();
        assert!(e.to_string().contains("model.n_heads"), "{e}");
    }
}
