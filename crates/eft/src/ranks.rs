//! The ranks this process trains among: itself alone, or every process of an `mpirun` launch
//! (with the `mpi` feature; MPI is initialised at start and finalised at exit).

use std::rc::Rc;

use eft_train::parallel::{Collective, Solo};

#[cfg(feature = "mpi")]
thread_local! {
    /// The launch's MPI world, held by the main thread from `start` to `finish`.
    static WORLD: std::cell::RefCell<Option<Rc<eft_train::parallel_mpi::MpiWorld>>> =
        const { std::cell::RefCell::new(None) };
}

/// How many processes the launcher says this one is among (OpenMPI, MPICH/Hydra).
fn launched_ranks() -> Option<usize> {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .find_map(|v| std::env::var(v).ok()?.parse().ok())
}

/// Joins the launch's ranks, if `mpirun` started this process.
///
/// # Errors
/// Several ranks but a build without MPI.
pub fn start() -> anyhow::Result<()> {
    let Some(ranks) = launched_ranks().filter(|&n| n > 1) else {
        return Ok(());
    };
    #[cfg(feature = "mpi")]
    {
        let _ = ranks;
        let world = eft_train::parallel_mpi::MpiWorld::init()
            .ok_or_else(|| anyhow::anyhow!("MPI was already initialised"))?;
        WORLD.with(|w| *w.borrow_mut() = Some(Rc::new(world)));
        Ok(())
    }
    #[cfg(not(feature = "mpi"))]
    anyhow::bail!(
        "launched as one of {ranks} ranks, but this eft was built without MPI: build it with \
         `cargo build --release -p eft --features mpi` (needs libopenmpi-dev and libclang-dev)"
    )
}

/// The ranks to train among: the MPI world, or this process alone.
pub fn collective() -> Rc<dyn Collective> {
    #[cfg(feature = "mpi")]
    if let Some(world) = WORLD.with(|w| w.borrow().clone()) {
        return world;
    }
    Rc::new(Solo)
}

/// Whether this process is the one that reports (rank 0, or the only one).
pub fn reports() -> bool {
    collective().rank() == 0
}

/// Ends every rank with `code` after a failure here once training started, so none waits for
/// this one forever (before it, every rank fails at the same point and exits on its own).
pub fn abort_others(code: u8) {
    #[cfg(feature = "mpi")]
    if let Some(world) = WORLD.with(|w| w.borrow().clone())
        && eft_train::parallel::started()
    {
        world.abort(i32::from(code));
    }
    let _ = code;
}

/// Finalises MPI, if it was started.
pub fn finish() {
    #[cfg(feature = "mpi")]
    WORLD.with(|w| w.borrow_mut().take());
}
