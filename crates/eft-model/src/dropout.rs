//! The model's dropout: burn's `Dropout` holds the probability and the training flag, eft's
//! hashed dropout applies them (parallel, vectorised, no mask stored for the backward pass).

use burn::nn::Dropout;
use burn::tensor::{Distribution, Tensor};

/// `dropout` applied to `x`, under the same conditions as `Dropout::forward`: only while
/// training on an autodiff device with a non-zero probability. The mask's seed is drawn from the
/// device's generator, so seeded runs reproduce.
pub(crate) fn apply<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    apply_columns(dropout, x, None)
}

/// [`apply`] to the block of columns `(full, offset)` of a wider activation that this rank
/// holds (a tensor-parallel layer's part): each element is dropped as it is in the whole.
pub(crate) fn apply_columns<const D: usize>(
    dropout: &Dropout,
    x: Tensor<D>,
    columns: Option<(usize, usize)>,
) -> Tensor<D> {
    let device = x.device();
    let training = dropout.training.is_enabled() && device.is_autodiff();
    if dropout.prob == 0.0 || !(training || REPLAYING.with(std::cell::Cell::get)) {
        return x;
    }
    let seed = draw_seed(&device);
    let keyed = ROW_KEYS.with(|k| {
        k.borrow()
            .as_ref()
            .filter(|keys| keys.len() == x.dims()[0])
            .cloned()
    });
    match (keyed, columns) {
        (keys, Some((full, offset))) => {
            eft_kernels::dropout_columns(x, dropout.prob, seed, keys.as_deref(), full, offset)
        }
        (Some(keys), None) => eft_kernels::dropout_rows(x, dropout.prob, seed, &keys),
        (None, None) => eft_kernels::dropout(x, dropout.prob, seed),
    }
}

thread_local! {
    /// One key per batch row while [`with_row_keys`] runs: each row's dropout mask follows its
    /// key (its example), not its place in the batch.
    static ROW_KEYS: std::cell::RefCell<Option<std::rc::Rc<[u64]>>> =
        const { std::cell::RefCell::new(None) };
    /// While [`with_row_keys`] runs: the seed its dropout calls draw from, and how many drew.
    static SEEDS: std::cell::Cell<Option<(u64, u64)>> = const { std::cell::Cell::new(None) };
}

/// Runs `f` (a training step) with dropout masks drawn per batch row from `keys`, one per row of
/// the batch's `[rows, …]` activations, so that a row draws the same mask in any batch that holds
/// it (data-parallel ranks, each with a slice, draw the masks of one process with the whole
/// batch). Activations whose first dimension is not the rows (tokens routed to a Switch expert)
/// keep the batch-wide mask. The `i`-th dropout call's seed derives from `seed` and `i`, not from
/// the device's generator, so a step needs no hold on that process-wide generator (ranks that
/// are threads of one process meet in the middle of a tensor-parallel step).
pub fn with_row_keys<T>(keys: Vec<u64>, seed: u64, f: impl FnOnce() -> T) -> T {
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            ROW_KEYS.with(|k| *k.borrow_mut() = None);
            SEEDS.with(|s| s.set(None));
        }
    }
    ROW_KEYS.with(|k| *k.borrow_mut() = Some(keys.into()));
    SEEDS.with(|s| s.set(Some((seed, 0))));
    let _reset = Reset;
    f()
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

/// A 64-bit seed: the next of [`with_row_keys`]'s, else drawn from `device`'s generator (four
/// 16-bit draws, each exact in f32).
pub(crate) fn draw_seed(device: &burn::tensor::Device) -> u64 {
    if let Some((seed, drawn)) = SEEDS.with(std::cell::Cell::get) {
        SEEDS.with(|s| s.set(Some((seed, drawn + 1))));
        return eft_data::derived_seed(seed, drawn);
    }
    Tensor::<1>::random([4], Distribution::Uniform(0.0, 65536.0), device)
        .into_data()
        .iter::<f32>()
        .fold(0u64, |seed, part| (seed << 16) | (part as u64 & 0xffff))
}
