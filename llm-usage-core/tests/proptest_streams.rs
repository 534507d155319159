//! Property tests over generated provider streams.
//!
//! For each wire format a generator writes a realistic stream: random content (quotes,
//! backslashes, control characters, unicode written literally or as `\u` escapes with
//! surrogate pairs, SSE and JSON lookalikes inside strings), a random model name, and
//! random usage numbers, each of which may be absent. The envelope varies too (LF or CRLF,
//! `data:` with or without a space, comments, `event:` lines, pretty-printed JSON).
//!
//! Properties:
//! * any chunking of the bodies gives the same record as one chunk;
//! * every token figure the stream carries is the generated one (after the dialect's
//!   normalisation);
//! * every figure the stream does not carry stays unknown (`None`), never 0.

use llm_usage_core::{encode_event_stream_message, Exchange, UsageRecord};
use proptest::prelude::*;

// ---------------------------------------------------------------------------------------
// Generation helpers

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        let mut x = self.0 | 1;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    fn chance(&mut self, one_in: u64) -> bool {
        self.below(one_in) == 0
    }
}

/// Encodes a JSON string literal, choosing at random how each character is written.
fn json_str(s: &str, rng: &mut Rng) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        let hex = |u: u32, rng: &mut Rng| {
            let h = format!("{u:04x}");
            if rng.chance(2) {
                h.to_uppercase()
            } else {
                h
            }
        };
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str(if rng.chance(2) { "\\n" } else { "\\u000a" }),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            '/' if rng.chance(2) => out.push_str("\\/"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{}", hex(c as u32, rng))),
            c if rng.chance(4) => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    out.push_str(&format!("\\u{}", hex(u32::from(*u), rng)));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A token count as JSON: mostly plain, sometimes as an integral float (`12.0`).
fn num(n: u64, rng: &mut Rng) -> String {
    if rng.chance(8) {
        format!("{n}.0")
    } else {
        n.to_string()
    }
}

/// Writes `"key":value` members for the known numbers, in the given order.
fn members(fields: &[(&str, Option<u64>)], rng: &mut Rng) -> String {
    let mut v: Vec<String> = fields
        .iter()
        .filter_map(|(k, n)| n.map(|n| format!("\"{k}\":{}", num(n, rng))))
        .collect();
    if rng.chance(3) {
        v.push("\"noise\":{\"prompt_tokens\":[1,2,{\"x\":\"}\"}]}".into());
    }
    if rng.chance(2) {
        v.reverse();
    }
    v.join(if rng.chance(3) { ", " } else { "," })
}

/// Sum of the known terms, unknown if none is known or if it overflows.
fn sum(terms: &[Option<u64>]) -> Option<u64> {
    let mut acc: Option<u64> = None;
    for t in terms.iter().flatten() {
        acc = Some(acc.unwrap_or(0).checked_add(*t)?);
    }
    acc
}

fn total_or_sum(total: Option<u64>, input: Option<u64>, output: Option<u64>) -> Option<u64> {
    total.or_else(|| input?.checked_add(output?))
}

/// SSE envelope for one JSON payload.
fn sse_event(event: Option<&str>, json: &str, rng: &mut Rng, crlf: bool) -> String {
    let nl = if crlf { "\r\n" } else { "\n" };
    let mut s = String::new();
    if rng.chance(6) {
        s.push_str(&format!(": keep-alive{nl}{nl}"));
    }
    if let Some(e) = event {
        s.push_str(&format!("event: {e}{nl}"));
    }
    let sp = if rng.chance(4) { "" } else { " " };
    s.push_str(&format!("data:{sp}{json}{nl}{nl}"));
    s
}

/// A random generated stream.
#[derive(Debug, Clone)]
struct Gen {
    model: String,
    pieces: Vec<String>,
    nums: [Option<u64>; 6],
    seed: u64,
}

fn count() -> impl Strategy<Value = Option<u64>> {
    prop_oneof![
        1 => Just(None),
        3 => (0u64..200_000).prop_map(Some),
        1 => any::<u64>().prop_map(Some),
    ]
}

fn content() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => any::<String>(),
        1 => "[\"\\\\{}\\[\\]:,\n\r a-z0-9\u{e9}\u{4e2d}\u{1F600}]{0,40}",
        1 => Just("data: {\"usage\":{\"prompt_tokens\":999}}\n\n".to_string()),
        1 => Just("\\u0000\\\"}]},\"usage\":{\"input_tokens\":7}".to_string()),
    ]
}

fn gen() -> impl Strategy<Value = Gen> {
    (
        "[a-zA-Z0-9._:/@\u{e9}\u{4e2d}\u{1F600}\" \\\\-]{1,40}",
        proptest::collection::vec(content(), 0..6),
        [count(), count(), count(), count(), count(), count()],
        any::<u64>(),
    )
        .prop_map(|(model, pieces, nums, seed)| Gen {
            model,
            pieces,
            nums,
            seed,
        })
}

/// What a test expects of the record.
#[derive(Debug, Default, PartialEq, Eq)]
struct Expect {
    model: Option<String>,
    input: Option<u64>,
    output: Option<u64>,
    total: Option<u64>,
    cached: Option<u64>,
    creation: Option<u64>,
    reasoning: Option<u64>,
    stream: Option<bool>,
}

struct Built {
    path: String,
    request_headers: Vec<(&'static str, &'static str)>,
    request: Vec<u8>,
    response_headers: Vec<(&'static str, &'static str)>,
    response: Vec<u8>,
    expect: Expect,
}

fn run(b: &Built, req_cuts: &[usize], resp_cuts: &[usize]) -> UsageRecord {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", &b.path, b.request_headers.iter().copied());
    feed(&b.request, req_cuts, |c| ex.on_request_body(c));
    ex.on_request_end();
    ex.on_response_head(200, b.response_headers.iter().copied());
    feed(&b.response, resp_cuts, |c| ex.on_response_body(c));
    ex.on_response_end();
    ex.finish()
}

fn feed(body: &[u8], cuts: &[usize], mut f: impl FnMut(&[u8])) {
    let mut rest = body;
    let mut i = 0;
    while !rest.is_empty() {
        let n = if cuts.is_empty() {
            rest.len()
        } else {
            cuts[i % cuts.len()].clamp(1, rest.len())
        };
        f(&rest[..n]);
        rest = &rest[n..];
        i += 1;
    }
}

fn check(b: &Built, req_cuts: &[usize], resp_cuts: &[usize]) -> Result<(), TestCaseError> {
    let whole = run(b, &[], &[]);
    let e = &b.expect;
    let mut got = Expect {
        model: whole.model.clone(),
        input: whole.input_tokens,
        output: whole.output_tokens,
        total: whole.total_tokens,
        cached: whole.cached_input_tokens,
        creation: whole.cache_creation_input_tokens,
        reasoning: whole.reasoning_tokens,
        stream: whole.stream,
    };
    // Where the stream reported no figure, the record may estimate it (flagged): only
    // input, output and total, and only when a provider figure is missing.
    if whole.estimated {
        prop_assert!(
            e.output.is_none() || e.input.is_none(),
            "estimated with every figure reported"
        );
        if e.output.is_none() {
            prop_assert!(got.output.is_some(), "estimated without an output");
            got.output = None;
        }
        if e.input.is_none() {
            got.input = None;
        }
        if e.total.is_none() {
            got.total = None;
        }
    }
    prop_assert_eq!(&got, e, "whole body");
    prop_assert!(whole.complete, "complete");
    let split = run(b, req_cuts, resp_cuts);
    prop_assert_eq!(&split, &whole, "split {:?} / {:?}", req_cuts, resp_cuts);
    if b.response.len() <= 4096 {
        let bytewise = run(b, &[1], &[1]);
        prop_assert_eq!(&bytewise, &whole, "byte at a time");
    }
    Ok(())
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    proptest::collection::vec(1usize..48, 0..24)
}

// ---------------------------------------------------------------------------------------
// Builders, one per wire format

/// OpenAI Chat Completions, streamed with `include_usage` (SSE).
fn openai_chat_sse(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let crlf = rng.chance(3);
    let [p, c, t, cached, reasoning, _] = g.nums;
    let m = json_str(&g.model, &mut rng);
    let request = format!(
        "{{\"model\":{m},\"messages\":[{{\"role\":\"user\",\"content\":{}}}],\"stream\":true,\"stream_options\":{{\"include_usage\":true}}}}",
        json_str(g.pieces.first().map_or("", |s| s), &mut rng)
    );
    let mut resp = String::new();
    for piece in &g.pieces {
        let chunk = format!(
            "{{\"id\":\"c\",\"object\":\"chat.completion.chunk\",\"model\":{m},\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{}}}}}],\"usage\":null}}",
            json_str(piece, &mut rng)
        );
        resp.push_str(&sse_event(None, &chunk, &mut rng, crlf));
    }
    let mut usage = members(
        &[
            ("prompt_tokens", p),
            ("completion_tokens", c),
            ("total_tokens", t),
        ],
        &mut rng,
    );
    if cached.is_some() {
        let d = members(&[("cached_tokens", cached)], &mut rng);
        usage = format!("{usage}{}\"prompt_tokens_details\":{{{d}}}", sep(&usage));
    }
    if reasoning.is_some() {
        let d = members(&[("reasoning_tokens", reasoning)], &mut rng);
        usage = format!(
            "{usage}{}\"completion_tokens_details\":{{{d}}}",
            sep(&usage)
        );
    }
    let last = format!("{{\"id\":\"c\",\"choices\":[],\"model\":{m},\"usage\":{{{usage}}}}}");
    resp.push_str(&sse_event(None, &last, &mut rng, crlf));
    resp.push_str(&sse_event(None, "[DONE]", &mut rng, crlf));
    Built {
        path: "/v1/chat/completions".into(),
        request_headers: vec![("content-type", "application/json")],
        request: request.into_bytes(),
        response_headers: vec![("content-type", "text/event-stream")],
        response: resp.into_bytes(),
        expect: Expect {
            model: Some(g.model.clone()),
            input: p,
            output: c,
            total: total_or_sum(t, p, c),
            cached,
            creation: None,
            reasoning,
            stream: Some(true),
        },
    }
}

fn sep(s: &str) -> &'static str {
    if s.is_empty() {
        ""
    } else {
        ","
    }
}

/// Anthropic Messages, streamed (SSE): input in `message_start`, cumulative output in
/// `message_delta`.
fn anthropic_sse(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let crlf = rng.chance(3);
    let [input, start_out, cache_read, cache_creation, out, _] = g.nums;
    let m = json_str(&g.model, &mut rng);
    let request = format!(
        "{{\"model\":\"claude-x\",\"max_tokens\":100,\"stream\":true,\"messages\":[{{\"role\":\"user\",\"content\":{}}}]}}",
        json_str(&g.pieces.concat(), &mut rng)
    );
    let start_usage = members(
        &[
            ("input_tokens", input),
            ("cache_read_input_tokens", cache_read),
            ("cache_creation_input_tokens", cache_creation),
            ("output_tokens", start_out),
        ],
        &mut rng,
    );
    let mut resp = sse_event(
        Some("message_start"),
        &format!(
            "{{\"type\":\"message_start\",\"message\":{{\"id\":\"msg\",\"type\":\"message\",\"role\":\"assistant\",\"content\":[],\"model\":{m},\"stop_reason\":null,\"usage\":{{{start_usage}}}}}}}"
        ),
        &mut rng,
        crlf,
    );
    resp.push_str(&sse_event(
        Some("content_block_start"),
        "{\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}",
        &mut rng,
        crlf,
    ));
    for piece in &g.pieces {
        let e = format!(
            "{{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
            json_str(piece, &mut rng)
        );
        resp.push_str(&sse_event(Some("content_block_delta"), &e, &mut rng, crlf));
    }
    resp.push_str(&sse_event(
        Some("ping"),
        "{\"type\": \"ping\"}",
        &mut rng,
        crlf,
    ));
    let delta_usage = members(&[("output_tokens", out)], &mut rng);
    resp.push_str(&sse_event(
        Some("message_delta"),
        &format!("{{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{{delta_usage}}}}}"),
        &mut rng,
        crlf,
    ));
    resp.push_str(&sse_event(
        Some("message_stop"),
        "{\"type\":\"message_stop\"}",
        &mut rng,
        crlf,
    ));
    Built {
        path: "/v1/messages".into(),
        request_headers: vec![("anthropic-version", "2023-06-01")],
        request: request.into_bytes(),
        response_headers: vec![("content-type", "text/event-stream; charset=utf-8")],
        response: resp.into_bytes(),
        expect: {
            let input = sum(&[input, cache_read, cache_creation]);
            // `message_start`'s output is provisional: never read.
            let _ = start_out;
            let output = out;
            Expect {
                model: Some(g.model.clone()),
                input,
                output,
                total: total_or_sum(None, input, output),
                cached: cache_read,
                creation: cache_creation,
                reasoning: None,
                stream: Some(true),
            }
        },
    }
}

/// Gemini `streamGenerateContent` without `alt=sse`: one streamed JSON array, often
/// pretty-printed.
fn gemini_array(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let [p, c, t, thoughts, cached, tool] = g.nums;
    let pretty = rng.chance(2);
    let nl = if pretty { "\r\n  " } else { "" };
    let m = json_str(&g.model, &mut rng);
    let mut elems = Vec::new();
    for piece in &g.pieces {
        elems.push(format!(
            "{{{nl}\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": {}}}],\"role\": \"model\"}}}}],{nl}\"modelVersion\": {m}}}",
            json_str(piece, &mut rng)
        ));
    }
    let usage = members(
        &[
            ("promptTokenCount", p),
            ("candidatesTokenCount", c),
            ("totalTokenCount", t),
            ("thoughtsTokenCount", thoughts),
            ("cachedContentTokenCount", cached),
            ("toolUsePromptTokenCount", tool),
        ],
        &mut rng,
    );
    elems.push(format!(
        "{{\"candidates\": [{{\"content\": {{\"parts\": [{{\"text\": \"\"}}]}},\"finishReason\": \"STOP\"}}],{nl}\"usageMetadata\": {{{usage}}},{nl}\"modelVersion\": {m}}}"
    ));
    let resp = format!("[{}]", elems.join(&format!(",{nl}")));
    let input = sum(&[p, tool]);
    let output = sum(&[c, thoughts]);
    Built {
        path: "/v1beta/models/gemini-2.5-flash:streamGenerateContent".into(),
        request_headers: vec![("content-type", "application/json")],
        request: b"{\"contents\":[{\"parts\":[{\"text\":\"hi\"}]}]}".to_vec(),
        response_headers: vec![("content-type", "application/json; charset=UTF-8")],
        response: resp.into_bytes(),
        expect: Expect {
            model: Some(g.model.clone()),
            input,
            output,
            total: total_or_sum(t, input, output),
            cached,
            creation: None,
            reasoning: thoughts,
            stream: Some(true),
        },
    }
}

/// Bedrock ConverseStream: AWS event-stream, usage in the `metadata` event, model in the path.
fn bedrock_converse_stream(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let [i, o, t, cr, cw, _] = g.nums;
    let mut resp = encode_event_stream_message(
        &[(":event-type", "messageStart"), (":message-type", "event")],
        b"{\"p\":\"abcd\",\"role\":\"assistant\"}",
    );
    for piece in &g.pieces {
        let payload = format!(
            "{{\"contentBlockIndex\":0,\"delta\":{{\"text\":{}}},\"p\":\"ab\"}}",
            json_str(piece, &mut rng)
        );
        resp.extend(encode_event_stream_message(
            &[
                (":event-type", "contentBlockDelta"),
                (":content-type", "application/json"),
                (":message-type", "event"),
            ],
            payload.as_bytes(),
        ));
    }
    let usage = members(
        &[
            ("inputTokens", i),
            ("outputTokens", o),
            ("totalTokens", t),
            ("cacheReadInputTokens", cr),
            ("cacheWriteInputTokens", cw),
        ],
        &mut rng,
    );
    resp.extend(encode_event_stream_message(
        &[(":event-type", "messageStop"), (":message-type", "event")],
        b"{\"stopReason\":\"end_turn\"}",
    ));
    resp.extend(encode_event_stream_message(
        &[(":event-type", "metadata"), (":message-type", "event")],
        format!("{{\"metrics\":{{\"latencyMs\":12}},\"usage\":{{{usage}}},\"p\":\"x\"}}")
            .as_bytes(),
    ));
    let input = sum(&[i, cr, cw]);
    Built {
        path: "/model/amazon.nova-lite-v1%3A0/converse-stream".into(),
        request_headers: vec![("content-type", "application/json")],
        request: b"{\"messages\":[{\"role\":\"user\",\"content\":[{\"text\":\"hi\"}]}]}".to_vec(),
        response_headers: vec![("content-type", "application/vnd.amazon.eventstream")],
        response: resp,
        expect: Expect {
            model: Some("amazon.nova-lite-v1:0".into()),
            input,
            output: o,
            total: total_or_sum(t, input, o),
            cached: cr,
            creation: cw,
            reasoning: None,
            stream: Some(true),
        },
    }
}

/// Ollama native `/api/chat`, streamed as NDJSON.
fn ollama_ndjson(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let [p, e, ..] = g.nums;
    let m = json_str(&g.model, &mut rng);
    let nl = if rng.chance(3) { "\r\n" } else { "\n" };
    let mut resp = String::new();
    for piece in &g.pieces {
        resp.push_str(&format!(
            "{{\"model\":{m},\"created_at\":\"2025-01-01T00:00:00Z\",\"message\":{{\"role\":\"assistant\",\"content\":{}}},\"done\":false}}{nl}",
            json_str(piece, &mut rng)
        ));
    }
    let counts = members(&[("prompt_eval_count", p), ("eval_count", e)], &mut rng);
    resp.push_str(&format!(
        "{{\"model\":{m},\"message\":{{\"role\":\"assistant\",\"content\":\"\"}},\"done\":true,\"total_duration\":123{}{counts}}}{nl}",
        if counts.is_empty() { "" } else { "," }
    ));
    Built {
        path: "/api/chat".into(),
        request_headers: vec![],
        request: b"{\"model\":\"llama3.2\",\"messages\":[]}".to_vec(),
        response_headers: vec![("content-type", "application/x-ndjson")],
        response: resp.into_bytes(),
        expect: Expect {
            model: Some(g.model.clone()),
            input: p,
            output: e,
            total: total_or_sum(None, p, e),
            cached: None,
            creation: None,
            reasoning: None,
            stream: Some(true),
        },
    }
}

/// OpenAI Chat Completions, not streamed: one JSON document, gzip-compressed at random.
fn openai_json(g: &Gen) -> Built {
    let mut rng = Rng(g.seed);
    let [p, c, t, cached, reasoning, _] = g.nums;
    let m = json_str(&g.model, &mut rng);
    let content = json_str(&g.pieces.concat(), &mut rng);
    let usage = members(
        &[
            ("prompt_tokens", p),
            ("completion_tokens", c),
            ("total_tokens", t),
        ],
        &mut rng,
    );
    let mut details = String::new();
    if cached.is_some() || reasoning.is_some() {
        details = format!(
            "{}\"prompt_tokens_details\":{{{}}},\"completion_tokens_details\":{{{}}}",
            sep(&usage),
            members(&[("cached_tokens", cached)], &mut rng),
            members(&[("reasoning_tokens", reasoning)], &mut rng),
        );
    }
    let body = format!(
        "{{\n  \"id\": \"chatcmpl-1\",\n  \"choices\": [{{\"index\": 0, \"message\": {{\"role\": \"assistant\", \"content\": {content}}}}}],\n  \"usage\": {{{usage}{details}}},\n  \"model\": {m}\n}}\n"
    );
    let gzip = rng.chance(2);
    let (response, mut headers) = if gzip {
        (
            gzip_bytes(body.as_bytes()),
            vec![("content-encoding", "gzip")],
        )
    } else {
        (body.into_bytes(), vec![])
    };
    headers.push(("content-type", "application/json"));
    Built {
        path: "/v1/chat/completions".into(),
        request_headers: vec![("content-type", "application/json")],
        request: format!(
            "{{\"model\":\"gpt-x\",\"messages\":[{{\"role\":\"user\",\"content\":{content}}}]}}"
        )
        .into_bytes(),
        response_headers: headers,
        response,
        expect: Expect {
            model: Some(g.model.clone()),
            input: p,
            output: c,
            total: total_or_sum(t, p, c),
            cached,
            creation: None,
            reasoning,
            stream: Some(false),
        },
    }
}

fn gzip_bytes(data: &[u8]) -> Vec<u8> {
    let mut v = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    v.extend(miniz_deflate(data));
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
    v.extend_from_slice(&(!crc).to_le_bytes());
    v.extend_from_slice(&(data.len() as u32).to_le_bytes());
    v
}

/// Raw deflate with stored (uncompressed) blocks: valid, and needs no compressor here.
fn miniz_deflate(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut chunks = data.chunks(65535).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(c) = chunks.next() {
        let last = chunks.peek().is_none();
        out.push(u8::from(last));
        let len = c.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(c);
    }
    out
}

// ---------------------------------------------------------------------------------------
// The properties

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn openai_chat_stream(g in gen(), rq in cuts(), rs in cuts()) {
        check(&openai_chat_sse(&g), &rq, &rs)?;
    }

    #[test]
    fn anthropic_stream(g in gen(), rq in cuts(), rs in cuts()) {
        check(&anthropic_sse(&g), &rq, &rs)?;
    }

    #[test]
    fn gemini_json_array_stream(g in gen(), rq in cuts(), rs in cuts()) {
        check(&gemini_array(&g), &rq, &rs)?;
    }

    #[test]
    fn bedrock_event_stream(g in gen(), rq in cuts(), rs in cuts()) {
        check(&bedrock_converse_stream(&g), &rq, &rs)?;
    }

    #[test]
    fn ollama_ndjson_stream(g in gen(), rq in cuts(), rs in cuts()) {
        check(&ollama_ndjson(&g), &rq, &rs)?;
    }

    #[test]
    fn openai_json_maybe_gzip(g in gen(), rq in cuts(), rs in cuts()) {
        check(&openai_json(&g), &rq, &rs)?;
    }

    /// Without a `Content-Type`, the framing is sniffed from the first bytes (wherever the
    /// first chunk ends) and the record is the same.
    #[test]
    fn sniffed_framing_gives_the_same_record(g in gen(), rs in cuts(), ws in "[ \t\r\n]{0,3}") {
        for mut b in [openai_chat_sse(&g), anthropic_sse(&g), gemini_array(&g), bedrock_converse_stream(&g), ollama_ndjson(&g), openai_json(&g)] {
            let declared = run(&b, &[], &[]);
            b.response_headers.retain(|(k, _)| *k != "content-type");
            if !b.response_headers.iter().any(|(k, _)| *k == "content-encoding") {
                let mut body = ws.clone().into_bytes();
                body.extend_from_slice(&b.response);
                b.response = body;
            }
            let sniffed = run(&b, &[], &rs);
            prop_assert_eq!(&sniffed, &declared, "{}", b.path);
        }
    }

    /// A stream cut anywhere reports no figure the whole stream does not report
    /// (unknown stays unknown), and a cut stream is never complete (short of the LF of a
    /// final CRLF, since a CR alone ends an SSE line): each generated stream
    /// ends with its dialect's end mark (`[DONE]`, `message_stop`, `messageStop` and
    /// `metadata`, `done: true`, a `finishReason` and the closing `]`).
    #[test]
    fn cut_streams_are_partial(g in gen(), at in any::<prop::sample::Index>()) {
        for b in [openai_chat_sse(&g), anthropic_sse(&g), bedrock_converse_stream(&g), ollama_ndjson(&g), gemini_array(&g)] {
            let cut = at.index(b.response.len());
            let mut ex = Exchange::new();
            ex.on_request_head("POST", &b.path, b.request_headers.iter().copied());
            ex.on_request_body(&b.request);
            ex.on_response_head(200, b.response_headers.iter().copied());
            ex.on_response_body(&b.response[..cut]);
            ex.on_response_end();
            let r = ex.finish();
            let e = &b.expect;
            // An estimate (flagged) may stand in for a missing input or output; a
            // provider figure never appears that the whole stream does not carry.
            let (input, output) = if r.estimated {
                (e.input.and(r.input_tokens), e.output.and(r.output_tokens))
            } else {
                (r.input_tokens, r.output_tokens)
            };
            for (got, want, what) in [
                (input, e.input, "input"),
                (output, e.output, "output"),
                (r.cached_input_tokens, e.cached, "cached"),
                (r.cache_creation_input_tokens, e.creation, "creation"),
                (r.reasoning_tokens, e.reasoning, "reasoning"),
            ] {
                prop_assert!(!(got.is_some() && want.is_none()), "{}: {what} known after a cut at {cut}", b.path);
            }
            // Complete when nothing is missing but, at most, the LF of a final CRLF (a CR
            // alone ends an SSE line).
            let rest = &b.response[cut..];
            if cut == b.response.len() {
                prop_assert!(r.complete, "{}: whole", b.path);
            } else if r.complete {
                prop_assert!(rest == b"\n" && b.response[cut - 1] == b'\r', "{}: cut at {}", b.path, cut);
            }
        }
    }
}
