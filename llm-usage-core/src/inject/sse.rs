//! Removing the usage-only chunk from a server-sent event stream, byte-exactly.

use super::json::{self, Kind};

/// The longest event (its lines before the blank line that ends it) that can be held while
/// deciding whether it is the usage-only chunk: 4 KiB. A longer event is never removed; it
/// passes as soon as it is known to be longer. (OpenAI's usage chunk is about 600 bytes.)
pub const MAX_HELD_EVENT: usize = 4096;

/// Whether `data` (the data of one SSE event, its `data:` lines joined with `\n`) is the
/// usage-only chunk that `stream_options.include_usage` adds to an OpenAI-compatible stream:
/// one JSON object with exactly one `choices` member, an empty array, and exactly one `usage`
/// member, an object.
///
/// ```
/// use llm_usage_core::inject::is_usage_only_chunk;
///
/// assert!(is_usage_only_chunk(br#"{"id":"x","choices":[],"usage":{"prompt_tokens":5}}"#));
/// assert!(!is_usage_only_chunk(br#"{"choices":[{"delta":{}}],"usage":{"prompt_tokens":5}}"#));
/// assert!(!is_usage_only_chunk(br#"{"choices":[],"usage":null}"#));
/// assert!(!is_usage_only_chunk(b"[DONE]"));
/// ```
pub fn is_usage_only_chunk(data: &[u8]) -> bool {
    let (mut choices, mut usage) = (0u32, 0u32);
    let (mut empty_choices, mut usage_object) = (false, false);
    let ok = json::object_members(data, |m| {
        let key = &data[m.key.clone()];
        if json::key_is(key, "choices") {
            choices += 1;
            empty_choices = m.kind == Kind::Array && json::is_empty_array(&data[m.value]);
        } else if json::key_is(key, "usage") {
            usage += 1;
            usage_object = m.kind == Kind::Object;
        }
    })
    .is_ok();
    ok && choices == 1 && usage == 1 && empty_choices && usage_object
}

/// The state of the event being read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Event {
    /// Between events: bytes pass as they come.
    None,
    /// An event is open and held until its blank line decides it.
    Open,
    /// An open event known to be longer than [`MAX_HELD_EVENT`]: it passes.
    Passing,
}

/// What [`UsageChunkFilter::push`] did with a chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Filtered {
    /// Forward the chunk as it is (nothing was written to `out`).
    Unchanged,
    /// Forward what was appended to `out` instead of the chunk (possibly nothing).
    Changed,
}

/// Forwards chunk bytes in order, copying only once the output stops being the chunk itself.
struct Emit<'a> {
    chunk: &'a [u8],
    out: &'a mut Vec<u8>,
    /// Whether the output so far is `chunk[..cursor]`, not yet copied.
    clean: bool,
    cursor: usize,
}

impl Emit<'_> {
    fn dirty(&mut self) {
        if self.clean {
            self.clean = false;
            self.out.extend_from_slice(&self.chunk[..self.cursor]);
        }
    }
    fn chunk(&mut self, from: usize, to: usize) {
        if from == to {
            return;
        }
        if self.clean && from == self.cursor {
            self.cursor = to;
        } else {
            self.dirty();
            self.out.extend_from_slice(&self.chunk[from..to]);
        }
    }
    fn bytes(&mut self, b: &[u8]) {
        if !b.is_empty() {
            self.dirty();
            self.out.extend_from_slice(b);
        }
    }
    fn finish(mut self) -> Filtered {
        if self.clean && self.cursor == self.chunk.len() {
            Filtered::Unchanged
        } else {
            self.dirty();
            Filtered::Changed
        }
    }
}

/// Removes the usage-only chunk ([`is_usage_only_chunk`]) from a server-sent event stream
/// fed in chunks split anywhere, and forwards every other byte unchanged, in order.
///
/// An *event* here is its lines (field lines and any comment lines among them) and the blank
/// line that ends it, each line with its terminator (LF, CR or CRLF). Comment lines and blank
/// lines between events are not part of any event and pass at once. While an event is open
/// its bytes are held (at most [`MAX_HELD_EVENT`] bytes, in one buffer allocated on first
/// use) until its blank line arrives; then the event is removed whole if its fields are all
/// `data` lines whose joined data is the usage-only chunk, and forwarded otherwise. A
/// conforming SSE client dispatches an event only at that blank line, so holding it delays
/// no event. An event longer than the cap is forwarded as soon as it is known to be longer.
/// CRLF, `data:` without a space, comments and multi-line data pass through untouched.
///
/// Memory: the held event (at most 4 KiB) and, for events of several `data:` lines, a second
/// buffer of at most 4 KiB to join them; nothing else grows. No input panics.
///
/// ```
/// use llm_usage_core::inject::{Filtered, UsageChunkFilter};
///
/// let upstream: &[u8] = b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\n\
///     data: {\"choices\":[],\"usage\":{\"total_tokens\":9}}\n\ndata: [DONE]\n\n";
/// let mut f = UsageChunkFilter::new();
/// let mut client = Vec::new();
/// for chunk in upstream.chunks(7) {
///     let mut out = Vec::new();
///     match f.push(chunk, &mut out) {
///         Filtered::Unchanged => client.extend_from_slice(chunk),
///         Filtered::Changed => client.extend_from_slice(&out),
///     }
/// }
/// f.finish(&mut client);
/// assert_eq!(client, b"data: {\"choices\":[{\"delta\":{}}],\"usage\":null}\n\ndata: [DONE]\n\n");
/// assert_eq!(f.removed_events(), 1);
/// ```
#[derive(Debug, Clone)]
pub struct UsageChunkFilter {
    /// The open event's bytes from earlier chunks.
    held: Vec<u8>,
    /// The data of a multi-line event, joined.
    joined: Vec<u8>,
    event: Event,
    at_line_start: bool,
    /// The last byte was a CR ending a line: an LF right after it belongs to that line end.
    after_cr: bool,
    /// A removed event ended with a CR: an LF right after it was part of it, and goes too.
    drop_lf: bool,
    removed_events: u64,
    removed_bytes: u64,
}

impl Default for UsageChunkFilter {
    fn default() -> Self {
        UsageChunkFilter::new()
    }
}

impl UsageChunkFilter {
    /// A filter at the start of a stream.
    pub fn new() -> Self {
        UsageChunkFilter {
            held: Vec::new(),
            joined: Vec::new(),
            event: Event::None,
            at_line_start: true,
            after_cr: false,
            drop_lf: false,
            removed_events: 0,
            removed_bytes: 0,
        }
    }

    /// How many events were removed.
    pub fn removed_events(&self) -> u64 {
        self.removed_events
    }

    /// How many bytes were removed.
    pub fn removed_bytes(&self) -> u64 {
        self.removed_bytes
    }

    /// How many bytes are held now (an open event's, from earlier chunks).
    pub fn held_bytes(&self) -> usize {
        self.held.len()
    }

    /// Filters the next chunk of the stream. When it returns [`Filtered::Unchanged`] the chunk
    /// is to be forwarded as it is and nothing was written; otherwise the bytes to forward
    /// instead were appended to `out`.
    pub fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) -> Filtered {
        let mut em = Emit {
            chunk,
            out,
            clean: true,
            cursor: 0,
        };
        let mut i = 0;
        // Where the bytes to forward begin, between events; where the open event begins.
        let mut run = 0;
        let mut start = 0;
        if self.drop_lf && !chunk.is_empty() {
            self.drop_lf = false;
            if chunk[0] == b'\n' {
                self.after_cr = false;
                self.removed_bytes += 1;
                i = 1;
                run = 1;
            }
        }
        'bytes: while i < chunk.len() {
            'line: {
                if self.at_line_start {
                    let b = chunk[i];
                    if self.after_cr && b == b'\n' {
                        // The LF of a CRLF: it ends the line before.
                        self.after_cr = false;
                        i += 1;
                        break 'line;
                    }
                    self.after_cr = false;
                    match b {
                        b'\n' | b'\r' => {
                            // A blank line: it ends the open event, if any.
                            self.after_cr = b == b'\r';
                            i += 1;
                            if self.event == Event::Open {
                                if self.decide(&chunk[start..i]) {
                                    self.drop_lf = self.after_cr;
                                } else {
                                    em.bytes(&self.held);
                                    em.chunk(start, i);
                                }
                                self.held.clear();
                                run = i;
                            }
                            self.event = Event::None;
                            if self.drop_lf && i < chunk.len() {
                                self.drop_lf = false;
                                if chunk[i] == b'\n' {
                                    self.after_cr = false;
                                    self.removed_bytes += 1;
                                    i += 1;
                                    run = i;
                                }
                            }
                            continue 'bytes;
                        }
                        b':' => {}
                        _ => {
                            if self.event == Event::None {
                                em.chunk(run, i);
                                self.event = Event::Open;
                                start = i;
                            }
                        }
                    }
                    self.at_line_start = false;
                }
                match memchr::memchr2(b'\n', b'\r', &chunk[i..]) {
                    Some(k) => {
                        self.after_cr = chunk[i + k] == b'\r';
                        self.at_line_start = true;
                        i += k + 1;
                    }
                    None => i = chunk.len(),
                }
            }
            if self.event == Event::Open && self.held.len() + (i - start) > MAX_HELD_EVENT {
                em.bytes(&self.held);
                self.held.clear();
                em.chunk(start, i);
                run = i;
                self.event = Event::Passing;
            }
        }
        if self.event == Event::Open {
            if self.held.capacity() == 0 {
                // Room for the event and the first byte of its blank line.
                self.held.reserve_exact(MAX_HELD_EVENT + 1);
            }
            self.held.extend_from_slice(&chunk[start..]);
        } else {
            em.chunk(run, chunk.len());
        }
        em.finish()
    }

    /// The end of the stream: appends the bytes still held (an event without its blank line,
    /// forwarded as it came) to `out`.
    pub fn finish(&mut self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.held);
        self.held.clear();
        self.event = Event::None;
    }

    /// Decides the event whose bytes are the held ones followed by `tail` (which ends with the
    /// first byte of its blank line): whether it is removed. Counts a removal.
    fn decide(&mut self, tail: &[u8]) -> bool {
        let len = self.held.len() + tail.len();
        // `tail` ends with the blank line's first byte.
        if len > MAX_HELD_EVENT + 1 {
            return false;
        }
        let remove = if self.held.is_empty() {
            usage_only_event(tail, &mut self.joined)
        } else {
            let before = self.held.len();
            self.held.extend_from_slice(tail);
            let remove = usage_only_event(&self.held, &mut self.joined);
            self.held.truncate(before);
            remove
        };
        if remove {
            self.removed_events += 1;
            self.removed_bytes += len as u64;
        }
        remove
    }
}

/// Whether the event `bytes` (whole lines, the last one blank) has only `data` fields (and
/// comments) whose joined data is the usage-only chunk. `joined` is scratch space.
fn usage_only_event(bytes: &[u8], joined: &mut Vec<u8>) -> bool {
    let mut single: Option<&[u8]> = None;
    let mut lines = 0;
    joined.clear();
    let mut i = 0;
    while i < bytes.len() {
        let end = memchr::memchr2(b'\n', b'\r', &bytes[i..]).map_or(bytes.len(), |k| i + k);
        let line = &bytes[i..end];
        i = end + 1;
        if bytes.get(end) == Some(&b'\r') && bytes.get(i) == Some(&b'\n') {
            i += 1;
        }
        if line.is_empty() {
            break;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match memchr::memchr(b':', line) {
            Some(c) => (&line[..c], &line[c + 1..]),
            None => (line, &[][..]),
        };
        if name != b"data" {
            return false;
        }
        let value = value.strip_prefix(b" ").unwrap_or(value);
        lines += 1;
        match lines {
            1 => single = Some(value),
            2 => {
                if joined.capacity() == 0 {
                    joined.reserve_exact(MAX_HELD_EVENT + 1);
                }
                joined.extend_from_slice(single.unwrap_or_default());
                joined.push(b'\n');
                joined.extend_from_slice(value);
            }
            _ => {
                joined.push(b'\n');
                joined.extend_from_slice(value);
            }
        }
    }
    match lines {
        0 => false,
        1 => is_usage_only_chunk(single.unwrap_or_default()),
        _ => is_usage_only_chunk(joined),
    }
}
