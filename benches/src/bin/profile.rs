//! Runs the core alone over one input in a loop, for a profiler:
//! `perf record -g target/release/profile openai_sse 5` (five seconds).
//!
//! For instruction counts, `PROFILE_RUNS=N` runs exactly `N` exchanges instead (`0`: only
//! the inputs are built): under `valgrind --tool=callgrind`, the difference between the
//! totals of `N` and `0` runs, divided by `N`, is the exact instruction count of one
//! exchange, whatever else the machine runs.
//!
//! `PROFILE_CONTENDER=limit` runs the ceiling of `compare` (for a gzip input: inflating into
//! one buffer as large as the body, then counting newlines) instead of the core, so that
//! both sides of a ratio can be profiled the same way.
//!
//! `PROFILE_STOP` stops each exchange after one phase, for a breakdown by differences:
//! `new` (the exchange created and dropped), `request_head`, `response_head` (the request
//! side ended too), `body` (every chunk fed, the end seen); unset: through `finish`.

use llm_usage_benches::baselines::Limit;
use llm_usage_benches::inputs::{Input, Side};
use llm_usage_benches::{feed, inputs, run_core, Feed};
use llm_usage_core::Exchange;
use std::hint::black_box;
use std::time::{Duration, Instant};

fn main() {
    let mut args = std::env::args().skip(1);
    let name = args.next().unwrap_or_else(|| "openai_sse".to_owned());
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(5.0);
    let input = inputs::all()
        .into_iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no input {name}"));
    let sizes = inputs::chunk_sizes(input.wire.len(), 7);
    let fixed: Option<u64> = std::env::var("PROFILE_RUNS")
        .ok()
        .and_then(|n| n.parse().ok());
    let limit = std::env::var("PROFILE_CONTENDER").is_ok_and(|c| c == "limit");
    let mut ceiling = Limit::default();
    let stop = std::env::var("PROFILE_STOP").ok();
    let until = Instant::now() + Duration::from_secs_f64(secs);
    let mut runs = 0u64;
    let t = Instant::now();
    while fixed.map_or(Instant::now() < until, |n| runs < n) {
        if limit {
            black_box(ceiling.run(black_box(&input)));
        } else {
            match stop.as_deref() {
                None | Some("") => {
                    black_box(run_core(black_box(&input), Feed::Chunks(&sizes)));
                }
                Some(phase) => up_to(phase, black_box(&input), &sizes),
            }
        }
        runs += 1;
    }
    let mb_s = (input.decoded.len() as u64 * runs) as f64 / t.elapsed().as_secs_f64() / 1e6;
    println!("{name}: {runs} runs, {mb_s:.0} MB/s");
}

/// One exchange through `phase` (see the module docs), then dropped.
fn up_to(phase: &str, input: &Input, sizes: &[usize]) {
    let mut ex = black_box(Exchange::new());
    if phase != "new" {
        ex.on_request_head("POST", input.path, input.request_headers.iter().copied());
    }
    if phase != "new" && phase != "request_head" && input.side == Side::Response {
        ex.on_request_end();
        ex.on_response_head(200, input.response_headers.iter().copied());
    }
    if phase == "body" {
        feed(&mut ex, input, Feed::Chunks(sizes));
        match input.side {
            Side::Request => ex.on_request_end(),
            Side::Response => ex.on_response_end(),
        }
    }
    black_box(&mut ex);
}
