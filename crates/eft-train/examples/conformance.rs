//! `eft attn`-style conformance from Rust: a mechanism against the dense reference on the same
//! inputs, forward and gradients, the check every fast path of eft passes.
//!
//! Exact mechanisms (`full`, `flash`) must match the reference to float precision; approximate ones
//! (here `performer` and `linformer`) report how far they are, which is their accuracy, not a bug.
//!
//!     cargo run --release -p eft-train --example conformance

use burn::tensor::{Device, Tensor};
use eft_attention::{
    AttentionConfig, AttentionInput, AttentionLayout, AttentionShape, dense_reference, random_qkv,
};

/// Largest absolute difference between two tensors.
fn max_diff(a: Tensor<4>, b: Tensor<4>) -> f64 {
    (a - b).abs().max().into_scalar::<f64>()
}

/// The mechanism's output and q-gradient against the reference's, as max absolute differences.
fn compare(mechanism: &str, shape: AttentionShape) -> anyhow::Result<(f64, f64)> {
    let device = Device::flex().autodiff();
    device.seed(7);
    let config = AttentionConfig::from_name_and_params(mechanism, &[])?;
    config.check_input(shape)?;
    let attention = config.init(AttentionLayout::for_shape(shape), &device);
    let dims = [shape.batch, shape.heads, shape.len, shape.head_dim];
    // Inputs and the weights of a weighted-sum loss, seeded.
    let (q, k, v, w) = random_qkv(dims, 3, &device);
    let run = |f: &dyn Fn(Tensor<4>, Tensor<4>, Tensor<4>) -> Tensor<4>| {
        let q = q.clone().require_grad();
        let out = f(q.clone(), k.clone(), v.clone());
        let grads = (out.clone() * w.clone()).sum().backward();
        (out.inner(), q.grad(&grads).expect("q is used"))
    };
    let (out, dq) = run(&|q, k, v| attention.forward(AttentionInput::new(q, k, v)));
    let (want, want_dq) = run(&|q, k, v| dense_reference(q, k, v, None));
    Ok((max_diff(out, want), max_diff(dq, want_dq)))
}

fn main() -> anyhow::Result<()> {
    let shape = AttentionShape {
        batch: 2,
        heads: 4,
        len: 256,
        head_dim: 32,
    };
    println!("| mechanism | max |out − reference| | max |dq − reference| |");
    println!("|---|---|---|");
    for name in ["full", "flash", "performer", "linformer"] {
        let (out, dq) = compare(name, shape)?;
        println!("| {name} | {out:.2e} | {dq:.2e} |");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exact_mechanisms_match_the_reference() {
        let shape = AttentionShape {
            batch: 1,
            heads: 2,
            len: 64,
            head_dim: 16,
        };
        for name in ["full", "flash"] {
            let (out, dq) = compare(name, shape).unwrap();
            assert!(out < 1e-5 && dq < 1e-5, "{name}: {out} {dq}");
        }
        let (out, _) = compare("performer", shape).unwrap();
        assert!(out > 1e-4, "performer approximates: {out}");
    }
}
