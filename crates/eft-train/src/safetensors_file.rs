//! Named f32 arrays to and from safetensors bytes, shared by checkpoints and `eft attn`.

use std::collections::HashMap;

use safetensors::{Dtype, tensor::TensorView};

use crate::params::NamedArray;

/// Encodes named f32 arrays and string metadata as one safetensors file.
pub fn encode_f32<'a>(
    arrays: impl IntoIterator<Item = (String, &'a NamedArray)>,
    metadata: HashMap<String, String>,
) -> Result<Vec<u8>, safetensors::SafeTensorError> {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = arrays
        .into_iter()
        .map(|(name, a)| {
            let bytes = a.values.iter().flat_map(|v| v.to_le_bytes()).collect();
            (name, bytes, a.shape.clone())
        })
        .collect();
    let views = raw.iter().map(|(name, bytes, shape)| {
        let view = TensorView::new(Dtype::F32, shape.clone(), bytes).expect("sizes agree");
        (name.clone(), view)
    });
    safetensors::serialize(views, Some(metadata))
}

/// Reads little-endian f32 values.
pub fn decode_f32(bytes: &[u8]) -> Vec<f32> {
    bytes
        .chunks_exact(4)
        .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
        .collect()
}
