//! Content decoding: the first stage of a body's pipeline, undoing `Content-Encoding`.
//!
//! LLM APIs answer compressed when asked (`Accept-Encoding`), and a sidecar sees whatever
//! the upstream chose: gzip from most SDK defaults, br or zstd from CDNs and gateways. Each
//! coding is decoded by a module of its own, with one job each:
//!
//! * [`inflate`]: `gzip` and `deflate` (RFC 1952 / 1950 / 1951), over `miniz_oxide`
//!   (also the WebSocket framer's inflater for permessage-deflate);
//! * `brotli`: `br` (RFC 7932), over `brotli-decompressor` (cargo feature `br`);
//! * `zstd`: `zstd` (RFC 8878, HTTP use in RFC 9659), decoded here (cargo feature `zstd`),
//!   with `xxh64` for its frame checksum.
//!
//! [`Decoder`] puts them behind one interface for the body: it is fed compressed bytes in
//! any chunking and hands decoded bytes to a callback that says whether to go on, at most
//! [`OUT_BUF`] bytes at a time, so that the inspection limit stops decoding within one
//! output buffer. A decoder holds a fixed amount of memory that depends on the coding's
//! window, never on the body's size, and decides undecodable input (corrupt, truncated,
//! trailing garbage, a window over [`MAX_WINDOW`]) by itself: [`Decoder::failed`] and
//! [`Decoder::finished`] tell the body whether it ended cleanly.
//!
//! A chain of codings (`gzip, br`) is not decoded: such a body is undecodable.

#[cfg(feature = "br")]
mod brotli;
pub(crate) mod inflate;
#[cfg(feature = "zstd")]
mod xxh64;
#[cfg(feature = "zstd")]
mod zstd;

/// Size of the decoded-output buffer handed to the framer: decoding stops at most this
/// many bytes past the point where the consumer asked it to stop.
pub const OUT_BUF: usize = 8 * 1024;

/// Largest history window a `br` or `zstd` body may ask for: 8 MiB. A larger one makes the
/// body undecodable (no such allocation is made).
///
/// RFC 9659 caps the `zstd` content coding at an 8 MB window ("decoders MUST support a
/// window size of at least 8 MB, and encoders MUST NOT generate frames requiring a window
/// size larger than 8 MB"), so this cap reads every conforming zstd response. Brotli allows
/// windows of up to 16 MiB (`WBITS` 24), but its reference encoder defaults to 4 MiB
/// (`lgwin` 22) and HTTP servers to less; one cap for both keeps the memory an exchange may
/// hold to one figure. The window is what a decoder must keep of the decoded bytes to
/// resolve back-references, so it is the bulk of a br/zstd body's memory.
pub const MAX_WINDOW: usize = 8 * 1024 * 1024;

/// The content codings the core reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Coding {
    Gzip,
    Deflate,
    #[cfg(feature = "br")]
    Brotli,
    #[cfg(feature = "zstd")]
    Zstd,
}

impl Coding {
    /// Reads a `Content-Encoding` value: `Ok(None)` for `identity` (or nothing), `Err(())`
    /// for a coding this build cannot decode (unknown, disabled, or a chain of codings).
    pub(crate) fn from_header(value: &[u8]) -> Result<Option<Coding>, ()> {
        let v = value.trim_ascii();
        if v.is_empty() || v.eq_ignore_ascii_case(b"identity") {
            return Ok(None);
        }
        if v.eq_ignore_ascii_case(b"gzip") || v.eq_ignore_ascii_case(b"x-gzip") {
            return Ok(Some(Coding::Gzip));
        }
        if v.eq_ignore_ascii_case(b"deflate") {
            return Ok(Some(Coding::Deflate));
        }
        #[cfg(feature = "br")]
        if v.eq_ignore_ascii_case(b"br") {
            return Ok(Some(Coding::Brotli));
        }
        #[cfg(feature = "zstd")]
        if v.eq_ignore_ascii_case(b"zstd") {
            return Ok(Some(Coding::Zstd));
        }
        Err(())
    }
}

/// The decoder of one body.
#[derive(Debug)]
pub(crate) enum Decoder {
    Inflate(inflate::Inflate),
    #[cfg(feature = "br")]
    Brotli(brotli::Brotli),
    #[cfg(feature = "zstd")]
    Zstd(zstd::Zstd),
}

impl Decoder {
    pub(crate) fn new(coding: Coding) -> Decoder {
        match coding {
            Coding::Gzip => Decoder::Inflate(inflate::Inflate::new(inflate::Format::Gzip)),
            Coding::Deflate => Decoder::Inflate(inflate::Inflate::new(inflate::Format::Deflate)),
            #[cfg(feature = "br")]
            Coding::Brotli => Decoder::Brotli(brotli::Brotli::new()),
            #[cfg(feature = "zstd")]
            Coding::Zstd => Decoder::Zstd(zstd::Zstd::new()),
        }
    }

    /// Decodes `input`, handing decoded bytes to `out`, which returns whether to go on:
    /// once it returns false, decoding stops for good (at most [`OUT_BUF`] bytes are
    /// decoded past what the consumer wanted).
    pub(crate) fn feed(&mut self, input: &[u8], out: &mut dyn FnMut(&[u8]) -> bool) {
        match self {
            Decoder::Inflate(d) => d.feed(input, out),
            #[cfg(feature = "br")]
            Decoder::Brotli(d) => d.feed(input, out),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.feed(input, out),
        }
    }

    /// Compressed bytes consumed so far (gzip/deflate: the deflate data, headers and
    /// trailers not counted; br, zstd: every byte of the stream).
    pub(crate) fn consumed(&self) -> u64 {
        match self {
            Decoder::Inflate(d) => d.consumed(),
            #[cfg(feature = "br")]
            Decoder::Brotli(d) => d.consumed(),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.consumed(),
        }
    }

    /// Decoded bytes produced so far.
    pub(crate) fn produced(&self) -> u64 {
        match self {
            Decoder::Inflate(d) => d.produced(),
            #[cfg(feature = "br")]
            Decoder::Brotli(d) => d.produced(),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.produced(),
        }
    }

    /// True after input that cannot be decoded: corrupt, a bad checksum, trailing bytes
    /// that are not part of the coding, a window over [`MAX_WINDOW`].
    pub(crate) fn failed(&self) -> bool {
        match self {
            Decoder::Inflate(d) => d.failed(),
            #[cfg(feature = "br")]
            Decoder::Brotli(d) => d.failed(),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.failed(),
        }
    }

    /// True when the compressed stream ended properly (a body that stops short of that is
    /// truncated).
    pub(crate) fn finished(&self) -> bool {
        match self {
            Decoder::Inflate(d) => d.finished(),
            #[cfg(feature = "br")]
            Decoder::Brotli(d) => d.finished(),
            #[cfg(feature = "zstd")]
            Decoder::Zstd(d) => d.finished(),
        }
    }
}

#[cfg(test)]
mod tests {
    //! Every decoder against reference encoders, whole and in chunks; the record-level
    //! tests (fixtures, hostile inputs, memory) are in `tests/`.

    use super::*;
    use std::io::Write;

    /// Decodes `input` fed in chunks of `chunk` bytes: the output, finished, failed.
    fn run(coding: Coding, input: &[u8], chunk: usize) -> (Vec<u8>, bool, bool) {
        let mut d = Decoder::new(coding);
        let mut out = Vec::new();
        for piece in input.chunks(chunk.max(1)) {
            d.feed(piece, &mut |b| {
                assert!(b.len() <= OUT_BUF);
                out.extend_from_slice(b);
                true
            });
        }
        (out, d.finished(), d.failed())
    }

    /// Same output, cleanly finished, in every chunking (every byte for small inputs).
    fn check(coding: Coding, z: &[u8], plain: &[u8], what: &str) {
        let chunks: Vec<usize> = if z.len() <= 600 {
            (1..=z.len().max(1)).collect()
        } else {
            vec![1, 7, 4096, usize::MAX]
        };
        for chunk in chunks {
            let (out, finished, failed) = run(coding, z, chunk);
            assert!(out == plain, "{what}: output differs in chunks of {chunk}");
            assert!(
                finished && !failed,
                "{what}: not clean in chunks of {chunk}"
            );
        }
        // Cut short: never finished; corrupt at one byte: never a panic.
        if !z.is_empty() {
            let (_, finished, _) = run(coding, &z[..z.len() - 1], 5);
            assert!(!finished, "{what}: finished when truncated");
            for at in [0, z.len() / 3, z.len() / 2, z.len() - 1] {
                let mut bad = z.to_vec();
                bad[at] ^= 0x5a;
                let _ = run(coding, &bad, 3);
            }
        }
    }

    fn xorshift(n: usize, mut x: u64) -> Vec<u8> {
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect()
    }

    /// Bodies of every kind: SSE and JSON text, random bytes, runs, tiny and empty.
    fn samples() -> Vec<(String, Vec<u8>)> {
        let mut v = Vec::new();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
        for name in [
            "02-openai-chat-stream-usage",
            "12-anthropic-messages-stream",
            "08-openai-responses",
        ] {
            v.push((
                name.to_owned(),
                std::fs::read(dir.join(name).join("response.bin")).unwrap(),
            ));
        }
        let mut sse = String::new();
        for i in 0..4000 {
            sse += &format!(
                "data: {{\"id\":\"c{}\",\"model\":\"gpt-x\",\"choices\":[{{\"delta\":{{\"content\":\"token {} of {}\"}}}}]}}\n\n",
                i % 7,
                i * 37 % 1000,
                i
            );
        }
        v.push(("sse 400 KB".to_owned(), sse.into_bytes()));
        v.push(("random 200 KB".to_owned(), xorshift(200_000, 0x9E37_79B9)));
        let mut mixed = xorshift(50_000, 7);
        mixed.extend(std::iter::repeat(b'a').take(300_000));
        mixed.extend(xorshift(50_000, 11).iter().map(|b| b % 4 + b'0'));
        v.push(("runs and small alphabets".to_owned(), mixed));
        v.push(("one byte".to_owned(), b"{".to_vec()));
        v.push(("empty".to_owned(), Vec::new()));
        v
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_reads_what_the_reference_encoder_writes() {
        for (name, plain) in samples() {
            for level in [-5, 1, 3, 9, 19] {
                for checksum in [false, true] {
                    let mut e = ::zstd::stream::Encoder::new(Vec::new(), level).unwrap();
                    e.include_checksum(checksum).unwrap();
                    e.include_contentsize(true).unwrap();
                    e.set_pledged_src_size(Some(plain.len() as u64)).unwrap();
                    e.write_all(&plain).unwrap();
                    let z = e.finish().unwrap();
                    check(
                        Coding::Zstd,
                        &z,
                        &plain,
                        &format!("{name}, level {level}, checksum {checksum}"),
                    );
                }
            }
            // Streamed: a flush every 1,000 bytes (one block each, as a server flushing
            // each event writes), no content size; then two frames and a skippable one.
            let mut e = ::zstd::stream::Encoder::new(Vec::new(), 3).unwrap();
            e.include_checksum(true).unwrap();
            for piece in plain.chunks(1000) {
                e.write_all(piece).unwrap();
                e.flush().unwrap();
            }
            let mut z = e.finish().unwrap();
            check(Coding::Zstd, &z, &plain, &format!("{name}, streamed"));
            z.extend([0x5E, 0x2A, 0x4D, 0x18, 2, 0, 0, 0, 9, 9]);
            z.extend(::zstd::bulk::compress(&plain, 1).unwrap());
            let twice = [&plain[..], &plain[..]].concat();
            check(Coding::Zstd, &z, &twice, &format!("{name}, two frames"));
        }
    }

    #[cfg(feature = "zstd")]
    #[test]
    fn zstd_long_windows_up_to_the_cap() {
        // 12 MiB whose second half repeats the first from 6 MiB back: only an 8 MiB
        // window reaches it.
        let half = xorshift(6 << 20, 3);
        let plain = [&half[..], &half[..]].concat();
        let mut e = ::zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(23).unwrap();
        e.long_distance_matching(true).unwrap();
        e.include_checksum(true).unwrap();
        e.write_all(&plain).unwrap();
        let z = e.finish().unwrap();
        assert!(
            z.len() < plain.len() * 3 / 4,
            "the window was used: {}",
            z.len()
        );
        let (out, finished, failed) = run(Coding::Zstd, &z, 65536);
        assert!(out == plain && finished && !failed);
        // Window log 24: over the cap, undecodable, nothing decoded.
        let mut e = ::zstd::stream::Encoder::new(Vec::new(), 1).unwrap();
        e.window_log(24).unwrap();
        e.write_all(&plain).unwrap();
        let z = e.finish().unwrap();
        let (out, finished, failed) = run(Coding::Zstd, &z, 65536);
        assert!(out.is_empty() && !finished && failed);
    }

    #[cfg(feature = "br")]
    #[test]
    fn brotli_reads_what_the_reference_encoder_writes() {
        for (name, plain) in samples() {
            for (quality, lgwin) in [(0, 16), (1, 10), (5, 22), (9, 18), (11, 22), (4, 23)] {
                let mut z = Vec::new();
                {
                    let mut w = ::brotli::CompressorWriter::new(&mut z, 4096, quality, lgwin);
                    w.write_all(&plain).unwrap();
                }
                check(
                    Coding::Brotli,
                    &z,
                    &plain,
                    &format!("{name}, quality {quality}, lgwin {lgwin}"),
                );
            }
            // Streamed with a flush every 1,000 bytes.
            let mut z = Vec::new();
            {
                let mut w = ::brotli::CompressorWriter::new(&mut z, 4096, 5, 22);
                for piece in plain.chunks(1000) {
                    w.write_all(piece).unwrap();
                    w.flush().unwrap();
                }
            }
            check(Coding::Brotli, &z, &plain, &format!("{name}, streamed"));
            // Trailing bytes after the stream's end: failed.
            z.push(0);
            assert!(run(Coding::Brotli, &z, 9).2, "{name}: trailing garbage");
        }
    }

    #[cfg(feature = "br")]
    #[test]
    fn brotli_windows_over_the_cap_are_undecodable() {
        let plain = xorshift(100_000, 5);
        for (lgwin, ok) in [(23, true), (24, false)] {
            let mut z = Vec::new();
            {
                let mut w = ::brotli::CompressorWriter::new(&mut z, 4096, 1, lgwin);
                w.write_all(&plain).unwrap();
            }
            let (out, finished, failed) = run(Coding::Brotli, &z, 1000);
            assert_eq!((finished, failed), (ok, !ok), "lgwin {lgwin}");
            assert_eq!(out.is_empty(), !ok);
        }
        // The large-window marker (WBITS 30 with the extension): undecodable.
        let (out, _, failed) = run(Coding::Brotli, &[0x11, 0x1e, 0, 0], 1);
        assert!(out.is_empty() && failed);
    }

    /// The br and zstd fixtures hold the bodies of the gzip ones (47: JSON, 48: SSE).
    #[cfg(all(feature = "br", feature = "zstd"))]
    #[test]
    fn compressed_fixtures_hold_the_same_bodies() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures");
        let body = |name: &str| std::fs::read(dir.join(name).join("response.bin")).unwrap();
        for (gzip, br, zstd) in [
            (
                "47-openai-gzip-json",
                "50-openai-br-json",
                "52-openai-zstd-json",
            ),
            (
                "48-anthropic-gzip-sse",
                "51-anthropic-br-sse",
                "53-anthropic-zstd-sse",
            ),
        ] {
            let plain = run(Coding::Gzip, &body(gzip), usize::MAX).0;
            assert!(plain.len() > 800);
            check(Coding::Brotli, &body(br), &plain, br);
            check(Coding::Zstd, &body(zstd), &plain, zstd);
        }
    }

    #[test]
    fn decoding_stops_within_one_output_buffer_when_told() {
        let plain = vec![b' '; 4 << 20];
        let mut inputs = vec![(Coding::Gzip, {
            let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
            v.extend(miniz_oxide::deflate::compress_to_vec(&plain, 9));
            v
        })];
        #[cfg(feature = "zstd")]
        inputs.push((Coding::Zstd, ::zstd::bulk::compress(&plain, 19).unwrap()));
        #[cfg(feature = "br")]
        inputs.push((Coding::Brotli, {
            let mut z = Vec::new();
            {
                let mut w = ::brotli::CompressorWriter::new(&mut z, 4096, 9, 22);
                w.write_all(&plain).unwrap();
            }
            z
        }));
        for (coding, z) in inputs {
            let mut d = Decoder::new(coding);
            let mut calls = 0;
            d.feed(&z, &mut |_| {
                calls += 1;
                calls < 3
            });
            assert_eq!(calls, 3, "{coding:?}");
            assert!(
                d.produced() <= 3 * OUT_BUF as u64,
                "{coding:?}: {}",
                d.produced()
            );
            assert!(!d.finished() && !d.failed());
            // Nothing more once stopped.
            d.feed(&z, &mut |_| unreachable!());
        }
    }
}
