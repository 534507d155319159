//! Hostile input: what an attacker (or a broken upstream) can send through the filter.
//!
//! Every case is streamed in 64 KiB chunks from a generator (the test never holds the
//! body), and each one checks:
//!
//! * no panic;
//! * bounded memory: a counting global allocator measures the peak heap growth from
//!   creating the [`Exchange`] to taking its record, which must stay under the bound that
//!   `fuzz/LIMITS.md` states ([`PLAIN_BOUND`], [`COMPRESSED_BOUND`] with gzip/deflate,
//!   [`ZSTD_BOUND`] and [`BROTLI_BOUND`]);
//! * the record: unknown where the input does not carry a valid figure, known figures
//!   right, `complete` only when the body ended cleanly;
//! * time linear in the input: a few cases run at two sizes, and the work the exchange
//!   counted ([`Work`]: bytes each stage handled, scanner steps) per byte of input must
//!   not grow with the size. No test here reads the clock: counts are the same on a
//!   loaded machine; speed is measured in `benches/`.
//!
//! Limits and guarantees are described in `fuzz/LIMITS.md`.

use llm_usage_core::{encode_event_stream_message, limits, Exchange, Options, UsageRecord, Work};
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// One case at a time, so the counters mean something.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Only the thread running a case is counted (not, say, another test's panic report).
    static TRACKED: Cell<bool> = const { Cell::new(false) };
}

fn tracked() -> bool {
    TRACKED.try_with(Cell::get).unwrap_or(false)
}

fn grow(by: usize) {
    if tracked() {
        let now = LIVE.fetch_add(by, SeqCst) + by;
        PEAK.fetch_max(now, SeqCst);
    }
}

fn shrink(by: usize) {
    if tracked() {
        LIVE.fetch_sub(by, SeqCst);
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        grow(l.size());
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        shrink(l.size());
        // SAFETY: `p` was allocated by `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        if new > l.size() {
            grow(new - l.size());
        } else {
            shrink(l.size() - new);
        }
        // SAFETY: forwarding to the allocator that allocated `p`.
        unsafe { System.realloc(p, l, new) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Heap an exchange may hold for a plain (identity-encoded) body, whatever its size.
const PLAIN_BOUND: usize = 6 * 1024;
/// Heap an exchange may hold for a gzip/deflate body (inflate window and output buffer).
const COMPRESSED_BOUND: usize = 80 * 1024;
/// Heap an exchange may hold for a zstd body: the frame's window (at most
/// [`limits::MAX_DECODER_WINDOW`], 8 MiB; 64 KiB more while the ring grows to it), one
/// compressed block and its literals (128 KiB each at most) and the decoding tables.
const ZSTD_BOUND: usize = limits::MAX_DECODER_WINDOW + 384 * 1024;
/// Heap an exchange may hold for a br body: the window (at most 8 MiB; brotli-decompressor
/// grows its ring from at most a quarter of the window to the window, holding both for a
/// moment) and the current meta-block's prefix-code tables (up to 256 trees each of
/// literals, commands and distances: about 2.6 MiB at worst).
const BROTLI_BOUND: usize = limits::MAX_DECODER_WINDOW / 4 * 5 + 3 * 1024 * 1024;

const KIB: usize = 1024;
const MIB: usize = 1024 * 1024;
const CHUNK: usize = 64 * KIB;

/// A piece of a body.
enum Part<'a> {
    /// These bytes.
    Bytes(&'a [u8]),
    /// `pattern` repeated to about `len` bytes (rounded down to whole copies).
    Repeat(&'a [u8], usize),
}

/// A body, and a reusable buffer per repeated part, built before measuring.
struct Body<'a> {
    parts: Vec<Part<'a>>,
    bufs: Vec<Vec<u8>>,
}

impl<'a> Body<'a> {
    fn new(parts: Vec<Part<'a>>) -> Self {
        let bufs = parts
            .iter()
            .map(|p| match p {
                Part::Bytes(_) => Vec::new(),
                Part::Repeat(pat, _) => {
                    let copies = (CHUNK / pat.len()).max(1);
                    pat.repeat(copies)
                }
            })
            .collect();
        Body { parts, bufs }
    }

    fn len(&self) -> usize {
        self.parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => b.len(),
                Part::Repeat(pat, n) => *n / pat.len() * pat.len(),
            })
            .sum()
    }

    fn feed(&self, mut f: impl FnMut(&[u8])) {
        for (p, buf) in self.parts.iter().zip(&self.bufs) {
            match p {
                Part::Bytes(b) => b.chunks(CHUNK).for_each(&mut f),
                Part::Repeat(pat, n) => {
                    let mut left = *n / pat.len() * pat.len();
                    while left > 0 {
                        let k = left.min(buf.len());
                        f(&buf[..k]);
                        left -= k;
                    }
                }
            }
        }
    }
}

struct Case<'a> {
    path: &'a str,
    request_headers: Vec<(&'a str, &'a str)>,
    request: Body<'a>,
    response_headers: Vec<(&'a str, &'a str)>,
    response: Body<'a>,
    options: Options,
    /// Whether to signal the end of the response (a cut stream does not).
    end: bool,
}

impl<'a> Case<'a> {
    fn new(path: &'a str, content_type: &'a str, response: Vec<Part<'a>>) -> Self {
        Case {
            path,
            request_headers: vec![("content-type", "application/json")],
            request: Body::new(vec![Part::Bytes(br#"{"model":"req-model","stream":true}"#)]),
            response_headers: vec![("content-type", content_type)],
            response: Body::new(response),
            options: Options::new(),
            end: true,
        }
    }

    fn request(mut self, parts: Vec<Part<'a>>) -> Self {
        self.request = Body::new(parts);
        self
    }

    fn header(mut self, name: &'a str, value: &'a str) -> Self {
        self.response_headers.push((name, value));
        self
    }

    /// Runs the exchange; returns the record, the peak heap growth and the work counted.
    fn run(&self) -> (UsageRecord, usize, Work) {
        // The scanners' per-table data is derived once per table and kept
        // (`scan::Derived`): an exchange with the same heads first, so that the bound
        // measures what an exchange holds, not the one-time table cache.
        let mut warm = Exchange::with_options(self.options.clone());
        warm.on_request_head("POST", self.path, self.request_headers.iter().copied());
        warm.on_response_head(200, self.response_headers.iter().copied());
        warm.on_response_body(b"{}");
        drop(warm);
        // Live heap counts only this thread's allocations from here: it starts at 0.
        LIVE.store(0, SeqCst);
        PEAK.store(0, SeqCst);
        TRACKED.with(|t| t.set(true));
        let mut ex = Exchange::with_options(self.options.clone());
        ex.on_request_head("POST", self.path, self.request_headers.iter().copied());
        self.request.feed(|c| ex.on_request_body(c));
        ex.on_request_end();
        ex.on_response_head(200, self.response_headers.iter().copied());
        self.response.feed(|c| ex.on_response_body(c));
        if self.end {
            ex.on_response_end();
        }
        let r = ex.finish();
        let peak = PEAK.load(SeqCst);
        let work = ex.work();
        drop(ex);
        TRACKED.with(|t| t.set(false));
        (r, peak, work)
    }

    /// Runs and checks the memory bound.
    fn check(&self, what: &str) -> UsageRecord {
        let coding = self
            .response_headers
            .iter()
            .chain(&self.request_headers)
            .find(|(k, _)| k.eq_ignore_ascii_case("content-encoding"))
            .map(|(_, v)| *v);
        let bound = match coding {
            None => PLAIN_BOUND,
            Some("br") => BROTLI_BOUND,
            Some("zstd") => ZSTD_BOUND,
            Some(_) => COMPRESSED_BOUND,
        };
        let (r, peak, work) = self.run();
        let size = self.request.len() + self.response.len();
        println!(
            "{what}: {size} bytes, {} work units, peak heap growth {peak} bytes (bound {bound})",
            work.total()
        );
        assert!(
            peak <= bound,
            "{what}: peak heap growth {peak} bytes > {bound}"
        );
        r
    }
}

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL.lock().unwrap_or_else(|e| e.into_inner())
}

/// Work units ([`Work::total`]) an exchange may spend per byte it inspects (the decoded
/// bytes of both bodies): each byte is received, decoded, inspected, scanned or walked a
/// bounded number of times. Measured: about 3 to 5.
const MAX_WORK_PER_BYTE: f64 = 8.0;

/// Time linear in the input, as counted work: the case at 1x and at 4x the size spends
/// the same work per inspected byte (within 5%, for the fixed parts), under
/// [`MAX_WORK_PER_BYTE`]. A quadratic step (re-reading a held line, re-scanning a nest)
/// would multiply the work per byte by about 4.
fn assert_linear(what: &str, case: impl Fn(usize) -> Case<'static>, base: usize) {
    let per_byte = |n: usize| {
        let (_, _, work) = case(n).run();
        let bytes = work.inspected_bytes.max(1) as f64;
        (work.total() as f64 / bytes, work)
    };
    let (small, ws) = per_byte(base);
    let (large, wl) = per_byte(base * 4);
    println!("{what}: {small:.3} work units per byte at 1x ({ws:?}), {large:.3} at 4x ({wl:?})");
    assert!(
        wl.inspected_bytes >= 2 * ws.inspected_bytes,
        "{what}: the larger case did not inspect more ({ws:?} vs {wl:?})"
    );
    assert!(
        small <= MAX_WORK_PER_BYTE && large <= MAX_WORK_PER_BYTE,
        "{what}: {small:.3} and {large:.3} work units per byte, over {MAX_WORK_PER_BYTE}"
    );
    assert!(
        large <= small * 1.05 + 0.01,
        "{what}: work per byte grew from {small:.3} at 1x to {large:.3} at 4x (not linear)"
    );
}

fn leak(v: Vec<u8>) -> &'static [u8] {
    Box::leak(v.into_boxed_slice())
}

// ---------------------------------------------------------------------------------------
// Nesting 100,000 deep

fn deep(depth: usize, open: &'static [u8], close: &'static [u8]) -> Case<'static> {
    Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"model":"m","choices":"#),
            Part::Repeat(open, depth * open.len()),
            Part::Bytes(b"1"),
            Part::Repeat(close, depth * close.len()),
            Part::Bytes(br#","usage":{"prompt_tokens":5,"completion_tokens":6}}"#),
        ],
    )
}

#[test]
fn nesting_100k_deep_in_an_unwatched_value() {
    let _g = serial();
    for (open, close) in [
        (&b"["[..], &b"]"[..]),
        (b"{\"a\":", b"}"),
        (b"[{\"b\":[", b"]}]"),
    ] {
        let r = deep(100_000, open, close).check("100k deep");
        assert_eq!((r.input_tokens, r.output_tokens), (Some(5), Some(6)));
        assert!(r.complete);
    }
    assert_linear("deep nesting", |n| deep(n, b"[{\"b\":", b"}]"), 2_000_000);
}

#[test]
fn nesting_100k_deep_along_a_watched_path() {
    let _g = serial();
    // `usage` is watched: its object is followed, then `usage.usage...` matches nothing.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"usage":{"prompt_tokens":3,"usage":"#),
            Part::Repeat(b"{\"usage\":", 100_000 * 9),
            Part::Bytes(b"0"),
            Part::Repeat(b"}", 100_000),
            Part::Bytes(br#","completion_tokens":4}}"#),
        ],
    )
    .check("100k deep on a watched path");
    assert_eq!((r.input_tokens, r.output_tokens), (Some(3), Some(4)));
    assert!(r.complete);

    // Openers that are never closed, in every framing: unknown, incomplete.
    for ct in [
        "application/json",
        "text/event-stream",
        "application/x-ndjson",
    ] {
        let prefix: &[u8] = if ct == "text/event-stream" {
            b"data: "
        } else {
            b""
        };
        let r = Case::new(
            "/v1/chat/completions",
            ct,
            vec![
                Part::Bytes(prefix),
                Part::Repeat(b"{\"usage\":[", 100_000 * 10),
            ],
        )
        .check("100k unclosed");
        assert_eq!(r.input_tokens, None);
        assert!(!r.complete, "{ct}");
    }

    // Mismatched closers and 100,000 stray closers: no panic, unknown.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Repeat(b"[{", 200_000),
            Part::Repeat(b"]", 300_000),
            Part::Repeat(b"}", 100_000),
        ],
    )
    .check("mismatched closers");
    assert_eq!(r.input_tokens, None);
}

// ---------------------------------------------------------------------------------------
// A 100 MiB string

#[test]
fn string_of_100_mib() {
    let _g = serial();
    // In content, with escapes that look like usage: skipped, the real usage counts.
    let content = |n: usize| {
        Case::new(
            "/v1/chat/completions",
            "application/json",
            vec![
                Part::Bytes(br#"{"model":"gpt-x","choices":[{"message":{"content":""#),
                Part::Repeat(
                    br#"ab \"usage\":{\"prompt_tokens\":9} \\ \u00e9 \ud83d\ude00 "#,
                    n,
                ),
                Part::Bytes(br#""}}],"usage":{"prompt_tokens":11,"completion_tokens":5}}"#),
            ],
        )
    };
    let r = content(100 * MIB).check("100 MiB content string");
    assert_eq!(
        (r.model.as_deref(), r.input_tokens, r.total_tokens),
        (Some("gpt-x"), Some(11), Some(16))
    );
    assert!(r.complete);
    assert_linear("long string", content, 4 * MIB);

    // As the (watched) model: too long to capture, so the response model is unknown and
    // the request's model stands in; the tokens after it still count.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"model":""#),
            Part::Repeat(b"m\\\"", 100 * MIB),
            Part::Bytes(br#"","usage":{"prompt_tokens":1,"completion_tokens":2}}"#),
        ],
    )
    .check("100 MiB model");
    assert_eq!(r.response_model, None);
    assert_eq!(r.model.as_deref(), Some("req-model"));
    assert_eq!(r.total_tokens, Some(3));

    // Never closed: unknown, incomplete.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"usage":{"prompt_tokens":1},"x":""#),
            Part::Repeat(b"a", 100 * MIB),
        ],
    )
    .check("100 MiB unterminated");
    assert_eq!(r.input_tokens, None);
    assert!(!r.complete);

    // A 100 MiB request body (a long prompt): the model after it is still found.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(br#"{"usage":{"prompt_tokens":1}}"#)],
    )
    .request(vec![
        Part::Bytes(br#"{"messages":[{"role":"user","content":""#),
        Part::Repeat(b"0123456789\\n", 100 * MIB),
        Part::Bytes(br#""}],"stream":false,"model":"late-model"}"#),
    ])
    .check("100 MiB request");
    assert_eq!(r.request_model.as_deref(), Some("late-model"));
    assert_eq!(r.stream, Some(false));
}

// ---------------------------------------------------------------------------------------
// A key of 1 MiB

#[test]
fn key_of_1_mib() {
    let _g = serial();
    for (prefix, what) in [
        (&br#"{"usage":{"prompt_tokens":2},""#[..], "top level"),
        (br#"{"usage":{"prompt_tokens":2,""#, "inside usage"),
    ] {
        // A long key that starts like a watched one must not match it.
        let r = Case::new(
            "/v1/chat/completions",
            "application/json",
            vec![
                Part::Bytes(prefix),
                Part::Bytes(b"completion_tokens"),
                Part::Repeat(b"k\\u00e9", MIB),
                Part::Bytes(if what == "top level" {
                    br#"":{"completion_tokens":99}}"#
                } else {
                    br#"":99}}"#
                }),
            ],
        )
        .check("1 MiB key");
        assert_eq!(r.input_tokens, Some(2), "{what}");
        assert_eq!(r.output_tokens, None, "{what}");
        assert!(r.complete);
    }
    // Keys just over the cap never match, keys at the cap do (watched keys are short).
    let key = leak(b"x".repeat(llm_usage_core::limits::KEY_CAP + 1));
    let r = Case::new(
        "/v1/chat/completions",
        "text/event-stream",
        vec![
            Part::Bytes(b"data: {\""),
            Part::Bytes(key),
            Part::Bytes(b"\":1,\"usage\":{\"prompt_tokens\":8}}\n\n"),
        ],
    )
    .check("key over the cap");
    assert_eq!(r.input_tokens, Some(8));
    assert_linear(
        "long key",
        |n| {
            Case::new(
                "/v1/chat/completions",
                "application/json",
                vec![
                    Part::Bytes(br#"{"usage":{""#),
                    Part::Repeat(b"k", n),
                    Part::Bytes(br#"":1,"prompt_tokens":1}}"#),
                ],
            )
        },
        256 * MIB,
    );
}

// ---------------------------------------------------------------------------------------
// Numbers

fn usage_json(usage: &str) -> UsageRecord {
    let body = leak(format!(r#"{{"model":"m","usage":{usage}}}"#).into_bytes());
    Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(body)],
    )
    .check("numbers")
}

#[test]
fn numbers_overflowing_u64() {
    let _g = serial();
    let r = usage_json(r#"{"prompt_tokens":18446744073709551615,"completion_tokens":0}"#);
    assert_eq!(r.input_tokens, Some(u64::MAX));
    // in + out overflows: the total is unknown rather than wrapped or saturated.
    let r = usage_json(r#"{"prompt_tokens":18446744073709551615,"completion_tokens":1}"#);
    assert_eq!((r.output_tokens, r.total_tokens), (Some(1), None));
    for n in [
        "18446744073709551616",
        "99999999999999999999999999999999",
        "1e400",
        "-18446744073709551616",
    ] {
        let r = usage_json(&format!(
            r#"{{"prompt_tokens":{n},"completion_tokens":3,"total_tokens":{n}}}"#
        ));
        assert_eq!((r.input_tokens, r.total_tokens), (None, None), "{n}");
        assert_eq!(r.output_tokens, Some(3));
    }
    // A number of 1 MiB digits (far over the value cap): unknown, bounded memory.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"usage":{"prompt_tokens":1"#),
            Part::Repeat(b"0", MIB),
            Part::Bytes(br#","completion_tokens":2}}"#),
        ],
    )
    .check("1 MiB number");
    assert_eq!((r.input_tokens, r.output_tokens), (None, Some(2)));
    // Summed fields (Anthropic input = input + cache read + cache creation) overflow too.
    let body = br#"{"model":"c","usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":1,"output_tokens":2}}"#;
    let r = Case::new("/v1/messages", "application/json", vec![Part::Bytes(body)])
        .check("sum overflow");
    assert_eq!(r.input_tokens, None);
    assert_eq!(r.cached_input_tokens, Some(1));
    assert_eq!(r.output_tokens, Some(2));
    // Header counts (Bedrock InvokeModel) that overflow are unknown too.
    let r = Case::new(
        "/model/m/invoke",
        "application/json",
        vec![Part::Bytes(b"{}")],
    )
    .header("x-amzn-bedrock-input-token-count", "18446744073709551616")
    .header("x-amzn-bedrock-output-token-count", "-4")
    .check("header overflow");
    assert_eq!((r.input_tokens, r.output_tokens), (None, None));
}

#[test]
fn negative_fractional_and_non_numeric_counts() {
    let _g = serial();
    for v in [
        "-1",
        "-0",
        "-0.0",
        "1.5",
        "0.1",
        "1e3",
        "1E2",
        "12e-1",
        "\"12\"",
        "true",
        "null",
        "[12]",
        "{\"n\":12}",
        "0x10",
        "-",
        "1.",
        "01",
        "00",
        "01.5",
        "1.0.0",
        "1-2",
    ] {
        let r = usage_json(&format!(r#"{{"prompt_tokens":{v},"completion_tokens":2}}"#));
        assert_eq!(r.input_tokens, None, "prompt_tokens: {v}");
        assert_eq!(r.total_tokens, None, "{v}");
        assert_eq!(r.output_tokens, Some(2), "{v}");
    }
    // Not JSON at all on a watched path: the document is unreadable, everything unknown.
    for v in ["+5", ".5", "NaN", "Infinity", "x"] {
        let r = usage_json(&format!(r#"{{"prompt_tokens":{v},"completion_tokens":2}}"#));
        assert_eq!((r.input_tokens, r.output_tokens), (None, None), "{v}");
    }
    // An integral value written as a float is a count.
    let r = usage_json(r#"{"prompt_tokens":12.0,"completion_tokens":2.000}"#);
    assert_eq!((r.input_tokens, r.output_tokens), (Some(12), Some(2)));
    // A reported zero is a known zero, not unknown.
    let r = usage_json(r#"{"prompt_tokens":0,"completion_tokens":0,"total_tokens":0}"#);
    assert_eq!(r.total_tokens, Some(0));
}

// ---------------------------------------------------------------------------------------
// Duplicate keys

#[test]
fn duplicate_keys() {
    let _g = serial();
    // Every occurrence is read in order; the last valid one wins.
    let r = usage_json(r#"{"prompt_tokens":1,"prompt_tokens":2,"completion_tokens":3}"#);
    assert_eq!(r.input_tokens, Some(2));
    let body =
        br#"{"model":"a","usage":{"prompt_tokens":1},"model":"b","usage":{"completion_tokens":4}}"#;
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(body)],
    )
    .check("duplicate objects");
    assert_eq!(r.model.as_deref(), Some("b"));
    assert_eq!((r.input_tokens, r.output_tokens), (Some(1), Some(4)));
    // An invalid later duplicate does not erase a valid earlier one.
    let r = usage_json(r#"{"prompt_tokens":5,"prompt_tokens":-1,"completion_tokens":1}"#);
    assert_eq!(r.input_tokens, Some(5));
    // 100,000 duplicates: constant memory, last wins.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![
            Part::Bytes(br#"{"usage":{"prompt_tokens":0"#),
            Part::Repeat(br#","prompt_tokens":123456"#, 100_000 * 22),
            Part::Bytes(br#","prompt_tokens":7}}"#),
        ],
    )
    .check("100k duplicates");
    assert_eq!(r.input_tokens, Some(7));
}

// ---------------------------------------------------------------------------------------
// Invalid UTF-8

#[test]
fn invalid_utf8() {
    let _g = serial();
    // In a response model: not a name, so the request's model stands in.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(
            b"{\"model\":\"gpt\xff\xfe\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
        )],
    )
    .check("invalid utf-8 model");
    assert_eq!(r.response_model, None);
    assert_eq!(r.model.as_deref(), Some("req-model"));
    assert_eq!(r.total_tokens, Some(2));
    // Lone surrogate escapes decode to U+FFFD.
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(br#"{"model":"a\ud800b\udc00c\ud83d"}"#)],
    )
    .check("lone surrogates");
    assert_eq!(r.model.as_deref(), Some("a\u{FFFD}b\u{FFFD}c\u{FFFD}"));
    // In content, keys, SSE field names and comments: skipped, the usage still counts.
    let body = b": \xff\xfe comment\n\xc3\x28\xa0: x\nevent: \x80\ndata: {\"\xe2\x82\":{\"x\":\"\xf0\x28\x8c\x28\"},\"choices\":[{\"delta\":{\"content\":\"\xed\xa0\x80\"}}],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":5}}\n\n";
    let r = Case::new(
        "/v1/chat/completions",
        "text/event-stream",
        vec![Part::Bytes(body), Part::Bytes(b"data: [DONE]\n\n")],
    )
    .check("invalid utf-8 in sse");
    assert_eq!(r.total_tokens, Some(9));
    assert!(r.complete);
    // 16 MiB of random bytes in every framing: nothing, no panic.
    let mut x = 0x9E37_79B9_7F4A_7C15u64;
    let noise = leak(
        (0..CHUNK)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect(),
    );
    for ct in [
        "application/json",
        "text/event-stream",
        "application/x-ndjson",
        "application/vnd.amazon.eventstream",
        "application/octet-stream",
    ] {
        let r = Case::new(
            "/v1/chat/completions",
            ct,
            vec![Part::Repeat(noise, 16 * MIB)],
        )
        .check("noise");
        assert_eq!(r.input_tokens, None, "{ct}");
    }
}

// ---------------------------------------------------------------------------------------
// Gzip bomb

/// One gzip member holding `n` spaces.
fn gzip_member(prefix: &[u8], n: usize, suffix: &[u8]) -> Vec<u8> {
    let mut plain = prefix.to_vec();
    plain.resize(prefix.len() + n, b' ');
    plain.extend_from_slice(suffix);
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    v.extend(miniz_oxide::deflate::compress_to_vec(&plain, 9));
    v.extend_from_slice(&crc32fast::hash(&plain).to_le_bytes());
    v.extend_from_slice(&(plain.len() as u32).to_le_bytes());
    v
}

#[test]
fn gzip_bomb() {
    let _g = serial();
    // 256 MiB of whitespace inside one JSON document, from about 256 KiB of gzip: 64
    // members of 4 MiB each (a ratio of about 1000:1, deflate's maximum).
    let first = leak(gzip_member(
        br#"{"model":"bomb","usage":{"prompt_tokens":5,"completion_tokens":6}, "pad":"#,
        4 * MIB,
        b"",
    ));
    let middle = leak(gzip_member(b"", 4 * MIB, b""));
    let last = leak(gzip_member(b"", 4 * MIB, b"0}"));
    let bomb = |members: usize| {
        Case::new(
            "/v1/chat/completions",
            "application/json",
            vec![
                Part::Bytes(first),
                Part::Repeat(middle, middle.len() * members),
                Part::Bytes(last),
            ],
        )
        .header("content-encoding", "gzip")
    };
    let case = bomb(62);
    println!(
        "gzip bomb: {} compressed bytes -> 256 MiB",
        case.response.len()
    );
    let r = case.check("gzip bomb, 256 MiB decoded");
    assert_eq!(r.total_tokens, Some(11));
    assert!(r.complete);
    // With an inspection limit, decoding stops early: incomplete, and only the figures
    // seen before the limit (here: all of them, they come first... but uncommitted, since
    // the document never ended).
    let mut limited = bomb(62);
    limited.options = Options::new().max_body_bytes(MIB as u64);
    let (r, peak, work) = limited.run();
    println!("gzip bomb with a 1 MiB inspection limit: {work:?}, peak {peak}");
    assert!(peak <= COMPRESSED_BOUND);
    assert_eq!(work.inspected_bytes, MIB as u64 + 35);
    assert!(work.decoded_bytes <= work.inspected_bytes + limits::INFLATE_OUTPUT_BUFFER as u64);
    assert!(!r.complete);
    assert_eq!(r.input_tokens, None);
    assert_linear("gzip bomb", bomb, 4);

    // A member whose CRC lies: the body is corrupt, the record incomplete.
    let mut bad = gzip_member(br#"{"usage":{"prompt_tokens":5}}"#, 0, b"");
    let n = bad.len();
    bad[n - 5] ^= 0xff;
    let bad = leak(bad);
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(bad)],
    )
    .header("content-encoding", "gzip")
    .check("bad gzip crc");
    assert!(!r.complete);
    // Deflate bomb (zlib-wrapped).
    let mut plain = br#"{"usage":{"prompt_tokens":5},"pad":""#.to_vec();
    plain.resize(16 * MIB, b'a');
    plain.extend_from_slice(b"\"}");
    let z = leak(miniz_oxide::deflate::compress_to_vec_zlib(&plain, 6));
    drop(plain);
    let r = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(z)],
    )
    .header("content-encoding", "deflate")
    .check("deflate bomb, 16 MiB");
    assert_eq!(r.input_tokens, Some(5));
    assert!(r.complete);
}

// ---------------------------------------------------------------------------------------
// Brotli and zstd: bombs, windows over the cap, cut and corrupt streams

const BOMB_PREFIX: &[u8] =
    br#"{"model":"bomb","usage":{"prompt_tokens":5,"completion_tokens":6}, "pad":"#;

/// A zstd block header and content.
fn zstd_block(kind: u32, last: bool, size: usize, content: &[u8]) -> Vec<u8> {
    let h = (size as u32) << 3 | kind << 1 | u32::from(last);
    let mut v = h.to_le_bytes()[..3].to_vec();
    v.extend_from_slice(content);
    v
}

/// A zstd frame header (window `2^window_log`, no content size, no checksum) and a raw
/// block holding `prefix`.
fn zstd_head(window_log: u8, prefix: &[u8]) -> Vec<u8> {
    let mut v = 0xFD2F_B528u32.to_le_bytes().to_vec();
    v.extend([0, (window_log - 10) << 3]);
    v.extend(zstd_block(0, false, prefix.len(), prefix));
    v
}

/// An RLE block of 128 KiB of spaces: 4 bytes that decode to 131,072.
const ZSTD_RLE_BLOCK: [u8; 4] = [0x02, 0x00, 0x10, b' '];

/// A br stream of the concatenated parts (`Part::Repeat` counts are whole copies).
fn brotli_of(parts: &[(&[u8], usize)], quality: u32, lgwin: u32) -> Vec<u8> {
    use std::io::Write;
    let mut z = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut z, 64 * KIB, quality, lgwin);
        for (bytes, copies) in parts {
            for _ in 0..*copies {
                w.write_all(bytes).unwrap();
            }
        }
    }
    z
}

/// The bomb's checks: the whole bomb read in bounded memory; with a 1 MiB inspection limit,
/// decoding stops within one output buffer of it, having consumed `max_input` compressed
/// bytes at most.
fn check_bomb(what: &str, case: &Case<'static>, decoded: u64, max_input: u64) {
    let r = case.check(what);
    assert_eq!(r.total_tokens, Some(11), "{what}");
    assert!(r.complete, "{what}");
    let (_, _, work) = case.run();
    assert_eq!(work.decoded_bytes, decoded, "{what}");
    let received = case.request.len() + case.response.len();
    assert_eq!(work.received_bytes, received as u64, "{what}");
    let mut limited = Case::new(case.path, "application/json", vec![]);
    limited.response = Body::new(
        case.response
            .parts
            .iter()
            .map(|p| match p {
                Part::Bytes(b) => Part::Bytes(b),
                Part::Repeat(b, n) => Part::Repeat(b, *n),
            })
            .collect(),
    );
    limited.response_headers = case.response_headers.clone();
    limited.options = Options::new().max_body_bytes(MIB as u64);
    let (r, peak, work) = limited.run();
    println!("{what} with a 1 MiB inspection limit: {work:?}, peak {peak}");
    assert!(!r.complete && r.input_tokens.is_none(), "{what}");
    // The limit is per body; the request's bytes are inspected too.
    let request = case.request.len() as u64;
    assert_eq!(work.inspected_bytes, MIB as u64 + request, "{what}");
    assert!(
        work.decoded_bytes <= MIB as u64 + limits::DECODER_OUTPUT_BUFFER as u64,
        "{what}: decoded {} bytes for a 1 MiB limit",
        work.decoded_bytes
    );
    assert!(
        work.decoder_input_bytes <= max_input,
        "{what}: consumed {} compressed bytes for a 1 MiB limit",
        work.decoder_input_bytes
    );
}

#[test]
fn zstd_bomb() {
    let _g = serial();
    // 256 MiB of whitespace inside one JSON document from 8 KiB of zstd: RLE blocks of
    // 128 KiB (the format's largest ratio, 32,768:1) in a frame with the largest window
    // allowed.
    let head = leak(zstd_head(23, BOMB_PREFIX));
    let tail = leak(zstd_block(0, true, 2, b"0}"));
    let bomb = |blocks: usize| {
        Case::new(
            "/v1/chat/completions",
            "application/json",
            vec![
                Part::Bytes(head),
                Part::Repeat(&ZSTD_RLE_BLOCK, 4 * blocks),
                Part::Bytes(tail),
            ],
        )
        .header("content-encoding", "zstd")
    };
    let case = bomb(2048);
    println!(
        "zstd bomb: {} compressed bytes -> 256 MiB",
        case.response.len()
    );
    let decoded = (256 * MIB + BOMB_PREFIX.len() + 2) as u64;
    // 1 MiB is 8 blocks in: about 100 compressed bytes.
    check_bomb("zstd bomb, 256 MiB decoded", &case, decoded, 1024);
    assert_linear("zstd bomb", bomb, 256);

    // The same from the reference encoder (compressed blocks: one-byte-offset matches
    // through the window), 64 MiB.
    let mut e = zstd::stream::Encoder::new(Vec::new(), 19).unwrap();
    e.include_checksum(true).unwrap();
    {
        use std::io::Write;
        e.write_all(BOMB_PREFIX).unwrap();
        let spaces = vec![b' '; MIB];
        for _ in 0..64 {
            e.write_all(&spaces).unwrap();
        }
        e.write_all(b"0}").unwrap();
    }
    let z = leak(e.finish().unwrap());
    let case = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(z)],
    )
    .header("content-encoding", "zstd");
    println!(
        "zstd bomb from libzstd: {} compressed bytes -> 64 MiB",
        z.len()
    );
    check_bomb(
        "zstd bomb from libzstd, 64 MiB",
        &case,
        (64 * MIB + BOMB_PREFIX.len() + 2) as u64,
        16 * KIB as u64,
    );
}

#[test]
fn brotli_bomb() {
    let _g = serial();
    // 256 MiB of whitespace inside one JSON document, from the reference encoder.
    let spaces = vec![b' '; MIB];
    let bomb = |mib: usize, quality: u32| {
        brotli_of(&[(BOMB_PREFIX, 1), (&spaces, mib), (b"0}", 1)], quality, 22)
    };
    let z = leak(bomb(256, 5));
    let case = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(z)],
    )
    .header("content-encoding", "br");
    println!("br bomb: {} compressed bytes -> 256 MiB", z.len());
    let decoded = (256 * MIB + BOMB_PREFIX.len() + 2) as u64;
    check_bomb("br bomb, 256 MiB decoded", &case, decoded, 16 * KIB as u64);
    let small = leak(bomb(16, 5));
    let large = leak(bomb(64, 5));
    assert_linear(
        "br bomb",
        |n| {
            Case::new(
                "/v1/chat/completions",
                "application/json",
                vec![Part::Bytes(if n == 1 { small } else { large })],
            )
            .header("content-encoding", "br")
        },
        1,
    );
}

#[test]
fn windows_over_the_cap_are_undecodable_without_allocating_them() {
    let _g = serial();
    // zstd: a 16 MiB window (over RFC 9659's 8 MB), then a valid body.
    let head = leak(zstd_head(24, br#"{"usage":{"prompt_tokens":5},"pad":""#));
    let tail = leak(zstd_block(0, true, 2, b"\"}"));
    // brotli: WBITS 24 (16 MiB), from the reference encoder.
    let body = br#"{"usage":{"prompt_tokens":5,"completion_tokens":6}}"#;
    let br = leak(brotli_of(&[(body, 1)], 5, 24));
    assert_eq!(br[0] & 0x0F, 0x0F, "WBITS 24");
    for (coding, parts) in [
        (
            "zstd",
            vec![
                Part::Bytes(head),
                Part::Repeat(&ZSTD_RLE_BLOCK, 4 * 64),
                Part::Bytes(tail),
            ],
        ),
        ("br", vec![Part::Bytes(br)]),
    ] {
        let case = Case::new("/v1/chat/completions", "application/json", parts)
            .header("content-encoding", coding);
        let (r, peak, work) = case.run();
        println!("{coding} window over the cap: peak {peak}, {work:?}");
        assert_eq!(r.input_tokens, None, "{coding}");
        assert_eq!(r.model.as_deref(), Some("req-model"), "{coding}");
        assert!(!r.complete, "{coding}");
        assert_eq!(work.decoded_bytes, 0, "{coding}");
        // Nothing of the window's size: the decoder's fixed part only.
        assert!(peak <= COMPRESSED_BOUND, "{coding}: peak heap {peak}");
    }
}

/// An OpenAI stream of `events` chunks, usage in the last.
fn openai_stream(events: usize) -> Vec<u8> {
    let mut s = String::new();
    for i in 0..events {
        s += &format!(
            "data: {{\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[{{\"delta\":{{\"content\":\"tok {i}\"}}}}],\"usage\":null}}\n\n"
        );
    }
    s += "data: {\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9,\"total_tokens\":16}}\n\ndata: [DONE]\n\n";
    s.into_bytes()
}

#[test]
fn cut_corrupt_and_trailing_br_and_zstd_streams_are_incomplete() {
    let _g = serial();
    let plain = openai_stream(2000);
    let zstd_body = {
        use std::io::Write;
        let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        for piece in plain.chunks(4096) {
            e.write_all(piece).unwrap();
            e.flush().unwrap();
        }
        e.finish().unwrap()
    };
    let br_body = brotli_of(&[(&plain, 1)], 5, 22);
    for (coding, z) in [("zstd", zstd_body), ("br", br_body)] {
        let run = |body: Vec<u8>| {
            let body = leak(body);
            Case::new(
                "/v1/chat/completions",
                "text/event-stream",
                vec![Part::Bytes(body)],
            )
            .header("content-encoding", coding)
            .check(coding)
        };
        let whole = run(z.clone());
        assert_eq!(whole.total_tokens, Some(16), "{coding}");
        assert!(whole.complete, "{coding}");
        // Cut: the events before the cut are read (the model), the usage never came.
        let cut = run(z[..z.len() / 2].to_vec());
        assert_eq!(
            (cut.model.as_deref(), cut.total_tokens),
            (Some("gpt-x"), None)
        );
        assert!(!cut.complete, "{coding}: cut");
        // Cut a few bytes short of the end: the usage may have been decoded, but the
        // stream did not end.
        let short = run(z[..z.len() - 3].to_vec());
        assert!(!short.complete, "{coding}: 3 bytes short");
        // Corrupt in the middle: decoding stops there.
        let mut bad = z.clone();
        let mid = bad.len() / 2;
        bad[mid] ^= 0x55;
        let r = run(bad);
        assert!(!r.complete, "{coding}: corrupt");
        assert_eq!(r.total_tokens, None, "{coding}: corrupt");
        // Trailing garbage: what was decoded stands, the body is not clean.
        let mut trailing = z.clone();
        trailing.extend_from_slice(b"garbage");
        let r = run(trailing);
        assert_eq!(r.total_tokens, Some(16), "{coding}: trailing");
        assert!(!r.complete, "{coding}: trailing");
    }
    // zstd: a checksum that does not match.
    let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
    e.include_checksum(true).unwrap();
    std::io::Write::write_all(&mut e, &plain).unwrap();
    let mut z = e.finish().unwrap();
    let n = z.len();
    z[n - 1] ^= 1;
    let z = leak(z);
    let r = Case::new(
        "/v1/chat/completions",
        "text/event-stream",
        vec![Part::Bytes(z)],
    )
    .header("content-encoding", "zstd")
    .check("zstd, bad checksum");
    assert_eq!(r.total_tokens, Some(16));
    assert!(!r.complete);
}

// ---------------------------------------------------------------------------------------
// Event-stream frames with bad CRCs or lengths

const ES: &str = "application/vnd.amazon.eventstream";
const CONVERSE: &str = "/model/amazon.nova-lite-v1%3A0/converse-stream";

fn meta(input: u64) -> Vec<u8> {
    encode_event_stream_message(
        &[(":event-type", "metadata"), (":message-type", "event")],
        format!(
            r#"{{"usage":{{"inputTokens":{input},"outputTokens":2,"totalTokens":{}}}}}"#,
            input + 2
        )
        .as_bytes(),
    )
}

/// ConverseStream's last two events: `messageStop`, and `metadata` with its metrics.
fn ending() -> &'static [u8] {
    let mut v = encode_event_stream_message(
        &[(":event-type", "messageStop"), (":message-type", "event")],
        br#"{"stopReason":"end_turn"}"#,
    );
    v.extend(encode_event_stream_message(
        &[(":event-type", "metadata"), (":message-type", "event")],
        br#"{"metrics":{"latencyMs":120}}"#,
    ));
    leak(v)
}

fn prelude(total: u32, headers: u32) -> Vec<u8> {
    let mut p = total.to_be_bytes().to_vec();
    p.extend_from_slice(&headers.to_be_bytes());
    let crc = crc32fast::hash(&p);
    p.extend_from_slice(&crc.to_be_bytes());
    p
}

fn es(parts: Vec<Part<'static>>) -> UsageRecord {
    Case::new(CONVERSE, ES, parts).check("event-stream")
}

#[test]
fn event_stream_bad_crcs_and_lengths() {
    let _g = serial();
    let good = leak(meta(10));
    // A bad message CRC drops that message only.
    let mut bad_msg = meta(99);
    let n = bad_msg.len();
    bad_msg[n - 1] ^= 1;
    let bad_msg = leak(bad_msg);
    let r = es(vec![Part::Bytes(good), Part::Bytes(bad_msg)]);
    // The stream's end (`messageStop`, then metrics) never came.
    assert_eq!((r.input_tokens, r.complete), (Some(10), false));
    let r = es(vec![
        Part::Bytes(good),
        Part::Bytes(bad_msg),
        Part::Bytes(ending()),
    ]);
    assert_eq!((r.input_tokens, r.complete), (Some(10), true));
    // 100,000 bad messages in a row: still only the good one counts.
    let r = es(vec![
        Part::Repeat(bad_msg, bad_msg.len() * 100_000),
        Part::Bytes(good),
        Part::Bytes(ending()),
    ]);
    assert_eq!((r.input_tokens, r.complete), (Some(10), true));

    // A bad prelude CRC: lengths cannot be trusted, reading stops, incomplete.
    let mut bad_prelude = meta(99);
    bad_prelude[9] ^= 1;
    let r = es(vec![
        Part::Bytes(good),
        Part::Bytes(leak(bad_prelude)),
        Part::Bytes(leak(meta(50))),
    ]);
    assert_eq!((r.input_tokens, r.complete), (Some(10), false));

    // Lengths with a valid prelude CRC but impossible values.
    for (total, headers) in [
        (0u32, 0u32),
        (15, 0),
        (16, 1),
        (100, 90),
        (u32::MAX, 0),
        (llm_usage_core::limits::MAX_EVENT_STREAM_MESSAGE + 1, 0),
        (1000, u32::MAX),
    ] {
        let r = es(vec![
            Part::Bytes(good),
            Part::Bytes(leak(prelude(total, headers))),
            Part::Repeat(b"x", 4096),
        ]);
        assert_eq!(
            (r.input_tokens, r.complete),
            (Some(10), false),
            "total {total}, headers {headers}"
        );
    }

    // The largest message accepted (16 MiB), streamed: bounded memory; its payload is
    // read (a huge unwatched string), then its CRC is wrong, so it is dropped.
    let max = llm_usage_core::limits::MAX_EVENT_STREAM_MESSAGE;
    let body = max as usize - 16;
    let head = br#"{"usage":{"inputTokens":77},"p":""#;
    let r = es(vec![
        Part::Bytes(good),
        Part::Bytes(leak(prelude(max, 0))),
        Part::Bytes(head),
        Part::Repeat(b"y", body - head.len() - 2),
        Part::Bytes(b"\"}"),
        Part::Bytes(&[0, 0, 0, 0]),
        Part::Bytes(leak(meta(20))),
        Part::Bytes(ending()),
    ]);
    assert_eq!((r.input_tokens, r.complete), (Some(20), true));

    // A declared length longer than the stream: cut, incomplete, the partial message
    // does not count.
    let r = es(vec![
        Part::Bytes(good),
        Part::Bytes(leak(prelude(1_000_000, 0))),
        Part::Bytes(br#"{"usage":{"inputTokens":77}}"#),
    ]);
    assert_eq!((r.input_tokens, r.complete), (Some(10), false));

    // A declared length shorter than the payload: the CRC check fails, and what follows
    // is garbage (a bad prelude), so reading stops.
    let mut short = meta(30);
    let total = short.len() as u32 - 8;
    short[..12].copy_from_slice(&prelude(total, 0)[..]);
    let r = es(vec![Part::Bytes(good), Part::Bytes(leak(short))]);
    assert_eq!((r.input_tokens, r.complete), (Some(10), false));
}

// ---------------------------------------------------------------------------------------
// A 50 MiB SSE line without a newline

#[test]
fn sse_line_of_50_mib_without_newline() {
    let _g = serial();
    let line = |n: usize| {
        Case::new(
            "/v1/chat/completions",
            "text/event-stream",
            vec![
                Part::Bytes(b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}\n\n"),
                Part::Bytes(br#"data: {"usage":{"prompt_tokens":9},"x":""#),
                Part::Repeat(b"z", n),
            ],
        )
    };
    // The event never ends: its figures do not count, the record is incomplete.
    let r = line(50 * MIB).check("50 MiB data line");
    assert_eq!((r.input_tokens, r.total_tokens), (Some(1), Some(2)));
    assert!(!r.complete);
    assert_linear("long sse line", line, 16 * MIB);

    // The same, cut without end of stream.
    let mut cut = line(50 * MIB);
    cut.end = false;
    let r = cut.check("50 MiB data line, no end");
    assert_eq!(r.input_tokens, Some(1));
    assert!(!r.complete);

    // A 50 MiB comment, field name or unknown field, then a real event.
    for (prefix, fill) in [
        (&b":"[..], &b"c"[..]),
        (b"", b"f"),
        (b"event: ", b"e"),
        (b"data: \"", b"d"),
    ] {
        let r = Case::new(
            "/v1/chat/completions",
            "text/event-stream",
            vec![
                Part::Bytes(prefix),
                Part::Repeat(fill, 50 * MIB),
                Part::Bytes(b"\r\n\r\ndata: {\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":4}}\r\n\r\ndata: [DONE]\r\n\r\n"),
            ],
        )
        .check("50 MiB line then an event");
        assert_eq!(
            r.total_tokens,
            Some(7),
            "{:?}",
            String::from_utf8_lossy(prefix)
        );
        assert!(r.complete);
    }

    // 50 MiB of one NDJSON line without a newline.
    let r = Case::new(
        "/api/chat",
        "application/x-ndjson",
        vec![
            Part::Bytes(br#"{"prompt_eval_count":1,"eval_count":2,"x":""#),
            Part::Repeat(b"n", 50 * MIB),
        ],
    )
    .check("50 MiB ndjson line");
    assert_eq!(r.input_tokens, None);
    assert!(!r.complete);
}

// ---------------------------------------------------------------------------------------
// Many events

#[test]
fn a_million_events_in_constant_memory() {
    let _g = serial();
    let ev = b"data: {\"choices\":[{\"delta\":{\"content\":\"x\"}}],\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
    let r = Case::new(
        "/v1/chat/completions",
        "text/event-stream",
        vec![
            Part::Repeat(ev, ev.len() * 1_000_000),
            Part::Bytes(b"data: [DONE]\n\n"),
        ],
    )
    .check("1M events");
    assert_eq!(r.total_tokens, Some(3));
    assert!(r.complete);
}

// ---------------------------------------------------------------------------------------
// Hostile heads: huge or repeated headers, huge paths

#[test]
fn huge_and_repeated_headers_do_not_grow_memory() {
    let _g = serial();
    let big = leak(b"x".repeat(MIB));
    let big = std::str::from_utf8(big).unwrap();
    let mut case = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(
            br#"{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        )],
    );
    // 1,000 copies of every header the core looks at, each 1 MiB long, then the real ones.
    for name in [
        "host",
        ":authority",
        "anthropic-version",
        "x-dashscope-sse",
        "content-encoding",
    ] {
        case.request_headers
            .extend(std::iter::repeat_n((name, big), 1000));
    }
    for name in ["content-encoding", "x-amzn-bedrock-input-token-count"] {
        case.response_headers
            .extend(std::iter::repeat_n((name, big), 1000));
    }
    let r = case.check("1,000 x 1 MiB headers");
    assert_eq!(
        r.total_tokens, None,
        "a 1 MiB content-encoding is undecodable"
    );
    assert!(!r.complete);

    // The same with short repeated values: the first one is the one that counts.
    let mut case = Case::new(
        "/v1/chat/completions",
        "application/json",
        vec![Part::Bytes(
            br#"{"model":"m","usage":{"prompt_tokens":1,"completion_tokens":2}}"#,
        )],
    );
    case.response_headers = vec![("Content-Type", "application/json"); 100_000];
    case.response_headers
        .push(("content-type", "text/event-stream"));
    let r = case.check("100,000 content-type headers");
    assert_eq!(r.total_tokens, Some(3));
}

#[test]
fn huge_paths_do_not_grow_memory() {
    let _g = serial();
    let mut gemini = b"/v1beta/models/".to_vec();
    gemini.extend(b"%41".repeat(MIB / 3));
    gemini.extend_from_slice(b":generateContent");
    let gemini = std::str::from_utf8(leak(gemini)).unwrap();
    let mut bedrock = b"/model/".to_vec();
    bedrock.extend(b"m".repeat(MIB));
    bedrock.extend_from_slice(b"/converse");
    let bedrock = std::str::from_utf8(leak(bedrock)).unwrap();
    for path in [gemini, bedrock] {
        let r = Case::new(path, "application/json", vec![Part::Bytes(b"{}")])
            .request(vec![Part::Bytes(b"{}")])
            .check("1 MiB path");
        // A model name longer than the value cap is unknown, as in a body.
        assert_eq!(r.model, None);
        assert!(r.provider.is_some());
    }
    // At the cap it is still read.
    let model = "g".repeat(llm_usage_core::limits::VALUE_CAP);
    let path = leak(format!("/v1beta/models/{model}:generateContent").into_bytes());
    let r = Case::new(
        std::str::from_utf8(path).unwrap(),
        "application/json",
        vec![Part::Bytes(b"{}")],
    )
    .request(vec![Part::Bytes(b"{}")])
    .check("path model at the cap");
    assert_eq!(r.model.as_deref(), Some(model.as_str()));
}

#[test]
fn inspection_limit_bounds_decompression_work_within_one_chunk() {
    let _g = serial();
    // 64 MiB of whitespace from about 64 KiB of gzip, arriving as one chunk.
    let prefix = br#"{"usage":{"prompt_tokens":1}, "pad":"#;
    let member = gzip_member(prefix, 4 * MIB, b"");
    let mut z = Vec::new();
    for _ in 0..16 {
        z.extend_from_slice(&member);
    }
    let run = |limit: Option<u64>| {
        let mut opts = Options::new();
        if let Some(l) = limit {
            opts = opts.max_body_bytes(l);
        }
        let mut ex = Exchange::with_options(opts);
        ex.on_request_head("POST", "/v1/chat/completions", [("a", "b")]);
        ex.on_response_head(
            200,
            [
                ("content-type", "application/json"),
                ("content-encoding", "gzip"),
            ],
        );
        ex.on_response_body(&z);
        ex.on_response_end();
        (ex.finish(), ex.work())
    };
    let (_, full) = run(None);
    assert_eq!(full.decoded_bytes, 16 * (4 * MIB + prefix.len()) as u64);
    let (r, limited) = run(Some(1024));
    println!(
        "64 MiB bomb in one chunk ({} bytes): {full:?} unlimited, {limited:?} with a 1 KiB limit",
        z.len()
    );
    assert!(!r.complete);
    assert_eq!(limited.received_bytes, z.len() as u64);
    assert_eq!(limited.inspected_bytes, 1024);
    // Decoding stopped at the limit: at most one output buffer past it, from a few KiB of
    // compressed input (the README's promise: within 16 KiB of compressed input).
    let out_buf = limits::INFLATE_OUTPUT_BUFFER as u64;
    assert!(
        limited.decoded_bytes <= 1024 + out_buf,
        "decoded {} bytes for a 1 KiB limit",
        limited.decoded_bytes
    );
    assert!(
        limited.decoder_input_bytes <= 16 * 1024,
        "consumed {} compressed bytes for a 1 KiB limit",
        limited.decoder_input_bytes
    );
    assert!(full.decoded_bytes > 4096 * limited.decoded_bytes);
}

// ---------------------------------------------------------------------------------------
// Base64-wrapped events (Bedrock InvokeModelWithResponseStream)

/// Base64 of `data`, padded with JSON whitespace after its first byte to a multiple of
/// 3 bytes, so that encodings of consecutive parts concatenate.
fn b64(data: &[u8]) -> Vec<u8> {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut data = data.to_vec();
    while data.len() % 3 != 0 {
        data.insert(1, b' ');
    }
    data.chunks(3)
        .flat_map(|c| {
            let n = (u32::from(c[0]) << 16) | (u32::from(c[1]) << 8) | u32::from(c[2]);
            [18, 12, 6, 0].map(|s| A[(n >> s & 63) as usize])
        })
        .collect()
}

#[test]
fn base64_wrapped_event_of_64_mib() {
    let _g = serial();
    // The decoded event: metrics first, then a 48 MiB string, then a deep nest.
    let head = leak(b64(
        br#"{"amazon-bedrock-invocationMetrics":{"inputTokenCount":5,"outputTokenCount":6},"x":""#,
    ));
    let fill = leak(b64(b"aaa"));
    let nest = leak(b64(b"[[["));
    let tail = leak(b64(b"\"} "));
    let r = Case::new(
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "application/json",
        vec![
            Part::Bytes(br#"{"bytes":""#),
            Part::Bytes(head),
            Part::Repeat(fill, 64 * MIB),
            Part::Bytes(tail),
            Part::Bytes(br#""}"#),
        ],
    )
    .check("64 MiB base64 event");
    assert_eq!((r.input_tokens, r.output_tokens), (Some(5), Some(6)));
    assert!(r.complete);
    // Decoded into an unclosed 100,000-deep nest: the inner event never completes.
    let r = Case::new(
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "application/json",
        vec![
            Part::Bytes(br#"{"bytes":""#),
            Part::Bytes(leak(b64(br#"{"x":"#))),
            Part::Repeat(nest, 100_000 * 4),
            Part::Bytes(br#""}"#),
        ],
    )
    .check("base64 deep nest");
    assert_eq!(r.input_tokens, None);
    // Not base64 at all.
    let r = Case::new(
        "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke",
        "application/json",
        vec![
            Part::Bytes(br#"{"bytes":""#),
            Part::Repeat(b"$%^&\\\"", 16 * MIB),
            Part::Bytes(br#""}"#),
        ],
    )
    .check("base64 garbage");
    assert_eq!(r.input_tokens, None);
}

// ---------------------------------------------------------------------------------------
// Callbacks out of order (a frontend bug, or a proxy's odd lifecycle)

#[test]
fn callbacks_in_any_order_never_panic() {
    let _g = serial();
    let body = b"data: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n";
    type Step = fn(&mut Exchange, &[u8]);
    let steps: [Step; 8] = [
        |ex, _| ex.on_request_head("POST", "/v1/messages", [("anthropic-version", "1")]),
        |ex, b| ex.on_request_body(b),
        |ex, _| ex.on_request_end(),
        |ex, _| ex.on_response_head(200, [("content-type", "text/event-stream")]),
        |ex, b| ex.on_response_body(b),
        |ex, _| ex.on_response_end(),
        |ex, _| {
            let _ = ex.finish();
        },
        |ex, _| ex.on_response_head(500, [("content-encoding", "br")]),
    ];
    // Every sequence of four steps (8^4), then the record.
    for n in 0..8usize.pow(4) {
        let mut ex = Exchange::new();
        let mut k = n;
        for _ in 0..4 {
            steps[k % 8](&mut ex, body);
            k /= 8;
        }
        let r = ex.record();
        let _ = (
            ex.model(),
            ex.provider(),
            ex.dialect(),
            ex.response_events(),
        );
        if let (Some(i), Some(o), Some(t)) = (r.input_tokens, r.output_tokens, r.total_tokens) {
            assert_eq!(i + o, t);
        }
    }
}
