//! A model of your own with an eft mechanism as one of its layers.
//!
//! A tiny set-to-vector model: project tokens to queries, keys and values, attend with Performer
//! (any of eft's mechanisms, picked by name and parameters), pool, project out. It learns, with
//! burn's Adam, to output the mean of its input tokens, which no single position can see alone.
//!
//!     cargo run --release -p eft-train --example custom_model

use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::optim::{AdamConfig, GradientsParams};
use burn::tensor::{Device, Distribution, Tensor};
use eft_attention::{Attention, AttentionConfig, AttentionInput, AttentionLayout, AttentionShape};

/// Tokens of width `WIDTH`, attended by `HEADS` heads.
const WIDTH: usize = 16;
const HEADS: usize = 2;

#[derive(Module, Debug)]
struct MeanFinder {
    qkv: Linear,
    attention: Attention,
    out: Linear,
}

impl MeanFinder {
    fn new(mechanism: &AttentionConfig, len: usize, device: &Device) -> anyhow::Result<Self> {
        let shape = AttentionShape {
            batch: 1,
            heads: HEADS,
            len,
            head_dim: WIDTH / HEADS,
        };
        // Refuses, with a message naming the parameter, a mechanism that cannot take this shape.
        mechanism.check_input(shape)?;
        Ok(Self {
            qkv: LinearConfig::new(WIDTH, 3 * WIDTH).init(device),
            attention: mechanism.init(AttentionLayout::for_shape(shape), device),
            out: LinearConfig::new(WIDTH, WIDTH).init(device),
        })
    }

    /// `[B, N, WIDTH]` tokens → `[B, WIDTH]`.
    fn forward(&self, x: Tensor<3>) -> Tensor<2> {
        let [b, n, _] = x.dims();
        let split = |t: Tensor<3>| {
            t.reshape([b, n, HEADS, WIDTH / HEADS]).swap_dims(1, 2) // [B, H, N, D]
        };
        let qkv = self.qkv.forward(x).chunk(3, 2);
        let [q, k, v] = [0, 1, 2].map(|i| split(qkv[i].clone()));
        let attended = self.attention.forward(AttentionInput::new(q, k, v)); // [B, H, N, D]
        let pooled = attended.swap_dims(1, 2).reshape([b, n, WIDTH]).mean_dim(1);
        self.out.forward(pooled.reshape([b, WIDTH]))
    }
}

/// Trains for `steps` steps and returns the first and last loss.
fn train(mechanism: &str, steps: usize) -> anyhow::Result<(f64, f64)> {
    let device = Device::flex().autodiff();
    device.seed(0);
    let (batch, len) = (8, 32);
    let config = AttentionConfig::from_name_and_params(mechanism, &[])?;
    let mut model = MeanFinder::new(&config, len, &device)?;
    let mut adam = AdamConfig::new().init();
    let mut losses = Vec::new();
    for _ in 0..steps {
        let x = Tensor::<3>::random([batch, len, WIDTH], Distribution::Normal(0.0, 1.0), &device);
        let target = x.clone().mean_dim(1).reshape([batch, WIDTH]);
        let loss = (model.forward(x) - target).square().mean();
        losses.push(loss.clone().into_scalar::<f64>());
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = adam.step(1e-2, model, grads);
    }
    Ok((losses[0], losses[losses.len() - 1]))
}

fn main() -> anyhow::Result<()> {
    let (first, last) = train("performer", 200)?;
    println!("performer attention as a layer: loss {first:.4} → {last:.4} after 200 Adam steps");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_model_learns() {
        let (first, last) = super::train("performer", 60).unwrap();
        assert!(last < 0.5 * first, "loss {first} → {last}");
    }
}
