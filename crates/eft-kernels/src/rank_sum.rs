//! The two operations tensor parallelism puts around a layer split across ranks (Megatron-LM's
//! `f` and `g`): [`copy_to_ranks`] before it (the identity forward; the gradient summed over
//! the ranks backward, since each rank's part of the layer sends back only its share) and
//! [`sum_over_ranks`] after it (the partial outputs summed forward; the gradient passed through
//! backward, since every rank needs all of it).
//!
//! The sum itself belongs to the caller (MPI, threads): a thread joins a group with
//! [`join_rank_group`] for as long as it runs a split model. The group is per thread because
//! burn runs a backward pass on the thread that asked for it, and because an MPI communicator
//! may not leave its thread.

use std::cell::RefCell;
use std::rc::Rc;

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops};
use burn::backend::tensor::FloatTensor;
use burn::backend::{Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension};
use burn::tensor::Tensor;

use crate::cpu;
use crate::routing::extension_runs_on;

/// Replaces the values on every rank of the group by their element-wise sum over the ranks.
pub type RankSum = Rc<dyn Fn(&mut [f32])>;

thread_local! {
    static GROUP: RefCell<Option<RankSum>> = const { RefCell::new(None) };
}

/// This thread's membership of a rank group; dropping it leaves the group (restoring the one
/// it replaced, if any).
#[must_use = "the thread leaves the group when this is dropped"]
pub struct RankGroup {
    previous: Option<RankSum>,
}

impl Drop for RankGroup {
    fn drop(&mut self) {
        let previous = self.previous.take();
        GROUP.with(|g| *g.borrow_mut() = previous);
    }
}

/// Makes `sum` the sum [`copy_to_ranks`] and [`sum_over_ranks`] use on this thread until the
/// returned guard is dropped.
pub fn join_rank_group(sum: RankSum) -> RankGroup {
    let previous = GROUP.with(|g| g.borrow_mut().replace(sum));
    RankGroup { previous }
}

/// Sums `values` over this thread's rank group.
///
/// # Panics
/// When the thread is in no group: a split model ran outside the ranks that hold its parts.
fn sum_in_group(values: &mut [f32]) {
    let sum = GROUP.with(|g| g.borrow().clone()).expect(
        "a tensor-parallel layer ran on a thread in no rank group (eft_kernels::join_rank_group)",
    );
    sum(values);
}

/// The backend operations behind [`copy_to_ranks`] and [`sum_over_ranks`].
#[backend_extension(Autodiff, Flex)]
pub trait RankSumBackend: Backend {
    /// `x` summed element-wise over the ranks.
    fn rank_sum(x: FloatTensor<Self>) -> FloatTensor<Self>;

    /// `x` itself; its gradient is summed over the ranks.
    fn rank_copy(x: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl RankSumBackend for Flex {
    fn rank_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let shape = x.shape();
        let c = cpu::contiguous_f32(&x).expect("tensor parallelism runs in f32");
        let mut values = cpu::values(&c).to_vec();
        sum_in_group(&mut values);
        cpu::tensor(values, shape)
    }

    fn rank_copy(x: FloatTensor<Self>) -> FloatTensor<Self> {
        x
    }
}

/// Which of the two operations a node is.
#[derive(Debug)]
enum RankGrad {
    /// Backward of [`RankSumBackend::rank_sum`]: the gradient unchanged.
    PassThrough,
    /// Backward of [`RankSumBackend::rank_copy`]: the gradient summed over the ranks.
    Sum,
}

impl<B: Backend + RankSumBackend> Backward<B, 1> for RankGrad {
    type State = ();

    fn backward(self, ops: Ops<Self::State, 1>, grads: &mut Gradients, _: &mut Checkpointer) {
        let dy = grads.consume::<B>(&ops.node);
        if let Some(parent) = &ops.parents[0] {
            let dx = match self {
                Self::PassThrough => dy,
                Self::Sum => B::rank_sum(dy),
            };
            grads.register::<B>(parent.id, dx);
        }
    }
}

impl<B: Backend + RankSumBackend, C: CheckpointStrategy> RankSumBackend for Autodiff<B, C> {
    fn rank_sum(x: FloatTensor<Self>) -> FloatTensor<Self> {
        // Compute-bound: a checkpointing strategy keeps the output instead of summing again.
        let prep = RankGrad::PassThrough
            .prepare::<C>([x.node()])
            .compute_bound();
        prep.stateless(B::rank_sum(x.into_primitive()))
    }

    fn rank_copy(x: FloatTensor<Self>) -> FloatTensor<Self> {
        let prep = RankGrad::Sum.prepare::<C>([x.node()]).compute_bound();
        prep.stateless(x.into_primitive())
    }
}

/// Whether the rank operations run for tensors on this device: burn's Flex backend, where the
/// sum reads the values in place. Elsewhere the gradient of [`copy_to_ranks`] has no portable
/// form (tensor ops cannot reach other processes), so callers refuse tensor parallelism there.
pub fn ranks_run_on(device: &burn::tensor::Device) -> bool {
    extension_runs_on(device)
}

/// `x` summed element-wise over the ranks of this thread's group, the gradient passed through
/// to every rank's `x` (Megatron-LM's `g`, after a row-split layer).
///
/// # Panics
/// Outside a rank group, or on a device where [`ranks_run_on`] is false.
pub fn sum_over_ranks<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    assert!(
        ranks_run_on(&x.device()),
        "tensor parallelism runs on the CPU device"
    );
    Tensor::from_dispatch(<Dispatch as RankSumBackend>::rank_sum(x.into_dispatch()))
}

/// `x` itself, its gradient summed over the ranks of this thread's group (Megatron-LM's `f`,
/// before a column-split layer).
///
/// # Panics
/// Outside a rank group (in the backward pass), or where [`ranks_run_on`] is false.
pub fn copy_to_ranks<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    assert!(
        ranks_run_on(&x.device()),
        "tensor parallelism runs on the CPU device"
    );
    Tensor::from_dispatch(<Dispatch as RankSumBackend>::rank_copy(x.into_dispatch()))
}

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{assert_close, random};

    /// A group of `k` ranks that all hold the same values: the sum is `k` times them.
    fn identical_ranks(k: f32) -> RankGroup {
        join_rank_group(Rc::new(move |v: &mut [f32]| {
            v.iter_mut().for_each(|x| *x *= k)
        }))
    }

    #[test]
    fn the_sum_runs_forward_for_g_and_backward_for_f() {
        let device = Device::flex().autodiff();
        let _group = identical_ranks(3.0);
        let x = random([2, 5, 4], 1, &device).require_grad();
        let w = random([2, 5, 4], 2, &device);
        let y = sum_over_ranks(x.clone());
        assert_close("g forward", y.clone(), x.clone() * 3.0, 1e-6);
        let g = (y * w.clone()).sum().backward();
        assert_close("g backward", x.grad(&g).unwrap(), w.clone().inner(), 1e-6);

        let x = random([2, 5, 4], 3, &device).require_grad();
        let y = copy_to_ranks(x.clone());
        assert_close("f forward", y.clone(), x.clone(), 0.0);
        let g = (y * w.clone()).sum().backward();
        assert_close("f backward", x.grad(&g).unwrap(), w.inner() * 3.0, 1e-6);
    }

    #[test]
    fn leaving_a_group_restores_the_one_before() {
        let outer = identical_ranks(2.0);
        {
            let _inner = identical_ranks(5.0);
            let mut v = [1.0];
            sum_in_group(&mut v);
            assert_eq!(v, [5.0]);
        }
        let mut v = [1.0];
        sum_in_group(&mut v);
        assert_eq!(v, [2.0]);
        drop(outer);
        assert!(GROUP.with(|g| g.borrow().is_none()));
    }
}
