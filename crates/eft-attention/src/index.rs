//! Index tensors built from host positions (rows to select, heads to keep, experts chosen).

use burn::tensor::{Device, Int, Tensor, TensorData};

/// `indices` as a 1-D integer tensor on `device`, for `select` and `gather`.
pub fn index_tensor(indices: &[usize], device: &Device) -> Tensor<1, Int> {
    let values: Vec<i64> = indices.iter().map(|&i| i as i64).collect();
    Tensor::from_data(TensorData::new(values, [indices.len()]), device)
}
