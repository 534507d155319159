//! Framings: the envelopes around JSON documents in a response body.
//!
//! A framer strips its envelope and pushes payload bytes to an [`EventSink`], marking
//! where each event ends. It never reassembles an event: payload bytes go out as they
//! arrive, and the sink keeps whatever state it needs (the JSON scanner's, and for SSE
//! one bounded buffer holding an event of up to 2 KiB, so that it can be walked whole:
//! `scan::whole`). Whether an event
//! *counts* is decided at its end: a framer calls [`EventSink::end_event`] only for an
//! event that is complete by its framing's rules (SSE: the blank line; NDJSON: the
//! newline; event-stream: all declared bytes plus matching CRCs; WebSocket: a data
//! message's last fragment) and
//! [`EventSink::discard_event`] for one that is not.

pub(crate) mod eventstream;
pub(crate) mod ndjson;
pub(crate) mod sse;
pub(crate) mod websocket;

/// The framing of a body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FramingKind {
    /// Decide from the first non-blank byte.
    Auto,
    /// One JSON document, a sequence of them, or a top-level array of them.
    Json,
    /// Server-sent events.
    Sse,
    /// Newline-delimited JSON.
    Ndjson,
    /// AWS event-stream.
    EventStream,
    /// WebSocket frames after an HTTP/1.1 upgrade, one message per event (no
    /// permessage-deflate: an [`Exchange`](crate::Exchange) reads that from the `101`
    /// response's headers).
    WebSocket,
}

impl FramingKind {
    /// Picks a framing from a `Content-Type` value.
    pub fn from_content_type(ct: &[u8]) -> FramingKind {
        let ct = ct.split(|&b| b == b';').next().unwrap_or(ct);
        let ct = ct.trim_ascii();
        if ct.eq_ignore_ascii_case(b"text/event-stream") {
            FramingKind::Sse
        } else if ct.eq_ignore_ascii_case(b"application/vnd.amazon.eventstream") {
            FramingKind::EventStream
        } else if ct.eq_ignore_ascii_case(b"application/x-ndjson")
            || ct.eq_ignore_ascii_case(b"application/ndjson")
            || ct.eq_ignore_ascii_case(b"application/jsonl")
            || ct.eq_ignore_ascii_case(b"application/x-jsonlines")
        {
            FramingKind::Ndjson
        } else {
            FramingKind::Auto
        }
    }
}

/// Where framers deliver payload bytes.
pub(crate) trait EventSink {
    /// Payload bytes of the current event.
    fn data(&mut self, bytes: &[u8]);
    /// The payload line at the start of `bytes`, up to its first `\n` or `\r`: delivers
    /// the line's bytes (all of `bytes` when it has no line end) and returns where it
    /// ends. A sink that copies payloads overrides it to find the end while it copies.
    fn data_line(&mut self, bytes: &[u8]) -> Option<usize> {
        deliver_line(self, bytes)
    }
    /// The current event is complete: keep what it said.
    fn end_event(&mut self);
    /// The current event is broken: forget what it said.
    fn discard_event(&mut self);
}

/// [`EventSink::data_line`] through [`EventSink::data`]: the line's end searched, then its
/// bytes delivered.
pub(crate) fn deliver_line<S: EventSink + ?Sized>(sink: &mut S, bytes: &[u8]) -> Option<usize> {
    let end = crate::swar::find_line_end(bytes);
    let k = end.unwrap_or(bytes.len());
    if k > 0 {
        sink.data(&bytes[..k]);
    }
    end
}

#[cfg(test)]
pub(crate) mod testing {
    use super::EventSink;

    /// Records events as strings, for framer tests.
    #[derive(Default, Debug)]
    pub(crate) struct Events {
        pub current: Vec<u8>,
        pub done: Vec<String>,
        pub discarded: usize,
    }

    impl EventSink for Events {
        fn data(&mut self, bytes: &[u8]) {
            self.current.extend_from_slice(bytes);
        }
        fn end_event(&mut self) {
            let e = core::mem::take(&mut self.current);
            self.done.push(String::from_utf8(e).unwrap());
        }
        fn discard_event(&mut self) {
            self.current.clear();
            self.discarded += 1;
        }
    }
}
