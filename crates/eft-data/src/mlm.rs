//! The pretraining task `mlm`: masked-byte prediction (BERT's objective, at byte level) on the
//! text that ships in packages: the 25,000 IMDb reviews the Text task trains on (labels
//! dropped; its test reviews are never read, so fine-tuning on Text is not tested on text the
//! model pretrained on) and the Brown corpus's 500 documents. IMDb's unlabeled reviews are not
//! in the package, so they are not used.
//!
//! The documents are split once and for all as `lm` splits them (90% train, 5% validation, 5%
//! test), each split joined into one byte stream, and an example is a window of `len` bytes.
//! `round(mask_rate · len)` of its positions (at least one) are chosen, and of those 80% become
//! [`MASK_TOKEN`], 10% a random byte and 10% stay as they are, each chosen position graded on
//! its original byte. The mask is drawn with the window (static masking, as the original BERT):
//! the training windows follow the run's seed, validation and test a fixed one.

use std::path::Path;

use rand::Rng;
use serde::{Deserialize, Serialize};

use crate::lm::{check_windows, document_streams};
use crate::retrieval::{RetrievalConfig, read_corpus};
use crate::text::{TextConfig, load_reviews, training_reviews};
use crate::{DataError, Dataset, Example, seeded_rng};

/// The token that hides a chosen position: one past the 256 byte tokens (bytes + 1).
pub const MASK_TOKEN: u32 = 257;
/// Shares of the chosen positions that become [`MASK_TOKEN`] and a random byte (the rest stay).
pub const MASKED_SHARE: f64 = 0.8;
/// See [`MASKED_SHARE`].
pub const RANDOM_SHARE: f64 = 0.1;

/// The random stream of the windows and their masks.
const MLM_STREAM: u64 = 0x1b1;
/// The seed of the validation and test windows.
const HELD_OUT_SEED: u64 = 0;

/// `[task] name = "mlm"`: masked-byte pretraining on IMDb's training reviews and the Brown
/// corpus.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MlmConfig {
    /// Bytes per example. Default 256.
    #[serde(default = "crate::lm::default_len")]
    pub len: usize,
    /// Training windows.
    pub train: usize,
    /// Validation windows.
    pub val: usize,
    /// Test windows.
    pub test: usize,
    /// Share of each window's positions chosen for prediction, in (0, 1). Default 0.15.
    #[serde(default = "default_mask_rate")]
    pub mask_rate: f64,
}

fn default_mask_rate() -> f64 {
    0.15
}

impl MlmConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        if !(self.mask_rate > 0.0 && self.mask_rate < 1.0) {
            return Err(DataError::config(
                "task.mask_rate",
                self.mask_rate,
                "must be in (0, 1): the share of positions predicted (BERT: 0.15)",
            ));
        }
        check_windows(self.len, [self.train, self.val, self.test])
    }

    /// Builds the splits from the fetched packages and `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.build_from(&TextConfig::file(), &RetrievalConfig::folder(), seed)
    }

    /// Builds the splits from a `reviews.json` and a folder of Brown documents.
    pub fn build_from(
        &self,
        reviews: &Path,
        brown: &Path,
        seed: u64,
    ) -> Result<Dataset, DataError> {
        self.validate()?;
        let reviews = load_reviews(reviews, "mlm")?;
        let mut documents: Vec<Vec<u8>> = training_reviews(reviews.len())
            .into_iter()
            .map(|i| reviews[i].t.as_bytes().to_vec())
            .collect();
        documents.extend(read_corpus(brown)?.into_iter().map(|d| d.text));
        let [train, val, test] = document_streams(&documents, self.len)
            .map_err(|problem| DataError::config("task.len", self.len, problem))?;
        Ok(Dataset {
            train: self.windows(&train, self.train, seed, 0),
            val: self.windows(&val, self.val, HELD_OUT_SEED, 1),
            test: self.windows(&test, self.test, HELD_OUT_SEED, 2),
            vocab_size: MASK_TOKEN as usize + 1,
            n_classes: 256,
            max_len: self.len,
        })
    }

    /// `count` masked windows of `bytes` at offsets drawn from `seed`.
    fn windows(&self, bytes: &[u8], count: usize, seed: u64, split: u64) -> Vec<Example> {
        let mut rng = seeded_rng(seed, MLM_STREAM + split);
        (0..count)
            .map(|_| {
                let offset = rng.random_range(0..bytes.len() - self.len);
                masked_window(&bytes[offset..offset + self.len], self.mask_rate, &mut rng)
            })
            .collect()
    }
}

/// `bytes` as tokens (byte + 1) with `round(rate · len)` positions (at least one) chosen by
/// `rng` and corrupted 80/10/10, each graded on its original byte.
pub fn masked_window(bytes: &[u8], rate: f64, rng: &mut impl Rng) -> Example {
    let len = bytes.len();
    let chosen = ((rate * len as f64).round() as usize).clamp(1, len);
    let mut positions = rand::seq::index::sample(rng, len, chosen).into_vec();
    positions.sort_unstable();
    let mut tokens: Vec<u32> = bytes.iter().map(|&b| u32::from(b) + 1).collect();
    for &p in &positions {
        let u: f64 = rng.random();
        if u < MASKED_SHARE {
            tokens[p] = MASK_TOKEN;
        } else if u < MASKED_SHARE + RANDOM_SHARE {
            tokens[p] = rng.random_range(1..=256);
        }
    }
    Example {
        tokens,
        label: 0,
        targets: positions
            .iter()
            .map(|&p| (p as u32, u32::from(bytes[p])))
            .collect(),
        second: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a fixed seed, each window has exactly round(15%) graded positions holding their
    /// original bytes; over many windows the chosen positions split 80/10/10 (within 1.5
    /// points: 3 standard deviations of ~7,700 draws), random replacements are bytes, and
    /// unchosen positions are untouched.
    #[test]
    fn masking_is_fifteen_percent_split_eighty_ten_ten() {
        let bytes: Vec<u8> = (0..=255u8).cycle().take(200).collect();
        let mut rng = seeded_rng(5, 0);
        let (mut masked, mut replaced, mut kept, mut total) = (0, 0, 0, 0);
        for _ in 0..256 {
            let e = masked_window(&bytes, 0.15, &mut rng);
            assert_eq!(e.targets.len(), 30);
            for (p, &t) in e.tokens.iter().enumerate() {
                match e.targets.iter().find(|&&(q, _)| q as usize == p) {
                    None => assert_eq!(t, u32::from(bytes[p]) + 1, "unchosen position changed"),
                    Some(&(_, original)) => {
                        assert_eq!(original, u32::from(bytes[p]));
                        total += 1;
                        if t == MASK_TOKEN {
                            masked += 1;
                        } else if t == original + 1 {
                            kept += 1;
                        } else {
                            assert!((1..=256).contains(&t));
                            replaced += 1;
                        }
                    }
                }
            }
        }
        // A random byte equal to the original counts as kept: 1/256 of the 10%.
        let share = |n: usize| 100.0 * n as f64 / total as f64;
        assert!((share(masked) - 80.0).abs() < 1.5, "{}", share(masked));
        assert!((share(replaced) - 10.0 * 255.0 / 256.0).abs() < 1.5);
        assert!((share(kept) - (10.0 + 10.0 / 256.0)).abs() < 1.5);
    }

    /// A window too short for 15% still predicts one position; the rate's range is checked.
    #[test]
    fn every_window_predicts_something_and_rates_are_checked() {
        let e = masked_window(b"ab", 0.15, &mut seeded_rng(1, 0));
        assert_eq!(e.targets.len(), 1);
        let bad = MlmConfig {
            len: 16,
            train: 1,
            val: 1,
            test: 1,
            mask_rate: 1.0,
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("task.mask_rate")
        );
    }

    /// The splits read IMDb's training reviews and the Brown documents, never IMDb's test
    /// reviews; training windows follow the seed, held-out ones do not.
    #[test]
    fn pretraining_never_reads_the_text_tasks_test_reviews() {
        let dir = tempfile::tempdir().unwrap();
        // Reviews name their quarter: q0/q2 are test reviews.
        let items: Vec<String> = (0..400)
            .map(|i| {
                format!(
                    r#"{{"t":"q{} {}","s":{}}}"#,
                    i / 100,
                    "y".repeat(40),
                    i / 200
                )
            })
            .collect();
        let reviews = dir.path().join("reviews.json");
        std::fs::write(&reviews, format!("[{}]", items.join(","))).unwrap();
        let brown = dir.path().join("brown");
        std::fs::create_dir(&brown).unwrap();
        for d in 0..40 {
            let text = "zz/nn ".repeat(30);
            std::fs::write(brown.join(format!("ca{d:02}")), text).unwrap();
        }
        let c = MlmConfig {
            len: 32,
            train: 200,
            val: 20,
            test: 20,
            mask_rate: 0.15,
        };
        let d = c.build_from(&reviews, &brown, 3).unwrap();
        assert_eq!((d.vocab_size, d.n_classes, d.max_len), (258, 256, 32));
        let original = |e: &Example| -> String {
            let mut bytes: Vec<u8> = e.tokens.iter().map(|&t| (t - 1) as u8).collect();
            for &(p, b) in &e.targets {
                bytes[p as usize] = b as u8;
            }
            String::from_utf8_lossy(&bytes).into_owned()
        };
        let all: String = d
            .train
            .iter()
            .chain(&d.val)
            .chain(&d.test)
            .map(original)
            .collect();
        assert!(
            !all.contains("q0") && !all.contains("q2"),
            "a test review was read"
        );
        assert!(all.contains("q1") && all.contains("q3") && all.contains("zz"));
        let other = c.build_from(&reviews, &brown, 4).unwrap();
        assert_ne!(d.train, other.train);
        assert_eq!(d.test, other.test);
        assert_eq!(crate::TaskConfig::Mlm(c).shape(), d.shape());
    }
}
