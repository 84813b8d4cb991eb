//! Where this crate's ops run. burn routes a backend extension only to the backends its
//! `#[backend_extension]` attribute lists (here Flex, with or without autodiff); on any other
//! device (wgpu, …) each op's public function composes its portable tensor-op form on burn's
//! `Dispatch` backend instead, which autodiff differentiates like any other tensor code.

use burn::backend::DispatchDevice;
use burn::tensor::Device;

#[cfg(test)]
thread_local! {
    /// Set by tests to run the portable forms on Flex, where the extensions would otherwise run.
    static PORTABLE_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether burn routes this crate's extension ops for tensors on `device`.
pub(crate) fn extension_runs_on(device: &Device) -> bool {
    #[cfg(test)]
    if PORTABLE_ONLY.with(std::cell::Cell::get) {
        return false;
    }
    let plain = device.clone().inner();
    matches!(plain.as_dispatch(), DispatchDevice::Flex(_))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use burn::tensor::{Device, Int, Tensor};

    use super::PORTABLE_ONLY;
    use crate::test_util::{assert_close, random};
    use crate::{BlockPattern, ElementRule};

    /// `op` on fresh leaves of `sizes` elements (reshaped inside `op`), run by the extensions and
    /// again by the portable forms: the outputs and every leaf's gradient of a random projection
    /// of the output agree within 1e-5 of the largest magnitude.
    fn extension_and_portable_agree<const D: usize>(
        what: &str,
        sizes: &[usize],
        op: impl Fn(&[Tensor<1>]) -> Tensor<D>,
    ) {
        let device = Device::flex().autodiff();
        // Drawn once: the device's generator is shared with tests running in parallel.
        let data: Vec<_> = sizes
            .iter()
            .enumerate()
            .map(|(i, &n)| random([n], 40 + i as u64, &device).into_data())
            .collect();
        let run = |portable: bool, w: Option<Tensor<D>>| {
            let leaves: Vec<Tensor<1>> = data
                .iter()
                .map(|d| Tensor::from_data(d.clone(), &device).require_grad())
                .collect();
            PORTABLE_ONLY.with(|p| p.set(portable));
            let out = op(&leaves);
            PORTABLE_ONLY.with(|p| p.set(false));
            let w = w.unwrap_or_else(|| random(out.dims(), 7, &device));
            let grads = (out.clone() * w.clone()).sum().backward();
            let grads: Vec<Tensor<1>> = leaves
                .iter()
                .map(|l| l.grad(&grads).expect("leaf requires grad"))
                .collect();
            (out.inner(), grads, w)
        };
        let (fused, fused_grads, w) = run(false, None);
        let (portable, portable_grads, _) = run(true, Some(w));
        assert_close(&format!("{what} output"), fused, portable, 1e-5);
        for (i, (f, p)) in fused_grads.into_iter().zip(portable_grads).enumerate() {
            assert_close(&format!("{what} d(input {i})"), f, p, 1e-5);
        }
    }

    #[test]
    fn row_ops_have_portable_forms_that_agree() {
        let x = |t: &[Tensor<1>]| t[0].clone().reshape([3, 5, 12]);
        extension_and_portable_agree("softmax", &[180], |t| crate::softmax(x(t)));
        extension_and_portable_agree("gelu", &[180], |t| crate::gelu(x(t)));
        extension_and_portable_agree("elu+1", &[180], |t| crate::elu_plus_one(x(t)));
        extension_and_portable_agree("dropout", &[180], |t| crate::dropout(x(t), 0.25, 99));
        extension_and_portable_agree("layer norm", &[180, 12, 12], |t| {
            crate::layer_norm(x(t), t[1].clone(), t[2].clone(), 1e-5)
        });
        extension_and_portable_agree("dense", &[180, 12 * 7, 7], |t| {
            crate::linear(x(t), t[1].clone().reshape([12, 7]), Some(t[2].clone()))
        });
        extension_and_portable_agree("favor", &[2 * 3 * 9 * 6, 2 * 3 * 9 * 4], |t| {
            let p = t[0].clone().reshape([2, 3, 9, 6]);
            crate::favor_features(p, t[1].clone().reshape([2, 3, 9, 4]), true, 0.5)
        });
    }

    /// Blocks of 4 over 20 positions, each query block gathering itself and its neighbours, with
    /// one global key and one global query.
    fn neighbours_and_globals() -> BlockPattern {
        let key_blocks = (0..5isize)
            .flat_map(|i| [i - 1, i, i + 1])
            .map(|j| (0..5).contains(&j).then_some(j as usize))
            .collect();
        BlockPattern {
            len: 20,
            block: 4,
            heads: 1,
            per_query: 3,
            key_blocks,
            global_keys: vec![0],
            global_queries: vec![19],
            rule: ElementRule::All,
        }
    }

    #[test]
    fn attention_ops_have_portable_forms_that_agree() {
        let device = Device::flex().autodiff();
        let n = 2 * 3 * 20 * 8;
        let qkv = |t: &[Tensor<1>]| {
            let s = |i: usize| t[i].clone().reshape([2, 3, 20, 8]);
            (s(0), s(1), s(2))
        };
        let pad = || {
            let real = Tensor::<1, Int>::arange(0..20, &device)
                .float()
                .reshape([1, 20]);
            let limits = Tensor::<2>::from_floats([[20.0], [13.0]], &device);
            real.greater_equal(limits).float()
        };
        for causal in [false, true] {
            let what = |op: &str| format!("{op}, causal {causal}");
            extension_and_portable_agree(&what("flash"), &[n, n, n], |t| {
                let (q, k, v) = qkv(t);
                crate::flash_attention(q, k, v, Some(pad()), causal, 8)
            });
            extension_and_portable_agree(&what("materialised"), &[n, n, n], |t| {
                let (q, k, v) = qkv(t);
                crate::materialised_attention(q, k, v, Some(pad()), causal)
            });
            extension_and_portable_agree(&what("kernel"), &[n, n, n], |t| {
                let (q, k, v) = qkv(t);
                let (fq, fk) = (crate::elu_plus_one(q), crate::elu_plus_one(k));
                crate::kernel_attention(fq, fk, v, Some(pad()), causal)
            });
            let pattern = Arc::new(neighbours_and_globals());
            extension_and_portable_agree(&what("block-sparse"), &[n, n, n], |t| {
                let (q, k, v) = qkv(t);
                crate::block_sparse_attention(q, k, v, Some(pad()), causal, pattern.clone())
            });
        }
    }
}
