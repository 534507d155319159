//! AWS event-stream (`application/vnd.amazon.eventstream`), as Bedrock streams it.
//!
//! Each message is: total length (u32 BE), headers length (u32 BE), CRC32 of those
//! 8 bytes, the headers, the payload, and the CRC32 of everything before it. The payload
//! (a JSON document for Bedrock) is streamed to the sink as it arrives while the message
//! CRC is computed; the event counts only if the CRC matches at the end.
//!
//! The headers (`:event-type`, `:message-type`, ...) are hashed but not interpreted: the
//! JSON paths alone tell a `metadata` event's `usage` from anything else, and exception
//! payloads hold no watched paths. A bad *prelude* CRC means the lengths cannot be trusted,
//! so the framer stops (the record is then partial); a bad *message* CRC only drops that
//! message, since the prelude already vouched for where the next one starts.

use super::EventSink;

/// Largest event-stream message accepted: the prelude of anything bigger is treated as corrupt.
pub const MAX_MESSAGE: u32 = 16 * 1024 * 1024;
const PRELUDE: usize = 12;
const MIN_MESSAGE: u32 = 16;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Prelude,
    Headers,
    Payload,
    Crc,
    Broken,
}

/// The event-stream framer.
#[derive(Debug, Clone)]
pub(crate) struct EventStream {
    state: State,
    buf: [u8; PRELUDE],
    got: usize,
    remaining: u32,
    payload: u32,
    crc: crate::crc32::Hasher,
}

impl Default for EventStream {
    fn default() -> Self {
        EventStream {
            state: State::Prelude,
            buf: [0; PRELUDE],
            got: 0,
            remaining: 0,
            payload: 0,
            crc: crate::crc32::Hasher::new(),
        }
    }
}

impl EventStream {
    /// True at a message boundary.
    pub(crate) fn clean(&self) -> bool {
        self.state == State::Prelude && self.got == 0
    }

    /// True after a corrupt prelude.
    pub(crate) fn broken(&self) -> bool {
        self.state == State::Broken
    }

    /// Feeds bytes of the stream.
    pub(crate) fn feed<S: EventSink>(&mut self, input: &[u8], sink: &mut S) {
        let mut rest = input;
        while !rest.is_empty() {
            match self.state {
                State::Broken => return,
                State::Prelude => {
                    let take = (PRELUDE - self.got).min(rest.len());
                    self.buf[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got < PRELUDE {
                        return;
                    }
                    self.got = 0;
                    let total =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    let headers =
                        u32::from_be_bytes([self.buf[4], self.buf[5], self.buf[6], self.buf[7]]);
                    let crc =
                        u32::from_be_bytes([self.buf[8], self.buf[9], self.buf[10], self.buf[11]]);
                    if crate::crc32::hash(&self.buf[..8]) != crc
                        || !(MIN_MESSAGE..=MAX_MESSAGE).contains(&total)
                        || headers > total - MIN_MESSAGE
                    {
                        self.state = State::Broken;
                        return;
                    }
                    self.crc = crate::crc32::Hasher::new();
                    self.crc.update(&self.buf);
                    self.remaining = headers;
                    self.payload = total - MIN_MESSAGE - headers;
                    self.state = State::Headers;
                }
                State::Headers => {
                    let take = (self.remaining as usize).min(rest.len());
                    self.crc.update(&rest[..take]);
                    rest = &rest[take..];
                    self.remaining -= take as u32;
                    if self.remaining == 0 {
                        self.remaining = self.payload;
                        self.state = State::Payload;
                    }
                }
                State::Payload => {
                    let take = (self.remaining as usize).min(rest.len());
                    self.crc.update(&rest[..take]);
                    sink.data(&rest[..take]);
                    rest = &rest[take..];
                    self.remaining -= take as u32;
                    if self.remaining == 0 {
                        self.state = State::Crc;
                    }
                }
                State::Crc => {
                    let take = (4 - self.got).min(rest.len());
                    self.buf[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got < 4 {
                        return;
                    }
                    self.got = 0;
                    let expect =
                        u32::from_be_bytes([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]);
                    let actual =
                        core::mem::replace(&mut self.crc, crate::crc32::Hasher::new()).finalize();
                    if actual == expect {
                        sink.end_event();
                    } else {
                        sink.discard_event();
                    }
                    self.state = State::Prelude;
                }
            }
        }
    }
}

/// Encodes one event-stream message (used by tests, fuzz seeds and benchmarks).
#[cfg_attr(not(any(test, feature = "__test-internals")), allow(dead_code))]
pub fn encode_message(headers: &[(&str, &str)], payload: &[u8]) -> Vec<u8> {
    let mut h = Vec::new();
    for (name, value) in headers {
        h.push(name.len() as u8);
        h.extend_from_slice(name.as_bytes());
        h.push(7);
        h.extend_from_slice(&(value.len() as u16).to_be_bytes());
        h.extend_from_slice(value.as_bytes());
    }
    let total = (PRELUDE + h.len() + payload.len() + 4) as u32;
    let mut m = Vec::with_capacity(total as usize);
    m.extend_from_slice(&total.to_be_bytes());
    m.extend_from_slice(&(h.len() as u32).to_be_bytes());
    let pc = crate::crc32::hash(&m);
    m.extend_from_slice(&pc.to_be_bytes());
    m.extend_from_slice(&h);
    m.extend_from_slice(payload);
    let mc = crate::crc32::hash(&m);
    m.extend_from_slice(&mc.to_be_bytes());
    m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::testing::Events;

    #[test]
    fn frames_at_every_split() {
        let mut input = encode_message(&[(":event-type", "metadata")], b"{\"usage\":{}}");
        input.extend(encode_message(
            &[(":event-type", "messageStop")],
            b"{\"a\":1}",
        ));
        for at in 0..=input.len() {
            let mut e = Events::default();
            let mut f = EventStream::default();
            f.feed(&input[..at], &mut e);
            f.feed(&input[at..], &mut e);
            assert_eq!(e.done, ["{\"usage\":{}}", "{\"a\":1}"]);
            assert!(f.clean());
        }
    }

    #[test]
    fn bad_message_crc_drops_only_that_message() {
        let mut first = encode_message(&[], b"{\"a\":1}");
        let n = first.len();
        first[n - 1] ^= 0xFF;
        first.extend(encode_message(&[], b"{\"b\":2}"));
        let mut e = Events::default();
        let mut f = EventStream::default();
        f.feed(&first, &mut e);
        assert_eq!(e.done, ["{\"b\":2}"]);
        assert_eq!(e.discarded, 1);
    }

    #[test]
    fn bad_prelude_stops() {
        let mut m = encode_message(&[], b"{}");
        m[2] ^= 1;
        let mut e = Events::default();
        let mut f = EventStream::default();
        f.feed(&m, &mut e);
        assert!(f.broken());
        assert!(e.done.is_empty());
    }

    #[test]
    fn truncated_message_is_not_clean() {
        let m = encode_message(&[], b"{\"a\":1}");
        let mut e = Events::default();
        let mut f = EventStream::default();
        f.feed(&m[..m.len() - 2], &mut e);
        assert!(!f.clean());
        assert!(e.done.is_empty());
    }
}
