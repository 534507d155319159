//! Bounded memory: the heap an exchange holds does not grow with the body.
//!
//! A counting global allocator tracks live heap bytes; each case feeds a 10 MiB body in
//! 16 KiB chunks (generated on the fly, so the test itself holds only one chunk) and
//! asserts that the peak heap during the exchange stays under the bound stated in the
//! README ("Limits and guarantees"): 6 KiB of heap for plain bodies, 80 KiB with
//! gzip/deflate (the inflate window), and the window plus a few hundred KiB with zstd or br
//! (their windows are up to 8 MiB), on top of `size_of::<Exchange>()` which is inline.

use llm_usage_core::{encode_event_stream_message, Exchange};
use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;

struct Counting;
static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);
/// Tests in this binary run one at a time so the counters mean something.
static SERIAL: Mutex<()> = Mutex::new(());

thread_local! {
    /// Only the thread measuring an exchange is counted (not the test harness's threads).
    static TRACKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

fn tracked() -> bool {
    TRACKED.try_with(std::cell::Cell::get).unwrap_or(false)
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        if tracked() {
            let now = LIVE.fetch_add(l.size(), SeqCst) + l.size();
            PEAK.fetch_max(now, SeqCst);
        }
        // SAFETY: forwarding the caller's layout to the system allocator.
        unsafe { System.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if tracked() {
            LIVE.fetch_sub(l.size(), SeqCst);
        }
        // SAFETY: `p` was allocated by `System` with this layout.
        unsafe { System.dealloc(p, l) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const TEN_MIB: usize = 10 * 1024 * 1024;
const CHUNK: usize = 16 * 1024;
const PLAIN_BOUND: usize = 6 * 1024;
const COMPRESSED_BOUND: usize = 80 * 1024;
/// zstd: the frame's window (at most 8 MiB; 64 KiB more while the ring grows to it), a
/// compressed block and its literals (128 KiB each at most), tables.
const ZSTD_BOUND: usize = llm_usage_core::limits::MAX_DECODER_WINDOW + 384 * 1024;
/// br: the window (at most 8 MiB; brotli-decompressor grows its ring from at most a quarter
/// of the window to the window, holding both for a moment) and the meta-block's prefix-code
/// tables (at most about 2.6 MiB).
const BROTLI_BOUND: usize = llm_usage_core::limits::MAX_DECODER_WINDOW / 4 * 5 + 3 * 1024 * 1024;

/// Feeds `total` bytes produced by `next` (a chunk generator reusing one buffer).
fn measure(
    path: &str,
    content_type: &str,
    encoding: Option<&str>,
    mut next: impl FnMut(&mut Vec<u8>) -> bool,
) -> (usize, llm_usage_core::UsageRecord) {
    // Allocated before the baseline is read, and large enough never to grow.
    let mut chunk = Vec::with_capacity(CHUNK * 8);
    // The scanners' per-table data is derived once per table and kept
    // (`scan::Derived`): an exchange with the same heads first, so that the bound is what
    // an exchange holds, not the one-time table cache.
    let mut warm = Exchange::new();
    warm.on_request_head("POST", path, [("content-type", "application/json")]);
    warm.on_response_head(200, [("content-type", content_type)]);
    drop(warm);
    let before = LIVE.load(SeqCst);
    PEAK.store(before, SeqCst);
    TRACKED.with(|t| t.set(true));
    let mut ex = Exchange::new();
    ex.on_request_head("POST", path, [("content-type", "application/json")]);
    ex.on_request_body(br#"{"model":"m","stream":true}"#);
    let mut headers = vec![("content-type", content_type)];
    if let Some(e) = encoding {
        headers.push(("content-encoding", e));
    }
    ex.on_response_head(200, headers);
    loop {
        chunk.clear();
        let more = next(&mut chunk);
        ex.on_response_body(&chunk);
        if !more {
            break;
        }
    }
    ex.on_response_end();
    let r = ex.finish();
    drop(ex);
    TRACKED.with(|t| t.set(false));
    let peak = PEAK.load(SeqCst) - before;
    (peak, r)
}

fn sse_stream() -> impl FnMut(&mut Vec<u8>) -> bool {
    let mut sent = 0usize;
    let mut i = 0u64;
    move |buf| {
        while buf.len() < CHUNK && sent < TEN_MIB {
            let ev = format!(
                "data: {{\"id\":\"c\",\"model\":\"gpt-x\",\"choices\":[{{\"delta\":{{\"content\":\"tok \\\"{i}\\\" \\u00e9\"}}}}],\"usage\":null}}\n\n"
            );
            sent += ev.len();
            buf.extend_from_slice(ev.as_bytes());
            i += 1;
        }
        if sent >= TEN_MIB {
            buf.extend_from_slice(b"data: {\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":7,\"completion_tokens\":9,\"total_tokens\":16}}\n\ndata: [DONE]\n\n");
            return false;
        }
        true
    }
}

#[test]
fn sse_10_mib() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let (peak, r) = measure(
        "/v1/chat/completions",
        "text/event-stream",
        None,
        sse_stream(),
    );
    assert_eq!(
        (r.input_tokens, r.output_tokens, r.total_tokens),
        (Some(7), Some(9), Some(16))
    );
    assert!(r.complete);
    assert!(peak <= PLAIN_BOUND, "peak heap {peak} bytes");
    println!(
        "sse 10 MiB: peak heap {peak} bytes, Exchange inline {} bytes",
        std::mem::size_of::<Exchange>()
    );
}

#[test]
fn json_10_mib_content_string() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut state = 0usize;
    let gen = move |buf: &mut Vec<u8>| {
        if state == 0 {
            buf.extend_from_slice(br#"{"model":"gpt-big","choices":[{"message":{"content":""#);
        }
        while buf.len() < CHUNK && state < TEN_MIB {
            buf.extend_from_slice(br#"lorem \"usage\": {\"prompt_tokens\": 999} \\ \u00e9 "#);
            state += 48;
        }
        if state >= TEN_MIB {
            buf.extend_from_slice(
                br#""}}],"usage":{"prompt_tokens":11,"completion_tokens":5,"total_tokens":16}}"#,
            );
            return false;
        }
        state += 1;
        true
    };
    let (peak, r) = measure("/v1/chat/completions", "application/json", None, gen);
    assert_eq!(r.model.as_deref(), Some("gpt-big"));
    assert_eq!(r.input_tokens, Some(11));
    assert!(r.complete);
    assert!(peak <= PLAIN_BOUND, "peak heap {peak} bytes");
}

#[test]
fn gzip_10_mib_stream() {
    use miniz_oxide::deflate::core::{
        compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
    };
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // Compress the SSE generator's output on the fly into a gzip stream.
    let mut plain = sse_stream();
    let mut comp = Box::new(CompressorOxide::new(create_comp_flags_from_zip_params(
        6, -15, 0,
    )));
    let mut crc = crc32fast::Hasher::new();
    let mut size = 0u32;
    let mut header_sent = false;
    let mut done = false;
    let mut scratch = Vec::with_capacity(CHUNK * 2);
    let mut out = vec![0u8; 64 * 1024];
    let gen = move |buf: &mut Vec<u8>| {
        if !header_sent {
            buf.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
            header_sent = true;
        }
        if done {
            return false;
        }
        scratch.clear();
        let more = plain(&mut scratch);
        crc.update(&scratch);
        size = size.wrapping_add(scratch.len() as u32);
        let flush = if more {
            TDEFLFlush::None
        } else {
            TDEFLFlush::Finish
        };
        let mut input = &scratch[..];
        loop {
            let (_, used, written) = compress(&mut comp, input, &mut out, flush);
            buf.extend_from_slice(&out[..written]);
            input = &input[used..];
            if input.is_empty() && written < out.len() {
                break;
            }
        }
        if !more {
            buf.extend_from_slice(&crc.clone().finalize().to_le_bytes());
            buf.extend_from_slice(&size.to_le_bytes());
            done = true;
            return false;
        }
        true
    };
    let (peak, r) = measure(
        "/v1/chat/completions",
        "text/event-stream",
        Some("gzip"),
        gen,
    );
    assert_eq!(r.total_tokens, Some(16));
    assert!(r.complete);
    assert!(peak <= COMPRESSED_BOUND, "peak heap {peak} bytes");
    println!("gzip sse 10 MiB: peak heap {peak} bytes");
}

#[test]
fn event_stream_10_mib() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let delta = encode_event_stream_message(
        &[
            (":event-type", "contentBlockDelta"),
            (":message-type", "event"),
        ],
        br#"{"contentBlockIndex":0,"delta":{"text":"hello there, \"friend\""},"p":"abcdefgh"}"#,
    );
    // The stream's end: `messageStop`, then `metadata` with the usage and metrics.
    let mut meta = encode_event_stream_message(
        &[(":event-type", "messageStop"), (":message-type", "event")],
        br#"{"stopReason":"end_turn"}"#,
    );
    meta.extend(encode_event_stream_message(
        &[(":event-type", "metadata"), (":message-type", "event")],
        br#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7},"metrics":{"latencyMs":1}}"#,
    ));
    let mut sent = 0usize;
    let gen = move |buf: &mut Vec<u8>| {
        while buf.len() < CHUNK && sent < TEN_MIB {
            buf.extend_from_slice(&delta);
            sent += delta.len();
        }
        if sent >= TEN_MIB {
            buf.extend_from_slice(&meta);
            return false;
        }
        true
    };
    let (peak, r) = measure(
        "/model/amazon.nova-lite-v1%3A0/converse-stream",
        "application/vnd.amazon.eventstream",
        None,
        gen,
    );
    assert_eq!(r.total_tokens, Some(7));
    assert_eq!(r.model.as_deref(), Some("amazon.nova-lite-v1:0"));
    assert!(r.complete);
    assert!(peak <= PLAIN_BOUND, "peak heap {peak} bytes");
}

/// The SSE generator's 10 MiB, compressed before measuring (the test holds the compressed
/// body, not the decoded one), fed in 16 KiB chunks.
fn compressed_sse(
    compress: impl FnOnce(&mut dyn FnMut() -> Option<Vec<u8>>) -> Vec<u8>,
) -> impl FnMut(&mut Vec<u8>) -> bool {
    let mut plain = sse_stream();
    let mut done = false;
    let z = compress(&mut || {
        if done {
            return None;
        }
        let mut buf = Vec::new();
        done = !plain(&mut buf);
        Some(buf)
    });
    let mut at = 0;
    move |buf| {
        let end = (at + CHUNK).min(z.len());
        buf.extend_from_slice(&z[at..end]);
        at = end;
        at < z.len()
    }
}

#[test]
fn zstd_10_mib_stream() {
    use std::io::Write;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // libzstd at level 3, streamed (no content size: the window is the level's, 2 MiB...
    // or what the encoder picks), flushed every event chunk as a server would.
    let gen = compressed_sse(|next| {
        let mut e = zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
        e.include_checksum(true).unwrap();
        while let Some(piece) = next() {
            e.write_all(&piece).unwrap();
            e.flush().unwrap();
        }
        e.finish().unwrap()
    });
    let (peak, r) = measure(
        "/v1/chat/completions",
        "text/event-stream",
        Some("zstd"),
        gen,
    );
    assert_eq!(r.total_tokens, Some(16));
    assert!(r.complete);
    assert!(peak <= ZSTD_BOUND, "peak heap {peak} bytes");
    println!("zstd sse 10 MiB: peak heap {peak} bytes");
}

#[test]
fn br_10_mib_stream() {
    use std::io::Write;
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    // The brotli crate at quality 5 with a 4 MiB window (lgwin 22, the reference default),
    // flushed every chunk.
    let gen = compressed_sse(|next| {
        let mut z = Vec::new();
        {
            let mut w = brotli::CompressorWriter::new(&mut z, 4096, 5, 22);
            while let Some(piece) = next() {
                w.write_all(&piece).unwrap();
                w.flush().unwrap();
            }
        }
        z
    });
    let (peak, r) = measure("/v1/chat/completions", "text/event-stream", Some("br"), gen);
    assert_eq!(r.total_tokens, Some(16));
    assert!(r.complete);
    assert!(peak <= BROTLI_BOUND, "peak heap {peak} bytes");
    println!("br sse 10 MiB: peak heap {peak} bytes");
}

/// Small responses (fixtures 50-53: a JSON response and an SSE stream in br and zstd)
/// cost little: the rings are sized by what was decoded, not by the window.
#[test]
fn small_br_and_zstd_bodies() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
    for (name, path, ct, coding) in [
        (
            "50-openai-br-json",
            "/v1/chat/completions",
            "application/json",
            "br",
        ),
        (
            "51-anthropic-br-sse",
            "/v1/messages",
            "text/event-stream",
            "br",
        ),
        (
            "52-openai-zstd-json",
            "/v1/chat/completions",
            "application/json",
            "zstd",
        ),
        (
            "53-anthropic-zstd-sse",
            "/v1/messages",
            "text/event-stream",
            "zstd",
        ),
    ] {
        let body = std::fs::read(dir.join(name).join("response.bin")).unwrap();
        let mut sent = false;
        let (peak, r) = measure(path, ct, Some(coding), |buf| {
            if !sent {
                buf.extend_from_slice(&body);
                sent = true;
            }
            false
        });
        assert!(r.output_tokens.is_some() && r.complete, "{name}");
        println!("{name}: peak heap {peak} bytes");
        assert!(peak <= 64 * 1024, "{name}: peak heap {peak} bytes");
    }
}

/// An OpenAI Images response whose `b64_json` is 10 MiB (a large PNG as base64): the image
/// is skipped like any long string, in the same bounded heap, and the usage after it is read.
#[test]
fn images_json_10_mib_b64_json() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    let mut sent = 0usize;
    let gen = move |buf: &mut Vec<u8>| {
        if sent == 0 {
            buf.extend_from_slice(br#"{"created":1764921600,"data":[{"b64_json":"iVBORw0KGgo"#);
        }
        while buf.len() < CHUNK && sent < TEN_MIB {
            buf.extend_from_slice(b"AAAAQUJDRGVmZ2hp+/09");
            sent += 20;
        }
        if sent >= TEN_MIB {
            buf.extend_from_slice(
                br#"AA=="}],"output_format":"png","usage":{"input_tokens":14,"input_tokens_details":{"image_tokens":0,"text_tokens":14},"output_tokens":4160,"total_tokens":4174}}"#,
            );
            return false;
        }
        true
    };
    let (peak, r) = measure("/v1/images/generations", "application/json", None, gen);
    assert_eq!(
        (r.input_tokens, r.output_tokens, r.total_tokens),
        (Some(14), Some(4160), Some(4174))
    );
    assert_eq!(
        (r.input_image_tokens, r.output_image_tokens),
        (Some(0), Some(4160))
    );
    assert!(r.complete);
    assert!(peak <= PLAIN_BOUND, "peak heap {peak} bytes");
}

/// A streamed image generation whose partial and final images are 2 MiB of base64 each
/// (10 MiB in all): bounded heap, and the usage of `image_generation.completed`.
#[test]
fn images_sse_10_mib_of_partial_images() {
    let _g = SERIAL.lock().unwrap_or_else(|e| e.into_inner());
    const IMAGE: usize = 2 * 1024 * 1024;
    let (mut image, mut in_image, mut events) = (0usize, false, 0u32);
    let gen = move |buf: &mut Vec<u8>| {
        while buf.len() < CHUNK {
            if !in_image {
                let ty = if events < 4 {
                    "partial_image"
                } else {
                    "completed"
                };
                buf.extend_from_slice(
                    format!("event: image_generation.{ty}\ndata: {{\"type\":\"image_generation.{ty}\",\"b64_json\":\"").as_bytes(),
                );
                in_image = true;
                image = 0;
            }
            while buf.len() < CHUNK && image < IMAGE {
                buf.extend_from_slice(b"iVBORw0KGgoAAAANSUhE");
                image += 20;
            }
            if image < IMAGE {
                break;
            }
            in_image = false;
            if events < 4 {
                buf.extend_from_slice(
                    format!("\",\"partial_image_index\":{events},\"output_format\":\"png\"}}\n\n")
                        .as_bytes(),
                );
                events += 1;
            } else {
                buf.extend_from_slice(br#"","output_format":"png","usage":{"total_tokens":1275,"input_tokens":19,"output_tokens":1256,"input_tokens_details":{"text_tokens":19,"image_tokens":0}}}"#);
                buf.extend_from_slice(b"\n\n");
                return false;
            }
        }
        true
    };
    let (peak, r) = measure("/v1/images/generations", "text/event-stream", None, gen);
    assert_eq!(
        (r.input_tokens, r.output_tokens, r.output_image_tokens),
        (Some(19), Some(1256), Some(1256))
    );
    assert!(r.complete);
    assert!(peak <= PLAIN_BOUND, "peak heap {peak} bytes");
}
