//! Fused CPU kernels on burn Flex's `f32` storage, each tested against the portable tensor-op
//! version of the same operation.

pub(crate) mod block_sparse;
pub(crate) mod dense;
pub(crate) mod flash;
pub(crate) mod heads;
pub(crate) mod kernel_attention;
pub(crate) mod materialised;
mod matmul;
mod rows;
pub(crate) mod rowwise;

use burn::backend::flex::{FlexTensor, Layout};
use burn::tensor::{Bytes, DType, Device, Shape};

/// Whether the fused CPU kernels run for tensors on `device` of `dtype`: burn's Flex backend (with
/// or without autodiff) in f32. Ops whose portable form is only a reference (block-sparse,
/// kernelised attention) let callers keep their own scalable path everywhere else.
pub fn fused_cpu(device: &Device, dtype: DType) -> bool {
    crate::routing::extension_runs_on(device) && dtype == DType::F32
}

/// The tensor's elements in row-major order, copied only when it is strided; `None` unless f32.
pub(crate) fn contiguous_f32(t: &FlexTensor) -> Option<FlexTensor> {
    (t.dtype() == DType::F32).then(|| t.to_contiguous())
}

/// The elements of a tensor [`contiguous_f32`] returned.
pub(crate) fn values(t: &FlexTensor) -> &[f32] {
    t.as_slice::<f32>().expect("contiguous f32 tensor")
}

/// A contiguous f32 tensor of `shape` holding `data`.
pub(crate) fn tensor(data: Vec<f32>, shape: impl Into<Shape>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(data),
        Layout::contiguous(shape.into()),
        DType::F32,
    )
}
