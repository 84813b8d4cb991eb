//! CIFAR-10's binary format, for users who have the files: each record is one label byte and
//! 3,072 pixel bytes (1,024 red, 1,024 green, 1,024 blue, row-major 32×32). LRA's Image task uses
//! the images in grey: `0.299·R + 0.587·G + 0.114·B`, rounded; token = grey level + 1.

use std::path::Path;

use crate::DataError;
use crate::image_pool::Pool;

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
    use proptest::prelude::*;

    /// Up to three records with labels that are often valid, then stray bytes, then maybe a cut.
    fn batch_file() -> impl Strategy<Value = Vec<u8>> {
        (
            prop::collection::vec(prop_oneof![3 => 0u8..10, 1 => any::<u8>()], 0..4),
            prop::collection::vec(any::<u8>(), 0..8),
            any::<Option<usize>>(),
        )
            .prop_map(|(labels, stray, cut)| {
                let mut bytes = Vec::new();
                for (r, &label) in labels.iter().enumerate() {
                    bytes.push(label);
                    bytes.extend((0..3 * 1024).map(|p| (p * 7 + r * 13) as u8));
                }
                bytes.extend(stray);
                crate::cut_short(&mut bytes, cut);
                bytes
            })
    }

    proptest! {
        #![proptest_config(crate::testing::fuzz_config())]

        /// Any batch file is read whole or refused: never a panic, never a silent cut.
        #[test]
        fn cifar_reading_never_panics(bytes in batch_file()) {
            let dir = tempfile::tempdir().unwrap();
            std::fs::write(dir.path().join("b.bin"), &bytes).unwrap();
            if let Ok(pool) = read_batches(dir.path(), &["b.bin".to_string()]) {
                prop_assert_eq!(pool.labels.len() * RECORD, bytes.len());
                prop_assert_eq!(pool.images.len(), pool.labels.len());
                prop_assert!(pool.labels.iter().all(|&l| l < 10));
                prop_assert!(pool.images.iter().all(|i| i.len() == 1024
                    && i.iter().all(|&t| (1..=256).contains(&t))));
            }
        }
    }

    #[test]
    fn grey_is_the_luma_of_the_three_planes() {
        let mut rgb = vec![0u8; 3 * 1024];
        rgb[5] = 255;
        rgb[1024 + 6] = 255;
        rgb[2048 + 7] = 255;
        rgb[8] = 10;
        rgb[1024 + 8] = 20;
        rgb[2048 + 8] = 30;
        let t = grey_tokens(&rgb);
        assert_eq!(t[..9], [1, 1, 1, 1, 1, 77, 151, 30, 19]);
    }
}
