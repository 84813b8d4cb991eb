//! Helpers for checking mechanisms against the dense reference: seeded random inputs, a
//! comparison that names the worst element, and one tester every mechanism runs through.

use burn::tensor::Tensor;

/// Asserts `|actual − expected| ≤ atol + rtol·|expected|` element-wise.
///
/// On failure it names the largest violation, its flat index and both values, so a broken
/// kernel shows where it breaks rather than only that it does.
///
/// # Panics
/// Panics when the lengths differ or any element is out of tolerance.
pub fn assert_close(what: &str, actual: &[f64], expected: &[f64], rtol: f64, atol: f64) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "{what}: {} values, expected {}",
        actual.len(),
        expected.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (a, e)) in actual.iter().zip(expected).enumerate() {
        // NaN anywhere counts as the worst possible violation.
        let excess = (a - e).abs() - (atol + rtol * e.abs());
        let excess = if excess.is_nan() {
            f64::INFINITY
        } else {
            excess
        };
        if excess > 0.0 && worst.is_none_or(|(_, w)| excess > w) {
            worst = Some((i, excess));
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: element {i} is {} but expected {} (|diff| {:.3e}, rtol {rtol:e}, atol {atol:e})",
            actual[i],
            expected[i],
            (actual[i] - expected[i]).abs()
        );
    }
}

/// A tensor's values as f64, in row-major order.
pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("a float tensor converts to f64")
}

/// Four `[B, H, N, D]` standard-normal tensors (q, k, v and an output weighting) from `seed`,
/// drawn on the host with ChaCha so that concurrent callers cannot disturb each other's draws
/// (burn's CPU generator is process-global).
pub fn random_qkv(
    dims: [usize; 4],
    seed: u64,
    device: &burn::tensor::Device,
) -> (
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
    burn::tensor::Tensor<4>,
) {
    use rand::Rng;
    use rand_chacha::rand_core::SeedableRng;
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = dims.iter().product();
    let mut draw = || {
        // Box–Muller: two uniforms to one standard normal.
        let values: Vec<f32> = (0..n)
            .map(|_| {
                let (u, v): (f64, f64) = (rng.random::<f64>().max(1e-12), rng.random());
                ((-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()) as f32
            })
            .collect();
        burn::tensor::Tensor::from_data(burn::tensor::TensorData::new(values, dims), device)
    };
    (draw(), draw(), draw(), draw())
}

/// One input configuration for [`check_against_reference`].
#[derive(Debug, Clone)]
pub struct Case {
    /// `[B, H, N, D]`.
    pub dims: [usize; 4],
    /// Real tokens per batch row; the rest is padding.
    pub real: Vec<usize>,
    /// Causal masking.
    pub causal: bool,
    /// Seed of the random inputs.
    pub seed: u64,
}

/// Runs `attention` and the dense reference with `blocked` (plus the case's padding and causal
/// masks) on fresh random inputs, and asserts that outputs and dq, dk, dv agree to `rtol`
/// (relative to each tensor's largest magnitude, with a floor a tenth of that).
///
/// # Panics
/// Panics on any disagreement, naming the tensor, element and values.
pub fn check_against_reference(
    what: &str,
    attention: &crate::Attention,
    blocked: burn::tensor::Tensor<4, burn::tensor::Bool>,
    case: &Case,
    rtol: f64,
) {
    use burn::tensor::{Bool, Device, TensorData};
    let Case {
        dims,
        ref real,
        causal,
        seed,
    } = *case;
    let [b, h, n, _] = dims;
    let device = Device::flex().autodiff();
    let (q, k, v, w) = random_qkv(dims, seed, &device);
    let pad: Vec<bool> = (0..b * n).map(|p| p % n >= real[p / n]).collect();
    let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad, [b, n]), &device);
    let run = |fast: bool| {
        let (q, k, v) = (
            q.clone().require_grad(),
            k.clone().require_grad(),
            v.clone().require_grad(),
        );
        let input = crate::AttentionInput::new(q.clone(), k.clone(), v.clone())
            .with_key_padding(mask.clone())
            .with_causal(causal);
        let out = if fast {
            attention.forward(input)
        } else {
            let all = crate::blocked_positions(Some(mask.clone()), causal, n, &device)
                .map(|m| {
                    m.expand([b, h, n, n])
                        .bool_or(blocked.clone().expand([b, h, n, n]))
                })
                .unwrap_or_else(|| blocked.clone().expand([b, h, n, n]));
            crate::dense_reference(q.clone(), k.clone(), v.clone(), Some(all))
        };
        let grads = (out.clone() * w.clone()).sum().backward();
        let g = |t: &Tensor<4>| to_f64(t.grad(&grads).expect("input requires grad"));
        (to_f64(out), g(&q), g(&k), g(&v))
    };
    let (fast, slow) = (run(true), run(false));
    let scale = |x: &[f64]| x.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-12);
    for (name, a, e) in [
        ("out", &fast.0, &slow.0),
        ("dq", &fast.1, &slow.1),
        ("dk", &fast.2, &slow.2),
        ("dv", &fast.3, &slow.3),
    ] {
        assert_close(
            &format!("{what} {name}"),
            a,
            e,
            rtol,
            rtol * scale(e) * 1e-1,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_values_pass() {
        assert_close("ok", &[1.0, 2.0], &[1.0 + 1e-9, 2.0], 1e-6, 0.0);
    }

    #[test]
    #[should_panic(expected = "element 1 is 2.5 but expected 2")]
    fn far_value_is_named() {
        assert_close("bad", &[1.0, 2.5], &[1.0, 2.0], 1e-6, 1e-6);
    }

    #[test]
    #[should_panic(expected = "element 0")]
    fn nan_fails() {
        assert_close("nan", &[f64::NAN], &[1.0], 1e-6, 1e-6);
    }
}
