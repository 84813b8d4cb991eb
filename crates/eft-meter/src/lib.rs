//! Measurement for eft: peak memory and throughput of a run.
//!
//! Process peak resident memory, live and peak heap bytes (with [`TrackingAllocator`] installed),
//! tokens per second, per-step time statistics and cost at a price per hour. FLOP formulas live
//! beside what they count (mechanisms, the model).
#![warn(missing_docs)]

mod allocator;
mod cost;
mod machine;
mod malloc;
mod memory;
mod throughput;
mod timing;

pub use allocator::{
    TrackingAllocator, allocated_bytes, is_tracking, peak_allocated_bytes, reset_peak,
};
pub use cost::{
    CPU_USD_PER_HOUR, H100_USD_PER_HOUR, H200_USD_PER_HOUR, dollars, dollars_per_million_tokens,
};
pub use machine::machine;
pub use malloc::reuse_freed_memory;
pub use memory::{Shortfall, available_memory_bytes, check_fits, peak_rss_bytes, rss_bytes};
pub use throughput::Throughput;
pub use timing::{StepTimes, TimeSummary};
