//! Weights for other frameworks: a model's parameters alone (no optimiser state, no loop state),
//! in PyTorch's layouts and names, so `model.load_state_dict(safetensors.torch.load_file(path))`
//! takes them as they are.
//!
//! burn-store's PyTorch adapter does the work: it knows each tensor's module, so it transposes
//! `Linear` weights (`[in, out]` → `[out, in]`) and renames LayerNorm's `gamma`/`beta` to
//! `weight`/`bias`, and leaves embeddings and mechanism parameters as they are.

use burn::store::{BurnToPyTorchAdapter, ModuleSnapshot, SafetensorsStore};
use eft_model::Classifier;

use crate::TrainError;

/// The model's weights as a safetensors file in PyTorch's conventions.
pub fn pytorch_weights(model: &Classifier) -> Result<Vec<u8>, TrainError> {
    let mut store = SafetensorsStore::from_bytes(None)
        .with_to_adapter(BurnToPyTorchAdapter)
        .metadata("producer", format!("eft {}", env!("CARGO_PKG_VERSION")))
        .metadata("layout", "pytorch");
    let failed = |e: burn::store::SafetensorsStoreError| {
        TrainError::Invalid(format!("exporting the weights failed: {e}"))
    };
    model.save_into(&mut store).map_err(failed)?;
    store.get_bytes().map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::{NamedArray, export_params};
    use burn::tensor::Device;
    use safetensors::SafeTensors;

    /// Every parameter is exported once, under its name with PyTorch's spelling, with Linear
    /// weights transposed and everything else as it is.
    #[test]
    fn linear_weights_are_transposed_and_norms_renamed() {
        let config = crate::preset("listops", "quick").unwrap();
        let device = Device::flex();
        let model = config.model.init(config.task.shape(), &device).unwrap();
        let bytes = pytorch_weights(&model).unwrap();
        let file = SafeTensors::deserialize(&bytes).unwrap();
        let ours = export_params(&model);
        assert_eq!(file.len(), ours.len(), "one tensor per parameter");
        let get = |name: &str| {
            let v = file
                .tensor(name)
                .unwrap_or_else(|_| panic!("{name} missing"));
            NamedArray {
                shape: v.shape().to_vec(),
                values: crate::safetensors_file::decode_f32(v.data()),
            }
        };
        for (name, array) in &ours {
            let torch = name.replace(".gamma", ".weight").replace(".beta", ".bias");
            let got = get(&torch);
            let linear = name.ends_with(".weight")
                && !name.starts_with("embeddings.")
                && array.shape.len() == 2;
            if linear {
                let [i, o] = [array.shape[0], array.shape[1]];
                assert_eq!(got.shape, [o, i], "{name}");
                for r in 0..i {
                    for c in 0..o {
                        assert_eq!(got.values[c * i + r], array.values[r * o + c], "{name}");
                    }
                }
            } else {
                assert_eq!(&got, array, "{name}");
            }
        }
    }
}
