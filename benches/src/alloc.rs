//! A counting global allocator: allocations, and live / peak heap bytes.
//!
//! A binary installs it with `#[global_allocator] static A: Counting = Counting;`.
//! Counting is off until [`Counting::enable`], so timed runs pay one relaxed load per
//! allocation and nothing else.
//!
//! Implementing `GlobalAlloc` is `unsafe` by definition; this module only forwards to
//! the system allocator, so the crate keeps `#![forbid(unsafe_code)]` everywhere else and
//! allows it here alone.

#![allow(unsafe_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

static ON: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicU64 = AtomicU64::new(0);
static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);

/// The counting allocator.
#[derive(Debug, Clone, Copy)]
pub struct Counting;

/// Counters at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Allocations (including reallocations) since counting was enabled.
    pub allocs: u64,
    /// Bytes live, counted from when counting was enabled (frees of older blocks may make
    /// this wrap below zero, so compare snapshots only within one counted region).
    pub live: u64,
    /// Highest `live` since the last [`Counting::reset_peak`].
    pub peak: u64,
}

impl Counting {
    /// Starts counting from zero.
    pub fn enable() {
        ALLOCS.store(0, Relaxed);
        LIVE.store(0, Relaxed);
        PEAK.store(0, Relaxed);
        ON.store(true, Relaxed);
    }

    /// Stops counting.
    pub fn disable() {
        ON.store(false, Relaxed);
    }

    /// The counters now.
    pub fn snapshot() -> Snapshot {
        Snapshot {
            allocs: ALLOCS.load(Relaxed),
            live: LIVE.load(Relaxed),
            peak: PEAK.load(Relaxed),
        }
    }

    /// Sets the peak to the current live bytes.
    pub fn reset_peak() {
        PEAK.store(LIVE.load(Relaxed), Relaxed);
    }
}

fn on_alloc(size: usize) {
    if ON.load(Relaxed) {
        ALLOCS.fetch_add(1, Relaxed);
        let live = LIVE
            .fetch_add(size as u64, Relaxed)
            .wrapping_add(size as u64);
        PEAK.fetch_max(live, Relaxed);
    }
}

fn on_free(size: usize) {
    if ON.load(Relaxed) {
        LIVE.fetch_sub(size as u64, Relaxed);
    }
}

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so
// `System`'s guarantees are ours; the counters are plain atomics and never touch memory.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        on_alloc(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        on_free(layout.size());
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        on_free(layout.size());
        on_alloc(new_size);
        // SAFETY: forwarded unchanged (see above).
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}
