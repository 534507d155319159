//! The wasm filter's cost per exchange, against a no-op filter, in the proxy-wasm host.
//!
//! ```text
//! cargo build --release -p llm-usage-wasm --target wasm32-wasip1
//! cargo run --release -p llm-usage-benches --features wasm --bin wasm_cost
//! ```
//!
//! Both modules run in `llm-usage-wasm-host` (the wasmi interpreter, Envoy's callback
//! order) over the same exchanges, fed in the same 1–16 KiB chunks. The no-op filter
//! (WAT below) does what any body-observing filter must: on each body callback it copies
//! the chunk into its memory with `proxy_get_buffer_bytes`, and returns `Continue`. The
//! ratio `filter/noop` is the price of parsing on top of merely seeing the bytes.
//! Every exchange is a new stream context: `proxy_on_context_create` at its first
//! callback, `proxy_on_done`, `proxy_on_log` and `proxy_on_delete` at its end, as Envoy
//! calls them, so the small inputs' figures include what a context costs to create.
//!
//! With `--features wasm-jit` the same runs again on wasmtime (Cranelift), as Envoy can
//! run it.
//!
//! The filter is found through `LLM_USAGE_WASM`, else
//! `$CARGO_TARGET_DIR` (or `target`)`/wasm32-wasip1/release/llm_usage_wasm.wasm`.
//! `WASM_COST_ENGINES` and `WASM_COST_INPUTS` (comma-separated names) run only those
//! engines and inputs, as when profiling one of them. `WASM_COST_SPLIT=1` also prints,
//! per input, the CPU time of each callback of an exchange (filter and no-op, timed one
//! callback at a time over many exchanges: the split, not the total, is what it is for)
//! and the filter's host calls per exchange.

use llm_usage_benches::clock::Tick;
use llm_usage_benches::inputs::{self, Input, Side};
use llm_usage_wasm_host::{EngineKind, Host, HostOptions, Vm};
use std::path::PathBuf;
use std::time::Duration;

/// A filter that reads every body chunk and does nothing else.
const NOOP_WAT: &str = r#"
(module
  (import "env" "proxy_get_buffer_bytes"
    (func $get_buffer_bytes (param i32 i32 i32 i32 i32) (result i32)))
  ;; 2.5 MiB: room for any chunk at 64 KiB.
  (memory (export "memory") 40)
  (func (export "proxy_abi_version_0_2_1"))
  ;; One buffer at a time is ever live: every allocation reuses the same region.
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 65536))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func (export "proxy_on_response_headers") (param i32 i32 i32) (result i32) (i32.const 0))
  (func $read (param $type i32) (param $size i32)
    (drop (call $get_buffer_bytes
      (local.get $type) (i32.const 0) (local.get $size) (i32.const 0) (i32.const 4))))
  (func (export "proxy_on_request_body") (param i32 i32 i32) (result i32)
    (call $read (i32.const 0) (local.get 1))
    (i32.const 0))
  (func (export "proxy_on_response_body") (param i32 i32 i32) (result i32)
    (call $read (i32.const 1) (local.get 1))
    (i32.const 0))
  (func (export "proxy_on_log") (param i32))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))
"#;

const REQUEST: &[u8] = br#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello."}]}"#;

fn filter_path() -> PathBuf {
    if let Some(p) = std::env::var_os("LLM_USAGE_WASM") {
        return p.into();
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|d| if d.is_absolute() { d } else { root.join(d) })
        .unwrap_or_else(|| root.join("target"));
    target.join("wasm32-wasip1/release/llm_usage_wasm.wasm")
}

/// Whether `name` is selected by the comma-separated list in the variable `var` (all
/// names are when it is unset).
fn selected(var: &str, name: &str) -> bool {
    std::env::var(var).map_or(true, |list| list.split(',').any(|n| n.trim() == name))
}

fn authority(input: &Input) -> &'static str {
    if input.path == "/v1/messages" {
        "api.anthropic.com"
    } else {
        "api.openai.com"
    }
}

/// The callbacks of an exchange as [`split`] times them.
const PHASES: [&str; 5] = [
    "request headers (context created)",
    "request body",
    "response headers",
    "response body",
    "log, done, delete",
];

/// Runs `f`, adding its CPU time to `split[phase]` when timing.
fn timed<R>(split: &mut Option<&mut [Duration; 5]>, phase: usize, f: impl FnOnce() -> R) -> R {
    match split {
        Some(times) => {
            let t = Tick::now();
            let r = f();
            times[phase] += t.elapsed();
            r
        }
        None => f(),
    }
}

/// One exchange through a VM, Envoy-style; the body under test in `sizes` chunks.
fn exchange(vm: &mut Vm, input: &Input, sizes: &[usize]) {
    exchange_timed(vm, input, sizes, None);
}

/// [`exchange`], each callback's CPU time added to `split` (by [`PHASES`]) if given.
fn exchange_timed(
    vm: &mut Vm,
    input: &Input,
    sizes: &[usize],
    mut split: Option<&mut [Duration; 5]>,
) {
    let id = vm.new_stream();
    let mut req = vec![
        (":method", "POST"),
        (":path", input.path),
        (":authority", authority(input)),
    ];
    req.extend(input.request_headers.iter().copied());
    let mut resp = vec![(":status", "200")];
    resp.extend(input.response_headers.iter().copied());
    let body = |vm: &mut Vm, request: bool, split: &mut Option<&mut [Duration; 5]>| {
        let mut at = 0;
        for (k, &n) in sizes.iter().enumerate() {
            let chunk = &input.wire[at..at + n];
            let eos = k + 1 == sizes.len();
            let r = if request {
                timed(split, 1, || vm.request_body(id, chunk, eos))
            } else {
                timed(split, 3, || vm.response_body(id, chunk, eos))
            };
            r.expect("body callback");
            at += n;
        }
    };
    timed(&mut split, 0, || vm.request_headers(id, &req, false)).expect("request headers");
    match input.side {
        Side::Request => body(vm, true, &mut split),
        Side::Response => {
            timed(&mut split, 1, || vm.request_body(id, REQUEST, true)).expect("request body");
        }
    }
    timed(&mut split, 2, || {
        vm.response_headers(id, &resp, input.side == Side::Request)
    })
    .expect("response headers");
    if input.side == Side::Response {
        body(vm, false, &mut split);
    }
    timed(&mut split, 4, || vm.complete(id)).expect("complete");
}

/// The host functions whose calls [`split`] counts.
const HOST_CALLS: [&str; 10] = [
    "proxy_get_header_map_pairs",
    "proxy_get_buffer_bytes",
    "proxy_get_property",
    "proxy_set_property",
    "proxy_get_current_time_nanoseconds",
    "proxy_define_metric",
    "proxy_increment_metric",
    "proxy_record_metric",
    "proxy_get_shared_data",
    "proxy_log",
];

/// Prints each callback's CPU time per exchange, filter and no-op (alternating blocks of
/// exchanges), and the filter's host calls per exchange.
fn split(filter: &mut Vm, noop: &mut Vm, input: &Input, sizes: &[usize], iters: u32) {
    let (mut f, mut n) = ([Duration::ZERO; 5], [Duration::ZERO; 5]);
    let before: Vec<u64> = HOST_CALLS.iter().map(|c| filter.calls(c)).collect();
    let rounds = 10;
    for _ in 0..rounds {
        for _ in 0..iters {
            exchange_timed(filter, input, sizes, Some(&mut f));
        }
        for _ in 0..iters {
            exchange_timed(noop, input, sizes, Some(&mut n));
        }
    }
    let total = f64::from(iters * rounds);
    let us = |d: Duration| d.as_secs_f64() * 1e6 / total;
    for (k, phase) in PHASES.iter().enumerate() {
        println!(
            "  {phase:<36} filter {:>8.2} µs   no-op {:>8.2} µs",
            us(f[k]),
            us(n[k])
        );
    }
    let calls: Vec<String> = HOST_CALLS
        .iter()
        .zip(before)
        .filter_map(|(c, b)| {
            let per = (filter.calls(c) - b) as f64 / total;
            (per > 0.0).then(|| format!("{} {per:.1}", c.trim_start_matches("proxy_")))
        })
        .collect();
    println!("  filter host calls per exchange: {}", calls.join(", "));
}

/// Samples per measurement.
const SAMPLES: usize = 15;

/// How many exchanges one ~40 ms sample runs.
fn iterations(vm: &mut Vm, input: &Input, sizes: &[usize]) -> u32 {
    exchange(vm, input, sizes);
    let t = Tick::now();
    exchange(vm, input, sizes);
    let once = t.elapsed().max(Duration::from_micros(1));
    (Duration::from_millis(40).as_nanos() / once.as_nanos()).clamp(1, 10_000) as u32
}

/// CPU time of one exchange, averaged over one sample.
fn sample(vm: &mut Vm, input: &Input, sizes: &[usize], iters: u32) -> Duration {
    let t = Tick::now();
    for _ in 0..iters {
        exchange(vm, input, sizes);
    }
    t.elapsed() / iters
}

/// Median CPU time of one exchange of the filter and of the no-op, their samples taken
/// in turn, so that a burst of noise on this shared machine lands on both alike.
fn per_exchange(
    filter: &mut Vm,
    noop: &mut Vm,
    input: &Input,
    sizes: &[usize],
) -> (Duration, Duration) {
    let (fi, ni) = (
        iterations(filter, input, sizes),
        iterations(noop, input, sizes),
    );
    let (mut f, mut n) = (Vec::new(), Vec::new());
    for _ in 0..SAMPLES {
        f.push(sample(filter, input, sizes, fi));
        n.push(sample(noop, input, sizes, ni));
    }
    f.sort();
    n.sort();
    (f[SAMPLES / 2], n[SAMPLES / 2])
}

fn main() {
    let path = filter_path();
    let wasm = std::fs::read(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e}\nbuild it first: cargo build --release -p llm-usage-wasm --target wasm32-wasip1",
            path.display()
        )
    });
    let noop = wat::parse_str(NOOP_WAT).expect("the no-op module assembles");
    println!(
        "filter: {} ({} bytes = {:.0} KiB); CPU time per exchange, median of {SAMPLES} \
         (filter and no-op samples taken in turn)",
        path.display(),
        wasm.len(),
        wasm.len() as f64 / 1024.0
    );
    let engines = [
        Some((EngineKind::Wasmi, "wasmi")),
        #[cfg(feature = "wasm-jit")]
        Some((EngineKind::Wasmtime, "wasmtime")),
    ];
    let mut lines = Vec::new();
    for (kind, engine) in engines.into_iter().flatten() {
        if !selected("WASM_COST_ENGINES", engine) {
            continue;
        }
        run(&wasm, &noop, kind, engine, &mut lines);
    }
    println!();
    for l in lines {
        println!("{l}");
    }
    println!("wasm_bytes={}", wasm.len());
}

/// The host as Envoy runs a filter: nothing kept of the bytes passed on.
fn bench_options() -> HostOptions {
    let mut options = HostOptions::with_config("");
    options.keep_forwarded = false;
    options
}

fn run(wasm: &[u8], noop: &[u8], kind: EngineKind, engine: &str, lines: &mut Vec<String>) {
    let filter_host = Host::with_engine(wasm, kind).expect("the filter loads");
    let noop_host = Host::with_engine(noop, kind).expect("the no-op module loads");
    let mut filter = filter_host
        .start(bench_options())
        .expect("the filter starts");
    let mut noop = noop_host.start(bench_options()).expect("the no-op starts");
    println!();
    println!(
        "{:<14} {:>9} {:>12} {:>12} {:>12} {:>10}",
        engine, "bytes", "filter µs", "no-op µs", "added µs", "filter/noop"
    );
    for input in inputs::all() {
        if !selected("WASM_COST_INPUTS", input.name) {
            continue;
        }
        let sizes = inputs::chunk_sizes(input.wire.len(), 7);
        let (f, n) = per_exchange(&mut filter, &mut noop, &input, &sizes);
        assert!(
            filter.failure().is_none(),
            "filter failed: {:?}",
            filter.failure()
        );
        let ratio = f.as_secs_f64() / n.as_secs_f64();
        let split_iters = (Duration::from_millis(40).as_nanos() / f.as_nanos().max(1)) as u32;
        println!(
            "{:<14} {:>9} {:>12.0} {:>12.0} {:>12.0} {:>10.2}x",
            input.name,
            input.wire.len(),
            f.as_secs_f64() * 1e6,
            n.as_secs_f64() * 1e6,
            (f.as_secs_f64() - n.as_secs_f64()) * 1e6,
            ratio
        );
        if std::env::var_os("WASM_COST_SPLIT").is_some_and(|v| v == "1") {
            split(&mut filter, &mut noop, &input, &sizes, split_iters.max(1));
        }
        lines.push(format!(
            "{} engine={engine} wasm_filter_us={:.0} wasm_noop_us={:.0} filter/noop={:.2}",
            input.name,
            f.as_secs_f64() * 1e6,
            n.as_secs_f64() * 1e6,
            ratio
        ));
    }
}
