//! CIFAR-10's binary format, for users who have the files: each record is one label byte and
//! 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32×32). LRA's Image task uses
//! the images in grey: `0.299·R + 0.587·G + 0.114·B`, rounded; token = grey level + 1.

use std::path::Path;

use crate::DataError;
use crate::image::Pool;

const RECORD: usize = 1 + 3 * 1024;

/// The grey tokens of one record's pixels.
pub fn grey_tokens(rgb: &[u8]) -> Vec<u32> {
    (0..1024)
        .map(|p| {
            let (r, g, b) = (
                f64::from(rgb[p]),
                f64::from(rgb[1024 + p]),
                f64::from(rgb[2048 + p]),
            );
            (0.299 * r + 0.587 * g + 0.114 * b).round() as u32 + 1
        })
        .collect()
}

fn read_batches(dir: &Path, names: &[String]) -> Result<Pool, DataError> {
    let mut pool = Pool {
        images: Vec::new(),
        labels: Vec::new(),
    };
    for name in names {
        let path = dir.join(name);
        let bytes = std::fs::read(&path).map_err(|_| DataError::File {
            path: path.display().to_string(),
            problem: "is missing".into(),
            fix: "point task.cifar10 at the folder of CIFAR-10's binary version (cifar-10-batches-bin)".into(),
        })?;
        if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
            return Err(DataError::File {
                path: path.display().to_string(),
                problem: format!("has {} bytes, not whole records of {RECORD}", bytes.len()),
                fix: "the file is truncated or not CIFAR-10's binary format".into(),
            });
        }
        for record in bytes.chunks_exact(RECORD) {
            if record[0] >= 10 {
                return Err(DataError::File {
                    path: path.display().to_string(),
                    problem: format!("holds label {}, outside 0..10", record[0]),
                    fix: "this is not CIFAR-10 (CIFAR-100's records are longer)".into(),
                });
            }
            pool.labels.push(record[0]);
            pool.images.push(grey_tokens(&record[1..]));
        }
    }
    Ok(pool)
}

/// The five training batches.
pub(crate) fn read_train(dir: &Path) -> Result<Pool, DataError> {
    let names: Vec<String> = (1..=5).map(|i| format!("data_batch_{i}.bin")).collect();
    read_batches(dir, &names)
}

/// The test batch.
pub(crate) fn read_test(dir: &Path) -> Result<Pool, DataError> {
    read_batches(dir, &["test_batch.bin".to_string()])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::ImageConfig;

    /// Writes `n` records per batch: record i has label i mod 10, red = i, green = 2i, blue = 0.
    fn write_batches(dir: &Path, n: usize) {
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
        write_batches(dir.path(), 10);
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
