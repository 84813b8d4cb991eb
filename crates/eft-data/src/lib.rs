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
pub mod mqar;
pub mod pathfinder;
pub mod retrieval;
mod rng;
mod task;
pub mod text;

pub use batch::{Batch, epoch_order, train_batch_indices};
pub use error::DataError;
pub(crate) use error::check_splits;
pub use rng::seeded_rng;
pub use task::{Dataset, Example, TaskConfig, TaskShape};
