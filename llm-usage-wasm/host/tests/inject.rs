//! `stream_options.include_usage` injection through the real release `.wasm` in the host:
//! the bytes the upstream received and the bytes the client received, their HTTP/1.1
//! framing after `content-length` handling, at every chunking of both bodies, with and
//! without the client asking; skips and their counter; fail-open on host failures.

mod common;

use std::path::Path;

use common::{fixtures, host, sleep_vm};
use llm_usage_wasm_host::replay::{check_expect, load_case, Exchange};
use llm_usage_wasm_host::{Action, HostOptions, Http1Framing, StatsConfig, StreamId, Vm};

const ON: &str = r#"{"inject_include_usage": true}"#;

/// One injection fixture: the exchange and what each side must receive.
struct Case {
    ex: Exchange,
    upstream_request: Vec<u8>,
    client_response: Vec<u8>,
    injected: bool,
}

fn case(name: &str) -> Case {
    let dir = fixtures().join(name);
    let ex = load_case(&dir, "api.openai.com").unwrap();
    let read = |f: &str| std::fs::read(Path::new(&dir).join(f)).ok();
    let upstream_request = read("upstream-request.json");
    Case {
        injected: upstream_request.is_some(),
        upstream_request: upstream_request.unwrap_or_else(|| ex.request_body.clone()),
        client_response: read("client-response.bin").unwrap_or_else(|| ex.response_body.clone()),
        ex,
    }
}

/// How to cut the bodies and end the streams.
#[derive(Clone, Copy, Default)]
struct Cuts<'a> {
    request: &'a [usize],
    response: &'a [usize],
    /// End the request with trailers instead of an end-of-stream body chunk.
    request_trailers: bool,
    /// End the response with trailers.
    response_trailers: bool,
}

fn pieces<'b>(body: &'b [u8], cuts: &[usize]) -> Vec<&'b [u8]> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = c.min(body.len());
        if c > at {
            out.push(&body[at..c]);
            at = c;
        }
    }
    out.push(&body[at..]);
    out
}

/// Runs one exchange the way Envoy delivers it, the client sending `content-length`.
fn drive(vm: &mut Vm, ex: &Exchange, cuts: Cuts<'_>) -> StreamId {
    let id = vm.new_stream();
    let length = ex.request_body.len().to_string();
    let mut req: Vec<(&str, &str)> = vec![
        (":method", ex.method.as_str()),
        (":path", ex.path.as_str()),
        (":authority", ex.authority.as_str()),
        (":scheme", "https"),
        ("content-length", length.as_str()),
    ];
    req.extend(
        ex.request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    vm.request_headers(id, &req, ex.request_body.is_empty())
        .unwrap();
    if !ex.request_body.is_empty() {
        let parts = pieces(&ex.request_body, cuts.request);
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            let last = i + 1 == n && !cuts.request_trailers;
            let a = vm.request_body(id, p, last).unwrap();
            assert_ne!(a, Action::Other(2), "the filter answers Continue or Pause");
        }
        if cuts.request_trailers {
            assert_eq!(
                vm.request_trailers(id, &[("x-t", "1")]).unwrap(),
                Action::Continue
            );
        }
    }
    let status = ex.status.to_string();
    let mut resp: Vec<(&str, &str)> = vec![(":status", status.as_str())];
    resp.extend(
        ex.response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str())),
    );
    vm.response_headers(id, &resp, ex.response_body.is_empty())
        .unwrap();
    if !ex.response_body.is_empty() {
        let parts = pieces(&ex.response_body, cuts.response);
        let n = parts.len();
        for (i, p) in parts.into_iter().enumerate() {
            let last = i + 1 == n && !cuts.response_trailers;
            assert_eq!(vm.response_body(id, p, last).unwrap(), Action::Continue);
        }
        if cuts.response_trailers {
            vm.response_trailers(id, &[("x-t", "1")]).unwrap();
        }
    }
    vm.complete(id).unwrap();
    id
}

/// What each side received, and that both are framed soundly.
fn sides(vm: &Vm, id: StreamId) -> (Vec<u8>, Vec<u8>) {
    let s = vm.stream(id).unwrap();
    let up = s
        .upstream_request_framing()
        .expect("request headers went upstream");
    assert!(up.is_sound(), "upstream framing {up:?}");
    let down = s
        .downstream_response_framing()
        .expect("response headers went down");
    assert!(down.is_sound(), "downstream framing {down:?}");
    assert!(!s.stalled, "a stream was left paused");
    (s.forwarded_request.clone(), s.forwarded_response.clone())
}

fn check_case(vm: &mut Vm, c: &Case, cuts: Cuts<'_>, what: &str) {
    let id = drive(vm, &c.ex, cuts);
    let (up, down) = sides(vm, id);
    assert!(
        up == c.upstream_request,
        "{}: upstream request ({what})",
        c.ex.name
    );
    assert!(
        down == c.client_response,
        "{}: client response ({what})",
        c.ex.name
    );
    let s = vm.stream(id).unwrap();
    let framing = s.upstream_request_framing().unwrap();
    // The filter removes content-length whenever it holds a body it may rewrite.
    assert_eq!(framing, Http1Framing::Chunked, "{}: {what}", c.ex.name);
    let fs = vm.filter_state(id);
    let mismatches = check_expect(&fs, c.ex.expect.as_ref().unwrap(), "asm.llmproxy");
    assert!(
        mismatches.is_empty(),
        "{}: {what}: {mismatches:?}",
        c.ex.name
    );
    assert_eq!(
        fs.get("wasm.asm.llmproxy.include_usage_injection")
            .map(String::as_str),
        Some(if c.injected {
            "injected"
        } else {
            "client_asked"
        }),
        "{}",
        c.ex.name
    );
    // The request body was held: every body callback but the last answered Pause.
    let body: Vec<Action> = s
        .callbacks
        .iter()
        .filter(|(n, _)| *n == "on_request_body")
        .map(|(_, a)| *a)
        .collect();
    let (last, before) = body.split_last().unwrap();
    if cuts.request_trailers {
        assert!(body.iter().all(|a| *a == Action::Pause), "{body:?}");
    } else {
        assert_eq!(*last, Action::Continue);
        assert!(before.iter().all(|a| *a == Action::Pause), "{body:?}");
    }
}

const CASES: [&str; 3] = [
    "54-openai-chat-stream-inject-usage",
    "55-openai-chat-stream-client-asked-usage",
    "56-openai-completions-inject-crlf-comments",
];

#[test]
fn both_sides_whole_and_one_byte_at_a_time() {
    let mut vm = sleep_vm(ON);
    for name in CASES {
        let c = case(name);
        check_case(&mut vm, &c, Cuts::default(), "whole");
        let every: Vec<usize> = (1..c.ex.response_body.len()).collect();
        let every_req: Vec<usize> = (1..c.ex.request_body.len()).collect();
        let cuts = Cuts {
            request: &every_req,
            response: &every,
            ..Cuts::default()
        };
        check_case(&mut vm, &c, cuts, "one byte at a time");
    }
    assert!(vm.failure().is_none());
}

#[test]
fn the_request_split_at_every_byte() {
    let mut vm = sleep_vm(ON);
    for name in CASES {
        let c = case(name);
        for k in 0..=c.ex.request_body.len() {
            let cuts = Cuts {
                request: &[k],
                ..Cuts::default()
            };
            check_case(&mut vm, &c, cuts, &format!("request split at {k}"));
        }
    }
}

#[test]
fn the_response_split_at_every_byte() {
    let mut vm = sleep_vm(ON);
    for name in CASES {
        let c = case(name);
        for k in 0..=c.ex.response_body.len() {
            let at = [k];
            let cuts = Cuts {
                response: &at,
                ..Cuts::default()
            };
            check_case(&mut vm, &c, cuts, &format!("response split at {k}"));
        }
    }
}

#[test]
fn request_trailers_and_response_trailers() {
    let mut vm = sleep_vm(ON);
    for name in CASES {
        let c = case(name);
        let cuts = Cuts {
            request: &[10, 30],
            response: &[100, 700],
            request_trailers: true,
            response_trailers: true,
        };
        // The held body is rewritten in the trailers callback and goes upstream before the
        // trailers; the response ends on a complete event, so nothing is held at its trailers.
        check_case(&mut vm, &c, cuts, "trailers");
    }
}

/// The one place the client's bytes are not the upstream's minus the removed events: a
/// response that ends with trailers while an event is still open (no blank line after it).
/// The filter holds that event's bytes, and Envoy offers no body buffer in the trailers
/// callback to put them back; an SSE client discards such an event anyway.
#[test]
fn an_unterminated_event_before_response_trailers_is_not_forwarded() {
    let mut vm = sleep_vm(ON);
    let mut c = case("54-openai-chat-stream-inject-usage");
    let tail = b"data: {\"choices\":[{\"delta\":{}}]}\n";
    c.ex.response_body.extend_from_slice(tail);
    let at = [c.ex.response_body.len() - 10];
    let cuts = Cuts {
        response: &at,
        response_trailers: true,
        ..Cuts::default()
    };
    let id = drive(&mut vm, &c.ex, cuts);
    let (_, down) = sides(&vm, id);
    assert_eq!(down, c.client_response);
    // With an end of stream instead, it is forwarded as it came.
    let id = drive(
        &mut vm,
        &c.ex,
        Cuts {
            response: &at,
            ..Cuts::default()
        },
    );
    let (_, down) = sides(&vm, id);
    assert_eq!(down, [c.client_response.as_slice(), tail].concat());
}

#[test]
fn the_record_keeps_the_usage_the_client_does_not_see() {
    let mut vm = sleep_vm(ON);
    let c = case("54-openai-chat-stream-inject-usage");
    let id = drive(&mut vm, &c.ex, Cuts::default());
    let (_, down) = sides(&vm, id);
    assert!(!String::from_utf8_lossy(&down).contains("\"usage\":{"));
    let fs = vm.filter_state(id);
    assert_eq!(fs["wasm.asm.llmproxy.request_prompt_tokens"], "15");
    assert_eq!(fs["wasm.asm.llmproxy.request_total_tokens"], "17");
    let text = vm.prometheus(&StatsConfig::asm());
    assert!(
        text.lines()
            .any(|l| l.starts_with("asm_llm_proxy_prompt_tokens{") && l.ends_with(" 15")),
        "{text}"
    );
}

#[test]
fn off_by_default_and_per_route() {
    // Off: nothing is held, content-length stays, both sides get the original bytes.
    let c = case("54-openai-chat-stream-inject-usage");
    for config in [
        "",
        r#"{"inject_include_usage": true, "routes": [{"authority": "api.openai.com", "inject_include_usage": false}]}"#,
        r#"{"routes": [{"authority": "vllm.internal", "inject_include_usage": true}]}"#,
    ] {
        let mut vm = sleep_vm(config);
        let id = drive(&mut vm, &c.ex, Cuts::default());
        let (up, down) = sides(&vm, id);
        assert_eq!(up, c.ex.request_body, "{config}");
        assert_eq!(down, c.ex.response_body, "{config}");
        let s = vm.stream(id).unwrap();
        assert!(matches!(
            s.upstream_request_framing(),
            Some(Http1Framing::ContentLength { matches: true, .. })
        ));
        assert!(!s.modified && s.callbacks.iter().all(|(_, a)| *a != Action::Pause));
    }
    // On for one route only.
    let mut vm =
        sleep_vm(r#"{"routes": [{"authority": "api.openai.com", "inject_include_usage": true}]}"#);
    let id = drive(&mut vm, &c.ex, Cuts::default());
    assert_eq!(
        sides(&vm, id),
        (c.upstream_request.clone(), c.client_response.clone())
    );
}

fn chat(path: &str, method: &str, body: &str) -> Exchange {
    let c = case("54-openai-chat-stream-inject-usage");
    Exchange {
        name: body.chars().take(40).collect(),
        method: method.into(),
        path: path.into(),
        request_body: body.as_bytes().to_vec(),
        ..c.ex
    }
}

#[test]
fn other_requests_pass_untouched() {
    let mut vm = sleep_vm(ON);
    let stream = r#"{"model":"m","stream":true,"input":"x"}"#;
    for ex in [
        chat("/v1/responses", "POST", stream),
        chat("/v1/embeddings", "POST", r#"{"model":"m","input":"x"}"#),
        chat("/v1/messages", "POST", stream),
        chat("/v1/chat/completions", "PUT", stream),
    ] {
        let id = drive(&mut vm, &ex, Cuts::default());
        let (up, down) = sides(&vm, id);
        assert_eq!(up, ex.request_body, "{} {}", ex.method, ex.path);
        assert_eq!(down, ex.response_body, "{} {}", ex.method, ex.path);
        assert!(!vm.stream(id).unwrap().modified);
    }
    // Not a stream: held and looked at, then forwarded as it came (chunked: its length
    // was given up when it was held).
    let ex = chat(
        "/v1/chat/completions",
        "POST",
        r#"{"model":"m","stream":false,"messages":[]}"#,
    );
    let id = drive(
        &mut vm,
        &ex,
        Cuts {
            request: &[5],
            ..Cuts::default()
        },
    );
    let (up, down) = sides(&vm, id);
    assert_eq!(
        (up, down),
        (ex.request_body.clone(), ex.response_body.clone())
    );
    assert!(!vm
        .filter_state(id)
        .contains_key("wasm.asm.llmproxy.include_usage_injection"));
    assert!(vm
        .stats()
        .metrics
        .keys()
        .all(|k| !k.contains("inject_skipped")));
}

fn skip_stats() -> StatsConfig {
    let mut stats = StatsConfig::asm();
    stats.stats_tags.extend(
        StatsConfig::parse(r#"{"stats_tags":[{"tag_name":"llmproxy_inject_skip_reason","regex":"(\\|llmproxy_inject_skip_reason=([^|]*))"}]}"#)
            .unwrap()
            .stats_tags,
    );
    stats
}

fn skipped(vm: &Vm, reason: &str) -> u64 {
    let text = vm.prometheus(&skip_stats());
    text.lines()
        .filter(|l| {
            l.starts_with("asm_llm_proxy_inject_skipped{")
                && l.contains(&format!("llmproxy_inject_skip_reason=\"{reason}\""))
        })
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn skips_forward_the_original_bytes_and_are_counted() {
    let mut vm = sleep_vm(r#"{"inject_include_usage": true, "max_inject_body_bytes": 200}"#);
    let body_cases = [
        (r#"{"stream":true,"messages":[}"#, "invalid_json"),
        (
            r#"{"stream":true,"stream_options":"yes"}"#,
            "stream_options_not_object",
        ),
        (r#"{"stream":true,"stream":true}"#, "duplicate_key"),
        (r#"{"stream":"true"}"#, "stream_not_bool"),
        (
            r#"{"stream":true,"stream_options":{"include_usage":1}}"#,
            "include_usage_not_bool",
        ),
        (
            r#"{"stream":true,"stream_options":{"continuous_usage_stats":true}}"#,
            "continuous_usage_stats",
        ),
    ];
    for (body, reason) in body_cases {
        let ex = chat("/v1/chat/completions", "POST", body);
        let id = drive(
            &mut vm,
            &ex,
            Cuts {
                request: &[3, 9],
                ..Cuts::default()
            },
        );
        let (up, down) = sides(&vm, id);
        assert_eq!(up, ex.request_body, "{reason}");
        // The upstream answered with usage; nothing is hidden after a skip.
        assert_eq!(down, ex.response_body, "{reason}");
        assert_eq!(
            vm.filter_state(id)["wasm.asm.llmproxy.include_usage_injection"],
            reason
        );
        assert_eq!(skipped(&vm, reason), 1, "{reason}");
    }
    // Too large, by content-length (not held at all) and by bytes once held.
    let big = format!(
        r#"{{"stream":true,"messages":[{{"content":"{}"}}]}}"#,
        "x".repeat(300)
    );
    let ex = chat("/v1/chat/completions", "POST", &big);
    let id = drive(
        &mut vm,
        &ex,
        Cuts {
            request: &[100, 150, 250],
            ..Cuts::default()
        },
    );
    let (up, _) = sides(&vm, id);
    assert_eq!(up, ex.request_body);
    assert!(matches!(
        vm.stream(id).unwrap().upstream_request_framing(),
        Some(Http1Framing::ContentLength { matches: true, .. })
    ));
    let id = vm.new_stream();
    vm.request_headers(
        id,
        &[
            (":method", "POST"),
            (":path", "/v1/chat/completions"),
            (":authority", "a"),
        ],
        false,
    )
    .unwrap();
    for (i, part) in ex.request_body.chunks(120).enumerate() {
        let a = vm
            .request_body(id, part, (i + 1) * 120 >= ex.request_body.len())
            .unwrap();
        // Held while under the cap; let go, unchanged, once over it.
        assert_eq!(
            a,
            if i == 0 {
                Action::Pause
            } else {
                Action::Continue
            }
        );
    }
    vm.response_headers(id, &[(":status", "200")], true)
        .unwrap();
    vm.complete(id).unwrap();
    assert_eq!(vm.stream(id).unwrap().forwarded_request, ex.request_body);
    assert_eq!(skipped(&vm, "too_large"), 2);
    // A compressed request body.
    let mut ex = case("54-openai-chat-stream-inject-usage").ex;
    ex.request_headers
        .push(("content-encoding".into(), "gzip".into()));
    let id = drive(&mut vm, &ex, Cuts::default());
    assert_eq!(
        sides(&vm, id),
        (ex.request_body.clone(), ex.response_body.clone())
    );
    assert_eq!(skipped(&vm, "encoded_request"), 1);
    // A compressed response stream: the request was rewritten, the stream passes whole.
    let mut c = case("54-openai-chat-stream-inject-usage");
    c.ex.response_headers
        .push(("content-encoding".into(), "identity".into()));
    let id = drive(&mut vm, &c.ex, Cuts::default());
    assert_eq!(
        sides(&vm, id),
        (c.upstream_request.clone(), c.client_response.clone())
    );
    c.ex.response_headers
        .push(("content-encoding".into(), "br".into()));
    c.ex.response_headers.retain(|(_, v)| v != "identity");
    let id = drive(&mut vm, &c.ex, Cuts::default());
    assert_eq!(
        sides(&vm, id),
        (c.upstream_request.clone(), c.ex.response_body.clone())
    );
    assert_eq!(skipped(&vm, "encoded_response"), 1);
    assert!(vm.failure().is_none());
}

#[test]
fn the_otel_profile_names_the_skip_counter_too() {
    let mut vm = sleep_vm(r#"{"profile": "otel", "inject_include_usage": true}"#);
    let ex = chat("/v1/chat/completions", "POST", "{");
    drive(&mut vm, &ex, Cuts::default());
    let name = vm
        .stats()
        .metrics
        .keys()
        .find(|k| k.contains("llm_usage_inject_skipped"))
        .cloned()
        .expect("the skip counter");
    assert!(
        name.starts_with("wasmcustom.llm_usage_inject_skipped|gen_ai_provider_name="),
        "{name}"
    );
    assert!(name.ends_with("|inject_skip_reason=invalid_json"), "{name}");
}

#[test]
fn an_upstream_that_rejects_stream_options() {
    let mut vm = sleep_vm(ON);
    let mut c = case("54-openai-chat-stream-inject-usage");
    c.ex.status = 400;
    c.ex.response_headers = vec![("content-type".into(), "application/json".into())];
    c.ex.response_body = br#"{"error":{"message":"Unrecognized request argument supplied: stream_options","type":"invalid_request_error"}}"#.to_vec();
    for _ in 0..2 {
        let id = drive(&mut vm, &c.ex, Cuts::default());
        // The error reaches the client as it came; the operator is told once.
        assert_eq!(
            sides(&vm, id),
            (c.upstream_request.clone(), c.ex.response_body.clone())
        );
    }
    let warned: Vec<_> = vm
        .logs()
        .iter()
        .filter(|l| l.message.contains("answered 400"))
        .collect();
    assert_eq!(warned.len(), 1, "{:?}", vm.logs());
}

#[test]
fn host_failures_leave_traffic_flowing() {
    let c = case("54-openai-chat-stream-inject-usage");
    // With `refused` failing, the exchange's two sides are as they came.
    let unchanged_with = |refused: &str| -> Vm {
        let mut opts = HostOptions::with_config(ON);
        opts.fail_calls = vec![refused.into()];
        let mut vm = host().start(opts).unwrap();
        let id = drive(
            &mut vm,
            &c.ex,
            Cuts {
                request: &[20],
                ..Cuts::default()
            },
        );
        assert_eq!(
            sides(&vm, id),
            (c.ex.request_body.clone(), c.ex.response_body.clone()),
            "{refused} refused"
        );
        vm
    };
    // Header removal refused: nothing is held or changed.
    unchanged_with("proxy_remove_header_map_value");
    // Buffer writes refused: the original request goes (chunked), the stream as it came.
    let vm = unchanged_with("proxy_set_buffer_bytes");
    assert!(vm.failure().is_none());
    assert!(vm
        .logs()
        .iter()
        .any(|l| l.message.starts_with("llm-usage: set_buffer_bytes failed")));
}
