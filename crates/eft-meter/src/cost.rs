//! Money: what a run costs at a price per hour of the machine it ran on.

/// Default price of this project's CPU machine, in US dollars per hour: an on-demand 2-vCPU,
/// 8–16 GiB cloud instance (about $0.08–0.10 on the large providers in 2026).
pub const CPU_USD_PER_HOUR: f64 = 0.10;
/// Default price of one H100 GPU hour (on-demand, single GPU; about $2–4 in 2026).
pub const H100_USD_PER_HOUR: f64 = 2.50;
/// Default price of one H200 GPU hour (on-demand, single GPU; about $3–5 in 2026).
pub const H200_USD_PER_HOUR: f64 = 3.50;

/// Dollars for `seconds` of a machine priced at `usd_per_hour`.
pub fn dollars(seconds: f64, usd_per_hour: f64) -> f64 {
    seconds / 3600.0 * usd_per_hour
}

/// Dollars per million tokens processed at `tokens_per_second`; infinite when nothing ran.
pub fn dollars_per_million_tokens(tokens_per_second: f64, usd_per_hour: f64) -> f64 {
    if tokens_per_second <= 0.0 {
        return f64::INFINITY;
    }
    dollars(1e6 / tokens_per_second, usd_per_hour)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_hour_costs_the_hourly_price() {
        assert_eq!(dollars(3600.0, 2.5), 2.5);
        // 1,000 tokens/s → 1M tokens in 1,000 s.
        assert!((dollars_per_million_tokens(1000.0, 3.6) - 1.0).abs() < 1e-12);
        assert!(dollars_per_million_tokens(0.0, 1.0).is_infinite());
    }
}
