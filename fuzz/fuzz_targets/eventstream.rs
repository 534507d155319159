//! AWS event-stream (Bedrock ConverseStream and InvokeModelWithResponseStream).
//!
//! Each input is used twice: as raw bytes, and as a recipe: pieces split at 0xFE become
//! message payloads (sometimes wrapped as `{"bytes":"<base64>"}`), encoded as valid
//! frames, then some frames get a bad message CRC, a bad prelude, a wrong length or are
//! cut. Oracles: no panic, the same record whatever the chunking, and a frame with a bad
//! message CRC never changes the record.
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::encode_event_stream_message;
use llm_usage_fuzz::Scenario;

const CT: &str = "application/vnd.amazon.eventstream";
const PATHS: &[&str] = &[
    "/model/amazon.nova-lite-v1%3A0/converse-stream",
    "/model/anthropic.claude-3-haiku-20240307-v1%3A0/invoke-with-response-stream",
];

fn b64(data: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for c in data.chunks(3) {
        let n = (u32::from(c[0]) << 16)
            | (u32::from(*c.get(1).unwrap_or(&0)) << 8)
            | u32::from(*c.get(2).unwrap_or(&0));
        for i in 0..=c.len() {
            s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    while !s.len().is_multiple_of(4) {
        s.push('=');
    }
    s
}

fuzz_target!(|data: &[u8]| {
    for (i, path) in PATHS.iter().enumerate() {
        Scenario::new(path, CT).check(b"", data, i as u64);
    }

    let mut good = Vec::new(); // only the intact frames
    let mut all = Vec::new(); // intact and corrupt frames
    let mut bad_crc_only = Vec::new(); // intact frames plus frames with a bad message CRC
    for piece in data.split(|&b| b == 0xFE) {
        let (op, payload) = match piece.split_first() {
            Some((op, rest)) => (*op, rest),
            None => (0, piece),
        };
        let wrapped;
        let payload = if op & 0x10 != 0 {
            wrapped = format!("{{\"bytes\":\"{}\",\"p\":\"x\"}}", b64(payload));
            wrapped.as_bytes()
        } else {
            payload
        };
        let mut m = encode_event_stream_message(
            &[(":event-type", "metadata"), (":message-type", "event")],
            payload,
        );
        match op & 0x7 {
            1 => {
                let n = m.len();
                m[n - 1 - usize::from(op >> 6)] ^= 1 << (op >> 5 & 7);
                all.extend_from_slice(&m);
                bad_crc_only.extend_from_slice(&m);
            }
            2 => {
                m[usize::from(op >> 4) % 12] ^= 0x80;
                all.extend_from_slice(&m);
            }
            3 => {
                let cut = m.len() / 2;
                all.extend_from_slice(&m[..cut]);
            }
            4 => {
                // Lengths that disagree with the content but a valid prelude CRC.
                let total = u32::from_be_bytes([m[0], m[1], m[2], m[3]])
                    .wrapping_add(u32::from(op >> 5) + 1);
                m[..4].copy_from_slice(&total.to_be_bytes());
                let crc = crc32(&m[..8]);
                m[8..12].copy_from_slice(&crc.to_be_bytes());
                all.extend_from_slice(&m);
            }
            _ => {
                good.extend_from_slice(&m);
                all.extend_from_slice(&m);
                bad_crc_only.extend_from_slice(&m);
            }
        }
    }
    for (i, path) in PATHS.iter().enumerate() {
        let s = Scenario::new(path, CT);
        let g = s.check(b"", &good, 10 + i as u64);
        s.check(b"", &all, 20 + i as u64);
        let b = s.check(b"", &bad_crc_only, 30 + i as u64);
        assert_eq!(b, g, "a frame with a bad message CRC changed the record");
    }
});

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
