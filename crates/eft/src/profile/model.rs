//! `eft profile attention --model PRESET`: a whole training step of a preset's model.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Int, Tensor};
use eft_attention::AttentionConfig;
use eft_model::TaskShape;
use eft_train::params::materialize;
use eft_train::seeding::with_seed;

use super::Measurement;
use crate::args::AttentionProfileArgs;

/// Token ids and classes of the synthetic batches (ListOps-sized).
const VOCAB: usize = 16;
const CLASSES: usize = 10;

/// Forward, loss and backward of `preset`'s ListOps model with `attention` and the arguments'
/// `--set` fields, on random tokens of `[batch, len]` (no optimiser step), as the trainer runs
/// it (recomputing or rebuilding when the model says so): median seconds, peak memory, the
/// model's FLOPs per step (recomputation included).
pub fn measure(
    args: &AttentionProfileArgs,
    preset: &str,
    attention: AttentionConfig,
) -> anyhow::Result<Measurement> {
    let mut run = eft_train::preset("listops", preset)?;
    run.model.attention = attention;
    run.model.dropout = 0.0;
    let run = eft_train::layered(&run, None, &args.sets)?;
    run.validate()?;
    let dims = TaskShape {
        vocab_size: VOCAB,
        max_len: args.len,
        n_classes: CLASSES,
        paired: false,
    };
    let before = eft_meter::rss_bytes().unwrap_or(0);
    let device = Device::flex().autodiff();
    let model = build(&run.model, dims, &device)?;
    crate::memory::check_fits(
        format_args!("a training step of the {preset} model at this shape"),
        model.cost(args.batch, args.len).saved_bytes(),
    )?;
    let (tokens, labels) = with_seed(&device, 1, || {
        let tokens = Tensor::<2>::random(
            [args.batch, args.len],
            Distribution::Uniform(1.0, VOCAB as f64),
            &device,
        )
        .int();
        let labels = Tensor::<1>::random(
            [args.batch],
            Distribution::Uniform(0.0, CLASSES as f64),
            &device,
        )
        .int();
        (tokens, labels)
    });
    let padding = Tensor::<2, Int>::zeros([args.batch, args.len], &device).bool();
    let heap_before = eft_meter::reset_peak();
    let mut times = Vec::new();
    for pass in 0..=args.repeats {
        let started = Instant::now();
        // The trainer's step: in `train.precision`, loss scaling left out (it changes no cost).
        let step = eft_train::step_in_precision(run.train.precision, 1.0, &model, |m| {
            m.step_gradients(tokens.clone(), padding.clone(), |output| {
                let task = output.task_loss(|logits| {
                    eft_train::cross_entropy(eft_train::in_f32(logits), labels.clone())
                });
                output.total_loss(task)
            })
        })?;
        std::hint::black_box(step.grads);
        if pass > 0 {
            times.push(started.elapsed().as_secs_f64());
        }
    }
    times.sort_by(f64::total_cmp);
    let cost = model.cost(args.batch, args.len);
    Ok(Measurement {
        heads: run.model.n_heads,
        head_dim: run.model.residual.branch_width(run.model.d_model) / run.model.n_heads,
        seconds: times.get(times.len() / 2).copied(),
        seconds_range: times.first().zip(times.last()).map(|(a, b)| (*a, *b)),
        peak_bytes: eft_meter::peak_rss_bytes().map(|peak| peak.saturating_sub(before)),
        heap_peak_bytes: eft_meter::is_tracking()
            .then(|| eft_meter::peak_allocated_bytes().saturating_sub(heap_before) as u64),
        note: None,
        ..Measurement::skipped(
            args,
            (cost.step_flops(), cost.attention_saved_bytes),
            String::new(),
        )
    })
}

/// `config`'s model for `dims`, initialised from seed 0 with every parameter drawn.
pub fn build(
    config: &eft_model::ModelConfig,
    dims: TaskShape,
    device: &Device,
) -> Result<eft_model::Classifier, eft_model::ModelError> {
    with_seed(device, 0, || {
        let m = config.init(dims, device)?;
        materialize(&m);
        Ok(m)
    })
}
