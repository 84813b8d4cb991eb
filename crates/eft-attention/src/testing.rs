//! Helpers for comparing a tensor against a reference, shared by every crate's tests.

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
