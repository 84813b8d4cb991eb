//! Which machine a measurement came from, for the captions of tables and charts.

/// The CPU's model name and the logical cores this process may use, e.g. `AMD EPYC, 2 cores`
/// (`unknown CPU` where `/proc/cpuinfo` is not there to ask).
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, name)| name.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    format!("{cpu}, {cores} cores")
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_the_cpu_and_counts_cores() {
        let m = super::machine();
        assert!(m.ends_with(" cores") && !m.starts_with(','), "{m}");
    }
}
