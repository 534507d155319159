//! WebSocket sessions after a `101` (OpenAI Realtime, Gemini Live), the inflater of
//! permessage-deflate above all: the input is a flags byte and messages separated by `\n`,
//! framed here (fragmented, with pings between fragments) and sent twice, once plain and
//! once compressed (context takeover or not, some messages left uncompressed, as RFC 7692
//! allows). Oracles: no panic; the same records whatever the chunking; compression is
//! transparent: the compressed session gives the plain session's records. With a byte of
//! a compressed payload flipped (flags bit 2), only the first two hold.
//!
//! (The `exchange` target reaches the framer too, from whole realtime fixtures, but random
//! bytes rarely make valid frames, let alone valid deflate streams, so it reads few
//! compressed messages.)
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::fuzzing::{websocket_deflate, websocket_frame};
use llm_usage_core::{Exchange, UsageRecord};
use llm_usage_fuzz::{feed_chunked, sanity, Rng};

const MASK: [u8; 4] = [0x5a, 0x01, 0xc3, 0x7e];

/// The server's frames: each message in one to three fragments, a ping between two of
/// them now and then; `payloads[i]` is sent with RSV1 when `compressed[i]`. `rng` draws the
/// same layout for the plain and the compressed session.
fn frames(payloads: &[Vec<u8>], compressed: &[bool], binary: bool, mut rng: Rng) -> Vec<u8> {
    let mut out = Vec::new();
    for (p, &z) in payloads.iter().zip(compressed) {
        let parts = 1 + rng.below(3) as usize;
        let cut1 = rng.below(p.len() as u64 + 1) as usize;
        let cut2 = cut1 + rng.below((p.len() - cut1) as u64 + 1) as usize;
        let pieces: Vec<&[u8]> = match parts {
            1 => vec![&p[..]],
            2 => vec![&p[..cut1], &p[cut1..]],
            _ => vec![&p[..cut1], &p[cut1..cut2], &p[cut2..]],
        };
        for (k, piece) in pieces.iter().enumerate() {
            let opcode = if k > 0 {
                0
            } else if binary {
                2
            } else {
                1
            };
            let fin = k + 1 == pieces.len();
            out.extend(websocket_frame(opcode, fin, z && k == 0, None, piece));
            if !fin && rng.below(4) == 0 {
                out.extend(websocket_frame(9, true, false, None, b"ka"));
            }
        }
    }
    out
}

/// Replays the session, each direction in chunks of at most `max` bytes (0: whole):
/// the records closed along the way and the final one.
fn run(
    path: &str,
    host: &str,
    extensions: Option<&str>,
    client: &[u8],
    server: &[u8],
    rng: &mut Rng,
    max: u64,
) -> (Vec<UsageRecord>, UsageRecord) {
    let mut ex = Exchange::new();
    let mut head = vec![
        ("upgrade", "websocket"),
        ("connection", "Upgrade"),
        ("host", host),
    ];
    if let Some(e) = extensions {
        head.push(("sec-websocket-extensions", e));
    }
    ex.on_request_head("GET", path, head.iter().copied());
    ex.on_request_end();
    let mut head = vec![("upgrade", "websocket"), ("connection", "Upgrade")];
    if let Some(e) = extensions {
        head.push(("sec-websocket-extensions", e));
    }
    ex.on_response_head(101, head);
    assert!(ex.upgraded());
    let mut records = Vec::new();
    feed_chunked(client, rng, max, |c| {
        ex.on_request_body(c);
        records.extend(ex.take_records());
    });
    feed_chunked(server, rng, max, |c| {
        ex.on_response_body(c);
        records.extend(ex.take_records());
    });
    ex.on_response_end();
    records.extend(ex.take_records());
    let last = ex.finish();
    for r in &records {
        sanity(r);
    }
    sanity(&last);
    (records, last)
}

fuzz_target!(|data: &[u8]| {
    let Some((&flags, rest)) = data.split_first() else {
        return;
    };
    let messages: Vec<&[u8]> = rest.split(|&b| b == b'\n').take(64).collect();
    let gemini = flags & 1 != 0;
    let takeover = flags & 2 == 0;
    let damage = flags & 4 != 0;
    let (path, host) = if gemini {
        (
            "/ws/google.ai.generativelanguage.v1beta.GenerativeService.BidiGenerateContent",
            "generativelanguage.googleapis.com",
        )
    } else {
        ("/v1/realtime?model=gpt-realtime", "api.openai.com")
    };
    let extensions = if takeover {
        "permessage-deflate"
    } else {
        "permessage-deflate; server_no_context_takeover"
    };
    let seed = Rng::from_data(data, 0x5753).next_u64();
    let mut pick = Rng::new(seed ^ 1);
    // Some messages go uncompressed even when compression is on (RSV1 clear): with
    // context takeover they leave the window as it was, so the compressor skips them too.
    let compressed: Vec<bool> = messages.iter().map(|_| pick.below(5) != 0).collect();
    let to_compress: Vec<&[u8]> = messages
        .iter()
        .zip(&compressed)
        .filter(|(_, &z)| z)
        .map(|(m, _)| *m)
        .collect();
    let mut deflated = websocket_deflate(&to_compress, takeover).into_iter();
    let mut payloads: Vec<Vec<u8>> = messages
        .iter()
        .zip(&compressed)
        .map(|(m, &z)| {
            if z {
                deflated.next().unwrap()
            } else {
                m.to_vec()
            }
        })
        .collect();
    if damage {
        let at: Vec<usize> = (0..payloads.len())
            .filter(|&i| compressed[i] && !payloads[i].is_empty())
            .collect();
        if let Some(&i) = at.get(pick.below(at.len() as u64 + 1) as usize) {
            let j = pick.below(payloads[i].len() as u64) as usize;
            payloads[i][j] ^= 1 << pick.below(8);
        }
    }
    let plain: Vec<Vec<u8>> = messages.iter().map(|m| m.to_vec()).collect();
    let none = vec![false; messages.len()];
    let server_plain = frames(&plain, &none, gemini, Rng::new(seed));
    let server = frames(&payloads, &compressed, gemini, Rng::new(seed));
    // The client's side: its first message, masked and uncompressed.
    let client: Vec<u8> = messages
        .first()
        .map(|m| websocket_frame(1, true, false, Some(MASK), m))
        .unwrap_or_default();

    let mut rng = Rng::new(seed ^ 2);
    let whole = run(path, host, Some(extensions), &client, &server, &mut rng, 0);
    for max in [3, 17, 700] {
        let split = run(
            path,
            host,
            Some(extensions),
            &client,
            &server,
            &mut rng,
            max,
        );
        assert_eq!(split, whole, "records differ when split (chunks <= {max})");
    }
    if !damage {
        let reference = run(path, host, None, &client, &server_plain, &mut rng, 0);
        assert_eq!(whole, reference, "compression is not transparent");
    }
});
