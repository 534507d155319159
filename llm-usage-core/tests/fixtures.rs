//! The fixture corpus (`testdata/fixtures`): every case must give its expected record
//! unsplit, split at every byte boundary, and fed one byte at a time.

use llm_usage_core::{Exchange, UsageRecord};
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
        dirs.len() >= 49,
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

/// Runs one exchange with the bodies cut at the given points.
fn run(case: &Case, req_cuts: &[usize], resp_cuts: &[usize]) -> UsageRecord {
    let mut ex = Exchange::new();
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
    feed_cut(&case.response, resp_cuts, |c| ex.on_response_body(c));
    ex.on_response_end();
    ex.finish()
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
    assert!(r.provider.is_some(), "{ctx}: provider");
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
        let truncated = case.name.contains("truncated");
        assert_eq!(r.complete, !truncated, "{}: complete", case.name);
        // The same exchange without the end of the response is partial.
        let mut ex = Exchange::new();
        let rh: Vec<(&str, &str)> = case
            .request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ex.on_request_head(&case.method, &case.path, rh);
        if let Some(req) = &case.request {
            ex.on_request_body(req);
        }
        let sh: Vec<(&str, &str)> = case
            .response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ex.on_response_head(case.status, sh);
        ex.on_response_body(&case.response);
        assert!(!ex.finish().complete, "{}: no end seen", case.name);
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
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
        let mut ex = Exchange::new();
        let rh: Vec<(&str, &str)> = case
            .request_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ex.on_request_head(&case.method, &case.path, rh);
        ex.on_request_body(case.request.as_deref().unwrap_or_default());
        let sh: Vec<(&str, &str)> = case
            .response_headers
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        ex.on_response_head(case.status, sh);
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
