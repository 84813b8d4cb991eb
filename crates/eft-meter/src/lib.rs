//! Measurement for eft: peak memory and throughput of a run.
//!
//! Issue-level scope so far: process peak resident memory and a tokens-per-second counter. FLOP
//! accounting and cost tables build on these.
#![warn(missing_docs)]

mod allocator;
mod memory;
mod throughput;

pub use allocator::{
    TrackingAllocator, allocated_bytes, is_tracking, peak_allocated_bytes, reset_peak,
};
pub use memory::{peak_rss_bytes, rss_bytes};
pub use throughput::Throughput;
