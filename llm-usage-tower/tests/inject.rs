//! `stream_options.include_usage` injection in the tower layer: what the inner service (the
//! upstream side) received and what the client received, at every split of both bodies,
//! with and without the client asking; the framing; skips and their counter; and once over
//! real loopback TCP with hyper on both sides.

mod common;

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::{Events, Fixture, FixtureExt, FramesBody};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::BodyExt;
use llm_usage_tower::{Injection, LlmUsageLayer, MetricsConfig, RequestBody, Skip};
use metrics_util::debugging::{DebugValue, DebuggingRecorder, Snapshotter};
use tower::{Layer, ServiceExt};

/// What the inner service saw of the request.
#[derive(Default, Clone)]
struct Seen {
    headers: HeaderMap,
    body: Vec<u8>,
    exact_size: Option<u64>,
    trailers: Option<HeaderMap>,
}

struct Case {
    fx: Fixture,
    upstream_request: Vec<u8>,
    client_response: Vec<u8>,
    injected: bool,
}

fn case(name: &str) -> Case {
    let fx = Fixture::load(name);
    let dir = llm_usage_testkit::fixtures_dir().join(name);
    let up = std::fs::read(dir.join("upstream-request.json")).ok();
    Case {
        injected: up.is_some(),
        upstream_request: up.unwrap_or_else(|| fx.request.clone()),
        client_response: std::fs::read(dir.join("client-response.bin"))
            .unwrap_or_else(|_| fx.response.clone()),
        fx,
    }
}

fn split(data: &[u8], cuts: &[usize]) -> Vec<Bytes> {
    let mut out = Vec::new();
    let mut at = 0;
    for &c in cuts {
        let c = c.clamp(at, data.len());
        out.push(Bytes::copy_from_slice(&data[at..c]));
        at = c;
    }
    out.push(Bytes::copy_from_slice(&data[at..]));
    out
}

/// One exchange through the layer: the request body in frames cut at `req_cuts` (with
/// trailers if asked), an inner service that records what it got and answers with the
/// response cut at `resp_cuts` (then trailers if asked). Returns what the inner service saw,
/// the client's response head and body, and the event.
async fn exchange(
    layer: &LlmUsageLayer,
    events: &Events,
    fx: &Fixture,
    req_cuts: &[usize],
    resp_cuts: &[usize],
    trailers: bool,
) -> (Seen, http::response::Parts, Vec<u8>, Option<HeaderMap>) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let seen2 = seen.clone();
    let status = fx.status();
    let headers = fx.response_headers();
    let resp_frames = split(&fx.response, resp_cuts);
    let svc = layer.layer(tower::service_fn(
        move |req: Request<RequestBody<FramesBody>>| {
            let seen = seen2.clone();
            let headers = headers.clone();
            let resp_frames = resp_frames.clone();
            async move {
                let (parts, mut body) = req.into_parts();
                let exact_size = body.size_hint().exact();
                let mut got = Vec::new();
                let mut got_trailers = None;
                while let Some(f) = body.frame().await {
                    let f = f.unwrap();
                    match f.into_data() {
                        Ok(d) => got.extend_from_slice(&d),
                        Err(f) => got_trailers = f.into_trailers().ok(),
                    }
                }
                assert!(body.is_end_stream());
                *seen.lock().unwrap() = Seen {
                    headers: parts.headers,
                    body: got,
                    exact_size,
                    trailers: got_trailers,
                };
                let mut frames: Vec<_> = resp_frames
                    .into_iter()
                    .map(|c| Ok(Frame::data(c)))
                    .collect();
                if trailers {
                    let mut t = HeaderMap::new();
                    t.insert("x-upstream-trailer", "1".parse().unwrap());
                    frames.push(Ok(Frame::trailers(t)));
                }
                let mut res = Response::new(FramesBody::new(frames));
                *res.status_mut() = StatusCode::from_u16(status).unwrap();
                *res.headers_mut() = headers;
                Ok::<_, Infallible>(res)
            }
        },
    ));
    let mut frames: Vec<_> = split(&fx.request, req_cuts)
        .into_iter()
        .map(|c| Ok(Frame::data(c)))
        .collect();
    if trailers {
        let mut t = HeaderMap::new();
        t.insert("x-client-trailer", "1".parse().unwrap());
        frames.push(Ok(Frame::trailers(t)));
    }
    let mut req = Request::post(fx.path())
        .body(FramesBody::new(frames))
        .unwrap();
    *req.headers_mut() = fx.request_headers();
    req.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    req.headers_mut().insert(
        "content-length",
        fx.request.len().to_string().parse().unwrap(),
    );
    req.headers_mut()
        .insert("host", "api.openai.com".parse().unwrap());
    let before = events.len();
    let res = svc.oneshot(req).await.unwrap();
    let (parts, mut body) = res.into_parts();
    let mut got = Vec::new();
    let mut got_trailers = None;
    while let Some(f) = body.frame().await {
        match f.unwrap().into_data() {
            Ok(d) => got.extend_from_slice(&d),
            Err(f) => got_trailers = f.into_trailers().ok(),
        }
    }
    assert!(body.is_end_stream());
    drop(body);
    assert_eq!(events.len(), before + 1, "one record per exchange");
    let seen = seen.lock().unwrap().clone();
    (seen, parts, got, got_trailers)
}

async fn check(
    layer: &LlmUsageLayer,
    events: &Events,
    c: &Case,
    req_cuts: &[usize],
    resp_cuts: &[usize],
    what: &str,
) {
    let (seen, parts, got, _) = exchange(layer, events, &c.fx, req_cuts, resp_cuts, false).await;
    let name = &c.fx.name;
    assert!(
        seen.body == c.upstream_request,
        "{name}: upstream request ({what})"
    );
    assert!(got == c.client_response, "{name}: client response ({what})");
    // The held body lost its length: the inner service frames it itself.
    assert!(seen.headers.get("content-length").is_none(), "{name}");
    assert_eq!(seen.exact_size, None, "{name}");
    assert!(parts.headers.get("content-length").is_none());
    let ev = events.all().pop().unwrap();
    assert_eq!(
        ev.injection,
        Some(if c.injected {
            Injection::Injected
        } else {
            Injection::ClientAsked
        }),
        "{name}"
    );
    assert_eq!(
        ev.record.input_tokens,
        c.fx.expect_u64("input_tokens"),
        "{name}"
    );
    assert_eq!(
        ev.record.total_tokens,
        c.fx.expect_u64("total_tokens"),
        "{name}"
    );
    assert!(ev.record.complete, "{name}: {what}");
}

const CASES: [&str; 3] = [
    "54-openai-chat-stream-inject-usage",
    "55-openai-chat-stream-client-asked-usage",
    "56-openai-completions-inject-crlf-comments",
];

fn layer(events: &Events) -> LlmUsageLayer {
    LlmUsageLayer::new()
        .without_metrics()
        .inject_include_usage(true)
        .on_record(events.callback())
}

#[tokio::test]
async fn both_sides_at_every_split() {
    let events = Events::default();
    let layer = layer(&events);
    for name in CASES {
        let c = case(name);
        check(&layer, &events, &c, &[], &[], "whole").await;
        let every_req: Vec<usize> = (1..c.fx.request.len()).collect();
        let every_resp: Vec<usize> = (1..c.fx.response.len()).collect();
        check(
            &layer,
            &events,
            &c,
            &every_req,
            &every_resp,
            "one byte at a time",
        )
        .await;
        for k in 0..=c.fx.request.len() {
            check(
                &layer,
                &events,
                &c,
                &[k],
                &[],
                &format!("request split at {k}"),
            )
            .await;
        }
        for k in 0..=c.fx.response.len() {
            check(
                &layer,
                &events,
                &c,
                &[],
                &[k],
                &format!("response split at {k}"),
            )
            .await;
        }
    }
}

#[tokio::test]
async fn trailers_on_both_sides() {
    let events = Events::default();
    let layer = layer(&events);
    for name in CASES {
        let c = case(name);
        let (seen, _, got, trailers) =
            exchange(&layer, &events, &c.fx, &[7, 40], &[300, 301, 900], true).await;
        assert_eq!(seen.body, c.upstream_request, "{name}");
        assert_eq!(seen.trailers.unwrap()["x-client-trailer"], "1");
        assert_eq!(got, c.client_response, "{name}");
        assert_eq!(trailers.unwrap()["x-upstream-trailer"], "1");
    }
}

#[tokio::test]
async fn off_by_default_nothing_is_held() {
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .without_metrics()
        .on_record(events.callback());
    let c = case("54-openai-chat-stream-inject-usage");
    let (seen, parts, got, _) = exchange(&layer, &events, &c.fx, &[10], &[500], false).await;
    assert_eq!(seen.body, c.fx.request);
    assert_eq!(got, c.fx.response);
    assert_eq!(
        seen.headers["content-length"],
        c.fx.request.len().to_string()
    );
    assert_eq!(seen.exact_size, None, "FramesBody gives no size hint");
    assert!(parts.headers.get("content-length").is_none());
    let ev = events.all().pop().unwrap();
    assert_eq!(ev.injection, None);
    assert_eq!(ev.record.input_tokens, Some(15));
}

fn with_request(c: &Case, body: &str) -> Fixture {
    Fixture {
        name: body.chars().take(30).collect(),
        case: c.fx.case.clone(),
        request: body.as_bytes().to_vec(),
        response: c.fx.response.clone(),
    }
}

fn skip_counts(snap: &Snapshotter) -> Vec<(String, u64)> {
    snap.snapshot()
        .into_vec()
        .into_iter()
        .filter(|(k, _, _, _)| k.key().name() == "llm_usage_inject_skipped_total")
        .map(|(k, _, _, v)| {
            let reason = k
                .key()
                .labels()
                .find(|l| l.key() == "inject_skip_reason")
                .map(|l| l.value().to_string())
                .unwrap();
            let DebugValue::Counter(n) = v else {
                panic!("a counter")
            };
            (reason, n)
        })
        .collect()
}

#[tokio::test]
async fn skips_keep_the_bytes_and_are_counted() {
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .recorder(recorder)
        .inject_include_usage(true)
        .max_inject_body_bytes(200)
        .on_record(events.callback());
    let c = case("54-openai-chat-stream-inject-usage");
    let big = format!(
        r#"{{"stream":true,"messages":[{{"content":"{}"}}]}}"#,
        "x".repeat(300)
    );
    let cases = [
        (
            r#"{"stream":true,"messages":[}"#.to_string(),
            Skip::InvalidJson,
        ),
        (
            r#"{"stream":true,"stream_options":5}"#.into(),
            Skip::StreamOptionsNotObject,
        ),
        (
            r#"{"stream":true,"stream":false}"#.into(),
            Skip::DuplicateKey,
        ),
        (
            r#"{"stream":true,"stream_options":{"include_usage":"no"}}"#.into(),
            Skip::IncludeUsageNotBool,
        ),
        (big, Skip::TooLarge),
    ];
    for (body, why) in &cases {
        let fx = with_request(&c, body);
        // By content-length for the large one: not held at all.
        let (seen, _, got, _) = exchange(&layer, &events, &fx, &[3, 150], &[], false).await;
        assert_eq!(seen.body, fx.request, "{why}");
        assert_eq!(got, fx.response, "{why}: nothing is hidden after a skip");
        assert_eq!(
            events.all().pop().unwrap().injection,
            Some(Injection::Skipped(*why))
        );
    }
    // Too large once held (no content-length): the held bytes go on, then the rest.
    let fx = with_request(&c, &cases[4].0);
    let svc = layer.clone().layer(tower::service_fn(
        |req: Request<RequestBody<FramesBody>>| async move {
            let b = req.into_body().collect().await.unwrap().to_bytes();
            Ok::<_, Infallible>(Response::new(FramesBody::data([b])))
        },
    ));
    let frames = split(&fx.request, &[100, 150, 250])
        .into_iter()
        .map(|c| Ok(Frame::data(c)));
    let req = Request::post("/v1/chat/completions")
        .body(FramesBody::new(frames))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    let echoed = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(echoed, fx.request);
    // An encoded request body.
    let mut fx = with_request(&c, &String::from_utf8(c.fx.request.clone()).unwrap());
    fx.case["request_headers"] = serde_json::json!({"content-encoding": "gzip"});
    let (seen, _, got, _) = exchange(&layer, &events, &fx, &[], &[], false).await;
    assert_eq!((seen.body, got), (fx.request.clone(), fx.response.clone()));
    assert_eq!(seen.headers["content-length"], fx.request.len().to_string());
    // An encoded response stream: the request was rewritten, the stream passes whole.
    let mut fx = Fixture::load("54-openai-chat-stream-inject-usage");
    fx.case["response_headers"]["content-encoding"] = "br".into();
    let (seen, _, got, _) = exchange(&layer, &events, &fx, &[], &[], false).await;
    assert_eq!(
        (seen.body, got),
        (c.upstream_request.clone(), fx.response.clone())
    );
    // By reason, over whatever other labels the exchanges had.
    let mut counts: Vec<(String, u64)> = Vec::new();
    for (reason, n) in skip_counts(&snap) {
        match counts.iter_mut().find(|(r, _)| *r == reason) {
            Some((_, m)) => *m += n,
            None => counts.push((reason, n)),
        }
    }
    counts.sort();
    let want: Vec<(String, u64)> = vec![
        ("duplicate_key".into(), 1),
        ("encoded_request".into(), 1),
        ("encoded_response".into(), 1),
        ("include_usage_not_bool".into(), 1),
        ("invalid_json".into(), 1),
        ("stream_options_not_object".into(), 1),
        ("too_large".into(), 2),
    ];
    assert_eq!(counts, want);
}

#[tokio::test]
async fn asm_profile_names_the_skip_counter() {
    let m = MetricsConfig::asm("sleep", "default");
    assert!(m
        .metric_names()
        .contains(&"asm_llm_proxy_inject_skipped".to_string()));
    let recorder = DebuggingRecorder::new();
    let snap = recorder.snapshotter();
    let events = Events::default();
    let layer = LlmUsageLayer::new()
        .metrics(m)
        .recorder(recorder)
        .inject_include_usage(true)
        .on_record(events.callback());
    let c = case("54-openai-chat-stream-inject-usage");
    exchange(&layer, &events, &with_request(&c, "{"), &[], &[], false).await;
    let found = snap.snapshot().into_vec().into_iter().any(|(k, _, _, _)| {
        k.key().name() == "asm_llm_proxy_inject_skipped"
            && k.key()
                .labels()
                .any(|l| l.key() == "llmproxy_inject_skip_reason" && l.value() == "invalid_json")
    });
    assert!(found);
}

/// Over loopback TCP: the layer as client middleware around hyper's client, a hyper server as
/// the upstream. The upstream gets the rewritten body chunked (the length was removed), and
/// the client's stream lacks the usage-only chunk.
#[tokio::test]
async fn over_real_http1() {
    use hyper::body::Incoming;
    use hyper_util::client::legacy::{connect::HttpConnector, Client};
    use hyper_util::rt::{TokioExecutor, TokioIo};

    let c = case("54-openai-chat-stream-inject-usage");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen: Arc<Mutex<Option<(HeaderMap, Bytes)>>> = Arc::default();
    let seen2 = seen.clone();
    let response = c.fx.response.clone();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let svc = hyper::service::service_fn(move |req: Request<Incoming>| {
            let seen = seen2.clone();
            let response = response.clone();
            async move {
                let (parts, body) = req.into_parts();
                let body = body.collect().await.unwrap().to_bytes();
                *seen.lock().unwrap() = Some((parts.headers, body));
                let frames = common::irregular_chunks(&response, 3, 40)
                    .into_iter()
                    .map(|b| Ok::<_, std::io::Error>(Frame::data(b)));
                let mut res = Response::new(FramesBody::new(frames));
                res.headers_mut()
                    .insert("content-type", "text/event-stream".parse().unwrap());
                Ok::<_, Infallible>(res)
            }
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(stream), svc)
            .await;
    });
    let events = Events::default();
    let client: Client<HttpConnector, RequestBody<http_body_util::Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let client = layer(&events).layer(client);
    let req = Request::post(format!("http://{addr}/v1/chat/completions"))
        .header("content-type", "application/json")
        .header("content-length", c.fx.request.len())
        .body(http_body_util::Full::new(Bytes::from(c.fx.request.clone())))
        .unwrap();
    let res = client.oneshot(req).await.unwrap();
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, c.client_response);
    let (headers, body) = seen.lock().unwrap().take().unwrap();
    assert_eq!(body, c.upstream_request);
    assert!(headers.get("content-length").is_none());
    assert_eq!(headers["transfer-encoding"], "chunked");
    // Emitted when the body reached its end, before `collect` returned.
    let evs = events.all();
    assert_eq!(evs.len(), 1);
    let ev = evs[0].clone();
    assert_eq!(ev.injection, Some(Injection::Injected));
    assert_eq!(ev.record.total_tokens, Some(17));
}
