//! The meter's figures for a run: FLOPs, time per step, heap peak, matmul peak and cost.

use std::time::Instant;

use burn::tensor::{Device, Int, Tensor};
use eft_meter::TimeSummary;
use serde::{Deserialize, Serialize};

/// How runs are priced. TOML section `[meter]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MeterConfig {
    /// Price of the machine in US dollars per hour. Default: a 2-vCPU cloud instance,
    /// [`eft_meter::CPU_USD_PER_HOUR`]; use e.g. [`eft_meter::H100_USD_PER_HOUR`] for a GPU.
    #[serde(default = "cpu_price")]
    pub usd_per_hour: f64,
}

fn cpu_price() -> f64 {
    eft_meter::CPU_USD_PER_HOUR
}

impl MeterConfig {
    /// The price must be a finite number of dollars, 0 or more.
    pub fn validate(&self) -> Result<(), crate::TrainError> {
        if self.usd_per_hour.is_finite() && self.usd_per_hour >= 0.0 {
            return Ok(());
        }
        Err(crate::TrainError::config(
            "meter.usd_per_hour",
            self.usd_per_hour,
            "must be a price in US dollars per hour, 0 or more",
        ))
    }
}

impl Default for MeterConfig {
    fn default() -> Self {
        Self {
            usd_per_hour: cpu_price(),
        }
    }
}

/// FLOPs, time, memory and cost of a run, as `record.json` reports them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MeterRecord {
    /// Analytic FLOPs of all training steps so far (forward + backward).
    pub total_flops: f64,
    /// `total_flops / steps`.
    pub flops_per_step: f64,
    /// FLOPs per step the steps executed: `flops_per_step` less what conditional computation
    /// skipped (tokens a Switch layer dropped or did not route). Equal to it for a dense model;
    /// absent in records written before it was measured.
    #[serde(default)]
    pub executed_flops_per_step: Option<f64>,
    /// Seconds per training step in the last session, warm-up excluded.
    pub step_seconds: Option<TimeSummary>,
    /// `flops_per_step / median step seconds`.
    pub achieved_flops_per_second: Option<f64>,
    /// FLOP/s of a large matrix product on the same device, measured at the session's start.
    pub matmul_peak_flops_per_second: f64,
    /// `achieved / matmul peak`.
    pub fraction_of_peak: Option<f64>,
    /// Most heap bytes in use at once during a training step of the last session (needs the
    /// `eft` binary's tracking allocator; `None` without it).
    pub peak_step_heap_bytes: Option<u64>,
    /// The price used, US dollars per hour.
    pub usd_per_hour: f64,
    /// Wall-clock training time priced at `usd_per_hour`.
    pub cost_usd: f64,
    /// Dollars per million training tokens at the run's tokens/s; `None` when it trained none
    /// (an evaluation-only run).
    #[serde(default)]
    pub usd_per_million_tokens: Option<f64>,
}

/// FLOP/s of an `n × n` by `n × n` matrix product on `device`: the median of three after one
/// warm-up, counting `2·n³` FLOPs; measured once per process, device and size.
///
/// The operands are a fixed ramp, not random: drawing from burn's process-global generator here
/// would interleave with another run's seeded draws and break its reproducibility.
pub fn matmul_peak(device: &Device, n: usize) -> f64 {
    // Once per process and device: an arena trains many runs in one process on one machine.
    static MEASURED: std::sync::Mutex<Vec<(String, usize, f64)>> =
        std::sync::Mutex::new(Vec::new());
    let key = format!("{device:?}");
    let mut measured = MEASURED.lock().unwrap_or_else(|p| p.into_inner());
    if let Some((_, _, flops)) = measured.iter().find(|(d, m, _)| *d == key && *m == n) {
        return *flops;
    }
    let flops = measure_matmul(device, n);
    measured.push((key, n, flops));
    flops
}

fn measure_matmul(device: &Device, n: usize) -> f64 {
    let ramp = || {
        Tensor::<1, Int>::arange(0..(n * n) as i64, device)
            .float()
            .reshape([n, n])
            / (n * n) as f64
    };
    let (a, b) = (ramp(), ramp().transpose());
    let mut times: Vec<f64> = (0..4)
        .map(|_| {
            let started = Instant::now();
            let c = a.clone().matmul(b.clone());
            std::hint::black_box(c.into_data());
            started.elapsed().as_secs_f64()
        })
        .skip(1)
        .collect();
    times.sort_by(f64::total_cmp);
    2.0 * (n as f64).powi(3) / times[1]
}
