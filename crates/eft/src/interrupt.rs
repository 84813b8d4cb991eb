//! Ctrl-C: the first stops a run after its current step, with a checkpoint; the second quits.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;

/// Exit code of a run stopped by Ctrl-C or --stop-after (resumable).
pub const INTERRUPTED: u8 = 130;

/// A flag that the first Ctrl-C raises (the run stops after its current step, with a
/// checkpoint); a second Ctrl-C exits at once.
pub fn stop_on_ctrl_c() -> anyhow::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    ctrlc::set_handler(move || {
        if flag.swap(true, Ordering::SeqCst) {
            // The handler cannot know whether a periodic checkpoint was written yet.
            eprintln!(
                "\nstopping now; --resume continues from the last periodic checkpoint, if one \
                 was written (none before the first checkpoint_every steps)"
            );
            std::process::exit(i32::from(INTERRUPTED));
        }
        eprintln!("\nstopping after this step (Ctrl-C again to quit at once)…");
    })
    .context("installing the Ctrl-C handler")?;
    Ok(stop)
}
