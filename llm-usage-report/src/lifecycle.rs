//! One exchange from its request head to its record: the order of the core's calls, the
//! times that matter, and "report once".
//!
//! Every frontend sees the same events in a different shape (proxy-wasm callbacks, tower
//! body frames, a reqwest byte stream) and with a different clock. A [`Tracker`] takes
//! them as plain calls and numbers: bytes, an end, a drop. Time is passed as a closure
//! returning nanoseconds, called only when a time is needed (the first byte, the first
//! token, the end), so a frontend whose clock is a host call pays for it three times an
//! exchange, not once a chunk.

use llm_usage_core::{Exchange, UsageRecord};

use crate::timings::Timings;

/// The state of one observed exchange.
///
/// ```
/// use llm_usage_report::{Exchange, Tracker};
///
/// let mut ex = Exchange::new();
/// ex.on_request_head("POST", "/v1/chat/completions", [("host", "api.openai.com")]);
/// let mut t = Tracker::new(ex, Some(0));
/// t.request_body(br#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#);
/// t.request_end();
/// t.response_head(200, [("content-type", "application/json")]);
/// t.response_body(
///     br#"{"model":"gpt-4o-2024-08-06","choices":[{"message":{"content":"Hello"}}],"usage":{"prompt_tokens":9,"completion_tokens":2,"total_tokens":11}}"#,
///     || Some(40),
/// );
/// let record = t.finish(true, || Some(50)).expect("the first finish gives the record");
/// t.end(Some(50));
/// assert_eq!(record.output_tokens, Some(2));
/// assert!(record.complete);
/// assert_eq!(t.timings().time_to_first_byte(), Some(40));
/// assert_eq!(t.timings().duration(), Some(50));
/// assert!(t.finish(true, || Some(60)).is_none());
/// ```
#[derive(Debug)]
pub struct Tracker {
    /// `None` once retired (a gap in the bytes, a parser panic caught by the frontend).
    exchange: Option<Exchange>,
    /// The record from before a gap, when retired by [`Tracker::retire`].
    frozen: Option<UsageRecord>,
    timings: Timings,
    request_ended: bool,
    finished: bool,
}

impl Tracker {
    /// Tracks `exchange` (its request head already given), started at `start`.
    pub fn new(exchange: Exchange, start: Option<u64>) -> Tracker {
        Tracker {
            exchange: Some(exchange),
            frozen: None,
            timings: Timings {
                start,
                ..Timings::default()
            },
            request_ended: false,
            finished: false,
        }
    }

    /// A tracker with no exchange (the frontend could not make one): it keeps the times
    /// and gives an empty, partial record.
    pub fn without_exchange(start: Option<u64>) -> Tracker {
        Tracker {
            exchange: None,
            frozen: None,
            timings: Timings {
                start,
                ..Timings::default()
            },
            request_ended: false,
            finished: false,
        }
    }

    /// The exchange, while it is alive (not retired).
    pub fn exchange(&self) -> Option<&Exchange> {
        self.exchange.as_ref()
    }

    /// The exchange, mutably, for what a frontend does beyond feeding it.
    pub fn exchange_mut(&mut self) -> Option<&mut Exchange> {
        self.exchange.as_mut()
    }

    /// The times noted so far.
    pub fn timings(&self) -> &Timings {
        &self.timings
    }

    /// Whether the record was taken ([`Tracker::finish`]).
    pub fn finished(&self) -> bool {
        self.finished
    }

    /// Whether the request body has ended.
    pub fn request_ended(&self) -> bool {
        self.request_ended
    }

    /// Request body bytes (ignored after the record, and after the request's end unless the
    /// response upgraded the connection: a realtime session's client frames follow a request
    /// whose own body, before the upgrade, was empty).
    pub fn request_body(&mut self, chunk: &[u8]) {
        let upgraded = self.exchange.as_ref().is_some_and(Exchange::upgraded);
        if self.finished || (self.request_ended && !upgraded) {
            return;
        }
        if let Some(ex) = &mut self.exchange {
            ex.on_request_body(chunk);
        }
    }

    /// The request body ended (later calls do nothing).
    pub fn request_end(&mut self) {
        if self.request_ended || self.finished {
            return;
        }
        self.request_ended = true;
        if let Some(ex) = &mut self.exchange {
            ex.on_request_end();
        }
    }

    /// The response head.
    pub fn response_head<I, K, V>(&mut self, status: u16, headers: I)
    where
        I: IntoIterator<Item = (K, V)>,
        K: AsRef<[u8]>,
        V: AsRef<[u8]>,
    {
        if self.finished {
            return;
        }
        if let Some(ex) = &mut self.exchange {
            ex.on_response_head(status, headers);
        }
    }

    /// Notes the first response byte at `now` (only the first call counts). A frontend
    /// that counts the headers as the first byte calls this at the headers; otherwise
    /// [`Tracker::response_body`] notes it at the first non-empty chunk.
    pub fn first_byte(&mut self, now: Option<u64>) {
        if self.timings.first_byte.is_none() {
            self.timings.first_byte = now;
        }
    }

    /// Response body bytes; `now` is asked for the time when this chunk is the first
    /// byte or completes the first generated token.
    pub fn response_body(&mut self, chunk: &[u8], mut now: impl FnMut() -> Option<u64>) {
        if self.finished || chunk.is_empty() {
            return;
        }
        if self.timings.first_byte.is_none() {
            self.timings.first_byte = now();
        }
        if let Some(ex) = &mut self.exchange {
            ex.on_response_body(chunk);
        }
        self.note_first_token(now);
    }

    fn note_first_token(&mut self, now: impl FnOnce() -> Option<u64>) {
        if self.timings.first_token.is_none()
            && self
                .exchange
                .as_ref()
                .is_some_and(Exchange::first_token_seen)
        {
            self.timings.first_token = now();
        }
    }

    /// Stops observing and keeps the record as it is now, final and partial: for bytes
    /// that went by unseen (a gap would make later figures wrong).
    pub fn retire(&mut self) {
        if let Some(ex) = self.exchange.take() {
            self.frozen = Some(ex.record());
        }
    }

    /// Stops observing and forgets the exchange (its state cannot be trusted, e.g. after
    /// a panic in it): the record will be empty and partial.
    pub fn abandon(&mut self) {
        self.exchange = None;
    }

    /// The record so far (empty once abandoned), without ending anything.
    pub fn record(&self) -> UsageRecord {
        match (&self.exchange, &self.frozen) {
            (Some(ex), _) => ex.record(),
            (None, Some(r)) => r.clone(),
            (None, None) => UsageRecord::default(),
        }
    }

    /// Ends the exchange and takes its record, once (`None` afterwards): after the
    /// response's end when `response_ended`, else a partial record (a reset stream, a
    /// dropped body). A retired or abandoned exchange's record is never `complete`.
    /// `now` is asked only if the response's end completes the first token; the end time
    /// is the frontend's to note ([`Tracker::end`]).
    pub fn finish(
        &mut self,
        response_ended: bool,
        mut now: impl FnMut() -> Option<u64>,
    ) -> Option<UsageRecord> {
        if self.finished {
            return None;
        }
        self.finished = true;
        if response_ended {
            if let Some(ex) = &mut self.exchange {
                ex.on_response_end();
            }
            self.note_first_token(&mut now);
        }
        let mut record = match (&mut self.exchange, self.frozen.take()) {
            (Some(ex), _) => ex.finish(),
            (None, Some(r)) => r,
            (None, None) => UsageRecord::default(),
        };
        if self.exchange.is_none() {
            record.complete = false;
        }
        Some(record)
    }

    /// Notes the end of the exchange at `now` (a frontend may end it later than the record
    /// is taken: the filter's access-log callback).
    pub fn end(&mut self, now: Option<u64>) {
        self.timings.end = now;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client's WebSocket text frame (masked, with a zero mask key), payload under 126 bytes.
    fn client_frame(payload: &[u8]) -> Vec<u8> {
        let mut f = vec![0x81, 0x80 | payload.len() as u8, 0, 0, 0, 0];
        f.extend_from_slice(payload);
        f
    }

    fn gemini_live(status: u16) -> Tracker {
        let mut ex = Exchange::new();
        ex.on_request_head(
            "GET",
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
            [
                ("host", "generativelanguage.googleapis.com"),
                ("upgrade", "websocket"),
            ],
        );
        let mut t = Tracker::new(ex, Some(0));
        // The upgrade request has no body of its own.
        t.request_end();
        t.response_head(status, [("upgrade", "websocket")]);
        t
    }

    #[test]
    fn an_upgraded_exchange_takes_the_client_frames_after_the_request_end() {
        let setup = client_frame(br#"{"setup":{"model":"models/gemini-2.0-flash-live-001"}}"#);
        let mut t = gemini_live(101);
        t.request_body(&setup);
        assert_eq!(
            t.record().model.as_deref(),
            Some("models/gemini-2.0-flash-live-001")
        );
        // Not upgraded: bytes after the request's end are not the request's.
        let mut t = gemini_live(400);
        t.request_body(&setup);
        assert_eq!(t.record().model, None);
    }
}
