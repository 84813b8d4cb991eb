//! Seeding burn's random generator without races between runs in one process.
//!
//! burn's CPU backend keeps a single generator for the whole process. Two runs that seed it and
//! draw from it on different threads (parallel tests, an arena training several models at once)
//! would interleave their draws and lose reproducibility. Every seed-then-draw section of eft runs
//! under this one lock, so each sees exactly the numbers its own seed gives.

use std::sync::Mutex;

use burn::tensor::Device;

static GENERATOR: Mutex<()> = Mutex::new(());

/// Seeds `device`'s generator with `seed` and runs `draws` while no other run can draw.
pub fn with_seed<T>(device: &Device, seed: u64, draws: impl FnOnce() -> T) -> T {
    let _guard = GENERATOR
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    device.seed(seed);
    draws()
}

/// The seed of step `step`'s dropout masks: distinct per step, fixed by the run's seed.
pub fn step_seed(seed: u64, step: usize) -> u64 {
    eft_data::derived_seed(seed, step as u64)
}
