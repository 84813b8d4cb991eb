//! Fixed sinusoidal encodings of positions or distances (Vaswani et al. 2017).

use burn::tensor::{Device, Tensor, TensorData};

/// `[len(positions), dim]`: `sin(p / 10000^(2i/dim))` at column `2i`, `cos` at `2i + 1`.
/// Positions may be negative (relative distances).
pub fn sinusoid(positions: &[f64], dim: usize, device: &Device) -> Tensor<2> {
    let mut values = Vec::with_capacity(positions.len() * dim);
    for &p in positions {
        for c in 0..dim {
            let rate = 10000f64.powf((c - c % 2) as f64 / dim as f64);
            let angle = p / rate;
            values.push(if c % 2 == 0 { angle.sin() } else { angle.cos() } as f32);
        }
    }
    Tensor::from_data(TensorData::new(values, [positions.len(), dim]), device)
}
