//! Newline-delimited JSON (Ollama's native streams): one document per line.
//!
//! A line counts once its newline has arrived; a final line without one is not an
//! event. A `\r` before the newline is JSON whitespace and needs no handling.

use super::EventSink;
use memchr::memchr;

/// The NDJSON framer.
#[derive(Debug, Clone, Default)]
pub(crate) struct Ndjson {
    partial: bool,
}

impl Ndjson {
    /// True when no partial line is pending.
    pub(crate) fn clean(&self) -> bool {
        !self.partial
    }

    /// Feeds bytes of the stream.
    pub(crate) fn feed<S: EventSink>(&mut self, input: &[u8], sink: &mut S) {
        let mut rest = input;
        while !rest.is_empty() {
            match memchr(b'\n', rest) {
                None => {
                    self.partial |= rest.iter().any(|b| !b.is_ascii_whitespace());
                    sink.data(rest);
                    return;
                }
                Some(p) => {
                    sink.data(&rest[..p]);
                    sink.end_event();
                    self.partial = false;
                    rest = &rest[p + 1..];
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::testing::Events;

    #[test]
    fn lines_at_every_split() {
        let input = b"{\"a\":1}\n{\"b\":2}\r\n{\"c\":";
        for at in 0..=input.len() {
            let mut e = Events::default();
            let mut f = Ndjson::default();
            f.feed(&input[..at], &mut e);
            f.feed(&input[at..], &mut e);
            assert_eq!(e.done, ["{\"a\":1}", "{\"b\":2}\r"]);
            assert!(!f.clean());
        }
    }
}
