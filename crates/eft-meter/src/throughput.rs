//! Counting work done against wall-clock time that survives a resume.

use std::time::{Duration, Instant};

/// Tokens processed and wall-clock seconds spent, accumulated across sessions of one run.
#[derive(Debug, Clone)]
pub struct Throughput {
    tokens: u64,
    earlier: Duration,
    started: Instant,
}

impl Throughput {
    /// Starts counting, carrying over what earlier sessions of the run did.
    pub fn resume(tokens: u64, earlier_seconds: f64) -> Self {
        Self {
            tokens,
            earlier: Duration::from_secs_f64(earlier_seconds.max(0.0)),
            started: Instant::now(),
        }
    }

    /// Adds processed tokens.
    pub fn add(&mut self, tokens: u64) {
        self.tokens += tokens;
    }

    /// Tokens so far.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// Wall-clock seconds so far, earlier sessions included.
    pub fn seconds(&self) -> f64 {
        (self.earlier + self.started.elapsed()).as_secs_f64()
    }

    /// Tokens per second over the whole run.
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens as f64 / self.seconds().max(1e-9)
    }
}
