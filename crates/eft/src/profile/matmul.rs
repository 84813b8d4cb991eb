//! `eft profile matmul`: the backend's f32 GEMM rate, the yardstick for the attention kernels.

use std::time::Instant;

use burn::tensor::{Device, Distribution, Tensor};
use serde_json::json;

use crate::args::MatmulArgs;

/// Median seconds of `[n, n]·[n, n]` on Flex and the GFLOP/s it implies (2n³ FLOPs), as JSON.
pub fn measure(args: &MatmulArgs) -> serde_json::Value {
    let n = args.size;
    let device = Device::flex();
    let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    let b = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
    let mut times: Vec<f64> = (0..=args.repeats)
        .map(|_| {
            let started = Instant::now();
            let c = a.clone().matmul(b.clone());
            // Reading one element waits for the product on lazy backends.
            std::hint::black_box(c.slice([0..1, 0..1]).into_scalar::<f32>());
            started.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    times.sort_by(f64::total_cmp);
    let seconds = times[times.len() / 2];
    let flops = 2.0 * (n as f64).powi(3);
    json!({"size": n, "seconds": seconds, "gflops": flops / seconds / 1e9})
}
