//! Errors raised while configuring, running or resuming a training run.

use std::path::PathBuf;

/// What went wrong in a run, naming the field or file and the fix.
#[derive(Debug, thiserror::Error)]
pub enum TrainError {
    /// A config field is outside its range or of the wrong type.
    #[error("config field `{field}` = {value}: {fix}")]
    Config {
        /// The field's dotted config path.
        field: String,
        /// The offending value.
        value: String,
        /// What would be accepted.
        fix: String,
    },
    /// The config does not parse into the fields a run has (wrong type, unknown or missing field).
    #[error("config: {0}; `eft train --list-fields` lists every field")]
    Invalid(String),
    /// The model's config is wrong.
    #[error(transparent)]
    Model(#[from] eft_model::ModelError),
    /// The task's config or data is wrong.
    #[error(transparent)]
    Data(#[from] eft_data::DataError),
    /// A checkpoint or record cannot be read or does not fit the run.
    #[error("{}: {problem}; {fix}", path.display())]
    File {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        problem: String,
        /// What to do about it.
        fix: String,
    },
    /// The model's parameters and optimiser state with the task's data would not fit in memory.
    #[error(
        "out of memory: the parameters (with gradients and Adam's moments) and the task's data need at least {:.1} GiB, but only {:.1} GiB is available; lower model.d_model, model.d_ff, model.n_layers or the task's split sizes",
        *needed as f64 / GIB,
        *available as f64 / GIB
    )]
    TooBig {
        /// Bytes needed at least (saturated at `u64::MAX`).
        needed: u64,
        /// Bytes the system has available.
        available: u64,
    },
    /// A training step would not fit in the machine's memory.
    #[error(
        "out of memory: a training step holds at least {:.1} GiB for the backward pass, but only {:.1} GiB is available; lower train.batch_size or the task's length, or pick a mechanism with less memory (eft profile sweep shows each one's)",
        *needed as f64 / GIB,
        *available as f64 / GIB
    )]
    OutOfMemory {
        /// Bytes a step needs at least.
        needed: u64,
        /// Bytes the system has available.
        available: u64,
    },
    /// An I/O operation failed.
    #[error("{}: {cause}", path.display())]
    Io {
        /// The file or folder being read or written.
        path: PathBuf,
        /// The operating system's error; shown in the message, so not also chained as a source
        /// (which printed it twice).
        cause: std::io::Error,
    },
}

const GIB: f64 = (1u64 << 30) as f64;

impl TrainError {
    /// A config field (or command-line flag) with its offending value and what would do.
    pub fn config(field: &str, value: impl ToString, fix: impl ToString) -> Self {
        TrainError::Config {
            field: field.to_string(),
            value: value.to_string(),
            fix: fix.to_string(),
        }
    }

    pub(crate) fn file(
        path: impl Into<PathBuf>,
        problem: impl ToString,
        fix: impl ToString,
    ) -> Self {
        TrainError::File {
            path: path.into(),
            problem: problem.to_string(),
            fix: fix.to_string(),
        }
    }

    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |cause| TrainError::Io { path, cause }
    }
}
