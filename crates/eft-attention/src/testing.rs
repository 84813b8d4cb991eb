//! Helpers for checking mechanisms against the dense reference: seeded random inputs, a
//! comparison that names the worst element, and one tester every mechanism runs through.
//! Built for this crate's tests and, through the `testing` feature, for other crates' tests.

use burn::tensor::Tensor;

use crate::AttentionConfig;
pub use crate::random_qkv;

/// Parameters that fit each mechanism to the short inputs of unit tests (10 tokens, 4 heads);
/// one line per mechanism that needs any. [`small_configs`] gives every registered mechanism
/// with these, so a new mechanism is covered by the shared tests through one line here.
pub const SMALL: &[(&str, &[(&str, &str)])] = &[
    ("local", &[("block", "4")]),
    ("sliding", &[("window", "3")]),
    ("strided", &[("stride", "3")]),
    ("fixed", &[("block", "4"), ("summary", "2")]),
    ("cascade", &[("window", "2")]),
    ("longformer", &[("window", "2")]),
    ("bigbird", &[("block", "4"), ("random_blocks", "1")]),
    ("performer", &[("features", "8"), ("redraw", "2")]),
    ("linformer", &[("k", "4")]),
    ("nystrom", &[("landmarks", "4"), ("conv_kernel", "3")]),
    ("synthesizer", &[("mix", "true")]),
    ("sinkhorn", &[("block", "4")]),
    ("lsh", &[("buckets", "2"), ("chunk", "4")]),
    ("xl", &[("segment", "4"), ("mem_len", "4")]),
];

/// `key=value` pairs as [`AttentionConfig::from_name_and_params`] takes them.
pub fn params(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every registered mechanism, in registry order, with the parameters of [`SMALL`].
///
/// # Panics
/// Panics when [`SMALL`] names a mechanism the registry does not have or a parameter it
/// rejects, so the table cannot go stale.
pub fn small_configs() -> Vec<AttentionConfig> {
    for (name, _) in SMALL {
        assert!(
            AttentionConfig::NAMES.contains(name),
            "testing::SMALL names `{name}`, which is not registered"
        );
    }
    AttentionConfig::NAMES
        .iter()
        .map(|name| {
            let params = params(
                SMALL
                    .iter()
                    .find(|(n, _)| n == name)
                    .map_or(&[], |(_, p)| *p),
            );
            AttentionConfig::from_name_and_params(name, &params)
                .unwrap_or_else(|e| panic!("testing::SMALL for `{name}`: {e}"))
        })
        .collect()
}

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

/// The output and dq, dk, dv of `loss = Σ forward(q, k, v)·w` (no masks), as f64.
///
/// An input that `forward` does not read has gradient zero.
pub fn output_and_grads(
    forward: &dyn Fn(crate::AttentionInput) -> Tensor<4>,
    [q, k, v, w]: [&Tensor<4>; 4],
) -> [Vec<f64>; 4] {
    let (q, k, v) = (
        q.clone().require_grad(),
        k.clone().require_grad(),
        v.clone().require_grad(),
    );
    let out = forward(crate::AttentionInput::new(q.clone(), k.clone(), v.clone()));
    let grads = (out.clone() * w.clone()).sum().backward();
    let g = |t: &Tensor<4>| match t.grad(&grads) {
        Some(g) => to_f64(g),
        None => vec![0.0; t.dims().iter().product()],
    };
    [to_f64(out), g(&q), g(&k), g(&v)]
}

/// Seeds `device`'s generator and runs `draws` while no other test of this binary can draw from
/// it (burn's generator is process-global and tests run in parallel threads).
pub fn with_seed<R>(device: &burn::tensor::Device, seed: u64, draws: impl FnOnce() -> R) -> R {
    static GENERATOR: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = GENERATOR.lock().unwrap_or_else(|p| p.into_inner());
    device.seed(seed);
    draws()
}

/// Builds a module from `seed` and draws its (lazily initialised) parameters at once, under the
/// lock of [`with_seed`], so the same seed always gives the same parameters.
pub fn seeded<M: burn::module::Module>(
    device: &burn::tensor::Device,
    seed: u64,
    build: impl FnOnce() -> M,
) -> M {
    with_seed(device, seed, || {
        let m = build();
        let _ = param_values(&m);
        m
    })
}

/// A layout for tests: layer `layer` of a model with up to 64 positions and 4 heads of 8.
pub fn layout(layer: usize) -> crate::AttentionLayout {
    crate::AttentionLayout {
        layer,
        max_len: 64,
        heads: 4,
        head_dim: 8,
    }
}

/// A tensor's values as f64, in row-major order.
pub fn to_f64<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.into_data()
        .convert::<f64>()
        .try_to_vec::<f64>()
        .expect("a float tensor converts to f64")
}

/// Every float parameter of `module` as f64 values, in visiting order.
fn param_values<M: burn::module::Module>(module: &M) -> Vec<Vec<f64>> {
    use burn::module::{ModuleVisitor, Param};
    struct Collect(Vec<Vec<f64>>);
    impl ModuleVisitor for Collect {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.0.push(to_f64(param.val()));
        }
    }
    let mut c = Collect(Vec::new());
    module.visit(&mut c);
    c.0
}

/// `module` with entry `entry` of parameter number `which` moved by `delta`.
fn nudged<M: burn::module::Module>(module: M, which: usize, entry: usize, delta: f64) -> M {
    use burn::module::{ModuleMapper, Param};
    use burn::tensor::TensorData;
    struct Nudge {
        at: usize,
        which: usize,
        entry: usize,
        delta: f64,
    }
    impl ModuleMapper for Nudge {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<D>>) -> Param<Tensor<D>> {
            self.at += 1;
            if self.at - 1 != self.which {
                return param;
            }
            let (id, tensor, mapper) = param.consume();
            let dims = tensor.dims();
            let mut values: Vec<f32> = tensor
                .to_data()
                .convert::<f32>()
                .try_to_vec::<f32>()
                .expect("f32");
            values[self.entry] += self.delta as f32;
            let moved = Tensor::from_data(TensorData::new(values, dims), &tensor.device());
            Param::from_mapped_value(id, moved.require_grad(), mapper)
        }
    }
    module.map(&mut Nudge {
        at: 0,
        which,
        entry,
        delta,
    })
}

/// Checks the autodiff gradient of `loss` with respect to every float parameter of `module`
/// against central differences, at up to `entries` evenly spread entries of each parameter.
///
/// `module` must live on an autodiff device; `loss` returns a one-element tensor.
///
/// # Panics
/// Panics when a gradient is missing or disagrees, naming parameter and entry.
pub fn check_param_grads<M: burn::module::Module + Clone>(
    what: &str,
    module: &M,
    loss: impl Fn(&M) -> Tensor<1>,
    entries: usize,
) {
    use burn::module::{ModuleVisitor, Param};
    struct Grads<'a>(&'a burn::tensor::Gradients, Vec<Option<Vec<f64>>>);
    impl ModuleVisitor for Grads<'_> {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            self.1.push(param.val().grad(self.0).map(to_f64));
        }
    }
    let grads = loss(module).backward();
    let mut visitor = Grads(&grads, Vec::new());
    module.visit(&mut visitor);
    let values = param_values(module);
    assert!(!values.is_empty(), "{what}: the module has no parameters");
    let value = |m: &M| to_f64(loss(m))[0];
    for (which, (vals, grad)) in values.iter().zip(visitor.1).enumerate() {
        let grad = grad.unwrap_or_else(|| panic!("{what}: parameter {which} has no gradient"));
        let step = (vals.len() / entries.max(1)).max(1);
        let mut checked = 0;
        for entry in (0..vals.len()).step_by(step).take(entries) {
            let difference = |eps: f64| {
                let up = value(&nudged(module.clone(), which, entry, eps));
                let down = value(&nudged(module.clone(), which, entry, -eps));
                (up - down) / (2.0 * eps)
            };
            let (numeric, finer) = (difference(1e-2), difference(5e-3));
            // Two step sizes that disagree mean a kink (a ReLU switching) inside the step: the
            // function has no derivative to compare with there.
            if (numeric - finer).abs() > 5e-4 + 5e-3 * numeric.abs() {
                continue;
            }
            checked += 1;
            assert_close(
                &format!("{what}: parameter {which} entry {entry}"),
                &[grad[entry]],
                &[numeric],
                2e-2,
                2e-3,
            );
        }
        assert!(
            checked > 0,
            "{what}: parameter {which} had a kink at every checked entry"
        );
    }
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
    check_fn_against_reference(what, &|input| attention.forward(input), blocked, case, rtol);
}

/// [`check_against_reference`] for any forward function (e.g. a mechanism's inner step with
/// some of its state fixed).
pub fn check_fn_against_reference(
    what: &str,
    forward: &dyn Fn(crate::AttentionInput) -> Tensor<4>,
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
            forward(input)
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
