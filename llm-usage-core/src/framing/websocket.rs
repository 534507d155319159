//! WebSocket frames (RFC 6455) after an HTTP/1.1 upgrade: one event per data message.
//!
//! Realtime APIs (OpenAI Realtime, Gemini Live) speak JSON messages over a WebSocket. A
//! proxy sees the bytes after the `101 Switching Protocols` head as two body streams:
//! client frames (masked, RFC 6455 §5.3) and server frames (unmasked). Each direction gets
//! its own framer. A message may be fragmented (a first frame, then continuation frames
//! until one has FIN), and control frames (ping, pong, close) may sit between its
//! fragments: they never touch the message. A data message's payload, unmasked and, when
//! negotiated, inflated, streams to the sink as it arrives; the message is one event, ended
//! at its last fragment. Text and binary messages both go to the JSON scanner: Gemini Live
//! sends its JSON server messages in binary frames; a binary message that is not JSON is
//! just not a document.
//!
//! Nothing is buffered: a header is at most 14 bytes, unmasking goes through a small stack
//! buffer, and inflated bytes go to the sink from the inflater's own fixed buffer. A
//! message whose payload (after inflating) passes the cap is dropped as unknown from that
//! point (the event discarded), and counted as skipped.
//!
//! permessage-deflate (RFC 7692): the response's `sec-websocket-extensions` says whether
//! the messages of each direction may be compressed (RSV1 on a message's first frame) and
//! whether the sender keeps its LZ77 window between messages (context takeover, the
//! default) or starts afresh (`server_no_context_takeover` / `client_no_context_takeover`).
//! A compressed message is raw deflate data to which the receiver appends `00 00 ff ff`.
//! With context takeover the inflater lives across messages, so even a message past the cap
//! is inflated (not scanned) to keep the window right; without, it starts each message
//! afresh. A window smaller than 32 KiB (`*_max_window_bits`) is covered by the inflater's.
//! What cannot be followed stays an honest unknown, never a guess: a compressed message
//! when no extension the framer knows was negotiated, or after the inflater failed
//! (corrupt data, such as a back-reference before the first message, or, without context
//! takeover, before the message's own start) or its stream ended while the window had to
//! be kept, is skipped and counted, and so is every later compressed message of the
//! direction.
//!
//! The inflater is the one HTTP bodies use ([`Inflate`], `decode/inflate.rs`, in its
//! [`Format::Message`] mode), allocated at a direction's first compressed message: the
//! decompressor's tables and one 48 KiB buffer, the 32 KiB window followed by room for
//! the output, in which a back-reference is one plain copy and from which the output goes
//! to the sink. Until 2026-12-07 the framer had its own: `miniz_oxide`'s streaming state
//! (the window as a 32 KiB ring) copied out into an 8 KiB buffer. One inflater is one
//! piece of code to test and fuzz, with one rule at a stream's start (the ring read its
//! own zeros before it; this one refuses). The cost is 8 KiB more per compressing
//! direction; the speed on a Realtime session is the same within the noise (small
//! messages, each a new deflate block whose code tables dominate; `benches/README.md`,
//! "WebSocket permessage-deflate on the linear inflater"); large messages with long
//! matches take the path measured faster on gzip bodies.
//!
//! A protocol error (a reserved opcode, a continuation without a message, a control frame
//! that is fragmented or longer than 125 bytes, a 64-bit length with its top bit set)
//! means frame boundaries can no longer be trusted: the framer stops. So does a close
//! frame: nothing after it is a message.

use super::EventSink;
use crate::decode::inflate::{Format, Inflate};

/// The default cap on one message's payload (after inflating), in bytes: a larger message
/// is skipped as unknown.
pub const MAX_MESSAGE: u64 = 4 * 1024 * 1024;

/// The stack buffer masked payload bytes are unmasked through.
const UNMASK_CHUNK: usize = 256;

/// What the handshake negotiated for the messages one side sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// No extension: messages are sent as they are.
    None,
    /// permessage-deflate; `takeover`: the sender keeps its window between messages.
    Deflate {
        /// Whether the LZ77 window carries over from one message to the next.
        takeover: bool,
    },
    /// An extension (or a parameter) the framer does not know: its messages cannot be read.
    Unknown,
}

/// Reads a `sec-websocket-extensions` response header: the compression of the messages
/// the server sends, then of those the client sends. `None` (no header): no extension.
pub fn negotiated(header: Option<&[u8]>) -> (Compression, Compression) {
    let Some(header) = header else {
        return (Compression::None, Compression::None);
    };
    let mut found: Option<(bool, bool)> = None;
    for ext in header.split(|&b| b == b',') {
        let mut parts = ext.split(|&b| b == b';').map(<[u8]>::trim_ascii);
        let name = parts.next().unwrap_or_default();
        if name.is_empty() {
            continue;
        }
        // A server accepts one permessage-deflate offer; anything else is not ours.
        if !name.eq_ignore_ascii_case(b"permessage-deflate") || found.is_some() {
            return (Compression::Unknown, Compression::Unknown);
        }
        let (mut server_takeover, mut client_takeover) = (true, true);
        for param in parts {
            let key = param.split(|&b| b == b'=').next().unwrap_or_default();
            let key = key.trim_ascii();
            if key.eq_ignore_ascii_case(b"server_no_context_takeover") {
                server_takeover = false;
            } else if key.eq_ignore_ascii_case(b"client_no_context_takeover") {
                client_takeover = false;
            } else if key.eq_ignore_ascii_case(b"server_max_window_bits")
                || key.eq_ignore_ascii_case(b"client_max_window_bits")
            {
                // A smaller window than 32 KiB: the inflater's window covers it.
            } else if !key.is_empty() {
                return (Compression::Unknown, Compression::Unknown);
            }
        }
        found = Some((server_takeover, client_takeover));
    }
    match found {
        None => (Compression::None, Compression::None),
        Some((server, client)) => (
            Compression::Deflate { takeover: server },
            Compression::Deflate { takeover: client },
        ),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Reading a frame header.
    Head,
    /// Reading a frame's payload.
    Payload,
    /// After a close frame: nothing more is read.
    Closed,
    /// After a protocol error: nothing more is read.
    Broken,
}

/// What becomes of the current message's payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Sent as it is: to the sink.
    Plain,
    /// Compressed: inflated to the sink.
    Inflate,
    /// Compressed, past the cap: inflated to keep the window, not delivered.
    Drain,
    /// Not read (past the cap, or unreadable).
    Skip,
}

/// The WebSocket framer of one direction.
#[derive(Debug)]
pub(crate) struct WebSocket {
    compression: Compression,
    cap: u64,
    phase: Phase,
    head: [u8; 14],
    got: usize,
    /// The current frame: opcode, FIN, mask key, payload bytes left and read.
    opcode: u8,
    fin: bool,
    mask: Option<[u8; 4]>,
    remaining: u64,
    offset: u64,
    /// A data message is open (waiting for more fragments).
    in_message: bool,
    mode: Mode,
    /// Payload bytes of the current message so far (after inflating).
    message_len: u64,
    /// The direction's inflater, from its first compressed message on.
    inflater: Option<Inflate>,
    /// Compressed messages can no longer be followed (inflater failed, or its stream
    /// ended with the window to be kept).
    deflate_lost: bool,
    /// Messages skipped as unknown: past the cap, or compressed beyond what can be read.
    skipped: u64,
}

impl WebSocket {
    /// A framer for messages compressed as negotiated, at most `cap` bytes each.
    pub(crate) fn new(compression: Compression, cap: u64) -> WebSocket {
        WebSocket {
            compression,
            cap,
            phase: Phase::Head,
            head: [0; 14],
            got: 0,
            opcode: 0,
            fin: false,
            mask: None,
            remaining: 0,
            offset: 0,
            in_message: false,
            mode: Mode::Plain,
            message_len: 0,
            inflater: None,
            deflate_lost: false,
            skipped: 0,
        }
    }

    /// True at a frame boundary outside any message (or after a close frame).
    pub(crate) fn clean(&self) -> bool {
        match self.phase {
            Phase::Closed => true,
            Phase::Broken | Phase::Payload => false,
            Phase::Head => self.got == 0 && !self.in_message,
        }
    }

    /// True after a protocol error.
    #[cfg(test)]
    pub(crate) fn broken(&self) -> bool {
        self.phase == Phase::Broken
    }

    /// Messages skipped as unknown so far.
    pub(crate) fn skipped(&self) -> u64 {
        self.skipped
    }

    /// Feeds bytes of one direction of the connection.
    pub(crate) fn feed<S: EventSink>(&mut self, input: &[u8], sink: &mut S) {
        let mut rest = input;
        loop {
            match self.phase {
                Phase::Closed | Phase::Broken => return,
                Phase::Head => {
                    if rest.is_empty() {
                        return;
                    }
                    let need = self.head_len();
                    let take = (need - self.got).min(rest.len());
                    self.head[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    // The first two bytes tell how long the header is.
                    if self.got == self.head_len() {
                        self.start_frame(sink);
                    }
                }
                Phase::Payload => {
                    if self.remaining == 0 {
                        self.end_frame(sink);
                        continue;
                    }
                    if rest.is_empty() {
                        return;
                    }
                    let n = usize::try_from(self.remaining)
                        .unwrap_or(usize::MAX)
                        .min(rest.len());
                    self.payload(&rest[..n], sink);
                    self.remaining -= n as u64;
                    self.offset += n as u64;
                    rest = &rest[n..];
                }
            }
        }
    }

    /// The length of the current header, as far as its first two bytes tell.
    fn head_len(&self) -> usize {
        if self.got < 2 {
            return 2;
        }
        let ext = match self.head[1] & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if self.head[1] & 0x80 != 0 { 4 } else { 0 };
        2 + ext + mask
    }

    fn fail<S: EventSink>(&mut self, sink: &mut S) {
        if self.in_message && matches!(self.mode, Mode::Plain | Mode::Inflate) {
            sink.discard_event();
        }
        self.in_message = false;
        self.phase = Phase::Broken;
    }

    fn start_frame<S: EventSink>(&mut self, sink: &mut S) {
        let (b0, b1) = (self.head[0], self.head[1]);
        self.got = 0;
        self.fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        let rsv23 = b0 & 0x30 != 0;
        self.opcode = b0 & 0x0f;
        let (len, mask_at) = match b1 & 0x7f {
            126 => (
                u64::from(u16::from_be_bytes([self.head[2], self.head[3]])),
                4,
            ),
            127 => {
                let mut b = [0; 8];
                b.copy_from_slice(&self.head[2..10]);
                (u64::from_be_bytes(b), 10)
            }
            n => (u64::from(n), 2),
        };
        self.mask = (b1 & 0x80 != 0).then(|| {
            let mut m = [0; 4];
            m.copy_from_slice(&self.head[mask_at..mask_at + 4]);
            m
        });
        self.remaining = len;
        self.offset = 0;
        if len >> 63 != 0 || (rsv23 && self.compression != Compression::Unknown) {
            return self.fail(sink);
        }
        match self.opcode {
            // Close, ping, pong: short, whole, between fragments if need be.
            8..=10 => {
                if !self.fin || len > 125 || rsv1 || rsv23 {
                    return self.fail(sink);
                }
            }
            0 => {
                if !self.in_message || rsv1 {
                    return self.fail(sink);
                }
            }
            1 | 2 => {
                if self.in_message {
                    return self.fail(sink);
                }
                self.in_message = true;
                self.message_len = 0;
                self.mode = self.message_mode(rsv1 || rsv23);
            }
            _ => return self.fail(sink),
        }
        self.phase = Phase::Payload;
    }

    /// How a new message whose compression bit is `compressed` is read.
    fn message_mode(&mut self, compressed: bool) -> Mode {
        if !compressed {
            return Mode::Plain;
        }
        match self.compression {
            Compression::Deflate { takeover } if !self.deflate_lost => {
                let inflater = self
                    .inflater
                    .get_or_insert_with(|| Inflate::new(Format::Message));
                // Without a kept window each message starts a new stream (whatever became
                // of the last one: read whole, skipped past the cap, or ended).
                if !takeover {
                    inflater.reset();
                }
                Mode::Inflate
            }
            _ => {
                self.skipped += 1;
                Mode::Skip
            }
        }
    }

    fn payload<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        if self.opcode >= 8 || self.mode == Mode::Skip {
            return;
        }
        match self.mask {
            None => self.message_bytes(bytes, sink),
            Some(key) => {
                let mut buf = [0u8; UNMASK_CHUNK];
                let mut at = self.offset;
                for piece in bytes.chunks(UNMASK_CHUNK) {
                    for (i, (o, b)) in buf.iter_mut().zip(piece).enumerate() {
                        *o = b ^ key[((at + i as u64) & 3) as usize];
                    }
                    at += piece.len() as u64;
                    self.message_bytes(&buf[..piece.len()], sink);
                }
            }
        }
    }

    /// Unmasked payload bytes of the current message.
    fn message_bytes<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        match self.mode {
            Mode::Plain => self.deliver(bytes, sink),
            Mode::Inflate | Mode::Drain => self.inflate(bytes, sink),
            Mode::Skip => {}
        }
    }

    /// Message bytes, counted against the cap; past it the message is dropped.
    fn deliver<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        if !matches!(self.mode, Mode::Plain | Mode::Inflate) {
            return;
        }
        self.message_len += bytes.len() as u64;
        if self.message_len > self.cap {
            sink.discard_event();
            self.skipped += 1;
            let takeover = matches!(self.compression, Compression::Deflate { takeover: true });
            self.mode = if self.mode == Mode::Inflate && takeover {
                Mode::Drain
            } else {
                Mode::Skip
            };
            return;
        }
        sink.data(bytes);
    }

    fn inflate<S: EventSink>(&mut self, bytes: &[u8], sink: &mut S) {
        let Some(mut inflater) = self.inflater.take() else {
            return;
        };
        inflater.feed(bytes, &mut |out| {
            self.deliver(out, sink);
            // Past the cap with context takeover the rest is inflated all the same.
            true
        });
        let failed = inflater.failed();
        self.inflater = Some(inflater);
        if failed {
            self.lose_deflate(sink);
        }
    }

    /// The inflater cannot go on: this message and every later compressed one is unknown.
    fn lose_deflate<S: EventSink>(&mut self, sink: &mut S) {
        if self.mode == Mode::Inflate {
            sink.discard_event();
        }
        if self.mode != Mode::Drain {
            self.skipped += 1;
        }
        self.mode = Mode::Skip;
        self.deflate_lost = true;
        self.inflater = None;
    }

    fn end_frame<S: EventSink>(&mut self, sink: &mut S) {
        self.phase = Phase::Head;
        match self.opcode {
            8 => {
                if self.in_message && matches!(self.mode, Mode::Plain | Mode::Inflate) {
                    sink.discard_event();
                }
                self.in_message = false;
                self.phase = Phase::Closed;
            }
            0..=2 if self.fin => self.end_message(sink),
            _ => {}
        }
    }

    fn end_message<S: EventSink>(&mut self, sink: &mut S) {
        self.in_message = false;
        if matches!(self.mode, Mode::Inflate | Mode::Drain) {
            // RFC 7692 §7.2.2: the sender removed this empty stored block's tail.
            self.inflate(&[0x00, 0x00, 0xff, 0xff], sink);
            let takeover = matches!(self.compression, Compression::Deflate { takeover: true });
            if takeover && self.inflater.as_ref().is_some_and(Inflate::finished) {
                // A final block ended the stream whose window the next message uses.
                self.deflate_lost = true;
                self.inflater = None;
            }
        }
        match self.mode {
            Mode::Plain | Mode::Inflate => sink.end_event(),
            Mode::Drain | Mode::Skip => {}
        }
    }
}

/// Compresses messages as a permessage-deflate sender does, for tests and the fuzz
/// targets: raw deflate of each message, sync-flushed, the `00 00 ff ff` tail removed
/// (RFC 7692 §7.2.1); one compressor for all (context takeover) or one each.
#[cfg(any(test, fuzzing))]
pub fn deflate_messages(messages: &[&[u8]], takeover: bool) -> Vec<Vec<u8>> {
    use miniz_oxide::deflate::core::{
        compress, create_comp_flags_from_zip_params, CompressorOxide, TDEFLFlush,
    };
    let flags = create_comp_flags_from_zip_params(6, -15, 0);
    let mut c = CompressorOxide::new(flags);
    messages
        .iter()
        .map(|m| {
            if !takeover {
                c = CompressorOxide::new(flags);
            }
            let mut out = Vec::new();
            // Room for all of it: the compressor finishes the flush in one call.
            let mut buf = vec![0u8; 2 * m.len() + 4096];
            let mut input = *m;
            loop {
                let (_, used, written) = compress(&mut c, input, &mut buf, TDEFLFlush::Sync);
                out.extend_from_slice(&buf[..written]);
                input = &input[used..];
                if input.is_empty() && written < buf.len() {
                    break;
                }
            }
            assert_eq!(&out[out.len() - 4..], [0, 0, 0xff, 0xff]);
            out.truncate(out.len() - 4);
            out
        })
        .collect()
}

/// Builds frames for tests and the fuzz targets: `mask` masks them (client frames),
/// `rsv1` marks a compressed message's first frame.
#[cfg(any(test, fuzzing))]
pub fn frame(opcode: u8, fin: bool, rsv1: bool, mask: Option<[u8; 4]>, payload: &[u8]) -> Vec<u8> {
    let mut out = vec![u8::from(fin) << 7 | u8::from(rsv1) << 6 | opcode];
    let m = if mask.is_some() { 0x80 } else { 0 };
    match payload.len() {
        n @ 0..=125 => out.push(m | n as u8),
        n @ 126..=0xffff => {
            out.push(m | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(m | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    match mask {
        None => out.extend_from_slice(payload),
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i & 3]));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::framing::testing::Events;
    const KEY: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

    /// Runs `input` through a framer split at every byte (and in one piece).
    fn every_split(input: &[u8], compression: Compression, cap: u64) -> (Vec<String>, WebSocket) {
        let mut first: Option<(Vec<String>, usize, u64)> = None;
        let mut last = None;
        for at in 0..=input.len() {
            let mut e = Events::default();
            let mut f = WebSocket::new(compression, cap);
            f.feed(&input[..at], &mut e);
            f.feed(&input[at..], &mut e);
            let got = (e.done.clone(), e.discarded, f.skipped);
            match &first {
                None => first = Some(got),
                Some(want) => assert_eq!(&got, want, "split at {at}"),
            }
            last = Some((e.done, f));
        }
        last.unwrap()
    }

    #[test]
    fn masked_fragmented_with_control_frames_between() {
        let mut s = frame(1, false, false, Some(KEY), br#"{"type":"a","#);
        s.extend(frame(9, true, false, Some(KEY), b"ping!"));
        s.extend(frame(0, false, false, Some(KEY), br#""n":"#));
        s.extend(frame(10, true, false, Some(KEY), b""));
        s.extend(frame(0, true, false, Some(KEY), b"1}"));
        s.extend(frame(2, true, false, Some(KEY), br#"{"b":2}"#));
        let (done, f) = every_split(&s, Compression::None, MAX_MESSAGE);
        assert_eq!(done, [r#"{"type":"a","n":1}"#, r#"{"b":2}"#]);
        assert!(f.clean());
    }

    #[test]
    fn unmasked_lengths_of_every_width() {
        let big = format!(r#"{{"p":"{}"}}"#, "x".repeat(70_000));
        let mid = format!(r#"{{"p":"{}"}}"#, "y".repeat(300));
        let mut s = frame(1, true, false, None, big.as_bytes());
        s.extend(frame(1, true, false, None, mid.as_bytes()));
        s.extend(frame(1, true, false, None, b"{}"));
        // Not every split of 70 KB: the header edges and a spread of others.
        for at in [
            0,
            1,
            2,
            5,
            9,
            10,
            11,
            70_000,
            big.len() + 10,
            big.len() + 13,
            s.len(),
        ] {
            let mut e = Events::default();
            let mut f = WebSocket::new(Compression::None, MAX_MESSAGE);
            f.feed(&s[..at], &mut e);
            f.feed(&s[at..], &mut e);
            assert_eq!(e.done, [big.as_str(), mid.as_str(), "{}"], "split at {at}");
            assert!(f.clean());
        }
    }

    #[test]
    fn a_message_past_the_cap_is_skipped_not_held() {
        let mut s = frame(1, false, false, None, br#"{"a":"0123"#);
        s.extend(frame(0, true, false, None, br#"456789"}"#));
        s.extend(frame(1, true, false, None, br#"{"b":1}"#));
        let (done, f) = every_split(&s, Compression::None, 12);
        assert_eq!(done, [r#"{"b":1}"#]);
        assert_eq!(f.skipped(), 1);
        assert!(f.clean());
    }

    #[test]
    fn permessage_deflate_with_and_without_context_takeover() {
        let msgs: [&[u8]; 3] = [
            br#"{"type":"response.done","response":{"usage":{"total_tokens":1}}}"#,
            br#"{"type":"response.done","response":{"usage":{"total_tokens":2}}}"#,
            br#"{"type":"session.updated"}"#,
        ];
        for takeover in [true, false] {
            let z = deflate_messages(&msgs, takeover);
            // The second message leans on the first one's window when it is kept.
            if takeover {
                assert!(z[1].len() < z[0].len() / 2);
            }
            let mut s = frame(1, true, true, Some(KEY), &z[0]);
            // The second one fragmented: RSV1 on its first frame only.
            let (a, b) = z[1].split_at(z[1].len() / 2);
            s.extend(frame(1, false, true, Some(KEY), a));
            s.extend(frame(9, true, false, Some(KEY), b""));
            s.extend(frame(0, true, false, Some(KEY), b));
            // Uncompressed messages may be mixed in.
            s.extend(frame(1, true, false, Some(KEY), msgs[2]));
            let (done, f) = every_split(&s, Compression::Deflate { takeover }, MAX_MESSAGE);
            let want: Vec<&str> = msgs
                .iter()
                .map(|m| core::str::from_utf8(m).unwrap())
                .collect();
            assert_eq!(done, want, "takeover {takeover}");
            assert_eq!(f.skipped(), 0);
        }
    }

    #[test]
    fn compression_that_cannot_be_followed_is_unknown() {
        let msgs: [&[u8]; 2] = [br#"{"a":1}"#, br#"{"a":2}"#];
        let z = deflate_messages(&msgs, true);
        let mut s = frame(1, true, true, None, &z[0]);
        s.extend(frame(1, true, true, None, &z[1]));
        s.extend(frame(1, true, false, None, br#"{"c":3}"#));
        // Not negotiated (or an unknown extension): the compressed ones are skipped.
        for c in [Compression::None, Compression::Unknown] {
            let (done, f) = every_split(&s, c, MAX_MESSAGE);
            assert_eq!(done, [r#"{"c":3}"#]);
            assert_eq!(f.skipped(), 2);
        }
    }

    #[test]
    fn a_deflate_bomb_stops_at_the_cap() {
        let zeros = vec![b' '; 1 << 20];
        let z = deflate_messages(&[&zeros, b"{}"], false);
        let mut s = frame(1, true, true, None, &z[0]);
        s.extend(frame(1, true, true, None, &z[1]));
        let mut e = Events::default();
        let mut f = WebSocket::new(Compression::Deflate { takeover: false }, 64 * 1024);
        f.feed(&s, &mut e);
        assert_eq!(e.done, ["{}"]);
        assert_eq!(f.skipped(), 1);
    }

    #[test]
    fn protocol_errors_stop_the_framer() {
        for bad in [
            frame(0, true, false, None, b"{}"), // continuation without a message
            frame(3, true, false, None, b"{}"), // reserved opcode
            frame(9, false, false, None, b""),  // fragmented ping
            frame(9, true, false, None, &[0; 126]), // long ping
        ] {
            let mut s = bad;
            s.extend(frame(1, true, false, None, b"{}"));
            let mut e = Events::default();
            let mut f = WebSocket::new(Compression::None, MAX_MESSAGE);
            f.feed(&s, &mut e);
            assert!(e.done.is_empty());
            assert!(f.broken() && !f.clean());
        }
        // A data frame inside a message: the open one is discarded.
        let mut s = frame(1, false, false, None, br#"{"a":"#);
        s.extend(frame(1, true, false, None, b"{}"));
        let mut e = Events::default();
        let mut f = WebSocket::new(Compression::None, MAX_MESSAGE);
        f.feed(&s, &mut e);
        assert!(e.done.is_empty() && e.discarded == 1 && f.broken());
    }

    #[test]
    fn close_ends_the_stream_and_a_cut_frame_is_not_clean() {
        let mut s = frame(1, true, false, None, b"{}");
        s.extend(frame(8, true, false, None, &[0x03, 0xe8]));
        s.extend(frame(1, true, false, None, br#"{"after":1}"#));
        let (done, f) = every_split(&s, Compression::None, MAX_MESSAGE);
        assert_eq!(done, ["{}"]);
        assert!(f.clean());
        let m = frame(1, true, false, None, b"{}");
        for at in 1..m.len() {
            let mut f = WebSocket::new(Compression::None, MAX_MESSAGE);
            f.feed(&m[..at], &mut Events::default());
            assert!(!f.clean());
        }
    }

    /// Events as bytes (any bytes: inflated garbage is not UTF-8).
    #[derive(Default)]
    struct Raw {
        current: Vec<u8>,
        done: Vec<Vec<u8>>,
        discarded: usize,
    }

    impl EventSink for Raw {
        fn data(&mut self, bytes: &[u8]) {
            self.current.extend_from_slice(bytes);
        }
        fn end_event(&mut self) {
            self.done.push(core::mem::take(&mut self.current));
        }
        fn discard_event(&mut self) {
            self.current.clear();
            self.discarded += 1;
        }
    }

    /// Every compression setting a connection can have.
    const COMPRESSIONS: [Compression; 4] = [
        Compression::None,
        Compression::Unknown,
        Compression::Deflate { takeover: true },
        Compression::Deflate { takeover: false },
    ];

    /// What `bytes` give fed in two pieces cut at `cut`: the messages, the discarded ones,
    /// the skipped count (`cap`: the message size limit) and whether the framing ended clean.
    fn split_run(
        bytes: &[u8],
        compression: Compression,
        cap: u64,
        cut: usize,
    ) -> (Vec<Vec<u8>>, usize, u64, bool) {
        let mut e = Raw::default();
        let mut f = WebSocket::new(compression, cap);
        f.feed(&bytes[..cut], &mut e);
        f.feed(&bytes[cut..], &mut e);
        (e.done, e.discarded, f.skipped(), f.clean())
    }

    /// [`split_run`] cut at every byte: the same result at every cut, which is returned.
    fn raw_every_split(
        bytes: &[u8],
        compression: Compression,
        cap: u64,
    ) -> (Vec<Vec<u8>>, usize, u64, bool) {
        let whole = split_run(bytes, compression, cap, bytes.len());
        for at in 0..bytes.len() {
            // Not `assert_eq!`: the events may be 100 KB each.
            assert!(
                split_run(bytes, compression, cap, at) == whole,
                "split at {at}"
            );
        }
        whole
    }

    const DELTA: &[u8] = br#"{"type":"response.output_text.delta","delta":"the quick brown fox jumps over the lazy dog"}"#;

    #[test]
    fn context_takeover_lets_a_message_refer_to_the_one_before() {
        let z = deflate_messages(&[DELTA, DELTA], true);
        // The second message is mostly back-references into the first.
        assert!(z[1].len() < z[0].len() / 3, "{} {}", z[0].len(), z[1].len());
        let mut s = frame(1, true, true, None, &z[0]);
        s.extend(frame(1, true, true, None, &z[1]));
        let (done, discarded, skipped, clean) =
            raw_every_split(&s, Compression::Deflate { takeover: true }, MAX_MESSAGE);
        assert_eq!(done, [DELTA, DELTA]);
        assert_eq!((discarded, skipped, clean), (0, 0, true));
        // Alone, nothing precedes it: the back-reference is corrupt data, never zeros.
        let alone = frame(1, true, true, None, &z[1]);
        for takeover in [true, false] {
            let (done, _, skipped, _) =
                raw_every_split(&alone, Compression::Deflate { takeover }, MAX_MESSAGE);
            assert!(done.is_empty() && skipped == 1, "takeover {takeover}");
        }
    }

    #[test]
    fn no_context_takeover_starts_every_message_afresh() {
        // A sender that keeps its window although it agreed not to: its second message
        // refers to the first one, which the receiver no longer has.
        let kept = deflate_messages(&[DELTA, DELTA], true);
        let fresh = deflate_messages(&[br#"{"c":3}"#], false);
        let mut s = frame(1, true, true, None, &kept[0]);
        s.extend(frame(1, true, true, None, &kept[1]));
        s.extend(frame(1, true, false, None, br#"{"p":1}"#));
        s.extend(frame(1, true, true, None, &fresh[0]));
        let (done, discarded, skipped, clean) =
            raw_every_split(&s, Compression::Deflate { takeover: false }, MAX_MESSAGE);
        // The second is corrupt; the direction's compressed messages are lost from there.
        assert_eq!(done, [DELTA, br#"{"p":1}"#]);
        assert_eq!((discarded, skipped, clean), (1, 2, true));
        // With the window kept all four are read (the last one, a stream of its own,
        // refers only to itself).
        let (done, _, skipped, _) =
            raw_every_split(&s, Compression::Deflate { takeover: true }, MAX_MESSAGE);
        assert_eq!(
            done,
            [DELTA, DELTA, br#"{"p":1}"#.as_slice(), br#"{"c":3}"#]
        );
        assert_eq!(skipped, 0);

        // A message left in the middle of a block (skipped past the cap without context
        // takeover): the next one starts a new stream all the same.
        let big = format!(r#"{{"a":"{}"}}"#, "x".repeat(5000));
        for takeover in [false, true] {
            let z = deflate_messages(&[big.as_bytes(), DELTA, br#"{"b":2}"#], takeover);
            let mut s = frame(1, true, true, None, &z[0]);
            s.extend(frame(1, true, true, None, &z[1]));
            s.extend(frame(1, true, true, None, &z[2]));
            let (done, _, skipped, _) =
                raw_every_split(&s, Compression::Deflate { takeover }, 1000);
            assert_eq!(done, [DELTA, br#"{"b":2}"#], "takeover {takeover}");
            assert_eq!(skipped, 1, "takeover {takeover}");
        }
    }

    #[test]
    fn back_references_32000_bytes_back_across_messages_and_the_slide() {
        // 32,000 pseudo-random bytes (no repeats within), sent three times: the second and
        // third messages are back-references 32,000 bytes back, into the message before,
        // and their 96,000 bytes in all make the inflater's 48 KiB buffer slide twice.
        let block = crate::decode::inflate::unrepeating(32_000);
        let b = block.as_slice();
        let z = deflate_messages(&[b, b, b], true);
        assert!(z[1].len() < 1000 && z[2].len() < 1000, "{}", z[1].len());
        let mut s = frame(1, true, true, None, &z[0]);
        // The second one in two fragments, the third masked (a client's frames).
        let (a, b) = z[1].split_at(z[1].len() / 3);
        s.extend(frame(2, false, true, None, a));
        s.extend(frame(0, true, false, None, b));
        let mut client = frame(2, true, true, Some(KEY), &z[0]);
        client.extend(frame(2, true, true, Some(KEY), &z[1]));
        client.extend(frame(2, true, true, Some(KEY), &z[2]));
        s.extend(frame(2, true, true, None, &z[2]));
        for stream in [s, client] {
            let (done, discarded, skipped, clean) = raw_every_split(
                &stream,
                Compression::Deflate { takeover: true },
                MAX_MESSAGE,
            );
            assert!(done.len() == 3 && done.iter().all(|m| *m == block));
            assert_eq!((discarded, skipped, clean), (0, 0, true));
        }
    }

    proptest::proptest! {
        /// Any bytes, split anywhere, under every compression setting: no panic, and the
        /// same events, discards and skips as in one piece (the framer keeps no state that
        /// depends on where chunks end).
        #[test]
        fn arbitrary_bytes_split_anywhere(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400),
            at in 0usize..400,
            c in 0usize..4,
        ) {
            proptest::prop_assert_eq!(
                split_run(&bytes, COMPRESSIONS[c], 64, at.min(bytes.len())),
                split_run(&bytes, COMPRESSIONS[c], 64, bytes.len())
            );
        }

        /// Well-formed frames of random kinds (fragments, control frames, compressed bits,
        /// masks) with random payloads, split anywhere: the same as in one piece.
        #[test]
        fn random_frames_split_anywhere(
            frames in proptest::collection::vec(
                (
                    proptest::sample::select(vec![0u8, 1, 2, 8, 9, 10]),
                    proptest::prelude::any::<(bool, bool, bool)>(),
                    proptest::collection::vec(proptest::prelude::any::<u8>(), 0..140),
                ),
                0..12,
            ),
            at in 0usize..2000,
            c in 0usize..4,
        ) {
            let mut bytes = Vec::new();
            for (opcode, (fin, rsv1, masked), payload) in &frames {
                bytes.extend(frame(*opcode, *fin, *rsv1, masked.then_some(KEY), payload));
            }
            proptest::prop_assert_eq!(
                split_run(&bytes, COMPRESSIONS[c], 100, at.min(bytes.len())),
                split_run(&bytes, COMPRESSIONS[c], 100, bytes.len())
            );
        }
    }

    #[test]
    fn extension_headers() {
        let d = |t| Compression::Deflate { takeover: t };
        assert_eq!(negotiated(None), (Compression::None, Compression::None));
        assert_eq!(negotiated(Some(b"permessage-deflate")), (d(true), d(true)));
        assert_eq!(
            negotiated(Some(
                b"permessage-deflate; server_no_context_takeover; client_max_window_bits=15"
            )),
            (d(false), d(true))
        );
        assert_eq!(
            negotiated(Some(b"Permessage-Deflate;client_no_context_takeover")),
            (d(true), d(false))
        );
        for odd in [
            &b"x-webkit-deflate-frame"[..],
            b"permessage-deflate; foo=1",
            b"permessage-deflate, permessage-deflate",
        ] {
            assert_eq!(
                negotiated(Some(odd)),
                (Compression::Unknown, Compression::Unknown)
            );
        }
    }
}
