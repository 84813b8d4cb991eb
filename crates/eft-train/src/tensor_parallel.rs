//! The trainer's side of tensor parallelism (`model.tensor_parallel = K` under K ranks): each
//! rank trains its part of the split model ([`eft_model::Classifier::split_for_rank`]) on the
//! whole global batch, the sums inside the layers going through the run's [`Collective`].
//!
//! Checkpoints hold the whole model: each rank's blocks are gathered into whole arrays before
//! rank 0 writes them, and cut out again on resume, so a run resumes with any number of ranks
//! its layers divide by, and `eft eval` and `eft report` read it like any other.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet};
use std::rc::Rc;
use std::time::Instant;

use burn::module::{Module, ModuleVisitor, Param, ParamId};
use burn::optim::GradientsParams;
use burn::tensor::Tensor;
use eft_model::{Classifier, ModelConfig};

use crate::TrainError;
use crate::parallel::{Collective, all_reduce_gradients};
use crate::params::{NamedArray, PathStack, square_sum};

/// A rank's part of a tensor-parallel run: which parameters are split and how, and its
/// membership of the ranks' group while it lives.
pub struct TensorRanks {
    collective: Rc<dyn Collective>,
    /// Whole and local shape of every split parameter, by name.
    split: BTreeMap<String, (Vec<usize>, Vec<usize>)>,
    split_ids: BTreeSet<ParamId>,
    /// Whole parameters whose gradient each rank computes from its own heads only.
    partial: BTreeSet<ParamId>,
    whole_parameters: usize,
    /// Seconds this rank spent in the sums inside its layers.
    seconds: Rc<Cell<f64>>,
    _group: eft_kernels::RankGroup,
}

impl TensorRanks {
    /// This rank's part of `model` (whole, as every rank builds it) under `config`, whose
    /// `tensor_parallel` must equal the number of ranks; the calling thread joins the ranks'
    /// group until the result is dropped.
    ///
    /// # Errors
    /// The ranks are not `config.tensor_parallel`, or the model cannot be split.
    pub fn split(
        model: Classifier,
        config: &ModelConfig,
        collective: Rc<dyn Collective>,
    ) -> Result<(Classifier, Self), TrainError> {
        let (rank, ranks) = (collective.rank(), collective.size());
        if ranks != config.tensor_parallel {
            return Err(TrainError::config(
                "model.tensor_parallel",
                config.tensor_parallel,
                format!(
                    "needs that many ranks, not {ranks}: launch with mpirun -np {} (tensor and \
                     data parallelism together are not built)",
                    config.tensor_parallel
                ),
            ));
        }
        let whole_parameters = model.num_params();
        let whole = param_layout(&model);
        let model = model.split_for_rank(config, rank)?;
        let mut split = BTreeMap::new();
        let mut split_ids = BTreeSet::new();
        for (name, (id, local)) in param_layout(&model) {
            let (_, whole) = &whole[&name];
            if *whole != local {
                split.insert(name, (whole.clone(), local));
                split_ids.insert(id);
            }
        }
        let partial = model.rank_partial_params().into_iter().collect();
        let seconds = Rc::new(Cell::new(0.0));
        let (sums, spent) = (collective.clone(), seconds.clone());
        let group = eft_kernels::join_rank_group(Rc::new(move |values: &mut [f32]| {
            let started = Instant::now();
            // Inside a backward pass there is no way to return the error; under MPI a lost
            // rank ends the launch before this.
            if let Err(e) = sums.all_reduce_sum(values) {
                panic!("a tensor-parallel sum failed: {e}");
            }
            spent.set(spent.get() + started.elapsed().as_secs_f64());
        }));
        let ranks = Self {
            collective,
            split,
            split_ids,
            partial,
            whole_parameters,
            seconds,
            _group: group,
        };
        Ok((model, ranks))
    }

    /// Parameters of the whole model.
    pub fn whole_parameters(&self) -> usize {
        self.whole_parameters
    }

    /// Seconds spent so far in the sums inside the layers (waiting for the other ranks
    /// included).
    pub fn sum_seconds(&self) -> f64 {
        self.seconds.get()
    }

    /// The whole shape, local shape and whole element count of the split parameter an array is
    /// named for (a parameter, or Adam's `m.`/`v.` moment of one).
    fn shapes(&self, name: &str) -> Option<&(Vec<usize>, Vec<usize>)> {
        let param = ["m.", "v."]
            .iter()
            .find_map(|p| name.strip_prefix(p))
            .filter(|p| self.split.contains_key(*p))
            .unwrap_or(name);
        self.split.get(param)
    }

    /// `arrays` (parameters or moments of this rank's part) with every split one made whole
    /// from all ranks' blocks: one sum over the ranks, every rank taking part.
    ///
    /// # Errors
    /// When the ranks can no longer reach each other.
    pub fn gather(
        &self,
        mut arrays: BTreeMap<String, NamedArray>,
    ) -> Result<BTreeMap<String, NamedArray>, TrainError> {
        let rank = self.collective.rank();
        let names: Vec<String> = arrays
            .keys()
            .filter(|n| self.shapes(n).is_some())
            .cloned()
            .collect();
        let mut buffer = Vec::new();
        for name in &names {
            let (whole, local) = self.shapes(name).expect("filtered");
            let start = buffer.len();
            buffer.resize(start + whole.iter().product::<usize>(), 0.0);
            let values = &arrays[name].values;
            Blocks::new(whole, local, rank).place(values, &mut buffer[start..]);
        }
        self.collective.all_reduce_sum(&mut buffer)?;
        let mut at = 0;
        for name in names {
            let (whole, local) = self.shapes(&name).expect("filtered");
            let n: usize = whole.iter().product();
            let array = arrays.get_mut(&name).expect("listed");
            // A moment is kept flat; a parameter in its shape.
            array.shape = match array.shape == *local {
                true => whole.clone(),
                false => vec![n],
            };
            array.values = buffer[at..at + n].to_vec();
            at += n;
        }
        Ok(arrays)
    }

    /// Whole `arrays` (a checkpoint's parameters or moments) with every split one cut to this
    /// rank's block.
    pub fn cut(&self, mut arrays: BTreeMap<String, NamedArray>) -> BTreeMap<String, NamedArray> {
        let rank = self.collective.rank();
        for (name, array) in arrays.iter_mut() {
            let Some((whole, local)) = self.shapes(name) else {
                continue;
            };
            array.values = Blocks::new(whole, local, rank).take(&array.values);
            array.shape = match array.shape == *whole {
                true => local.clone(),
                false => vec![array.values.len()],
            };
        }
        arrays
    }

    /// After a step's backward pass: the gradients of whole parameters that each rank computed
    /// in part summed over the ranks, with the stop request; the global gradient norm (split
    /// parameters' squares summed over the ranks, whole ones counted once); whether any rank
    /// asked to stop.
    ///
    /// # Errors
    /// When the ranks can no longer reach each other.
    pub fn reduce_step(
        &self,
        model: &Classifier,
        grads: GradientsParams,
        stop: bool,
    ) -> Result<(GradientsParams, f64, bool), TrainError> {
        let split_squares = square_sum(model, &grads, |id| self.split_ids.contains(&id));
        let mut extra = [f32::from(u8::from(stop)), split_squares as f32];
        let grads = all_reduce_gradients(
            model,
            grads,
            1.0,
            &mut extra,
            &*self.collective,
            Some(&self.partial),
        )?;
        let whole_squares = square_sum(model, &grads, |id| !self.split_ids.contains(&id));
        let norm = (f64::from(extra[1]) + whole_squares).sqrt();
        Ok((grads, norm, extra[0] > 0.0))
    }
}

/// Refuses, with the field to change, what a tensor-parallel run does not do: compute in low
/// precision (the sums are in f32), pretrain ELECTRA (its generator is not split), prune
/// weights (masks are whole-model arrays), or run off the CPU device (the gradient sum has no
/// portable form there).
pub(crate) fn check_run(
    config: &crate::RunConfig,
    device: &burn::tensor::Device,
) -> Result<(), TrainError> {
    let t = &config.train;
    let refuse = |field: &str, value: String, what: &str| {
        Err(TrainError::config(
            field,
            value,
            format!("{what} is not built with model.tensor_parallel above 1; set one of them back"),
        ))
    };
    if t.precision != crate::Precision::F32 {
        return refuse(
            "train.precision",
            format!("{:?}", t.precision),
            "low precision",
        );
    }
    if t.electra.is_some() {
        return refuse("train.electra", "set".into(), "ELECTRA pretraining");
    }
    if t.prune.is_some() {
        return refuse("train.prune", "set".into(), "pruning");
    }
    if !eft_kernels::ranks_run_on(device) {
        return Err(TrainError::Invalid(
            "tensor parallelism runs on the CPU device only (its gradient sum is a CPU \
             extension); train with --device cpu or model.tensor_parallel = 1"
                .into(),
        ));
    }
    Ok(())
}

/// Where one rank's block of a parameter sits in the whole: the split dimension's block of
/// `local` rows at `rank`, repeated for every index of the dimensions before it.
struct Blocks {
    outer: usize,
    local: usize,
    whole: usize,
    offset: usize,
}

impl Blocks {
    fn new(whole: &[usize], local: &[usize], rank: usize) -> Self {
        let dim = (0..whole.len())
            .find(|&d| whole[d] != local[d])
            .expect("a split parameter differs in one dimension");
        let inner: usize = local[dim + 1..].iter().product();
        Self {
            outer: local[..dim].iter().product(),
            local: local[dim] * inner,
            whole: whole[dim] * inner,
            offset: rank * local[dim] * inner,
        }
    }

    /// Copies the block's `values` into their places in `whole`.
    fn place(&self, values: &[f32], whole: &mut [f32]) {
        for o in 0..self.outer {
            let at = o * self.whole + self.offset;
            whole[at..at + self.local].copy_from_slice(&values[o * self.local..][..self.local]);
        }
    }

    /// The block's values out of `whole`.
    fn take(&self, whole: &[f32]) -> Vec<f32> {
        (0..self.outer)
            .flat_map(|o| &whole[o * self.whole + self.offset..][..self.local])
            .copied()
            .collect()
    }
}

/// Every float parameter's id and shape, by name.
fn param_layout<M: Module>(module: &M) -> BTreeMap<String, (ParamId, Vec<usize>)> {
    struct Layout {
        path: PathStack,
        out: BTreeMap<String, (ParamId, Vec<usize>)>,
    }
    impl ModuleVisitor for Layout {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.out
                .insert(self.path.name(), (param.id, param.dims().to_vec()));
        }
    }
    let mut layout = Layout {
        path: PathStack::default(),
        out: BTreeMap::new(),
    };
    module.visit(&mut layout);
    layout.out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Blocks placed by each rank tile the whole exactly once (a block placed twice doubles,
    /// one left out leaves zeros), and taking gives them back.
    #[test]
    fn blocks_tile_the_whole_and_come_back_out() {
        for (whole, local) in [
            (vec![6, 8], vec![6, 4]),
            (vec![8, 6], vec![4, 6]),
            (vec![3, 8, 5], vec![3, 2, 5]),
            (vec![12], vec![3]),
        ] {
            let ranks = whole.iter().product::<usize>() / local.iter().product::<usize>();
            let n: usize = whole.iter().product();
            let reference: Vec<f32> = (1..=n).map(|i| i as f32).collect();
            let mut tiled = vec![0.0; n];
            for rank in 0..ranks {
                let blocks = Blocks::new(&whole, &local, rank);
                let mine = blocks.take(&reference);
                assert_eq!(mine.len(), local.iter().product::<usize>());
                let mut placed = vec![0.0; n];
                blocks.place(&mine, &mut placed);
                tiled.iter_mut().zip(&placed).for_each(|(t, p)| *t += p);
            }
            assert_eq!(tiled, reference, "{whole:?} in blocks of {local:?}");
        }
        // Rank 1's columns of a [6, 8] weight split in two: row 0 holds 5..=8 (of 1..=48).
        let second =
            Blocks::new(&[6, 8], &[6, 4], 1).take(&(1..=48).map(|i| i as f32).collect::<Vec<_>>());
        assert_eq!(&second[..4], &[5.0, 6.0, 7.0, 8.0]);
    }
}
