//! `eft export`: a run's weights alone, for another framework, and optionally a check batch with
//! eft's logits so a port can prove it computes the same model.

use std::collections::HashMap;
use std::process::ExitCode;

use anyhow::Context;
use burn::tensor::Device;
use eft_data::Batch;
use eft_train::params::NamedArray;
use eft_train::safetensors_file::encode_f32;
use eft_train::{
    CHECKPOINT_FILE, Checkpoint, batch_tensors, build_data, build_model, load_weights,
};

use crate::args::{ExportArgs, ExportFormat};

/// Examples in the check batch.
const CHECK_EXAMPLES: usize = 8;

/// Runs the command.
pub fn run(args: ExportArgs) -> anyhow::Result<ExitCode> {
    let path = args.run.join(CHECKPOINT_FILE);
    let checkpoint = Checkpoint::load(&path)?;
    let device = Device::flex();
    // The task's data only for a check batch: building it takes minutes for Path-X.
    let model = build_model(&checkpoint.config, &device)?;
    let model = load_weights(model, &checkpoint, &path)?;
    let bytes = match args.format {
        ExportFormat::Pytorch => eft_train::export::pytorch_weights(&model)?,
    };
    eft_train::write_atomic(&args.out, &bytes)?;
    eprintln!(
        "wrote {} ({} after {} steps, PyTorch layout)",
        args.out.display(),
        checkpoint.config.name,
        checkpoint.state.step
    );
    if let Some(check) = &args.check_batch {
        let data = build_data(&checkpoint.config)?;
        let examples = &data.test[..CHECK_EXAMPLES.min(data.test.len())];
        let batch = Batch::from_examples(examples.iter());
        let tensors = batch_tensors(&batch, &device);
        let logits = model.forward(tensors.tokens, tensors.padding).logits;
        let as_f32 = |v: Vec<f32>| NamedArray {
            shape: vec![batch.batch, batch.len],
            values: v,
        };
        let arrays = [
            (
                "tokens".to_string(),
                as_f32(batch.tokens.iter().map(|&t| t as f32).collect()),
            ),
            (
                "padding".to_string(),
                as_f32(
                    batch
                        .padding
                        .iter()
                        .map(|&p| f32::from(u8::from(p)))
                        .collect(),
                ),
            ),
            ("logits".to_string(), NamedArray::from_tensor(&logits)),
        ];
        let metadata = HashMap::from([("run".to_string(), checkpoint.config.name.clone())]);
        let bytes = encode_f32(arrays.iter().map(|(n, a)| (n.clone(), a)), metadata)
            .context("encoding the check batch")?;
        eft_train::write_atomic(check, &bytes)?;
        eprintln!("wrote {} ({} examples)", check.display(), batch.batch);
    }
    Ok(ExitCode::SUCCESS)
}
