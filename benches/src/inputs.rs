//! Deterministic benchmark inputs, generated in code (no files, no randomness between runs).
//!
//! The text is built from a fixed vocabulary by a fixed-seed xorshift generator, with the
//! escapes real model output carries (`\n`, `\"`, `\\`, `\u00e9`, a surrogate pair; about one
//! escape per 100 bytes of text, as in prose with line breaks), so
//! string skipping is measured on realistic escape densities rather than on one long run.

use std::fmt::Write as _;

/// Which way a body is fed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The request body (`on_request_body`).
    Request,
    /// The response body (`on_response_body`).
    Response,
}

/// How the typed serde and `Value` baselines read the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shape {
    /// OpenAI chat completion (chunk or whole object).
    OpenAi,
    /// Anthropic Messages stream events.
    Anthropic,
    /// An Anthropic Messages reply (non-stream): `model` and `usage` at the top level.
    AnthropicReply,
    /// A chat request: `model` and `stream`.
    Request,
}

/// One benchmark input: an exchange's heads and the body under test.
#[derive(Debug, Clone)]
pub struct Input {
    /// Short name printed in the table.
    pub name: &'static str,
    /// Request path.
    pub path: &'static str,
    /// Request headers.
    pub request_headers: Vec<(&'static str, &'static str)>,
    /// Response headers.
    pub response_headers: Vec<(&'static str, &'static str)>,
    /// Which body the bytes are.
    pub side: Side,
    /// The body as it travels (compressed when `gzip`).
    pub wire: Vec<u8>,
    /// The decoded body (equal to `wire` unless `gzip`).
    pub decoded: Vec<u8>,
    /// Whether `wire` is gzip.
    pub gzip: bool,
    /// Server-sent events (the baselines parse each `data:` line) or one JSON document.
    pub sse: bool,
    /// Baseline document shape.
    pub shape: Shape,
    /// Events (SSE `data:` lines) or 1 for a single document.
    pub events: u64,
}

/// A fixed-seed xorshift64* generator.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from a seed.
    pub fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }
    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    /// A number in `lo..=hi`.
    pub fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next_u64() % (hi - lo + 1) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the",
    "model",
    "returns",
    "a",
    "streamed",
    "answer",
    "with",
    "tokens",
    "usage",
    "of",
    "request",
    "latency",
    "cache",
    "proxy",
    "mesh",
    "filter",
    "Envoy",
    "count",
    "input",
    "output",
    "reasoning",
    "data",
    "JSON",
    "event",
    "stream",
    "is",
    "and",
    "to",
    "in",
    "for",
    "température",
    "naïve",
    "😀",
    "résumé",
    "fn",
    "main()",
    "{",
    "}",
    "[1, 2]",
    "x = y;",
];

/// Appends JSON string *contents* (already escaped) of about `len` bytes.
fn text(rng: &mut Rng, out: &mut String, len: usize) {
    let start = out.len();
    while out.len() - start < len {
        match rng.range(0, 100) {
            0 => out.push_str("\\n"),
            1 => out.push_str("\\\""),
            2 => out.push_str("\\u00e9"),
            3 => out.push_str("\\\\"),
            4 => out.push_str("\\ud83d\\ude00"),
            5 => out.push_str("\\t"),
            _ => {
                if out.len() > start {
                    out.push(' ');
                }
                out.push_str(WORDS[rng.range(0, WORDS.len() - 1)]);
            }
        }
    }
}

/// Appends a short token for a stream delta (no escapes most of the time).
fn token(rng: &mut Rng, out: &mut String) {
    out.push(' ');
    out.push_str(WORDS[rng.range(0, WORDS.len() - 1)]);
    if rng.range(0, 20) == 0 {
        out.push_str("\\n\\n");
    }
}

/// Events in each generated stream.
pub const STREAM_EVENTS: usize = 2000;

/// An OpenAI Chat Completions SSE stream (`stream_options.include_usage`): 2,000 content
/// chunks, a finish chunk, the usage chunk and `[DONE]`.
pub fn openai_sse() -> Input {
    let mut rng = Rng::new(1);
    let mut s = String::new();
    let head = r#"{"id":"chatcmpl-B9MBs8CjcvOU2jLn4n570S5qMJKcT","object":"chat.completion.chunk","created":1741569952,"model":"gpt-4o-mini-2024-07-18","service_tier":"default","system_fingerprint":"fp_06737a9306","choices":["#;
    for i in 0..STREAM_EVENTS {
        s.push_str("data: ");
        s.push_str(head);
        if i == 0 {
            s.push_str(r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#);
        } else {
            s.push_str(r#"{"index":0,"delta":{"content":""#);
            token(&mut rng, &mut s);
            s.push_str(r#""},"logprobs":null,"finish_reason":null}"#);
        }
        s.push_str("],\"usage\":null}\n\n");
    }
    s.push_str("data: ");
    s.push_str(head);
    s.push_str(r#"{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}],"usage":null}"#);
    s.push_str("\n\n");
    s.push_str("data: ");
    s.push_str(head);
    s.push_str(r#"],"usage":{"prompt_tokens":1117,"completion_tokens":2000,"total_tokens":3117,"prompt_tokens_details":{"cached_tokens":1024,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#);
    s.push_str("\n\ndata: [DONE]\n\n");
    let bytes = s.into_bytes();
    Input {
        name: "openai_sse",
        path: "/v1/chat/completions",
        request_headers: vec![("content-type", "application/json")],
        response_headers: vec![("content-type", "text/event-stream; charset=utf-8")],
        side: Side::Response,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: true,
        shape: Shape::OpenAi,
        events: STREAM_EVENTS as u64 + 3,
    }
}

/// An Anthropic Messages SSE stream: `message_start`, 2,000 text deltas (plus the block
/// start/stop and pings), the cumulative `message_delta` and `message_stop`.
pub fn anthropic_sse() -> Input {
    let mut rng = Rng::new(2);
    let mut s = String::new();
    let mut events = 0u64;
    let mut ev = |s: &mut String, name: &str, data: &str| {
        let _ = write!(s, "event: {name}\ndata: {data}\n\n");
        events += 1;
    };
    ev(
        &mut s,
        "message_start",
        r#"{"type":"message_start","message":{"id":"msg_01XFDUDYJgAACzvnptvVoYEL","type":"message","role":"assistant","content":[],"model":"claude-sonnet-4-5-20250929","stop_reason":null,"stop_sequence":null,"usage":{"input_tokens":2107,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1,"service_tier":"standard"}}}"#,
    );
    ev(
        &mut s,
        "content_block_start",
        r#"{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}"#,
    );
    ev(&mut s, "ping", r#"{"type": "ping"}"#);
    let mut data = String::new();
    for _ in 0..STREAM_EVENTS - 5 {
        data.clear();
        data.push_str(
            r#"{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":""#,
        );
        token(&mut rng, &mut data);
        data.push_str(r#""}}"#);
        ev(&mut s, "content_block_delta", &data);
    }
    ev(
        &mut s,
        "content_block_stop",
        r#"{"type":"content_block_stop","index":0}"#,
    );
    ev(
        &mut s,
        "message_delta",
        r#"{"type":"message_delta","delta":{"stop_reason":"end_turn","stop_sequence":null},"usage":{"input_tokens":2107,"cache_creation_input_tokens":0,"cache_read_input_tokens":1800,"output_tokens":1995}}"#,
    );
    ev(&mut s, "message_stop", r#"{"type":"message_stop"}"#);
    let bytes = s.into_bytes();
    Input {
        name: "anthropic_sse",
        path: "/v1/messages",
        request_headers: vec![
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
        response_headers: vec![("content-type", "text/event-stream; charset=utf-8")],
        side: Side::Response,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: true,
        shape: Shape::Anthropic,
        events,
    }
}

/// Target size of the large bodies.
pub const MIB: usize = 1 << 20;

fn completion_body() -> Vec<u8> {
    let mut rng = Rng::new(3);
    let mut s = String::with_capacity(MIB + 4096);
    s.push_str(r#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":""#);
    let tail = r#"","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":1117,"completion_tokens":46,"total_tokens":1163,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#;
    let room = MIB - s.len() - tail.len();
    text(&mut rng, &mut s, room);
    s.push_str(tail);
    s.into_bytes()
}

/// A 1 MiB non-stream chat completion: one long escaped content string, usage at the end.
pub fn openai_1mib() -> Input {
    let bytes = completion_body();
    Input {
        name: "openai_1mib",
        path: "/v1/chat/completions",
        request_headers: vec![("content-type", "application/json")],
        response_headers: vec![("content-type", "application/json")],
        side: Side::Response,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: false,
        shape: Shape::OpenAi,
        events: 1,
    }
}

/// A 1 MiB chat request whose `model` comes after the messages (a long conversation with
/// tool calls whose arguments are escaped JSON).
pub fn request_1mib() -> Input {
    let mut rng = Rng::new(4);
    let mut s = String::with_capacity(MIB + 4096);
    s.push_str(r#"{"messages":[{"role":"system","content":"You are a helpful assistant."}"#);
    let tail = r#"],"temperature":0.7,"max_tokens":4096,"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}],"stream":true,"stream_options":{"include_usage":true},"model":"gpt-4o-mini"}"#;
    let mut turn = 0;
    while s.len() + tail.len() + 3000 < MIB {
        turn += 1;
        match turn % 3 {
            0 => {
                let _ = write!(
                    s,
                    r#",{{"role":"assistant","content":null,"tool_calls":[{{"id":"call_{turn}","type":"function","function":{{"name":"get_weather","arguments":"{{\"city\": \"Paris\", \"unit\": \"celsius\", \"days\": [1, 2, 3]}}"}}}}]}},{{"role":"tool","tool_call_id":"call_{turn}","content":""#
                );
                text(&mut rng, &mut s, 300);
                s.push_str("\"}");
            }
            1 => {
                s.push_str(r#",{"role":"user","content":[{"type":"text","text":""#);
                let n = rng.range(200, 2500);
                text(&mut rng, &mut s, n);
                s.push_str("\"}]}");
            }
            _ => {
                s.push_str(r#",{"role":"assistant","content":""#);
                let n = rng.range(500, 4000);
                text(&mut rng, &mut s, n);
                s.push_str("\"}");
            }
        }
    }
    s.push_str(tail);
    let bytes = s.into_bytes();
    Input {
        name: "request_1mib",
        path: "/v1/chat/completions",
        request_headers: vec![("content-type", "application/json")],
        response_headers: vec![],
        side: Side::Request,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: false,
        shape: Shape::Request,
        events: 1,
    }
}

/// Gzip (RFC 1952) of `data`, level 6.
pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff];
    out.extend_from_slice(&miniz_oxide::deflate::compress_to_vec(data, 6));
    out.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

/// The 1 MiB completion, gzip-compressed (`content-encoding: gzip`).
pub fn gzip_1mib() -> Input {
    let decoded = completion_body();
    Input {
        name: "gzip_1mib",
        path: "/v1/chat/completions",
        request_headers: vec![("content-type", "application/json")],
        response_headers: vec![
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
        ],
        side: Side::Response,
        wire: gzip(&decoded),
        decoded,
        gzip: true,
        sse: false,
        shape: Shape::OpenAi,
        events: 1,
    }
}

/// A small non-stream chat completion (about 700 bytes): what most calls look like, where
/// the per-exchange fixed cost (creating the exchange, detection, heads) shows.
pub fn openai_small() -> Input {
    let bytes = br#"{"id":"chatcmpl-B9MHDbslfkBeAs8l4bebGdFOJ6PeG","object":"chat.completion","created":1741570283,"model":"gpt-4o-2024-08-06","choices":[{"index":0,"message":{"role":"assistant","content":"The capital of France is Paris. It has been the country's capital since 987 and is its largest city.","refusal":null,"annotations":[]},"logprobs":null,"finish_reason":"stop"}],"usage":{"prompt_tokens":14,"completion_tokens":24,"total_tokens":38,"prompt_tokens_details":{"cached_tokens":0,"audio_tokens":0},"completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,"accepted_prediction_tokens":0,"rejected_prediction_tokens":0}},"service_tier":"default","system_fingerprint":"fp_fc9f1d7035"}"#.to_vec();
    Input {
        name: "openai_small",
        path: "/v1/chat/completions",
        request_headers: vec![("content-type", "application/json")],
        response_headers: vec![("content-type", "application/json")],
        side: Side::Response,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: false,
        shape: Shape::OpenAi,
        events: 1,
    }
}

/// A small non-stream Anthropic Messages reply (about 500 bytes): the per-exchange fixed
/// cost on the Anthropic dialect.
pub fn anthropic_small() -> Input {
    let bytes = br#"{"id":"msg_01EcyWo6m4hyW8KHs2y2pei5","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929","content":[{"type":"text","text":"The capital of France is Paris. It has been the country's capital since 987 and is its largest city."}],"stop_reason":"end_turn","stop_sequence":null,"usage":{"input_tokens":14,"cache_creation_input_tokens":0,"cache_read_input_tokens":0,"cache_creation":{"ephemeral_5m_input_tokens":0,"ephemeral_1h_input_tokens":0},"output_tokens":26,"service_tier":"standard"}}"#.to_vec();
    Input {
        name: "anthropic_small",
        path: "/v1/messages",
        request_headers: vec![
            ("content-type", "application/json"),
            ("anthropic-version", "2023-06-01"),
        ],
        response_headers: vec![("content-type", "application/json")],
        side: Side::Response,
        wire: bytes.clone(),
        decoded: bytes,
        gzip: false,
        sse: false,
        shape: Shape::AnthropicReply,
        events: 1,
    }
}

/// Every input, in table order.
pub fn all() -> Vec<Input> {
    vec![
        openai_sse(),
        anthropic_sse(),
        openai_1mib(),
        request_1mib(),
        gzip_1mib(),
        openai_small(),
        anthropic_small(),
    ]
}

/// Realistic chunk boundaries: sizes drawn between 1 and 16 KiB, fixed seed.
pub fn chunk_sizes(len: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut sizes = Vec::new();
    let mut at = 0;
    while at < len {
        let n = rng.range(1024, 16 * 1024).min(len - at);
        sizes.push(n);
        at += n;
    }
    sizes
}
