//! # llm-usage-core
//!
//! A zero-copy, streaming parser that turns the HTTP traffic of LLM APIs into a
//! normalised [`UsageRecord`]: provider, model, stream flag, and input / output / total /
//! cached / cache-creation / reasoning tokens, following the OpenTelemetry GenAI semantic
//! conventions.
//!
//! It is built for infrastructure: a proxy filter or middleware feeds request and response
//! bodies to an [`Exchange`] chunk by chunk, as they pass, split at any byte. The core
//! never buffers a body, never allocates per chunk, holds a fixed amount of memory per
//! exchange whatever the body size, and never panics on bad input: what it cannot read
//! stays unknown (`None`) in the record.
//!
//! ```text
//! bytes ─> content decoding ─> framing ─> JSON scan ─> dialect ─> UsageRecord
//!          (gzip, deflate,     (SSE, NDJSON,  (watched    (paths → fields,
//!           br, zstd)           JSON array,    paths only)  last-wins/sum)
//!                               event-stream)
//! ```
//!
//! The core knows nothing of Envoy, tower or Prometheus: see `llm-usage-wasm`,
//! `llm-usage-tower` and `llm-usage-cli` for frontends.
//!
//! ```
//! use llm_usage_core::Exchange;
//!
//! let mut ex = Exchange::new();
//! ex.on_request_head("POST", "/v1/messages", [("anthropic-version", "2023-06-01")]);
//! ex.on_request_body(br#"{"model":"claude-sonnet-4-5","stream":true,"messages":[]}"#);
//! ex.on_response_head(200, [("content-type", "text/event-stream")]);
//! ex.on_response_body(b"event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"model\":\"claude-sonnet-4-5-20250929\",\"usage\":{\"input_tokens\":12,\"output_tokens\":1}}}\n\n");
//! ex.on_response_body(b"event: message_delta\ndata: {\"type\":\"message_delta\",\"usage\":{\"output_tokens\":30}}\n\n");
//! ex.on_response_end();
//! let r = ex.finish();
//! assert_eq!(r.input_tokens, Some(12));
//! assert_eq!(r.output_tokens, Some(30)); // cumulative: set, not added
//! assert_eq!(r.total_tokens, Some(42));
//! assert_eq!(r.stream, Some(true));
//! ```

// One module may use `unsafe`: the SSE2 classification of `index` (see there why).
#![deny(unsafe_code)]
#![warn(missing_docs)]

extern crate alloc;

mod base64;
mod body;
#[cfg(feature = "bpe")]
mod bpe;
mod crc32;
mod decode;
mod dialect;
mod exchange;
mod framing;
#[cfg(fuzzing)]
#[doc(hidden)]
pub mod fuzzing;
mod index;
pub mod inject;
mod record;
// The JSON scanner's own API: public for the fuzz targets only (`__test-internals`).
#[cfg(feature = "__test-internals")]
#[doc(hidden)]
pub mod scan;
#[cfg(not(feature = "__test-internals"))]
mod scan;
mod swar;
mod text;
mod tokens;
mod values;
mod work;

pub use body::FramingKind;
#[cfg(feature = "bpe")]
pub use bpe::{Bpe, PENDING_CAP as BPE_PENDING_CAP};
pub use exchange::{Exchange, Options};
/// Encodes one AWS event-stream message (Bedrock's streaming framing): for tests, fuzz
/// seeds and benchmarks only, behind the unstable `__test-internals` feature.
#[cfg(feature = "__test-internals")]
#[doc(hidden)]
pub use framing::eventstream::encode_message as encode_event_stream_message;
pub use record::{Operation, Provider, UnknownProvider, UsageRecord};
pub use text::TextStats;
pub use tokens::{NewTokenCounter, TokenCounter};
pub use work::Work;

/// Memory limits, in bytes, of the fixed-size parts of an exchange.
pub mod limits {
    pub use crate::body::MAX_PENDING_RECORDS;
    pub use crate::decode::MAX_WINDOW as MAX_DECODER_WINDOW;
    pub use crate::decode::OUT_BUF as DECODER_OUTPUT_BUFFER;
    /// The former name of [`DECODER_OUTPUT_BUFFER`] (gzip/deflate only, then).
    pub use crate::decode::OUT_BUF as INFLATE_OUTPUT_BUFFER;
    pub use crate::framing::eventstream::MAX_MESSAGE as MAX_EVENT_STREAM_MESSAGE;
    pub use crate::framing::websocket::MAX_MESSAGE as MAX_WEBSOCKET_MESSAGE;
    pub use crate::scan::{KEY_CAP, MAX_LIVE_DEPTH, VALUE_CAP};
}
