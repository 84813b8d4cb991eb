//! Wall-clock per step: warm-up excluded, median and spread.

use serde::{Deserialize, Serialize};

/// Median and spread of the timed steps.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TimeSummary {
    /// Median seconds per step.
    pub median: f64,
    /// 10th percentile.
    pub p10: f64,
    /// 90th percentile.
    pub p90: f64,
    /// Steps timed (after the warm-up).
    pub steps: usize,
}

/// Collects step durations, ignoring the first `warmup` (caches, allocator growth, first-call
/// setup) so the summary describes the steady state.
#[derive(Debug, Clone, Default)]
pub struct StepTimes {
    warmup: usize,
    seen: usize,
    seconds: Vec<f64>,
}

impl StepTimes {
    /// A collector that skips the first `warmup` steps.
    pub fn new(warmup: usize) -> Self {
        Self {
            warmup,
            ..Self::default()
        }
    }

    /// Records one step's duration.
    pub fn add(&mut self, seconds: f64) {
        self.seen += 1;
        if self.seen > self.warmup {
            self.seconds.push(seconds);
        }
    }

    /// Median and 10th/90th percentiles (nearest rank), or `None` before any timed step.
    pub fn summary(&self) -> Option<TimeSummary> {
        if self.seconds.is_empty() {
            return None;
        }
        let mut s = self.seconds.clone();
        s.sort_by(f64::total_cmp);
        let at = |q: f64| s[((q * (s.len() - 1) as f64).round() as usize).min(s.len() - 1)];
        Some(TimeSummary {
            median: at(0.5),
            p10: at(0.1),
            p90: at(0.9),
            steps: s.len(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warm_up_is_skipped_and_percentiles_are_nearest_rank() {
        let mut t = StepTimes::new(2);
        t.add(100.0);
        t.add(50.0);
        assert_eq!(t.summary(), None);
        for s in 1..=11 {
            t.add(s as f64);
        }
        let s = t.summary().unwrap();
        assert_eq!((s.median, s.p10, s.p90, s.steps), (6.0, 2.0, 10.0, 11));
    }
}
