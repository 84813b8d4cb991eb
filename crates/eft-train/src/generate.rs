//! Sampling bytes from a trained language model (task `lm`): each new byte is drawn from the
//! model's next-byte distribution at the last position, with a temperature and an optional
//! top-k cut, from a seeded generator. Each new byte costs one position's work through the
//! model's decoding state ([`Classifier::decoder`]: key-value caches, kernel sums, or
//! recomputation where a model has no incremental form). When the context reaches the model's
//! trained length it restarts on the last half of it.

use burn::tensor::{Bool, Device, Int, Tensor, TensorData};
use eft_model::{Classifier, DecodeState};
use rand::Rng;

use crate::{RunConfig, TrainError};

/// How each next byte is drawn.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// Logits are divided by it before the softmax; > 0 (small: nearly greedy).
    pub temperature: f64,
    /// Only the `k` most probable bytes are drawn from, when given; ≥ 1 (1: greedy).
    pub top_k: Option<usize>,
    /// Seed of the draws.
    pub seed: u64,
}

impl Sampling {
    /// Checks the settings; the error names the flag and the fix.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return Err(TrainError::config(
                "--temperature",
                self.temperature,
                "must be a number > 0 (1 samples the model's distribution; 0.1 is nearly greedy)",
            ));
        }
        if self.top_k == Some(0) {
            return Err(TrainError::config(
                "--top-k",
                0,
                "must be at least 1 (1 is greedy), or left out",
            ));
        }
        Ok(())
    }
}

/// Checks that `config` is a language model that can continue `prompt` bytes: the `lm` task, a
/// causal model, and a prompt that fits the learned positions.
pub fn check_generation(config: &RunConfig, prompt: &[u8]) -> Result<(), TrainError> {
    if !matches!(config.task, eft_data::TaskConfig::Lm(_)) || !config.model.causal {
        return Err(TrainError::config(
            "run",
            config.name.clone(),
            "generation needs a causal language model: a run of task lm (eft train --task lm)",
        ));
    }
    let positions = config.task.shape().max_len;
    if prompt.len() > positions && config.model.positions == eft_model::Positions::Learned {
        return Err(TrainError::config(
            "--prompt",
            format!("{} bytes", prompt.len()),
            format!(
                "the model learned {positions} positions: give at most {positions} bytes \
                 (later bytes slide the window)"
            ),
        ));
    }
    if prompt.is_empty() {
        return Err(TrainError::config(
            "--prompt",
            "\"\"",
            "give at least one byte to continue",
        ));
    }
    Ok(())
}

/// `count` bytes sampled after `prompt` from `model` (a causal per-position model whose classes
/// are bytes, tokens byte + 1), seeing at most the last `window` bytes: the decoding state
/// holds `window` positions and, when full, starts again on the last `window / 2` bytes.
pub fn generate(
    model: &Classifier,
    prompt: &[u8],
    count: usize,
    window: usize,
    sampling: Sampling,
    device: &Device,
) -> Result<Vec<u8>, TrainError> {
    let mut rng = eft_data::seeded_rng(sampling.seed, GENERATION_STREAM);
    let mut state = model.decoder(window)?;
    let mut bytes = prompt.to_vec();
    let start = bytes.len().saturating_sub(window);
    let mut logits = feed(model, &mut state, &bytes[start..], device)?;
    for made in 0..count {
        let byte = sample(&logits, sampling, &mut rng);
        bytes.push(byte);
        if made + 1 == count {
            break;
        }
        logits = if state.position() == state.capacity() {
            state = model.decoder(window)?;
            let keep = (window / 2).max(1);
            feed(model, &mut state, &bytes[bytes.len() - keep..], device)?
        } else {
            feed(model, &mut state, &[byte], device)?
        };
    }
    Ok(bytes.split_off(prompt.len()))
}

/// The random stream of generation.
const GENERATION_STREAM: u64 = 0x9e4;

/// Feeds `bytes` to the decoding state; returns the logits for the byte after them.
fn feed(
    model: &Classifier,
    state: &mut DecodeState,
    bytes: &[u8],
    device: &Device,
) -> Result<Vec<f64>, TrainError> {
    let n = bytes.len();
    let tokens: Vec<i64> = bytes.iter().map(|&b| i64::from(b) + 1).collect();
    let tokens = Tensor::<2, Int>::from_data(TensorData::new(tokens, [1, n]), device);
    let padding = Tensor::<2, Bool>::from_data(TensorData::new(vec![false; n], [1, n]), device);
    let logits = model.decode(state, tokens, padding)?; // [1, n, 256]
    let classes = logits.dims()[2];
    Ok(logits
        .slice([0..1, n - 1..n, 0..classes])
        .into_data()
        .iter::<f64>()
        .collect())
}

/// One byte drawn from `logits` by `sampling`.
fn sample(logits: &[f64], sampling: Sampling, rng: &mut impl Rng) -> u8 {
    let mut order: Vec<usize> = (0..logits.len()).collect();
    order.sort_by(|&a, &b| logits[b].total_cmp(&logits[a]));
    order.truncate(sampling.top_k.unwrap_or(logits.len()).min(logits.len()));
    let max = logits[order[0]];
    let weights: Vec<f64> = order
        .iter()
        .map(|&c| ((logits[c] - max) / sampling.temperature).exp())
        .collect();
    let mut u = rng.random_range(0.0..weights.iter().sum::<f64>());
    for (&c, w) in order.iter().zip(&weights) {
        if u < *w {
            return c as u8;
        }
        u -= w;
    }
    order[order.len() - 1] as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    fn draws(logits: &[f64], sampling: Sampling, n: usize) -> Vec<u8> {
        let mut rng = eft_data::seeded_rng(sampling.seed, 1);
        (0..n).map(|_| sample(logits, sampling, &mut rng)).collect()
    }

    /// Top-1 is the argmax; top-k never leaves the k best; a tiny temperature is greedy; the
    /// frequencies at temperature 1 follow the softmax.
    #[test]
    fn sampling_follows_temperature_and_top_k() {
        let logits = [0.0, 2.0, 1.0, (0.5f64).ln() + 2.0];
        let s = |temperature, top_k| Sampling {
            temperature,
            top_k,
            seed: 3,
        };
        assert!(draws(&logits, s(1.0, Some(1)), 50).iter().all(|&b| b == 1));
        assert!(
            draws(&logits, s(1.0, Some(2)), 200)
                .iter()
                .all(|&b| b == 1 || b == 3)
        );
        assert!(draws(&logits, s(1e-3, None), 50).iter().all(|&b| b == 1));
        let n = 20_000;
        let d = draws(&logits, s(1.0, None), n);
        let z: f64 = logits.iter().map(|l| l.exp()).sum();
        for (c, l) in logits.iter().enumerate() {
            let share = d.iter().filter(|&&b| b as usize == c).count() as f64 / n as f64;
            assert!((share - l.exp() / z).abs() < 0.015, "class {c}: {share}");
        }
        assert_eq!(
            draws(&logits, s(1.0, None), 30),
            draws(&logits, s(1.0, None), 30)
        );
    }

    #[test]
    fn bad_settings_name_their_flag() {
        let e = |t, k| {
            Sampling {
                temperature: t,
                top_k: k,
                seed: 0,
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(e(0.0, None).contains("--temperature"));
        assert!(e(-1.0, None).contains("--temperature"));
        assert!(e(1.0, Some(0)).contains("--top-k"));
    }
}
