//! Unstructured magnitude pruning: the smallest weights of the model's matrices are set to zero
//! and kept there through training.
//!
//! The prunable weights are the two-dimensional `weight` of every dense layer (attention
//! projections, feed-forward, head); embeddings, norms, biases and mechanism parameters are
//! kept. `global` scope ranks all of them together (one threshold: layers lose different
//! shares), `layer` scope ranks each matrix alone (each loses the same share). The mask is fixed
//! when training starts, stored in the checkpoint, and multiplied into the weights after every
//! optimiser step, so a pruned weight stays exactly zero (its gradient and Adam moments still
//! exist; the mask undoes their update).

use std::collections::BTreeMap;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::Tensor;
use serde::{Deserialize, Serialize};

use crate::TrainError;
use crate::params::{NamedArray, PathStack};

/// `train.prune = { sparsity = 0.5, scope = "global" }`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PruneConfig {
    /// Share of the prunable weights set to zero, in [0, 1).
    pub sparsity: f64,
    /// How weights are ranked. Default `global`.
    #[serde(default)]
    pub scope: PruneScope,
    /// Rank the final weights of this run (its folder) instead of this run's starting weights:
    /// a lottery ticket's mask, found by training, applied to rewound or fresh weights.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
}

/// How weights are ranked for pruning.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneScope {
    /// All prunable weights together: one magnitude threshold.
    #[default]
    Global,
    /// Each matrix alone: the same share of each.
    Layer,
}

impl PruneConfig {
    /// Checks the sparsity.
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(0.0..1.0).contains(&self.sparsity) {
            return Err(TrainError::config(
                "train.prune.sparsity",
                self.sparsity,
                "must be in [0, 1): the share of weights set to zero (0.9 keeps one in ten)",
            ));
        }
        Ok(())
    }
}

/// Whether the parameter `name` is pruned: a dense layer's two-dimensional weight.
pub fn prunable(name: &str, array: &NamedArray) -> bool {
    array.shape.len() == 2 && name.ends_with(".weight") && !name.starts_with("embeddings.")
}

/// Masks (1 kept, 0 pruned) for the prunable arrays of `params`: the `round(s·n)` smallest
/// magnitudes of the `n` weights ranked together (global) or of each matrix (layer). Ties are
/// broken by name and position, so exactly that many are pruned.
pub fn magnitude_masks(
    params: &BTreeMap<String, NamedArray>,
    config: &PruneConfig,
) -> BTreeMap<String, NamedArray> {
    let arrays: Vec<(&String, &NamedArray)> =
        params.iter().filter(|(n, a)| prunable(n, a)).collect();
    let mut masks: BTreeMap<String, NamedArray> = arrays
        .iter()
        .map(|(name, a)| {
            let mask = NamedArray {
                shape: a.shape.clone(),
                values: vec![1.0; a.values.len()],
            };
            ((*name).clone(), mask)
        })
        .collect();
    let groups: Vec<Vec<usize>> = match config.scope {
        PruneScope::Global => vec![(0..arrays.len()).collect()],
        PruneScope::Layer => (0..arrays.len()).map(|i| vec![i]).collect(),
    };
    for group in groups {
        let mut ranked: Vec<(f32, usize, usize)> = group
            .iter()
            .flat_map(|&a| {
                arrays[a]
                    .1
                    .values
                    .iter()
                    .enumerate()
                    .map(move |(i, v)| (v.abs(), a, i))
            })
            .collect();
        let cut = (config.sparsity * ranked.len() as f64).round() as usize;
        if cut == 0 {
            continue;
        }
        ranked.select_nth_unstable_by(cut - 1, |x, y| {
            x.0.total_cmp(&y.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2))
        });
        for &(_, a, i) in &ranked[..cut] {
            masks.get_mut(arrays[a].0).expect("a mask per array").values[i] = 0.0;
        }
    }
    masks
}

/// The share of zeros among the prunable weights of `params`.
pub fn sparsity(params: &BTreeMap<String, NamedArray>) -> f64 {
    let (zeros, total) =
        params
            .iter()
            .filter(|(n, a)| prunable(n, a))
            .fold((0usize, 0usize), |(z, t), (_, a)| {
                (
                    z + a.values.iter().filter(|v| **v == 0.0).count(),
                    t + a.values.len(),
                )
            });
    zeros as f64 / total.max(1) as f64
}

/// The masks as flat tensors on `device`, built once for [`apply_masks`] (which runs after every
/// optimiser step).
pub fn mask_tensors(
    masks: &BTreeMap<String, NamedArray>,
    device: &burn::tensor::Device,
) -> BTreeMap<String, Tensor<1>> {
    masks
        .iter()
        .map(|(name, m)| {
            let flat = NamedArray {
                shape: vec![m.values.len()],
                values: m.values.clone(),
            };
            (name.clone(), flat.to_tensor::<1>(device))
        })
        .collect()
}

/// `module` with each parameter named in `masks` ([`mask_tensors`]) multiplied by its mask.
pub fn apply_masks<M: Module>(module: M, masks: &BTreeMap<String, Tensor<1>>) -> M {
    struct Apply<'a> {
        path: PathStack,
        masks: &'a BTreeMap<String, Tensor<1>>,
    }
    impl ModuleMapper for Apply<'_> {
        fn enter_module(&mut self, name: &str, _: &str) {
            self.path.enter(name);
        }
        fn exit_module(&mut self, _: &str, _: &str) {
            self.path.exit();
        }
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            let Some(mask) = self.masks.get(&self.path.name()) else {
                return param;
            };
            let (id, tensor, mapper) = param.consume();
            let require_grad = tensor.is_require_grad();
            let inner = tensor.inner();
            let masked = inner.clone() * mask.clone().reshape(inner.dims());
            let mut out = Tensor::from_inner(masked);
            if require_grad {
                out = out.require_grad();
            }
            Param::from_mapped_value(id, out, mapper)
        }
    }
    module.map(&mut Apply {
        path: PathStack::default(),
        masks,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> BTreeMap<String, NamedArray> {
        let a = |shape: Vec<usize>, values: Vec<f32>| NamedArray { shape, values };
        BTreeMap::from([
            (
                "a.weight".into(),
                a(vec![2, 3], vec![0.5, -0.1, 0.3, -0.7, 0.2, 0.05]),
            ),
            ("b.weight".into(), a(vec![2, 2], vec![1.0, -2.0, 0.01, 0.4])),
            ("b.bias".into(), a(vec![2], vec![0.0, 0.001])),
            (
                "embeddings.tokens.weight".into(),
                a(vec![2, 2], vec![0.0; 4]),
            ),
        ])
    }

    fn zeros(masks: &BTreeMap<String, NamedArray>, name: &str) -> Vec<usize> {
        let m = &masks[name].values;
        (0..m.len()).filter(|&i| m[i] == 0.0).collect()
    }

    /// Global scope prunes the smallest magnitudes of all matrices; layer scope the smallest of
    /// each; neither touches biases or embeddings; the count is exactly round(s·n).
    #[test]
    fn masks_prune_the_smallest_magnitudes_exactly() {
        let p = params();
        let global = |s| {
            magnitude_masks(
                &p,
                &PruneConfig {
                    sparsity: s,
                    scope: PruneScope::Global,
                    from: None,
                },
            )
        };
        let m = global(0.3); // round(0.3 · 10) = 3: 0.01, 0.05, 0.1
        assert_eq!(m.len(), 2, "only the two dense weights");
        assert_eq!(zeros(&m, "a.weight"), vec![1, 5]);
        assert_eq!(zeros(&m, "b.weight"), vec![2]);
        for s in [0.0, 0.1, 0.25, 0.5, 0.75, 0.95] {
            let pruned: usize = global(s)
                .values()
                .map(|a| a.values.iter().filter(|v| **v == 0.0).count())
                .sum();
            assert_eq!(pruned, (s * 10.0f64).round() as usize, "sparsity {s}");
        }
        let layer = magnitude_masks(
            &p,
            &PruneConfig {
                sparsity: 0.5,
                scope: PruneScope::Layer,
                from: None,
            },
        );
        assert_eq!(zeros(&layer, "a.weight"), vec![1, 4, 5]); // 0.1, 0.2, 0.05
        assert_eq!(zeros(&layer, "b.weight"), vec![2, 3]); // 0.01, 0.4
        // Ties: equal magnitudes are pruned in name and position order, still exactly.
        let flat = BTreeMap::from([(
            "w.weight".to_string(),
            NamedArray {
                shape: vec![2, 2],
                values: vec![0.5; 4],
            },
        )]);
        let m = magnitude_masks(
            &flat,
            &PruneConfig {
                sparsity: 0.5,
                scope: PruneScope::Global,
                from: None,
            },
        );
        assert_eq!(zeros(&m, "w.weight"), vec![0, 1]);
    }

    #[test]
    fn sparsity_outside_zero_to_one_is_refused() {
        for s in [-0.1, 1.0, 1.5, f64::NAN] {
            let err = PruneConfig {
                sparsity: s,
                scope: PruneScope::Global,
                from: None,
            }
            .validate()
            .unwrap_err()
            .to_string();
            assert!(err.contains("train.prune.sparsity"), "{err}");
        }
        let zero_share = sparsity(&params());
        assert!((zero_share - 0.0).abs() < 1e-12, "{zero_share}");
    }
}
