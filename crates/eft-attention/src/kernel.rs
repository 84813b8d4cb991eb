//! Kernelised attention: `out_i = φ(q_i)·Σ_j φ(k_j)ᵀv_j / φ(q_i)·Σ_j φ(k_j)` for non-negative
//! feature maps φ, shared by `linear` and `performer`.
//!
//! Non-causal: O(N·F·D) time, O(F·D) state per head (`F` features). Causal: O(N·F·D) time; the
//! fused kernel scans chunks with O(F·D) state, the tensor-op form keeps O(N·F·D) prefix sums.

use burn::tensor::{Bool, Tensor, TensorData};

/// Keeps the denominator of a query that sees no key away from zero; its numerator is zero too,
/// so such a query outputs zeros like every other mechanism.
pub const EMPTY_ROW_GUARD: f64 = 1e-30;

/// Attention through feature maps already applied to queries and keys: the fused operation of
/// `eft-kernels` where it runs (burn's Flex backend, f32; causal as a chunked scan), else
/// [`kernel_attention_tensor_ops`].
///
/// # Shapes
/// - `fq`, `fk`: `[B, H, N, F]` (non-negative); `v`: `[B, H, N, D]`; padding: `[B, N]`
/// - output: `[B, H, N, D]`
pub fn kernel_attention(
    fq: Tensor<4>,
    fk: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2, Bool>>,
    causal: bool,
) -> Tensor<4> {
    if eft_kernels::fused_cpu(&fq.device(), fq.dtype()) {
        let padding = key_padding.map(|p| p.float());
        return eft_kernels::kernel_attention(fq, fk, v, padding, causal);
    }
    kernel_attention_tensor_ops(fq, fk, v, key_padding, causal)
}

/// [`kernel_attention`] from burn tensor ops, on any backend (causal by prefix sums of the
/// `[B, H, N, F, D]` outer products: O(N·F·D) memory).
///
/// # Shapes
/// As [`kernel_attention`].
pub fn kernel_attention_tensor_ops(
    fq: Tensor<4>,
    fk: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2, Bool>>,
    causal: bool,
) -> Tensor<4> {
    let [batch, heads, len, features] = fq.dims();
    let dim = v.dims()[3];
    let (mut fk, mut v) = (fk, v);
    if let Some(padding) = key_padding {
        // Padded keys contribute nothing to either sum.
        let real = padding
            .bool_not()
            .float()
            .cast(fk.dtype())
            .reshape([batch, 1, len, 1]);
        fk = fk * real.clone();
        v = v * real;
    }
    let (num, den) = if causal {
        let outer = fk.clone().reshape([batch, heads, len, features, 1])
            * v.reshape([batch, heads, len, 1, dim]); // [B, H, N, F, D]
        let state = outer.cumsum(2);
        let z = fk.cumsum(2); // [B, H, N, F]
        let num = fq
            .clone()
            .reshape([batch, heads, len, 1, features])
            .matmul(state)
            .reshape([batch, heads, len, dim]);
        (num, (fq * z).sum_dim(3))
    } else {
        let kv = fk.clone().swap_dims(2, 3).matmul(v); // [B, H, F, D]
        let z = fk.sum_dim(2); // [B, H, 1, F]
        (fq.clone().matmul(kv), (fq * z).sum_dim(3))
    };
    num / den.clamp_min(EMPTY_ROW_GUARD)
}

/// The explicit quadratic form of the same features, for tests: `A = φ(q)φ(k)ᵀ` with padding
/// (`pad`, `[B·N]`, `true` = padding) and causal masks, `out = A·v / rowsum(A)`.
pub fn quadratic_reference(
    fq: Tensor<4>,
    fk: Tensor<4>,
    v: Tensor<4>,
    pad: &[bool],
    causal: bool,
) -> Tensor<4> {
    let [b, _, n, _] = fq.dims();
    let device = fq.device();
    let a = fq.matmul(fk.swap_dims(2, 3)); // [B, H, N, N]
    let keep: Vec<f32> = (0..b * n * n)
        .map(|p| {
            let (bi, i, j) = (p / (n * n), (p / n) % n, p % n);
            f32::from(u8::from(!(pad[bi * n + j] || (causal && j > i))))
        })
        .collect();
    let a = a * Tensor::<4>::from_data(TensorData::new(keep, [b, 1, n, n]), &device);
    let den = a.clone().sum_dim(3).clamp_min(EMPTY_ROW_GUARD);
    a.matmul(v) / den
}

/// Test support: a kernel mechanism against the quadratic form of its own features.
#[cfg(test)]
pub(crate) mod check {
    use burn::tensor::{Bool, Device, Tensor, TensorData};

    use super::quadratic_reference;
    use crate::AttentionInput;
    use crate::testing::{assert_close, random_qkv, to_f64};

    /// Runs `forward` and `quadratic_reference(features(q, k), v)` on fresh random inputs with
    /// padding (`real` tokens per row) and asserts equal outputs and dq, dk, dv.
    pub(crate) fn against_quadratic_form(
        what: &str,
        forward: impl Fn(AttentionInput) -> Tensor<4>,
        features: impl Fn(Tensor<4>, Tensor<4>) -> (Tensor<4>, Tensor<4>),
        (dims, real): ([usize; 4], &[usize]),
        causal: bool,
        seed: u64,
        atol: f64,
    ) {
        let [b, _, n, _] = dims;
        let device = Device::flex().autodiff();
        let (q, k, v, w) = random_qkv(dims, seed, &device);
        let pad: Vec<bool> = (0..b * n).map(|p| p % n >= real[p / n]).collect();
        let mask = Tensor::<2, Bool>::from_data(TensorData::new(pad.clone(), [b, n]), &device);
        let run = |linear: bool| {
            let (q, k, v) = (
                q.clone().require_grad(),
                k.clone().require_grad(),
                v.clone().require_grad(),
            );
            let out = if linear {
                let input = AttentionInput::new(q.clone(), k.clone(), v.clone())
                    .with_key_padding(mask.clone())
                    .with_causal(causal);
                forward(input)
            } else {
                let (fq, fk) = features(q.clone(), k.clone());
                quadratic_reference(fq, fk, v.clone(), &pad, causal)
            };
            let grads = (out.clone() * w.clone()).sum().backward();
            let g = |t: &Tensor<4>| to_f64(t.grad(&grads).expect("inputs require grad"));
            [to_f64(out), g(&q), g(&k), g(&v)]
        };
        let (fast, slow) = (run(true), run(false));
        for (name, (a, e)) in ["out", "dq", "dk", "dv"].iter().zip(fast.iter().zip(&slow)) {
            assert_close(
                &format!("{what} {dims:?} causal={causal} {name}"),
                a,
                e,
                1e-4,
                atol,
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The tensor-op form (what backends without the fused kernel run) against the quadratic
    /// form of the same positive features, forward and backward, causal and not.
    #[test]
    fn tensor_op_form_equals_the_quadratic_form() {
        let features = |q: Tensor<4>, k: Tensor<4>| ((q * 0.5).exp(), (k * 0.5).exp());
        for causal in [false, true] {
            check::against_quadratic_form(
                "tensor ops",
                |input| {
                    let (fq, fk) = features(input.q, input.k);
                    kernel_attention_tensor_ops(fq, fk, input.v, input.key_padding, causal)
                },
                features,
                ([2, 2, 11, 4], &[11, 6]),
                causal,
                3,
                1e-6,
            );
        }
    }
}
