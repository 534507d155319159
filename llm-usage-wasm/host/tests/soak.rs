//! Soak: 10,000 exchanges through one VM of the real release filter, with no growth of
//! its linear memory after warm-up; and what happens when the filter cannot get memory.
//!
//! The host exposes no memory size, so the test caps it instead: the module's memory
//! section is rewritten with a maximum, and `memory.grow` beyond it fails (the filter then
//! traps on allocation failure). The smallest cap under which a warm-up pass of every
//! exchange shape runs clean is found first; 10,000 exchanges must then run clean in one
//! VM under that same cap. Since linear memory never shrinks, this proves the peak after
//! warm-up is the warm-up's peak: no per-exchange leak, no growth with traffic.

mod common;

use common::{fixtures, wasm_path};
use llm_usage_wasm_host::replay::{self, check_expect, Delivery, Exchange};
use llm_usage_wasm_host::{Host, HostError, HostOptions, Vm};

const SOAK: usize = 10_000;

// ---------------------------------------------------------------------------------------
// Rewriting the module's memory limits

fn leb(bytes: &[u8], at: &mut usize) -> u32 {
    let mut v = 0u32;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        v |= u32::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return v;
        }
        shift += 7;
    }
}

fn put_leb(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

/// The module with its (single, defined) memory's maximum set to `max_pages`, and the
/// memory's initial size in pages.
fn cap_memory(wasm: &[u8], max_pages: Option<u32>) -> (Vec<u8>, u32) {
    assert_eq!(&wasm[..4], b"\0asm");
    let mut out = wasm[..8].to_vec();
    let mut at = 8;
    let mut initial = None;
    while at < wasm.len() {
        let id = wasm[at];
        at += 1;
        let size = leb(wasm, &mut at) as usize;
        let payload = &wasm[at..at + size];
        at += size;
        if id != 5 {
            out.push(id);
            put_leb(&mut out, size as u32);
            out.extend_from_slice(payload);
            continue;
        }
        let mut p = 0;
        let count = leb(payload, &mut p);
        assert_eq!(count, 1, "one memory");
        let flags = payload[p];
        p += 1;
        assert!(flags <= 1, "a 32-bit, unshared memory (flags {flags})");
        let min = leb(payload, &mut p);
        if flags == 1 {
            let _old_max = leb(payload, &mut p);
        }
        initial = Some(min);
        let mut section = Vec::new();
        put_leb(&mut section, 1);
        match max_pages {
            Some(max) => {
                section.push(1);
                put_leb(&mut section, min);
                put_leb(&mut section, max.max(min));
            }
            None => {
                section.push(0);
                put_leb(&mut section, min);
            }
        }
        out.push(5);
        put_leb(&mut out, section.len() as u32);
        out.extend_from_slice(&section);
    }
    (out, initial.expect("the module defines its memory"))
}

fn vm_with_cap(wasm: &[u8], max_pages: Option<u32>) -> Vm {
    let (module, _) = cap_memory(wasm, max_pages);
    let host = Host::new(&module).expect("the capped module loads");
    host.start(
        HostOptions::with_config("")
            .node_metadata("WORKLOAD_NAME", "sleep")
            .node_metadata("NAMESPACE", "default"),
    )
    .expect("the VM starts")
}

// ---------------------------------------------------------------------------------------
// The traffic

/// Every fixture small enough to replay ten thousand times, plus hostile exchanges.
fn exchanges() -> Vec<Exchange> {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures())
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.join("case.json").is_file())
        .collect();
    dirs.sort();
    let mut all: Vec<Exchange> = dirs
        .iter()
        .map(|d| replay::load_case(d, "api.example.com").unwrap())
        .filter(|e| e.request_body.len() + e.response_body.len() <= 16 * 1024)
        .collect();
    assert!(all.len() >= 40, "fixtures: {}", all.len());

    let sse = |name: &str, body: Vec<u8>| Exchange {
        name: name.into(),
        method: "POST".into(),
        path: "/v1/chat/completions".into(),
        authority: "api.openai.com".into(),
        request_headers: vec![("content-type".into(), "application/json".into())],
        request_body: br#"{"model":"gpt-4o","stream":true}"#.to_vec(),
        status: 200,
        response_headers: vec![("content-type".into(), "text/event-stream".into())],
        response_body: body,
        expect: None,
    };
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let noise: Vec<u8> = (0..32 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    all.push(sse("hostile-noise", noise.clone()));
    let mut deep = b"data: {\"x\":".to_vec();
    deep.extend(b"[".repeat(20_000));
    deep.extend(b"]".repeat(20_000));
    deep.extend(b",\"usage\":{\"prompt_tokens\":1}}\n\n");
    all.push(sse("hostile-deep", deep));
    let mut long_model = b"data: {\"model\":\"".to_vec();
    long_model.extend(b"m".repeat(8 * 1024));
    long_model.extend(b"\"}\n\n");
    all.push(sse("hostile-long-model", long_model));
    let mut unterminated = b"data: {\"usage\":{\"prompt_tokens\":9},\"x\":\"".to_vec();
    unterminated.extend(b"z".repeat(16 * 1024));
    all.push(sse("hostile-unterminated", unterminated));
    let mut gz = sse("hostile-bad-gzip", noise);
    gz.response_headers
        .push(("content-encoding".into(), "gzip".into()));
    all.push(gz);
    all
}

/// How exchange `i` is delivered: chunk sizes, ends by trailers, empty final chunks,
/// resets (a cut upstream).
fn delivery(i: usize) -> Delivery {
    Delivery {
        chunk_size: [1460, 97, 512, 16 * 1024, 64][i % 5],
        jitter: !i.is_multiple_of(3),
        seed: i as u64,
        empty_final_chunk: i % 7 == 1,
        response_trailers: i % 11 == 2,
        reset: i % 13 == 3,
        upstream_ms: 50,
        chunk_interval_ms: 5,
    }
}

/// Replays `n` exchanges (cycling through the set) in `vm`; the first error stops it.
fn run(vm: &mut Vm, set: &[Exchange], n: usize, check: bool) -> Result<(), String> {
    for i in 0..n {
        let ex = &set[i % set.len()];
        let d = delivery(i);
        let out = replay::run(vm, ex, &d).map_err(|e| format!("{} (#{i}): {e}", ex.name))?;
        if !check {
            continue;
        }
        if !out.all_continue || !out.forwarded_unchanged {
            return Err(format!("{} (#{i}): traffic held or changed", ex.name));
        }
        if let (Some(expect), false) = (&ex.expect, d.reset) {
            let bad = check_expect(&out.filter_state, expect, "asm.llmproxy");
            if !bad.is_empty() {
                return Err(format!("{} (#{i}): {}", ex.name, bad.join("; ")));
            }
        }
    }
    Ok(())
}

#[test]
#[cfg_attr(
    debug_assertions,
    ignore = "10,000 exchanges through wasmi take minutes unoptimised: cargo test --release -p llm-usage-wasm-host --test soak"
)]
fn ten_thousand_exchanges_in_one_vm_without_memory_growth() {
    let wasm = std::fs::read(wasm_path()).unwrap();
    let set = exchanges();
    let (_, initial) = cap_memory(&wasm, None);
    // Warm-up: every exchange, with every chunk size and end of stream.
    let warm = set.len() * 10;
    let fits = |cap: u32| run(&mut vm_with_cap(&wasm, Some(cap)), &set, warm, false).is_ok();
    let mut hi = initial + 1;
    while !fits(hi) {
        hi = initial + (hi - initial) * 2;
        assert!(hi < initial + 4096, "the warm-up needs more than 256 MiB");
    }
    let mut lo = initial; // may or may not fit
    while lo < hi {
        let mid = (lo + hi) / 2;
        if fits(mid) {
            hi = mid;
        } else {
            lo = mid + 1;
        }
    }
    let cap = hi;
    println!(
        "linear memory: {initial} pages initially, {cap} pages ({} KiB) after warm-up of {warm} exchanges",
        cap * 64
    );

    // The soak: the warm-up again, then 10,000 exchanges, in one VM held to that size.
    let mut vm = vm_with_cap(&wasm, Some(cap));
    run(&mut vm, &set, warm, true).unwrap();
    run(&mut vm, &set, SOAK, true).unwrap_or_else(|e| {
        panic!(
            "after warm-up, exchanges needed more than {cap} pages of linear memory or failed: {e}"
        )
    });
    assert!(vm.failure().is_none(), "{:?}", vm.failure());
    println!("{SOAK} exchanges, no growth");
}

#[test]
fn a_filter_out_of_memory_traps_and_the_vm_is_marked_failed() {
    // With no room to grow at all, the filter cannot allocate: the call traps (Rust's
    // allocation-failure abort), the host marks the VM failed, and every later callback
    // reports the failure instead of running: Envoy then applies the plugin's failure
    // policy (fail open: the stream continues without the filter).
    let wasm = std::fs::read(wasm_path()).unwrap();
    let (_, initial) = cap_memory(&wasm, None);
    let set = exchanges();
    let module = cap_memory(&wasm, Some(initial)).0;
    let host = Host::new(&module).unwrap();
    let started = host.start(HostOptions::with_config("").node_metadata("WORKLOAD_NAME", "sleep"));
    let mut vm = match started {
        Ok(vm) => vm,
        // Failing already at start (plugin configuration) is the same failure, earlier.
        Err(e) => {
            println!("VM failed at start: {e}");
            return;
        }
    };
    let mut first = None;
    for i in 0..set.len() * 4 {
        if let Err(e) = replay::run(&mut vm, &set[i % set.len()], &delivery(i)) {
            first = Some(e);
            break;
        }
    }
    let Some(e) = first else {
        // The filter fit in its initial memory: nothing to show.
        return;
    };
    println!("first failure: {e}");
    assert!(matches!(e, HostError::Trap(_)), "{e}");
    assert!(vm.failure().is_some());
    let again = replay::run(&mut vm, &set[0], &Delivery::default());
    assert!(matches!(again, Err(HostError::VmFailed(_))), "{again:?}");
}
