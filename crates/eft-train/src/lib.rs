//! Training for eft: the run config and its presets, Adam(W) with schedules and clipping,
//! evaluation, run records and checkpoints that resume exactly.
//!
//! A run is `RunConfig` → [`train`] → `runs/<name>/{config.toml, checkpoint.safetensors,
//! record.json}`. [`resume`] continues an interrupted run to the same final weights as an
//! uninterrupted one. `crates/eft-train/examples/` has a model of your own built around an eft
//! mechanism, conformance against the dense reference, and this, at full length:
//!
//! ```
//! use eft_train::{TrainOptions, preset, train};
//!
//! let mut config = preset("listops", "quick")?;
//! config.model.attention = eft_attention::AttentionConfig::from_name_and_params("linear", &[])?;
//! config.train.set_steps(4, 4);
//! config.train.schedule = eft_train::Schedule::Constant { lr: 1e-3 };
//! if let eft_data::TaskConfig::ListOps(task) = &mut config.task {
//!     task.train = 64; // a moment to generate
//! }
//! let dir = tempfile::tempdir()?;
//! let record = train(config, &dir.path().join("run"), &TrainOptions::default())?;
//! assert_eq!(record.steps_done, 4);
//! println!("test accuracy {:.1}%", 100.0 * record.test.unwrap().accuracy);
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
#![warn(missing_docs)]

mod atomic_file;
mod checkpoint;
mod config;
pub mod context;
pub mod distill;
pub mod electra;
mod error;
mod evaluate;
pub mod export;
pub mod fields;
mod folder_lock;
mod generate;
pub mod head_importance;
pub mod meter;
pub mod metrics;
mod optimizer;
mod overrides;
pub mod parallel;
#[cfg(feature = "mpi")]
pub mod parallel_mpi;
pub mod params;
mod precision;
mod preset;
pub mod prune;
mod record;
pub mod safetensors_file;
mod schedule;
pub mod seeding;
pub mod tensor_parallel;
mod trainer;

pub use atomic_file::write_atomic;
pub use checkpoint::{Checkpoint, LoopState};
pub use config::{RunConfig, TrainConfig};
pub use error::TrainError;
pub use evaluate::{
    BatchTensors, EvalSums, ExitEval, batch_tensors, cross_entropy, cross_entropy_rows, evaluate,
    evaluate_exiting, evaluate_sums,
};
pub use folder_lock::{FolderLock, LOCK_FILE};
pub use generate::{Sampling, check_generation, generate};
pub use optimizer::{AdamState, OptimizerConfig, OptimizerKind, adam_step};
pub use overrides::{layered, layered_with, merge, set, set_value};
pub use precision::{
    LOW_PRECISION, LossScale, Precision, cast_parameters, f32_gradients, in_f32, step_in_precision,
};
pub use preset::{PRESETS, preset, presets_for};
pub use record::{
    Baseline, BitsPerByte, EvalPoint, EvalResult, ExtraSums, ParallelRecord, PrecisionRecord,
    PruneRecord, RunRecord, RunStatus,
};
pub use schedule::Schedule;
pub use trainer::{
    CHECKPOINT_FILE, CONFIG_FILE, RECORD_FILE, TrainOptions, build_data, build_data_and_model,
    build_model, load_weights, model_with_weights, preflight, resume, snapshot_file, train,
};
