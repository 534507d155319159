//! `stream_options.include_usage` injection: the request rewrite and the SSE filter.
//!
//! Input: byte 0 picks raw bytes or a recipe, byte 1 seeds the chunking, the rest is the
//! stream (raw) or recipe pieces separated by `0xFE`, each led by an op byte (see `recipe`),
//! which build usage-only chunks (whole, over several `data:` lines, too long, behind an
//! `event:` line), content chunks, comments and raw bytes with LF, CRLF or CR line ends.
//!
//! Oracles, besides "no panic":
//! - **the client's bytes are the upstream bytes minus exactly the removed events**, whatever
//!   the chunking: the filter's output equals a whole-buffer reference that finds the events
//!   line by line and removes those whose data is the usage-only chunk; the filter's counts
//!   agree; it never holds more than `MAX_HELD_EVENT` bytes;
//! - the request rewrite (of the same bytes as a request body) agrees with `serde_json` on
//!   what is a JSON object, changes one span of at most a few dozen bytes, yields valid JSON
//!   with `stream_options.include_usage: true`, and is idempotent (the new body is
//!   `ClientAsked`).
#![no_main]

use libfuzzer_sys::fuzz_target;
use llm_usage_core::inject::{
    is_usage_only_chunk, rewrite_request, Filtered, Rewrite, UsageChunkFilter, MAX_HELD_EVENT,
};
use llm_usage_fuzz::{feed_chunked, Rng};

/// The reference: removes the usage-only events of a whole stream, found line by line.
fn oracle(stream: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::new();
    let mut removed = 0;
    let mut copied = 0;
    // The open event: where it starts, its data values, whether its fields are all `data`.
    let mut event: Option<(usize, Vec<&[u8]>, bool)> = None;
    let mut i = 0;
    while i < stream.len() {
        let mut j = i;
        while j < stream.len() && stream[j] != b'\n' && stream[j] != b'\r' {
            j += 1;
        }
        if j == stream.len() {
            break; // an unterminated last line: never part of a removed event
        }
        let end = if stream[j] == b'\r' && stream.get(j + 1) == Some(&b'\n') {
            j + 2
        } else {
            j + 1
        };
        let line = &stream[i..j];
        if line.is_empty() {
            if let Some((start, data, only_data)) = event.take() {
                let joined = data.join(&b'\n');
                if only_data
                    && !data.is_empty()
                    && i - start <= MAX_HELD_EVENT
                    && is_usage_only_chunk(&joined)
                {
                    out.extend_from_slice(&stream[copied..start]);
                    copied = end;
                    removed += 1;
                }
            }
        } else if line[0] != b':' {
            let ev = event.get_or_insert((i, Vec::new(), true));
            let (name, value) = match line.iter().position(|&b| b == b':') {
                Some(c) => (&line[..c], &line[c + 1..]),
                None => (line, &[][..]),
            };
            if name == b"data" {
                ev.1.push(value.strip_prefix(b" ").unwrap_or(value));
            } else {
                ev.2 = false;
            }
        }
        i = end;
    }
    out.extend_from_slice(&stream[copied..]);
    (out, removed)
}

fn run(stream: &[u8], rng: &mut Rng, max: u64) -> (Vec<u8>, UsageChunkFilter) {
    let mut f = UsageChunkFilter::new();
    let mut client = Vec::new();
    feed_chunked(stream, rng, max, |chunk| {
        let mut out = Vec::new();
        match f.push(chunk, &mut out) {
            Filtered::Unchanged => {
                assert!(out.is_empty());
                client.extend_from_slice(chunk);
            }
            Filtered::Changed => client.extend_from_slice(&out),
        }
        assert!(f.held_bytes() <= MAX_HELD_EVENT, "held {}", f.held_bytes());
    });
    f.finish(&mut client);
    (client, f)
}

fn json_string(payload: &[u8]) -> String {
    serde_json::to_string(&String::from_utf8_lossy(payload)).unwrap()
}

/// Builds a stream from recipe pieces.
fn recipe(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for piece in data.split(|&b| b == 0xFE) {
        let (&op, payload) = match piece.split_first() {
            Some(x) => x,
            None => continue,
        };
        let eol: &[u8] = match (op >> 3) & 3 {
            0 => b"\n",
            1 => b"\r\n",
            2 => b"\r",
            _ => {
                if payload.len() % 2 == 0 {
                    b"\n"
                } else {
                    b"\r\n"
                }
            }
        };
        let field: &[u8] = if op & 0x20 == 0 { b"data: " } else { b"data:" };
        let usage = format!(
            r#"{{"id":"c","object":"chat.completion.chunk","choices":[],"usage":{{"total_tokens":{},"note":{}}}}}"#,
            payload.len(),
            json_string(payload)
        );
        let line = |out: &mut Vec<u8>, name: &[u8], value: &[u8]| {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.extend_from_slice(eol);
        };
        match op & 7 {
            0 => line(&mut out, field, usage.as_bytes()),
            1 => {
                let c = format!(
                    r#"{{"choices":[{{"index":0,"delta":{{"content":{}}}}}],"usage":null}}"#,
                    json_string(payload)
                );
                line(&mut out, field, c.as_bytes());
            }
            2 => line(&mut out, field, payload),
            3 => line(&mut out, b":", payload),
            4 => {
                // The usage chunk over several data lines, cut where the payload says.
                let u = usage.as_bytes();
                let mut at = 0;
                for &b in payload.iter().take(4) {
                    let cut = (at + 1 + b as usize % 40).min(u.len());
                    line(&mut out, field, &u[at..cut]);
                    at = cut;
                }
                line(&mut out, field, &u[at..]);
            }
            5 => {
                line(&mut out, b"event: ", b"usage");
                line(&mut out, field, usage.as_bytes());
            }
            6 => {
                // Around the cap.
                let pad = MAX_HELD_EVENT - 64 + payload.first().copied().unwrap_or(0) as usize / 2;
                let big = format!(
                    r#"{{"choices":[],"usage":{{"pad":"{}"}}}}"#,
                    "x".repeat(pad)
                );
                line(&mut out, field, big.as_bytes());
            }
            _ => out.extend_from_slice(payload),
        }
        if op & 0x40 == 0 {
            out.extend_from_slice(eol); // the blank line that ends the event
        }
    }
    out
}

fn check_rewrite(body: &[u8]) {
    let rewrite = rewrite_request(body);
    let parsed = serde_json::from_slice::<serde_json::Value>(body);
    match &parsed {
        Ok(v) if v.is_object() => assert!(
            !matches!(rewrite, Rewrite::Skipped(llm_usage_core::inject::Skip::InvalidJson)),
            "serde_json reads an object the rewrite calls invalid"
        ),
        Ok(_) => {}
        Err(e) => {
            // Where the two may differ: serde_json's recursion limit, and lone surrogates it
            // refuses and the JSON grammar allows.
            let lenient = e.to_string().contains("recursion limit")
                || e.to_string().contains("surrogate")
                || body.windows(3).any(|w| w.eq_ignore_ascii_case(b"\\ud"));
            assert!(
                lenient || matches!(rewrite, Rewrite::Skipped(_)),
                "serde_json refuses ({e}) what the rewrite read: {rewrite:?}"
            );
        }
    }
    if let Rewrite::Injected(new) = &rewrite {
        let prefix = body.iter().zip(new).take_while(|(a, b)| a == b).count();
        let suffix = body[prefix..]
            .iter()
            .rev()
            .zip(new[prefix..].iter().rev())
            .take_while(|(a, b)| a == b)
            .count();
        let removed = &body[prefix..body.len() - suffix];
        let added = &new[prefix..new.len() - suffix];
        assert!(removed.len() <= 5, "removed {removed:?}");
        assert!(added.len() <= 40, "added {added:?}");
        assert_eq!(rewrite_request(new), Rewrite::ClientAsked, "not idempotent");
        if parsed.is_ok() {
            let v: serde_json::Value =
                serde_json::from_slice(new).expect("the rewrite is still JSON");
            assert_eq!(v["stream_options"]["include_usage"], true);
            assert_eq!(v["stream"], true);
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (Some(&mode), Some(&seed)) = (data.first(), data.get(1)) else {
        return;
    };
    let rest = &data[2..];
    check_rewrite(rest);
    let stream = if mode & 1 == 0 {
        rest.to_vec()
    } else {
        recipe(rest)
    };
    let (want, removed) = oracle(&stream);
    let mut rng = Rng::from_data(data, u64::from(seed));
    for max in [0, 3, 17, 700] {
        let (got, f) = run(&stream, &mut rng, max);
        assert!(got == want, "chunks up to {max} bytes");
        assert_eq!(f.removed_events(), removed);
        assert_eq!(f.removed_bytes(), (stream.len() - want.len()) as u64);
    }
    if stream.len() <= 4096 {
        let (got, _) = run(&stream, &mut rng, 1);
        assert!(got == want, "one byte at a time");
    }
});
