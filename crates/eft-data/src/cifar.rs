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
