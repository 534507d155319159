//! End-to-end tests over real loopback TCP: a hyper upstream that streams fixture bodies in
//! small irregular chunks with delays, the `gateway` example (axum + the layer +
//! metrics-exporter-prometheus) in front of it, and hyper clients.

mod common;

#[path = "../examples/gateway.rs"]
mod gateway;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::{irregular_chunks, Events, Fixture, FixtureExt, Rng, HANG};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioIo};
use llm_usage_testkit::prom_sum;
use llm_usage_tower::{LlmUsageLayer, MetricsConfig, Outcome, Provider};
use metrics_exporter_prometheus::PrometheusHandle;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tower::{Layer, Service, ServiceExt};

/// Upstream request headers understood by the test upstream.
const FIXTURE: &str = "x-test-fixture";
/// The upstream sends the response up to the end of these bytes, then only SSE comments
/// (for an hour): the test hangs up at a known point, whatever the timing.
const STALL_AFTER: &str = "x-test-stall-after";

/// Serves fixture responses over HTTP/1.1 with hyper: reads the whole request body, then
/// streams `response.bin` in irregular chunks (1..=40 bytes) with irregular delays.
async fn spawn_upstream() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut conn_no = 0u64;
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            conn_no += 1;
            let seed = conn_no;
            tokio::spawn(async move {
                let svc = hyper::service::service_fn(move |req: Request<Incoming>| async move {
                    Ok::<_, Infallible>(upstream_answer(req, seed).await)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    addr
}

async fn upstream_answer(req: Request<Incoming>, seed: u64) -> Response<gateway::Paced> {
    let name = req
        .headers()
        .get(FIXTURE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("01-openai-chat-basic")
        .to_owned();
    let stall: Option<String> = req
        .headers()
        .get(STALL_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let fx = Fixture::load(&name);
    let got = req.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(
        &got[..],
        &fx.request[..],
        "upstream got a changed request body"
    );
    let mut rng = Rng::new(seed ^ 0xABCD);
    // Where the stall starts: the end of the first occurrence of the marker.
    let stall_at = stall.map(|m| {
        let at = fx
            .response
            .windows(m.len())
            .position(|w| w == m.as_bytes())
            .expect("stall marker in the response");
        at + m.len()
    });
    let mut sent = 0;
    let mut chunks = Vec::new();
    for c in irregular_chunks(&fx.response, seed, 40) {
        if stall_at.is_some_and(|at| sent >= at) {
            // Instead of the rest: an SSE comment every 10 ms for an hour, so the stream
            // cannot end before the test hangs up, and the gateway notices the hang-up at
            // its next write.
            let ping = Bytes::from_static(b": stalled\n\n");
            chunks.extend((0..360_000).map(|_| (Duration::from_millis(10), ping.clone())));
            break;
        }
        // About one chunk in five waits 1-3 ms.
        let d = if rng.below(5) == 0 {
            Duration::from_millis(1 + rng.below(3))
        } else {
            Duration::ZERO
        };
        sent += c.len();
        chunks.push((d, c));
    }
    let mut res = Response::new(gateway::Paced::new(chunks));
    *res.status_mut() = StatusCode::from_u16(fx.status()).unwrap();
    *res.headers_mut() = fx.response_headers();
    res
}

/// The body bytes of an HTTP/1.1 response read so far (head skipped, `chunked` framing
/// removed; an unfinished chunk gives what arrived of it): a marker split across two
/// chunks of the wire is found whole.
fn dechunked_body(raw: &[u8]) -> Vec<u8> {
    let mut body = Vec::new();
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return body;
    };
    let mut rest = &raw[head_end + 4..];
    while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|h| usize::from_str_radix(h.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|&n| n > 0) else {
            break;
        };
        let data = &rest[eol + 2..];
        body.extend_from_slice(&data[..size.min(data.len())]);
        if data.len() < size + 2 {
            break;
        }
        rest = &data[size + 2..];
    }
    body
}

/// Runs the gateway example's app on loopback with `layer` (given its own Prometheus
/// recorder).
async fn spawn_gateway(upstream: Option<SocketAddr>, layer: LlmUsageLayer) -> SocketAddr {
    let metrics = layer.metrics_config().cloned().unwrap_or_default();
    let recorder = gateway::prometheus_recorder(&metrics);
    let handle: PrometheusHandle = recorder.handle();
    let layer = layer.recorder(recorder);
    layer.describe_metrics();
    let upstream = upstream.map(|a| format!("http://{a}").parse::<Uri>().unwrap());
    let app = gateway::app(upstream, layer, handle);
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    addr
}

fn client() -> Client<HttpConnector, Full<Bytes>> {
    Client::builder(TokioExecutor::new()).build(HttpConnector::new())
}

fn fixture_request(gw: SocketAddr, fx: &Fixture) -> Request<Full<Bytes>> {
    let mut req = Request::post(format!("http://{gw}{}", fx.path()))
        .header(FIXTURE, fx.name.as_str())
        .body(Full::new(Bytes::from(fx.request.clone())))
        .unwrap();
    for (k, v) in fx.request_headers().iter() {
        req.headers_mut().insert(k, v.clone());
    }
    req
}

async fn scrape(client: &Client<HttpConnector, Full<Bytes>>, gw: SocketAddr) -> String {
    let res = client
        .get(format!("http://{gw}/metrics").parse().unwrap())
        .await
        .unwrap();
    let body = res.into_body().collect().await.unwrap().to_bytes();
    String::from_utf8(body.to_vec()).unwrap()
}

/// Scrapes until `name{labels}` sums to `want` (or [`HANG`] passes): the record is emitted when the
/// server sees the end of the body, which may be just after the client saw its last byte.
async fn wait_metric(
    client: &Client<HttpConnector, Full<Bytes>>,
    gw: SocketAddr,
    name: &str,
    labels: &[(&str, &str)],
    want: f64,
) -> String {
    let deadline = Instant::now() + HANG;
    loop {
        let text = scrape(client, gw).await;
        if prom_sum(&text, name, labels) == Some(want) {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "{name}{labels:?}: want {want}, have {:?}\n{text}",
            prom_sum(&text, name, labels)
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Sends one fixture through the gateway, checks the body is byte-identical, then checks
/// `/metrics` against the fixture's expected tokens.
async fn stream_fixture_through_gateway(name: &str, provider: &str, request_model: &str) {
    let up = spawn_upstream().await;
    let events = Events::default();
    let gw = spawn_gateway(Some(up), LlmUsageLayer::new().on_record(events.callback())).await;
    let fx = Fixture::load(name);
    let c = client();
    let res = c.request(fixture_request(gw, &fx)).await.unwrap();
    assert_eq!(res.status().as_u16(), fx.status());
    assert_eq!(
        res.headers().get("content-type"),
        fx.response_headers().get("content-type")
    );
    // Read frame by frame: the body arrives in many pieces.
    let mut body = res.into_body();
    let mut got = Vec::new();
    let mut frames = 0;
    while let Some(f) = body.frame().await {
        if let Some(d) = f.unwrap().data_ref() {
            got.extend_from_slice(d);
            frames += 1;
        }
    }
    assert_eq!(
        got, fx.response,
        "{name}: the client must see the upstream's bytes"
    );
    assert!(
        frames > 1,
        "{name}: expected a streamed body, got {frames} frame(s)"
    );

    let model = fx.expect_model().unwrap();
    let lbl = [
        ("gen_ai_provider_name", provider),
        ("gen_ai_request_model", request_model),
        ("gen_ai_response_model", model.as_str()),
        ("http_status_class", "2xx"),
    ];
    let text = wait_metric(&c, gw, "llm_usage_requests_total", &lbl, 1.0).await;
    for (ty, field) in [
        ("input", "input_tokens"),
        ("output", "output_tokens"),
        ("input_cache_read", "cached_input_tokens"),
        ("input_cache_write", "cache_creation_input_tokens"),
        ("reasoning", "reasoning_tokens"),
    ] {
        let mut l = lbl.to_vec();
        l.push(("gen_ai_token_type", ty));
        let want = fx.expect_u64(field).map(|v| v as f64);
        assert_eq!(
            prom_sum(&text, "llm_usage_tokens_total", &l),
            want,
            "{name}: {ty}\n{text}"
        );
        // The histogram carries `input` and `output` only; every type has its
        // `gen_ai.client.inference.usage` counter.
        let on_histogram = if matches!(ty, "input" | "output") {
            want
        } else {
            None
        };
        assert_eq!(
            prom_sum(&text, "gen_ai_client_token_usage_sum", &l),
            on_histogram,
            "{name}: {ty} histogram"
        );
        let counter = match ty {
            "input_cache_read" => "cache_read_input",
            "input_cache_write" => "cache_write_input",
            "reasoning" => "reasoning_output",
            t => t,
        };
        let mut m = lbl.to_vec();
        m.push(("gen_ai_token_modality", "unknown"));
        assert_eq!(
            prom_sum(
                &text,
                &format!("gen_ai_client_inference_usage_{counter}_tokens_total"),
                &m
            ),
            want,
            "{name}: {ty} counter"
        );
    }
    assert_eq!(
        prom_sum(
            &text,
            "gen_ai_server_time_to_first_token_seconds_count",
            &lbl
        ),
        Some(1.0)
    );
    assert!(
        text.contains("gen_ai_server_request_duration_seconds_bucket{"),
        "{text}"
    );
    let evs = events.wait_for(1).await;
    assert_eq!(evs.len(), 1);
    assert_eq!(evs[0].outcome, Outcome::Complete);
    assert!(evs[0].record.complete);
    assert_eq!(evs[0].record.total_tokens, fx.expect_u64("total_tokens"));
    assert_eq!(evs[0].response_body_bytes, fx.response.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openai_sse_with_include_usage_is_byte_identical_and_counted() {
    stream_fixture_through_gateway("02-openai-chat-stream-usage", "openai", "gpt-4o").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_sse_is_byte_identical_and_counted() {
    stream_fixture_through_gateway(
        "12-anthropic-messages-stream",
        "anthropic",
        "claude-3-5-haiku-20241022",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anthropic_cache_stream_is_counted_with_cache_tokens() {
    let fx = Fixture::load("14-anthropic-stream-tool-use-cache");
    let model = fx.case["expect"]["model"].as_str().unwrap().to_owned();
    let req_model: serde_json::Value = serde_json::from_slice(&fx.request).unwrap();
    stream_fixture_through_gateway(
        "14-anthropic-stream-tool-use-cache",
        "anthropic",
        req_model["model"].as_str().unwrap_or(&model),
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_hang_up_mid_stream_yields_partial_record() {
    let up = spawn_upstream().await;
    let events = Events::default();
    let layer = LlmUsageLayer::new().on_record(events.callback());
    let gw = spawn_gateway(Some(up), layer).await;
    let fx = Fixture::load("12-anthropic-messages-stream");

    // A raw HTTP/1.1 client, so that hanging up is just closing the socket.
    let mut sock = TcpStream::connect(gw).await.unwrap();
    let head = format!(
        "POST {} HTTP/1.1\r\nhost: {gw}\r\ncontent-type: application/json\r\nanthropic-version: 2023-06-01\r\n{FIXTURE}: {}\r\n{STALL_AFTER}: content_block_delta\r\ncontent-length: {}\r\n\r\n",
        fx.path(),
        fx.name,
        fx.request.len()
    );
    sock.write_all(head.as_bytes()).await.unwrap();
    sock.write_all(&fx.request).await.unwrap();
    // Read until the first content delta has arrived (message_start is complete by then);
    // the upstream sends nothing after it, so the body cannot end before we hang up.
    let mut got = Vec::new();
    let mut buf = [0u8; 512];
    let deadline = Instant::now() + HANG;
    while !dechunked_body(&got)
        .windows(19)
        .any(|w| w == b"content_block_delta")
    {
        assert!(Instant::now() < deadline, "stream did not start");
        let n = sock.read(&mut buf).await.unwrap();
        assert!(n > 0, "gateway closed early");
        got.extend_from_slice(&buf[..n]);
    }
    assert_eq!(events.len(), 0, "no record before the end");
    drop(sock);

    let evs = events.wait_for(1).await;
    assert_eq!(evs.len(), 1);
    let ev = &evs[0];
    assert_eq!(ev.outcome, Outcome::Dropped);
    assert!(!ev.record.complete);
    assert_eq!(ev.record.provider, Some(Provider::Anthropic));
    assert_eq!(
        ev.record.model.as_deref(),
        Some("claude-3-5-haiku-20241022")
    );
    assert_eq!(
        ev.record.input_tokens,
        Some(25),
        "usage known before the cut"
    );
    assert!(ev.response_body_bytes < fx.response.len() as u64);

    // The partial record is in the metrics too.
    let c = client();
    let text = wait_metric(
        &c,
        gw,
        "llm_usage_tokens_total",
        &[
            ("gen_ai_provider_name", "anthropic"),
            ("gen_ai_token_type", "input"),
        ],
        25.0,
    )
    .await;
    assert_eq!(
        prom_sum(
            &text,
            "llm_usage_requests_total",
            &[("gen_ai_provider_name", "anthropic")]
        ),
        Some(1.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_streams_are_all_counted_exactly() {
    const N: usize = 200;
    let up = spawn_upstream().await;
    let events = Events::default();
    let gw = spawn_gateway(Some(up), LlmUsageLayer::new().on_record(events.callback())).await;
    let openai = Fixture::load("02-openai-chat-stream-usage");
    let anthropic = Fixture::load("12-anthropic-messages-stream");
    let c = client();
    let mut tasks = Vec::new();
    for i in 0..N {
        let fx = if i % 2 == 0 { &openai } else { &anthropic };
        let req = fixture_request(gw, fx);
        let want = fx.response.clone();
        let c = c.clone();
        tasks.push(tokio::spawn(async move {
            let res = c.request(req).await.unwrap();
            assert_eq!(res.status(), StatusCode::OK);
            let body = res.into_body().collect().await.unwrap().to_bytes();
            assert!(body[..] == want[..], "stream {i}: body changed");
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let half = (N / 2) as f64;
    let text = wait_metric(&c, gw, "llm_usage_requests_total", &[], N as f64).await;
    let tokens = |provider: &str, ty: &str| {
        prom_sum(
            &text,
            "llm_usage_tokens_total",
            &[
                ("gen_ai_provider_name", provider),
                ("gen_ai_token_type", ty),
            ],
        )
    };
    assert_eq!(tokens("openai", "input"), Some(16.0 * half), "{text}");
    assert_eq!(tokens("openai", "output"), Some(6.0 * half));
    assert_eq!(tokens("anthropic", "input"), Some(25.0 * half));
    assert_eq!(tokens("anthropic", "output"), Some(31.0 * half));
    assert_eq!(
        prom_sum(
            &text,
            "gen_ai_client_token_usage_count",
            &[("gen_ai_token_type", "input")]
        ),
        Some(N as f64)
    );
    let evs = events.wait_for(N).await;
    assert_eq!(evs.len(), N, "exactly one record per exchange");
    assert!(evs
        .iter()
        .all(|e| e.outcome == Outcome::Complete && e.record.complete));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_mock_provider_is_counted() {
    let gw = spawn_gateway(None, LlmUsageLayer::new()).await;
    let c = client();
    let answer_tokens = gateway::mock::ANSWER.len() as f64;
    let mut expected_input = 0.0;
    for (path, body) in [
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"Say hello"}]}"#,
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"gpt-4o-mini","messages":[{"role":"user","content":"Say hello again"}]}"#,
        ),
    ] {
        expected_input += gateway::mock::input_tokens(body.as_bytes()) as f64;
        let req = Request::post(format!("http://{gw}{path}"))
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let res = c.request(req).await.unwrap();
        assert_eq!(res.status(), StatusCode::OK);
        let text = res.into_body().collect().await.unwrap().to_bytes();
        assert!(std::str::from_utf8(&text).unwrap().contains("mock"));
    }
    let lbl = [
        ("gen_ai_provider_name", "openai"),
        ("gen_ai_response_model", "gpt-4o-mini"),
    ];
    let text = wait_metric(&c, gw, "llm_usage_requests_total", &lbl, 2.0).await;
    let mut l = lbl.to_vec();
    l.push(("gen_ai_token_type", "input"));
    assert_eq!(
        prom_sum(&text, "llm_usage_tokens_total", &l),
        Some(expected_input)
    );
    l.pop();
    l.push(("gen_ai_token_type", "output"));
    assert_eq!(
        prom_sum(&text, "llm_usage_tokens_total", &l),
        Some(2.0 * answer_tokens)
    );

    // Anthropic streaming from the mock.
    let body = r#"{"model":"claude-3-5-haiku-latest","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"hi"}]}"#;
    let req = Request::post(format!("http://{gw}/v1/messages"))
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap();
    let res = c.request(req).await.unwrap();
    let _ = res.into_body().collect().await.unwrap();
    let al = [
        ("gen_ai_provider_name", "anthropic"),
        ("gen_ai_token_type", "output"),
    ];
    wait_metric(&c, gw, "llm_usage_tokens_total", &al, answer_tokens).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_middleware_around_hyper_util_client() {
    let up = spawn_upstream().await;
    let events = Events::default();
    let recorder = metrics_exporter_prometheus::PrometheusBuilder::new().build_recorder();
    let handle = recorder.handle();
    let layer = LlmUsageLayer::new()
        .metrics(MetricsConfig::asm("sleep", "default"))
        .recorder(recorder)
        .on_record(events.callback());
    let inner: Client<HttpConnector, llm_usage_tower::RequestBody<Full<Bytes>>> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let mut svc = layer.layer(inner);
    for name in [
        "02-openai-chat-stream-usage",
        "12-anthropic-messages-stream",
    ] {
        let fx = Fixture::load(name);
        let req = fixture_request(up, &fx);
        let res = svc.ready().await.unwrap().call(req).await.unwrap();
        let body = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], &fx.response[..]);
    }
    let evs = events.wait_for(2).await;
    assert_eq!(evs[0].record.input_tokens, Some(16));
    assert_eq!(evs[1].record.output_tokens, Some(31));
    let text = handle.render();
    let line = format!(
        "asm_llm_proxy_prompt_tokens{{llmproxy_source_workload=\"sleep\",llmproxy_source_workload_namespace=\"default\",llmproxy_destination_service=\"{up}\",llmproxy_model=\"gpt-4o-2024-08-06\"}} 16"
    );
    assert!(text.lines().any(|l| l == line), "{line}\n{text}");
    assert_eq!(
        prom_sum(
            &text,
            "asm_llm_proxy_completion_tokens",
            &[("llmproxy_model", "claude-3-5-haiku-20241022")]
        ),
        Some(31.0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_request_streams_through_and_its_model_is_found() {
    // ~1 MiB request whose "model" comes after the messages, sent in irregular chunks.
    let fx = Fixture::load("44-cohere-large-request-model-last");
    let up = spawn_upstream().await;
    let events = Events::default();
    let gw = spawn_gateway(Some(up), LlmUsageLayer::new().on_record(events.callback())).await;
    let mut rng = Rng::new(44);
    let chunks: Vec<(Duration, Bytes)> = irregular_chunks(&fx.request, 44, 16 * 1024)
        .into_iter()
        .map(|c| {
            let d = if rng.below(8) == 0 {
                Duration::from_millis(1)
            } else {
                Duration::ZERO
            };
            (d, c)
        })
        .collect();
    assert!(chunks.len() > 50);
    let streaming: Client<HttpConnector, gateway::Paced> =
        Client::builder(TokioExecutor::new()).build(HttpConnector::new());
    let req = Request::post(format!("http://{gw}{}", fx.path()))
        .header(FIXTURE, fx.name.as_str())
        .header("content-type", "application/json")
        .body(gateway::Paced::new(chunks))
        .unwrap();
    // The upstream asserts it received the request body unchanged.
    let res = streaming.request(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let body = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(&body[..], &fx.response[..]);
    let evs = events.wait_for(1).await;
    let r = &evs[0].record;
    assert_eq!(evs[0].request_body_bytes, fx.request.len() as u64);
    assert_eq!(r.provider, Some(Provider::Cohere));
    assert_eq!(r.request_model.as_deref(), Some("command-a-03-2025"));
    assert_eq!(r.input_tokens, fx.expect_u64("input_tokens"));
    assert_eq!(r.output_tokens, fx.expect_u64("output_tokens"));
    let text = scrape(&client(), gw).await;
    assert_eq!(
        prom_sum(
            &text,
            "llm_usage_tokens_total",
            &[
                ("gen_ai_request_model", "command-a-03-2025"),
                ("gen_ai_token_type", "input")
            ]
        ),
        Some(243117.0)
    );
}

/// The gateway example with `--prices` and `--limits` files (loaded by its own functions):
/// over loopback, 13-anthropic-messages-cache (3858 tokens, 0.004815 USD with the example
/// table) passes twice under a budget of 7716 tokens, then the gateway answers an
/// Anthropic-shaped 429; the cost and denial counters are in `/metrics`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_prices_and_limits_files() {
    let dir = std::env::temp_dir().join(format!("llm-usage-gw-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let limits = dir.join("limits.json");
    std::fs::write(
        &limits,
        r#"[{"name": "per-key", "key": "header:x-api-key", "tokens": 7716, "window_s": 3600, "count": "total"}]"#,
    )
    .unwrap();
    let prices = llm_usage_testkit::example_prices();
    let bad = dir.join("bad.json");
    std::fs::write(
        &bad,
        r#"[{"name": "x", "key": "cookie", "tokens": 1, "window_s": 1}]"#,
    )
    .unwrap();
    let err = gateway::load_limits(bad.to_str().unwrap()).unwrap_err();
    assert!(err.contains("key \"cookie\""), "{err}");
    assert!(gateway::load_prices(limits.to_str().unwrap()).is_err());

    let layer = gateway::with_costs_and_budgets(
        LlmUsageLayer::new(),
        Some(gateway::load_prices(prices.to_str().unwrap()).unwrap()),
        Some(gateway::load_limits(limits.to_str().unwrap()).unwrap()),
        None,
    )
    .unwrap()
    // A fixed instant in the middle of a window: no test straddles a window boundary.
    .budget_clock(|| 1_800_001_800u64);
    std::fs::remove_dir_all(&dir).unwrap();
    let up = spawn_upstream().await;
    let gw = spawn_gateway(Some(up), layer).await;
    let client = client();
    let fx = Fixture::load("13-anthropic-messages-cache");
    let send = |key: &'static str| {
        let mut req = fixture_request(gw, &fx);
        req.headers_mut().insert("x-api-key", key.parse().unwrap());
        let res = client.request(req);
        async move {
            let res = res.await.unwrap();
            let (parts, body) = res.into_parts();
            (parts, body.collect().await.unwrap().to_bytes())
        }
    };
    for n in 1..=2 {
        let (parts, body) = send("sk-ant-gw").await;
        assert_eq!(parts.status, StatusCode::OK);
        assert_eq!(&body[..], &fx.response[..]);
        // Charged before the record is emitted: once counted, the next check sees it.
        wait_metric(&client, gw, "llm_usage_requests_total", &[], n as f64).await;
    }
    let (parts, body) = send("sk-ant-gw").await;
    assert_eq!(parts.status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(parts.headers["x-ratelimit-limit-tokens"], "7716");
    assert_eq!(parts.headers["x-ratelimit-remaining-tokens"], "0");
    assert_eq!(parts.headers["retry-after"], "1800");
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "error", "{v}");
    assert_eq!(v["error"]["type"], "rate_limit_error", "{v}");
    // Another key still passes.
    assert_eq!(send("sk-ant-other").await.0.status, StatusCode::OK);
    let text = wait_metric(&client, gw, "llm_usage_requests_total", &[], 3.0).await;
    assert_eq!(
        prom_sum(&text, "llm_usage_cost_micros_total", &[]),
        Some(3.0 * 4815.0),
        "{text}"
    );
    assert_eq!(
        prom_sum(
            &text,
            "llm_usage_budget_rejected_requests_total",
            &[("budget_limit", "per-key")]
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        prom_sum(&text, "llm_usage_price_lookup_misses_total", &[]),
        None
    );
}
