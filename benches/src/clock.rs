//! The clock the benchmarks read: this thread's CPU time where the OS offers it.
//!
//! This machine has two cores and other work (builds, fuzzers) often runs beside the
//! benchmarks; wall-clock samples then measure the scheduler more than the code. The
//! CPU time of the measuring thread (`CLOCK_THREAD_CPUTIME_ID`) only advances while the
//! thread runs, so figures stay comparable under load (caches are still shared: run on
//! a quiet machine for figures to publish). Elsewhere it falls back to `Instant`.

#![allow(unsafe_code)]

use std::time::Duration;

/// A point in time of the benchmark clock.
#[derive(Debug, Clone, Copy)]
pub struct Tick(Duration);

impl Tick {
    /// Now.
    pub fn now() -> Tick {
        Tick(now())
    }

    /// Time since `self`.
    pub fn elapsed(self) -> Duration {
        now().saturating_sub(self.0)
    }
}

/// Which clock [`Tick`] reads.
pub fn name() -> &'static str {
    if cfg!(target_os = "linux") {
        "thread CPU time"
    } else {
        "wall clock"
    }
}

#[cfg(target_os = "linux")]
fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid, writable timespec for the duration of the call, and
    // CLOCK_THREAD_CPUTIME_ID is supported by every Linux since 2.6.12.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    assert_eq!(rc, 0, "clock_gettime");
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

#[cfg(not(target_os = "linux"))]
fn now() -> Duration {
    use std::sync::OnceLock;
    use std::time::Instant;
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed()
}
