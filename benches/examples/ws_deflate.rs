//! A compressed WebSocket Realtime conversation through the core: the server's side of an
//! OpenAI Realtime session (many JSON events per response, `response.done` with usage),
//! permessage-deflate with context takeover, fed to an [`Exchange`] after its `101` in
//! 1–16 KiB chunks. Two conversations: `text` (text deltas) and `audio` (transcript deltas
//! and base64 PCM audio deltas, as a voice session sends them).
//!
//! `cargo run --release -p llm-usage-benches --example ws_deflate`
//!
//! Printed per conversation, medians of 41 rounds by this thread's CPU time:
//!
//! - `core`: the whole exchange (framing, inflating, JSON, records), MB/s of wire bytes
//!   and of inflated bytes;
//! - `stream` and `linear`: the inflating alone, the two ways side by side: `miniz_oxide`'s
//!   `inflate::stream` state (32 KiB ring) copied out into an 8 KiB buffer (the WebSocket
//!   framer until 2026-12-07), and the decompressor's non-wrapping mode into one 48 KiB
//!   buffer whose last 32 KiB slide to the front (`decode/inflate.rs`, which the framer
//!   uses since). Each message's payload gets the `00 00 ff ff` tail, and the window is
//!   kept from one message to the next;
//! - `lin 40K`: the same into a 40 KiB buffer (the window and one output), as memory-lean
//!   as `stream`: it slides as soon as anything follows the window, so after every
//!   message once the window is full.
//!
//! Then the heap one such exchange holds at its peak (counting allocator), and its
//! `size_of`.
//!
//! The same source builds against an older core (it uses the public API only), so the
//! `core` figure can be compared across commits. `WS_DEFLATE_ROUNDS=2` (one warm-up, one
//! measured) for a run under callgrind, whose `ws_deflate::core` / `stream` / `linear`
//! inclusive counts are the three ways' instructions.

use llm_usage_benches::alloc::Counting;
use llm_usage_benches::clock::Tick;
use llm_usage_benches::inputs;
use llm_usage_core::Exchange;
use miniz_oxide::deflate::core::{
    compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
};
use miniz_oxide::inflate::core::{decompress, inflate_flags as f, DecompressorOxide};
use miniz_oxide::inflate::stream::{inflate, InflateState};
use miniz_oxide::inflate::TINFLStatus;
use miniz_oxide::{DataFormat, MZFlush};
use std::hint::black_box;

#[global_allocator]
static A: Counting = Counting;

const WINDOW: usize = 32 * 1024;
const STEP: usize = 8 * 1024;
const TAIL: [u8; 4] = [0, 0, 0xff, 0xff];

/// A small xorshift generator: the same conversation every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// Standard base64 of `data` (with padding).
fn base64(data: &[u8]) -> String {
    const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::with_capacity(data.len().div_ceil(3) * 4);
    for c in data.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..4 {
            if i <= c.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

/// 100 ms of 24 kHz 16-bit PCM: a wandering tone with some noise.
fn pcm(rng: &mut Rng, phase: &mut f64) -> Vec<u8> {
    let mut out = Vec::with_capacity(4800);
    for _ in 0..2400 {
        *phase += 0.05 + (rng.next() % 100) as f64 * 1e-4;
        let noise = (rng.next() % 512) as f64 - 256.0;
        let v = (phase.sin() * 6000.0 + noise) as i16;
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}

/// The server's JSON messages of a session of `turns` responses.
fn events(turns: usize, audio: bool) -> Vec<String> {
    let words = [
        "Sure", "here", "is", "a", "short", "answer", "about", "the", "weather", "today", "it",
        "will", "be", "sunny", "with", "light", "winds", "and", "a", "high", "of", "21", "degrees",
    ];
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut phase = 0.0;
    let mut ev = vec![format!(
        r#"{{"type":"session.created","event_id":"event_C9G8s1","session":{{"type":"realtime","object":"realtime.session","id":"sess_C9G8s0Ab12","model":"gpt-realtime-2025-08-28","output_modalities":["{}"],"instructions":"You are a helpful assistant.","tools":[],"tool_choice":"auto","max_output_tokens":"inf","audio":{{"input":{{"format":{{"type":"audio/pcm","rate":24000}},"turn_detection":null}},"output":{{"format":{{"type":"audio/pcm","rate":24000}},"voice":"marin","speed":1.0}}}}}}}}"#,
        if audio { "audio" } else { "text" }
    )];
    let kind = if audio {
        "output_audio_transcript"
    } else {
        "output_text"
    };
    for t in 0..turns {
        let resp = format!("resp_C9G{t:04}x{:08x}", rng.next() as u32);
        let item = format!("item_C9G{t:04}y{:08x}", rng.next() as u32);
        ev.push(format!(
            r#"{{"type":"response.created","event_id":"event_{:010x}","response":{{"object":"realtime.response","id":"{resp}","status":"in_progress","status_details":null,"output":[],"conversation_id":"conv_C9G8s0","output_modalities":["{}"],"max_output_tokens":"inf","audio":{{"output":{{"format":{{"type":"audio/pcm","rate":24000}},"voice":"marin"}}}},"usage":null,"metadata":null}}}}"#,
            rng.next() >> 24,
            if audio { "audio" } else { "text" }
        ));
        ev.push(format!(
            r#"{{"type":"response.output_item.added","event_id":"event_{:010x}","response_id":"{resp}","output_index":0,"item":{{"id":"{item}","type":"message","status":"in_progress","role":"assistant","content":[]}}}}"#,
            rng.next() >> 24
        ));
        let n = 40 + (rng.next() % 40) as usize;
        let mut text = String::new();
        for i in 0..n {
            let w = words[(rng.next() % words.len() as u64) as usize];
            let delta = if i == 0 {
                w.to_owned()
            } else {
                format!(" {w}")
            };
            text.push_str(&delta);
            ev.push(format!(
                r#"{{"type":"response.{kind}.delta","event_id":"event_{:010x}","response_id":"{resp}","item_id":"{item}","output_index":0,"content_index":0,"delta":"{delta}"}}"#,
                rng.next() >> 24
            ));
            if audio && i % 4 == 0 {
                let b64 = base64(&pcm(&mut rng, &mut phase));
                ev.push(format!(
                    r#"{{"type":"response.output_audio.delta","event_id":"event_{:010x}","response_id":"{resp}","item_id":"{item}","output_index":0,"content_index":0,"delta":"{b64}"}}"#,
                    rng.next() >> 24
                ));
            }
        }
        let (input, output) = (100 + t * 37, n * 3);
        ev.push(format!(
            r#"{{"type":"response.{kind}.done","event_id":"event_{:010x}","response_id":"{resp}","item_id":"{item}","output_index":0,"content_index":0,"{}":"{text}"}}"#,
            rng.next() >> 24,
            if audio { "transcript" } else { "text" }
        ));
        ev.push(format!(
            r#"{{"type":"response.done","event_id":"event_{:010x}","response":{{"object":"realtime.response","id":"{resp}","status":"completed","status_details":null,"output":[{{"id":"{item}","type":"message","status":"completed","role":"assistant","content":[{{"type":"{}","{}":"{text}"}}]}}],"conversation_id":"conv_C9G8s0","usage":{{"total_tokens":{},"input_tokens":{input},"output_tokens":{output},"input_token_details":{{"text_tokens":{input},"audio_tokens":0,"image_tokens":0,"cached_tokens":0,"cached_tokens_details":{{"text_tokens":0,"audio_tokens":0,"image_tokens":0}}}},"output_token_details":{{"text_tokens":{output},"audio_tokens":0}}}},"metadata":null}}}}"#,
            rng.next() >> 24,
            if audio { "output_audio" } else { "output_text" },
            if audio { "transcript" } else { "text" },
            input + output
        ));
    }
    ev
}

/// Each message deflated with one compressor (context takeover), sync-flushed, the
/// `00 00 ff ff` tail removed (RFC 7692 §7.2.1).
fn deflate(messages: &[String]) -> Vec<Vec<u8>> {
    let mut c = CompressorOxide::new(create_comp_flags_from_zip_params(6, -15, 0));
    let mut buf = vec![0u8; 64 * 1024];
    messages
        .iter()
        .map(|m| {
            let mut out = Vec::new();
            let mut input = m.as_bytes();
            loop {
                let (_, used, written) = compress(&mut c, input, &mut buf, TDEFLFlush::Sync);
                out.extend_from_slice(&buf[..written]);
                input = &input[used..];
                if input.is_empty() && written < buf.len() {
                    break;
                }
            }
            assert_eq!(out[out.len() - 4..], TAIL);
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

/// An unmasked, final, compressed (RSV1) text frame.
fn frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0xc1];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// The whole exchange through the core; returns the records closed.
#[inline(never)]
fn core(chunks: &[&[u8]]) -> usize {
    let mut ex = Exchange::new();
    ex.on_request_head(
        "GET",
        "/v1/realtime?model=gpt-realtime",
        [
            ("host", "api.openai.com"),
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-version", "13"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    );
    ex.on_request_end();
    ex.on_response_head(
        101,
        [
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
            ("sec-websocket-extensions", "permessage-deflate"),
        ],
    );
    let mut records = 0;
    for c in chunks {
        ex.on_response_body(c);
        records += ex.take_records().len();
    }
    ex.on_response_end();
    records += ex.take_records().len();
    black_box(ex.finish());
    records
}

/// Decoded bytes and a byte of each output, so that nothing is optimised away.
type Out = (usize, u64);

/// `inflate::stream` into an 8 KiB buffer, the window kept across messages.
#[inline(never)]
fn stream(st: &mut InflateState, payloads: &[Vec<u8>]) -> Out {
    let mut out = [0u8; STEP];
    st.reset(DataFormat::Raw);
    let (mut n, mut sum) = (0, 0);
    for p in payloads {
        for mut rest in [&p[..], &TAIL[..]] {
            loop {
                let r = inflate(st, rest, &mut out, MZFlush::None);
                rest = &rest[r.bytes_consumed..];
                n += r.bytes_written;
                sum += u64::from(out[r.bytes_written / 2]);
                if r.status.is_err() || (rest.is_empty() && r.bytes_written < STEP) {
                    break;
                }
            }
        }
    }
    (n, sum)
}

/// The non-wrapping decompressor into a 48 KiB buffer, the window kept across messages.
#[inline(never)]
fn linear(dec: &mut DecompressorOxide, buf: &mut [u8], payloads: &[Vec<u8>]) -> Out {
    const FLAGS: u32 = f::TINFL_FLAG_HAS_MORE_INPUT | f::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    dec.init();
    let (mut n, mut sum, mut pos) = (0, 0, 0);
    for p in payloads {
        for mut rest in [&p[..], &TAIL[..]] {
            loop {
                if buf.len() - pos < STEP {
                    buf.copy_within(pos - WINDOW..pos, 0);
                    pos = WINDOW;
                }
                let (st, used, w) = decompress(dec, rest, &mut buf[..pos + STEP], pos, FLAGS);
                rest = &rest[used..];
                sum += u64::from(buf[pos + w / 2]);
                n += w;
                pos += w;
                if st != TINFLStatus::HasMoreOutput {
                    break;
                }
            }
        }
    }
    (n, sum)
}

fn median(t: &mut [f64]) -> f64 {
    t.sort_by(f64::total_cmp);
    t[t.len() / 2]
}

fn main() {
    println!(
        "heap per direction: stream {} B (InflateState {} + 8 KiB out), linear {} B \
         (DecompressorOxide {} + 48 KiB)",
        core::mem::size_of::<InflateState>() + STEP,
        core::mem::size_of::<InflateState>(),
        core::mem::size_of::<DecompressorOxide>() + WINDOW + 2 * STEP,
        core::mem::size_of::<DecompressorOxide>(),
    );
    let rounds: usize = std::env::var("WS_DEFLATE_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(42);
    for (name, turns, audio) in [("text", 60, false), ("audio", 12, true)] {
        let messages = events(turns, audio);
        let decoded: usize = messages.iter().map(String::len).sum();
        let payloads = deflate(&messages);
        let wire: Vec<u8> = payloads.iter().flat_map(|p| frame(p)).collect();
        let mut chunks = Vec::new();
        let mut at = 0;
        for n in inputs::chunk_sizes(wire.len(), 11) {
            chunks.push(&wire[at..at + n]);
            at += n;
        }
        let mut st = InflateState::new_boxed(DataFormat::Raw);
        let mut dec: Box<DecompressorOxide> = Box::default();
        let mut buf = vec![0u8; WINDOW + 2 * STEP];
        let mut lean = vec![0u8; WINDOW + STEP];
        let mut times = [Vec::new(), Vec::new(), Vec::new(), Vec::new()];
        for round in 0..rounds {
            for (way, t) in times.iter_mut().enumerate() {
                let tick = Tick::now();
                match way {
                    0 => assert_eq!(black_box(core(&chunks)), turns, "{name}: records"),
                    1 => assert_eq!(black_box(stream(&mut st, &payloads)).0, decoded),
                    2 => assert_eq!(black_box(linear(&mut dec, &mut buf, &payloads)).0, decoded),
                    _ => assert_eq!(black_box(linear(&mut dec, &mut lean, &payloads)).0, decoded),
                }
                let s = tick.elapsed().as_secs_f64();
                // The first round warms up.
                if round > 0 {
                    t.push(s);
                }
            }
        }
        let [c, s, l, l40] = times.map(|mut t| median(&mut t));
        println!(
            "{name:<5} {} messages, {} B inflated from {} B on the wire",
            messages.len(),
            decoded,
            wire.len()
        );
        println!(
            "      core   {:8.3} ms  {:6.1} MB/s wire  {:6.1} MB/s inflated",
            c * 1e3,
            wire.len() as f64 / c / 1e6,
            decoded as f64 / c / 1e6
        );
        println!(
            "      stream {:8.3} ms  {:6.1} MB/s inflated",
            s * 1e3,
            decoded as f64 / s / 1e6
        );
        println!(
            "      linear {:8.3} ms  {:6.1} MB/s inflated  ({:.3}x stream)",
            l * 1e3,
            decoded as f64 / l / 1e6,
            s / l
        );
        println!(
            "      lin 40K {:7.3} ms  {:6.1} MB/s inflated  ({:.3}x stream)",
            l40 * 1e3,
            decoded as f64 / l40 / 1e6,
            s / l40
        );
        Counting::enable();
        core(&chunks);
        let heap = Counting::snapshot();
        Counting::disable();
        println!(
            "      core heap peak {} B in {} allocations; size_of::<Exchange>() {} B",
            heap.peak,
            heap.allocs,
            core::mem::size_of::<Exchange>()
        );
    }
}
