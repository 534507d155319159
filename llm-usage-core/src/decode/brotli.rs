//! Incremental `Content-Encoding: br` decoding (RFC 7932), over `brotli-decompressor`.
//!
//! The crate's `BrotliDecompressStream` is a push decoder with caller buffers: it takes
//! whatever compressed bytes arrived, keeps up to a few bytes of a split code between
//! calls, and writes decoded bytes into our [`OUT_BUF`]-byte buffer (it pushes its ring
//! buffer out when it runs out of input). It is given one compressed byte per call, so
//! that it makes the same calls, and hands on the same bytes before any damage, however the
//! body is chunked (see [`Brotli::feed`]). Its memory is its ring buffer, which grows with the
//! decoded size up to the stream's window, and the prefix-code tables of the current
//! meta-block.
//!
//! The window is read here first, from the stream header (`WBITS`, the first one to seven
//! bits): a window over [`MAX_WINDOW`], or the "large window" extension (not part of the
//! `br` coding; the crate would accept windows of up to 1 GiB), makes the body
//! undecodable before the decoder allocates anything for it. A stream that ends short of
//! its last meta-block is truncated; any byte after it is trailing garbage; both, and
//! corrupt data, leave the body unclean.

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};

use super::{MAX_WINDOW, OUT_BUF};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Before the first byte (which holds the window size).
    Start,
    Body,
    /// The last meta-block ended.
    Done,
    /// The consumer asked to stop (the inspection limit was hit): nothing more is decoded.
    Halted,
    Error,
}

/// The decoder.
pub(crate) struct Brotli {
    phase: Phase,
    state: Box<BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>>,
    out: Box<[u8; OUT_BUF]>,
    /// Compressed bytes consumed and decoded bytes produced: counted work.
    consumed: u64,
    produced: u64,
}

impl core::fmt::Debug for Brotli {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Brotli")
            .field("phase", &self.phase)
            .field("consumed", &self.consumed)
            .field("produced", &self.produced)
            .finish()
    }
}

/// The window a stream asks for, from its first byte (RFC 7932, section 9.1): the size in
/// bytes, or `None` for the large-window extension's marker.
pub(crate) fn window_size(first: u8) -> Option<usize> {
    let wbits = if first & 1 == 0 {
        16
    } else if (first >> 1) & 7 != 0 {
        17 + u32::from((first >> 1) & 7)
    } else {
        match (first >> 4) & 7 {
            0 => 17,
            1 => return None,
            n => 8 + u32::from(n),
        }
    };
    Some((1usize << wbits) - 16)
}

impl Brotli {
    pub(crate) fn new() -> Self {
        let mut state = Box::new(BrotliState::new(
            StandardAlloc::default(),
            StandardAlloc::default(),
            StandardAlloc::default(),
        ));
        // Plain RFC 7932 only (the header check below rejects the marker too).
        state.large_window = false;
        Brotli {
            phase: Phase::Start,
            state,
            out: Box::new([0; OUT_BUF]),
            consumed: 0,
            produced: 0,
        }
    }

    pub(crate) fn consumed(&self) -> u64 {
        self.consumed
    }

    pub(crate) fn produced(&self) -> u64 {
        self.produced
    }

    pub(crate) fn failed(&self) -> bool {
        self.phase == Phase::Error
    }

    pub(crate) fn finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// See [`Decoder::feed`](super::Decoder::feed).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) {
        let Some(&first) = input.first() else {
            return;
        };
        match self.phase {
            Phase::Start => {
                if !window_size(first).is_some_and(|w| w <= MAX_WINDOW) {
                    self.phase = Phase::Error;
                    return;
                }
                self.phase = Phase::Body;
            }
            Phase::Body => {}
            // Bytes after the end of the stream are not brotli.
            Phase::Done => {
                self.phase = Phase::Error;
                return;
            }
            Phase::Halted | Phase::Error => return,
        }
        // One compressed byte per call: the crate pushes its ring buffer out whenever it
        // runs out of input, so fed a whole chunk it may meet corrupt data with decoded
        // bytes still held, and lose them, where fed the same bytes in smaller chunks it
        // would have handed them on first. Fed byte by byte, it makes the same calls
        // whatever the chunking, so a damaged body gives the same record however it
        // arrives. Compressed bytes are few next to what they decode to: the cost is a
        // call per compressed byte, not per decoded byte.
        for at in 0..input.len() {
            let byte = &input[at..at + 1];
            if !self.step(byte, out) {
                if self.phase == Phase::Done && at + 1 < input.len() {
                    // Bytes after the end of the stream are not brotli.
                    self.phase = Phase::Error;
                }
                return;
            }
        }
    }

    /// Decodes one compressed byte; false once decoding stopped (ended, failed, halted).
    fn step(&mut self, byte: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) -> bool {
        let mut available_in = byte.len();
        let mut input_offset = 0;
        let mut total_out = 0;
        loop {
            let mut available_out = OUT_BUF;
            let mut output_offset = 0;
            let result = BrotliDecompressStream(
                &mut available_in,
                &mut input_offset,
                byte,
                &mut available_out,
                &mut output_offset,
                &mut self.out[..],
                &mut total_out,
                &mut self.state,
            );
            let written = self.out.get(..output_offset).unwrap_or_default();
            if !written.is_empty() {
                self.produced += written.len() as u64;
                if !out(written) {
                    self.consumed += input_offset as u64;
                    self.phase = Phase::Halted;
                    return false;
                }
            }
            match result {
                BrotliResult::NeedsMoreOutput => {}
                BrotliResult::NeedsMoreInput => {
                    self.consumed += input_offset as u64;
                    if available_in != 0 {
                        // It always takes what it is given; never leave a byte behind.
                        self.phase = Phase::Error;
                        return false;
                    }
                    return true;
                }
                BrotliResult::ResultSuccess => {
                    self.consumed += input_offset as u64;
                    self.phase = if available_in == 0 {
                        Phase::Done
                    } else {
                        Phase::Error
                    };
                    return false;
                }
                BrotliResult::ResultFailure => {
                    self.consumed += input_offset as u64;
                    self.phase = Phase::Error;
                    return false;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_sizes_from_the_stream_header() {
        // WBITS 16: a single 0 bit.
        assert_eq!(window_size(0b0000_0000), Some((1 << 16) - 16));
        // WBITS 17 + n for n in 1..=7 (n in bits 1-3).
        for n in 1..=7u8 {
            assert_eq!(window_size(1 | n << 1), Some((1 << (17 + n)) - 16));
        }
        // WBITS 17: 1, 000, 000.
        assert_eq!(window_size(0b0000_0001), Some((1 << 17) - 16));
        // The large-window marker: 1, 000, 001.
        assert_eq!(window_size(0b0001_0001), None);
        // WBITS 8 + m for m in 2..=7 (10..=15).
        for m in 2..=7u8 {
            assert_eq!(window_size(1 | m << 4), Some((1 << (8 + m)) - 16));
        }
    }
}
