//! Server-sent events (WHATWG HTML, "Interpreting an event stream").
//!
//! Lines end in LF, CRLF or a lone CR (a CR at the end of one chunk followed by an LF at
//! the start of the next is still one line end). A line starting with `:` is a comment
//! (`: keep-alive`, DashScope's `:HTTP_STATUS/200`). `data:` takes one optional space;
//! several `data:` lines in one event are joined with `\n`, which the JSON scanner reads
//! as whitespace. `event:`, `id:` and `retry:` carry no usage and are skipped. A blank line
//! dispatches the event; an event without its blank line at the end of the stream is not
//! dispatched. `data: [DONE]` needs no special case: it is not a JSON object, so the
//! scanner yields nothing for it.

use super::EventSink;
use crate::swar::find_line_end;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    LineStart,
    Field,
    DataStart,
    Data,
    Skip,
}

/// The SSE framer.
#[derive(Debug, Clone)]
pub(crate) struct Sse {
    state: State,
    name: [u8; 8],
    name_len: usize,
    after_cr: bool,
    data_lines: u32,
    pending: bool,
}

impl Default for Sse {
    fn default() -> Self {
        Sse {
            state: State::LineStart,
            name: [0; 8],
            name_len: 0,
            after_cr: false,
            data_lines: 0,
            pending: false,
        }
    }
}

impl Sse {
    /// True when no partial line or undispatched event is pending.
    pub(crate) fn clean(&self) -> bool {
        self.state == State::LineStart && !self.pending
    }

    fn data_line<S: EventSink>(&mut self, sink: &mut S) {
        if self.data_lines > 0 {
            sink.data(b"\n");
        }
        self.data_lines += 1;
    }

    fn line_end(&mut self, b: u8) {
        self.after_cr = b == b'\r';
        self.state = State::LineStart;
        self.pending = true;
    }

    /// The usual lines from `i`, at a line start: `data:` lines and `event:` lines whose
    /// ends are in the chunk, and blank lines (a CR's LF skipped on the way). They are
    /// tested in order of frequency in a loop of their own, not through the state
    /// machine's jump tables, whose indirect jumps the event walk between two lines
    /// leaves unpredictable. Returns where it stopped: the end of `input`, or a line it
    /// leaves to the state machine (any other field, a comment, a line whose name or
    /// end is not in the chunk).
    #[inline]
    fn whole_lines<S: EventSink>(&mut self, input: &[u8], mut i: usize, sink: &mut S) -> usize {
        if self.after_cr {
            self.after_cr = false;
            if input.get(i) == Some(&b'\n') {
                i += 1;
            }
        }
        while let Some(&b) = input.get(i) {
            if b == b'\n' || b == b'\r' {
                if self.data_lines > 0 {
                    sink.end_event();
                }
                self.data_lines = 0;
                self.pending = false;
                i = self.past_line_end(input, i);
            } else if b == b'd' && input[i..].starts_with(b"data:") {
                // Whether a space follows is only known with the next byte.
                let Some(&next) = input.get(i + 5) else {
                    return i;
                };
                self.pending = true;
                self.data_line(sink);
                let from = i + 5 + usize::from(next == b' ');
                let Some(p) = sink.data_line(&input[from..]) else {
                    // The line goes on in the next chunk (its bytes are delivered).
                    self.state = State::Data;
                    return input.len();
                };
                i = self.past_line_end(input, from + p);
            } else if b == b'e' && input[i..].starts_with(b"event:") {
                let Some(p) = find_line_end(&input[i + 6..]) else {
                    return i;
                };
                self.pending = true;
                i = self.past_line_end(input, i + 6 + p);
            } else {
                return i;
            }
        }
        i
    }

    /// Past the line end at `input[at]`: a CR takes the LF after it, or leaves that to
    /// the next chunk.
    #[inline(always)]
    fn past_line_end(&mut self, input: &[u8], at: usize) -> usize {
        if input[at] == b'\n' {
            return at + 1;
        }
        match input.get(at + 1) {
            Some(b'\n') => at + 2,
            Some(_) => at + 1,
            None => {
                self.after_cr = true;
                at + 1
            }
        }
    }

    /// Feeds bytes of the stream.
    pub(crate) fn feed<S: EventSink>(&mut self, input: &[u8], sink: &mut S) {
        let mut i = 0;
        let n = input.len();
        while i < n {
            if self.state == State::LineStart {
                i = self.whole_lines(input, i, sink);
                if i >= n {
                    return;
                }
            }
            match self.state {
                // Left by `whole_lines` (which has taken any CR's LF): a comment, another
                // field, or a `data:`/`event:` line not whole in the chunk, read a byte at a
                // time.
                State::LineStart => {
                    let b = input[i];
                    i += 1;
                    self.pending = true;
                    if b == b':' {
                        self.state = State::Skip;
                    } else {
                        self.name[0] = b;
                        self.name_len = 1;
                        self.state = State::Field;
                    }
                }
                State::Field => {
                    let b = input[i];
                    i += 1;
                    match b {
                        b':' => {
                            if &self.name[..self.name_len] == b"data" {
                                self.data_line(sink);
                                self.state = State::DataStart;
                            } else {
                                self.state = State::Skip;
                            }
                        }
                        b'\r' | b'\n' => {
                            if &self.name[..self.name_len] == b"data" {
                                self.data_line(sink);
                            }
                            self.line_end(b);
                        }
                        _ => {
                            if self.name_len < self.name.len() {
                                self.name[self.name_len] = b;
                                self.name_len += 1;
                            } else {
                                // Longer than any field we care about.
                                self.name[0] = b'-';
                                self.state = State::Skip;
                            }
                        }
                    }
                }
                State::DataStart => {
                    if input[i] == b' ' {
                        i += 1;
                    }
                    self.state = State::Data;
                }
                State::Data => match sink.data_line(&input[i..]) {
                    Some(p) => {
                        i += p + 1;
                        self.line_end(input[i - 1]);
                    }
                    None => return,
                },
                State::Skip => {
                    let rest = &input[i..];
                    match find_line_end(rest) {
                        None => return,
                        Some(p) => {
                            i += p + 1;
                            self.line_end(rest[p]);
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::testing::Events;

    fn events(input: &[u8]) -> (Vec<String>, bool) {
        let mut whole = Events::default();
        let mut sse = Sse::default();
        sse.feed(input, &mut whole);
        // Every split point, and one byte at a time, must agree.
        for at in 0..=input.len() {
            let mut e = Events::default();
            let mut s = Sse::default();
            s.feed(&input[..at], &mut e);
            s.feed(&input[at..], &mut e);
            assert_eq!(e.done, whole.done, "split at {at}");
            assert_eq!(s.clean(), sse.clean());
        }
        let mut e = Events::default();
        let mut s = Sse::default();
        for b in input {
            s.feed(core::slice::from_ref(b), &mut e);
        }
        assert_eq!(e.done, whole.done, "byte at a time");
        (whole.done, sse.clean())
    }

    #[test]
    fn line_endings_and_spaces() {
        let (ev, clean) =
            events(b"data: {\"a\":1}\n\ndata:{\"b\":2}\r\n\r\ndata: x\r\rdata:  y\n\n");
        assert_eq!(ev, ["{\"a\":1}", "{\"b\":2}", "x", " y"]);
        assert!(clean);
    }

    #[test]
    fn comments_fields_and_multiline() {
        let input = b": keep-alive\n\nid:1\nevent:result\n:HTTP_STATUS/200\ndata:{\"a\":\ndata: 1}\nretry: 10\n\n";
        let (ev, _) = events(input);
        assert_eq!(ev, ["{\"a\":\n1}"]);
    }

    #[test]
    fn empty_data_and_field_without_colon() {
        let (ev, _) = events(b"data\ndata\n\nevent\n\n");
        assert_eq!(ev, ["\n"]);
    }

    /// The whole-line loop and the state machine hand over at every kind of line end,
    /// joined data lines and `event:` lines included, however the input is split.
    #[test]
    fn whole_lines_and_the_state_machine_agree() {
        let input = b"event: a\ndata: {\"x\":1}\n\nevent: b\r\ndata: 1\r\ndata: 2\r\n\r\n\
data: 3\rdata: 4\r\revent:c\ndata:5\n\ndata: 6\ndata: 7\n\n: c\ndata: 8\n\n";
        let (ev, clean) = events(input);
        assert_eq!(ev, ["{\"x\":1}", "1\n2", "3\n4", "5", "6\n7", "8"]);
        assert!(clean);
    }

    #[test]
    fn unterminated_event_is_not_dispatched() {
        let (ev, clean) = events(b"data: {\"a\":1}\n\ndata: {\"b\":2}\n");
        assert_eq!(ev, ["{\"a\":1}"]);
        assert!(!clean);
    }

    #[test]
    fn long_field_names_are_skipped() {
        let (ev, _) = events(b"datadatadata: no\ndata: yes\n\n");
        assert_eq!(ev, ["yes"]);
    }
}
