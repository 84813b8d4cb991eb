//! The one random-number generator every data choice draws from.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

use crate::{Dataset, Example};

/// A generator for `stream` under `seed`, independent of every other stream.
///
/// ChaCha is specified bit for bit, so the same (seed, stream) yields the same numbers on every
/// platform and in every version of this crate.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}

/// The `index`-th seed derived from `seed` (a step's dropout, a recomputed segment's masks):
/// distinct per index, fixed by `seed`.
pub fn derived_seed(seed: u64, index: u64) -> u64 {
    seed ^ (index + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// A dataset of `draw`n sequences, each split from its own stream under `seed`.
pub(crate) fn generated(
    seed: u64,
    stream: u64,
    sizes: [usize; 3],
    [vocab_size, n_classes, max_len]: [usize; 3],
    draw: impl Fn(&mut ChaCha8Rng) -> Example,
) -> Dataset {
    let [train, val, test] = [0, 1, 2].map(|s| {
        let mut rng = seeded_rng(seed, stream + s as u64);
        (0..sizes[s]).map(|_| draw(&mut rng)).collect()
    });
    Dataset {
        train,
        val,
        test,
        vocab_size,
        n_classes,
        max_len,
    }
}
