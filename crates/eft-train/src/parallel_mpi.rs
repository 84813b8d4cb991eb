//! The ranks of an `mpirun` launch as a [`Collective`]: OpenMPI (or any MPI) through the `mpi`
//! crate, one rank per process.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::TrainError;
use crate::parallel::Collective;

/// MPI's world communicator; MPI is finalised when this is dropped.
pub struct MpiWorld {
    world: SimpleCommunicator,
    // Dropped last: finalising MPI before the communicator goes is undefined.
    _universe: Universe,
}

impl MpiWorld {
    /// Initialises MPI; `None` when it already was.
    pub fn init() -> Option<Self> {
        let universe = mpi::initialize()?;
        Some(Self {
            world: universe.world(),
            _universe: universe,
        })
    }

    /// Ends every rank of the launch with `code` (a failed rank must not leave the others
    /// waiting in a sum).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }
    fn size(&self) -> usize {
        self.world.size() as usize
    }
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), TrainError> {
        let send = values.to_vec();
        // MPI's default error handler aborts the whole launch on a failure, so there is no
        // error to return here.
        self.world
            .all_reduce_into(&send[..], values, SystemOperation::sum());
        Ok(())
    }
}
