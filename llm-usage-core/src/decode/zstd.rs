//! Incremental `Content-Encoding: zstd` decoding (RFC 8878; HTTP use in RFC 9659).
//!
//! Written here rather than taken from a crate: the pure-Rust `ruzstd` decoder hands its
//! output on only once it has left the window (its `Read` drains what lies beyond the last
//! `Window_Size` bytes, the rest when the frame ends), so a body would reach the framer up
//! to 8 MiB late, the inspection limit could not stop decoding within one output buffer,
//! and its current version needs Rust 1.87. This decoder writes into its own window and
//! hands the new bytes on at least every [`OUT_BUF`] bytes and at the end of every block.
//!
//! What it keeps, whatever the body size:
//!
//! * the window: the last `Window_Size` decoded bytes, which matches refer back into. It
//!   grows with the decoded size (doubling up to 64 KiB, then to the whole window) up to
//!   the frame's window, which must be at most [`MAX_WINDOW`] (a frame asking for more is
//!   undecodable, and nothing of that size is allocated); a single-segment frame's window
//!   is its content size;
//! * one compressed block (at most 128 KiB, the format's block limit) and its literals
//!   (at most 128 KiB): a block's Huffman and FSE bitstreams are read from their end, so a
//!   compressed block is decoded once all of it has arrived. Raw and RLE blocks are not
//!   held;
//! * the Huffman table (at most 4,096 entries) and the three FSE tables of the sequences
//!   (at most 512 entries each), kept for the blocks that repeat them.
//!
//! Frames may follow one another, skippable frames are skipped, and the content checksum
//! (XXH64) and content size are checked when the frame carries them. Dictionaries are not
//! supported (HTTP has no way to agree on one): a frame that names one is undecodable, as
//! is corrupt data, a stream cut short of the end of a frame (truncated), and anything after
//! the last frame that is not another frame (trailing garbage). Nothing panics: every
//! length and index read from the input is checked.

use super::xxh64::Xxh64;
use super::{MAX_WINDOW, OUT_BUF};

const MAGIC: u32 = 0xFD2F_B528;
/// Skippable frames: `0x184D2A50` to `0x184D2A5F`.
const SKIPPABLE: u32 = 0x184D_2A50;
/// The largest block, compressed or decoded (`Block_Maximum_Size`'s ceiling).
const BLOCK_MAX: usize = 128 * 1024;
/// The smallest window the ring keeps for a frame that is not single-segment: room for the
/// bytes not yet handed on besides the window.
const RING_MIN: usize = 2 * OUT_BUF;
/// The ring doubles up to this size, then grows to the whole window at once: small bodies
/// keep a small ring, and growing never holds more than this besides the window.
const RING_SMALL: usize = 64 * 1024;

/// Why decoding stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stop {
    /// The consumer asked to stop.
    Halt,
    /// The input is not zstd, or not one this decoder reads.
    Corrupt,
}

type R<T> = Result<T, Stop>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before a frame: reading a magic number (`got` bytes of it so far).
    Magic,
    /// Reading a frame header (`need` bytes after the magic).
    Header,
    /// A skippable frame: reading its length, then skipping `skip` bytes.
    SkipLen,
    Skip,
    BlockHeader,
    /// A raw block: `skip` bytes to copy through.
    Raw,
    /// An RLE block: its one byte.
    Rle,
    /// A compressed block: `need` bytes to collect.
    Compressed,
    Checksum,
    /// The consumer asked to stop (the inspection limit was hit): nothing more is decoded.
    Halted,
    Error,
}

/// An FSE decoding-table entry.
#[derive(Debug, Clone, Copy, Default)]
struct FseEntry {
    symbol: u8,
    bits: u8,
    base: u16,
}

/// An FSE decoding table; empty until a block defines it.
#[derive(Debug, Default)]
struct Fse {
    table: Vec<FseEntry>,
    log: u8,
}

/// A Huffman decoding-table entry: the symbol and its code length.
#[derive(Debug, Clone, Copy, Default)]
struct HufEntry {
    symbol: u8,
    bits: u8,
}

/// What a block may repeat from the blocks before it in the frame.
#[derive(Debug, Default)]
struct Tables {
    huf: Vec<HufEntry>,
    /// The Huffman table's log (0: none yet).
    huf_log: u8,
    ll: Fse,
    of: Fse,
    ml: Fse,
    /// Scratch for the Huffman weights' FSE table.
    weights: Fse,
    literals: Vec<u8>,
    rep: [usize; 3],
}

/// The decoded bytes: the frame's window as a ring, filled up to `pos`, and the bytes not
/// yet handed on (`pending`, the last ones written).
#[derive(Debug, Default)]
struct Window {
    buf: Vec<u8>,
    /// The ring's size: the frame's window (at least [`RING_MIN`] unless single-segment).
    cap: usize,
    /// The frame's `Window_Size`: how far back a match may reach.
    window: usize,
    pos: usize,
    /// Bytes written in this frame.
    total: u64,
    pending: usize,
    /// Bytes the current block may still produce, and the frame (its content size).
    block_left: usize,
    frame_left: u64,
    /// Whether the frame header gave the content size (`frame_left` counts down from it).
    sized: bool,
    hash: Option<Xxh64>,
    /// Bytes written in all frames: counted work.
    produced: u64,
}

impl Window {
    fn start_frame(&mut self, window: usize, single: bool, size: Option<u64>, checksum: bool) {
        self.buf.clear();
        self.window = window;
        self.cap = if single { window } else { window.max(RING_MIN) };
        self.pos = 0;
        self.total = 0;
        self.pending = 0;
        self.frame_left = size.unwrap_or(u64::MAX);
        self.sized = size.is_some();
        self.hash = checksum.then(Xxh64::new);
    }

    /// Makes room for `n` more bytes at `pos` (a [`piece`](Self::piece)): the ring grows,
    /// by doubling up to [`RING_SMALL`], then to the window's size at once; from then on
    /// it wraps.
    fn room(&mut self, n: usize) -> R<()> {
        if n > self.block_left || n as u64 > self.frame_left {
            return Err(Stop::Corrupt);
        }
        let len = self.buf.len();
        if len < self.cap && self.pos + n > len {
            let want = if self.pos + n <= RING_SMALL {
                (self.pos + n).max(2 * len).clamp(RING_MIN, RING_SMALL)
            } else {
                self.cap
            };
            let want = want.min(self.cap);
            if want < self.pos + n {
                return Err(Stop::Corrupt);
            }
            self.buf.reserve_exact(want - len);
            self.buf.resize(want, 0);
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.pos += n;
        if self.pos == self.cap {
            self.pos = 0;
        }
        self.total += n as u64;
        self.produced += n as u64;
        self.pending += n;
        self.block_left -= n;
        self.frame_left -= n as u64;
    }

    /// How much of a write of `n` bytes goes in one piece: up to the point where the
    /// pending bytes must be handed on, and up to the ring's end.
    fn piece(&self, n: usize) -> R<usize> {
        let k = n
            .min(OUT_BUF - self.pending)
            .min(self.cap.saturating_sub(self.pos));
        if k == 0 {
            return Err(Stop::Corrupt);
        }
        Ok(k)
    }

    fn after_write(&mut self, out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        if self.pending >= OUT_BUF {
            self.flush(out)
        } else {
            Ok(())
        }
    }

    /// Copies `data` in.
    fn push(&mut self, mut data: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        while !data.is_empty() {
            let n = self.piece(data.len())?;
            self.room(n)?;
            let dst = self
                .buf
                .get_mut(self.pos..self.pos + n)
                .ok_or(Stop::Corrupt)?;
            dst.copy_from_slice(&data[..n]);
            self.advance(n);
            data = &data[n..];
            self.after_write(out)?;
        }
        Ok(())
    }

    /// Writes `byte` `n` times.
    fn fill(&mut self, byte: u8, mut n: usize, out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        while n > 0 {
            let k = self.piece(n)?;
            self.room(k)?;
            let dst = self
                .buf
                .get_mut(self.pos..self.pos + k)
                .ok_or(Stop::Corrupt)?;
            dst.fill(byte);
            self.advance(k);
            n -= k;
            self.after_write(out)?;
        }
        Ok(())
    }

    /// Copies `len` bytes from `offset` bytes back.
    fn copy(&mut self, offset: usize, mut len: usize, out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        if offset == 0 || offset as u64 > self.total || offset > self.window {
            return Err(Stop::Corrupt);
        }
        // `src` is where the copy reads; `dist` how far behind `pos` it is. While whole
        // copies of the `dist` bytes behind `pos` are made, `src` stays put and `dist`
        // doubles (they repeat with the offset's period), so a run of one byte costs a
        // few copies, not one per byte.
        let mut src = if self.pos >= offset {
            self.pos - offset
        } else {
            self.pos + self.cap - offset
        };
        let mut dist = offset;
        while len > 0 {
            let n = self.piece(len.min(dist))?.min(self.cap - src);
            self.room(n)?;
            if n == 0 || src + n > self.buf.len() || self.pos + n > self.buf.len() {
                return Err(Stop::Corrupt);
            }
            self.buf.copy_within(src..src + n, self.pos);
            self.advance(n);
            len -= n;
            if n == dist && 2 * dist <= self.cap {
                dist *= 2;
            } else {
                src += n;
                if src == self.cap {
                    src = 0;
                }
            }
            self.after_write(out)?;
        }
        Ok(())
    }

    /// Hands the pending bytes on.
    fn flush(&mut self, out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        if self.pending == 0 {
            return Ok(());
        }
        let end = if self.pos == 0 {
            self.buf.len()
        } else {
            self.pos
        };
        let start = end.checked_sub(self.pending);
        let (a, b) = match start {
            Some(s) => (self.buf.get(s..end), None),
            // Wrapped: the tail of the ring, then its head.
            None => {
                let head = self.buf.get(..self.pos);
                let tail_len = self.pending - self.pos;
                let tail = self.buf.len().checked_sub(tail_len);
                (tail.and_then(|t| self.buf.get(t..)), head)
            }
        };
        self.pending = 0;
        for part in [a, b].into_iter().flatten() {
            if part.is_empty() {
                continue;
            }
            if let Some(h) = &mut self.hash {
                h.update(part);
            }
            if !out(part) {
                return Err(Stop::Halt);
            }
        }
        Ok(())
    }
}

/// The decoder.
pub(crate) struct Zstd {
    phase: Phase,
    /// Header, block header, skippable length and checksum bytes.
    hdr: [u8; 16],
    got: usize,
    need: usize,
    skip: u64,
    /// The current block.
    last: bool,
    block: Vec<u8>,
    block_max: usize,
    checksum: bool,
    tables: Box<Tables>,
    window: Window,
    consumed: u64,
}

impl core::fmt::Debug for Zstd {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Zstd")
            .field("phase", &self.phase)
            .field("consumed", &self.consumed)
            .field("produced", &self.window.produced)
            .finish()
    }
}

impl Zstd {
    pub(crate) fn new() -> Self {
        Zstd {
            phase: Phase::Magic,
            hdr: [0; 16],
            got: 0,
            need: 0,
            skip: 0,
            last: false,
            block: Vec::new(),
            block_max: 0,
            checksum: false,
            tables: Box::default(),
            window: Window::default(),
            consumed: 0,
        }
    }

    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    pub(crate) fn produced(&self) -> u64 {
        self.window.produced
    }

    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Error
    }

    /// Between frames, after at least one byte.
    pub(crate) fn finished(&self) -> bool {
        self.phase == Phase::Magic && self.got == 0
    }

    /// See [`Decoder::feed`](super::Decoder::feed).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) {
        let mut rest = input;
        while !rest.is_empty() {
            if matches!(self.phase, Phase::Halted | Phase::Error) {
                return;
            }
            let before = rest.len();
            let r = self.step(&mut rest, out);
            self.consumed += (before - rest.len()) as u64;
            match r {
                Ok(()) => {}
                Err(Stop::Halt) => self.phase = Phase::Halted,
                Err(Stop::Corrupt) => self.phase = Phase::Error,
            }
        }
    }

    /// Collects header bytes into `hdr` up to `need`; true once all are there.
    fn collect(&mut self, rest: &mut &[u8]) -> bool {
        let take = (self.need - self.got).min(rest.len());
        self.hdr[self.got..self.got + take].copy_from_slice(&rest[..take]);
        self.got += take;
        *rest = &rest[take..];
        if self.got == self.need {
            self.got = 0;
            true
        } else {
            false
        }
    }

    /// Consumes some of `rest` in the current phase.
    fn step(&mut self, rest: &mut &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        match self.phase {
            Phase::Halted | Phase::Error => {}
            Phase::Magic => {
                self.need = 4;
                if self.collect(rest) {
                    let magic = le(&self.hdr[..4]) as u32;
                    if magic == MAGIC {
                        // The frame header descriptor tells the header's length.
                        self.phase = Phase::Header;
                        self.need = 1;
                    } else if magic & 0xFFFF_FFF0 == SKIPPABLE {
                        self.phase = Phase::SkipLen;
                        self.need = 4;
                    } else {
                        return Err(Stop::Corrupt);
                    }
                }
            }
            Phase::SkipLen => {
                if self.collect(rest) {
                    self.skip = le(&self.hdr[..4]);
                    self.phase = if self.skip == 0 {
                        Phase::Magic
                    } else {
                        Phase::Skip
                    };
                }
            }
            Phase::Skip => {
                let take = (self.skip.min(rest.len() as u64)) as usize;
                self.skip -= take as u64;
                *rest = &rest[take..];
                if self.skip == 0 {
                    self.phase = Phase::Magic;
                }
            }
            Phase::Header => {
                if self.need == 1 {
                    // The descriptor alone so far: it gives the rest's length.
                    if !self.collect(rest) {
                        return Ok(());
                    }
                    let fhd = self.hdr[0];
                    self.need = header_len(fhd);
                    self.got = 1;
                    if self.need > 1 {
                        return Ok(());
                    }
                } else if !self.collect(rest) {
                    return Ok(());
                }
                self.start_frame()?;
                self.phase = Phase::BlockHeader;
                self.need = 3;
            }
            Phase::BlockHeader => {
                if self.collect(rest) {
                    self.start_block()?;
                    // An empty raw block (or an empty last one) has nothing to read.
                    if self.phase == Phase::Raw && self.skip == 0 {
                        self.end_block(out)?;
                    }
                }
            }
            Phase::Raw => {
                let take = (self.skip.min(rest.len() as u64)) as usize;
                self.window.push(&rest[..take], out)?;
                self.skip -= take as u64;
                *rest = &rest[take..];
                if self.skip == 0 {
                    self.end_block(out)?;
                }
            }
            Phase::Rle => {
                let byte = rest[0];
                *rest = &rest[1..];
                let n = self.skip as usize;
                self.window.fill(byte, n, out)?;
                self.end_block(out)?;
            }
            Phase::Compressed => {
                let take = (self.need - self.block.len()).min(rest.len());
                self.block.extend_from_slice(&rest[..take]);
                *rest = &rest[take..];
                if self.block.len() == self.need {
                    let block = core::mem::take(&mut self.block);
                    let r = self.compressed(&block, out);
                    self.block = block;
                    self.block.clear();
                    r?;
                    self.end_block(out)?;
                }
            }
            Phase::Checksum => {
                if self.collect(rest) {
                    let want = le(&self.hdr[..4]) as u32;
                    let got = self.window.hash.as_ref().map(|h| h.digest() as u32);
                    if got != Some(want) {
                        return Err(Stop::Corrupt);
                    }
                    self.phase = Phase::Magic;
                }
            }
        }
        Ok(())
    }

    /// Reads the frame header in `hdr` (descriptor first).
    fn start_frame(&mut self) -> R<()> {
        let h = &self.hdr[..self.need];
        let fhd = h[0];
        let fcs_flag = fhd >> 6;
        let single = fhd & 0x20 != 0;
        if fhd & 0x08 != 0 {
            // The reserved bit.
            return Err(Stop::Corrupt);
        }
        self.checksum = fhd & 0x04 != 0;
        let mut at = 1;
        let descriptor = if single {
            None
        } else {
            at += 1;
            Some(h[1])
        };
        let dict_len = [0, 1, 2, 4][usize::from(fhd & 3)];
        if le(&h[at..at + dict_len]) != 0 {
            // A dictionary: none is known.
            return Err(Stop::Corrupt);
        }
        at += dict_len;
        let size = match (fcs_flag, single) {
            (0, false) => None,
            (0, true) => Some(le(&h[at..at + 1])),
            (1, _) => Some(le(&h[at..at + 2]) + 256),
            (2, _) => Some(le(&h[at..at + 4])),
            _ => Some(le(&h[at..at + 8])),
        };
        let window = match (descriptor, size) {
            (Some(d), _) => {
                let log = 10 + u32::from(d >> 3);
                let base = 1u64 << log;
                base + (base / 8) * u64::from(d & 7)
            }
            (None, Some(size)) => size,
            (None, None) => return Err(Stop::Corrupt),
        };
        // The cap on memory: a larger window is never allocated.
        if window > MAX_WINDOW as u64 {
            return Err(Stop::Corrupt);
        }
        let window = window as usize;
        self.block_max = window.min(BLOCK_MAX);
        self.window.start_frame(window, single, size, self.checksum);
        let t = &mut *self.tables;
        t.huf_log = 0;
        for fse in [&mut t.ll, &mut t.of, &mut t.ml] {
            fse.table.clear();
        }
        t.rep = [1, 4, 8];
        Ok(())
    }

    /// Reads the block header in `hdr`.
    fn start_block(&mut self) -> R<()> {
        let h = le(&self.hdr[..3]) as usize;
        self.last = h & 1 != 0;
        let size = h >> 3;
        if size > self.block_max {
            return Err(Stop::Corrupt);
        }
        self.window.block_left = self.block_max;
        match (h >> 1) & 3 {
            0 => {
                self.phase = Phase::Raw;
                self.skip = size as u64;
            }
            1 => {
                self.phase = Phase::Rle;
                self.skip = size as u64;
            }
            2 => {
                self.phase = Phase::Compressed;
                self.need = size;
                self.block.clear();
                self.block.reserve_exact(size);
            }
            _ => return Err(Stop::Corrupt),
        }
        Ok(())
    }

    fn end_block(&mut self, out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        // What a block decoded goes on at once (a streamed event flushed by the server
        // ends a block).
        self.window.flush(out)?;
        if !self.last {
            self.phase = Phase::BlockHeader;
            self.need = 3;
            return Ok(());
        }
        if self.window.sized && self.window.frame_left != 0 {
            // Shorter than the content size the header promised.
            return Err(Stop::Corrupt);
        }
        if self.checksum {
            self.phase = Phase::Checksum;
            self.need = 4;
        } else {
            self.phase = Phase::Magic;
        }
        Ok(())
    }

    /// Decodes a compressed block: literals, then sequences executed as they are read.
    fn compressed(&mut self, b: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> R<()> {
        let used = literals(&mut self.tables, b, self.block_max)?;
        let seqs = b.get(used..).ok_or(Stop::Corrupt)?;
        sequences(&mut self.tables, &mut self.window, seqs, out)
    }
}

/// The frame header's length after the magic, from its descriptor.
fn header_len(fhd: u8) -> usize {
    let single = fhd & 0x20 != 0;
    let fcs = match fhd >> 6 {
        0 => usize::from(single),
        1 => 2,
        2 => 4,
        _ => 8,
    };
    1 + usize::from(!single) + [0, 1, 2, 4][usize::from(fhd & 3)] + fcs
}

/// A little-endian number of up to 8 bytes.
fn le(b: &[u8]) -> u64 {
    b.iter()
        .rev()
        .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
}

/// `n` bits (at most 56) of `data` from bit `lo`, least significant first; bits past the
/// end read as zeros.
fn bits_at(data: &[u8], lo: usize, n: u32) -> u64 {
    let i = lo / 8;
    let mut w = [0u8; 8];
    match data.get(i..i + 8) {
        Some(s) => w.copy_from_slice(s),
        None => {
            if let Some(s) = data.get(i..) {
                w[..s.len()].copy_from_slice(s);
            }
        }
    }
    (u64::from_le_bytes(w) >> (lo % 8)) & ((1u64 << n) - 1)
}

/// A bitstream read backwards from its end (Huffman and FSE streams): the last byte's
/// highest set bit marks where it starts.
struct Back<'a> {
    data: &'a [u8],
    /// Bits not yet read.
    pos: usize,
    /// Whether more bits were read than the stream has.
    overflow: bool,
}

impl<'a> Back<'a> {
    fn new(data: &'a [u8]) -> R<Self> {
        let last = *data.last().ok_or(Stop::Corrupt)?;
        if last == 0 {
            return Err(Stop::Corrupt);
        }
        let pos = (data.len() - 1) * 8 + (7 - last.leading_zeros() as usize);
        Ok(Back {
            data,
            pos,
            overflow: false,
        })
    }

    /// The next `n` bits without reading them (zeros past the start).
    fn peek(&self, n: u32) -> u64 {
        let n_us = n as usize;
        if self.pos >= n_us {
            bits_at(self.data, self.pos - n_us, n)
        } else {
            bits_at(self.data, 0, self.pos as u32) << (n_us - self.pos)
        }
    }

    fn skip(&mut self, n: u32) {
        let n = n as usize;
        if n > self.pos {
            self.overflow = true;
            self.pos = 0;
        } else {
            self.pos -= n;
        }
    }

    fn read(&mut self, n: u32) -> u64 {
        let v = self.peek(n);
        self.skip(n);
        v
    }
}

/// The literals section: decodes the block's literals into `t.literals`; returns the
/// section's length.
fn literals(t: &mut Tables, b: &[u8], block_max: usize) -> R<usize> {
    let byte = |i: usize| b.get(i).copied().map(usize::from).ok_or(Stop::Corrupt);
    let b0 = byte(0)?;
    let kind = b0 & 3;
    let format = (b0 >> 2) & 3;
    if kind < 2 {
        // Raw or RLE.
        let (h, n) = match format {
            0 | 2 => (1, b0 >> 3),
            1 => (2, (b0 >> 4) | byte(1)? << 4),
            _ => (3, (b0 >> 4) | byte(1)? << 4 | byte(2)? << 12),
        };
        if n > block_max {
            return Err(Stop::Corrupt);
        }
        t.literals.clear();
        t.literals.reserve_exact(n);
        if kind == 0 {
            let s = b.get(h..h + n).ok_or(Stop::Corrupt)?;
            t.literals.extend_from_slice(s);
            return Ok(h + n);
        }
        t.literals.resize(n, byte(h)? as u8);
        return Ok(h + 1);
    }
    // Huffman-coded, with a new table (2) or the previous one (3).
    let (h, bits, four) = match format {
        0 => (3, 10, false),
        1 => (3, 10, true),
        2 => (4, 14, true),
        _ => (5, 18, true),
    };
    let hv = le(b.get(..h).ok_or(Stop::Corrupt)?);
    let mask = (1u64 << bits) - 1;
    let regen = ((hv >> 4) & mask) as usize;
    let csize = ((hv >> (4 + bits)) & mask) as usize;
    if regen > block_max {
        return Err(Stop::Corrupt);
    }
    let mut data = b.get(h..h + csize).ok_or(Stop::Corrupt)?;
    if kind == 2 {
        let used = huffman_table(t, data)?;
        data = &data[used..];
    } else if t.huf_log == 0 {
        return Err(Stop::Corrupt);
    }
    t.literals.clear();
    t.literals.reserve_exact(regen);
    t.literals.resize(regen, 0);
    let (table, log, lits) = (&t.huf[..], t.huf_log, &mut t.literals[..]);
    if !four {
        huffman_stream(table, log, data, lits)?;
    } else {
        let jump = data.get(..6).ok_or(Stop::Corrupt)?;
        let sizes = [le(&jump[0..2]), le(&jump[2..4]), le(&jump[4..6])].map(|s| s as usize);
        let mut streams = data.get(6..).ok_or(Stop::Corrupt)?;
        let seg = regen.div_ceil(4);
        let last = regen.checked_sub(3 * seg).ok_or(Stop::Corrupt)?;
        let mut lits = lits;
        for (i, len) in [seg, seg, seg, last].into_iter().enumerate() {
            let src = match sizes.get(i) {
                Some(&s) => {
                    let (src, more) = (streams.get(..s), streams.get(s..));
                    streams = more.ok_or(Stop::Corrupt)?;
                    src.ok_or(Stop::Corrupt)?
                }
                None => streams,
            };
            let (dst, more) = lits.split_at_mut(len.min(lits.len()));
            huffman_stream(table, log, src, dst)?;
            lits = more;
        }
    }
    Ok(h + csize)
}

/// Reads a Huffman tree description into `t.huf`; returns its length.
fn huffman_table(t: &mut Tables, data: &[u8]) -> R<usize> {
    let head = usize::from(*data.first().ok_or(Stop::Corrupt)?);
    let mut weights = [0u8; 256];
    let (count, used) = if head < 128 {
        // FSE-coded weights, `head` bytes of them.
        let src = data.get(1..1 + head).ok_or(Stop::Corrupt)?;
        let table_len = read_fse(src, 6, 15, &mut t.weights)?;
        let mut br = Back::new(src.get(table_len..).ok_or(Stop::Corrupt)?)?;
        let table = &t.weights.table;
        let log = u32::from(t.weights.log);
        let entry = |s: u64| table.get(s as usize).copied().ok_or(Stop::Corrupt);
        let mut s1 = br.read(log);
        let mut s2 = br.read(log);
        let mut n = 0;
        // Two interleaved states until the stream is used up; the other state's symbol
        // is the last weight.
        loop {
            let e = entry(s1)?;
            *weights.get_mut(n).ok_or(Stop::Corrupt)? = e.symbol;
            n += 1;
            s1 = u64::from(e.base) + br.read(u32::from(e.bits));
            if br.overflow {
                *weights.get_mut(n).ok_or(Stop::Corrupt)? = entry(s2)?.symbol;
                n += 1;
                break;
            }
            let e = entry(s2)?;
            *weights.get_mut(n).ok_or(Stop::Corrupt)? = e.symbol;
            n += 1;
            s2 = u64::from(e.base) + br.read(u32::from(e.bits));
            if br.overflow {
                *weights.get_mut(n).ok_or(Stop::Corrupt)? = entry(s1)?.symbol;
                n += 1;
                break;
            }
        }
        (n, 1 + head)
    } else {
        // Four bits per weight.
        let n = head - 127;
        let src = data.get(1..1 + n.div_ceil(2)).ok_or(Stop::Corrupt)?;
        for (i, w) in weights[..n].iter_mut().enumerate() {
            let b = src[i / 2];
            *w = if i % 2 == 0 { b >> 4 } else { b & 15 };
        }
        (n, 1 + n.div_ceil(2))
    };
    if count > 255 {
        return Err(Stop::Corrupt);
    }
    // The last weight is implied: the one that makes the total a power of two.
    let mut total = 0u32;
    for &w in &weights[..count] {
        if w > 12 {
            return Err(Stop::Corrupt);
        }
        if w > 0 {
            total += 1 << (w - 1);
        }
    }
    if total == 0 {
        return Err(Stop::Corrupt);
    }
    let log = 32 - total.leading_zeros();
    if log > 12 {
        return Err(Stop::Corrupt);
    }
    let left = (1u32 << log) - total;
    if !left.is_power_of_two() {
        return Err(Stop::Corrupt);
    }
    weights[count] = left.trailing_zeros() as u8 + 1;
    let weights = &weights[..=count];
    // Codes by increasing length... that is, table slots by increasing weight, then
    // symbol: a symbol of weight w takes 2^(w-1) slots and a code of log + 1 - w bits.
    let size = 1usize << log;
    t.huf.clear();
    t.huf.reserve_exact(size);
    for w in 1..=log as u8 {
        for (symbol, _) in weights.iter().enumerate().filter(|(_, &x)| x == w) {
            let entry = HufEntry {
                symbol: symbol as u8,
                bits: log as u8 + 1 - w,
            };
            t.huf.extend(core::iter::repeat(entry).take(1 << (w - 1)));
        }
    }
    if t.huf.len() != size {
        return Err(Stop::Corrupt);
    }
    t.huf_log = log as u8;
    Ok(used)
}

/// Decodes one Huffman stream into `dst`, which it must fill exactly.
fn huffman_stream(table: &[HufEntry], log: u8, src: &[u8], dst: &mut [u8]) -> R<()> {
    let mut br = Back::new(src)?;
    let log = u32::from(log);
    for d in dst.iter_mut() {
        let e = table.get(br.peek(log) as usize).ok_or(Stop::Corrupt)?;
        br.skip(u32::from(e.bits));
        *d = e.symbol;
    }
    if br.overflow || br.pos != 0 {
        return Err(Stop::Corrupt);
    }
    Ok(())
}

/// Reads an FSE table description (at most `max_log`, symbols up to `max_symbol`) into
/// `fse`; returns its length in bytes.
fn read_fse(data: &[u8], max_log: u8, max_symbol: usize, fse: &mut Fse) -> R<usize> {
    let log = bits_at(data, 0, 4) as u8 + 5;
    if log > max_log {
        return Err(Stop::Corrupt);
    }
    let mut bit = 4;
    let size = 1i32 << log;
    let mut remaining = size + 1;
    let mut threshold = size;
    let mut nbits = u32::from(log) + 1;
    let mut counts = [0i16; 64];
    let mut symbol = 0usize;
    let mut after_zero = false;
    while remaining > 1 {
        if after_zero {
            // Runs of zero probabilities: 2-bit repeat counts, 3 meaning "and more".
            loop {
                let r = bits_at(data, bit, 2) as usize;
                bit += 2;
                symbol += r;
                if r != 3 {
                    break;
                }
                if bit > data.len() * 8 {
                    return Err(Stop::Corrupt);
                }
            }
        }
        if symbol > max_symbol {
            return Err(Stop::Corrupt);
        }
        let max = 2 * threshold - 1 - remaining;
        let low = bits_at(data, bit, nbits - 1) as i32;
        let count = if low < max {
            bit += nbits as usize - 1;
            low
        } else {
            let v = bits_at(data, bit, nbits) as i32;
            bit += nbits as usize;
            if v >= threshold {
                v - max
            } else {
                v
            }
        };
        let prob = count - 1;
        remaining -= prob.abs();
        counts[symbol] = prob as i16;
        symbol += 1;
        after_zero = prob == 0;
        if remaining < 1 {
            return Err(Stop::Corrupt);
        }
        while remaining < threshold {
            nbits -= 1;
            threshold >>= 1;
        }
        if bit > data.len() * 8 {
            return Err(Stop::Corrupt);
        }
    }
    if remaining != 1 {
        return Err(Stop::Corrupt);
    }
    build_fse(fse, &counts[..symbol], log)?;
    Ok(bit.div_ceil(8))
}

/// Builds a decoding table from normalised counts (-1: "less than one").
fn build_fse(fse: &mut Fse, counts: &[i16], log: u8) -> R<()> {
    let size = 1usize << log;
    fse.table.clear();
    fse.table.resize(size, FseEntry::default());
    fse.log = log;
    let mut next = [0u32; 64];
    // Symbols of probability "less than one" take the last slots.
    let mut high = size;
    for (s, &c) in counts.iter().enumerate() {
        if c == -1 {
            high = high.checked_sub(1).ok_or(Stop::Corrupt)?;
            fse.table[high].symbol = s as u8;
            next[s] = 1;
        } else {
            next[s] = c.max(0) as u32;
        }
    }
    // The others are spread over the rest with a fixed step.
    let step = (size >> 1) + (size >> 3) + 3;
    let mask = size - 1;
    let mut pos = 0;
    for (s, &c) in counts.iter().enumerate() {
        for _ in 0..c.max(0) {
            if high == 0 {
                return Err(Stop::Corrupt);
            }
            fse.table[pos].symbol = s as u8;
            loop {
                pos = (pos + step) & mask;
                if pos < high {
                    break;
                }
            }
        }
    }
    if pos != 0 {
        return Err(Stop::Corrupt);
    }
    for e in fse.table.iter_mut() {
        let x = next[usize::from(e.symbol)];
        next[usize::from(e.symbol)] += 1;
        if x == 0 {
            return Err(Stop::Corrupt);
        }
        let bits = u32::from(log)
            .checked_sub(31 - x.leading_zeros())
            .ok_or(Stop::Corrupt)?;
        e.bits = bits as u8;
        e.base = ((x << bits) - size as u32) as u16;
    }
    Ok(())
}

/// One of the three sequence codes: its predefined distribution and limits.
struct Code {
    predefined: &'static [i16],
    predefined_log: u8,
    max_log: u8,
    max_symbol: usize,
}

const LITERAL_LENGTHS: Code = Code {
    predefined: &[
        4, 3, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 2, 1, 1, 1, 2, 2, 2, 2, 2, 2, 2, 2, 2, 3, 2, 1, 1, 1,
        1, 1, -1, -1, -1, -1,
    ],
    predefined_log: 6,
    max_log: 9,
    max_symbol: 35,
};

const MATCH_LENGTHS: Code = Code {
    predefined: &[
        1, 4, 3, 2, 2, 2, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1,
        1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1, -1, -1,
    ],
    predefined_log: 6,
    max_log: 9,
    max_symbol: 52,
};

const OFFSETS: Code = Code {
    predefined: &[
        1, 1, 1, 1, 1, 1, 2, 2, 2, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, -1, -1, -1, -1, -1,
    ],
    predefined_log: 5,
    max_log: 8,
    max_symbol: 31,
};

/// Literal length codes 16 to 35: baseline and extra bits (0 to 15 are the length itself).
const LL_EXTRA: [(u32, u8); 20] = [
    (16, 1),
    (18, 1),
    (20, 1),
    (22, 1),
    (24, 2),
    (28, 2),
    (32, 3),
    (40, 3),
    (48, 4),
    (64, 6),
    (128, 7),
    (256, 8),
    (512, 9),
    (1024, 10),
    (2048, 11),
    (4096, 12),
    (8192, 13),
    (16384, 14),
    (32768, 15),
    (65536, 16),
];

/// Match length codes 32 to 52: baseline and extra bits (0 to 31 are the length minus 3).
const ML_EXTRA: [(u32, u8); 21] = [
    (35, 1),
    (37, 1),
    (39, 1),
    (41, 1),
    (43, 2),
    (47, 2),
    (51, 3),
    (59, 3),
    (67, 4),
    (83, 4),
    (99, 5),
    (131, 7),
    (259, 8),
    (515, 9),
    (1027, 10),
    (2051, 11),
    (4099, 12),
    (8195, 13),
    (16387, 14),
    (32771, 15),
    (65539, 16),
];

/// Sets up the table of one sequence code by its mode; returns the bytes it used.
fn sequence_table(fse: &mut Fse, mode: u8, data: &[u8], code: &Code) -> R<usize> {
    match mode {
        0 => {
            build_fse(fse, code.predefined, code.predefined_log)?;
            Ok(0)
        }
        1 => {
            let symbol = *data.first().ok_or(Stop::Corrupt)?;
            if usize::from(symbol) > code.max_symbol {
                return Err(Stop::Corrupt);
            }
            fse.table.clear();
            fse.table.push(FseEntry {
                symbol,
                bits: 0,
                base: 0,
            });
            fse.log = 0;
            Ok(1)
        }
        2 => read_fse(data, code.max_log, code.max_symbol, fse),
        _ => {
            // Repeat: the previous block's table.
            if fse.table.is_empty() {
                return Err(Stop::Corrupt);
            }
            Ok(0)
        }
    }
}

/// The sequences section: each sequence (literals, then a match) is executed as it is read.
fn sequences(
    t: &mut Tables,
    w: &mut Window,
    b: &[u8],
    out: &mut dyn FnMut(&[u8]) -> bool,
) -> R<()> {
    let byte = |i: usize| b.get(i).copied().map(usize::from).ok_or(Stop::Corrupt);
    let b0 = byte(0)?;
    let (count, mut at) = match b0 {
        0..=127 => (b0, 1),
        128..=254 => (((b0 - 128) << 8) + byte(1)?, 2),
        _ => (byte(1)? + (byte(2)? << 8) + 0x7F00, 3),
    };
    let Tables {
        ll,
        of,
        ml,
        literals,
        rep,
        ..
    } = t;
    let mut lit_pos = 0;
    if count == 0 {
        if at != b.len() {
            return Err(Stop::Corrupt);
        }
    } else {
        let modes = byte(at)? as u8;
        at += 1;
        if modes & 3 != 0 {
            return Err(Stop::Corrupt);
        }
        let rest = |at: usize| b.get(at..).ok_or(Stop::Corrupt);
        at += sequence_table(ll, modes >> 6, rest(at)?, &LITERAL_LENGTHS)?;
        at += sequence_table(of, (modes >> 4) & 3, rest(at)?, &OFFSETS)?;
        at += sequence_table(ml, (modes >> 2) & 3, rest(at)?, &MATCH_LENGTHS)?;
        let mut br = Back::new(rest(at)?)?;
        let entry = |fse: &Fse, s: u64| fse.table.get(s as usize).copied().ok_or(Stop::Corrupt);
        let mut ll_state = br.read(u32::from(ll.log));
        let mut of_state = br.read(u32::from(of.log));
        let mut ml_state = br.read(u32::from(ml.log));
        for i in 0..count {
            let lle = entry(ll, ll_state)?;
            let ofe = entry(of, of_state)?;
            let mle = entry(ml, ml_state)?;
            let of_code = u32::from(ofe.symbol);
            let of_value = (1u64 << of_code) + br.read(of_code);
            let ml_code = usize::from(mle.symbol);
            let match_len = if ml_code < 32 {
                ml_code + 3
            } else {
                let (base, extra) = *ML_EXTRA.get(ml_code - 32).ok_or(Stop::Corrupt)?;
                base as usize + br.read(u32::from(extra)) as usize
            };
            let ll_code = usize::from(lle.symbol);
            let lit_len = if ll_code < 16 {
                ll_code
            } else {
                let (base, extra) = *LL_EXTRA.get(ll_code - 16).ok_or(Stop::Corrupt)?;
                base as usize + br.read(u32::from(extra)) as usize
            };
            if i + 1 < count {
                ll_state = u64::from(lle.base) + br.read(u32::from(lle.bits));
                ml_state = u64::from(mle.base) + br.read(u32::from(mle.bits));
                of_state = u64::from(ofe.base) + br.read(u32::from(ofe.bits));
            }
            if br.overflow {
                return Err(Stop::Corrupt);
            }
            // The offset: a new one, or one of the last three (shifted when there are no
            // literals before the match).
            let offset = if of_value > 3 {
                let o = (of_value - 3) as usize;
                *rep = [o, rep[0], rep[1]];
                o
            } else {
                match of_value - 1 + u64::from(lit_len == 0) {
                    0 => rep[0],
                    1 => {
                        *rep = [rep[1], rep[0], rep[2]];
                        rep[0]
                    }
                    2 => {
                        *rep = [rep[2], rep[0], rep[1]];
                        rep[0]
                    }
                    _ => {
                        let o = rep[0].checked_sub(1).filter(|&o| o > 0);
                        let o = o.ok_or(Stop::Corrupt)?;
                        *rep = [o, rep[0], rep[1]];
                        o
                    }
                }
            };
            let lits = literals
                .get(lit_pos..lit_pos + lit_len)
                .ok_or(Stop::Corrupt)?;
            lit_pos += lit_len;
            w.push(lits, out)?;
            w.copy(offset, match_len, out)?;
        }
        if br.pos != 0 {
            return Err(Stop::Corrupt);
        }
    }
    let rest = literals.get(lit_pos..).ok_or(Stop::Corrupt)?;
    w.push(rest, out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A frame header: window descriptor or single-segment content size, optional checksum.
    fn header(window_descriptor: Option<u8>, size: Option<u32>, checksum: bool) -> Vec<u8> {
        let mut v = MAGIC.to_le_bytes().to_vec();
        let mut fhd = if checksum { 4 } else { 0 };
        match (window_descriptor, size) {
            (Some(d), None) => v.extend([fhd, d]),
            (Some(d), Some(s)) => {
                fhd |= 2 << 6;
                v.extend([fhd, d]);
                v.extend(s.to_le_bytes());
            }
            (None, s) => {
                fhd |= 0x20 | 2 << 6;
                v.push(fhd);
                v.extend(s.unwrap_or(0).to_le_bytes());
            }
        }
        v
    }

    fn block(kind: u32, last: bool, size: usize, content: &[u8]) -> Vec<u8> {
        let h = (size as u32) << 3 | kind << 1 | u32::from(last);
        let mut v = h.to_le_bytes()[..3].to_vec();
        v.extend_from_slice(content);
        v
    }

    fn decode(input: &[u8], at: usize) -> (Vec<u8>, bool, bool) {
        let mut d = Zstd::new();
        let mut out = Vec::new();
        for part in [&input[..at], &input[at..]] {
            d.feed(part, &mut |b| {
                out.extend_from_slice(b);
                true
            });
        }
        (out, d.finished(), d.failed())
    }

    fn xxh(data: &[u8]) -> u32 {
        let mut h = Xxh64::new();
        h.update(data);
        h.digest() as u32
    }

    #[test]
    fn raw_and_rle_blocks_checksum_and_skippable_frames() {
        let mut z = vec![0x50, 0x2A, 0x4D, 0x18, 3, 0, 0, 0, 1, 2, 3];
        z.extend(header(Some(0), None, true));
        z.extend(block(0, false, 5, b"hello"));
        z.extend(block(1, false, 3, b"!"));
        z.extend(block(0, true, 0, b""));
        z.extend(xxh(b"hello!!!").to_le_bytes());
        z.extend(header(None, Some(2), false));
        z.extend(block(1, true, 2, b"?"));
        for at in 0..=z.len() {
            assert_eq!(
                decode(&z, at),
                (b"hello!!!??".to_vec(), true, false),
                "{at}"
            );
        }
        // Truncated anywhere: unfinished, not failed.
        for cut in 1..z.len() {
            let (_, done, failed) = decode(&z[..cut], 0);
            assert!(!failed, "{cut}");
            // At the end of a whole frame it is finished.
            let whole_frame = cut == 11 + 6 + 8 + 4 + 3 + 4 || cut == 11;
            assert_eq!(done, whole_frame, "{cut}");
        }
    }

    #[test]
    fn bad_checksum_size_window_dictionary_and_trailing_bytes_fail() {
        let mut z = header(Some(0), None, true);
        z.extend(block(0, true, 2, b"ok"));
        z.extend((xxh(b"ok") ^ 1).to_le_bytes());
        assert!(decode(&z, 3).2);
        // Content size 5, 2 bytes given.
        let mut z = header(Some(0), Some(5), false);
        z.extend(block(0, true, 2, b"ok"));
        assert!(decode(&z, 3).2);
        // A window of 16 MiB (log 24: exponent 14), over the cap: nothing allocated.
        let mut z = header(Some(14 << 3), None, false);
        z.extend(block(1, true, 100, b" "));
        let mut d = Zstd::new();
        d.feed(&z, &mut |_| true);
        assert!(d.failed());
        assert_eq!(d.window.buf.capacity(), 0);
        // 8 MiB (exponent 13) is the cap: read.
        let mut z = header(Some(13 << 3), None, false);
        z.extend(block(1, true, 100, b" "));
        assert_eq!(decode(&z, 5), (vec![b' '; 100], true, false));
        // A dictionary id.
        let mut z = MAGIC.to_le_bytes().to_vec();
        z.extend([0x01, 0x00, 0x07]);
        z.extend(block(0, true, 2, b"ok"));
        assert!(decode(&z, 0).2);
        // Garbage after a frame.
        let mut z = header(Some(0), None, false);
        z.extend(block(0, true, 2, b"ok"));
        z.extend(b"junk");
        assert!(decode(&z, 0).2);
        // A block larger than the window.
        let mut z = header(None, Some(10), false);
        z.extend(block(1, true, 11, b"x"));
        assert!(decode(&z, 0).2);
    }

    #[test]
    fn fse_tables_from_the_predefined_distributions_are_consistent() {
        for code in [&LITERAL_LENGTHS, &MATCH_LENGTHS, &OFFSETS] {
            let mut fse = Fse::default();
            build_fse(&mut fse, code.predefined, code.predefined_log).unwrap();
            assert_eq!(fse.table.len(), 1 << code.predefined_log);
            let sum: i32 = code.predefined.iter().map(|&c| i32::from(c).abs()).sum();
            assert_eq!(sum, 1 << code.predefined_log);
        }
    }

    #[test]
    fn long_matches_through_the_ring() {
        // A window of 1 KiB (the smallest; the ring keeps 16 KiB), 64 KiB of a repeating
        // pattern through RLE and raw blocks.
        let mut z = header(Some(0), None, false);
        let mut want = Vec::new();
        for i in 0..64u8 {
            let last = i == 63;
            if i % 2 == 0 {
                z.extend(block(1, last, 1000, &[i]));
                want.extend(std::iter::repeat(i).take(1000));
            } else {
                let raw: Vec<u8> = (0..1000u32).map(|k| (k % 251) as u8 ^ i).collect();
                z.extend(block(0, last, raw.len(), &raw));
                want.extend(raw);
            }
        }
        for at in (0..z.len()).step_by(97) {
            assert_eq!(decode(&z, at), (want.clone(), true, false));
        }
    }
}
