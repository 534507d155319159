//! Exchange behaviour beyond the fixture corpus: detection fallbacks, limits, encodings.

use llm_usage_core::{Exchange, Options, Provider};

const OPENAI_SSE: &[u8] = b"data: {\"model\":\"gpt-x\",\"choices\":[{\"delta\":{\"content\":\"hi\"}}],\"usage\":null}\n\n\
data: {\"model\":\"gpt-x\",\"choices\":[],\"usage\":{\"prompt_tokens\":4,\"completion_tokens\":2,\"total_tokens\":6}}\n\n\
data: [DONE]\n\n";

fn openai(headers: &[(&str, &str)], body: &[u8]) -> llm_usage_core::UsageRecord {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", "/v1/chat/completions", [("host", "api.openai.com")]);
    ex.on_request_body(br#"{"model":"gpt-x","stream":true}"#);
    ex.on_response_head(200, headers.iter().copied());
    ex.on_response_body(body);
    ex.on_response_end();
    ex.finish()
}

#[test]
fn framing_is_sniffed_without_content_type() {
    let r = openai(&[], OPENAI_SSE);
    assert_eq!(r.total_tokens, Some(6));
    assert!(r.complete);
    let r = openai(
        &[],
        b"\n\n{\"model\":\"gpt-x\",\"usage\":{\"prompt_tokens\":1,\"completion_tokens\":1}}",
    );
    assert_eq!(
        r.total_tokens,
        Some(2),
        "total = input + output without a provider total"
    );
}

/// A chain of codings, an unknown one, or a body that is not in its declared coding (a
/// plain stream labelled br or zstd): unknown tokens, never garbage.
#[test]
fn undecodable_encoding_gives_unknown_not_garbage() {
    for coding in [
        "br", "zstd", "gzip", "gzip, br", "br, zstd", "compress", "x-br",
    ] {
        let r = openai(
            &[
                ("content-type", "text/event-stream"),
                ("content-encoding", coding),
            ],
            OPENAI_SSE,
        );
        assert_eq!(r.input_tokens, None, "{coding}");
        assert_eq!(
            r.model.as_deref(),
            Some("gpt-x"),
            "{coding}: the request model still counts"
        );
        assert!(!r.complete, "{coding}");
    }
}

#[test]
fn error_status_ignores_usage_looking_bodies() {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", "/v1/chat/completions", [("a", "b")]);
    ex.on_request_body(br#"{"model":"gpt-x","stream":true}"#);
    ex.on_response_head(503, [("content-type", "application/json")]);
    ex.on_response_body(br#"{"model":"other","usage":{"prompt_tokens":5}}"#);
    ex.on_response_end();
    let r = ex.finish();
    assert_eq!(
        (r.model.as_deref(), r.input_tokens, r.stream),
        (Some("gpt-x"), None, Some(true))
    );
    assert!(r.complete);
}

#[test]
fn inspection_limit_marks_the_record_incomplete() {
    let mut ex = Exchange::with_options(Options::new().max_body_bytes(100));
    ex.on_request_head("POST", "/v1/chat/completions", [("a", "b")]);
    ex.on_response_head(200, [("content-type", "text/event-stream")]);
    ex.on_response_body(OPENAI_SSE);
    ex.on_response_end();
    let r = ex.finish();
    assert_eq!(r.input_tokens, None, "the usage chunk is past the limit");
    assert!(!r.complete);
}

#[test]
fn provider_override_keeps_the_api_from_the_path() {
    let mut ex = Exchange::with_options(Options::new().provider(Provider::Bedrock));
    ex.on_request_head("POST", "/proxy/model/my-model/converse", [("a", "b")]);
    ex.on_response_head(200, [("content-type", "application/json")]);
    ex.on_response_body(br#"{"usage":{"inputTokens":3,"outputTokens":4,"totalTokens":7}}"#);
    ex.on_response_end();
    let r = ex.finish();
    assert_eq!(r.provider, Some(Provider::Bedrock));
    assert_eq!(ex.dialect(), "bedrock-converse");
    assert_eq!(
        (r.model.as_deref(), r.total_tokens),
        (Some("my-model"), Some(7))
    );
}

#[test]
fn provider_from_host_for_openai_compatible_servers() {
    for (host, p) in [
        ("api.mistral.ai", Provider::Mistral),
        ("api.deepseek.com", Provider::DeepSeek),
        ("dashscope.aliyuncs.com", Provider::DashScope),
        ("my-res.openai.azure.com", Provider::AzureOpenAi),
        ("vllm.internal:8000", Provider::OpenAi),
    ] {
        let mut ex = Exchange::new();
        ex.on_request_head("POST", "/v1/chat/completions", [(":authority", host)]);
        assert_eq!(ex.provider(), Some(p), "{host}");
    }
}

#[test]
fn values_are_known_as_soon_as_their_event_completes() {
    let mut ex = Exchange::new();
    ex.on_request_head("POST", "/v1/chat/completions", [("a", "b")]);
    ex.on_request_body(br#"{"messages":[],"model":"gpt-x"}"#);
    assert_eq!(ex.request_model(), Some("gpt-x"));
    ex.on_response_head(200, [("content-type", "text/event-stream")]);
    let (first, rest) = OPENAI_SSE.split_at(OPENAI_SSE.len() - b"data: [DONE]\n\n".len());
    ex.on_response_body(first);
    assert_eq!(ex.response_events(), 2);
    let partial = ex.record();
    assert_eq!(partial.total_tokens, Some(6));
    assert!(!partial.complete, "no end of stream yet");
    ex.on_response_body(rest);
    ex.on_response_end();
    assert!(ex.finish().complete);
}

#[test]
fn gzip_request_bodies_are_decoded() {
    let body = br#"{"model":"gpt-zip","stream":false}"#;
    let mut gz = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3];
    gz.extend(miniz_oxide::deflate::compress_to_vec(body, 6));
    gz.extend_from_slice(&crc32fast::hash(body).to_le_bytes());
    gz.extend_from_slice(&(body.len() as u32).to_le_bytes());
    let mut ex = Exchange::new();
    ex.on_request_head(
        "POST",
        "/v1/chat/completions",
        [("Content-Encoding", "gzip")],
    );
    for c in gz.chunks(3) {
        ex.on_request_body(c);
    }
    assert_eq!(ex.request_model(), Some("gpt-zip"));
}

#[test]
fn nothing_seen_gives_an_empty_partial_record() {
    let mut ex = Exchange::new();
    let r = ex.finish();
    assert_eq!(r.provider, None);
    assert_eq!(r.model, None);
    assert_eq!(r.stream, None);
    assert!(!r.complete);
}

#[test]
fn binary_garbage_never_panics() {
    let mut seed = 0x2545F4914F6CDD1Du64;
    let mut junk = vec![0u8; 64 * 1024];
    for b in junk.iter_mut() {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        *b = seed as u8;
    }
    for path in [
        "/v1/chat/completions",
        "/v1/messages",
        "/model/x/converse-stream",
        "/model/x/invoke-with-response-stream",
        "/api/chat",
        "/v1beta/models/g:streamGenerateContent",
    ] {
        for ct in [
            "text/event-stream",
            "application/json",
            "application/vnd.amazon.eventstream",
            "application/x-ndjson",
            "",
        ] {
            for enc in ["", "gzip", "deflate"] {
                let mut ex = Exchange::new();
                ex.on_request_head("POST", path, [("a", "b")]);
                ex.on_request_body(&junk[..1000]);
                ex.on_response_head(200, [("content-type", ct), ("content-encoding", enc)]);
                for c in junk.chunks(777) {
                    ex.on_response_body(c);
                }
                ex.on_response_end();
                let r = ex.finish();
                assert_eq!(r.input_tokens, None, "{path} {ct} {enc}");
            }
        }
    }
}

#[test]
fn unrecognised_requests_report_a_provider_only_when_they_prove_to_be_llm_traffic() {
    let mut ex = Exchange::new();
    ex.on_request_head("GET", "/healthz", [("host", "svc.local")]);
    ex.on_response_head(200, [("content-type", "application/json")]);
    ex.on_response_body(br#"{"status":"ok"}"#);
    ex.on_response_end();
    assert_eq!(ex.finish().provider, None);

    let mut ex = Exchange::new();
    ex.on_request_head("POST", "/generate", [("host", "vllm.local")]);
    ex.on_request_body(br#"{"model":"llama"}"#);
    assert_eq!(
        ex.provider(),
        Some(Provider::OpenAi),
        "an OpenAI-compatible body proves it"
    );
}

/// Streams repeat the model in every event, and the core skips staging a model equal to
/// the committed one: the last model reported still wins, event by event and within one
/// event (duplicate keys, last one read wins), whichever order the values come in and
/// however the stream is split.
#[test]
fn the_last_reported_model_wins_when_events_repeat_it() {
    let events: &[(&str, &str)] = &[
        (r#"{"model":"a","choices":[]}"#, "a"),
        (r#"{"model":"a","choices":[]}"#, "a"),
        (r#"{"model":"b","choices":[],"model":"a"}"#, "a"),
        (r#"{"model":"a","choices":[],"model":"b"}"#, "b"),
        (r#"{"model":"b","choices":[]}"#, "b"),
        (r#"{"model":"a","choices":[],"usage":null}"#, "a"),
        (r#"{"model":"","choices":[]}"#, "a"),
        (r#"{"model":"a","choices":[],"model":"a\u0062"}"#, "ab"),
        (r#"{"model":"a","choices":[],"model":"c"}"#, "c"),
    ];
    let mut stream = Vec::new();
    for (data, _) in events {
        stream.extend_from_slice(format!("data: {data}\n\n").as_bytes());
    }
    for chunk in [usize::MAX, 1, 5, 29] {
        let mut ex = Exchange::new();
        ex.on_request_head("POST", "/v1/chat/completions", [("host", "api.openai.com")]);
        ex.on_request_body(br#"{"model":"r","stream":true}"#);
        ex.on_response_head(200, [("content-type", "text/event-stream")]);
        let mut fed = 0;
        let mut ends = Vec::new();
        let mut at = 0;
        for (data, model) in events {
            at += format!("data: {data}\n\n").len();
            ends.push((at, *model));
        }
        let mut next = 0;
        for c in stream.chunks(chunk.min(stream.len())) {
            ex.on_response_body(c);
            fed += c.len();
            while next < ends.len() && ends[next].0 <= fed {
                next += 1;
            }
            if next > 0 {
                assert_eq!(
                    ex.model(),
                    Some(ends[next - 1].1),
                    "after {next} events, chunks of {chunk}"
                );
            }
        }
        ex.on_response_end();
        assert_eq!(ex.finish().response_model.as_deref(), Some("c"));
    }
}

/// As the model: a service tier equal to the committed one is not staged again (OpenAI
/// chunks repeat it), and a later, different one, in the same event or the next, wins.
#[test]
fn the_last_reported_service_tier_wins_when_events_repeat_it() {
    let events: &[(&str, &str)] = &[
        (r#"{"service_tier":"default","choices":[]}"#, "default"),
        (r#"{"service_tier":"default","choices":[]}"#, "default"),
        (
            r#"{"service_tier":"flex","choices":[],"service_tier":"default"}"#,
            "default",
        ),
        (
            r#"{"service_tier":"default","choices":[],"service_tier":"flex"}"#,
            "flex",
        ),
        (r#"{"service_tier":"flex","choices":[]}"#, "flex"),
        (r#"{"service_tier":"","choices":[]}"#, "flex"),
        (
            r#"{"service_tier":"flex","service_tier":"fle\u0078"}"#,
            "flex",
        ),
        (
            r#"{"service_tier":"flex","choices":[],"service_tier":"scale"}"#,
            "scale",
        ),
    ];
    let mut stream = Vec::new();
    let mut ends = Vec::new();
    for (data, tier) in events {
        stream.extend_from_slice(format!("data: {data}\n\n").as_bytes());
        ends.push((stream.len(), *tier));
    }
    for chunk in [usize::MAX, 1, 5, 29] {
        let mut ex = Exchange::new();
        ex.on_request_head("POST", "/v1/chat/completions", [("host", "api.openai.com")]);
        ex.on_request_body(br#"{"model":"r","stream":true}"#);
        ex.on_response_head(200, [("content-type", "text/event-stream")]);
        let (mut fed, mut next) = (0, 0);
        for c in stream.chunks(chunk.min(stream.len())) {
            ex.on_response_body(c);
            fed += c.len();
            while next < ends.len() && ends[next].0 <= fed {
                next += 1;
            }
            if next > 0 {
                assert_eq!(
                    ex.record().service_tier.as_deref(),
                    Some(ends[next - 1].1),
                    "after {next} events, chunks of {chunk}"
                );
            }
        }
    }
}

/// Heads are read in one pass: of a repeated header the first occurrence counts (names in
/// any case), `:authority` wins over `host` wherever it comes, and a value is read as its
/// first 257 bytes (so a count after 300 spaces is no count, one before them is).
#[test]
fn heads_read_the_first_occurrence_of_each_header() {
    let provider = |headers: &[(&str, &str)]| {
        let mut ex = Exchange::new();
        ex.on_request_head("POST", "/v1/chat/completions", headers.iter().copied());
        ex.provider()
    };
    assert_eq!(
        provider(&[("Host", "api.deepseek.com"), ("host", "api.mistral.ai")]),
        Some(Provider::DeepSeek)
    );
    assert_eq!(
        provider(&[
            ("host", "api.deepseek.com"),
            (":authority", "api.mistral.ai")
        ]),
        Some(Provider::Mistral)
    );
    assert_eq!(
        provider(&[
            (":authority", "api.mistral.ai"),
            (":authority", "api.deepseek.com"),
            ("host", "api.deepseek.com")
        ]),
        Some(Provider::Mistral)
    );
    let input = |count: &[(&str, &str)], encodings: &[(&str, &str)]| {
        let mut ex = Exchange::with_options(Options::new().provider(Provider::Bedrock));
        ex.on_request_head("POST", "/model/anthropic.claude-x/invoke", [("host", "h")]);
        let mut head = vec![("content-type", "application/json")];
        head.extend_from_slice(count);
        head.extend_from_slice(encodings);
        ex.on_response_head(200, head);
        ex.on_response_body(br#"{"type":"message","content":[]}"#);
        ex.on_response_end();
        ex.finish()
    };
    let name = "X-Amzn-Bedrock-Input-Token-Count";
    assert_eq!(
        input(&[(name, "12"), (name, "99")], &[]).input_tokens,
        Some(12)
    );
    assert_eq!(input(&[(name, "x"), (name, "99")], &[]).input_tokens, None);
    let spaces = " ".repeat(300);
    let late = format!("{spaces}5");
    let early = format!("5{spaces}");
    assert_eq!(input(&[(name, &late)], &[]).input_tokens, None);
    assert_eq!(input(&[(name, &early)], &[]).input_tokens, Some(5));
    // The first `content-encoding` says the body is plain: it is read.
    let plain = input(
        &[(name, "7")],
        &[
            ("content-encoding", "identity"),
            ("Content-Encoding", "gzip"),
        ],
    );
    assert_eq!(plain.input_tokens, Some(7));
    assert!(plain.complete);
}

/// A stream rule read from a request header (DashScope's `X-DashScope-SSE: enable`):
/// the name in any case, the value compared without case and surrounding spaces, the
/// first occurrence counting. The same header also picks the DashScope dialect on a path
/// that does not.
#[test]
fn a_stream_header_decides_the_stream_flag_from_its_first_occurrence() {
    let path = "/api/v1/services/aigc/text-generation/generation";
    let run = |headers: &[(&str, &str)]| {
        let mut ex = Exchange::new();
        ex.on_request_head("POST", path, headers.iter().copied());
        ex.on_response_head(200, [("content-type", "application/json")]);
        ex.on_response_body(
            br#"{"output":{"text":"hi","finish_reason":"stop"},"usage":{"input_tokens":3,"output_tokens":1}}"#,
        );
        ex.on_response_end();
        (ex.provider(), ex.finish())
    };
    let (provider, r) = run(&[("X-DashScope-SSE", " Enable ")]);
    assert_eq!(provider, Some(Provider::DashScope));
    assert_eq!(r.stream, Some(true));
    assert_eq!(r.input_tokens, Some(3));
    assert_eq!(run(&[("x-dashscope-sse", "disable")]).1.stream, Some(false));
    assert_eq!(
        run(&[
            ("x-dashscope-sse", "enable"),
            ("X-DashScope-SSE", "disable")
        ])
        .1
        .stream,
        Some(true)
    );
    assert_eq!(
        run(&[
            ("x-dashscope-sse", "disable"),
            ("X-DashScope-SSE", "enable")
        ])
        .1
        .stream,
        Some(false)
    );
    // On a path that names no provider, the header alone picks DashScope.
    let mut ex = Exchange::new();
    ex.on_request_head(
        "POST",
        "/v1/some/path",
        [("host", "gateway.internal"), ("x-dashscope-sse", "enable")],
    );
    assert_eq!(ex.provider(), Some(Provider::DashScope));
}
