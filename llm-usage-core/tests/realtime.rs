//! Realtime sessions over an upgraded connection (`testdata/realtime`): the client's and
//! the server's WebSocket frames, fed as the request and response bodies after a `101`,
//! give one record per `response.done` (Gemini Live: per `turnComplete`), whichever way
//! either direction is split, and what no closing event covered stays in the final,
//! incomplete record.

use llm_usage_core::{Exchange, UsageRecord};
use serde_json::Value;
use std::path::{Path, PathBuf};

struct Case {
    name: String,
    case: Value,
    client: Vec<u8>,
    server: Vec<u8>,
}

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testdata/realtime")
}

fn load() -> Vec<Case> {
    let mut dirs: Vec<_> = std::fs::read_dir(dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.join("case.json").exists())
        .collect();
    dirs.sort();
    assert!(dirs.len() >= 5, "realtime fixtures missing: {}", dirs.len());
    dirs.iter()
        .map(|d| Case {
            name: d.file_name().unwrap().to_string_lossy().into_owned(),
            case: serde_json::from_slice(&std::fs::read(d.join("case.json")).unwrap()).unwrap(),
            client: std::fs::read(d.join("client.bin")).unwrap(),
            server: std::fs::read(d.join("server.bin")).unwrap(),
        })
        .collect()
}

fn headers(v: &Value) -> Vec<(String, String)> {
    v.as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect()
}

/// Which bytes go when: chunks of the client's and the server's streams, in order.
enum Dir {
    Client,
    Server,
}

/// Runs the session: the heads, then `plan` (a direction and a byte range each), taking
/// the closed records after every chunk. Returns them and the final record.
fn run(c: &Case, plan: &[(Dir, usize, usize)]) -> (Vec<UsageRecord>, UsageRecord, Exchange) {
    let mut ex = Exchange::new();
    ex.on_request_head(
        c.case["method"].as_str().unwrap(),
        c.case["path"].as_str().unwrap(),
        headers(&c.case["request_headers"]),
    );
    ex.on_request_end();
    ex.on_response_head(
        c.case["response_status"].as_u64().unwrap() as u16,
        headers(&c.case["response_headers"]),
    );
    assert!(ex.upgraded(), "{}", c.name);
    let mut records = Vec::new();
    for (dir, from, to) in plan {
        match dir {
            Dir::Client => ex.on_request_body(&c.client[*from..*to]),
            Dir::Server => ex.on_response_body(&c.server[*from..*to]),
        }
        records.extend(ex.take_records());
    }
    ex.on_response_end();
    records.extend(ex.take_records());
    let rest = ex.finish();
    (records, rest, ex)
}

/// Every figure of the record as the expectation states it (null when it does not).
fn check(c: &Case, r: &UsageRecord, e: &Value, how: &str) {
    let ctx = format!("{} ({how})", c.name);
    let num = |k: &str| e[k].as_u64();
    assert_eq!(r.model.as_deref(), e["model"].as_str(), "{ctx}: model");
    for (k, v) in [
        ("input_tokens", r.input_tokens),
        ("output_tokens", r.output_tokens),
        ("total_tokens", r.total_tokens),
        ("cached_input_tokens", r.cached_input_tokens),
        ("cache_creation_input_tokens", r.cache_creation_input_tokens),
        ("reasoning_tokens", r.reasoning_tokens),
        ("input_audio_tokens", r.input_audio_tokens),
        ("input_image_tokens", r.input_image_tokens),
        ("output_audio_tokens", r.output_audio_tokens),
        ("output_image_tokens", r.output_image_tokens),
        ("web_search_requests", r.web_search_requests),
    ] {
        assert_eq!(v, num(k), "{ctx}: {k}");
    }
    assert_eq!(r.stream, e["stream"].as_bool(), "{ctx}: stream");
    assert_eq!(
        r.complete,
        e["complete"].as_bool().unwrap(),
        "{ctx}: complete"
    );
    assert!(!r.estimated, "{ctx}: estimated");
    assert_eq!(
        r.provider.map(|p| p.as_str()),
        c.case["provider"].as_str(),
        "{ctx}: provider"
    );
}

fn check_all(c: &Case, got: &(Vec<UsageRecord>, UsageRecord, Exchange), how: &str) {
    let want = c.case["expect_records"].as_array().unwrap();
    assert_eq!(got.0.len(), want.len(), "{} ({how}): records", c.name);
    for (r, e) in got.0.iter().zip(want) {
        check(c, r, e, how);
    }
    check(c, &got.1, &c.case["expect_rest"], how);
    assert_eq!(got.2.dropped_records(), 0);
}

#[test]
fn sessions_whole() {
    for c in load() {
        let plan = [
            (Dir::Client, 0, c.client.len()),
            (Dir::Server, 0, c.server.len()),
        ];
        check_all(&c, &run(&c, &plan), "whole");
    }
}

/// The server's frames split at every byte, then the client's, the client's first (in a
/// session the client's `setup` or `session.update` precedes the server's replies, and a
/// record states the model known when it closes).
#[test]
fn sessions_split_at_every_byte() {
    for c in load() {
        let (nc, ns) = (c.client.len(), c.server.len());
        for at in 0..=ns {
            let plan = [
                (Dir::Client, 0, nc),
                (Dir::Server, 0, at),
                (Dir::Server, at, ns),
            ];
            check_all(&c, &run(&c, &plan), &format!("server split at {at}"));
        }
        for at in 0..=nc {
            let plan = [
                (Dir::Client, 0, at),
                (Dir::Client, at, nc),
                (Dir::Server, 0, ns),
            ];
            check_all(&c, &run(&c, &plan), &format!("client split at {at}"));
        }
    }
}

/// Both directions a byte at a time, interleaved as a proxy sees a live session.
#[test]
fn sessions_byte_at_a_time_interleaved() {
    for c in load() {
        let (nc, ns) = (c.client.len(), c.server.len());
        let mut plan = Vec::new();
        for i in 0..nc.max(ns) {
            if i < ns {
                plan.push((Dir::Server, i, i + 1));
            }
            if i < nc {
                plan.push((Dir::Client, i, i + 1));
            }
        }
        check_all(&c, &run(&c, &plan), "byte at a time");
    }
}

/// Each record is taken as soon as its `response.done` is complete, not before: the
/// closing event's last byte is what hands it over.
#[test]
fn a_record_closes_with_the_last_byte_of_its_event() {
    for c in load() {
        let want = c.case["expect_records"].as_array().unwrap().len();
        let mut ex = Exchange::new();
        ex.on_request_head(
            c.case["method"].as_str().unwrap(),
            c.case["path"].as_str().unwrap(),
            headers(&c.case["request_headers"]),
        );
        ex.on_response_head(101, headers(&c.case["response_headers"]));
        ex.on_request_body(&c.client);
        let mut closed_at = Vec::new();
        for (i, b) in c.server.iter().enumerate() {
            ex.on_response_body(core::slice::from_ref(b));
            for _ in ex.take_records() {
                closed_at.push(i);
            }
        }
        assert_eq!(closed_at.len(), want, "{}", c.name);
        // A closing event ends with its message's last frame: at the end of a frame with FIN.
        let ends = fin_frame_ends(&c.server);
        for at in closed_at {
            assert!(
                ends.contains(&(at + 1)),
                "{}: closed mid-frame at {at}",
                c.name
            );
        }
    }
}

/// Where each data frame with FIN ends in a stream of frames (read here from RFC 6455's
/// header layout, for the test).
fn fin_frame_ends(s: &[u8]) -> Vec<usize> {
    let mut ends = Vec::new();
    let mut i = 0;
    while i < s.len() {
        let (b0, b1) = (s[i], s[i + 1]);
        let (mut len, mut at) = (usize::from(b1 & 0x7f), i + 2);
        if len == 126 {
            len = usize::from(u16::from_be_bytes([s[at], s[at + 1]]));
            at += 2;
        } else if len == 127 {
            len = u64::from_be_bytes(s[at..at + 8].try_into().unwrap()) as usize;
            at += 8;
        }
        if b1 & 0x80 != 0 {
            at += 4;
        }
        i = at + len;
        if b0 & 0x80 != 0 && b0 & 0x0f < 8 {
            ends.push(i);
        }
    }
    ends
}

/// A session whose server stream is cut inside the second `response.done`: the first
/// record is complete, the second never closes, and the rest is incomplete.
#[test]
fn a_session_cut_inside_a_response_done() {
    let c = load()
        .into_iter()
        .find(|c| c.name.starts_with("01-"))
        .unwrap();
    let needle = b"\"response.done\"";
    let last = c
        .server
        .windows(needle.len())
        .rposition(|w| w == needle)
        .unwrap();
    let plan = [(Dir::Client, 0, c.client.len()), (Dir::Server, 0, last)];
    let (records, rest, _) = run(&c, &plan);
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].output_tokens, Some(121));
    assert!(records[0].complete);
    assert!(!rest.complete);
    assert_eq!(rest.output_tokens, None);
}

/// An unmasked text frame (a server's).
fn text_frame(payload: &[u8]) -> Vec<u8> {
    let mut out = vec![0x81];
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
    out
}

/// Closed records wait in a bounded queue: a chunk closing more of them than it holds
/// loses the excess, counted, never buffered; taking them makes room again.
#[test]
fn pending_records_are_bounded() {
    let cap = llm_usage_core::limits::MAX_PENDING_RECORDS;
    let mut ex = Exchange::new();
    ex.on_request_head(
        "GET",
        "/v1/realtime?model=gpt-realtime",
        [("host", "api.openai.com")],
    );
    ex.on_response_head(101, [("upgrade", "websocket")]);
    let mut chunk = text_frame(br#"{"type":"session.created","session":{"model":"gpt-realtime"}}"#);
    for n in 0..cap + 5 {
        let ev = format!(
            r#"{{"type":"response.done","response":{{"usage":{{"input_tokens":{n},"output_tokens":1,"total_tokens":{}}}}}}}"#,
            n + 1
        );
        chunk.extend(text_frame(ev.as_bytes()));
    }
    ex.on_response_body(&chunk);
    let records = ex.take_records();
    assert_eq!(records.len(), cap);
    assert_eq!(ex.dropped_records(), 5);
    assert_eq!(records[3].input_tokens, Some(3));
    assert_eq!(records[3].model.as_deref(), Some("gpt-realtime"));
    ex.on_response_body(&text_frame(
        br#"{"type":"response.done","response":{"usage":{"input_tokens":7,"output_tokens":2}}}"#,
    ));
    let more = ex.take_records();
    assert_eq!(more.len(), 1);
    assert_eq!(more[0].total_tokens, Some(9));
}
