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
