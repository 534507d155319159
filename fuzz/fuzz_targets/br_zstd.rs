//! `Content-Encoding: br` / `zstd`.
//!
//! Each input is used as a compressed stream (raw bytes, as a br and as a zstd body, under
//! JSON, SSE and NDJSON; and as the content of a compressed zstd block in a valid frame),
//! and as plain text that is compressed (zstd at a random level, with
//! or without checksum and content size, flushed at random points, sometimes followed by a
//! skippable frame and an empty second frame; brotli at a random quality and window, flushed at random
//! points) and then maybe corrupted at one bit and truncated. Oracles: no panic, the same
//! record whatever the chunking (whole and three random chunkings), and an intact compressed
//! body gives exactly the record of the plain body.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;
use llm_usage_fuzz::{Rng, Scenario};

const CASES: &[(&str, &str)] = &[
    ("/v1/chat/completions", "application/json"),
    ("/v1/messages", "text/event-stream"),
    ("/api/chat", "application/x-ndjson"),
];

/// Cut points for flushes: up to three places in `data`.
fn cuts(data: &[u8], rng: &mut Rng) -> Vec<usize> {
    let mut v: Vec<usize> = (0..rng.below(4))
        .map(|_| rng.below(data.len() as u64 + 1) as usize)
        .collect();
    v.sort_unstable();
    v.push(data.len());
    v
}

/// A zstd body of `data`, and where its frames end (a body cut there is whole).
fn zstd_of(data: &[u8], rng: &mut Rng) -> (Vec<u8>, Vec<usize>) {
    let level = rng.below(12) as i32 - 2;
    let mut e = zstd::stream::Encoder::new(Vec::new(), level).unwrap();
    e.include_checksum(rng.below(2) == 0).unwrap();
    if rng.below(2) == 0 {
        e.include_contentsize(true).unwrap();
        e.set_pledged_src_size(Some(data.len() as u64)).unwrap();
    }
    let mut at = 0;
    for cut in cuts(data, rng) {
        e.write_all(&data[at..cut]).unwrap();
        e.flush().unwrap();
        at = cut;
    }
    let mut z = e.finish().unwrap();
    let mut ends = vec![z.len()];
    if rng.below(4) == 0 {
        // A skippable frame, then a second, empty frame.
        z.extend_from_slice(&[0x53, 0x2A, 0x4D, 0x18, 1, 0, 0, 0, 0xAA]);
        ends.push(z.len());
        z.extend(zstd::bulk::compress(b"", 1).unwrap());
        ends.push(z.len());
    }
    (z, ends)
}

fn brotli_of(data: &[u8], rng: &mut Rng) -> Vec<u8> {
    let quality = rng.below(10) as u32;
    let lgwin = 10 + rng.below(11) as u32;
    let mut z = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut z, 4096, quality, lgwin);
        let mut at = 0;
        for cut in cuts(data, rng) {
            w.write_all(&data[at..cut]).unwrap();
            w.flush().unwrap();
            at = cut;
        }
    }
    z
}

fuzz_target!(|data: &[u8]| {
    let req = br#"{"model":"m","stream":true}"#;
    for (i, (path, ct)) in CASES.iter().enumerate() {
        for ce in ["br", "zstd"] {
            let mut s = Scenario::new(path, ct);
            s.response_headers.push(("content-encoding", ce));
            s.check(req, data, i as u64);
        }
    }

    // The input as the content of one compressed zstd block in a valid frame (128 KiB
    // window), so that mutations reach the literals, Huffman, FSE and sequences sections
    // directly rather than dying at the frame header.
    let size = data.len().min(128 * 1024) as u32;
    let mut block = vec![0x28, 0xB5, 0x2F, 0xFD, 0x00, 7 << 3];
    block.extend_from_slice(&(size << 3 | 2 << 1 | 1).to_le_bytes()[..3]);
    block.extend_from_slice(&data[..size as usize]);
    for (i, (path, ct)) in CASES.iter().enumerate().take(2) {
        let mut s = Scenario::new(path, ct);
        s.response_headers.push(("content-encoding", "zstd"));
        s.check(req, &block, 60 + i as u64);
    }

    let mut rng = Rng::from_data(data, 11);
    let (path, ct) = CASES[rng.below(CASES.len() as u64) as usize];
    let plain = Scenario::new(path, ct).check(req, data, 50);
    let (zstd, ends) = zstd_of(data, &mut rng);
    let br = brotli_of(data, &mut rng);
    for (ce, z, ends) in [("zstd", zstd, ends), ("br", br, vec![])] {
        let mut s = Scenario::new(path, ct);
        s.response_headers.push(("content-encoding", ce));
        let r = s.check(req, &z, 51);
        assert_eq!(r, plain, "{ce}: compressed body read differently");
        if !z.is_empty() {
            let mut bad = z.clone();
            let at = rng.below(bad.len() as u64) as usize;
            bad[at] ^= 1 << rng.below(8);
            s.check(req, &bad, 52);
            let cut = rng.below(z.len() as u64) as usize;
            let r = s.check(req, &z[..cut], 53);
            // Cut at the end of a frame, it is a whole (shorter) zstd body.
            let whole = cut == 0 || ends.contains(&cut);
            assert!(!r.complete || whole, "{ce}: complete when cut at {cut}");
        }
    }
});
