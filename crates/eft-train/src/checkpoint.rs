//! Checkpoints: model weights, optimizer moments and loop state in one safetensors file.
//!
//! Tensors are named `model.<param>`, `adam.m.<param>` and `adam.v.<param>` (f32); the metadata
//! holds the run's config (`eft.config`, TOML), loop state (`eft.state`, JSON) and a SHA-256 of
//! all of it (`eft.sha256`), checked on load. One file, written atomically, so a checkpoint is
//! either the old one or the new one; non-finite values are never written and never loaded.
//!
//! Written with `safetensors` directly, not burn-store's `SafetensorsStore`: that snapshots one
//! module, while a checkpoint also holds Adam's moments, the loop state and one checksum over all
//! of them, in one file. (`eft export` does use burn-store, for its PyTorch adapter.)

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::params::NamedArray;
use crate::safetensors_file::{decode_f32, encode_f32};
use crate::{EvalPoint, ExtraSums, RunConfig, TrainError, write_atomic};

/// Version of the checkpoint layout; bumped when it changes incompatibly.
const FORMAT: &str = "2";

/// The layout before checksums, still read (without one to verify).
const FORMAT_WITHOUT_CHECKSUM: &str = "1";

/// The training loop's position and what it has measured so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct LoopState {
    /// Steps completed.
    pub step: usize,
    /// Real tokens trained on.
    pub tokens: u64,
    /// Wall-clock seconds spent training, over all sessions.
    pub seconds: f64,
    /// Sum and count of training losses since the last evaluation.
    pub loss_sum: f64,
    /// Number of losses in `loss_sum`.
    pub loss_count: usize,
    /// Validation results so far.
    pub evals: Vec<EvalPoint>,
    /// Sessions that trained this run (1 + number of resumes).
    pub sessions: u32,
    /// Analytic FLOPs of the steps completed.
    #[serde(default)]
    pub flops: f64,
    /// The part of `flops` the steps did not execute (tokens Switch layers dropped or did not
    /// route), forward and backward.
    #[serde(default)]
    pub skipped_flops: f64,
    /// Auxiliary losses and per-layer statistics since the last evaluation.
    #[serde(default, skip_serializing_if = "ExtraSums::is_empty")]
    pub extras: ExtraSums,
    /// The training steps since the last line of the metrics stream.
    #[serde(default)]
    pub window: crate::metrics::MetricsWindow,
    /// Dynamic loss scaling's state (f16 runs only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loss_scale: Option<crate::LossScale>,
}

/// Everything needed to continue a run exactly where it stopped.
#[derive(Debug, Clone)]
pub struct Checkpoint {
    /// The run's config.
    pub config: RunConfig,
    /// The loop's state.
    pub state: LoopState,
    /// Adam's step count.
    pub adam_steps: u64,
    /// Model parameters by name.
    pub model: BTreeMap<String, NamedArray>,
    /// Adam moments by name (`m.<param>`, `v.<param>`).
    pub adam: BTreeMap<String, NamedArray>,
    /// Pruning masks by parameter name (1 kept, 0 pruned); empty when nothing is pruned.
    pub masks: BTreeMap<String, NamedArray>,
}

impl Checkpoint {
    /// Writes the checkpoint to `path` atomically.
    pub fn save(&self, path: &Path) -> Result<(), TrainError> {
        let arrays = self
            .model
            .iter()
            .map(|(k, a)| (format!("model.{k}"), a))
            .chain(self.adam.iter().map(|(k, a)| (format!("adam.{k}"), a)))
            .chain(self.masks.iter().map(|(k, a)| (format!("mask.{k}"), a)));
        if let Some(problem) = self.non_finite() {
            return Err(TrainError::file(
                path,
                format!("refusing to write a checkpoint whose {problem}"),
                "the run has diverged; the previous checkpoint is kept",
            ));
        }
        let state = serde_json::json!({ "loop": self.state, "adam_steps": self.adam_steps });
        let (config, state) = (self.config.to_toml(), state.to_string());
        let digest = self.digest(&config, &state);
        let metadata = HashMap::from([
            ("eft.format".to_string(), FORMAT.to_string()),
            ("eft.config".to_string(), config),
            ("eft.state".to_string(), state),
            ("eft.sha256".to_string(), digest),
        ]);
        let file = encode_f32(arrays, metadata)
            .map_err(|e| TrainError::file(path, e, "could not encode the checkpoint"))?;
        write_atomic(path, &file)
    }

    /// Reads a checkpoint; errors say whether it is missing, corrupt or of another format.
    pub fn load(path: &Path) -> Result<Self, TrainError> {
        let bytes = std::fs::read(path).map_err(|e| match e.kind() {
            std::io::ErrorKind::NotFound => Self::not_found(path),
            _ => TrainError::Io {
                path: path.into(),
                cause: e,
            },
        })?;
        let corrupt = |problem: String| {
            TrainError::file(
                path,
                format!("checkpoint is corrupt ({problem})"),
                "restore it from a backup or start the run again",
            )
        };
        let (_, header) = SafeTensors::read_metadata(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let meta = header.metadata().clone().unwrap_or_default();
        let field = |k: &str| {
            meta.get(k)
                .ok_or_else(|| corrupt(format!("metadata `{k}` missing")))
        };
        let format = field("eft.format")?;
        if format != FORMAT && format != FORMAT_WITHOUT_CHECKSUM {
            return Err(TrainError::file(
                path,
                format!("checkpoint format {} is not {FORMAT}", field("eft.format")?),
                "use the eft version that wrote it",
            ));
        }
        let (config_text, state_text) = (field("eft.config")?, field("eft.state")?);
        let config =
            RunConfig::from_toml(config_text).map_err(|e| corrupt(format!("saved config: {e}")))?;
        #[derive(Deserialize)]
        struct Saved {
            #[serde(rename = "loop")]
            state: LoopState,
            adam_steps: u64,
        }
        let saved: Saved =
            serde_json::from_str(state_text).map_err(|e| corrupt(format!("saved state: {e}")))?;
        let tensors = SafeTensors::deserialize(&bytes).map_err(|e| corrupt(e.to_string()))?;
        let (mut model, mut adam, mut masks) = (BTreeMap::new(), BTreeMap::new(), BTreeMap::new());
        for (name, view) in tensors.tensors() {
            if view.dtype() != Dtype::F32 {
                return Err(corrupt(format!("`{name}` is {:?}, not F32", view.dtype())));
            }
            let values = decode_f32(view.data());
            let array = NamedArray {
                shape: view.shape().to_vec(),
                values,
            };
            if let Some(k) = name.strip_prefix("model.") {
                model.insert(k.to_string(), array);
            } else if let Some(k) = name.strip_prefix("adam.") {
                adam.insert(k.to_string(), array);
            } else if let Some(k) = name.strip_prefix("mask.") {
                masks.insert(k.to_string(), array);
            } else {
                return Err(corrupt(format!("unexpected tensor `{name}`")));
            }
        }
        let checkpoint = Self {
            config,
            state: saved.state,
            adam_steps: saved.adam_steps,
            model,
            adam,
            masks,
        };
        if format == FORMAT {
            let stored = field("eft.sha256")?;
            if *stored != checkpoint.digest(config_text, state_text) {
                return Err(corrupt(
                    "its SHA-256 does not match the contents: a byte was changed after writing"
                        .into(),
                ));
            }
        }
        if let Some(problem) = checkpoint.non_finite() {
            return Err(corrupt(problem));
        }
        Ok(checkpoint)
    }

    /// The error for a folder without a checkpoint at `path`.
    pub(crate) fn not_found(path: &Path) -> TrainError {
        TrainError::file(
            path,
            "no checkpoint here",
            "give a run folder that holds checkpoint.safetensors (eft train --resume DIR, eft \
             eval DIR), or start a new run",
        )
    }

    /// SHA-256 (hex) of the config and state text and every tensor's name, shape and values.
    fn digest(&self, config: &str, state: &str) -> String {
        let mut hash = Sha256::new();
        for text in [config, state] {
            hash.update((text.len() as u64).to_le_bytes());
            hash.update(text.as_bytes());
        }
        let arrays = self
            .model
            .iter()
            .map(|(k, a)| ("model.", k, a))
            .chain(self.adam.iter().map(|(k, a)| ("adam.", k, a)))
            .chain(self.masks.iter().map(|(k, a)| ("mask.", k, a)));
        for (prefix, name, array) in arrays {
            hash.update(prefix.as_bytes());
            hash.update(name.as_bytes());
            hash.update([0]);
            for &d in &array.shape {
                hash.update((d as u64).to_le_bytes());
            }
            for v in &array.values {
                hash.update(v.to_le_bytes());
            }
        }
        hash.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    /// Which tensor holds a NaN or an infinity, if any.
    fn non_finite(&self) -> Option<String> {
        let arrays = self.model.iter().map(|(k, a)| (format!("model.{k}"), a));
        let mut all = arrays.chain(self.adam.iter().map(|(k, a)| (format!("adam.{k}"), a)));
        all.find_map(|(name, a)| {
            let i = a.values.iter().position(|v| !v.is_finite())?;
            Some(format!(
                "tensor `{name}` holds {} at index {i}",
                a.values[i]
            ))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Checkpoint {
        let array = |v: f32| NamedArray {
            shape: vec![2, 1],
            values: vec![v, -v],
        };
        Checkpoint {
            config: crate::preset("listops", "quick").unwrap(),
            state: LoopState {
                step: 12,
                tokens: 999,
                seconds: 1.5,
                loss_sum: 3.25,
                loss_count: 2,
                evals: vec![],
                sessions: 1,
                flops: 7.0,
                skipped_flops: 1.5,
                extras: ExtraSums::default(),
                window: crate::metrics::MetricsWindow {
                    steps: 2,
                    loss_sum: 0.1 + 0.2,
                    ..Default::default()
                },
                loss_scale: Some(crate::LossScale {
                    scale: 1024.0,
                    clean_steps: 7,
                    skipped_steps: 2,
                }),
            },
            adam_steps: 12,
            model: BTreeMap::from([("a.weight".to_string(), array(0.1))]),
            adam: BTreeMap::from([
                ("m.a.weight".to_string(), array(0.2)),
                ("v.a.weight".to_string(), array(0.3)),
            ]),
            masks: BTreeMap::from([("a.weight".to_string(), array(1.0))]),
        }
    }

    #[test]
    fn round_trips_bit_for_bit() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let c = sample();
        c.save(&path).unwrap();
        let back = Checkpoint::load(&path).unwrap();
        assert_eq!(back.config, c.config);
        assert_eq!(back.state, c.state);
        assert_eq!(back.adam_steps, 12);
        assert_eq!(back.model, c.model);
        assert_eq!(back.adam, c.adam);
    }

    #[test]
    fn missing_and_corrupt_files_are_told_apart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("no checkpoint here"), "{e}");
        sample().save(&path).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(bytes.len() / 2);
        std::fs::write(&path, &bytes).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
        std::fs::write(&path, b"not a checkpoint").unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("corrupt"), "{e}");
    }

    /// A flipped byte in any tensor or in the metadata, and a non-finite weight, are refused on
    /// load (they loaded silently before); a non-finite checkpoint is never written.
    #[test]
    fn flipped_bytes_edited_metadata_and_non_finite_weights_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("checkpoint.safetensors");
        sample().save(&path).unwrap();
        let good = std::fs::read(&path).unwrap();
        let header = 8 + u64::from_le_bytes(good[..8].try_into().unwrap()) as usize;
        for at in header..good.len() {
            let mut bad = good.clone();
            bad[at] ^= 0x40;
            std::fs::write(&path, &bad).unwrap();
            let e = Checkpoint::load(&path).unwrap_err().to_string();
            assert!(e.contains("corrupt"), "byte {at}: {e}");
        }
        // The same tensors with the loop state edited (step 12 → 13) in valid metadata.
        let (_, meta) = SafeTensors::read_metadata(&good).unwrap();
        let mut metadata = meta.metadata().clone().unwrap();
        let state = metadata["eft.state"].replace("\"step\":12", "\"step\":13");
        assert_ne!(state, metadata["eft.state"]);
        metadata.insert("eft.state".into(), state);
        let c = sample();
        let arrays = c.model.iter().map(|(k, a)| (format!("model.{k}"), a));
        let arrays = arrays.chain(c.adam.iter().map(|(k, a)| (format!("adam.{k}"), a)));
        std::fs::write(&path, encode_f32(arrays, metadata).unwrap()).unwrap();
        let e = Checkpoint::load(&path).unwrap_err().to_string();
        assert!(e.contains("SHA-256 does not match"), "{e}");
        std::fs::write(&path, &good).unwrap();
        let mut c = sample();
        c.model.get_mut("a.weight").unwrap().values[1] = f32::NAN;
        let e = c.save(&path).unwrap_err().to_string();
        assert!(e.contains("`model.a.weight` holds NaN at index 1"), "{e}");
        c.model.get_mut("a.weight").unwrap().values[1] = 1e30;
        c.adam.get_mut("v.a.weight").unwrap().values[0] = f32::INFINITY;
        let e = c.save(&path).unwrap_err().to_string();
        assert!(e.contains("`adam.v.a.weight` holds inf"), "{e}");
        assert_eq!(
            std::fs::read(&path).unwrap(),
            good[..],
            "the refused saves wrote nothing"
        );
    }
}
