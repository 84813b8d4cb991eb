//! The model's dropout: burn's `Dropout` holds the probability and the training flag, eft's
//! hashed dropout applies them (parallel, vectorised, no mask stored for the backward pass).

use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor};

/// `dropout` applied to `x`, under the same conditions as `Dropout::forward`: only while
/// training on an autodiff device with a non-zero probability. The mask's seed is drawn from the
/// device's generator, so seeded runs reproduce.
pub(crate) fn apply<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    let device = x.device();
    let training = dropout.training.is_enabled() && device.is_autodiff();
    if dropout.prob == 0.0 || !(training || REPLAYING.with(std::cell::Cell::get)) {
        return x;
    }
    eft_kernels::dropout(x, dropout.prob, draw_seed(&device))
}

thread_local! {
    /// Set while gradient checkpointing runs a training step's forward pass without a graph
    /// (on the inner model): dropout must still draw the masks its rebuild will replay.
    static REPLAYING: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with dropout applied as in training even off the autodiff device.
pub(crate) fn replaying<T>(f: impl FnOnce() -> T) -> T {
    // Cleared on drop, so a panic inside `f` does not leave dropout on for evaluation.
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            REPLAYING.with(|r| r.set(false));
        }
    }
    REPLAYING.with(|r| r.set(true));
    let _reset = Reset;
    f()
}

/// A 64-bit seed drawn from `device`'s generator: four 16-bit draws, each exact in f32.
pub(crate) fn draw_seed(device: &burn::tensor::Device) -> u64 {
    Tensor::<1>::random([4], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .iter::<f32>()
        .fold(0u64, |seed, part| (seed << 16) | (part as u64 & 0xffff))
}
