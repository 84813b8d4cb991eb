//! Kernelised attention from mapped queries and keys as one operation with its own backward pass:
//! `out_i = φ(q_i)·Σ_j φ(k_j)ᵀv_j / φ(q_i)·Σ_j φ(k_j)` over the keys query `i` sees (not padding;
//! not later, when causal): what `linear` and `performer` run after their feature maps.
//!
//! On burn's Flex backend in f32 both passes run the fused kernel of [`crate::cpu`]: O(N·F·D)
//! time, only the output and one normaliser per query kept, causal as a chunked scan. The
//! portable body below is the explicit quadratic form (O(N²), a reference): `eft-attention`
//! runs its own linear-time tensor-op form wherever [`fused_cpu`](crate::fused_cpu) says no.

use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::tensor::FloatTensor;
use burn::backend::{
    Autodiff, Backend, Dispatch, Flex, TensorMetadata, backend_extension,
    get_or_init_device_settings,
};
use burn::tensor::{Scalar, Shape, Tensor, TensorData};

use crate::attention_op::{autodiff_attention_op, key_bias};
use crate::cpu::kernel_attention::{CHUNK, EMPTY_ROW_GUARD};
use crate::routing::extension_runs_on;
use crate::{BLOCKED_SCORE, cpu};

/// The backend operations behind [`kernel_attention`].
#[backend_extension(Autodiff, Flex)]
pub trait KernelAttentionBackend: Backend {
    /// Kernelised attention of mapped queries and keys `fq`, `fk` (`[B, H, N, F]`) over `v`.
    fn kernel_attention(
        fq: FloatTensor<Self>,
        fk: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> FloatTensor<Self> {
        Self::kernel_attention_forward(fq, fk, v, key_bias, causal).0
    }

    /// The forward pass alone: the output `[B, H, N, D]` and each query's normaliser
    /// `[B, H, N, 1]` (at least the guard).
    fn kernel_attention_forward(
        fq: FloatTensor<Self>,
        fk: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        generic_forward::<Self>(fq, fk, v, key_bias, causal)
    }

    /// The backward pass alone: `(dfq, dfk, dv)` from the inputs, the output, the normalisers
    /// and the output's gradient.
    #[allow(clippy::too_many_arguments)]
    fn kernel_attention_backward(
        fq: FloatTensor<Self>,
        fk: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        den: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        generic_backward::<Self>([fq, fk, v], key_bias, out, den, grad_out, causal)
    }
}

/// Kernelised attention `φ(q)·Σφ(k)ᵀv / φ(q)·Σφ(k)` of mapped queries and keys. A query that sees
/// no key outputs zeros.
///
/// # Shapes
/// - `fq`, `fk`: `[B, H, N, F]`, non-negative; `v`: `[B, H, N, D]`
/// - `key_padding`: `[B, N]` floats, 1 at padding and 0 at real tokens, or `None`
/// - output: `[B, H, N, D]`
pub fn kernel_attention(
    fq: Tensor<4>,
    fk: Tensor<4>,
    v: Tensor<4>,
    key_padding: Option<Tensor<2>>,
    causal: bool,
) -> Tensor<4> {
    let extension = extension_runs_on(&fq.device());
    let bias = key_bias(key_padding, &fk).into_dispatch();
    let (fq, fk, v) = (fq.into_dispatch(), fk.into_dispatch(), v.into_dispatch());
    Tensor::from_dispatch(match extension {
        true => <Dispatch as KernelAttentionBackend>::kernel_attention(fq, fk, v, bias, causal),
        false => generic_forward::<Dispatch>(fq, fk, v, bias, causal).0,
    })
}

/// `[B, 1, N, N]`: 1 where query `i` sees key `j` (a real key, not later when causal), else 0.
fn visible<B: Backend>(key_bias: &FloatTensor<B>, causal: bool) -> FloatTensor<B> {
    let n = key_bias.shape()[3];
    let device = key_bias.device();
    let bools = get_or_init_device_settings::<B>(&device).bool_dtype;
    let real = B::bool_into_float(
        B::float_greater_elem(
            key_bias.clone(),
            Scalar::Float(f64::from(BLOCKED_SCORE) / 2.0),
            bools,
        ),
        crate::flash_reference::dtype_of::<B>(key_bias),
    ); // [B, 1, 1, N]
    let order: Vec<f32> = (0..n * n)
        .map(|p| f32::from(u8::from(!causal || p % n <= p / n)))
        .collect();
    let order = B::float_from_data(TensorData::new(order, Shape::new([1, 1, n, n])), &device);
    B::float_mul(order, real)
}

/// The explicit weights `A = φ(q)φ(k)ᵀ ∘ visible`, `[B, H, N, N]`.
fn weights<B: Backend>(
    fq: FloatTensor<B>,
    fk: FloatTensor<B>,
    key_bias: &FloatTensor<B>,
    causal: bool,
) -> FloatTensor<B> {
    let a = B::float_matmul(fq, B::float_transpose(fk));
    B::float_mul(a, visible::<B>(key_bias, causal))
}

/// The portable forward pass: the quadratic form, normalisers clamped to the guard.
fn generic_forward<B: Backend>(
    fq: FloatTensor<B>,
    fk: FloatTensor<B>,
    v: FloatTensor<B>,
    key_bias: FloatTensor<B>,
    causal: bool,
) -> (FloatTensor<B>, FloatTensor<B>) {
    let a = weights::<B>(fq, fk, &key_bias, causal);
    let den = B::float_clamp_min(
        B::float_sum_dim(a.clone(), 3),
        Scalar::Float(f64::from(EMPTY_ROW_GUARD)),
    );
    (B::float_div(B::float_matmul(a, v), den.clone()), den)
}

/// The portable backward pass of the quadratic form.
fn generic_backward<B: Backend>(
    [fq, fk, v]: [FloatTensor<B>; 3],
    key_bias: FloatTensor<B>,
    out: FloatTensor<B>,
    den: FloatTensor<B>,
    grad_out: FloatTensor<B>,
    causal: bool,
) -> (FloatTensor<B>, FloatTensor<B>, FloatTensor<B>) {
    let mask = visible::<B>(&key_bias, causal);
    let a = B::float_mul(
        B::float_matmul(fq.clone(), B::float_transpose(fk.clone())),
        mask.clone(),
    );
    // A row that sees no key outputs the constant zero, so its gradients are zero.
    let bools = get_or_init_device_settings::<B>(&den.device()).bool_dtype;
    let seen = B::bool_into_float(
        B::float_greater_elem(
            den.clone(),
            Scalar::Float(f64::from(EMPTY_ROW_GUARD)),
            bools,
        ),
        crate::flash_reference::dtype_of::<B>(&den),
    );
    let dnum = B::float_mul(B::float_div(grad_out, den), seen); // [B, H, N, D]
    let dden = B::float_neg(B::float_sum_dim(B::float_mul(dnum.clone(), out), 3)); // [B, H, N, 1]
    let da = B::float_mul(
        B::float_add(B::float_matmul(dnum.clone(), B::float_transpose(v)), dden),
        mask,
    );
    let dfq = B::float_matmul(da.clone(), fk);
    let dfk = B::float_matmul(B::float_transpose(da), fq);
    let dv = B::float_matmul(B::float_transpose(a), dnum);
    (dfq, dfk, dv)
}

impl KernelAttentionBackend for Flex {
    fn kernel_attention_forward(
        fq: FloatTensor<Self>,
        fk: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>) {
        match cpu::heads::FlexInputs::new(&fq, &fk, &v, &key_bias) {
            Some(x) => x.kernel_attention_forward(causal),
            None => generic_forward::<Self>(fq, fk, v, key_bias, causal),
        }
    }

    fn kernel_attention_backward(
        fq: FloatTensor<Self>,
        fk: FloatTensor<Self>,
        v: FloatTensor<Self>,
        key_bias: FloatTensor<Self>,
        out: FloatTensor<Self>,
        den: FloatTensor<Self>,
        grad_out: FloatTensor<Self>,
        causal: bool,
    ) -> (FloatTensor<Self>, FloatTensor<Self>, FloatTensor<Self>) {
        let fused = cpu::heads::FlexInputs::new(&fq, &fk, &v, &key_bias).and_then(|x| {
            let kernel = cpu::kernel_attention::backward;
            x.gradients((&out, &den), &grad_out, (causal, CHUNK), &kernel)
        });
        match fused {
            Some(grads) => grads,
            None => generic_backward::<Self>([fq, fk, v], key_bias, out, den, grad_out, causal),
        }
    }
}

autodiff_attention_op!(KernelAttention for KernelAttentionBackend,
    kernel_attention => kernel_attention_forward, kernel_attention_backward, {
    causal: bool,
});

#[cfg(test)]
mod tests {
    use burn::tensor::Device;

    use super::*;
    use crate::test_util::{assert_close, random};

    /// The fused op against the quadratic form written with differentiable tensor ops, output
    /// and gradients; features positive (exponentials), heads strided, padding, causal.
    fn check(dims: [usize; 4], features: usize, real: &[usize], causal: bool, seed: u64) {
        let [b, h, n, d] = dims;
        let device = Device::flex().autodiff();
        let split = |s, width| random([b, n, h, width], s, &device).swap_dims(1, 2);
        let (q, k) = (split(seed, features), split(seed + 1, features));
        let (v, w) = (split(seed + 2, d), split(seed + 3, d));
        let pad: Vec<f32> = (0..b * n)
            .map(|p| f32::from(u8::from(p % n >= real[p / n])))
            .collect();
        let pad = Tensor::<2>::from_data(TensorData::new(pad, [b, n]), &device);
        let keep: Vec<f32> = (0..b * n * n)
            .map(|p| {
                let (bi, i, j) = (p / (n * n), p / n % n, p % n);
                f32::from(u8::from(j < real[bi] && (!causal || j <= i)))
            })
            .collect();
        let keep = Tensor::<4>::from_data(TensorData::new(keep, [b, 1, n, n]), &device);
        let run = |fused: bool| {
            let (q, k, v) = (
                q.clone().require_grad(),
                k.clone().require_grad(),
                v.clone().require_grad(),
            );
            let (fq, fk) = ((q.clone() * 0.3).exp(), (k.clone() * 0.3).exp());
            let out = if fused {
                kernel_attention(fq, fk, v.clone(), Some(pad.clone()), causal)
            } else {
                let a = fq.matmul(fk.swap_dims(2, 3)) * keep.clone();
                let den = a.clone().sum_dim(3).clamp_min(f64::from(EMPTY_ROW_GUARD));
                a.matmul(v.clone()) / den
            };
            let grads = (out.clone() * w.clone()).sum().backward();
            let g = |t: &Tensor<4>| t.grad(&grads).expect("input requires grad");
            [out.inner(), g(&q), g(&k), g(&v)]
        };
        let (fast, slow) = (run(true), run(false));
        for (name, (f, s)) in ["out", "dq", "dk", "dv"]
            .iter()
            .zip(fast.into_iter().zip(slow))
        {
            let what = format!("kernel attention {name} {dims:?} F={features} causal={causal}");
            assert_close(&what, f, s, 1e-5);
        }
    }

    #[test]
    fn fused_equals_the_quadratic_form() {
        for causal in [false, true] {
            // Several causal chunks (N > 64) and a partial last one; F ≠ D.
            check([1, 2, 150, 8], 12, &[150], causal, 1);
            check([2, 3, 29, 5], 7, &[29, 18], causal, 2);
            // A batch row whose queries see only padding, and causal rows that see nothing.
            check([2, 1, 9, 4], 4, &[0, 9], causal, 3);
        }
    }

    #[test]
    fn the_portable_passes_equal_the_fused_ones() {
        let device = Device::flex();
        let dims = [2, 2, 70, 6];
        let (fq, fk) = (
            random(dims, 5, &device).exp(),
            random(dims, 6, &device).exp(),
        );
        let (v, g) = (random(dims, 7, &device), random(dims, 8, &device));
        let bias = Tensor::<4>::from_data(
            TensorData::new(
                (0..140)
                    .map(|p| {
                        if p % 70 >= 60 && p >= 70 {
                            BLOCKED_SCORE
                        } else {
                            0.0
                        }
                    })
                    .collect::<Vec<f32>>(),
                [2, 1, 1, 70],
            ),
            &device,
        );
        let plain = |t: &Tensor<4>| t.clone().into_dispatch();
        for causal in [false, true] {
            let fused = <Dispatch as KernelAttentionBackend>::kernel_attention_forward(
                plain(&fq),
                plain(&fk),
                plain(&v),
                plain(&bias),
                causal,
            );
            let (out, den) = generic_forward::<Dispatch>(
                plain(&fq),
                plain(&fk),
                plain(&v),
                plain(&bias),
                causal,
            );
            let t = Tensor::<4>::from_dispatch;
            assert_close("portable out", t(out.clone()), t(fused.0.clone()), 1e-5);
            let grads_fused = <Dispatch as KernelAttentionBackend>::kernel_attention_backward(
                plain(&fq),
                plain(&fk),
                plain(&v),
                plain(&bias),
                fused.0,
                fused.1,
                plain(&g),
                causal,
            );
            let grads_slow = generic_backward::<Dispatch>(
                [plain(&fq), plain(&fk), plain(&v)],
                plain(&bias),
                out,
                den,
                plain(&g),
                causal,
            );
            for (name, (f, s)) in ["dfq", "dfk", "dv"].iter().zip(
                [grads_fused.0, grads_fused.1, grads_fused.2]
                    .into_iter()
                    .zip([grads_slow.0, grads_slow.1, grads_slow.2]),
            ) {
                assert_close(
                    &format!("portable {name} causal={causal}"),
                    t(f),
                    t(s),
                    1e-5,
                );
            }
        }
    }
}
