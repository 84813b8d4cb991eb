//! Peak resident memory of this process, as the kernel counts it.
//!
//! Read from `/proc` by hand: `sysinfo` has no peak RSS (`VmHWM`), and `procfs` would bring a
//! dozen crates for three one-line fields.

/// The process's peak resident set size in bytes (`VmHWM`), or `None` where the platform does
/// not report it (anything but Linux).
///
/// This counts everything the process touched: tensors, allocator slack, code and data. It is an
/// upper bound on what the model needed, which is what a user sizing a machine wants.
pub fn peak_rss_bytes() -> Option<u64> {
    status_bytes("VmHWM:")
}

/// The process's current resident set size in bytes (`VmRSS`), or `None` off Linux.
pub fn rss_bytes() -> Option<u64> {
    status_bytes("VmRSS:")
}

/// Memory the kernel says can be given to programs without swapping (`MemAvailable`), or
/// `None` off Linux.
pub fn available_memory_bytes() -> Option<u64> {
    parse_field(
        &std::fs::read_to_string("/proc/meminfo").ok()?,
        "MemAvailable:",
    )
}

/// A request that does not fit in the memory available: what it needs and what there is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Shortfall {
    /// Bytes the request needs.
    pub needed: f64,
    /// Bytes available ([`available_memory_bytes`]).
    pub available: u64,
}

/// Whether `needed` bytes fit in the memory available now; always where that is unknown. Every
/// guard that refuses a shape or a run before allocating (`eft attn`, `eft profile`, training)
/// asks this.
pub fn check_fits(needed: f64) -> Result<(), Shortfall> {
    match available_memory_bytes() {
        Some(available) if needed > available as f64 => Err(Shortfall { needed, available }),
        _ => Ok(()),
    }
}

fn status_bytes(field: &str) -> Option<u64> {
    parse_field(&std::fs::read_to_string("/proc/self/status").ok()?, field)
}

fn parse_field(status: &str, field: &str) -> Option<u64> {
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_kernel_line() {
        let status = "Name:\teft\nVmPeak:\t  9000 kB\nVmHWM:\t    1234 kB\nVmRSS:\t 1000 kB\n";
        assert_eq!(parse_field(status, "VmHWM:"), Some(1234 * 1024));
        assert_eq!(parse_field(status, "VmRSS:"), Some(1000 * 1024));
        assert_eq!(parse_field("Name: x\n", "VmHWM:"), None);
        let meminfo = "MemTotal:       24683892 kB\nMemAvailable:   23012345 kB\n";
        assert_eq!(parse_field(meminfo, "MemAvailable:"), Some(23012345 * 1024));
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn grows_when_memory_is_touched() {
        let before = peak_rss_bytes().unwrap();
        let block = vec![1u8; 64 << 20];
        std::hint::black_box(&block);
        let after = peak_rss_bytes().unwrap();
        assert!(after >= before + (32 << 20), "{before} → {after}");
    }
}
