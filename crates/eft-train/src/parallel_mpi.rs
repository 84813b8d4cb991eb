//! The ranks of an `mpirun` launch as a [`Collective`]: OpenMPI (or any MPI) through the `mpi`
//! crate, one rank per process.

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives};

use crate::TrainError;
use crate::parallel::Collective;

/// Values per MPI all-reduce (128 KiB of f32): larger buffers are summed in pieces of this many.
pub const PIECE: usize = 1 << 15;

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

    /// Sums `values` over the ranks with one MPI all-reduce per `piece` values (the last piece
    /// shorter). MPI's default error handler aborts the whole launch on a failure, so there is
    /// no error to return.
    pub fn all_reduce_in_pieces(&self, values: &mut [f32], piece: usize) {
        for part in values.chunks_mut(piece.max(1)) {
            let send = part.to_vec();
            self.world
                .all_reduce_into(&send[..], part, SystemOperation::sum());
        }
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
        // In pieces: one MPI all-reduce of a whole gradient buffer ran 1.9-3.7x slower here
        // than the same values in pieces of 128 KiB (bench/results/allreduce-pieces.md).
        self.all_reduce_in_pieces(values, PIECE);
        Ok(())
    }
}
