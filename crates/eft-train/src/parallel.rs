//! Data parallelism: the processes (ranks) a run is split over and the sums they share.
//!
//! Every rank builds the same data and model, draws the same global batch each step, and trains
//! on its fixed slice of it; the gradients, weighted by each slice's share of the graded labels,
//! are summed over ranks with one all-reduce of a flat buffer per step, so every rank applies
//! the same update and the model is the one a single process would train on the whole batch (up
//! to the order of the f32 sums). The sums go through a [`Collective`]: [`Solo`] for one
//! process, [`ThreadGroup`] for ranks as threads of one process (tests), and MPI with the `mpi`
//! feature.

use std::sync::{Arc, Barrier, Mutex};

use std::collections::BTreeSet;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::{Tensor, TensorData};

use crate::TrainError;

/// The ranks of a run and the one operation they need: an element-wise sum.
pub trait Collective {
    /// This process's rank, from 0.
    fn rank(&self) -> usize;
    /// How many ranks there are.
    fn size(&self) -> usize;
    /// Replaces `values` on every rank by their element-wise sum over all ranks, the same bits
    /// everywhere.
    ///
    /// # Errors
    /// When the ranks can no longer reach each other.
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), TrainError>;
}

/// One process: the sum is the values themselves.
#[derive(Debug, Clone, Copy, Default)]
pub struct Solo;

impl Collective for Solo {
    fn rank(&self) -> usize {
        0
    }
    fn size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&self, _: &mut [f32]) -> Result<(), TrainError> {
        Ok(())
    }
}

/// Ranks as threads of one process, each holding one of these; sums are taken in rank order,
/// so every rank gets the same bits on every run.
pub struct ThreadGroup {
    rank: usize,
    shared: Arc<Shared>,
}

struct Shared {
    size: usize,
    slots: Mutex<Vec<Vec<f32>>>,
    barrier: Barrier,
}

impl ThreadGroup {
    /// One handle per rank, for `size` threads.
    pub fn new(size: usize) -> Vec<ThreadGroup> {
        let shared = Arc::new(Shared {
            size,
            slots: Mutex::new(vec![Vec::new(); size]),
            barrier: Barrier::new(size),
        });
        (0..size)
            .map(|rank| ThreadGroup {
                rank,
                shared: shared.clone(),
            })
            .collect()
    }
}

impl Collective for ThreadGroup {
    fn rank(&self) -> usize {
        self.rank
    }
    fn size(&self) -> usize {
        self.shared.size
    }
    fn all_reduce_sum(&self, values: &mut [f32]) -> Result<(), TrainError> {
        let lock = || self.shared.slots.lock().unwrap_or_else(|p| p.into_inner());
        lock()[self.rank] = values.to_vec();
        self.shared.barrier.wait();
        {
            let slots = lock();
            for (i, v) in values.iter_mut().enumerate() {
                *v = slots.iter().map(|s| s[i]).sum();
            }
        }
        // Nobody overwrites a slot before every rank has read them all.
        self.shared.barrier.wait();
        Ok(())
    }
}

/// The slice `[start, end)` of a global batch of `batch` examples that `rank` of `size` trains
/// on.
pub fn shard(batch: usize, rank: usize, size: usize) -> std::ops::Range<usize> {
    let per = batch / size;
    rank * per..(rank + 1) * per
}

/// Sums `grads` (of `model`'s parameters, or only those in `only`) over the ranks, each rank's
/// first multiplied by `weight`, together with `extra` values appended to the same buffer (one
/// all-reduce). A parameter has a gradient after the sum where any rank had one; those outside
/// `only` keep this rank's.
pub fn all_reduce_gradients<M: Module>(
    model: &M,
    grads: GradientsParams,
    weight: f32,
    extra: &mut [f32],
    collective: &dyn Collective,
    only: Option<&BTreeSet<ParamId>>,
) -> Result<GradientsParams, TrainError> {
    // Layout: per parameter a presence flag and its values, in the model's visiting order.
    struct Flatten<'a> {
        grads: &'a GradientsParams,
        only: Option<&'a BTreeSet<ParamId>>,
        weight: f32,
        buffer: Vec<f32>,
        device: Option<burn::tensor::Device>,
    }
    impl ModuleVisitor for Flatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.only.is_some_and(|o| !o.contains(&param.id)) {
                return;
            }
            let n: usize = param.shape().num_elements();
            match self.grads.get::<D>(param.id) {
                Some(g) => {
                    self.device.get_or_insert_with(|| g.device());
                    self.buffer.push(1.0);
                    let data = g.into_data();
                    let values = data.as_slice::<f32>().expect("f32 gradients");
                    self.buffer.extend(values.iter().map(|v| v * self.weight));
                }
                None => {
                    self.buffer.push(0.0);
                    self.buffer.extend(std::iter::repeat_n(0.0, n));
                }
            }
        }
    }
    struct Unflatten<'a> {
        buffer: &'a [f32],
        only: Option<&'a BTreeSet<ParamId>>,
        at: usize,
        device: burn::tensor::Device,
        out: GradientsParams,
    }
    impl ModuleVisitor for Unflatten<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            if self.only.is_some_and(|o| !o.contains(&param.id)) {
                return;
            }
            self.out.remove::<D>(param.id);
            let shape = param.shape();
            let n = shape.num_elements();
            let present = self.buffer[self.at] > 0.0;
            let values = &self.buffer[self.at + 1..self.at + 1 + n];
            self.at += 1 + n;
            if present {
                let g =
                    Tensor::<D>::from_data(TensorData::new(values.to_vec(), shape), &self.device);
                self.out.register::<D>(param.id, g);
            }
        }
    }
    let mut flat = Flatten {
        grads: &grads,
        only,
        weight,
        buffer: Vec::new(),
        device: None,
    };
    model.visit(&mut flat);
    // With no gradient here the sum still runs: the other ranks wait for it.
    let device = flat.device.unwrap_or_default();
    let mut buffer = flat.buffer;
    let params_end = buffer.len();
    buffer.extend_from_slice(extra);
    collective.all_reduce_sum(&mut buffer)?;
    extra.copy_from_slice(&buffer[params_end..]);
    let mut unflat = Unflatten {
        buffer: &buffer[..params_end],
        only,
        at: 0,
        device,
        out: grads,
    };
    model.visit(&mut unflat);
    Ok(unflat.out)
}

/// Loss and accuracy of `model` over `examples`, each rank evaluating its contiguous slice and
/// the sums added over ranks (one process evaluates them all, as [`crate::evaluate`]).
///
/// # Errors
/// When the ranks can no longer reach each other.
pub fn evaluate_split(
    model: &eft_model::Classifier,
    examples: &[eft_data::Example],
    batch_size: usize,
    device: &burn::tensor::Device,
    collective: &dyn Collective,
) -> Result<crate::EvalResult, TrainError> {
    let (rank, size, n) = (collective.rank(), collective.size(), examples.len());
    let part = &examples[n * rank / size..n * (rank + 1) / size];
    let sums = crate::evaluate_sums(model, part, batch_size, device);
    if size == 1 {
        return Ok(sums.result());
    }
    // Counts below 2^24 are exact in f32.
    let mut shared = [
        sums.loss as f32,
        sums.hits as f32,
        sums.graded as f32,
        sums.examples as f32,
    ];
    collective.all_reduce_sum(&mut shared)?;
    Ok(crate::EvalSums {
        loss: f64::from(shared[0]),
        hits: shared[1] as usize,
        graded: shared[2] as usize,
        examples: shared[3] as usize,
    }
    .result())
}

static AGREED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Whether this process's ranks have agreed to start training: from then on a failure on one
/// rank leaves the others waiting in a sum, so the launch must be ended; before it, every rank
/// fails at the same point and can exit on its own.
pub fn started() -> bool {
    AGREED.load(std::sync::atomic::Ordering::SeqCst)
}

/// Checks, on every rank at once, that setting up went well everywhere (`failed` says how it
/// went here) and that every rank runs the same config (by `config_hash`): every rank gets the
/// same answer, so none is left waiting for the others.
///
/// # Errors
/// One naming the first rank that failed or runs another config.
pub fn agree(
    collective: &dyn Collective,
    failed: bool,
    config_hash: u64,
) -> Result<(), TrainError> {
    let rank = collective.rank();
    // Rank 0's hash in exact 16-bit pieces, the failed ranks, and the ranks that differ.
    let pieces = |h: u64| (0..4).map(move |i| ((h >> (16 * i)) & 0xffff) as f32);
    let mut shared: Vec<f32> = if rank == 0 {
        pieces(config_hash).collect()
    } else {
        vec![0.0; 4]
    };
    collective.all_reduce_sum(&mut shared)?;
    let same = shared.iter().copied().eq(pieces(config_hash));
    let mut flags = vec![0.0f32; 2 * collective.size()];
    flags[rank] = f32::from(u8::from(failed));
    flags[collective.size() + rank] = f32::from(u8::from(!same));
    collective.all_reduce_sum(&mut flags)?;
    let (failed, differ) = flags.split_at(collective.size());
    if let Some(r) = failed.iter().position(|&f| f > 0.0) {
        return Err(TrainError::Invalid(format!(
            "rank {r} could not start (its error is in its output); every rank stops"
        )));
    }
    if let Some(r) = differ.iter().position(|&f| f > 0.0) {
        return Err(TrainError::Invalid(format!(
            "rank {r} runs another config than rank 0 (their hashes differ): start every rank \
             with the same command and files"
        )));
    }
    AGREED.store(true, std::sync::atomic::Ordering::SeqCst);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Thread ranks sum in rank order and all see the same result, call after call.
    #[test]
    fn thread_ranks_sum_the_same_everywhere() {
        let ranks = ThreadGroup::new(3);
        let results: Vec<Vec<f32>> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|r| {
                    s.spawn(move || {
                        let mut last = Vec::new();
                        for call in 0..5 {
                            let mut v = vec![r.rank() as f32 + call as f32, 1.0];
                            r.all_reduce_sum(&mut v).unwrap();
                            last = v;
                        }
                        last
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for r in &results {
            assert_eq!(r, &vec![0.0 + 1.0 + 2.0 + 3.0 * 4.0, 3.0]);
        }
    }

    /// Each rank's gradients count by its weight; a parameter one rank has no gradient for
    /// still gets the others' on every rank; the extra values ride along.
    #[test]
    fn gradients_sum_by_weight_in_one_buffer() {
        let device = burn::tensor::Device::flex();
        let model = burn::nn::LinearConfig::new(2, 3).init(&device);
        let ranks = ThreadGroup::new(2);
        let results: Vec<(Vec<f32>, Option<Vec<f32>>, f32)> = std::thread::scope(|s| {
            let handles: Vec<_> = ranks
                .iter()
                .map(|r| {
                    let (model, device) = (model.clone(), device.clone());
                    s.spawn(move || {
                        let mut grads = GradientsParams::new();
                        let k = r.rank() as f32 + 1.0;
                        grads.register(model.weight.id, Tensor::<2>::full([2, 3], k, &device));
                        if let (1, Some(bias)) = (r.rank(), &model.bias) {
                            grads.register(bias.id, Tensor::<1>::full([3], 10.0, &device));
                        }
                        let weight = [0.25, 0.75][r.rank()];
                        let mut extra = [k];
                        let out = all_reduce_gradients(&model, grads, weight, &mut extra, r, None)
                            .unwrap();
                        let values = |t: Option<Tensor<1>>| {
                            t.map(|t| t.into_data().try_to_vec::<f32>().unwrap())
                        };
                        let w = out.get::<2>(model.weight.id).unwrap().reshape([6]);
                        let b = model.bias.as_ref().and_then(|b| out.get::<1>(b.id));
                        (values(Some(w)).unwrap(), values(b), extra[0])
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        for (w, b, extra) in results {
            assert_eq!(w, vec![0.25 * 1.0 + 0.75 * 2.0; 6]);
            assert_eq!(b, Some(vec![7.5; 3]));
            assert_eq!(extra, 3.0);
        }
    }

    #[test]
    fn shards_are_fixed_slices() {
        assert_eq!(shard(8, 0, 2), 0..4);
        assert_eq!(shard(8, 1, 2), 4..8);
        assert_eq!(shard(8, 3, 4), 6..8);
    }

    /// A failed or disagreeing rank stops every rank with the same verdict.
    #[test]
    fn every_rank_learns_of_a_failure_or_another_config() {
        let run = |fail: Option<usize>, hashes: [u64; 2]| -> Vec<String> {
            let ranks = ThreadGroup::new(2);
            std::thread::scope(|s| {
                let handles: Vec<_> = ranks
                    .iter()
                    .map(|r| {
                        s.spawn(
                            move || match agree(r, fail == Some(r.rank()), hashes[r.rank()]) {
                                Ok(()) => "ok".to_string(),
                                Err(e) => e.to_string(),
                            },
                        )
                    })
                    .collect();
                handles.into_iter().map(|h| h.join().unwrap()).collect()
            })
        };
        assert_eq!(run(None, [7, 7]), ["ok", "ok"]);
        let failed = run(Some(1), [7, 7]);
        assert!(
            failed.iter().all(|e| e.contains("rank 1 could not start")),
            "{failed:?}"
        );
        let differ = run(None, [7, 1 << 40]);
        assert!(
            differ
                .iter()
                .all(|e| e.contains("rank 1 runs another config")),
            "{differ:?}"
        );
    }
}
