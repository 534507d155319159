//! Incremental deflate decoding with a bounded window: `Content-Encoding: gzip` / `deflate`
//! bodies, and the messages of a WebSocket connection's permessage-deflate.
//!
//! Official SDKs send `Accept-Encoding: gzip`, so a sidecar often sees compressed
//! upstream bodies; Realtime sessions may compress their WebSocket messages (RFC 7692).
//! Decompression is streamed through `miniz_oxide`'s decompressor into one fixed buffer
//! that holds both the 32 KiB history window deflate's back-references need and the bytes
//! just decoded, which go from there straight to the framer.
//!
//! Why this buffer and not `miniz_oxide`'s streaming state: that state keeps its window
//! as a 32 KiB ring, so every back-reference is copied through an index mask, and a
//! match that straddles the ring's end byte by byte. Here the buffer is linear (the
//! decompressor's "non-wrapping" mode, in which a back-reference is one plain copy): the
//! window, then room for two [`OUT_BUF`] outputs. When less than one is left, the last
//! 32 KiB slide to the front, one 32 KiB copy per 8–16 KiB decoded, which costs less than
//! the masks did. Measured side by side on the benchmarks' 1 MiB gzip body in 1–16 KiB
//! chunks (`benches/examples/inflate_modes.rs`): the ring with its output copy ran at
//! 0.89–0.90 of inflating into one buffer as large as the body, this buffer at 0.99–1.00.
//! It holds 8 KiB more than the ring and its separate output buffer did.
//!
//! The decompressor refuses a back-reference farther back than the buffer's start (as
//! zlib does), so what lies before the stream's start is corrupt, never zeros: `buf[..pos]`
//! is exactly the stream's history (all of it, or its last 32 KiB after a slide).
//!
//! gzip (RFC 1952): the member header (with optional extra, name, comment and header CRC)
//! is parsed here, the raw deflate data goes to miniz, and the trailer's CRC32 and size
//! are checked; a mismatch marks the body as corrupt. Concatenated members are decoded in
//! turn. `deflate` means zlib-wrapped data (RFC 1950), but some servers send raw deflate;
//! the first two bytes tell which.
//!
//! [`Format::Message`] is the raw deflate of permessage-deflate (RFC 7692): one stream
//! across the messages of a direction, each message's payload followed by the
//! `00 00 ff ff` its sender removed (the tail of a sync flush's empty stored block, which
//! leaves the stream at a block boundary). With context takeover the decoder is simply
//! fed on: the window, and so back-references into earlier messages, carry over. Without,
//! [`Inflate::reset`] starts each message as a new stream, and a back-reference before
//! its start is corrupt. A window smaller than 32 KiB (`*_max_window_bits`) is covered by
//! this one.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use super::OUT_BUF;

/// Deflate's history window: the farthest a back-reference reaches.
const HISTORY: usize = 32 * 1024;

/// The decoding buffer: the history window and room for two outputs after it.
const BUF: usize = HISTORY + 2 * OUT_BUF;

/// Decompressor flags for raw deflate data fed in pieces into the linear buffer.
const RAW: u32 = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
    | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
    | inflate_flags::TINFL_FLAG_IGNORE_ADLER32;

/// The same for zlib-wrapped data: its header parsed, its Adler-32 checked.
const ZLIB: u32 = inflate_flags::TINFL_FLAG_HAS_MORE_INPUT
    | inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF
    | inflate_flags::TINFL_FLAG_PARSE_ZLIB_HEADER
    | inflate_flags::TINFL_FLAG_COMPUTE_ADLER32;

/// What wraps the deflate data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Format {
    /// `Content-Encoding: gzip`: gzip members (RFC 1952).
    Gzip,
    /// `Content-Encoding: deflate`: zlib-wrapped (RFC 1950) or raw deflate, sniffed.
    Deflate,
    /// WebSocket permessage-deflate (RFC 7692): raw deflate, fed message after message
    /// with each one's `00 00 ff ff` tail put back (see the module docs).
    Message,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// gzip: reading the fixed 10-byte header.
    Fixed,
    ExtraLen,
    Extra,
    Name,
    Comment,
    HeaderCrc,
    /// deflate: waiting for two bytes to tell zlib from raw.
    Sniff,
    Body,
    Trailer,
    Done,
    /// The consumer asked to stop (the inspection limit was hit): nothing more is decoded.
    Halted,
    /// After the last member: trailing garbage, ignored.
    Trailing,
    Error,
}

/// The decoder.
pub(crate) struct Inflate {
    coding: Format,
    phase: Phase,
    flags: u8,
    hdr: [u8; 10],
    got: usize,
    skip: usize,
    state: Box<DecompressorOxide>,
    /// [`RAW`] or [`ZLIB`].
    mode: u32,
    /// History, then decoded bytes: `buf[..pos]` is what the current member decoded
    /// lately (its last [`HISTORY`] bytes at least, or all of them).
    buf: Box<[u8; BUF]>,
    pos: usize,
    crc: crate::crc32::Hasher,
    size: u32,
    /// Compressed (deflate) bytes consumed and decoded bytes produced: counted work.
    consumed: u64,
    produced: u64,
}

impl core::fmt::Debug for Inflate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Inflate")
            .field("coding", &self.coding)
            .field("phase", &self.phase)
            .finish()
    }
}

impl Inflate {
    pub(crate) fn new(coding: Format) -> Self {
        Inflate {
            coding,
            phase: match coding {
                Format::Gzip => Phase::Fixed,
                Format::Deflate => Phase::Sniff,
                Format::Message => Phase::Body,
            },
            flags: 0,
            hdr: [0; 10],
            got: 0,
            skip: 0,
            state: Box::default(),
            mode: RAW,
            buf: Box::new([0; BUF]),
            pos: 0,
            crc: crate::crc32::Hasher::new(),
            size: 0,
            consumed: 0,
            produced: 0,
        }
    }

    /// Starts a new deflate stream with an empty window: nothing decoded so far can be
    /// referred to. For [`Format::Message`] without context takeover, before each message.
    pub(crate) fn reset(&mut self) {
        debug_assert_eq!(self.coding, Format::Message);
        self.state.init();
        self.pos = 0;
        self.phase = Phase::Body;
    }

    /// Deflate-stream bytes consumed so far (headers and trailers not counted).
    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    /// Decoded bytes produced so far.
    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    /// True after corrupt input.
    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Error
    }

    /// True when the compressed stream ended properly (for [`Format::Message`]: a final
    /// block ended it; what follows is ignored until [`Inflate::reset`]).
    pub(crate) fn finished(&self) -> bool {
        matches!(self.phase, Phase::Done | Phase::Trailing)
    }

    /// Decodes `input`, handing decoded bytes to `out`, which returns whether to go on: once
    /// it returns false, decoding stops there for good (at most one output buffer,
    /// [`OUT_BUF`] bytes, is decoded past what the consumer wanted). See
    /// [`Decoder::feed`](super::Decoder::feed).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) {
        let mut rest = input;
        while !rest.is_empty() {
            match self.phase {
                Phase::Error | Phase::Halted => return,
                Phase::Done => {
                    // Another gzip member may follow; anything else is trailing garbage,
                    // ignored to the end (decided once, by the first byte after the
                    // member, wherever the chunks end).
                    if self.coding == Format::Gzip && rest[0] == 0x1f {
                        self.phase = Phase::Fixed;
                        self.got = 0;
                        // A member is a deflate stream of its own: its back-references
                        // cannot reach into the one before.
                        self.state.init();
                        self.pos = 0;
                        self.crc = crate::crc32::Hasher::new();
                        self.size = 0;
                    } else {
                        self.phase = Phase::Trailing;
                        return;
                    }
                }
                Phase::Trailing => return,
                Phase::Fixed => {
                    let take = (10 - self.got).min(rest.len());
                    self.hdr[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got == 10 {
                        self.got = 0;
                        if self.hdr[0] != 0x1f || self.hdr[1] != 0x8b || self.hdr[2] != 8 {
                            self.phase = Phase::Error;
                            return;
                        }
                        self.flags = self.hdr[3];
                        self.next_header_phase(Phase::Fixed);
                    }
                }
                Phase::ExtraLen => {
                    let take = (2 - self.got).min(rest.len());
                    self.hdr[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got == 2 {
                        self.got = 0;
                        self.skip = usize::from(u16::from_le_bytes([self.hdr[0], self.hdr[1]]));
                        self.phase = Phase::Extra;
                        if self.skip == 0 {
                            self.next_header_phase(Phase::Extra);
                        }
                    }
                }
                Phase::Extra => {
                    let take = self.skip.min(rest.len());
                    self.skip -= take;
                    rest = &rest[take..];
                    if self.skip == 0 {
                        self.next_header_phase(Phase::Extra);
                    }
                }
                Phase::Name | Phase::Comment => match memchr::memchr(0, rest) {
                    None => return,
                    Some(p) => {
                        rest = &rest[p + 1..];
                        let at = self.phase;
                        self.next_header_phase(at);
                    }
                },
                Phase::HeaderCrc => {
                    let take = self.skip.min(rest.len());
                    self.skip -= take;
                    rest = &rest[take..];
                    if self.skip == 0 {
                        self.phase = Phase::Body;
                    }
                }
                Phase::Sniff => {
                    let take = (2 - self.got).min(rest.len());
                    self.hdr[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got == 2 {
                        let (cmf, flg) = (self.hdr[0], self.hdr[1]);
                        let zlib =
                            cmf & 0x0f == 8 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0;
                        self.mode = if zlib { ZLIB } else { RAW };
                        self.phase = Phase::Body;
                        let head = [cmf, flg];
                        self.inflate_some(&head, out);
                    }
                }
                Phase::Body => {
                    let used = self.inflate_some(rest, out);
                    rest = &rest[used..];
                }
                Phase::Trailer => {
                    let take = (8 - self.got).min(rest.len());
                    self.hdr[self.got..self.got + take].copy_from_slice(&rest[..take]);
                    self.got += take;
                    rest = &rest[take..];
                    if self.got == 8 {
                        self.got = 0;
                        let crc = u32::from_le_bytes([
                            self.hdr[0],
                            self.hdr[1],
                            self.hdr[2],
                            self.hdr[3],
                        ]);
                        let size = u32::from_le_bytes([
                            self.hdr[4],
                            self.hdr[5],
                            self.hdr[6],
                            self.hdr[7],
                        ]);
                        let actual = core::mem::replace(&mut self.crc, crate::crc32::Hasher::new())
                            .finalize();
                        self.phase = if crc == actual && size == self.size {
                            Phase::Done
                        } else {
                            Phase::Error
                        };
                    }
                }
            }
        }
    }

    fn next_header_phase(&mut self, after: Phase) {
        const FHCRC: u8 = 2;
        const FEXTRA: u8 = 4;
        const FNAME: u8 = 8;
        const FCOMMENT: u8 = 16;
        let order = [
            Phase::Fixed,
            Phase::Extra,
            Phase::Name,
            Phase::Comment,
            Phase::HeaderCrc,
        ];
        let pos = order.iter().position(|p| *p == after).unwrap_or(0);
        for p in &order[pos + 1..] {
            match p {
                Phase::Extra if self.flags & FEXTRA != 0 => {
                    self.phase = Phase::ExtraLen;
                    self.got = 0;
                    return;
                }
                Phase::Name if self.flags & FNAME != 0 => {
                    self.phase = Phase::Name;
                    return;
                }
                Phase::Comment if self.flags & FCOMMENT != 0 => {
                    self.phase = Phase::Comment;
                    return;
                }
                Phase::HeaderCrc if self.flags & FHCRC != 0 => {
                    self.phase = Phase::HeaderCrc;
                    self.skip = 2;
                    return;
                }
                _ => {}
            }
        }
        self.phase = Phase::Body;
    }

    /// Runs the inflater over `input` until it needs more (or `out` says stop); returns
    /// input bytes used.
    fn inflate_some(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        let used = self.run_inflater(input, out);
        self.consumed += used as u64;
        used
    }

    fn run_inflater(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        let mut used = 0;
        loop {
            if BUF - self.pos < OUT_BUF {
                // Keep the window, make room after it.
                self.buf.copy_within(self.pos - HISTORY..self.pos, 0);
                self.pos = HISTORY;
            }
            // At most `OUT_BUF` bytes per call: the consumer can stop decoding within one.
            let end = self.pos + OUT_BUF;
            let (status, read, written) = decompress(
                &mut self.state,
                &input[used..],
                &mut self.buf[..end],
                self.pos,
                self.mode,
            );
            used += read;
            if written > 0 {
                let new = &self.buf[self.pos..self.pos + written];
                self.pos += written;
                if self.coding == Format::Gzip {
                    self.crc.update(new);
                    self.size = self.size.wrapping_add(written as u32);
                }
                self.produced += written as u64;
                if !out(new) {
                    self.phase = Phase::Halted;
                    return used;
                }
            }
            match status {
                TINFLStatus::Done => {
                    self.phase = if self.coding == Format::Gzip {
                        Phase::Trailer
                    } else {
                        Phase::Done
                    };
                    self.got = 0;
                    return used;
                }
                // The output slice is full: go on after making room.
                TINFLStatus::HasMoreOutput => {}
                // Every input byte taken (with `HAS_MORE_INPUT`, the decompressor asks
                // for more rather than failing for want of it).
                TINFLStatus::NeedsMoreInput | TINFLStatus::FailedCannotMakeProgress => {
                    if read == 0 && written == 0 && used < input.len() {
                        // Input left but nothing taken or made: never loop on it.
                        self.phase = Phase::Error;
                        return input.len();
                    }
                    return used;
                }
                // Corrupt data (a bad block, a back-reference before the stream's start),
                // a bad zlib header or Adler-32.
                TINFLStatus::Failed | TINFLStatus::BadParam | TINFLStatus::Adler32Mismatch => {
                    self.phase = Phase::Error;
                    return input.len();
                }
            }
        }
    }
}

/// Pseudo-random bytes (xorshift), the same every call: no run of them repeats within a
/// deflate window, so a compressor can only copy them from a whole earlier repeat. For
/// the tests of back-references at the window's far end, here and in the WebSocket
/// framer.
#[cfg(test)]
pub(crate) fn unrepeating(len: usize) -> Vec<u8> {
    let mut x = 0x9e37_79b9_7f4a_7c15u64;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 56) as u8
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};

    fn gzip(data: &[u8], flags: u8) -> Vec<u8> {
        let mut v = vec![0x1f, 0x8b, 8, flags, 0, 0, 0, 0, 0, 3];
        if flags & 4 != 0 {
            v.extend_from_slice(&[3, 0, b'a', b'b', b'c']);
        }
        if flags & 8 != 0 {
            v.extend_from_slice(b"name.json\0");
        }
        if flags & 16 != 0 {
            v.extend_from_slice(b"a comment\0");
        }
        if flags & 2 != 0 {
            v.extend_from_slice(&[0xAA, 0xBB]);
        }
        v.extend(compress_to_vec(data, 6));
        v.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
        v.extend_from_slice(&(data.len() as u32).to_le_bytes());
        v
    }

    fn decode(coding: Format, input: &[u8], at: usize) -> (Vec<u8>, bool, bool) {
        let mut d = Inflate::new(coding);
        let mut out = Vec::new();
        d.feed(&input[..at], &mut |b| {
            out.extend_from_slice(b);
            true
        });
        d.feed(&input[at..], &mut |b| {
            out.extend_from_slice(b);
            true
        });
        (out, d.finished(), d.failed())
    }

    #[test]
    fn gzip_with_every_header_flag_at_every_split() {
        let data: Vec<u8> = (0..3000u32)
            .flat_map(|i| format!("line {i}\n").into_bytes())
            .collect();
        for flags in [0u8, 2, 4, 8, 16, 30] {
            let z = gzip(&data, flags);
            for at in (0..=z.len()).step_by(7) {
                let (out, done, failed) = decode(Format::Gzip, &z, at);
                assert_eq!(out, data, "flags {flags} split {at}");
                assert!(done && !failed);
            }
        }
    }

    #[test]
    fn concatenated_members() {
        let mut z = gzip(b"hello ", 0);
        z.extend(gzip(b"world", 8));
        assert_eq!(decode(Format::Gzip, &z, 5).0, b"hello world");
    }

    #[test]
    fn deflate_zlib_and_raw() {
        let data = b"{\"usage\":{\"prompt_tokens\":1}}".repeat(50);
        for z in [compress_to_vec_zlib(&data, 6), compress_to_vec(&data, 6)] {
            for at in 0..=z.len() {
                let (out, done, failed) = decode(Format::Deflate, &z, at);
                assert_eq!(out, data);
                assert!(done && !failed);
            }
        }
    }

    /// Decodes `input` in pieces of `chunk` bytes, each output checked against the bound.
    fn decode_in(coding: Format, input: &[u8], chunk: usize) -> (Vec<u8>, bool, bool) {
        let mut d = Inflate::new(coding);
        let mut out = Vec::new();
        for piece in input.chunks(chunk) {
            d.feed(piece, &mut |b| {
                assert!(!b.is_empty() && b.len() <= OUT_BUF);
                out.extend_from_slice(b);
                true
            });
        }
        (out, d.finished(), d.failed())
    }

    #[test]
    fn back_references_across_the_slide_at_the_farthest_distance() {
        // 32,000 pseudo-random bytes, repeated: the compressor copies each repeat from
        // 32,000 bytes back (its matches stop short of 32 KiB), so the matches reach over
        // every slide of the buffer to near the window's far end.
        let block = unrepeating(32_000);
        let data = block.repeat(9);
        let z = gzip(&data, 0);
        assert!(
            z.len() < 2 * block.len(),
            "the repeats are matches: {}",
            z.len()
        );
        for chunk in [1, 7, 4096, 5000, z.len()] {
            let (out, done, failed) = decode_in(Format::Gzip, &z, chunk);
            assert!(out == data, "chunks of {chunk}");
            assert!(done && !failed, "chunks of {chunk}");
        }
    }

    #[test]
    fn a_back_reference_before_the_start_is_corrupt() {
        // Raw deflate, one fixed-Huffman block: length 3 at distance 1 (nothing before it
        // to copy), then the block's end. The ring of earlier versions read its own zeros
        // there; now the decompressor refuses it, as zlib does ("invalid distance too far
        // back").
        let z = [0x03, 0x02, 0x00];
        for chunk in [1, 3] {
            let (out, done, failed) = decode_in(Format::Deflate, &z, chunk);
            assert!(out.is_empty() && !done && failed, "chunks of {chunk}");
        }
        // The same in a second gzip member: it cannot reach into the first.
        let mut two = gzip(b"first member ", 0);
        two.extend_from_slice(&[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3]);
        two.extend_from_slice(&z);
        two.extend_from_slice(&[0; 8]);
        let (out, done, failed) = decode_in(Format::Gzip, &two, 4);
        assert_eq!(out, b"first member ");
        assert!(!done && failed);
    }

    #[test]
    fn messages_keep_the_window_unless_reset() {
        // Raw deflate of "abc", then of "abcabc" with the window kept (a literal `a`, then
        // a back-reference 3 back, length 5), each sync-flushed and its `00 00 ff ff` tail removed (as
        // zlib writes them).
        let abc = [0x4a, 0x4c, 0x4a, 0x06, 0x00];
        let refer = [0x4a, 0x04, 0x23, 0x00, 0x00];
        let mut d = Inflate::new(Format::Message);
        let mut out = Vec::new();
        for m in [&abc[..], &refer[..]] {
            d.feed(m, &mut |b| {
                out.extend_from_slice(b);
                true
            });
            d.feed(&[0, 0, 0xff, 0xff], &mut |b| {
                out.extend_from_slice(b);
                true
            });
        }
        assert_eq!(out, b"abcabcabc");
        assert!(!d.failed() && !d.finished());
        d.reset();
        out.clear();
        d.feed(&refer, &mut |b| {
            out.extend_from_slice(b);
            true
        });
        // Its literal `a` comes out, then the back-reference has nothing 3 bytes back.
        assert_eq!(out, b"a");
        assert!(d.failed());
    }

    #[test]
    fn corrupt_input_fails_without_panic() {
        let mut z = gzip(b"some body text here", 0);
        let n = z.len();
        z[n - 6] ^= 0x55; // CRC
        assert!(decode(Format::Gzip, &z, 3).2);
        assert!(decode(Format::Gzip, b"not gzip at all", 3).2);
        let garbage: Vec<u8> = (0..500u32).map(|i| (i * 7919 % 251) as u8).collect();
        let _ = decode(Format::Deflate, &garbage, 100);
    }
}
