//! How far a mechanism's output is from softmax attention, and from its own formula, on given
//! inputs: the measure behind the arena's fidelity table, taken on trained models' activations.

use burn::tensor::{Bool, Tensor};
use serde::{Deserialize, Serialize};

use crate::{Attention, AttentionInput, blocked_positions, dense_reference};

/// Relative errors of one attention call, each `‖out − target‖_F / ‖target‖_F` over the real
/// (not padding) query rows.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Fidelity {
    /// Against softmax attention over every visible key: what the mechanism changes.
    pub vs_softmax: f64,
    /// Against the mechanism's own formula computed the slow, exact way, for the mechanisms
    /// whose fast path could differ from it by more than rounding: a sparse pattern's masked
    /// dense softmax, Nyström's formula with the exact pseudo-inverse. `None` for the others,
    /// whose fast path is their formula.
    pub vs_formula: Option<f64>,
}

/// Runs `attention` on `input` and measures its output against softmax attention and against
/// its own formula (see [`Fidelity`]). Inputs with memory (`xl`) are not measured here: their
/// softmax target would be over the remembered keys as well.
pub fn fidelity(attention: &Attention, input: AttentionInput) -> Fidelity {
    let padding = input.key_padding.clone();
    let [_, heads, len, _] = input.q.dims();
    let device = input.q.device();
    let blocked = blocked_positions(padding.clone(), input.causal, len, &device);
    let softmax = dense_reference(
        input.q.clone(),
        input.k.clone(),
        input.v.clone(),
        blocked.clone(),
    );
    let formula = match attention {
        Attention::Nystrom(n) => Some(n.forward_exact(input.clone())),
        _ => attention.patterned().map(|p| {
            let pattern = p.cached_plan(len, heads, input.causal).dense_blocked(
                heads,
                len,
                input.causal,
                &device,
            );
            let batch = input.q.dims()[0];
            let shape = [batch, heads, len, len];
            let mask = match blocked {
                Some(b) => b.expand(shape).bool_or(pattern.expand(shape)),
                None => pattern.expand(shape),
            };
            dense_reference(
                input.q.clone(),
                input.k.clone(),
                input.v.clone(),
                Some(mask),
            )
        }),
    };
    let out = attention.forward(input);
    Fidelity {
        vs_softmax: relative_error(out.clone(), softmax, padding.clone()),
        vs_formula: formula.map(|f| relative_error(out, f, padding)),
    }
}

/// `‖actual − expected‖_F / ‖expected‖_F` over the rows whose query is not padding, summed in
/// f64; 0 when both are zero.
///
/// # Shapes
/// - actual, expected: `[B, H, N, D]`; padding: `[B, N]`, `true` at padding
pub fn relative_error(
    actual: Tensor<4>,
    expected: Tensor<4>,
    padding: Option<Tensor<2, Bool>>,
) -> f64 {
    let [batch, _, len, _] = actual.dims();
    let (actual, expected) = match padding {
        Some(p) => {
            let real = crate::mask::visible_as(p, actual.dtype()).reshape([batch, 1, len, 1]);
            (actual * real.clone(), expected * real)
        }
        None => (actual, expected),
    };
    let squares = |t: Tensor<4>| -> f64 {
        t.into_data()
            .convert::<f64>()
            .iter::<f64>()
            .map(|x| x * x)
            .sum()
    };
    let (diff, norm) = (squares(actual - expected.clone()), squares(expected));
    if norm == 0.0 {
        if diff == 0.0 { 0.0 } else { f64::INFINITY }
    } else {
        (diff / norm).sqrt()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::params;
    use crate::{AttentionConfig, AttentionLayout, random_qkv};
    use burn::tensor::{Device, TensorData};

    fn build(name: &str, pairs: &[(&str, &str)], len: usize, heads: usize) -> Attention {
        let device = Device::flex();
        AttentionConfig::from_name_and_params(name, &params(pairs))
            .unwrap()
            .init(
                AttentionLayout {
                    layer: 0,
                    max_len: len,
                    heads,
                    head_dim: 8,
                },
                &device,
            )
    }

    fn padded(dims: [usize; 4], seed: u64, real: &[usize]) -> AttentionInput {
        let device = Device::flex();
        let (q, k, v, _) = random_qkv(dims, seed, &device);
        let len = dims[2];
        let padding: Vec<bool> = real
            .iter()
            .flat_map(|&r| (0..len).map(move |j| j >= r))
            .collect();
        AttentionInput::new(q, k, v).with_key_padding(Tensor::from_data(
            TensorData::new(padding, [dims[0], len]),
            &device,
        ))
    }

    /// `full` is softmax itself; a local pattern is its own masked softmax to rounding but
    /// far from softmax over every key; padding rows do not count.
    #[test]
    fn exact_mechanisms_measure_zero_and_patterns_measure_what_they_drop() {
        let input = padded([2, 2, 16, 8], 3, &[16, 11]);
        let full = fidelity(&build("full", &[], 16, 2), input.clone());
        assert!(full.vs_softmax < 1e-6, "{full:?}");
        assert_eq!(full.vs_formula, None);
        let local = fidelity(&build("local", &[("block", "4")], 16, 2), input);
        assert!(local.vs_softmax > 0.05, "{local:?}");
        assert!(local.vs_formula.unwrap() < 1e-6, "{local:?}");
    }

    /// Nyström's f32 iterations approach the exact-pinv formula as they grow, on scores sharp
    /// enough to make the landmark kernel ill-conditioned.
    #[test]
    fn more_newton_schulz_iterations_come_closer_to_the_exact_formula() {
        let sharp = |mut i: AttentionInput| {
            i.q = i.q * 4.0;
            i
        };
        let input = sharp(padded([1, 2, 32, 8], 5, &[32]));
        let error = |iters: &str| {
            let n = build(
                "nystrom",
                &[("landmarks", "8"), ("pinv_iters", iters)],
                32,
                2,
            );
            fidelity(&n, input.clone()).vs_formula.unwrap()
        };
        let (few, many) = (error("2"), error("30"));
        assert!(many < 1e-3, "30 iterations: {many}");
        assert!(few > 10.0 * many, "2 iterations {few} vs 30 {many}");
    }

    #[test]
    fn relative_error_ignores_padding_rows_and_scales() {
        let device = Device::flex();
        let ones = Tensor::<4>::ones([1, 1, 2, 2], &device);
        let off = Tensor::<4>::from_data(
            TensorData::new(vec![1.0f32, 1.0, 5.0, 5.0], [1, 1, 2, 2]),
            &device,
        );
        let padding =
            Tensor::<2, Bool>::from_data(TensorData::new(vec![false, true], [1, 2]), &device);
        assert_eq!(
            relative_error(off.clone(), ones.clone(), Some(padding)),
            0.0
        );
        let whole = relative_error(off, ones, None);
        assert!((whole - (32.0f64 / 4.0).sqrt()).abs() < 1e-12, "{whole}");
    }
}
