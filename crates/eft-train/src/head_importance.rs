//! Which heads to prune (Michel et al. 2019): each head's output is multiplied by a gate
//! `ξ_h = 1`, and its importance is `|∂L/∂ξ_h|` summed over training batches; scores are
//! normalised by their ℓ2 norm within each layer (the paper finds this matters), and the least
//! important heads are removed across all layers, each layer keeping at least one.
//!
//! The paper takes the absolute value per example; here it is per batch of the run's training
//! batch size (a documented simplification: one backward pass per batch instead of per example).

use std::path::Path;

use burn::tensor::Device;
use eft_data::{Batch, train_batch_indices};
use eft_model::ModelConfig;

use crate::evaluate::batch_tensors;
use crate::{Checkpoint, Precision, RunConfig, TrainError};

/// Each head's importance in a run's `checkpoint` (read from `path`), one list per layer, from
/// `batches` training batches (the run's first batches, in its order), without dropout.
pub fn head_importance(
    checkpoint: &Checkpoint,
    path: &Path,
    batches: usize,
    device: &Device,
) -> Result<Vec<Vec<f64>>, TrainError> {
    let source = &checkpoint.config;
    let config = RunConfig {
        model: ModelConfig {
            dropout: 0.0,
            ..source.model.clone()
        },
        ..source.clone()
    };
    let device = device.clone().autodiff();
    let model = crate::model_with_weights(&config, checkpoint, path, &device)?;
    let data = crate::build_data(&config)?;
    let ones: Vec<Vec<f32>> = model
        .encoder()
        .attention_layers()
        .map(|a| vec![1.0; a.heads_count()])
        .collect();
    let gated = model.with_head_gates(&ones);
    let mut importance: Vec<Vec<f64>> = ones.iter().map(|l| vec![0.0; l.len()]).collect();
    for step in 0..batches {
        let size = config.train.batch_size;
        let indices =
            train_batch_indices(data.train.len(), size, config.training_seed(), step as u64);
        let batch = Batch::from_examples(indices.iter().map(|&i| &data.train[i]));
        let tensors = batch_tensors(&batch, &device);
        let (_, _, grads) =
            crate::trainer::step_gradients(&gated, &tensors, (Precision::F32, 1.0), None);
        let gradients = gated.head_gate_gradients(&grads);
        if gradients.iter().any(Vec::is_empty) || gradients.len() != importance.len() {
            return Err(TrainError::config(
                "model",
                "this run's backward form",
                "gives no gradient for the head gates (reversible blocks rebuild their own); \
                 head pruning needs a run with model.residual = \"pre_norm\"",
            ));
        }
        for (layer, g) in importance.iter_mut().zip(gradients) {
            for (i, g) in layer.iter_mut().zip(g) {
                *i += f64::from(g.abs());
            }
        }
    }
    Ok(importance)
}

/// Each layer's scores divided by their ℓ2 norm (a layer of zeros stays zero).
pub fn normalised(importance: &[Vec<f64>]) -> Vec<Vec<f64>> {
    importance
        .iter()
        .map(|scores| {
            let norm = scores.iter().map(|s| s * s).sum::<f64>().sqrt();
            (scores.iter())
                .map(|s| if norm > 0.0 { s / norm } else { 0.0 })
                .collect()
        })
        .collect()
}

/// The heads each layer keeps after removing the `remove` least important ones across all
/// layers (scores normalised per layer by their ℓ2 norm; ties go to the lower layer and head),
/// each layer keeping at least one; ascending indices, [`ModelConfig::kept_heads`]'s form.
pub fn heads_to_keep(importance: &[Vec<f64>], remove: usize) -> Vec<Vec<usize>> {
    let mut ranked: Vec<(f64, usize, usize)> = normalised(importance)
        .into_iter()
        .enumerate()
        .flat_map(|(layer, scores)| {
            (scores.into_iter().enumerate()).map(move |(head, s)| (s, layer, head))
        })
        .collect();
    ranked.sort_by(|a, b| a.0.total_cmp(&b.0).then((a.1, a.2).cmp(&(b.1, b.2))));
    let mut kept: Vec<Vec<bool>> = importance.iter().map(|l| vec![true; l.len()]).collect();
    let mut removed = 0;
    for (_, layer, head) in ranked {
        if removed == remove {
            break;
        }
        if kept[layer].iter().filter(|k| **k).count() > 1 {
            kept[layer][head] = false;
            removed += 1;
        }
    }
    kept.iter()
        .map(|l| (0..l.len()).filter(|&h| l[h]).collect())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Per-layer normalisation decides the order across layers, and no layer loses its last head.
    #[test]
    fn the_least_important_heads_go_first_and_every_layer_keeps_one() {
        // Layer 0's scores are large in absolute terms but one head dominates; layer 1 is even.
        let importance = vec![vec![100.0, 1.0, 1.0, 1.0], vec![2.0, 2.0, 2.0, 2.0]];
        assert_eq!(
            heads_to_keep(&importance, 3),
            vec![vec![0], vec![0, 1, 2, 3]]
        );
        assert_eq!(heads_to_keep(&importance, 4), vec![vec![0], vec![1, 2, 3]]);
        assert_eq!(heads_to_keep(&importance, 0), vec![vec![0, 1, 2, 3]; 2]);
        // Asking for more than can go leaves each layer its most important head (the last
        // of equals).
        assert_eq!(heads_to_keep(&importance, 100), vec![vec![0], vec![3]]);
        // A layer whose heads all score 0 loses them first (down to one).
        let dead = vec![vec![0.0, 0.0], vec![1.0, 3.0]];
        assert_eq!(heads_to_keep(&dead, 2), vec![vec![1], vec![1]]);
    }
}
