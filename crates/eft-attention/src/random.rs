//! Seeded random attention inputs drawn on the host, for profiling and tests.

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
