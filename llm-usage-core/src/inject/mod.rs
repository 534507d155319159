//! Opt-in `stream_options.include_usage` injection for OpenAI-compatible streams.
//!
//! An OpenAI-compatible `chat/completions` or legacy `completions` stream reports token usage
//! only when the client asked for it with `stream_options.include_usage: true`; otherwise the
//! tokens of the exchange stay unknown. A frontend that enables injection does two things,
//! both decided here, frontend-independently:
//!
//! 1. **The request.** It holds the request body (up to a cap, by default
//!    [`DEFAULT_MAX_INJECT_BODY_BYTES`]) and asks [`rewrite_request`] what to do. For a
//!    streamed request without `include_usage: true` it forwards the rewritten body, which
//!    differs from the original by one inserted or replaced span, and fixes the framing
//!    (`content-length`). Anything unexpected ([`Skip`]) forwards the original bytes and is
//!    counted.
//! 2. **The response.** When the client did not ask for usage, the stream it receives must be
//!    the one it would have had: [`UsageChunkFilter`] removes the usage-only chunk
//!    (`"choices": []` with `"usage"`) and forwards every other byte unchanged, in order. The
//!    frontend still shows the upstream bytes, usage chunk included, to its
//!    [`Exchange`](crate::Exchange), so the record keeps the usage.
//!
//! A client that asked for usage itself gets its request and stream untouched
//! ([`Rewrite::ClientAsked`]).
//!
//! Memory: [`rewrite_request`] reads the body in place and allocates the new body, the list of
//! the top-level members and a nesting bit stack (one bit per level); [`UsageChunkFilter`]
//! holds at most [`MAX_HELD_EVENT`] bytes of one event, plus as much again to join an event of
//! several `data:` lines. Nothing panics on any input (fuzz target `inject`).
//!
//! ```
//! use llm_usage_core::inject::{rewrite_request, Filtered, Rewrite, UsageChunkFilter};
//! use llm_usage_core::Exchange;
//!
//! let client_body = br#"{"model":"gpt-4o-mini","stream":true,"messages":[]}"#;
//! let Rewrite::Injected(upstream_body) = rewrite_request(client_body) else { unreachable!() };
//! assert!(upstream_body.ends_with(br#""stream_options":{"include_usage":true}}"#));
//!
//! let mut ex = Exchange::new();
//! ex.on_request_head("POST", "/v1/chat/completions", [("content-type", "application/json")]);
//! ex.on_request_body(client_body);
//! ex.on_response_head(200, [("content-type", "text/event-stream")]);
//!
//! let upstream = b"data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
//!                  data: {\"choices\":[],\"usage\":{\"prompt_tokens\":3,\"completion_tokens\":1,\"total_tokens\":4}}\n\n\
//!                  data: [DONE]\n\n";
//! let mut filter = UsageChunkFilter::new();
//! let mut client = Vec::new();
//! ex.on_response_body(upstream); // the core sees the upstream bytes
//! if filter.push(upstream, &mut client) == Filtered::Unchanged {
//!     client.extend_from_slice(upstream);
//! }
//! filter.finish(&mut client);
//! ex.on_response_end();
//! assert!(!client.windows(9).any(|w| w == b"\"usage\":{"));
//! assert_eq!(ex.finish().total_tokens, Some(4));
//! ```

mod json;
mod request;
mod sse;

pub use request::{rewrite_request, Rewrite};
pub use sse::{is_usage_only_chunk, Filtered, UsageChunkFilter, MAX_HELD_EVENT};

/// The default cap on a request body held for injection: 1 MiB.
pub const DEFAULT_MAX_INJECT_BODY_BYTES: u64 = 1 << 20;

/// Why an injection was skipped: the original bytes were forwarded untouched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Skip {
    /// The request body is larger than the cap (by `content-length`, or once that many bytes
    /// were held).
    TooLarge,
    /// The request body is content-encoded (`content-encoding` other than `identity`).
    EncodedRequest,
    /// The request body is not one JSON object (syntax, UTF-8, trailing bytes).
    InvalidJson,
    /// `stream`, `stream_options` or `stream_options.include_usage` appears twice: servers
    /// disagree on which one counts.
    DuplicateKey,
    /// `stream` is neither a boolean nor `null`.
    StreamNotBool,
    /// `stream_options` is neither an object nor `null`.
    StreamOptionsNotObject,
    /// `stream_options.include_usage` is neither a boolean nor `null`.
    IncludeUsageNotBool,
    /// `stream_options.continuous_usage_stats` (vLLM) is `true`: with usage on, every chunk
    /// would carry it, so the stream could not be the one the client would have had.
    ContinuousUsageStats,
    /// The response stream whose usage-only chunk must be hidden is content-encoded: it
    /// passes untouched (the client then sees the usage chunk).
    EncodedResponse,
}

impl Skip {
    /// Every reason, in declaration order.
    pub const ALL: [Skip; 9] = [
        Skip::TooLarge,
        Skip::EncodedRequest,
        Skip::InvalidJson,
        Skip::DuplicateKey,
        Skip::StreamNotBool,
        Skip::StreamOptionsNotObject,
        Skip::IncludeUsageNotBool,
        Skip::ContinuousUsageStats,
        Skip::EncodedResponse,
    ];

    /// The reason as a metric label value (`too_large`, `encoded_request`, `invalid_json`,
    /// `duplicate_key`, `stream_not_bool`, `stream_options_not_object`,
    /// `include_usage_not_bool`, `continuous_usage_stats`, `encoded_response`).
    pub const fn as_str(self) -> &'static str {
        match self {
            Skip::TooLarge => "too_large",
            Skip::EncodedRequest => "encoded_request",
            Skip::InvalidJson => "invalid_json",
            Skip::DuplicateKey => "duplicate_key",
            Skip::StreamNotBool => "stream_not_bool",
            Skip::StreamOptionsNotObject => "stream_options_not_object",
            Skip::IncludeUsageNotBool => "include_usage_not_bool",
            Skip::ContinuousUsageStats => "continuous_usage_stats",
            Skip::EncodedResponse => "encoded_response",
        }
    }
}

impl core::fmt::Display for Skip {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether a request is one injection applies to: `POST` to a path (query ignored) ending in
/// `/chat/completions` or `/completions`. The frontend also checks that the exchange's
/// dialect is the OpenAI-compatible one ([`Exchange::dialect`](crate::Exchange::dialect) is
/// `openai-chat`), so a forced provider or another API is left alone.
///
/// ```
/// use llm_usage_core::inject::applies_to;
///
/// assert!(applies_to("POST", "/v1/chat/completions?api-version=2024-10-21"));
/// assert!(applies_to("POST", "/compatible-mode/v1/completions"));
/// assert!(!applies_to("POST", "/v1/responses"));
/// assert!(!applies_to("GET", "/v1/chat/completions"));
/// ```
pub fn applies_to(method: &str, path_and_query: &str) -> bool {
    let path = path_and_query
        .split(['?', '#'])
        .next()
        .unwrap_or(path_and_query);
    method.eq_ignore_ascii_case("POST") && path.ends_with("/completions")
}

/// Whether a `content-encoding` header value means the body is encoded (anything but empty
/// or `identity`).
pub fn is_encoded(content_encoding: &[u8]) -> bool {
    let v = content_encoding.trim_ascii();
    !v.is_empty() && !v.eq_ignore_ascii_case(b"identity")
}

#[cfg(test)]
mod tests;
