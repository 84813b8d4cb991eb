//! The tracking allocator's accounting on a known allocation pattern. One test in its own binary:
//! the counters are process-wide, and other tests allocating in parallel would move them.

use eft_meter::{
    TrackingAllocator, allocated_bytes, is_tracking, peak_allocated_bytes, reset_peak,
};

#[global_allocator]
static ALLOC: TrackingAllocator = TrackingAllocator;

const MIB: usize = 1 << 20;

#[test]
// The heap allocations are the point: a stack array or a zeroed `vec!` would not exercise the
// allocator paths measured here.
#[allow(clippy::useless_vec, clippy::slow_vector_initialization)]
fn a_known_pattern_gives_the_expected_current_and_peak() {
    let _warm = vec![0u8; 16];
    assert!(is_tracking());
    let base = reset_peak();
    assert_eq!(peak_allocated_bytes(), base);

    // 8 MiB and 4 MiB live together, then the 8 MiB goes, then 2 MiB more.
    let a = vec![1u8; 8 * MIB];
    let b = vec![2u8; 4 * MIB];
    std::hint::black_box((&a, &b));
    drop(a);
    let c = vec![3u8; 2 * MIB];
    std::hint::black_box(&c);

    // Small allocations by the test harness may come and go: allow 64 KiB of noise.
    let near = |x: usize, want: usize| x.abs_diff(want) < 64 * 1024;
    assert!(
        near(peak_allocated_bytes(), base + 12 * MIB),
        "peak {}",
        peak_allocated_bytes()
    );
    assert!(
        near(allocated_bytes(), base + 6 * MIB),
        "now {}",
        allocated_bytes()
    );

    // A reset starts over from what is live; growing a vector in place counts its growth.
    let base = reset_peak();
    let mut v: Vec<u8> = Vec::with_capacity(MIB);
    v.resize(MIB, 0);
    v.reserve_exact(3 * MIB);
    std::hint::black_box(&v);
    assert!(
        near(peak_allocated_bytes(), base + 4 * MIB),
        "peak {}",
        peak_allocated_bytes()
    );
    drop((b, c, v));
    assert!(
        near(allocated_bytes(), base - 6 * MIB),
        "now {}",
        allocated_bytes()
    );
}
