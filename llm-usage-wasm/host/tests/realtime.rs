//! Realtime sessions (`testdata/realtime`) through the real `.wasm` filter.
//!
//! Envoy passes an upgraded connection through the HTTP filter chain: "both the upgrade
//! headers, any request and response body, and HTTP data payload will pass through the
//! default HTTP filter chain" (Envoy docs, intro/arch_overview/http/upgrades). So after the
//! `101` response headers, the client's WebSocket frames reach the filter as request body
//! data (`decodeData`) and the server's as response body data (`encodeData`), interleaved
//! as they arrive, which is what these tests deliver. The filter counts each response the
//! session closes (`Exchange::take_records`) as it completes, and the session once.

mod common;

use common::{asm_stats, sleep_vm};
use llm_usage_testkit::{realtime_sessions, RealtimeSession};
use llm_usage_wasm_host::Action;
use serde_json::Value;

fn pairs(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| {
            let k = if k == "host" {
                ":authority"
            } else {
                k.as_str()
            };
            (k.to_owned(), v.as_str().unwrap().to_owned())
        })
        .collect()
}

/// The sum of a counter's series in the Prometheus text.
fn sum(text: &str, name: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with('{'))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum()
}

/// Plays a session in chunks of `chunk` bytes, a client chunk then a server chunk;
/// returns the Prometheus text.
/// The counters of a session played through the filter (`text`, the asm profile's
/// statistics): its responses' prompt, completion and cached tokens, and one request
/// whatever its responses (when it is LLM traffic at all: the unreadable session never
/// names a model).
fn assert_counters(s: &RealtimeSession, text: &str, ctx: &str) {
    let records = s.case["expect_records"].as_array().unwrap();
    let want = |k: &str| -> u64 { records.iter().filter_map(|r| r[k].as_u64()).sum() };
    for (counter, field) in [
        ("asm_llm_proxy_prompt_tokens", "input_tokens"),
        ("asm_llm_proxy_completion_tokens", "output_tokens"),
        ("asm_llm_proxy_cached_tokens", "cached_input_tokens"),
    ] {
        assert_eq!(sum(text, counter), want(field), "{ctx}: {counter}\n{text}");
    }
    let sessions = u64::from(s.case["expect_rest"]["model"].is_string());
    assert_eq!(
        sum(text, "asm_llm_proxy_requests"),
        sessions,
        "{ctx}\n{text}"
    );
}

fn play(s: &RealtimeSession, chunk: usize) -> String {
    let mut req = vec![
        (":method".to_owned(), "GET".to_owned()),
        (
            ":path".to_owned(),
            s.case["path"].as_str().unwrap().to_owned(),
        ),
    ];
    req.extend(pairs(&s.case["request_headers"]));
    let mut resp = vec![(":status".to_owned(), "101".to_owned())];
    resp.extend(pairs(&s.case["response_headers"]));
    play_heads(s, &req, &resp, chunk)
}

/// Plays a session's frames after these request and response heads.
fn play_heads(
    s: &RealtimeSession,
    req: &[(String, String)],
    resp: &[(String, String)],
    chunk: usize,
) -> String {
    let mut vm = sleep_vm("");
    let id = vm.new_stream();
    let req: Vec<(&str, &str)> = req.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut actions = vec![vm.request_headers(id, &req, false).unwrap()];
    let resp: Vec<(&str, &str)> = resp.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    actions.push(vm.response_headers(id, &resp, false).unwrap());
    let (mut c, mut r) = (s.client.chunks(chunk), s.server.chunks(chunk));
    loop {
        let (a, b) = (c.next(), r.next());
        if a.is_none() && b.is_none() {
            break;
        }
        if let Some(a) = a {
            actions.push(vm.request_body(id, a, false).unwrap());
        }
        if let Some(b) = b {
            actions.push(vm.response_body(id, b, false).unwrap());
        }
    }
    actions.push(vm.request_body(id, b"", true).unwrap());
    actions.push(vm.response_body(id, b"", true).unwrap());
    vm.complete(id).unwrap();
    assert!(
        actions.iter().all(|a| *a == Action::Continue),
        "{}: {actions:?}",
        s.name
    );
    // A proxy passes the frames through unchanged, both ways.
    let st = vm.stream(id).unwrap();
    assert_eq!(st.forwarded_request, s.client, "{}", s.name);
    assert_eq!(st.forwarded_response, s.server, "{}", s.name);
    vm.prometheus(&asm_stats())
}

#[test]
fn each_response_of_a_session_is_counted_once() {
    for s in realtime_sessions() {
        for chunk in [usize::MAX, 1, 7, 100] {
            let text = play(&s, chunk);
            assert_counters(&s, &text, &format!("{} in chunks of {chunk}", s.name));
        }
    }
}

/// An HTTP/2 WebSocket (RFC 8441: extended CONNECT with `:protocol: websocket`, answered
/// `200`) as Envoy's HTTP filters see it. Envoy's HTTP/2 server codec turns the request
/// into the HTTP/1.1 form before the filter chain (`ServerStreamImpl::decodeHeaders` in
/// `source/common/http/http2/codec_impl.cc` calls `Utility::transformUpgradeRequestFromH2toH1`
/// of `source/common/http/utility.cc`: `:method` becomes `GET`, `upgrade` takes the
/// `:protocol` value, `connection: Upgrade` is set, `:protocol` removed). An HTTP/2
/// upstream's `200` is turned back into `101` with `upgrade` and `connection` by its
/// client codec (`ClientStreamImpl::decodeHeaders` → `transformUpgradeResponseFromH2toH1`),
/// and an HTTP/1.1 upstream answers `101` itself; the downstream HTTP/2 encoder makes it
/// `200` again only after the filters (`ServerStreamImpl::encodeHeaders` →
/// `transformUpgradeResponseFromH1toH2`). RFC 8441 §5 drops `sec-websocket-key` and
/// `sec-websocket-accept`; `sec-websocket-extensions` is negotiated as over HTTP/1.1. The
/// frames then travel in the stream's DATA frames, which the filter sees as body data.
#[test]
fn an_http2_websocket_as_envoy_presents_it() {
    for s in realtime_sessions() {
        let owned = |v: &[(&str, &str)]| -> Vec<(String, String)> {
            v.iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect()
        };
        let host = s.case["request_headers"]["host"].as_str().unwrap();
        let mut req = owned(&[
            (":method", "GET"),
            (":scheme", "https"),
            (":authority", host),
            (":path", s.case["path"].as_str().unwrap()),
            ("sec-websocket-version", "13"),
        ]);
        let mut resp = owned(&[(":status", "101")]);
        if let Some(ext) = s.case["request_headers"]["sec-websocket-extensions"].as_str() {
            req.push(("sec-websocket-extensions".to_owned(), ext.to_owned()));
        }
        if let Some(ext) = s.case["response_headers"]["sec-websocket-extensions"].as_str() {
            resp.push(("sec-websocket-extensions".to_owned(), ext.to_owned()));
        }
        // Added by the transformations, after the headers that came.
        req.extend(owned(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
        ]));
        resp.extend(owned(&[
            ("upgrade", "websocket"),
            ("connection", "Upgrade"),
        ]));
        for chunk in [usize::MAX, 1, 13] {
            let text = play_heads(&s, &req, &resp, chunk);
            let ctx = format!("{} over HTTP/2 in chunks of {chunk}", s.name);
            assert_counters(&s, &text, &ctx);
        }
    }
}
