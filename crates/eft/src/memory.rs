//! The memory guard of the commands that run a mechanism at a shape the user picks: refuse, with a
//! one-line error, what the allocator would abort on (a 16 GiB score matrix from a 0.8 MB file).

use crate::attn::BadInput;

/// Refuses `what` when it needs more than the `needed` bytes the system has available.
pub fn check_fits(what: impl std::fmt::Display, needed: f64) -> Result<(), BadInput> {
    let Err(eft_meter::Shortfall { needed, available }) = eft_meter::check_fits(needed) else {
        return Ok(());
    };
    let gib = |b: f64| b / f64::from(1u32 << 30);
    Err(BadInput(format!(
        "{what} needs about {:.1} GiB, but only {:.1} GiB is available; use a shorter sequence, a \
         smaller batch or a mechanism with less memory",
        gib(needed),
        gib(available as f64)
    )))
}
