//! The fixture corpus (`testdata/fixtures`): every case must give its expected record
//! unsplit, split at every byte boundary, and fed one byte at a time.

use llm_usage_core::{Exchange, Options, UsageRecord};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Case {
    name: String,
    method: String,
    path: String,
    request_headers: Vec<(String, String)>,
    status: u16,
    response_headers: Vec<(String, String)>,
    request: Option<Vec<u8>>,
    response: Vec<u8>,
    expect: Value,
}

fn fixtures_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/fixtures")
}

fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or_default().to_owned()))
                .collect()
        })
        .unwrap_or_default()
}

fn load() -> Vec<Case> {
    let mut dirs: Vec<_> = std::fs::read_dir(fixtures_dir())
        .expect("testdata/fixtures exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    assert!(
        dirs.len() >= 72,
        "fixture corpus incomplete: {}",
        dirs.len()
    );
    dirs.iter()
        .map(|d| {
            let case: Value =
                serde_json::from_slice(&std::fs::read(d.join("case.json")).unwrap()).unwrap();
            Case {
                name: d.file_name().unwrap().to_string_lossy().into_owned(),
                method: case["method"].as_str().unwrap().to_owned(),
                path: case["path"].as_str().unwrap().to_owned(),
                request_headers: headers(&case["request_headers"]),
                status: case["response_status"].as_u64().unwrap() as u16,
                response_headers: headers(&case["response_headers"]),
                request: std::fs::read(d.join("request.json")).ok(),
                response: std::fs::read(d.join("response.bin")).unwrap(),
                expect: case["expect"].clone(),
            }
        })
        .collect()
}

/// An exchange fed the case's request head, request body (whole) and response head: ready
/// for its response body.
fn up_to_response_body(case: &Case) -> Exchange {
    let mut ex = Exchange::new();
    exchange_head(case, &mut ex, &[]);
    ex
}

/// Feeds the request head and body (cut at `req_cuts`) and the response head.
fn exchange_head(case: &Case, ex: &mut Exchange, req_cuts: &[usize]) {
    let rh: Vec<(&str, &str)> = case
        .request_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.on_request_head(&case.method, &case.path, rh);
    if let Some(req) = &case.request {
        feed_cut(req, req_cuts, |c| ex.on_request_body(c));
    }
    ex.on_request_end();
    let sh: Vec<(&str, &str)> = case
        .response_headers
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    ex.on_response_head(case.status, sh);
}

/// Runs one exchange with the bodies cut at the given points.
fn run(case: &Case, req_cuts: &[usize], resp_cuts: &[usize]) -> UsageRecord {
    run_with(Options::new(), case, req_cuts, resp_cuts)
}

/// [`run`] with options.
fn run_with(options: Options, case: &Case, req_cuts: &[usize], resp_cuts: &[usize]) -> UsageRecord {
    run_ex(options, case, req_cuts, resp_cuts).finish()
}

/// The exchange after its response ended.
fn run_ex(options: Options, case: &Case, req_cuts: &[usize], resp_cuts: &[usize]) -> Exchange {
    let mut ex = Exchange::with_options(options);
    exchange_head(case, &mut ex, req_cuts);
    feed_cut(&case.response, resp_cuts, |c| ex.on_response_body(c));
    ex.on_response_end();
    ex
}

impl Case {
    /// The same exchange with only the first `len` bytes of its response.
    fn cut(&self, len: usize) -> Case {
        Case {
            response: self.response[..len].to_vec(),
            name: format!("{} cut at {len}", self.name),
            method: self.method.clone(),
            path: self.path.clone(),
            request_headers: self.request_headers.clone(),
            status: self.status,
            response_headers: self.response_headers.clone(),
            request: self.request.clone(),
            expect: self.expect.clone(),
        }
    }
}

fn feed_cut(body: &[u8], cuts: &[usize], mut f: impl FnMut(&[u8])) {
    let mut last = 0;
    for &c in cuts {
        f(&body[last..c]);
        last = c;
    }
    f(&body[last..]);
}

fn run_bytewise(case: &Case) -> UsageRecord {
    let req_cuts: Vec<usize> = (1..case.request.as_ref().map_or(0, |r| r.len())).collect();
    let resp_cuts: Vec<usize> = (1..case.response.len()).collect();
    run(case, &req_cuts, &resp_cuts)
}

fn check(case: &Case, r: &UsageRecord, how: &str) {
    let e = &case.expect;
    let num = |k: &str| e[k].as_u64();
    let ctx = format!("{} ({how})", case.name);
    assert_eq!(r.model.as_deref(), e["model"].as_str(), "{ctx}: model");
    assert_eq!(r.input_tokens, num("input_tokens"), "{ctx}: input_tokens");
    assert_eq!(
        r.output_tokens,
        num("output_tokens"),
        "{ctx}: output_tokens"
    );
    assert_eq!(r.total_tokens, num("total_tokens"), "{ctx}: total_tokens");
    assert_eq!(
        r.cached_input_tokens,
        num("cached_input_tokens"),
        "{ctx}: cached_input_tokens"
    );
    assert_eq!(
        r.cache_creation_input_tokens,
        num("cache_creation_input_tokens"),
        "{ctx}: cache_creation"
    );
    assert_eq!(
        r.reasoning_tokens,
        num("reasoning_tokens"),
        "{ctx}: reasoning_tokens"
    );
    assert_eq!(r.stream, e["stream"].as_bool(), "{ctx}: stream");
    // The figures of issue 16: null unless the fixture states them.
    for (k, v) in [
        ("input_audio_tokens", r.input_audio_tokens),
        ("input_image_tokens", r.input_image_tokens),
        ("output_audio_tokens", r.output_audio_tokens),
        ("output_image_tokens", r.output_image_tokens),
        (
            "cache_creation_5m_input_tokens",
            r.cache_creation_5m_input_tokens,
        ),
        (
            "cache_creation_1h_input_tokens",
            r.cache_creation_1h_input_tokens,
        ),
        ("web_search_requests", r.web_search_requests),
        ("web_fetch_requests", r.web_fetch_requests),
    ] {
        assert_eq!(v, num(k), "{ctx}: {k}");
    }
    assert_eq!(
        r.service_tier.as_deref(),
        e["service_tier"].as_str(),
        "{ctx}: service_tier"
    );
    assert_eq!(
        r.operation.map(|o| o.as_str()),
        e["operation"].as_str(),
        "{ctx}: operation"
    );
    assert!(r.provider.is_some(), "{ctx}: provider");
    if let Some(p) = e["provider"].as_str() {
        assert_eq!(r.provider.map(|p| p.as_str()), Some(p), "{ctx}: provider");
    }
    // Figures are the provider's unless the fixture says they are estimated.
    assert_eq!(
        r.estimated,
        e["estimated"].as_bool().unwrap_or(false),
        "{ctx}: estimated"
    );
}

/// With OpenAI's encodings as the estimator (what the CLI and the tower layer use), every
/// fixture gives its record with `expect_bpe` over `expect`, split at every byte of either
/// body, and fed a byte at a time: the tokenizer's counts do not depend on the chunking,
/// and records with the provider's figures do not change.
#[cfg(feature = "bpe")]
#[test]
fn every_fixture_with_the_bpe_estimator_split_at_every_byte() {
    let bpe = || Options::new().token_counter(llm_usage_core::Bpe::boxed);
    let mut with_override = 0;
    let mut estimates = 0;
    for mut case in load() {
        let raw: Value = serde_json::from_slice(
            &std::fs::read(
                Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("../testdata/fixtures")
                    .join(case.name.split(' ').next().unwrap())
                    .join("case.json"),
            )
            .unwrap(),
        )
        .unwrap();
        if let Some(o) = raw["expect_bpe"].as_object() {
            with_override += 1;
            for (k, v) in o {
                case.expect[k] = v.clone();
            }
        }
        // The record, and the estimates made whether or not the record needs them.
        let go = |req: &[usize], resp: &[usize]| {
            let mut ex = run_ex(bpe(), &case, req, resp);
            (ex.estimated_tokens(), ex.finish())
        };
        let whole = go(&[], &[]);
        check(&case, &whole.1, "bpe, unsplit");
        estimates += u64::from(whole.0 .1.is_some());
        for at in 0..=case.response.len() {
            assert_eq!(
                go(&[], &[at]),
                whole,
                "{}: bpe, response split at {at}",
                case.name
            );
        }
        let req_len = case.request.as_ref().map_or(0, |r| r.len());
        if req_len <= 64 * 1024 {
            for at in 0..=req_len {
                assert_eq!(
                    go(&[at], &[]),
                    whole,
                    "{}: bpe, request split at {at}",
                    case.name
                );
            }
        }
        let req_cuts: Vec<usize> = (1..req_len.min(64 * 1024)).collect();
        let resp_cuts: Vec<usize> = (1..case.response.len()).collect();
        assert_eq!(
            go(&req_cuts, &resp_cuts),
            whole,
            "{}: bpe, bytewise",
            case.name
        );
    }
    assert!(
        estimates >= 30,
        "{estimates} fixtures with an output estimate"
    );
    assert!(with_override >= 1);
}

/// Moonshot's `message_start` counts the cache reads inside `input_tokens`: a stream cut
/// before `message_delta` keeps that input, with the reads as its cached part, never the
/// two added.
#[test]
fn moonshot_stream_cut_before_message_delta_counts_the_cache_once() {
    let case = load()
        .into_iter()
        .find(|c| c.name.starts_with("66-moonshot"))
        .unwrap();
    let at = find(&case.response, b"event: message_delta").unwrap();
    let r = run(&case.cut(at), &[], &[]);
    assert_eq!(r.input_tokens, Some(1536));
    assert_eq!(r.cached_input_tokens, Some(1024));
    assert!(!r.complete);
    assert!(r.estimated, "the output is estimated from the text");
}

#[test]
fn every_fixture_unsplit() {
    let cases = load();
    let mut failures = Vec::new();
    for case in &cases {
        let r = run(case, &[], &[]);
        if let Err(e) = std::panic::catch_unwind(|| check(case, &r, "unsplit")) {
            failures.push(e.downcast_ref::<String>().cloned().unwrap_or_default());
        }
    }
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn every_fixture_split_at_every_byte_boundary() {
    for case in load() {
        let whole = run(&case, &[], &[]);
        check(&case, &whole, "unsplit");
        let resp_len = case.response.len();
        for at in 0..=resp_len {
            let r = run(&case, &[], &[at]);
            assert_eq!(r, whole, "{}: response split at {at}", case.name);
        }
        let req_len = case.request.as_ref().map_or(0, |r| r.len());
        let req_points: Vec<usize> = if req_len <= 64 * 1024 {
            (0..=req_len).collect()
        } else {
            // A 1 MiB request: every byte around the late `model` key, and 1024 points
            // spread over the rest (every point would be a terabyte of scanning).
            let req = case.request.as_ref().unwrap();
            let key = find(req, b"\"model\"").expect("large request has a model key");
            let mut pts: Vec<usize> = (key.saturating_sub(512)..(key + 512).min(req_len)).collect();
            pts.extend((0..1024).map(|i| i * req_len / 1024));
            pts
        };
        for at in req_points {
            let r = run(&case, &[at], &[]);
            assert_eq!(r, whole, "{}: request split at {at}", case.name);
        }
    }
}

#[test]
fn every_fixture_one_byte_at_a_time() {
    for case in load() {
        let whole = run(&case, &[], &[]);
        assert_eq!(run_bytewise(&case), whole, "{}: byte at a time", case.name);
    }
}

#[test]
fn complete_flag() {
    for case in load() {
        let r = run(&case, &[], &[]);
        // Complete unless the fixture says otherwise (`expect.complete`) or is a truncated one.
        let want = case.expect["complete"]
            .as_bool()
            .unwrap_or(!case.name.contains("truncated"));
        assert_eq!(r.complete, want, "{}: complete", case.name);
        // The same exchange without the end of the response is partial.
        let mut ex = up_to_response_body(&case);
        ex.on_response_body(&case.response);
        assert!(!ex.finish().complete, "{}: no end seen", case.name);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// The event that carries a streaming dialect's end mark, as text found in it (for
/// event-stream bodies, in the frame's payload or its base64), and the framing.
/// The first key the fixture's name contains is used.
const END_MARKS: &[(&str, &[&str])] = &[
    // The metrics are inside the last frame's base64 payload: "" stands for the last event.
    ("bedrock-invoke-stream", &[""]),
    ("responses-stream", &["\"response.completed\""]),
    (
        "images-generations-stream",
        &["\"image_generation.completed\""],
    ),
    ("openai", &["[DONE]"]),
    ("azure", &["[DONE]"]),
    ("mistral", &["[DONE]"]),
    ("vllm", &["[DONE]"]),
    ("deepseek", &["[DONE]"]),
    ("openai-compat", &["[DONE]"]),
    ("dashscope-compatible", &["[DONE]"]),
    ("anthropic", &["\"message_stop\""]),
    ("gemini-stream-sse", &["\"finishReason\""]),
    ("gemini-stream-image", &["\"finishReason\""]),
    ("gemini-3-stream", &["\"finishReason\""]),
    ("xai-stream", &["[DONE]"]),
    ("vertex-stream-sse", &["\"finishReason\""]),
    ("dashscope-generation-sse", &["\"finish_reason\":\"stop\""]),
    ("ollama", &["\"done\":true", "\"done\": true"]),
    ("cohere-chat-stream", &["\"message-end\""]),
    ("bedrock-converse-stream", &["stopReason"]),
];

/// Where the last SSE event, NDJSON line or event-stream frame holding `mark` starts.
fn start_of_event_with(body: &[u8], mark: &[u8], framing: &str) -> Option<usize> {
    let at = if mark.is_empty() {
        body.len().checked_sub(1)?
    } else {
        body.windows(mark.len()).rposition(|w| w == mark)?
    };
    match framing {
        "event-stream" => {
            let mut start = 0;
            while start < body.len() {
                let len = u32::from_be_bytes(body[start..start + 4].try_into().ok()?) as usize;
                if at < start + len {
                    return Some(start);
                }
                start += len;
            }
            None
        }
        "ndjson" => Some(
            body[..at]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1),
        ),
        _ => {
            // After the blank line that ends the previous event (LF or CRLF).
            let before = &body[..at];
            let lf = before.windows(2).rposition(|w| w == b"\n\n").map(|p| p + 2);
            let crlf = before
                .windows(4)
                .rposition(|w| w == b"\r\n\r\n")
                .map(|p| p + 4);
            Some(lf.max(crlf).unwrap_or(0))
        }
    }
}

/// `complete` means the provider's end was seen: each streaming fixture cut just before
/// the event that carries its dialect's end mark (a clean event boundary) is partial,
/// whatever the chunking of what is left, and keeps the figures that came before.
#[test]
fn streams_cut_before_their_end_mark_are_partial() {
    let mut checked = 0;
    for case in load() {
        let streamed = case.expect["stream"].as_bool() == Some(true) && case.status < 400;
        let encoded = case
            .response_headers
            .iter()
            .any(|(k, _)| k.eq_ignore_ascii_case("content-encoding"));
        if !streamed
            || encoded
            || case.name.contains("truncated")
            || case.name.contains("error-event")
        {
            continue;
        }
        let ct = case
            .response_headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.as_str())
            .unwrap_or("");
        let framing = if ct.contains("eventstream") {
            "event-stream"
        } else if ct.contains("ndjson") {
            "ndjson"
        } else if ct.contains("event-stream") {
            "sse"
        } else {
            continue; // a JSON array (Gemini) or plain JSON: its closing bracket ends it
        };
        let Some((_, marks)) = END_MARKS.iter().find(|(k, _)| case.name.contains(k)) else {
            panic!(
                "{}: no end mark known for this streaming fixture",
                case.name
            );
        };
        let cut = marks
            .iter()
            .find_map(|m| start_of_event_with(&case.response, m.as_bytes(), framing))
            .unwrap_or_else(|| panic!("{}: end mark not found", case.name));
        let short = case.cut(cut);
        let whole = run(&short, &[], &[]);
        assert!(
            !whole.complete,
            "{}: complete without its end mark",
            short.name
        );
        for at in 0..=cut {
            assert_eq!(
                run(&short, &[], &[at]),
                whole,
                "{}: split at {at}",
                short.name
            );
        }
        // Unknown stays unknown: nothing the whole stream does not report.
        let full = run(&case, &[], &[]);
        for (got, all) in [
            (whole.input_tokens, full.input_tokens),
            (whole.output_tokens, full.output_tokens),
            (whole.total_tokens, full.total_tokens),
        ] {
            assert!(got.is_none() || all.is_some(), "{}", short.name);
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} streaming fixtures checked");
}

/// Time to first token is taken at the first *content* event: the first complete event
/// that carries generated text, per the dialect's table. For each streaming dialect, the
/// events before it (Anthropic's `message_start`, an OpenAI role-only chunk, Cohere's
/// `message-start` and `content-start`, Bedrock's `messageStart`) are not content, and it
/// is the event holding the first text (`mark`), fed byte by byte.
#[test]
fn the_first_content_event_is_the_first_with_generated_text() {
    // (fixture, text in the first content event, complete events up to and including it)
    let cases: &[(&str, &str, u64)] = &[
        ("02-openai-chat-stream-usage", "\"content\":\"Bright", 2),
        (
            "05-openai-chat-tool-calls-stream",
            "\"arguments\":\"{\\\"",
            2,
        ),
        (
            "09-openai-responses-stream",
            "response.output_text.delta",
            0,
        ),
        ("12-anthropic-messages-stream", "text_delta", 0),
        ("17-gemini-stream-sse-thinking", "Unpacking", 1),
        ("18-gemini-stream-json-array", "six hours", 1),
        ("24-bedrock-converse-stream", "", 0),
        ("26-bedrock-invoke-stream-anthropic", "", 0),
        ("28-dashscope-generation-sse", "杭州是", 1),
        ("31-ollama-chat-stream-default", "\"The\"", 1),
        ("33-cohere-chat-stream", "content-delta", 3),
        ("35-mistral-chat-stream", "", 0),
        (
            "57-mistral-magistral-thinking-parts-stream",
            "Check divisibility",
            1,
        ),
    ];
    let all = load();
    for &(name, mark, events_at) in cases {
        let case = all.iter().find(|c| c.name == name).expect(name);
        let mut ex = up_to_response_body(case);
        let mut first = None;
        for (i, b) in case.response.iter().enumerate() {
            ex.on_response_body(std::slice::from_ref(b));
            if ex.response_content_events() == 1 {
                first = Some((i + 1, ex.response_events()));
                break;
            }
            assert_eq!(ex.response_content_events(), 0);
        }
        let (at, events) = first.unwrap_or_else(|| panic!("{name}: no content event"));
        if !mark.is_empty() {
            let pos = case
                .response
                .windows(mark.len())
                .position(|w| w == mark.as_bytes());
            assert!(
                pos.is_some_and(|p| p < at),
                "{name}: content before {mark:?}"
            );
        }
        if events_at > 0 {
            assert_eq!(
                events, events_at,
                "{name}: complete events at the first content event"
            );
        }
        // Events before it carried no text: at least one event came first where the
        // dialect opens with an envelope event.
        if name.contains("anthropic") || name.contains("bedrock") || name.contains("responses") {
            assert!(
                events >= 2,
                "{name}: the opening event is not content ({events})"
            );
        }
    }
}

/// Streams cut just before the event that carries their final usage (Anthropic's
/// `message_delta`, the OpenAI `include_usage` chunk, Responses' `response.completed`,
/// Cohere's `message-end`, Ollama's `done` line, Bedrock's `metadata`): the record is
/// partial, its output is the provider's only if an earlier event carried it, and
/// otherwise unknown or an estimate from the text, flagged; never Anthropic's provisional
/// `message_start` count. The same at every split of what is left.
#[test]
fn streams_cut_before_their_usage_never_report_a_provisional_output() {
    let marks: &[(&str, &str, &str)] = &[
        (
            "12-anthropic-messages-stream",
            "event: message_delta",
            "sse",
        ),
        (
            "14-anthropic-stream-tool-use-cache",
            "event: message_delta",
            "sse",
        ),
        (
            "43-anthropic-stream-unicode-emoji",
            "event: message_delta",
            "sse",
        ),
        (
            "02-openai-chat-stream-usage",
            "\"choices\":[],\"usage\"",
            "sse",
        ),
        ("09-openai-responses-stream", "response.completed", "sse"),
        ("33-cohere-chat-stream", "event: message-end", "sse"),
        ("31-ollama-chat-stream-default", "\"done\":true", "ndjson"),
        ("24-bedrock-converse-stream", "metrics", "event-stream"),
    ];
    let all = load();
    for &(name, mark, framing) in marks {
        let case = all.iter().find(|c| c.name == name).expect(name);
        let cut = start_of_event_with(&case.response, mark.as_bytes(), framing)
            .unwrap_or_else(|| panic!("{name}: {mark} not found"));
        let short = case.cut(cut);
        let r = run(&short, &[], &[]);
        assert!(!r.complete, "{}", short.name);
        if r.output_tokens.is_some() {
            assert!(
                r.estimated,
                "{}: a provider output before its usage event",
                short.name
            );
        }
        if name.contains("anthropic") {
            // message_start said 1 (or so): never reported as the output.
            assert!(
                r.estimated && r.output_tokens.unwrap_or(0) > 1,
                "{}: {r:?}",
                short.name
            );
        }
        for at in 0..=cut {
            assert_eq!(run(&short, &[], &[at]), r, "{}: split at {at}", short.name);
        }
    }
}

/// A compressed SSE stream is read as it arrives, not at its end: the events a server
/// flushed are counted once their compressed bytes are in, in every coding, and they are
/// the events of the same stream uncompressed (fixture 48 holds the gzip one; 51 and 53
/// are br and zstd, flushed after every event).
#[test]
fn compressed_streams_are_read_as_they_arrive() {
    let cases = load();
    let mut seen = Vec::new();
    for name in [
        "48-anthropic-gzip-sse",
        "51-anthropic-br-sse",
        "53-anthropic-zstd-sse",
    ] {
        let case = cases.iter().find(|c| c.name == name).unwrap();
        let mut ex = up_to_response_body(case);
        let n = case.response.len();
        let mut at_half = 0;
        for (i, b) in case.response.iter().enumerate() {
            ex.on_response_body(std::slice::from_ref(b));
            if i + 1 == n / 2 {
                at_half = ex.response_events();
            }
        }
        let all = ex.response_events();
        ex.on_response_end();
        assert!(ex.finish().complete, "{name}");
        println!("{name}: {at_half} of {all} events after half the compressed bytes");
        seen.push(all);
        if !name.contains("gzip") {
            // Flushed per event: about half the events are in after half the bytes.
            assert!(
                at_half >= all / 4 && at_half < all,
                "{name}: {at_half} of {all}"
            );
        }
    }
    assert!(seen.iter().all(|&n| n == seen[0] && n >= 5), "{seen:?}");
}

/// Generated text in typed parts (Mistral's reasoning models: `content` as an array of
/// `thinking` parts holding `text` parts, then `text` parts) is counted whole: every
/// part's text, and nothing else of the stream.
#[test]
fn text_in_typed_content_parts_is_counted() {
    let case = load()
        .into_iter()
        .find(|c| c.name == "57-mistral-magistral-thinking-parts-stream")
        .unwrap();
    let parts = [
        "Check divisibility by small primes.",
        " 91 / 7 = 13, so 91 = 7 \u{d7} 13.",
        "No: 91 is not prime.",
        " It factors as 7 \u{d7} 13.",
    ];
    for at in 0..=case.response.len() {
        let mut ex = up_to_response_body(&case);
        feed_cut(&case.response, &[at], |c| ex.on_response_body(c));
        ex.on_response_end();
        let (_, text) = ex.text();
        assert_eq!(
            (text.bytes, text.strings),
            // Four parts and the last chunk's empty `content` string.
            (parts.iter().map(|p| p.len() as u64).sum(), 5),
            "split at {at}"
        );
        assert_eq!(ex.response_content_events(), 4);
    }
}
