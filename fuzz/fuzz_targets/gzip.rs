//! `Content-Encoding: gzip` / `deflate`.
//!
//! Each input is used as a compressed stream (raw bytes), and as plain text that is
//! compressed (gzip, zlib, raw deflate, two gzip members) and then maybe corrupted at one
//! byte. Oracles: no panic, the same record whatever the chunking, and an intact
//! compressed body gives exactly the record of the plain body.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_fuzz::{Rng, Scenario};
use miniz_oxide::deflate::{compress_to_vec, compress_to_vec_zlib};

fn gzip(data: &[u8], level: u8, flags: u8) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, flags & 0x1e, 0, 0, 0, 0, 0, 3];
    if flags & 4 != 0 {
        v.extend_from_slice(&[2, 0, b'x', b'y']);
    }
    if flags & 8 != 0 {
        v.extend_from_slice(b"body.json\0");
    }
    if flags & 16 != 0 {
        v.extend_from_slice(b"comment\0");
    }
    if flags & 2 != 0 {
        v.extend_from_slice(&[0, 0]);
    }
    v.extend(compress_to_vec(data, level));
    v.extend_from_slice(&crc32(data).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 != 0 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

const CASES: &[(&str, &str)] = &[
    ("/v1/chat/completions", "application/json"),
    ("/v1/messages", "text/event-stream"),
    ("/api/chat", "application/x-ndjson"),
];

fuzz_target!(|data: &[u8]| {
    let req = br#"{"model":"m","stream":true}"#;
    for (i, (path, ct)) in CASES.iter().enumerate() {
        for ce in ["gzip", "deflate"] {
            let mut s = Scenario::new(path, ct);
            s.response_headers.push(("content-encoding", ce));
            s.check(req, data, i as u64);
        }
    }

    let mut rng = Rng::from_data(data, 7);
    let level = (rng.below(10)) as u8;
    let flags = rng.next_u64() as u8;
    let (path, ct) = CASES[rng.below(CASES.len() as u64) as usize];
    let plain = Scenario::new(path, ct).check(req, data, 40);
    let mut two = gzip(&data[..data.len() / 2], level, flags);
    two.extend(gzip(&data[data.len() / 2..], level, 0));
    for (ce, z) in [
        ("gzip", gzip(data, level, flags)),
        ("gzip", two),
        ("deflate", compress_to_vec_zlib(data, level)),
        ("deflate", compress_to_vec(data, level)),
    ] {
        let mut s = Scenario::new(path, ct);
        s.response_headers.push(("content-encoding", ce));
        let r = s.check(req, &z, 41);
        assert_eq!(r, plain, "{ce}: compressed body read differently");
        if !z.is_empty() {
            let mut bad = z.clone();
            let at = rng.below(bad.len() as u64) as usize;
            bad[at] ^= 1 << rng.below(8);
            s.check(req, &bad, 42);
            s.check(req, &z[..z.len() - 1 - at % z.len().min(8)], 43);
        }
    }
});
