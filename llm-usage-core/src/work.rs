//! Counted work: how many bytes each stage of the pipeline handled.
//!
//! The core promises time linear in its input: each byte is looked at a bounded number
//! of times, and a decompression bomb is not decoded past the inspection limit. Timing a
//! test cannot show that on a shared machine (a loaded CPU makes any run slow), so the
//! stages count what they do instead, and tests assert bounds on the counts. A count is
//! one add per call or per scanner step, kept in a register inside the loops: it costs
//! nothing measurable, so it is always on.

use core::ops::Add;

/// What an [`Exchange`](crate::Exchange) (or one of its bodies) has done so far: bytes
/// handled by each stage and the scanners' steps. Deterministic: the same input gives the
/// same counts, however it is chunked into calls only where a stage reads across a chunk
/// boundary (an SSE line split in two is copied in two pieces, the same bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Work {
    /// Body bytes received from the frontend (compressed or not), up to the point the
    /// body stopped being read (an error status, an undecodable coding, the inspection
    /// limit).
    pub received_bytes: u64,
    /// Compressed bytes consumed by the decoder (gzip/deflate: the deflate data, headers
    /// excluded; br and zstd: every byte of the stream).
    pub decoder_input_bytes: u64,
    /// Bytes the decoder produced, in any coding (decoding stops within one 8 KiB output
    /// buffer of the inspection limit).
    pub decoded_bytes: u64,
    /// Decoded bytes handed to the framing (at most the inspection limit).
    pub inspected_bytes: u64,
    /// Bytes fed to the streaming JSON scanners, the base64-wrapped inner one included
    /// (a byte read twice counts twice).
    pub scanned_bytes: u64,
    /// Iterations of the streaming scanners' state loops: each reads one token or one run
    /// of skipped bytes.
    pub scanner_steps: u64,
    /// Bytes of whole SSE events indexed and walked.
    pub walked_bytes: u64,
}

impl Work {
    /// The sum of every count: a single figure of work to compare across input sizes.
    pub fn total(&self) -> u64 {
        self.received_bytes
            .saturating_add(self.decoder_input_bytes)
            .saturating_add(self.decoded_bytes)
            .saturating_add(self.inspected_bytes)
            .saturating_add(self.scanned_bytes)
            .saturating_add(self.scanner_steps)
            .saturating_add(self.walked_bytes)
    }
}

impl Add for Work {
    type Output = Work;

    fn add(self, o: Work) -> Work {
        Work {
            received_bytes: self.received_bytes + o.received_bytes,
            decoder_input_bytes: self.decoder_input_bytes + o.decoder_input_bytes,
            decoded_bytes: self.decoded_bytes + o.decoded_bytes,
            inspected_bytes: self.inspected_bytes + o.inspected_bytes,
            scanned_bytes: self.scanned_bytes + o.scanned_bytes,
            scanner_steps: self.scanner_steps + o.scanner_steps,
            walked_bytes: self.walked_bytes + o.walked_bytes,
        }
    }
}
