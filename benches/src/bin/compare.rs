//! `cargo run --release -p llm-usage-benches --bin compare`
//!
//! One run, every input, every contender side by side: the core fed in 1–16 KiB chunks
//! and in one piece, `serde_json::Value` per event, typed serde per event, and the memchr
//! ceiling. Prints a table of MB/s (10^6 bytes of decoded body per second, medians of
//! several samples) and ratios, then one line per input:
//!
//! ```text
//! INPUT core_mb_s=… core/serde_typed=… core/limit=… allocs_per_event=…
//! ```
//!
//! `allocs_per_event` counts heap allocations while the body is fed (the exchange already
//! created, its heads seen): the steady state. `mem_bytes` is what one exchange holds at
//! its peak: `size_of::<Exchange>()` plus its heap. `COMPARE_SAMPLES` (default 9) and
//! `COMPARE_SAMPLE_MS` (default 15) trade time for stability.

use llm_usage_benches::alloc::Counting;
use llm_usage_benches::baselines::{self, Limit};
use llm_usage_benches::clock::{self, Tick};
use llm_usage_benches::inputs::{self, Input};
use llm_usage_benches::{feed, found, run_core, start, Feed};
use llm_usage_core::Exchange;
use std::hint::black_box;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: Counting = Counting;

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Median nanoseconds per call of `f`.
fn median_ns(mut f: impl FnMut()) -> f64 {
    let samples = env_or("COMPARE_SAMPLES", 9).max(1) as usize;
    let sample = Duration::from_millis(env_or("COMPARE_SAMPLE_MS", 15));
    // Warm up and calibrate: iterations per sample so one sample lasts about `sample`.
    let t = Tick::now();
    f();
    let once = t.elapsed().max(Duration::from_nanos(50));
    let iters = (sample.as_nanos() / once.as_nanos()).clamp(1, 1_000_000) as u32;
    let mut v: Vec<f64> = (0..samples)
        .map(|_| {
            let t = Tick::now();
            for _ in 0..iters {
                f();
            }
            t.elapsed().as_nanos() as f64 / f64::from(iters)
        })
        .collect();
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn mb_s(bytes: usize, ns: f64) -> f64 {
    bytes as f64 * 1e3 / ns
}

struct Row {
    name: &'static str,
    bytes: usize,
    chunks: f64,
    whole: f64,
    value: f64,
    typed: f64,
    limit: f64,
    allocs_per_event: f64,
    mem_bytes: u64,
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".to_owned());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    format!("{cpu}, {cores} cores, {}", std::env::consts::ARCH)
}

fn measure(input: &Input) -> Row {
    let sizes = inputs::chunk_sizes(input.wire.len(), 7);
    let bytes = input.decoded.len();

    // Everyone must read the same figures, or the comparison means nothing.
    let core = found(input, &run_core(input, Feed::Chunks(&sizes)));
    let whole = found(input, &run_core(input, Feed::Whole));
    let typed = baselines::serde_typed(input);
    let value = baselines::serde_value(input);
    assert_eq!(core, whole, "{}: core chunked vs whole", input.name);
    assert_eq!(core, typed, "{}: core vs typed serde", input.name);
    assert_eq!(core, value, "{}: core vs serde Value", input.name);
    assert!(core.model.is_some(), "{}: model found", input.name);

    // Steady-state allocations and memory per exchange.
    Counting::enable();
    let mut ex = start(input);
    let before = Counting::snapshot();
    feed(&mut ex, input, Feed::Chunks(&sizes));
    let after = Counting::snapshot();
    Counting::disable();
    black_box(&ex);
    drop(ex);
    let allocs_per_event = (after.allocs - before.allocs) as f64 / input.events as f64;
    let mem_bytes = std::mem::size_of::<Exchange>() as u64 + after.peak;

    let mut limit = Limit::default();
    Row {
        name: input.name,
        bytes,
        chunks: mb_s(
            bytes,
            median_ns(|| {
                black_box(run_core(black_box(input), Feed::Chunks(&sizes)));
            }),
        ),
        whole: mb_s(
            bytes,
            median_ns(|| {
                black_box(run_core(black_box(input), Feed::Whole));
            }),
        ),
        value: mb_s(
            bytes,
            median_ns(|| {
                black_box(baselines::serde_value(black_box(input)));
            }),
        ),
        typed: mb_s(
            bytes,
            median_ns(|| {
                black_box(baselines::serde_typed(black_box(input)));
            }),
        ),
        limit: mb_s(
            bytes,
            median_ns(|| {
                black_box(limit.run(black_box(input)));
            }),
        ),
        allocs_per_event,
        mem_bytes,
    }
}

fn main() {
    let started = Instant::now();
    println!("machine: {}", machine());
    println!(
        "MB/s = 10^6 decoded body bytes per second of {}, median of {} samples; core fed in 1-16 KiB chunks unless 'whole'",
        clock::name(),
        env_or("COMPARE_SAMPLES", 9)
    );
    println!();
    let rows: Vec<Row> = inputs::all().iter().map(measure).collect();
    println!(
        "{:<14} {:>9} {:>10} {:>10} {:>10} {:>10} {:>10} {:>9} {:>9} {:>9} {:>10} {:>9}",
        "input",
        "bytes",
        "core",
        "core whole",
        "serde Val",
        "serde typ",
        "limit",
        "core/val",
        "core/typ",
        "core/lim",
        "alloc/evt",
        "mem B"
    );
    for r in &rows {
        println!(
            "{:<14} {:>9} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>10.0} {:>8.2}x {:>8.2}x {:>9.3} {:>10.4} {:>9}",
            r.name,
            r.bytes,
            r.chunks,
            r.whole,
            r.value,
            r.typed,
            r.limit,
            r.chunks / r.value,
            r.chunks / r.typed,
            r.chunks / r.limit,
            r.allocs_per_event,
            r.mem_bytes,
        );
    }
    println!();
    println!(
        "exchange: size_of::<Exchange>() = {} bytes; run took {:.1} s",
        std::mem::size_of::<Exchange>(),
        started.elapsed().as_secs_f64()
    );
    println!();
    for r in &rows {
        println!(
            "{} core_mb_s={:.0} core/serde_typed={:.2} core/limit={:.3} allocs_per_event={:.4}",
            r.name,
            r.chunks,
            r.chunks / r.typed,
            r.chunks / r.limit,
            r.allocs_per_event
        );
    }
}
