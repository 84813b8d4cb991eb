//! The arena's tasks for eft: seeded generators, loaders and batching.
//!
//! A task turns a seed into three splits of [`Example`]s (token ids and a class label). Generators
//! are deterministic: the same config and seed give the same examples on every machine. This
//! crate knows nothing of tensors; the trainer turns [`Batch`]es into them.
#![warn(missing_docs)]

mod batch;
pub mod cifar;
pub mod copying;
mod error;
pub mod fetch;
pub mod image;
mod image_pool;
pub mod listops;
pub mod lm;
pub mod mlm;
pub mod mqar;
pub mod pathfinder;
pub mod retrieval;
mod rng;
mod task;
pub mod text;

pub use batch::{Batch, epoch_order, train_batch_indices};
pub use error::DataError;
pub(crate) use error::check_splits;
pub use rng::{derived_seed, seeded_rng};
pub use task::{Dataset, Example, TaskConfig, TaskShape};

/// Settings shared by eft's fuzz targets (feature `testing`).
#[cfg(feature = "testing")]
pub mod testing {
    /// How every fuzz target runs: `PROPTEST_CASES` cases (`bench/fuzz.sh`; 256 in CI) from a
    /// fixed seed, so a failure reproduces, and nothing written beside the sources.
    pub fn fuzz_config() -> proptest::test_runner::Config {
        proptest::test_runner::Config {
            failure_persistence: None,
            rng_seed: proptest::test_runner::RngSeed::Fixed(0x0e_f7),
            ..Default::default()
        }
    }
}

/// Cuts a fuzz input to `cut` modulo its length plus one (so any length, or none, is reachable).
#[cfg(test)]
pub(crate) fn cut_short(bytes: &mut Vec<u8>, cut: Option<usize>) {
    if let Some(c) = cut {
        bytes.truncate(c % (bytes.len() + 1));
    }
}
