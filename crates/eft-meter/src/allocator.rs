//! Live and peak heap bytes, counted by a wrapper around the system allocator.
//!
//! Resident memory (`VmHWM`) never falls and includes allocator slack, so it cannot say what one
//! training step needed. A binary that installs [`TrackingAllocator`] as its global allocator can:
//! [`reset_peak`] before the step, [`peak_allocated_bytes`] after. Without it installed, the
//! counters stay at zero ([`is_tracking`] says which).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
static ACTIVE: AtomicBool = AtomicBool::new(false);

/// The system allocator, counting bytes in use and their high-water mark.
///
/// Install with `#[global_allocator] static ALLOC: TrackingAllocator = TrackingAllocator;`.
#[derive(Debug, Default, Clone, Copy)]
pub struct TrackingAllocator;

fn grew(bytes: usize) {
    let now = CURRENT.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(now, Ordering::Relaxed);
}

fn shrank(bytes: usize) {
    CURRENT.fetch_sub(bytes, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; the counters only observe sizes.
unsafe impl GlobalAlloc for TrackingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            ACTIVE.store(true, Ordering::Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            ACTIVE.store(true, Ordering::Relaxed);
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: same contract as the caller's.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Whether a [`TrackingAllocator`] is installed and has seen an allocation.
pub fn is_tracking() -> bool {
    ACTIVE.load(Ordering::Relaxed)
}

/// Heap bytes in use now.
pub fn allocated_bytes() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

/// The most heap bytes in use at once since the last [`reset_peak`] (or the start).
pub fn peak_allocated_bytes() -> usize {
    PEAK.load(Ordering::Relaxed)
}

/// Starts a new high-water mark at the bytes in use now, and returns that baseline.
pub fn reset_peak() -> usize {
    let now = CURRENT.load(Ordering::Relaxed);
    PEAK.store(now, Ordering::Relaxed);
    now
}
