//! The one random-number generator every data choice draws from.

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::SeedableRng;

/// A generator for `stream` under `seed`, independent of every other stream.
///
/// ChaCha is specified bit for bit, so the same (seed, stream) yields the same numbers on every
/// platform and in every version of this crate.
pub fn seeded_rng(seed: u64, stream: u64) -> ChaCha8Rng {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(stream);
    rng
}
