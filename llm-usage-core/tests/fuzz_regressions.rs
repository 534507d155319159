//! Inputs the fuzz targets (`fuzz/`) found, minimised, as regression tests. Each runs the
//! failing oracle: the same bytes give the same record whatever the chunking.

use llm_usage_core::{Exchange, UsageRecord};

fn run(path: &str, content_type: &str, request: &[u8], chunks: &[&[u8]]) -> UsageRecord {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", path, [("content-type", "application/json")]);
    ex.on_request_body(request);
    ex.on_response_head(200, [("content-type", content_type)]);
    for c in chunks {
        ex.on_response_body(c);
    }
    ex.on_response_end();
    ex.finish()
}

/// Every way of cutting `body` in two (and bytewise) gives the record of the whole body.
fn split_invariant(path: &str, content_type: &str, request: &[u8], body: &[u8]) -> UsageRecord {
    let whole = run(path, content_type, request, &[body]);
    for at in 0..=body.len() {
        let r = run(path, content_type, request, &[&body[..at], &body[at..]]);
        assert_eq!(r, whole, "{path}: split at {at} of {body:?}");
    }
    let bytes: Vec<&[u8]> = body.chunks(1).collect();
    assert_eq!(run(path, content_type, request, &bytes), whole, "bytewise");
    whole
}

/// json_array, `crash-e415f545…`: a first chunk of whitespace only (here a form feed,
/// which is ASCII whitespace but not JSON whitespace) was dropped while the framing was
/// still being sniffed, but fed to the scanner when it came with the next bytes.
#[test]
fn leading_whitespace_while_sniffing_the_framing() {
    let vertex =
        "/v1/projects/p/locations/l/publishers/google/models/gemini-2.0-flash:generateContent";
    split_invariant(
        vertex,
        "application/json",
        br#"{"model":"x"}"#,
        &[12, 48, 4, 1, 1, 17, 123, 109],
    );
    // The same with JSON whitespace, event-stream and SSE bodies behind it.
    let r = split_invariant(
        "/v1/chat/completions",
        "application/octet-stream",
        b"{}",
        b" \r\n\t{\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}",
    );
    assert_eq!(r.total_tokens, Some(3));
    let r = split_invariant(
        "/v1/chat/completions",
        "application/octet-stream",
        b"{}",
        b"\n\ndata: {\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":2}}\n\n",
    );
    assert_eq!(r.total_tokens, Some(3));
    let mut es = b"  ".to_vec();
    es.extend(llm_usage_core::encode_event_stream_message(
        &[],
        br#"{"usage":{"inputTokens":1,"outputTokens":2}}"#,
    ));
    split_invariant(
        "/model/m/converse-stream",
        "application/octet-stream",
        b"{}",
        &es,
    );
    // A form feed is not JSON whitespace: the body is not JSON.
    let r = split_invariant(
        "/v1/chat/completions",
        "application/json",
        b"{}",
        b"\x0c{\"usage\":{\"prompt_tokens\":1}}",
    );
    assert_eq!(r.input_tokens, None);
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    v.extend(miniz_oxide::deflate::compress_to_vec(data, 6));
    v.extend_from_slice(&crc32fast::hash(data).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

fn run_gzip(body: &[u8], cuts: &[usize]) -> UsageRecord {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", "/api/chat", [("content-type", "application/json")]);
    ex.on_request_body(br#"{"model":"m"}"#);
    ex.on_response_head(
        200,
        [
            ("content-type", "application/x-ndjson"),
            ("content-encoding", "gzip"),
        ],
    );
    let mut last = 0;
    for &c in cuts {
        ex.on_response_body(&body[last..c]);
        last = c;
    }
    ex.on_response_body(&body[last..]);
    ex.on_response_end();
    ex.finish()
}

/// gzip, `crash-d9f58bb4…`: after a gzip member, bytes that do not start another member
/// are trailing garbage and ignored; but every later *chunk* was looked at afresh, and one
/// starting with 0x1f began a (broken) member: whether the body was corrupt depended on
/// where the chunks ended.
#[test]
fn trailing_garbage_after_a_gzip_member() {
    let mut body = gzip(b"{\"prompt_eval_count\":1,\"eval_count\":2,\"done\":true}\n");
    let member = body.len();
    body.extend_from_slice(b"ab\x1fcdefgh\x1f\x8b\x08\x00");
    let whole = run_gzip(&body, &[]);
    assert_eq!(whole.total_tokens, Some(3));
    assert!(whole.complete, "trailing garbage is ignored");
    for at in 0..=body.len() {
        assert_eq!(run_gzip(&body, &[at]), whole, "split at {at}");
    }
    for (a, b) in [(member, member + 2), (member + 1, member + 9)] {
        assert_eq!(run_gzip(&body, &[a, b]), whole, "cuts at {a}, {b}");
    }
    // A second member right after the first is still decoded, whatever the chunking.
    let mut two = gzip(b"{\"prompt_eval_count\":1,\"eval_count\":2,\"done\":true}\n");
    two.extend(gzip(
        b"{\"prompt_eval_count\":5,\"eval_count\":6,\"done\":true}\n",
    ));
    let whole = run_gzip(&two, &[]);
    assert_eq!(whole.total_tokens, Some(11));
    for at in 0..=two.len() {
        assert_eq!(run_gzip(&two, &[at]), whole, "two members split at {at}");
    }
}

/// br_zstd, `crash-b662a2ef…`: a br stream with one bit flipped, fed whole, lost the
/// bytes brotli-decompressor had decoded but not yet handed on when it met the damage; fed
/// in small chunks, it had handed them on (it pushes its output whenever it runs out of
/// input), so the events before the damage counted. The decoder now gets one compressed
/// byte per call. Here every bit of a stream's first 600 bytes is flipped in turn, in br
/// and zstd, and the record must not depend on the chunking.
#[test]
fn damaged_br_and_zstd_streams_give_the_same_record_in_any_chunking() {
    use std::io::Write;
    let mut plain = String::new();
    for i in 0..40 {
        plain += &format!(
            "event: message_delta\ndata: {{\"type\":\"message_delta\",\"usage\":{{\"output_tokens\":{i}}}}}\n\n"
        );
    }
    let plain = plain.into_bytes();
    let mut br = Vec::new();
    {
        let mut w = brotli::CompressorWriter::new(&mut br, 4096, 5, 16);
        w.write_all(&plain).unwrap();
    }
    let zstd = zstd::bulk::compress(&plain, 3).unwrap();
    let mut differ = 0;
    for (coding, z) in [("br", br), ("zstd", zstd)] {
        let run = |body: &[u8], chunk: usize| {
            let mut ex = Exchange::new();
            ex.on_request_head(
                "POST",
                "/v1/messages",
                [("anthropic-version", "2023-06-01")],
            );
            ex.on_request_body(br#"{"model":"m","stream":true}"#);
            ex.on_response_head(
                200,
                [
                    ("content-type", "text/event-stream"),
                    ("content-encoding", coding),
                ],
            );
            for c in body.chunks(chunk) {
                ex.on_response_body(c);
            }
            ex.on_response_end();
            ex.finish()
        };
        assert_eq!(run(&z, usize::MAX).output_tokens, Some(39), "{coding}");
        for at in 0..z.len().min(600) {
            for bit in 0..8 {
                let mut bad = z.clone();
                bad[at] ^= 1 << bit;
                let whole = run(&bad, usize::MAX);
                differ += usize::from(whole.output_tokens != Some(39));
                for chunk in [1, 3, 64] {
                    assert_eq!(
                        run(&bad, chunk),
                        whole,
                        "{coding}: bit {bit} of byte {at}, chunks of {chunk}"
                    );
                }
            }
        }
    }
    // The damage did change records: the oracle had something to compare.
    assert!(differ > 100, "{differ}");
}
